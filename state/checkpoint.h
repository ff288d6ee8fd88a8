/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Checkpoints, recovery and savepoints: the storage side (state/).  The
 * protocol side -- triggering, barriers, alignment, acknowledgements,
 * timeouts -- is in core/checkpoint.c and reaches this file only through
 * the ckpt_store interface of core.h, so core/ knows no file format.
 *
 * Operators register the keyed state of each subtask from open():
 *
 *     s->wins = kv_new(&conf, dict);
 *     state_register_table(t, "windows", s->wins);
 *     state_register_timers(t, "event-timers", s->timers);
 *
 * A registered structure is logged while the job checkpoints, materialized
 * into checkpoints and savepoints, and restored (by key group, so at any
 * parallelism) before the job runs.  A table's PUTs are logged at the
 * barriers, one per changed entry (kv_flush_dirty), its other entries as
 * they happen.  Names must be unique within the operator and stable
 * across versions of a job: a savepoint finds state by (operator name,
 * table name).
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
 *            state.h kv_written and keyed.c "Dirty tracking")
 *   APPEND   value = u32 list, then the appended element
 *   DEL      no value
 *   TIMER+   / TIMER-   ns = timer namespace, value = i64 timestamp
 *   MAT      a materialization of (node, sub) starts: replay from here
 *            resets nothing (it is always a replay's first entry);
 *            value = u64 entries that follow, per registration (in tab
 *            order), so a restore sizes its tables once (empty in logs
 *            written before this was added)
 *   CHAN     an element in flight across an unaligned checkpoint: node
 *            and sub are the consumer's, tab its input, the spare u16 the
 *            producer's subtask, khash = producer node | port << 16, ns =
 *            the checkpoint id, key = u64 order within the channel (see
 *            ckpt_store_ops.channel_state), value = u8 element kind, then
 *            an i64 (watermark, idleness) or the encoded batch (batch.c)
 *
 * `node` is the operator's index in the run's manifest, `sub` the writing
 * subtask, `tab` the registration index within the task (tables and timer
 * services share the numbering).
 */
#ifndef WEIR_CHECKPOINT_H
#define WEIR_CHECKPOINT_H

#include "core.h"
#include "state.h"

enum st_entry_kind {
	ST_PUT = 1,
	ST_APPEND = 2,
	ST_DEL = 3,
	ST_TIMER_ADD = 4,
	ST_TIMER_DEL = 5,
	ST_MAT = 6,
	ST_CHAN = 7,
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
struct slog;
int state_bind_log(task *t, struct slog *log);

/* The storage implementation handed to the runtime (core.h ckpt_store). */
extern const ckpt_store_ops checkpoint_store_ops;

/* ---- manifests ---------------------------------------------------------------------
 *
 * A checkpoint's manifest "<dir>/chk-<id:010>.manifest" (and a savepoint's
 * "<savepoint>/_metadata") is text, one record per line, names
 * percent-encoded, written to a temporary file, fsynced, renamed into
 * place, and the directory fsynced:
 *
 *   weir-manifest 1
 *   kind checkpoint|savepoint
 *   id <n>
 *   job <name>
 *   created <unix ms>
 *   run <r>                    state logs in <dir>/run-<r:06>/core-<c>-*.seg
 *   max-parallelism <k>
 *   cores <n>
 *   op <index> <parallelism> <uid> <ntables> <table name>...
 *   at-least-once <op index>   a source that cannot replay
 *   task <op> <subtask> <core> <final 0|1> <from seg> <from off> <to seg>
 *        <to off> <watermark> <blob length> <blob hex | ->
 *   inflight <core> <from seg> <from off> <to seg> <to off>
 *                              unaligned checkpoints: CHAN entries of this
 *                              checkpoint lie in that range of core's log
 *   crc <crc32c of every byte before this line, 8 hex digits>
 *
 * A task's keyed state is the entries it wrote in its core's log between
 * `from` (a materialization) and `to` (its barrier); in a savepoint, in
 * "<savepoint>/core-<c>-00000000.seg".  The blob is its operator state.
 */
typedef struct mf_op {
	int parallelism;
	char uid[160];
	int ntables;
	char tables[ST_MAX_TABLES][48];
} mf_op;

typedef struct mf_task {
	int op, sub, core;
	bool final;
	uint64_t from_seg, from_off, to_seg, to_off;
	int64_t watermark;
	size_t blob_len;
	uint8_t *blob;
} mf_task;

typedef struct mf_inflight {
	int core;
	uint64_t from_seg, from_off, to_seg, to_off;
} mf_inflight;

typedef struct manifest {
	int version;
	bool savepoint;
	int64_t id;
	char job[256];
	int64_t created_ms;
	uint64_t run;
	int max_parallelism;
	int ncores;
	int nops;
	mf_op *ops;
	bool *at_least_once;  /* per op */
	int ntasks;
	mf_task *tasks;
	int ninflight;
	mf_inflight *inflight;
} manifest;

/* Parse manifest text; 0 or -EINVAL with the line and problem in err.
 * Free with manifest_free (also after a failure). */
int manifest_parse(const char *text, size_t len, manifest *m, char *err,
		   size_t errlen);
void manifest_free(manifest *m);

/* weir_manifest_merge_write (weir/admin.h) merges the workers' parts of a
 * manifest (ckpt_store_ops.part, each without its "--- savepoint" half),
 * checks that the result parses, and writes it atomically. */

#endif
