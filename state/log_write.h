/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The state-log write path (log_write.c): what the keyed state of a task
 * becomes in its core's state log.  Operators register the keyed state of
 * each subtask from open():
 *
 *     s->wins = kv_new(&conf, dict);
 *     state_register_table(t, "windows", s->wins);
 *     state_register_timers(t, "event-timers", s->timers);
 *
 * A registered structure is logged while the job checkpoints, materialized
 * into checkpoints and savepoints, and restored (by key group, so at any
 * parallelism) before the job runs (checkpoint.h).  A table's PUTs are
 * logged at the barriers, one per changed entry (kv_flush_dirty), its
 * other entries as they happen.  Names must be unique within the operator
 * and stable across versions of a job: a savepoint finds state by
 * (operator name, table name).
 *
 * Layering: this sits on the tables (state.h), which log through the
 * binding defined here (struct st_bind, called through state.h's
 * st_log_ops) and call nothing above them; the store (checkpoint.c),
 * manifests, recovery and in-flight data sit on this.
 *
 * State-log entries (the payload of log frames, see statelog.h), each
 *
 *   +--------+-------+--------+---------+------+------+-------+-----+-----+
 *   | kind u8| tab u8| node u16| sub u16| 0 u16| klen | vlen  |khash| ns  |
 *   |        |       |         |        |      | u32  | u32   | u64 | i64 |
 *   +--------+-------+--------+---------+------+------+-------+-----+-----+
 *   then klen key bytes (8 for fixed-width keys, the string for str keys)
 *   then vlen value bytes.  32-byte header, little-endian, unaligned.
 *
 *   PUT      value = the table's encoding of the whole value (written at
 *            the barrier after the change, with the value then: see
 *            state.h kv_written and keyed.c "Dirty tracking"); the
 *            final barrier and savepoints write these
 *   SNAP     the same, as it was at a checkpoint barrier, written after
 *            it (asynchronous snapshots): a recovery of that checkpoint
 *            takes the task's SNAP entries up to its tail mark and no
 *            other entry after its barrier mark
 *   APPEND   value = u32 list, then the appended element
 *   DEL      no value
 *   TIMER+   / TIMER-   ns = timer namespace, value = i64 timestamp
 *   SNAPS    a run of SNAPs of a table with fixed-width keys and plain
 *            values without TTL: klen 0, ns = n, value = n slots as the
 *            table holds them, each [khash u64][key u64][ns i64][value,
 *            vsize bytes padded to 8] (written by the drain: a memcpy per
 *            entry, 40 bytes for a 16-byte value against 56 as a SNAP)
 *   MAT      a materialization of (node, sub) starts: replay from here
 *            resets nothing (it is always a replay's first entry); its
 *            timers follow at once as TIMER+, its table entries as SNAP
 *            (or PUT, before asynchronous snapshots);
 *            value = u64 entries that follow, per registration (in tab
 *            order), so a restore sizes its tables once (empty in logs
 *            written before this was added)
 *   CHAN     an element in flight across an unaligned checkpoint (written
 *            by inflight.c): node and sub are the consumer's, tab its
 *            input, the spare u16 the producer's subtask, khash = producer
 *            node | port << 16, ns = the checkpoint id, key = u64 order
 *            within the channel (see ckpt_store_ops.channel_state), value =
 *            u8 element kind, then an i64 (watermark, idleness) or the
 *            encoded batch (batch.c)
 *
 * `node` is the operator's index in the run's manifest, `sub` the writing
 * subtask, `tab` the registration index within the task (tables and timer
 * services share the numbering).
 */
#ifndef WEIR_LOG_WRITE_H
#define WEIR_LOG_WRITE_H

#include <string.h>

#include "core.h"
#include "state.h"
#include "statelog.h"

enum st_entry_kind {
	ST_PUT = 1,
	ST_APPEND = 2,
	ST_DEL = 3,
	ST_TIMER_ADD = 4,
	ST_TIMER_DEL = 5,
	ST_MAT = 6,
	ST_CHAN = 7,
	ST_SNAP = 8,
	ST_SNAPS = 9,
};

#define ST_ENTRY_HDR 32
#define ST_MAX_TABLES 64

/* Register keyed state of task t (call from open(), after creating it).
 * 0, -EEXIST (name taken), -ENOMEM, -E2BIG (too many). */
int state_register_table(task *t, const char *name, kvtab *tab);
int state_register_timers(task *t, const char *name, tsvc *s);
/*
 * Log task t's registered state into `log` (NULL: log nothing): bind its
 * tables and timer services.  The store does it for every task when a run
 * starts logging (after the restore); a test may drive registered tables
 * against a log of its own, calling kv_flush_dirty() where a barrier
 * would.  Owner core (or main before the job runs).  0 or -ENOMEM.
 */
int state_bind_log(task *t, struct slog *log);

/* ---- the registry of a task (state/ only) -------------------------------------------
 *
 * t->keyed of every task: its registrations, their bindings, and the log
 * positions the store records at its barriers.
 */

typedef struct st_task st_task;

/* The binding a registered table or timer service logs through (state.h
 * st_log_ops): which task and registration its entries are of. */
struct st_bind {
	st_task *owner;
	uint8_t tab;
	/* A table with fixed-width keys whose values are their vsize bytes
	 * (no codec, no lists): st_log_put copies them without asking the
	 * table (a barrier's flush logs millions). */
	bool plain;
	uint32_t vsize;
};

typedef struct st_reg {
	char name[48];
	kvtab *tab;  /* or */
	tsvc *svc;
} st_reg;

struct st_task {
	task *t;
	int n;
	st_reg regs[ST_MAX_TABLES];
	st_bind binds[ST_MAX_TABLES];
	slog *log;      /* the core's log while logging, else NULL */
	uint16_t node;  /* manifest index of the operator */
	uint16_t sub;
	int err;        /* first logging error (reported at the barrier) */
	int core;
	/* checkpoint positions (owner core; the coordinator reads them
	 * after the core's acknowledgement) */
	bool has_mat;
	slog_pos from, to;      /* at the task's checkpoint t->ck_id */
	bool snapping;          /* its snapshot is still being logged */
	/* earlier runs' ranges its state starts from (a restore that did
	 * not materialize again), oldest first; dropped at its next
	 * materialization */
	int nbase;
	struct mf_range *base;
	slog_pos tail;          /* where its SNAP entries for t->ck_id end
				 * (set by the store once they are all
				 * logged; = to when none) */
	slog_pos final_to;      /* when it ended */
	/* the savepoint in flight */
	int64_t sp_id;
	slog_pos sp_from, sp_to;
};

/* The registry of t, made on first use (t->keyed); NULL on ENOMEM. */
st_task *st_of(task *t);

/* Write a materialization of task s into log w (every entry of its tables
 * as PUTs, of its timer services as TIMER+, after a MAT entry): [*from,
 * *to) of w; adds the entry bytes to *bytes.  0 or -errno (also kept in
 * s->err). */
int st_materialize(st_task *s, slog *w, slog_pos *from, slog_pos *to,
		   uint64_t *bytes);
/*
 * Asynchronous snapshots (the store's checkpoints): at a barrier, begin
 * task s's snapshot (mat: a materialization, whose MAT entry and timers
 * are written into w now, *from = its start); then st_snapshot_step logs
 * about `budget` of its SNAP entries per call, between reactor turns,
 * until s->snapping is false.  0 or -errno (begin); entries logged (step).
 */
int st_snapshot_begin(st_task *s, slog *w, bool mat, slog_pos *from);
size_t st_snapshot_step(st_task *s, size_t budget);
/* Log the PUTs task k's tables deferred (kv_flush_dirty of each), before
 * the store marks k's barrier position. */
void st_flush_dirty(st_task *k);
/* Forget what k's tables deferred without logging it: a materialization
 * about to be written holds every entry (and the deferred PUTs would
 * fall before its start anyway). */
void st_forget_dirty(st_task *k);

/* ---- reading entries back (recovery.c, inflight.c) ------------------------------- */

/* An entry read back (format at the top of this file). */
typedef struct st_entry {
	uint8_t kind, tab;
	uint16_t node, sub, spare;
	uint32_t klen, vlen;
	uint64_t khash;
	int64_t ns;
	const char *kp, *vp;  /* key and value bytes */
} st_entry;

/* Parse the entry at p of a frame that ends at end: the next entry, or
 * NULL if it does not fit in the frame. */
static inline const char *entry_parse(const char *p, const char *end, st_entry *e)
{
	if (end - p < ST_ENTRY_HDR)
		return NULL;
	e->kind = (uint8_t)p[0];
	e->tab = (uint8_t)p[1];
	memcpy(&e->node, p + 2, 2);
	memcpy(&e->sub, p + 4, 2);
	memcpy(&e->spare, p + 6, 2);
	memcpy(&e->klen, p + 8, 4);
	memcpy(&e->vlen, p + 12, 4);
	memcpy(&e->khash, p + 16, 8);
	memcpy(&e->ns, p + 24, 8);
	if ((uint64_t)(end - p) - ST_ENTRY_HDR < (uint64_t)e->klen + e->vlen)
		return NULL;
	e->kp = p + ST_ENTRY_HDR;
	e->vp = e->kp + e->klen;
	return e->vp + e->vlen;
}

#endif
