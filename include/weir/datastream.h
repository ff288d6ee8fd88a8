/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The DataStream API: a job builds a logical dataflow graph on an
 * environment; the runtime (local mini-cluster today, a cluster later) plans,
 * places and runs it.
 *
 * A job is a shared object exporting
 *
 *     int weir_job(weir_env *env, int argc, char **argv);
 *
 * which parses its own arguments (argv[0] is the job's path) and builds the
 * graph.  It returns 0, or non-zero after printing a usage message to stderr.
 * `weir run [options] JOB.so [job args...]` loads it and runs the graph.
 *
 * Error handling: building functions never abort.  A call with bad arguments
 * (unknown column, type mismatch, NULL input) records the first error in the
 * environment (weir_env_error) and returns NULL; functions given a NULL
 * stream return NULL, so a job can build its whole graph and check once.
 *
 * Threading: the graph is built on one thread before the job runs.  User
 * functions run on reactor threads, one subtask per call, concurrently for
 * different subtasks: `arg` is shared by all subtasks and must be treated as
 * read-only while the job runs.
 */
#ifndef WEIR_DATASTREAM_H
#define WEIR_DATASTREAM_H

#include <weir/batch.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weir_env weir_env;
typedef struct weir_stream weir_stream;

/* ---- environment ---------------------------------------------------- */

typedef enum weir_runtime_mode {
	/* BATCH if every source is bounded, else STREAMING (the default). */
	WEIR_MODE_AUTOMATIC = 0,
	/* Keyed running aggregates emit every update. */
	WEIR_MODE_STREAMING = 1,
	/* Keyed aggregates emit one final row per key at end of input. */
	WEIR_MODE_BATCH = 2,
} weir_runtime_mode;

typedef enum weir_idle_policy {
	WEIR_IDLE_PARK = 0,      /* spin briefly, then sleep on an eventfd */
	WEIR_IDLE_BUSY_POLL = 1, /* never sleep: lowest latency, a full core */
} weir_idle_policy;

/* Configuration read by the runtime; set by `weir run` options.  It
 * belongs to its environment (weir_env_config); the strings it points to
 * (checkpoint_dir, savepoint_dir, restore_savepoint) are not copied and
 * must outlive the run. */
typedef struct weir_config {
	int parallelism;          /* default parallelism of operators */
	int cores;                /* reactors (pinned threads); 0 = min(CPUs, p) */
	weir_runtime_mode mode;
	weir_idle_policy idle;
	uint32_t batch_rows;      /* rows per batch (default 1024) */
	uint32_t block_size;      /* bytes per pooled batch block (128 KiB) */
	uint32_t channel_credits; /* batches in flight per channel (default 16) */
	int64_t buffer_timeout_us;/* flush partial batches after this; 0 = at once */
	int max_parallelism;      /* number of key groups (default 128) */
	bool chaining;            /* fuse forward edges (default true) */
	bool pin;                 /* pin reactors to CPUs (default true) */
	bool print_plan;          /* print chains, exchanges and cores */
	bool print_metrics;       /* print per-operator and per-core metrics */
	/* Fault tolerance (docs/checkpoints.md).  With checkpoint_dir set the
	 * job logs its state and, every checkpoint_interval_ms (0 = only
	 * savepoints), takes a checkpoint there; a run with the same
	 * directory resumes from its newest complete checkpoint. */
	const char *checkpoint_dir;
	int64_t checkpoint_interval_ms;
	int64_t checkpoint_timeout_ms;   /* abandon after this (default 60000) */
	int64_t checkpoint_min_pause_ms; /* between the end of one and the next */
	int checkpoints_retained;        /* complete checkpoints kept (default 2) */
	/* Unaligned checkpoints: a barrier overtakes the data queued in
	 * channels, which becomes part of the checkpoint, so checkpoints
	 * complete quickly under backpressure.  Savepoints stay aligned.  A
	 * checkpoint that holds in-flight data restores at the same
	 * parallelism only. */
	bool checkpoint_unaligned;
	const char *savepoint_dir;       /* default target of savepoints */
	const char *restore_savepoint;   /* start from this savepoint */
	bool allow_non_restored_state;   /* ignore savepoint state with no operator */
} weir_config;

/* Create an environment with default configuration.  NULL on ENOMEM. */
WEIR_API weir_env *weir_env_new(void);
WEIR_API void weir_env_free(weir_env *env);
WEIR_API weir_config *weir_env_config(weir_env *env);
/* First error recorded while building, or NULL. */
WEIR_API const char *weir_env_error(const weir_env *env);

/*
 * Build and run the graph to completion on the embedded local runtime.
 * Returns 0, or a negative errno-style code after printing what failed.
 * `progress` > 0 prints per-operator progress to stderr every that many ms.
 */
WEIR_API int weir_env_execute(weir_env *env, const char *job_name, int progress_ms);

/*
 * What checkpointing did in the run of weir_env_execute (all zero when the
 * job did not checkpoint).  Durations are wall-clock milliseconds.
 */
#define WEIR_PAUSE_BUCKETS 16

typedef struct weir_checkpoint_stats {
	int64_t restored_id;        /* checkpoint or savepoint restored; 0 = none */
	double restore_ms;          /* reading, checking and applying it */
	uint64_t restore_bytes;     /* bytes of the state-log ranges restored */
	uint64_t completed;         /* checkpoints and savepoints completed,
				     * the final checkpoint included */
	uint64_t failed;            /* abandoned: timed out or failed */
	double max_ms, total_ms;    /* trigger to manifest written, completed ones */
	uint64_t log_bytes;         /* state-log bytes written in this run */
	uint64_t materializations;  /* task materializations written */
	uint64_t materialized_bytes;
	double max_materialize_ms;  /* longest pause of a core to materialize */
	uint64_t inflight_bytes;    /* in-flight data logged by unaligned
				     * checkpoints */
	double max_flush_ms;        /* longest pause of a core at a barrier to
				     * start logging the values changed since
				     * the previous one */
	/* Every stretch a reactor spent on checkpoints instead of records
	 * (at a barrier, or logging a snapshot between turns): the longest,
	 * and how many took [2^i, 2^(i+1)) us in bucket i (bucket 0: under
	 * 2 us; the last: 2^(WEIR_PAUSE_BUCKETS-1) us = 32.8 ms or more). */
	double max_pause_ms;
	uint64_t pause_hist[WEIR_PAUSE_BUCKETS];
} weir_checkpoint_stats;

/* The statistics of env's run (after weir_env_execute returned).  0, or
 * -EINVAL if env has not run. */
WEIR_API int weir_env_checkpoint_stats(const weir_env *env, weir_checkpoint_stats *out);

/* ---- schemas --------------------------------------------------------- */

/*
 * Parse "name:type,name:type,..." where type is i64, f64, bool, ts or str.
 * The schema lives as long as env.  NULL (and an env error) on bad input.
 */
WEIR_API const weir_schema *weir_schema_parse(weir_env *env, const char *spec);

/* The schema of the records a stream carries. */
WEIR_API const weir_schema *weir_stream_schema(const weir_stream *s);

/* ---- sources ---------------------------------------------------------- */

/* Lines of a text file (schema "line:str"), split across subtasks by byte
 * range. Bounded. */
WEIR_API weir_stream *weir_source_text_file(weir_env *env, const char *name,
				   const char *path);

/* Lines of standard input ("line:str"); parallelism 1; bounded by EOF. */
WEIR_API weir_stream *weir_source_stdin(weir_env *env, const char *name);

/*
 * Rows of a CSV file (RFC 4180) with a declared schema.  `header` skips the
 * first line.  A malformed row (wrong field count, unparsable number,
 * unterminated quote) is not loaded: it goes to the dead-letter side output
 * (weir_csv_dead_letters) with its line number and the reason, is counted,
 * and the job goes on.  `ts_column` names the column used as event time, or
 * NULL.  Parallelism 1 (quoted fields may contain newlines).
 */
WEIR_API weir_stream *weir_source_csv(weir_env *env, const char *name,
			     const char *path, const weir_schema *schema,
			     bool header, const char *ts_column);

/* Dead letters of a CSV source: "line:i64,reason:str,raw:str". */
WEIR_API weir_stream *weir_csv_dead_letters(weir_stream *csv_source);

/*
 * A deterministic generator.  Row i (0-based, over all subtasks) is a pure
 * function of (seed, i); subtasks take disjoint ranges of i.  Default
 * schema "seq:i64,key:i64,value:i64": with r = splitmix64(seed ^ (seq *
 * 0xd1b54a32d192ed03)), key = ((r >> 32) * keys) >> 32 (uniform in
 * [0, keys)) and value = ((r & 0xffffffff) * 1000) >> 32 (uniform in
 * [0, 1000)); event time = seq.  A custom `fill` writes rows
 * [first, first + n) into `out` columns 0..n-1 of its own schema.
 */
typedef void (*weir_gen_fn)(void *arg, uint64_t seed, uint64_t first,
			    uint32_t n, weir_batch *out);
typedef struct weir_generator_conf {
	uint64_t count;        /* rows in all; 0 = unbounded */
	double rate;           /* rows per second over all subtasks; 0 = max */
	uint64_t seed;
	int64_t keys;          /* default schema: distinct keys (default 1000) */
	const weir_schema *schema; /* with fill: the custom schema */
	weir_gen_fn fill;
	void *arg;
} weir_generator_conf;

WEIR_API weir_stream *weir_source_generator(weir_env *env, const char *name,
				   const weir_generator_conf *conf);

/*
 * Cap a source at `records_per_sec` over all its subtasks (0 = no cap), so
 * a long run can be watched or interrupted.  Works on every built-in
 * source.  0, or -EINVAL if s is not a source.
 */
WEIR_API int weir_source_set_rate(weir_stream *source, double records_per_sec);

/* True when the job will take checkpoints (the run has a checkpoint
 * directory): a job then writes through a transactional sink. */
WEIR_API bool weir_env_checkpointing(const weir_env *env);

/* ---- transformations ---------------------------------------------------- */

/* out->rows is already in->rows; fill out's columns for rows 0..rows-1.
 * Return 0, or -ENOSPC if a string did not fit (the runtime retries on
 * smaller slices), or another negative code to fail the job. */
typedef int (*weir_map_fn)(void *arg, const weir_batch *in, weir_batch *out);
/* Set keep[i] to 1 for rows to keep, 0 to drop. */
typedef void (*weir_filter_fn)(void *arg, const weir_batch *in,
			       uint8_t *keep);
/* Emit any number of rows per input row.  Return 0 or a negative code. */
typedef int (*weir_flat_map_fn)(void *arg, const weir_batch *in,
				weir_out *out);

WEIR_API weir_stream *weir_map(weir_stream *in, const char *name,
		      const weir_schema *out_schema, weir_map_fn fn,
		      void *arg);
WEIR_API weir_stream *weir_filter(weir_stream *in, const char *name,
			 weir_filter_fn fn, void *arg);
WEIR_API weir_stream *weir_flat_map(weir_stream *in, const char *name,
			   const weir_schema *out_schema, weir_flat_map_fn fn,
			   void *arg);
/* Keep the comma-separated columns, in that order ("b,a"). */
WEIR_API weir_stream *weir_project(weir_stream *in, const char *name,
			  const char *columns);

/*
 * Declare side output number `tag` of the operator that produces `s`, with
 * its schema, and return the stream of it.  Tags are numbered 1, 2, ... in
 * the order they are declared (another number is an error); inside the
 * operator's function, weir_out_side(out, tag) emits to it.  Only flat_map
 * and process functions have an emitter, so only they have side outputs.
 */
WEIR_API weir_stream *weir_side_output(weir_stream *s, int tag, const weir_schema *schema);

/* Merge streams of the same schema. */
WEIR_API weir_stream *weir_union(weir_stream *a, weir_stream *b);

/* ---- partitioning of the next edge --------------------------------------- */

/* Hash-partition by `column` (any type): records with equal keys meet in
 * one subtask.  Returns a keyed stream for the aggregates below. */
WEIR_API weir_stream *weir_key_by(weir_stream *in, const char *column);
WEIR_API weir_stream *weir_rebalance(weir_stream *in);
WEIR_API weir_stream *weir_broadcast(weir_stream *in);

/* ---- keyed running aggregates (on a key_by stream) ------------------------ */

/*
 * Output rows have the input's schema: the aggregated column carries the
 * running aggregate and the other columns come from the key's first record
 * (as in Flink).  In STREAMING mode a row is emitted per input record; in
 * BATCH mode one row per key at end of input.
 */
WEIR_API weir_stream *weir_sum(weir_stream *keyed, const char *column);
WEIR_API weir_stream *weir_min(weir_stream *keyed, const char *column);
WEIR_API weir_stream *weir_max(weir_stream *keyed, const char *column);
/* Output "key,count" where key is the key column's name and type. */
WEIR_API weir_stream *weir_count(weir_stream *keyed);

/* One cell of a row, for reduce functions. */
typedef union weir_value {
	int64_t i64;
	double f64;
	bool b;
	struct {
		const char *ptr;
		uint32_t len;
	} str;
} weir_value;
/* Fold `in` into `acc` (both rows of the stream's schema).  A string the
 * function stores in acc must point into acc or in (the runtime copies it). */
typedef void (*weir_reduce_fn)(void *arg, weir_value *acc,
			       const weir_value *in, const weir_schema *s);
WEIR_API weir_stream *weir_reduce(weir_stream *keyed, const char *name,
			 weir_reduce_fn fn, void *arg);

/* ---- sinks ----------------------------------------------------------------- */

/* CSV (RFC 4180 quoting, no header) to standard output; parallelism 1. */
WEIR_API int weir_sink_stdout(weir_stream *in, const char *name);
/* CSV to one file (created or truncated); parallelism 1. */
WEIR_API int weir_sink_csv(weir_stream *in, const char *name, const char *path);
/* Count and drop. */
WEIR_API int weir_sink_discard(weir_stream *in, const char *name);
/*
 * Exactly-once CSV files in directory `dir` (created if missing), by
 * two-phase commit: each subtask writes a hidden in-progress file
 * (".part-<subtask>-<seq>.inprogress"), pre-commits it (flush, fsync) at
 * every checkpoint barrier, and renames it to "part-<subtask>-<seq>" once
 * the checkpoint is complete.  On recovery it commits what the checkpoint
 * had pre-committed and deletes every other in-progress file, so the
 * visible files hold exactly the output of an uninterrupted run.
 * Without checkpointing, files are committed at end of input.  Runs at
 * the input's parallelism.
 */
WEIR_API int weir_sink_files(weir_stream *in, const char *name, const char *dir);

/*
 * A sink of your own, called per batch.  Each subtask calls open once
 * (main thread, before the job runs), then invoke for every batch that
 * reaches it (on its reactor thread, one call at a time), then close
 * (main thread, after the run, also when it failed).  open and close may
 * be NULL; open's *state is what invoke and close get (NULL if open is
 * NULL: invoke gets arg).  A negative return fails the job.  `in` is
 * borrowed for the call.
 *
 * Delivery: the function takes no part in checkpoints, so after a restart
 * from a checkpoint it sees again the records that came after that
 * checkpoint (at least once), as a Flink SinkFunction that is not
 * checkpointed would; for exactly-once output use weir_sink_files.  fns
 * is copied; arg must outlive the run.  Runs at the input's parallelism.
 */
typedef struct weir_sink_fns {
	int (*open)(void *arg, int subtask, int parallelism, void **state);
	int (*invoke)(void *state, const weir_batch *in);
	void (*close)(void *state);
	void *arg;
} weir_sink_fns;
WEIR_API int weir_sink(weir_stream *in, const char *name, const weir_sink_fns *fns);

/* ---- per-operator settings -------------------------------------------------- */

WEIR_API int weir_stream_set_parallelism(weir_stream *s, int parallelism);
/* Do not fuse this operator with its predecessor. */
WEIR_API int weir_stream_start_new_chain(weir_stream *s);

/* The entry point a job shared object exports. */
typedef int (*weir_job_fn)(weir_env *env, int argc, char **argv);
#define WEIR_JOB_SYMBOL "weir_job"

#ifdef __cplusplus
}
#endif
#endif
