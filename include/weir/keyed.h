/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Event time, keyed state, timers, windows and joins: the part of the
 * DataStream API that computes per key over time.
 *
 * Time.  Every record carries an event time (batch `ts` column, ms since
 * the epoch).  weir_assign_watermarks() sets it from a column and emits
 * watermarks: "no record with event time <= W will follow".  Watermarks
 * travel in band; an operator's watermark is the minimum over its inputs,
 * ignoring inputs that are marked idle.  Processing time is the wall clock
 * (CLOCK_REALTIME, ms since the epoch) of the subtask's core.
 *
 * Keys.  Keyed operators take a stream from weir_key_by().  A key is a cell
 * of the key column, of any type (strings included); weir_value carries it
 * (for a string key, str.ptr/len, valid for the duration of the call).
 *
 * Threading: as everywhere, user functions run on reactor threads, one call
 * per subtask at a time; `arg` is shared by all subtasks of an operator and
 * must be read-only, or per-subtask (weir_ctx_subtask) by the user's design.
 */
#ifndef WEIR_KEYED_H
#define WEIR_KEYED_H

#include <weir/batch.h>
#include <weir/datastream.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum weir_time_domain {
	WEIR_EVENT_TIME = 0,
	WEIR_PROCESSING_TIME = 1,
} weir_time_domain;

/* ---- event time: timestamps and watermarks ------------------------------ */

typedef enum weir_watermark_kind {
	/* watermark = (max event time seen) - out_of_orderness_ms - 1 */
	WEIR_WM_BOUNDED = 0,
	/* in-order input: BOUNDED with out_of_orderness_ms = 0 */
	WEIR_WM_MONOTONIC = 1,
	/* the watermark comes from a column: after a row whose
	 * punctuation cell is greater than the watermark, the watermark is
	 * that value */
	WEIR_WM_PUNCTUATED = 2,
} weir_watermark_kind;

typedef struct weir_watermark_strategy {
	weir_watermark_kind kind;
	/* i64/ts column holding each record's event time (ms); NULL keeps
	 * the event time the source set */
	const char *ts_column;
	int64_t out_of_orderness_ms;     /* BOUNDED */
	const char *punctuation_column;  /* PUNCTUATED: an i64/ts column */
	/* > 0: after this many ms (processing time) without a record the
	 * stream is marked idle, so it does not hold back downstream
	 * watermarks; its next record makes it active again */
	int64_t idle_timeout_ms;
} weir_watermark_strategy;

/*
 * Assign event time and generate watermarks (chained to the source: one
 * generator per source subtask).  A watermark is emitted after every input
 * batch, and also just before any record whose event time is at or below
 * the watermark of the records before it, so every operator sees a record
 * with exactly the watermark that preceded it in the input.  Results of
 * event-time windows therefore do not depend on batch size, parallelism or
 * speed.  The output schema is the input's.
 */
WEIR_API weir_stream *weir_assign_watermarks(weir_stream *in, const char *name,
				    const weir_watermark_strategy *ws);

/* ---- keyed state ------------------------------------------------------------ */

typedef enum weir_state_kind {
	WEIR_STATE_VALUE = 1,       /* one value of `size` bytes per key */
	WEIR_STATE_LIST = 2,        /* a list of byte strings per key */
	WEIR_STATE_MAP = 3,         /* byte-string keys -> values of `size` bytes */
	WEIR_STATE_REDUCING = 4,    /* a value folded with `fold` (same type) */
	WEIR_STATE_AGGREGATING = 5, /* an accumulator of `size` bytes, zeroed
				     * when created, folded with `fold` */
	/* connect() with a broadcast stream only: one map per subtask, not per
	 * key; written by the broadcast input, read by both inputs */
	WEIR_STATE_BROADCAST_MAP = 6,
} weir_state_kind;

typedef struct weir_state_desc {
	const char *name;
	weir_state_kind kind;
	uint32_t size;   /* bytes of a value or accumulator (not for LIST) */
	/* > 0: a key's value expires ttl_ms after it was last written
	 * (processing time); an expired value reads as absent and its memory
	 * is reclaimed.  0: never expires. */
	int64_t ttl_ms;
	/* REDUCING: acc = fold(acc, in), both `size` bytes.
	 * AGGREGATING: fold whatever weir_state_add() is given into acc. */
	void (*fold)(void *arg, void *acc, const void *in);
	void *arg;
} weir_state_desc;

