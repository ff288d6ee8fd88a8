/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Event time on the real runtime: watermark generation (bounded,
 * monotonic, punctuated; a watermark before every late record), the
 * minimum over inputs, idleness, and processing-time timers.  A recorder
 * operator written against the internal operator contract observes what
 * reaches it.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "ops.h"
#include "testenv.h"

/* ---- the recorder: a sink that checks what it sees ----------------------------- */

#define MAXREC 200000

static struct {
	long rows, late;        /* late: ts <= watermark on arrival */
	int64_t wm_at[MAXREC];  /* watermark on arrival of row i (arrival order) */
	int64_t ts[MAXREC];
	long wm_calls;
	int64_t last_wm;
	int64_t wm_before_eoi;  /* highest watermark below INT64_MAX */
	int64_t wm_at_done;     /* watermark when the busy input's last row arrived */
	bool regressed;
} rec;

static void rec_reset(void)
{
	memset(&rec, 0, sizeof(rec));
	rec.last_wm = INT64_MIN;
	rec.wm_before_eoi = INT64_MIN;
}

static void rec_process(task *t, int input, weir_batch *b)
{
	(void)input;
	for (uint32_t r = 0; r < b->rows; r++) {
		if (b->ts[r] <= t->watermark)
			rec.late++;
		if (rec.rows < MAXREC) {
			rec.wm_at[rec.rows] = t->watermark;
			rec.ts[rec.rows] = b->ts[r];
		}
		rec.rows++;
	}
	batch_release(b);
}

static void rec_watermark(task *t, int64_t wm)
{
	(void)t;
	if (wm <= rec.last_wm)
		rec.regressed = true;
	rec.last_wm = wm;
	rec.wm_calls++;
	if (wm != INT64_MAX)
		rec.wm_before_eoi = wm;
}

static const op_ops op_recorder = {
	.kind = "recorder", .process = rec_process, .watermark = rec_watermark,
};

static void add_recorder(weir_stream *in)
{
	weir_stream *s = stream_add_op(&in, 1, "recorder", "recorder", &op_recorder,
				       weir_stream_schema(in), NULL, NULL);
	cr_assert_not_null(s);
	weir_stream_set_parallelism(s, 1);
}

/* ---- sources ---------------------------------------------------------------------- */

/* Event times with disorder and some very late records: a pure function of
 * the row number, written to both ts and the column "t". */
static int64_t disordered_ts(uint64_t i)
{
	uint64_t h = i * 0x9e3779b97f4a7c15ULL;
	h ^= h >> 29;
	int64_t base = (int64_t)i * 10;
	int64_t jitter = (int64_t)(h % 200);       /* within 200 ms */
	if (h % 97 == 0)
		jitter += 3000;                     /* very late */
	return base - jitter;
}

static void fill_disordered(void *arg, uint64_t seed, uint64_t first, uint32_t n,
			    weir_batch *out)
{
	(void)arg;
	(void)seed;
	int64_t *t = weir_col_i64(out, 0), *p = weir_col_i64(out, 1);
	for (uint32_t r = 0; r < n; r++) {
		t[r] = disordered_ts(first + r);
		/* punctuation every 100 rows: "nothing below base - 500 follows" */
		p[r] = (first + r) % 100 == 99 ? (int64_t)(first + r) * 10 - 500 : INT64_MIN;
		out->ts[r] = 0; /* event time comes from column t */
	}
}

static weir_stream *disordered(weir_env *env, uint64_t count)
{
	weir_generator_conf g = {
		.count = count,
		.schema = weir_schema_parse(env, "t:i64,punct:i64"),
		.fill = fill_disordered,
	};
	weir_stream *s = weir_source_generator(env, "gen", &g);
	weir_stream_set_parallelism(s, 1);
	return s;
}

/* The watermark a bounded generator implies before each row (exact model). */
static void check_exact(uint64_t n, int64_t ooo)
{
	int64_t maxts = INT64_MIN, wm = INT64_MIN;
	long late = 0;
	cr_assert_eq(rec.rows, (long)n);
	for (uint64_t i = 0; i < n; i++) {
		int64_t ts = disordered_ts(i);
		cr_assert_eq(rec.ts[i], ts, "row %lu: ts %ld, expected %ld", (unsigned long)i,
			     (long)rec.ts[i], (long)ts);
		/* Never ahead of the exact watermark; equal to it at a late row. */
		cr_assert(rec.wm_at[i] <= wm, "row %lu: watermark %ld ahead of %ld",
			  (unsigned long)i, (long)rec.wm_at[i], (long)wm);
		if (ts <= wm) {
			late++;
			cr_assert_eq(rec.wm_at[i], wm, "late row %lu: watermark %ld, exact %ld",
				     (unsigned long)i, (long)rec.wm_at[i], (long)wm);
		}
		if (ts > maxts) {
			maxts = ts;
			wm = maxts - ooo - 1;
		}
	}
	cr_assert_eq(rec.late, late);
	cr_assert(late > 0, "the data has late records");
	cr_assert(!rec.regressed, "watermarks go forward only");
}

