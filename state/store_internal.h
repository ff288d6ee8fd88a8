/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the checkpoint store's files share (state/ only, never included
 * from another folder): the store and its per-core state (checkpoint.c
 * owns them), the context of a restore (recovery.c and inflight.c), and
 * the functions each of those files offers the others.  Dependencies go
 * one way: checkpoint.c calls manifest.c, recovery.c and inflight.c;
 * recovery.c calls inflight.c; manifest.c, recovery.c and inflight.c read
 * the structs below but call nothing in checkpoint.c; all of them sit on
 * the write path (log_write.h), the state logs (statelog.h) and the tables
 * (state.h).
 */
#ifndef WEIR_STORE_INTERNAL_H
#define WEIR_STORE_INTERNAL_H

#include <stdatomic.h>

#include "checkpoint.h"
#include "log_write.h"
#include "manifest.h"
#include "statelog.h"

/* ---- the store (checkpoint.c) ---------------------------------------------------- */

#define MAX_PEND 16
#define SYNC_AFTER_SNAPSHOT UINT64_MAX

/* A core's part of the store: its reactor writes it; the main thread
 * reads it after the core's acknowledgement or once the reactors
 * stopped. */
typedef struct core_st {
	slog *log;              /* this run's state log (checkpoint dir) */
	slog *sp;               /* the savepoint in flight's file */
	int64_t sp_for;         /* the savepoint id c->sp belongs to */
	slog *sp_done;          /* handed to the coordinator after the ack */
	/* acknowledgements waiting for the log (lt) and the savepoint's file
	 * (st) to be durable up to there; lt = SYNC_AFTER_SNAPSHOT until the
	 * core's snapshots are all logged */
	struct { int64_t id; uint64_t lt, st; } pend[MAX_PEND];
	int npend;
	int64_t durable;
	int64_t mat_decided, mat_round;
	uint64_t bytes_at_mat, mat_size;
	uint64_t bytes_at_sync; /* published with the acknowledgement */
	/* in-flight data of the unaligned checkpoint inf_id: [inf_from,
	 * inf_to) of the log (inf_to set by core_sync) */
	int64_t inf_id;
	slog_pos inf_from, inf_to;
	/* statistics (read by the main thread after the reactors stopped) */
	uint64_t inflight_bytes;
	uint64_t mats, mat_bytes, mat_max_ns, mat_acc_ns;
	int64_t mat_acc_id;
	uint64_t flush_max_ns, flush_acc_ns;
	int64_t flush_acc_id;
	/* asynchronous snapshots: some task's is still being logged; a
	 * materialization round started at log byte mat_start */
	bool snapping, mat_open;
	int64_t snap_id;        /* the newest barrier being logged */
	uint64_t mat_start;
	uint64_t pause_max_ns, pause_hist[WEIR_PAUSE_BUCKETS];
	int err;
	int ntasks;
	task **tasks;
} core_st;

struct ckpt_store {
	runtime *rt;
	const weir_config *cfg;
	int ncores;
	core_st *cores;
	char dir[2048];         /* checkpoint directory, "" = none */
	char run_dir[2200];
	uint64_t run;
	int nops;
	char (*uids)[160];      /* per graph node */
	/* set by begin() on the main thread before the trigger's release;
	 * read by reactors (relaxed: the trigger orders it) */
	_Atomic int64_t sp_id;
	char sp_path[3200];
	uint64_t begin_ns;
	uint64_t bytes_prev;    /* log bytes at the previous completion */
	int64_t restored_id;
	uint64_t restore_bytes;
	int lock_fd;            /* flock of <dir>/.lock, -1 = none */
	unsigned test_slow_us;  /* WEIR_TEST_SNAPSHOT_SLOW_US (fault tests) */
	char job[256];
};

static inline core_st *core_of(ckpt_store *s, int core)
{
	return &s->cores[core];
}

/* Does this process run t?  (In a cluster, other workers run the rest.) */
static inline bool is_local(const task *t)
{
	return runtime_core_local(t->rt, task_core(t));
}