/* The context of one call of a process function: the current key, times,
 * state and timers.  Valid only during the call. */
typedef struct weir_ctx weir_ctx;

/* The current key (not set for records of a broadcast input). */
WEIR_API weir_value weir_ctx_key(const weir_ctx *c);
/* Event time of the current record, or the time of the firing timer. */
WEIR_API int64_t weir_ctx_timestamp(const weir_ctx *c);
/* The operator's current watermark (INT64_MIN before the first). */
WEIR_API int64_t weir_ctx_watermark(const weir_ctx *c);
/* Processing time now, ms since the epoch. */
WEIR_API int64_t weir_ctx_processing_time(const weir_ctx *c);
/* This subtask's index, 0-based, and the operator's parallelism. */
WEIR_API int weir_ctx_subtask(const weir_ctx *c);
WEIR_API int weir_ctx_parallelism(const weir_ctx *c);

/*
 * Timers of the current key.  An event-time timer fires when the watermark
 * reaches ts; a processing-time timer when the clock does.  Timers fire in
 * timestamp order; registering the same (key, time, domain) twice gives one
 * firing.  0 or -EINVAL (no current key).
 */
WEIR_API int weir_timer_register(weir_ctx *c, weir_time_domain d, int64_t ts);
WEIR_API int weir_timer_delete(weir_ctx *c, weir_time_domain d, int64_t ts);

/*
 * State of the current key; `state` is the index of its descriptor in the
 * operator's weir_process_fns.states.  Pointers returned stay valid until
 * the next state call of this context.
 */
/* VALUE, REDUCING, AGGREGATING: the value, or NULL if there is none. */
WEIR_API const void *weir_state_get(weir_ctx *c, int state);
/* VALUE: set the value (`size` bytes). */
WEIR_API int weir_state_set(weir_ctx *c, int state, const void *value);
/* LIST: append `len` bytes.  REDUCING, AGGREGATING: fold `in` into the
 * value (len ignored). */
WEIR_API int weir_state_add(weir_ctx *c, int state, const void *in, size_t len);
/* LIST: number of elements, and element i (NULL when out of range). */
WEIR_API size_t weir_state_list_len(weir_ctx *c, int state);
WEIR_API const void *weir_state_list_get(weir_ctx *c, int state, size_t i,
				size_t *len);
/* MAP, BROADCAST_MAP. */
WEIR_API const void *weir_state_map_get(weir_ctx *c, int state, const void *k,
			       size_t klen);
WEIR_API int weir_state_map_put(weir_ctx *c, int state, const void *k, size_t klen,
		       const void *value);
WEIR_API int weir_state_map_remove(weir_ctx *c, int state, const void *k,
			  size_t klen);
/* Call fn for each entry; stops early when fn returns non-zero. */
WEIR_API int weir_state_map_foreach(weir_ctx *c, int state,
			   int (*fn)(void *arg, const void *k, size_t klen,
				     const void *value),
			   void *arg);
/* Remove the current key's value, list or map. */
WEIR_API int weir_state_clear(weir_ctx *c, int state);

/* ---- keyed process functions ---------------------------------------------- */

#define WEIR_MAX_STATES 16

typedef struct weir_process_fns {
	/* Row `row` of `in` arrived on input `input` (0; 1 for the second
	 * input of weir_connect_process).  Return 0 or a negative code,
	 * which fails the job. */
	int (*process)(void *arg, weir_ctx *ctx, int input,
		       const weir_batch *in, uint32_t row, weir_out *out);
	/* A timer of the current key fired (may be NULL). */
	int (*on_timer)(void *arg, weir_ctx *ctx, weir_time_domain d,
			int64_t ts, weir_out *out);
	void *arg;
	const weir_state_desc *states;
	int nstates;
} weir_process_fns;

/*
 * The low-level keyed operator: per record, with state, timers, side
 * outputs (weir_side_output on the returned stream, weir_out_side in the
 * function) and the current watermark.  Output event time is what the
 * function sets with weir_out_ts (default: the input record's or timer's).
 */
WEIR_API weir_stream *weir_process(weir_stream *keyed, const char *name,
			  const weir_schema *out_schema,
			  const weir_process_fns *fns);

/*
 * Two inputs, one function: `a` must be keyed; `b` is keyed on a column of
 * the same type (records of equal keys meet in one subtask), or a
 * weir_broadcast() stream, whose records reach every subtask and may write
 * the BROADCAST_MAP states (the keyed input may only read them).
 */