Test(time, bounded_watermark_is_exact_at_late_records_for_any_batch_size)
{
	const uint32_t sizes[] = { 1, 7, 1024 };
	for (size_t k = 0; k < ARRAY_SIZE(sizes); k++) {
		rec_reset();
		weir_env *env = env_p(2, sizes[k]);
		weir_watermark_strategy ws = { .kind = WEIR_WM_BOUNDED, .ts_column = "t",
					       .out_of_orderness_ms = 150 };
		weir_stream *s = weir_assign_watermarks(disordered(env, 20000), NULL, &ws);
		add_recorder(weir_rebalance(s));
		run_ok(env);
		check_exact(20000, 150);
		/* At least one watermark per batch (coalesced when unchanged). */
		cr_assert(rec.wm_calls >= (sizes[k] == 1024 ? 19 : 1000),
			  "batch %u: %ld watermarks", sizes[k], rec.wm_calls);
		cr_assert_eq(rec.last_wm, INT64_MAX, "end of input ends event time");
	}
}

Test(time, monotonic_watermark)
{
	rec_reset();
	weir_env *env = env_p(1, 64);
	weir_watermark_strategy ws = { .kind = WEIR_WM_MONOTONIC, .ts_column = "t" };
	add_recorder(weir_assign_watermarks(disordered(env, 5000), NULL, &ws));
	run_ok(env);
	check_exact(5000, 0);
}

Test(time, punctuated_watermark)
{
	rec_reset();
	weir_env *env = env_p(1, 256);
	weir_watermark_strategy ws = { .kind = WEIR_WM_PUNCTUATED, .ts_column = "t",
				       .punctuation_column = "punct" };
	add_recorder(weir_assign_watermarks(disordered(env, 5000), NULL, &ws));
	run_ok(env);
	int64_t wm = INT64_MIN;
	for (long i = 0; i < rec.rows; i++) {
		int64_t ts = disordered_ts((uint64_t)i);
		cr_assert(rec.wm_at[i] <= wm);
		if (ts <= wm)
			cr_assert_eq(rec.wm_at[i], wm);
		if (i % 100 == 99 && i * 10 - 500 > wm)
			wm = i * 10 - 500;
	}
	cr_assert_eq(rec.wm_before_eoi, 4999 * 10 - 500);
}

Test(time, strategy_errors_are_reported)
{
	weir_env *env = env_p(1, 64);
	weir_watermark_strategy ws = { .kind = WEIR_WM_BOUNDED, .ts_column = "nope" };
	cr_assert_null(weir_assign_watermarks(disordered(env, 10), NULL, &ws));
	cr_assert(strstr(weir_env_error(env), "no time column 'nope'"));
	weir_env_free(env);

	env = env_p(1, 64);
	ws = (weir_watermark_strategy){ .kind = WEIR_WM_PUNCTUATED, .ts_column = "t" };
	cr_assert_null(weir_assign_watermarks(disordered(env, 10), NULL, &ws));
	cr_assert(strstr(weir_env_error(env), "punctuation column"));
	weir_env_free(env);

	env = env_p(1, 64);
	ws = (weir_watermark_strategy){ .kind = WEIR_WM_BOUNDED, .out_of_orderness_ms = -1 };
	cr_assert_null(weir_assign_watermarks(disordered(env, 10), NULL, &ws));
	weir_env_free(env);
}

/* ---- minimum over inputs ------------------------------------------------------------ */

static void fill_stride(void *arg, uint64_t seed, uint64_t first, uint32_t n,
			weir_batch *out)
{
	int64_t stride = *(const int64_t *)arg;
	(void)seed;
	for (uint32_t r = 0; r < n; r++) {
		weir_col_i64(out, 0)[r] = (int64_t)(first + r) * stride;
		weir_col_i64(out, 1)[r] = 0;
	}
}

static weir_stream *in_order(weir_env *env, const char *name, uint64_t count,
			     double rate, const int64_t *stride)
{
	weir_generator_conf g = {
		.count = count, .rate = rate,
		.schema = weir_schema_parse(env, "t:i64,punct:i64"),
		.fill = fill_stride, .arg = (void *)stride,
	};
	weir_stream *s = weir_source_generator(env, name, &g);
	weir_stream_set_parallelism(s, 1);
	return s;
}

