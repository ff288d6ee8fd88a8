/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The latency harness (operators/latency.h) on the real runtime: the
 * source's schedule and columns at parallelism 1 and 2 (every record once,
 * stamped with exactly its due time, never emitted before it), stalls
 * that must show up as latency although the source is rate-limited (an
 * operator on the source's core sleeping 5 ms once, and the same across a
 * two-core exchange: the max reflects it, the records due during the stall
 * are late, the source emits what came due at once), the window sink
 * (one measurement per key and window whose end passed while the source
 * ran, none before the window's end), and the sinks' build errors.
 *
 * Lower bounds on time only: a loaded machine or a sanitizer build can
 * only make latencies larger.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "latency.h"
#include <weir/weir.h>

static weir_env *env_new(int cores, weir_idle_policy idle)
{
	weir_env *env = weir_env_new();
	weir_config *c = weir_env_config(env);
	c->parallelism = 1;
	c->cores = cores;
	c->pin = false;
	c->idle = idle;
	c->mode = WEIR_MODE_STREAMING;
	c->buffer_timeout_us = 0;
	c->batch_rows = 1024;
	return env;
}

static void run(weir_env *env)
{
	cr_assert_null(weir_env_error(env), "build error: %s", weir_env_error(env));
	cr_assert_eq(weir_env_execute(env, "latency-test", 0), 0);
	weir_env_free(env);
}

/* ---- schedule and columns ------------------------------------------------------------ */

typedef struct check {
	const latency_source_conf *conf;
	_Atomic uint64_t rows, seq_sum, bad;
} check;

static void check_rows(void *arg, const weir_batch *in, uint8_t *keep)
{
	check *k = arg; /* atomics: two subtasks call this at parallelism 2 */
	const int64_t *seq = weir_col_i64(in, 0), *key = weir_col_i64(in, 1),
		      *val = weir_col_i64(in, 2), *due = weir_col_i64(in, 3);
	uint64_t sum = 0, bad = 0;
	for (uint32_t i = 0; i < in->rows; i++) {
		keep[i] = 1;
		sum += (uint64_t)seq[i];
		if (seq[i] < 0 || (uint64_t)seq[i] >= k->conf->count ||
		    (uint64_t)due[i] != latency_intended_ns(k->conf, (uint64_t)seq[i]) ||
		    in->ts[i] != due[i] / 1000000 || key[i] < 0 || key[i] >= k->conf->keys ||
		    val[i] < 0 || val[i] >= 1000)
			bad++;
	}
	atomic_fetch_add(&k->rows, in->rows);
	atomic_fetch_add(&k->seq_sum, sum);
	atomic_fetch_add(&k->bad, bad);
}

static void schedule(int p, uint64_t rate, uint64_t count, weir_idle_policy idle)
{
	weir_env *env = env_new(p, idle);
	weir_env_config(env)->parallelism = p;
	latency_source_stats st = { 0 };
	latency_result *res = malloc(sizeof(*res));
	latency_source_conf c = { .rate = rate, .count = count, .keys = 7, .seed = 5,
				  .start_ns = (now_ns() / 1000000 + 20) * 1000000,
				  .stats = &st };
	check k = { .conf = &c };
	latency_sink_conf sk = { .result = res };
	cr_assert_not_null(res);
	latency_result_init(res);

	weir_stream *s = latency_source(env, "src", &c);
	s = weir_filter(s, "check", check_rows, &k);
	cr_assert_eq(latency_sink(s, "sink", &sk), 0);
	run(env);

	cr_assert_eq(k.bad, 0, "%llu rows with wrong columns", (unsigned long long)k.bad);
	cr_assert_eq(k.rows, count);
	cr_assert_eq(k.seq_sum, count * (count - 1) / 2, "every seq exactly once");
	cr_assert_eq(st.records, count);
	cr_assert_eq(st.start_ns, c.start_ns);
	cr_assert_eq(res->rows, count);
	cr_assert_eq(hist_count(&res->h), count);
	/* Never emitted before its time: no negative latency, and the last
	 * record left no earlier than it was due. */
	cr_assert_eq(res->h.under, 0);
	cr_assert_geq(res->h.min, 0);
	cr_assert_geq(st.last_ns, latency_intended_ns(&c, count - 1));
	cr_assert_geq(st.first_ns, c.start_ns);
	free(res);
}

Test(latency, schedule_and_columns)
{
	schedule(1, 200000, 20000, WEIR_IDLE_PARK);
	schedule(2, 200000, 20001, WEIR_IDLE_PARK);
	/* A rate that is not a divisor of 10^9 ns, and busy-poll. */
	schedule(1, 300007, 9000, WEIR_IDLE_BUSY_POLL);
}

/* ---- stalls ------------------------------------------------------------------------------ */

#define STALL_RATE 100000
#define STALL_COUNT 30000
#define STALL_SEQ 10000
#define STALL_NS 5000000

/* Pass rows through, sleeping 5 ms once, at the row with seq STALL_SEQ. */
static int stall_once(void *arg, const weir_batch *in, weir_batch *out)
{
	const int64_t *seq = weir_col_i64(in, 0);
	(void)arg;
	for (int c = 0; c < 4; c++)
		memcpy(weir_col_i64(out, c), weir_col_i64(in, c), in->rows * sizeof(int64_t));
	for (uint32_t i = 0; i < in->rows; i++)
		if (seq[i] == STALL_SEQ) {
			struct timespec ts = { 0, STALL_NS };
			nanosleep(&ts, NULL);
		}
	return 0;
}

static void stall(bool across_cores)
{
	weir_env *env = env_new(across_cores ? 2 : 1, WEIR_IDLE_PARK);
	latency_source_stats st = { 0 };
	latency_result *res = malloc(sizeof(*res));
	latency_source_conf c = { .rate = STALL_RATE, .count = STALL_COUNT, .keys = 10,
				  .stats = &st };
	latency_sink_conf sk = { .result = res };
	cr_assert_not_null(res);
	latency_result_init(res);

	weir_stream *s = latency_source(env, "src", &c);
	if (across_cores)
		s = weir_key_by(s, "key"); /* the map runs on the other core */
	s = weir_map(s, "stall", weir_stream_schema(s), stall_once, NULL);
	cr_assert_eq(latency_sink(s, "sink", &sk), 0);
	run(env);

	const hist *h = &res->h;
	cr_assert_eq(st.records, STALL_COUNT, "the rate-limited source emitted everything");
	cr_assert_eq(hist_count(h), STALL_COUNT);
	cr_assert_geq(h->max, STALL_NS, "max %lld ns does not show the 5 ms stall",
		      (long long)h->max);
	cr_assert_geq(hist_percentile(h, 100), STALL_NS);
	/* The 300 records due in the stall's first 3 ms waited at least 2 ms
	 * each (a source that kept pace with the stalled pipeline instead of
	 * its schedule would show one slow record). */
	uint64_t late = hist_count_at_least(h, 2000000);
	cr_assert_geq(late, 250, "only %llu records >= 2 ms", (unsigned long long)late);
	cr_assert_geq(hist_percentile(h, 99.5), 2000000 * 0.99);
	if (!across_cores) {
		/* The stalled source was behind schedule and then emitted
		 * everything that had come due in one batch. */
		cr_assert_geq(st.max_behind_ns, STALL_NS / 2);
		cr_assert_geq(st.max_batch, 400);
	}
	free(res);
}

Test(latency, stall_on_the_source_core_counts_as_latency)
{
	stall(false);
}

Test(latency, stall_across_an_exchange_counts_as_latency)
{
	stall(true);
}

/* ---- window sink --------------------------------------------------------------------- */

Test(latency, window_sink_measures_each_window_after_its_end)
{
	const int64_t size = 10, keys = 4;
	const uint64_t rate = 100000, count = 50000; /* 0.5 s: 50 windows */
	weir_env *env = env_new(2, WEIR_IDLE_PARK);
	latency_result *res = malloc(sizeof(*res));
	/* Start on a window boundary: every window full. */
	uint64_t start_ms = (now_ns() / 1000000 / size + 3) * size;
	latency_source_conf c = { .rate = rate, .count = count, .keys = keys,
				  .start_ns = start_ms * 1000000 };
	uint64_t last = latency_intended_ns(&c, count - 1);
	latency_sink_conf sk = { .from_ns = c.start_ns, .to_ns = last + 1, .result = res };
	weir_window_spec w = { .kind = WEIR_WIN_TUMBLING, .size = size };
	cr_assert_not_null(res);
	latency_result_init(res);

	weir_stream *s = latency_source(env, "src", &c);
	s = weir_window_stats(weir_key_by(s, "key"), "win", &w, "value");
	cr_assert_eq(latency_window_sink(s, "sink", &sk), 0);
	run(env);

	/* Windows whose end passed while the source ran: ends in
	 * (start, last]; the one still open at the end fires at end of
	 * input, is received, and is not measured. */
	uint64_t windows = 0;
	for (uint64_t e = start_ms + size; e * 1000000 <= last; e += size)
		windows++;
	cr_assert_eq(windows, 49);
	cr_assert_eq(res->rows, (windows + 1) * keys);
	cr_assert_eq(hist_count(&res->h), windows * keys);
	cr_assert_eq(res->h.under, 0, "a result arrived before its window ended");
	free(res);
}

/* ---- build errors ---------------------------------------------------------------------- */

Test(latency, build_errors)
{
	latency_result r;
	latency_sink_conf sk = { .result = &r };
	latency_source_conf c = { .rate = 1000, .count = 10 };

	weir_env *env = env_new(1, WEIR_IDLE_PARK);
	latency_source_conf none = { 0 };
	cr_assert_null(latency_source(env, "src", &none));
	cr_assert_not_null(weir_env_error(env));
	weir_env_free(env);

	env = env_new(1, WEIR_IDLE_PARK);
	weir_stream *s = latency_source(env, "src", &c);
	cr_assert_not_null(s);
	cr_assert_lt(latency_window_sink(s, "w", &sk), 0, "no window_end column");
	cr_assert_not_null(weir_env_error(env));
	weir_env_free(env);

	env = env_new(1, WEIR_IDLE_PARK);
	s = latency_source(env, "src", &c);
	latency_sink_conf no_result = { 0 };
	cr_assert_lt(latency_sink(s, "x", &no_result), 0);
	latency_sink_conf bad_col = { .column = "seqq", .result = &r };
	cr_assert_lt(latency_sink(s, "y", &bad_col), 0);
	weir_env_free(env);
	cr_assert_lt(latency_sink(NULL, "z", &sk), 0);
}
