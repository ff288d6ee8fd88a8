/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The latency harness's operators (latency.c), for perf/bench_latency and
 * the tests: a source that emits records on a fixed schedule, each stamped
 * with the time it was due, and sinks that record how long after that
 * time each row arrived, into a log-linear histogram (core/histogram.h).
 * Internal to the engine (not in include/weir/): jobs built with these
 * link the static libraries, as perf/ and tests/ do.
 *
 * No coordinated omission.  Record i of a source at rate R is due at
 * start + i/R and carries that time (`intended_ns`), not the time it was
 * actually emitted.  When the pipeline stalls -- an operator on the
 * source's core is slow, or backpressure holds the source -- the source
 * falls behind its schedule and, once it runs again, emits everything
 * that has come due at once (a batch at a time).  Each of those records
 * then shows the whole delay it suffered as latency, as the user of a
 * real feed would see it.  A source that instead waited 1/R after each
 * emission would quietly lower its rate during a stall and report one
 * slow record where hundreds were late.
 */
#ifndef WEIR_LATENCY_H
#define WEIR_LATENCY_H

#include "core.h"
#include "histogram.h"

/* Filled by the source subtasks as they close (main thread, after the
 * run); the caller zeroes it before the run. */
typedef struct latency_source_stats {
	uint64_t records;       /* emitted, all subtasks */
	uint64_t start_ns;      /* record 0's intended time */
	uint64_t first_ns;      /* now_ns() of the first emission */
	uint64_t last_ns;       /* now_ns() of the last emission */
	uint64_t max_behind_ns; /* most an emitted batch's first row was past
				 * its intended time when it left */
	uint64_t max_batch;     /* most rows in one emitted batch */
} latency_source_stats;

typedef struct latency_source_conf {
	uint64_t rate;       /* records per second over all subtasks, > 0 */
	uint64_t count;      /* records in all; 0 = unbounded */
	/* Intended time of record 0 (now_ns() clock, ns).  0: each subtask
	 * takes the next millisecond boundary at least 1 ms after its open(),
	 * so parallel subtasks are a few microseconds apart; set it for a
	 * common schedule (and a known one: the sinks' measuring window). */
	uint64_t start_ns;
	int64_t keys;        /* distinct keys (symbols); 0 = 100 */
	uint64_t seed;
	latency_source_stats *stats; /* may be NULL */
} latency_source_conf;

/*
 * A source of schema "seq:i64,key:i64,value:i64,intended_ns:i64".  Record
 * i (global, 0-based) has seq = i, a key uniform in [0, keys) and a value
 * uniform in [0, 1000) (both pure functions of seed and i, as the
 * generator's), intended_ns = latency_intended_ns(conf, i), and event time
 * (batch ts, ms) intended_ns / 10^6, so event-time windows follow the
 * schedule.  Subtask s of p emits the records i with i % p == s.
 *
 * Each produce() emits, in one batch (up to the batch size), every record
 * of the subtask that is due by now; when none is due it asks to be woken
 * at the next one's time (task_wait): the reactor sleeps until then under
 * the park policy and spins under busy-poll.  After each batch it emits
 * the watermark (its last record's event time) - 1: records of the same
 * millisecond may follow.  It ends after `count` records (bounded), and
 * does not replay after a restore (it is a measuring tool: it has no
 * position to save).  Returns the stream, or NULL after an env error.
 */
weir_stream *latency_source(weir_env *env, const char *name,
			    const latency_source_conf *conf);

/* Record i's intended time: start_ns + floor(i * 10^9 / rate) (conf's
 * start_ns must be set). */
static inline uint64_t latency_intended_ns(const latency_source_conf *c, uint64_t i)
{
	return c->start_ns + (uint64_t)((unsigned __int128)i * 1000000000u / c->rate);
}

/* What the sinks measured, merged over their subtasks as they close
 * (main thread, after the run).  latency_result_init() it before. */
typedef struct latency_result {
	hist h;            /* latencies in ns */
	uint64_t rows;     /* rows the sinks received, measured or not */
	uint64_t first_ns; /* arrival (now_ns()) of the first measured row */
	uint64_t last_ns;  /* ... and of the last one */
} latency_result;

void latency_result_init(latency_result *r);

typedef struct latency_sink_conf {
	/* The column holding the time a row is measured from: an i64 of ns
	 * (latency_sink; NULL = "intended_ns") or an i64/ts of ms
	 * (latency_window_sink; NULL = "window_end"). */
	const char *column;
	/* Measure only rows whose time is in [from_ns, to_ns) (now_ns()
	 * clock); to_ns = 0: no upper bound.  from_ns excludes a warm-up. */
	uint64_t from_ns, to_ns;
	latency_result *result; /* required; must outlive the run */
} latency_sink_conf;

/*
 * A sink recording now_ns() - intended_ns for each row (one clock read per
 * batch: the rows of a batch arrive together) into a histogram of its
 * own subtask, merged into conf->result when it closes.  0, or -EINVAL
 * after an env error (no such i64 column, no result).
 */
int latency_sink(weir_stream *in, const char *name, const latency_sink_conf *conf);

/*
 * A sink for window results: records now_ns() - window_end (ms -> ns), the
 * time from the moment the watermark could pass the window's end to the
 * result's arrival (see latency.c for why, with event time = intended
 * time, that moment is window_end itself).  Windows that fire only at end
 * of input (their end after the last record) must be left out with
 * conf->to_ns: their end never passed while the source ran.
 */
int latency_window_sink(weir_stream *in, const char *name,
			const latency_sink_conf *conf);

#endif