/*
 * Two in-order streams, one ten times faster in event time.  Every record
 * is on time for its own stream, so the merged stream has no late record
 * exactly when the operator's watermark is the minimum of its inputs' (with
 * the maximum, the slow stream's records would arrive behind it).
 */
Test(time, watermark_is_the_minimum_over_inputs)
{
	static const int64_t fast = 100, slow = 1;
	rec_reset();
	weir_env *env = env_p(2, 32);
	weir_watermark_strategy ws = { .kind = WEIR_WM_MONOTONIC, .ts_column = "t" };
	weir_stream *a = weir_assign_watermarks(in_order(env, "fast", 20000, 0, &fast), "wa", &ws);
	weir_stream *b = weir_assign_watermarks(in_order(env, "slow", 20000, 200000, &slow), "wb", &ws);
	add_recorder(weir_union(a, b));
	run_ok(env);
	cr_assert_eq(rec.rows, 40000);
	cr_assert_eq(rec.late, 0, "%ld records arrived behind the watermark", rec.late);
	cr_assert(!rec.regressed);
}

/* ---- idleness -------------------------------------------------------------------------- */

/* A source that sends one batch, then stays silent (without ending) until
 * the other input finished. */
static atomic_int other_done;

static int quiet_produce(task *t)
{
	if (!t->st) {
		weir_batch *b = batch_alloc(t->node->schema[0], 0);
		weir_col_i64(b, 0)[0] = 5;
		weir_col_i64(b, 1)[0] = 0;
		b->rows = 1;
		task_emit(t, 0, b);
		t->st = (void *)1;
		return 1;
	}
	if (atomic_load(&other_done))
		return -1;
	task_wait(t, now_ns() + 1000000, -1);
	return 0;
}

static void quiet_close(task *t) { t->st = NULL; }

static const op_ops op_quiet = {
	.kind = "quiet", .produce = quiet_produce, .close = quiet_close,
};

static void done_process(task *t, int input, weir_batch *b)
{
	(void)input;
	for (uint32_t r = 0; r < b->rows; r++)
		if (weir_col_i64(b, 0)[r] == 5000 * 1000) {
			rec.wm_at_done = rec.last_wm;
			atomic_store(&other_done, 1);
		}
	rec_process(t, input, b);
}

static const op_ops op_done_recorder = {
	.kind = "recorder", .process = done_process, .watermark = rec_watermark,
};

static void idle_case(int64_t idle_ms)
{
	static const int64_t stride = 1000;
	rec_reset();
	atomic_store(&other_done, 0);
	weir_env *env = env_p(2, 16);
	/* A generator node with its operator swapped for the quiet source. */
	weir_stream *q = in_order(env, "quiet", 1, 0, &stride);
	stream_node(q)->ops = &op_quiet;
	stream_node(q)->bounded = false;
	weir_watermark_strategy ws = { .kind = WEIR_WM_MONOTONIC, .ts_column = "t",
				       .idle_timeout_ms = idle_ms };
	weir_stream *a = weir_assign_watermarks(q, "wq", &ws);
	ws.idle_timeout_ms = 0;
	/* 0.5 s at least: the quiet input's 20 ms idle timeout must pass
	 * before the last fifth of it (0.1 s) however loaded the machine */
	weir_stream *b = weir_assign_watermarks(in_order(env, "busy", 5001, 10000, &stride),
						"wb", &ws);
	weir_stream *u = weir_union(a, b);
	weir_stream *s = stream_add_op(&u, 1, "recorder", "recorder", &op_done_recorder,
				       weir_stream_schema(u), NULL, NULL);
	weir_stream_set_parallelism(s, 1);
	run_ok(env);
}

Test(time, an_idle_input_does_not_hold_back_the_watermark)
{
	idle_case(20);
	cr_assert_eq(rec.rows, 5002);
	/* The quiet input's event time is 5; the busy one's reaches 5 000 000. */
	cr_assert(rec.wm_before_eoi > 4000000, "watermark %ld", (long)rec.wm_before_eoi);
}

Test(time, without_idleness_a_silent_input_holds_back_the_watermark)
{
	idle_case(0);
	cr_assert_eq(rec.rows, 5002);
	/* Checked while the quiet input is still open: once it ends (after
	 * this row), the busy input's last watermark may still be in flight
	 * and legitimately raise the minimum before end of input. */
	cr_assert(rec.wm_at_done <= 5, "watermark %ld", (long)rec.wm_at_done);
}