WEIR_API weir_stream *weir_connect_process(weir_stream *a, weir_stream *b,
				  const char *name,
				  const weir_schema *out_schema,
				  const weir_process_fns *fns);

/* ---- windows ----------------------------------------------------------------- */

typedef enum weir_window_kind {
	WEIR_WIN_TUMBLING = 1, /* [k*size + offset, +size) */
	WEIR_WIN_SLIDING = 2,  /* size, every slide */
	WEIR_WIN_SESSION = 3,  /* closes after `gap` ms without a record */
	WEIR_WIN_COUNT = 4,    /* per key: every `size` records (sliding:
				* the last `size` records every `slide`) */
} weir_window_kind;

typedef struct weir_window_spec {
	weir_window_kind kind;
	weir_time_domain time;    /* EVENT (default) or PROCESSING */
	int64_t size;             /* ms; records for COUNT */
	int64_t slide;            /* ms; records for COUNT (0 = size) */
	int64_t gap;              /* ms, SESSION */
	int64_t offset;           /* ms; 0 = aligned to the epoch */
	/* Event time: a window keeps its state until the watermark passes
	 * its end + allowed_lateness; a late record in that time updates it
	 * and fires it again.  Records later than that go to the late side
	 * output (weir_window_late). */
	int64_t allowed_lateness;
	/* Triggers besides the default (fire when the watermark or clock
	 * passes the window's end): fire the window again, without purging,
	 * each time its record count reaches a multiple of trigger_count; and
	 * every early_fire_ms of processing time, fire windows that changed
	 * since they last fired. 0 = off. */
	int64_t trigger_count;
	int64_t early_fire_ms;
} weir_window_spec;

/*
 * Parse "tumbling:SIZE", "sliding:SIZE:SLIDE", "session:GAP" (ms) or
 * "count:N[:SLIDE]" into *w, zeroing the other fields.  0 or -EINVAL.
 */
WEIR_API int weir_window_parse(const char *text, weir_window_spec *w);

/*
 * Built-in incremental aggregate per key and window.  Output columns:
 * the key column, window_start:ts, window_end:ts, count:i64, and, when
 * `column` (i64 or f64) is given, sum, min and max of it with its type.
 * One row per firing; output event time = window_end - 1.  For COUNT
 * windows window_start/window_end are the least event time of the
 * window's records and the greatest plus one.
 */
WEIR_API weir_stream *weir_window_stats(weir_stream *keyed, const char *name,
				   const weir_window_spec *w,
				   const char *column);

/* A user-defined incremental aggregate. */
typedef struct weir_window_aggregate_fns {
	uint32_t acc_size;  /* bytes; zeroed when a window opens */
	void (*add)(void *arg, void *acc, const weir_batch *in, uint32_t row);
	/* Session windows: fold `other` into acc when windows merge. */
	void (*merge)(void *arg, void *acc, const void *other);
	/* Write the result row(s) of a firing into out. */
	int (*result)(void *arg, const void *acc, weir_value key,
		      int64_t start, int64_t end, weir_out *out);
	void *arg;
} weir_window_aggregate_fns;

WEIR_API weir_stream *weir_window_aggregate(weir_stream *keyed, const char *name,
			     const weir_window_spec *w,
			     const weir_schema *out_schema,
			     const weir_window_aggregate_fns *fns);

/* Incremental reduce: output rows have the input's schema. */
WEIR_API weir_stream *weir_window_reduce(weir_stream *keyed, const char *name,
				const weir_window_spec *w, weir_reduce_fn fn,
				void *arg);

/* The rows of a window, for full window functions. */
typedef struct weir_rows weir_rows;
WEIR_API size_t weir_rows_count(const weir_rows *r);
/* Next row into cells[0..ncols) and *ts; false at the end.  Strings point
 * into the window's state, valid during the call. */
WEIR_API bool weir_rows_next(weir_rows *r, weir_value *cells, int64_t *ts);

typedef int (*weir_window_process_fn)(void *arg, weir_value key,
				      int64_t start, int64_t end,
				      weir_rows *rows, weir_out *out);

/* A full window function: all of the window's rows at each firing. */
WEIR_API weir_stream *weir_window_process(weir_stream *keyed, const char *name,
				 const weir_window_spec *w,
				 const weir_schema *out_schema,
				 weir_window_process_fn fn, void *arg);

/* The late records of a windowed (or interval-joined) stream: the input's
 * schema, unchanged. */
