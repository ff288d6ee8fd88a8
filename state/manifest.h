/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Manifests (manifest.c): the text file that makes a checkpoint or a
 * savepoint complete, and what it says.
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
 *   tail <op> <subtask> <seg> <off>
 *                              after its task line: the task's snapshot
 *                              entries (SNAP) written after its barrier
 *                              end there (asynchronous snapshots)
 *   base <op> <subtask> <run> <core> <from seg> <from off> <to seg>
 *        <to off> <tail seg> <tail off>
 *                              after its task line, oldest first: ranges
 *                              of earlier runs' logs (run-<run>/core-<core>) that the
 *                              task's state starts from, replayed before
 *                              its own (a restore that referenced the
 *                              checkpoint it restored instead of
 *                              materializing again); tail 0 0: none
 *   inflight <core> <from seg> <from off> <to seg> <to off>
 *                              unaligned checkpoints: CHAN entries of this
 *                              checkpoint lie in that range of core's log
 *   crc <crc32c of every byte before this line, 8 hex digits>
 *
 * A task's keyed state is its base ranges, then the entries it wrote in
 * its core's log between `from` (a materialization, or the start of the
 * run when it has bases) and `to` (its barrier), and its SNAP entries
 * between `to` and its tail; in a savepoint, in
 * "<savepoint>/core-<c>-00000000.seg".  The blob is its operator state.
 */
#ifndef WEIR_MANIFEST_H
#define WEIR_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <weir/admin.h>

#include "log_write.h" /* ST_MAX_TABLES */

typedef struct mf_op {
	int parallelism;
	char uid[160];
	int ntables;
	char tables[ST_MAX_TABLES][48];
} mf_op;

/* A stretch of an earlier run's log that a task's state starts from (a
 * restored checkpoint's, referenced instead of materialized again):
 * every entry in [from, to), then SNAP entries up to tail (0 0: none). */
typedef struct mf_range {
	uint64_t run;
	int core;
	uint64_t from_seg, from_off, to_seg, to_off, tail_seg, tail_off;
} mf_range;

typedef struct mf_task {
	int op, sub, core;
	bool final;
	uint64_t from_seg, from_off, to_seg, to_off;
	uint64_t tail_seg, tail_off; /* 0 0: no tail line */
	int nbase;                   /* base lines, oldest run first */
	mf_range *base;
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

/* weir_manifest_merge_write (weir/admin.h) is the coordinator's merge of
 * the workers' parts of a manifest (ckpt_store_ops.part, each without its
 * "--- savepoint" half): checked to parse, written atomically. */

#endif