/* ---- manifests (manifest.c) ------------------------------------------------------ */

/* A growing text buffer; oom is set, and the text left short, when it
 * could not grow. */
typedef struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
} sbuf;

void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Checkpoint/savepoint id's manifest as the tasks of this process left it
 * (a cluster worker's: its part), appended to b.  0 or -ENOMEM. */
int mf_text(ckpt_store *s, int64_t id, bool savepoint, sbuf *b);
/* Write file dir/name atomically: tmp, fsync, rename, fsync dir.  0 or
 * -errno with a message in err. */
int mf_write_atomic(const char *dir, const char *name, const void *p, size_t n,
		    char *err, size_t errlen);
/* fsync a directory (after creating or renaming in it).  0 or -errno. */
int st_fsync_dir(const char *dir);
/* Checkpoint ids with a manifest in dir, newest first; *n of them (NULL
 * and 0 if none or unreadable).  Free the array. */
int64_t *mf_list(const char *dir, int *n);
/* The highest run-<r> folder in dir (0: none). */
uint64_t mf_max_run(const char *dir);
/* Read and parse the manifest at path; 0 or -errno with path and reason
 * in err.  Free m with manifest_free (also after a failure). */
int mf_load(const char *path, manifest *m, char *err, size_t errlen);
/* One line for a person: which checkpoint or savepoint m is, from where,
 * when taken. */
void mf_describe(const manifest *m, const char *where, char *out, size_t len);

/* ---- restoring (recovery.c, inflight.c) ------------------------------------------ */

struct tmr_op;
struct inflight_el;

/* The context of one restore, on the main thread before the job runs. */
typedef struct rctx {
	ckpt_store *s;
	runtime *rt;
	const manifest *m;
	char logdir[3300];           /* the logs of run (being read) */
	uint64_t run;
	int *op_map;                 /* manifest op -> graph node, -1 */
	int (*tab_map)[ST_MAX_TABLES];
	int *node_par;               /* graph node -> parallelism */
	task ***by_node;             /* graph node -> its tasks by subtask */
	task ***by_kg;               /* graph node -> the task of each key group */
	struct tmr_op *tmr;          /* timer entries, netted at the end */
	size_t ntmr, cap_tmr;
	int **mt_of;                 /* manifest op, old subtask -> manifest task */
	uint64_t *reserved;          /* runtime task * ST_MAX_TABLES + reg */
	struct inflight_el *els;     /* in-flight data to inject, sorted */
	size_t nels;
	char *err;
	size_t errlen;
} rctx;

/* Restore the job from manifest m, whose state logs are under logdir
 * (recovery.c).  0, or -errno with the reason in err.  Logs and in-flight
 * data are read and checked before any operator restores its own state;
 * a bad checksum, a truncated or missing segment or malformed in-flight
 * data empties the tables again, so the caller may try an older
 * checkpoint as if nothing had been loaded.  `inherit`: tasks whose
 * operator kept its parallelism take the ranges they were restored from
 * as their base (st_task.base), so their first checkpoint need not
 * materialize. */
int st_restore_from(ckpt_store *s, const manifest *m, const char *logdir, bool inherit,
		    char *err, size_t errlen);

/* In-flight data of unaligned checkpoints (inflight.c). */
/* ckpt_store_ops.channel_state: log element e of channel ch, in flight
 * across unaligned checkpoint id, as a CHAN entry of core's log (core's
 * reactor).  0 or -errno. */
int st_channel_state(ckpt_store *s, int core, int64_t id, const channel *ch,
		     uint64_t key, const elem *e);
/* Read and check the in-flight data of c->m into c->els.  0 or -errno
 * (c->err). */
int inflight_load(rctx *c);
/* Put the elements inflight_load() read into their channels (cannot
 * fail). */
void inflight_inject(rctx *c);
/* Release n elements read by inflight_load and the array. */
void inflight_free(runtime *rt, struct inflight_el *els, size_t n);

#endif