WEIR_API weir_stream *weir_window_late(weir_stream *windowed);

/* ---- joins -------------------------------------------------------------------- */

/*
 * Write the output row(s) for one pair; a and b are the rows of the two
 * inputs (cells in schema order).  NULL fn with NULL out_schema: the
 * output is a's columns then b's (a clashing name of b gets the prefix
 * "b_"), with event time as below.
 */
typedef int (*weir_join_fn)(void *arg, const weir_value *a, int64_t ts_a,
			    const weir_value *b, int64_t ts_b, weir_out *out);

/* Pairs of records with equal keys in the same window (time windows:
 * tumbling, sliding, session); output event time = window_end - 1. */
WEIR_API weir_stream *weir_window_join(weir_stream *a_keyed, weir_stream *b_keyed,
			      const char *name, const weir_window_spec *w,
			      const weir_schema *out_schema, weir_join_fn fn,
			      void *arg);

/* Pairs with equal keys and a.ts + lower_ms <= b.ts <= a.ts + upper_ms
 * (event time); output event time = max(a.ts, b.ts). */
WEIR_API weir_stream *weir_interval_join(weir_stream *a_keyed, weir_stream *b_keyed,
				const char *name, int64_t lower_ms,
				int64_t upper_ms,
				const weir_schema *out_schema, weir_join_fn fn,
				void *arg);

/*
 * The regular (unwindowed) streaming join of two append-only streams, as
 * Flink SQL's inner join: every record of either input is kept in its
 * input's state under its key and joined with every kept record of the
 * other input with an equal key, so over a whole run each pair of records
 * with equal keys is emitted exactly once, whichever arrives first.
 * Output event time = max(ts_a, ts_b); NULL fn and out_schema give a's
 * columns then b's, as for the joins above.
 *
 * Watermarks pass through (the minimum of the two inputs', as for every
 * operator); they neither fire nor expire anything here: a record is
 * joined whatever its event time (a record behind the watermark is joined
 * too, and its pairs may then be late downstream).  End of input emits
 * nothing more: every pair was emitted when its second record arrived.
 * Without a TTL, state grows with the input: bound it with state_ttl_ms,
 * a latest-only input, or use weir_interval_join (event-time bounds).
 */
typedef struct weir_join_conf {
	/* > 0: a kept record is forgotten state_ttl_ms of processing time
	 * after it arrived (as Flink's table.exec.state.ttl): records that
	 * arrive further apart than that may not be joined.  0: keep
	 * forever. */
	int64_t state_ttl_ms;
	/* Input b (a) is an upsert stream: keep only its latest record per
	 * key (the last to arrive; a versioned table).  A new record of b
	 * joins every kept a record, and from then on the a records that
	 * arrive join it instead of its predecessor. */
	bool b_latest_only;
	bool a_latest_only;
} weir_join_conf;

/* conf NULL: state kept forever, every record kept.  Both inputs keyed
 * on columns of the same type (ts and i64 match). */
WEIR_API weir_stream *weir_join(weir_stream *a_keyed, weir_stream *b_keyed,
		       const char *name, const weir_join_conf *conf,
		       const weir_schema *out_schema, weir_join_fn fn, void *arg);

/* ---- top-N -------------------------------------------------------------------- */

/*
 * The n best rows per key by `order_column` (any type; largest first when
 * `descending`), as an upsert stream: output rows are the input's columns
 * then "rank:i64" (1 = best).  Whenever a key's top n changes, the rows
 * whose rank changed are emitted (the new row at its rank and every row
 * below it, which moved down), so the last row seen per (key, rank) is
 * that rank's current row.  Ranks are never emptied: the input is
 * append-only, so a key's count of ranked rows only grows, up to n.
 *
 * Ties in order_column are broken by the other columns in schema order,
 * ascending (strings bytewise, f64 by IEEE total order), so the top n is
 * a function of the set of rows, whatever their arrival order, the
 * parallelism or the batch size; rows equal in every column are
 * interchangeable.  Changes of one key within one input batch are emitted
 * once, at the end of the batch, with event time the greatest of the rows
 * that caused them (with batch size 1: every change, at its row's time).
 * n from 1 to 2^20; a change moves the rows below it, so n is meant to be
 * small (tens to hundreds).
 */
WEIR_API weir_stream *weir_topn(weir_stream *keyed, const char *name, int n,
		       const char *order_column, bool descending);

#ifdef __cplusplus
}
#endif
#endif
