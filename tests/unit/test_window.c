/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Windows and window joins (operators/window.c) on the real runtime.
 * Inputs are pure functions of the row number; expected results are
 * computed here by brute force over the input (every window scanned over
 * every record, sessions simulated naively), using the exact watermark the
 * generator implies before each record (see operators/watermarks.c: a
 * record that is late meets exactly that watermark, so results do not
 * depend on batch size or parallelism).  Every event-time test runs at
 * parallelism 1, 2 and 4 with batches of 1 and 1024 rows and compares the
 * sorted output with the expected rows.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TESTENV_STREAMING
#include "ops.h"
#include "window.h"
#include "testenv.h"

/* test hook of operators/window.c */

TestSuite(window, .init = testenv_mkdir, .fini = testenv_rmdir, .timeout = 120);

/* ---- sorted line vectors -------------------------------------------------------- */

typedef struct svec {
	char **v;
	size_t n, cap;
} svec;

static void sv_add(svec *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sv_add(svec *s, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 256;
		s->v = realloc(s->v, s->cap * sizeof(char *));
		cr_assert_not_null(s->v);
	}
	s->v[s->n++] = strdup(buf);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void sv_sort(svec *s)
{
	if (s->n)
		qsort(s->v, s->n, sizeof(char *), cmp_str);
}

static void sv_free(svec *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static svec read_lines(const char *file)
{
	svec s = { 0 };
	char buf[1024];
	FILE *f = fopen(file, "r");
	cr_assert_not_null(f, "no output file %s", file);
	while (fgets(buf, sizeof(buf), f)) {
		buf[strcspn(buf, "\n")] = 0;
		sv_add(&s, "%s", buf);
	}
	fclose(f);
	sv_sort(&s);
	return s;
}

/* Compare the sorted lines of `file` with the sorted expected lines. */
static void expect_file(const char *file, svec *exp, const char *what)
{
	svec got = read_lines(file);
	sv_sort(exp);
	size_t i = 0;
	while (i < got.n && i < exp->n && !strcmp(got.v[i], exp->v[i]))
		i++;
	if (!(i == got.n && i == exp->n) && getenv("WIN_DEBUG")) {
		for (size_t q = i > 4 ? i - 4 : 0; q < i + 6; q++)
			fprintf(stderr, "%zu got %-40s exp %s\n", q, q < got.n ? got.v[q] : "",
				q < exp->n ? exp->v[q] : "");
	}
	cr_assert(i == got.n && i == exp->n,
		  "%s: %zu rows, expected %zu; first difference at sorted row %zu: "
		  "got '%s', expected '%s'", what, got.n, exp->n, i,
		  i < got.n ? got.v[i] : "(end)", i < exp->n ? exp->v[i] : "(end)");
	sv_free(&got);
}

/* ---- the input: a pure function of the row number ------------------------------ */

typedef struct gen_params {
	int keys;
	int64_t step;        /* event time advances by this per row */
	int64_t jitter;      /* rows are up to this much earlier */
	int64_t late_every;  /* about one row in this many is very late (0: none) */
	int64_t very_late;
	uint64_t salt;
	bool str_keys;
	uint64_t n;
} gen_params;

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static int64_t in_ts(const gen_params *g, uint64_t i)
{
	uint64_t h = mix(i ^ g->salt);
	int64_t ts = (int64_t)i * g->step - (int64_t)(h % (uint64_t)(g->jitter + 1));
	if (g->late_every && (h >> 20) % (uint64_t)g->late_every == 0)
		ts -= g->very_late;
	return ts;
}

static int64_t in_key(const gen_params *g, uint64_t i)
{
	return (int64_t)((mix(i * 31 + 7 + g->salt) >> 11) % (uint64_t)g->keys);
}

static int64_t in_val(const gen_params *g, uint64_t i)
{
	return (int64_t)(mix(i + 1000003 + g->salt) % 1000) - 300;
}

static void fill_rows(void *arg, uint64_t seed, uint64_t first, uint32_t n,
		      weir_batch *out)
{
	const gen_params *g = arg;
	(void)seed;
	for (uint32_t r = 0; r < n; r++) {
		uint64_t i = first + r;
		if (g->str_keys) {
			char k[16];
			int len = snprintf(k, sizeof(k), "key-%lld", (long long)in_key(g, i));
			cr_assert_eq(weir_batch_set_str(out, 0, r, k, (size_t)len), 0);
		} else {
			weir_col_i64(out, 0)[r] = in_key(g, i);
		}
		weir_col_i64(out, 1)[r] = in_val(g, i);
		weir_col_i64(out, 2)[r] = in_ts(g, i);
		out->ts[r] = 0;
	}
}

/* One source subtask, event time from column t, bounded out-of-orderness;
 * keyed by k. */
static weir_stream *keyed_input(weir_env *env, const gen_params *g, int64_t ooo,
				double rate)
{
	weir_generator_conf gc = {
		.count = g->n,
		.rate = rate,
		.schema = weir_schema_parse(env, g->str_keys ? "k:str,v:i64,t:i64"
							      : "k:i64,v:i64,t:i64"),
		.fill = fill_rows,
		.arg = (void *)g,
	};
	weir_stream *s = weir_source_generator(env, "gen", &gc);
	weir_stream_set_parallelism(s, 1);
	weir_watermark_strategy ws = { .kind = WEIR_WM_BOUNDED, .ts_column = "t",
				       .out_of_orderness_ms = ooo };
	s = weir_assign_watermarks(s, "wm", &ws);
	return weir_key_by(s, "k");
}

/* The model of the input: rows and the exact watermark before each. */
typedef struct model {
	size_t n;
	int64_t *ts, *key, *val, *wm;
	bool str_keys;
} model;

static model model_new(const gen_params *g, int64_t ooo)
{
	model m = { .n = g->n, .str_keys = g->str_keys };
	m.ts = calloc(m.n, 8);
	m.key = calloc(m.n, 8);
	m.val = calloc(m.n, 8);
	m.wm = calloc(m.n, 8);
	int64_t maxts = INT64_MIN;
	for (size_t i = 0; i < m.n; i++) {
		m.wm[i] = maxts == INT64_MIN ? INT64_MIN : maxts - ooo - 1;
		m.ts[i] = in_ts(g, i);
		m.key[i] = in_key(g, i);
		m.val[i] = in_val(g, i);
		if (m.ts[i] > maxts)
			maxts = m.ts[i];
	}
	return m;
}

static void model_free(model *m)
{
	free(m->ts);
	free(m->key);
	free(m->val);
	free(m->wm);
}

static const char *key_str(const model *m, int64_t k)
{
	static char b[4][32];
	static int i;
	i = (i + 1) % 4;
	if (m->str_keys)
		snprintf(b[i], sizeof(b[i]), "key-%lld", (long long)k);
	else
		snprintf(b[i], sizeof(b[i]), "%lld", (long long)k);
	return b[i];
}

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* ---- brute force: tumbling and sliding windows -------------------------------------- */

typedef struct macc {
	int64_t n, sum, min, max, maxt;
} macc;

static void acc_add(macc *a, int64_t v, int64_t t)
{
	if (a->n == 0 || v < a->min)
		a->min = v;
	if (a->n == 0 || v > a->max)
		a->max = v;
	if (a->n == 0 || t > a->maxt)
		a->maxt = t;
	a->n++;
	a->sum += v;
}

enum fmt { FMT_AGG = 1, FMT_REDUCE };

static void emit_acc(svec *out, const model *m, enum fmt f, int64_t k, int64_t s,
		     int64_t e, const macc *a)
{
	if (f == FMT_AGG)
		sv_add(out, "%s,%lld,%lld,%lld,%lld,%lld,%lld", key_str(m, k), (long long)s,
		       (long long)e, (long long)a->n, (long long)a->sum, (long long)a->min,
		       (long long)a->max);
	else
		sv_add(out, "%s,%lld,%lld", key_str(m, k), (long long)a->sum, (long long)a->maxt);
}

typedef struct kw {
	int64_t key, start;
} kw;

static int cmp_kw(const void *a, const void *b)
{
	const kw *x = a, *y = b;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* Expected firings of tumbling/sliding event-time windows (rows of `out`)
 * and late records (rows of `late`), from the definitions alone. */
static void expect_time(const model *m, const weir_window_spec *w, enum fmt f,
			svec *out, svec *late)
{
	int64_t slide = w->kind == WEIR_WIN_SLIDING ? w->slide : w->size;
	int64_t L = w->allowed_lateness, tc = w->trigger_count;
	kw *wins = NULL;
	size_t nw = 0, cap = 0;
	bool *member = calloc(m->n, 1), *taken = calloc(m->n, 1);

	for (size_t i = 0; i < m->n; i++) {
		int64_t last = floor_div(m->ts[i] - w->offset, slide) * slide + w->offset;
		for (int64_t s = last; s + w->size > m->ts[i]; s -= slide) {
			if (nw == cap) {
				cap = cap ? cap * 2 : 1024;
				wins = realloc(wins, cap * sizeof(kw));
			}
			wins[nw++] = (kw){ m->key[i], s };
		}
	}
	qsort(wins, nw, sizeof(kw), cmp_kw);
	for (size_t q = 0; q < nw; q++) {
		if (q && !cmp_kw(&wins[q], &wins[q - 1]))
			continue;
		int64_t k = wins[q].key, s = wins[q].start, e = s + w->size;
		size_t F = 0;
		while (F < m->n && m->wm[F] < e - 1)
			F++;
		macc a = { 0 };
		for (size_t i = 0; i < F; i++) {
			if (m->key[i] != k || m->ts[i] < s || m->ts[i] >= e)
				continue;
			member[i] = taken[i] = true;
			acc_add(&a, m->val[i], m->ts[i]);
			if (tc && a.n % tc == 0)
				emit_acc(out, m, f, k, s, e, &a);
		}
		if (a.n)
			emit_acc(out, m, f, k, s, e, &a); /* the watermark passed e - 1 */
		for (size_t i = F; i < m->n; i++) {
			if (m->key[i] != k || m->ts[i] < s || m->ts[i] >= e)
				continue;
			member[i] = true;
			if (e - 1 + L > m->wm[i]) {
				taken[i] = true;
				acc_add(&a, m->val[i], m->ts[i]);
				emit_acc(out, m, f, k, s, e, &a); /* fires again */
			}
		}
	}
	if (getenv("WIN_DEBUG"))
		fprintf(stderr, "model: %zu windows, %zu firings\n", nw, out->n);
	for (size_t i = 0; late && i < m->n; i++)
		if (member[i] && !taken[i])
			sv_add(late, "%s,%lld,%lld", key_str(m, m->key[i]), (long long)m->val[i],
			       (long long)m->ts[i]);
	free(wins);
	free(member);
	free(taken);
}

/* ---- brute force: sessions, simulated naively ------------------------------------------ */

typedef struct msess {
	int64_t key, start, end, fired_end;
	macc a;
	bool live;
} msess;

static void expect_sessions(const model *m, int64_t gap, int64_t L, svec *out,
			    svec *late)
{
	msess *ss = calloc(m->n, sizeof(msess));
	size_t ns = 0;

	for (size_t i = 0; i <= m->n; i++) {
		int64_t wm = i < m->n ? m->wm[i] : INT64_MAX;
		for (size_t q = 0; q < ns; q++) {
			msess *x = &ss[q];
			if (!x->live)
				continue;
			if (x->end - 1 <= wm && x->fired_end != x->end) {
				emit_acc(out, m, FMT_AGG, x->key, x->start, x->end, &x->a);
				x->fired_end = x->end;
			}
			if (wm == INT64_MAX || x->end - 1 + L <= wm)
				x->live = false;
		}
		if (i == m->n)
			break;
		int64_t k = m->key[i], ts = m->ts[i], ms = ts, me = ts + gap;
		int nover = 0;
		msess *one = NULL;
		for (size_t q = 0; q < ns; q++) {
			msess *x = &ss[q];
			if (!x->live || x->key != k || !(x->start < ts + gap && ts < x->end))
				continue;
			nover++;
			one = x;
			if (x->start < ms)
				ms = x->start;
			if (x->end > me)
				me = x->end;
		}
		if (nover == 0 && me - 1 + L <= wm) {
			sv_add(late, "%s,%lld,%lld", key_str(m, k), (long long)m->val[i],
			       (long long)ts);
			continue;
		}
		msess *t;
		if (nover == 1 && one->start == ms && one->end == me) {
			t = one;
		} else {
			t = &ss[ns++];
			*t = (msess){ .key = k, .start = ms, .end = me, .fired_end = INT64_MIN,
				      .live = true };
			for (size_t q = 0; q + 1 < ns; q++) {
				msess *x = &ss[q];
				if (!x->live || x->key != k || !(x->start < ts + gap && ts < x->end))
					continue;
				x->live = false;
				if (x->a.n == 0)
					continue;
				if (t->a.n == 0 || x->a.min < t->a.min)
					t->a.min = x->a.min;
				if (t->a.n == 0 || x->a.max > t->a.max)
					t->a.max = x->a.max;
				t->a.n += x->a.n;
				t->a.sum += x->a.sum;
			}
		}
		acc_add(&t->a, m->val[i], ts);
		if (t->end - 1 <= wm) {
			emit_acc(out, m, FMT_AGG, k, t->start, t->end, &t->a);
			t->fired_end = t->end;
		}
	}
	free(ss);
}

/* ---- the matrix: parallelism 1, 2, 4 x batches of 1 and 1024 rows ---------------------- */

static const int pars[] = { 1, 2, 4 };
static const uint32_t batches[] = { 1, 1024 };

typedef weir_stream *(*build_fn)(weir_stream *keyed, const weir_window_spec *w,
				 void *arg);

static weir_stream *build_aggregate(weir_stream *keyed, const weir_window_spec *w,
				    void *arg)
{
	(void)arg;
	return weir_window_stats(keyed, "win", w, "v");
}

/* Run `build` over the input for every (parallelism, batch size) and
 * compare with the expected rows (and late rows, if `late`). */
static void run_matrix(const gen_params *g, int64_t ooo, const weir_window_spec *w,
		       build_fn build, void *arg, svec *exp, svec *late)
{
	for (size_t pi = 0; pi < ARRAY_SIZE(pars); pi++)
		for (size_t bi = 0; bi < ARRAY_SIZE(batches); bi++) {
			weir_env *env = env_p(pars[pi], batches[bi]);
			weir_stream *k = keyed_input(env, g, ooo, 0);
			weir_stream *out = build(k, w, arg);
			if (late)
				weir_sink_csv(weir_window_late(out), "late", path("late.csv"));
			weir_sink_csv(out, "out", path("out.csv"));
			run_ok(env);
			char what[64];
			snprintf(what, sizeof(what), "p=%d batch=%u", pars[pi], batches[bi]);
			expect_file(path("out.csv"), exp, what);
			if (late) {
				snprintf(what, sizeof(what), "late rows, p=%d batch=%u", pars[pi],
					 batches[bi]);
				expect_file(path("late.csv"), late, what);
			}
		}
}

/* ---- tumbling, sliding, lateness, triggers ------------------------------------------------- */

Test(window, tumbling_event_time_with_offset_and_negative_times)
{
	gen_params g = { .keys = 5, .step = 10, .jitter = 40, .n = 4000, .salt = 1 };
	weir_window_spec w = { .kind = WEIR_WIN_TUMBLING, .size = 100, .offset = 30 };
	model m = model_new(&g, 50);
	svec exp = { 0 }, late = { 0 };
	expect_time(&m, &w, FMT_AGG, &exp, &late);
	cr_assert_eq(late.n, 0);
	cr_assert(m.ts[0] < 0 || m.ts[1] < 0 || m.ts[2] < 0, "want negative times too");
	run_matrix(&g, 50, &w, build_aggregate, NULL, &exp, &late);
	sv_free(&exp);
	sv_free(&late);
	model_free(&m);
}

Test(window, tumbling_string_keys)
{
	gen_params g = { .keys = 7, .step = 10, .jitter = 40, .n = 3000, .salt = 2,
			 .str_keys = true };
	weir_window_spec w = { .kind = WEIR_WIN_TUMBLING, .size = 250 };
	model m = model_new(&g, 50);
	svec exp = { 0 };
	expect_time(&m, &w, FMT_AGG, &exp, NULL);
	run_matrix(&g, 50, &w, build_aggregate, NULL, &exp, NULL);
	sv_free(&exp);
	model_free(&m);
}

Test(window, tumbling_lateness_refires_and_late_side_output)
{
	/* disorder beyond the out-of-orderness, very late rows, lateness
	 * 300 ms: re-firings with cumulative results, exact late rows */
	gen_params g = { .keys = 4, .step = 10, .jitter = 200, .late_every = 40,
			 .very_late = 2000, .n = 5000, .salt = 3 };
	weir_window_spec w = { .kind = WEIR_WIN_TUMBLING, .size = 200,
			       .allowed_lateness = 300 };
	model m = model_new(&g, 50);
	svec exp = { 0 }, late = { 0 };
	expect_time(&m, &w, FMT_AGG, &exp, &late);
	cr_assert_gt(late.n, 10, "the input should have late rows");
	run_matrix(&g, 50, &w, build_aggregate, NULL, &exp, &late);
	sv_free(&exp);
	sv_free(&late);
	model_free(&m);
}

Test(window, sliding_with_offset_lateness_and_late_rows)
{
	gen_params g = { .keys = 3, .step = 10, .jitter = 150, .late_every = 50,
			 .very_late = 1500, .n = 3000, .salt = 4 };
	weir_window_spec w = { .kind = WEIR_WIN_SLIDING, .size = 200, .slide = 50,
			       .offset = 20, .allowed_lateness = 100 };
	model m = model_new(&g, 30);
	svec exp = { 0 }, late = { 0 };
	expect_time(&m, &w, FMT_AGG, &exp, &late);
	cr_assert_gt(late.n, 5);
	run_matrix(&g, 30, &w, build_aggregate, NULL, &exp, &late);
	sv_free(&exp);
	sv_free(&late);
	model_free(&m);
}

Test(window, sliding_with_gaps_drops_rows_between_windows)
{
	gen_params g = { .keys = 3, .step = 7, .jitter = 20, .n = 2000, .salt = 5 };
	weir_window_spec w = { .kind = WEIR_WIN_SLIDING, .size = 50, .slide = 120 };
	model m = model_new(&g, 30);
	svec exp = { 0 }, late = { 0 };
	expect_time(&m, &w, FMT_AGG, &exp, &late);
	run_matrix(&g, 30, &w, build_aggregate, NULL, &exp, &late);
	sv_free(&exp);
	sv_free(&late);
	model_free(&m);
}

Test(window, count_trigger_fires_without_purging)
{
	gen_params g = { .keys = 3, .step = 10, .jitter = 100, .n = 3000, .salt = 6 };
	weir_window_spec w = { .kind = WEIR_WIN_TUMBLING, .size = 500, .trigger_count = 7 };
	model m = model_new(&g, 50);
	svec exp = { 0 };
	/* late rows exist and go to the dead letters (no late output here),
	 * with a warning per subtask at close: not wanted in the test log */
	log_set_level(LOG_ERROR);
	expect_time(&m, &w, FMT_AGG, &exp, NULL);
	run_matrix(&g, 50, &w, build_aggregate, NULL, &exp, NULL);
	sv_free(&exp);
	model_free(&m);
}

/* reduce: v summed, t the greatest */
static void reduce_sum_maxt(void *arg, weir_value *acc, const weir_value *in,
			    const weir_schema *s)
{
	(void)arg;
	(void)s;
	acc[1].i64 += in[1].i64;
	if (in[2].i64 > acc[2].i64)
		acc[2].i64 = in[2].i64;
}

static weir_stream *build_reduce(weir_stream *keyed, const weir_window_spec *w,
				 void *arg)
{
	(void)arg;
	return weir_window_reduce(keyed, "win", w, reduce_sum_maxt, NULL);
}

Test(window, reduce_over_sliding_windows_with_string_keys)
{
	gen_params g = { .keys = 4, .step = 10, .jitter = 100, .late_every = 60,
			 .very_late = 1000, .n = 2500, .salt = 7, .str_keys = true };
	weir_window_spec w = { .kind = WEIR_WIN_SLIDING, .size = 300, .slide = 100,
			       .allowed_lateness = 200 };
	model m = model_new(&g, 40);
	svec exp = { 0 }, late = { 0 };
	expect_time(&m, &w, FMT_REDUCE, &exp, &late);
	run_matrix(&g, 40, &w, build_reduce, NULL, &exp, &late);
	sv_free(&exp);
	sv_free(&late);
	model_free(&m);
}

/* ---- sessions ----------------------------------------------------------------------- */

Test(window, sessions_merge_with_lateness_and_late_rows)
{
	/* sparse keys: per key about one row every 60 ms, gap 50 */
	gen_params g = { .keys = 6, .step = 10, .jitter = 120, .late_every = 50,
			 .very_late = 800, .n = 4000, .salt = 8 };
	model m = model_new(&g, 40);
	for (int64_t L = 0; L <= 150; L += 150) {
		weir_window_spec w = { .kind = WEIR_WIN_SESSION, .gap = 50,
				       .allowed_lateness = L };
		svec exp = { 0 }, late = { 0 };
		expect_sessions(&m, 50, L, &exp, &late);
		cr_assert_gt(late.n, 5);
		run_matrix(&g, 40, &w, build_aggregate, NULL, &exp, &late);
		sv_free(&exp);
		sv_free(&late);
	}
	model_free(&m);
}

/* user aggregate: count, sum, min, max, like the built-in one */
typedef struct uacc {
	int64_t n, sum, min, max;
} uacc;

static void uagg_add(void *arg, void *acc, const weir_batch *in, uint32_t row)
{
	uacc *a = acc;
	int64_t v = weir_col_i64(in, 1)[row];
	(void)arg;
	if (a->n == 0 || v < a->min)
		a->min = v;
	if (a->n == 0 || v > a->max)
		a->max = v;
	a->n++;
	a->sum += v;
}

static void uagg_merge(void *arg, void *acc, const void *other)
{
	uacc *a = acc;
	const uacc *o = other;
	(void)arg;
	if (o->n == 0)
		return;
	if (a->n == 0) {
		*a = *o;
		return;
	}
	a->n += o->n;
	a->sum += o->sum;
	if (o->min < a->min)
		a->min = o->min;
	if (o->max > a->max)
		a->max = o->max;
}

static int uagg_result(void *arg, const void *acc, weir_value key, int64_t start,
		       int64_t end, weir_out *out)
{
	const uacc *a = acc;
	(void)arg;
	weir_out_i64(out, 0, key.i64);
	weir_out_i64(out, 1, start);
	weir_out_i64(out, 2, end);
	weir_out_i64(out, 3, a->n);
	weir_out_i64(out, 4, a->sum);
	weir_out_i64(out, 5, a->min);
	weir_out_i64(out, 6, a->max);
	weir_out_emit(out);
	return 0;
}

static weir_stream *build_uagg(weir_stream *keyed, const weir_window_spec *w, void *arg)
{
	static const weir_window_aggregate_fns fns = {
		.acc_size = sizeof(uacc), .add = uagg_add, .merge = uagg_merge,
		.result = uagg_result,
	};
	(void)arg;
	const weir_schema *os = weir_schema_parse(stream_env(keyed),
		"k:i64,window_start:ts,window_end:ts,count:i64,sum:i64,min:i64,max:i64");
	return weir_window_aggregate(keyed, "win", w, os, &fns);
}

/* full window function: the same numbers from the buffered rows */
static int wproc(void *arg, weir_value key, int64_t start, int64_t end,
		 weir_rows *rows, weir_out *out)
{
	weir_value cells[3];
	int64_t ts, n = 0, sum = 0, mn = 0, mx = 0;
	(void)arg;
	cr_assert_gt(weir_rows_count(rows), 0);
	while (weir_rows_next(rows, cells, &ts)) {
		int64_t v = cells[1].i64;
		cr_assert_eq(ts, cells[2].i64); /* event time travels with the row */
		cr_assert(ts >= start && ts < end);
		if (n == 0 || v < mn)
			mn = v;
		if (n == 0 || v > mx)
			mx = v;
		n++;
		sum += v;
	}
	cr_assert_eq((size_t)n, weir_rows_count(rows));
	weir_out_i64(out, 0, key.i64);
	weir_out_i64(out, 1, start);
	weir_out_i64(out, 2, end);
	weir_out_i64(out, 3, n);
	weir_out_i64(out, 4, sum);
	weir_out_i64(out, 5, mn);
	weir_out_i64(out, 6, mx);
	weir_out_emit(out);
	return 0;
}

static weir_stream *build_process(weir_stream *keyed, const weir_window_spec *w,
				  void *arg)
{
	(void)arg;
	const weir_schema *os = weir_schema_parse(stream_env(keyed),
		"k:i64,window_start:ts,window_end:ts,count:i64,sum:i64,min:i64,max:i64");
	return weir_window_process(keyed, "win", w, os, wproc, NULL);
}

Test(window, sessions_user_aggregate_and_process_function)
{
	gen_params g = { .keys = 5, .step = 10, .jitter = 100, .late_every = 70,
			 .very_late = 600, .n = 2500, .salt = 9 };
	weir_window_spec w = { .kind = WEIR_WIN_SESSION, .gap = 45, .allowed_lateness = 60 };
	model m = model_new(&g, 30);
	svec exp = { 0 }, late = { 0 };
	expect_sessions(&m, 45, 60, &exp, &late);
	run_matrix(&g, 30, &w, build_aggregate, NULL, &exp, &late);
	run_matrix(&g, 30, &w, build_uagg, NULL, &exp, &late);
	run_matrix(&g, 30, &w, build_process, NULL, &exp, &late);
	sv_free(&exp);
	sv_free(&late);
	model_free(&m);
}

/* Explicit rows: (key, ts) */
typedef struct fixed_rows {
	int n;
	int64_t k[16], t[16];
} fixed_rows;

static void fill_fixed(void *arg, uint64_t seed, uint64_t first, uint32_t n,
		       weir_batch *out)
{
	const fixed_rows *f = arg;
	(void)seed;
	for (uint32_t r = 0; r < n; r++) {
		weir_col_i64(out, 0)[r] = f->k[first + r];
		weir_col_i64(out, 1)[r] = 1;
		weir_col_i64(out, 2)[r] = f->t[first + r];
	}
}

Test(window, sessions_bridge_and_touching_sessions_stay_apart)
{
	/* key 1: [100,140) and [170,210), then 135 bridges them: one session
	 * [100,210) of 3.  key 2: 100 and 140 only touch: two sessions.
	 * key 3: 100, 139 overlap: one. */
	fixed_rows f = { .n = 7, .k = { 1, 1, 2, 2, 3, 3, 1 },
			 .t = { 100, 170, 100, 140, 100, 139, 135 } };
	for (size_t pi = 0; pi < ARRAY_SIZE(pars); pi++)
		for (size_t bi = 0; bi < ARRAY_SIZE(batches); bi++) {
			weir_env *env = env_p(pars[pi], batches[bi]);
			weir_generator_conf gc = {
				.count = (uint64_t)f.n,
				.schema = weir_schema_parse(env, "k:i64,v:i64,t:i64"),
				.fill = fill_fixed, .arg = &f,
			};
			weir_stream *s = weir_source_generator(env, "gen", &gc);
			weir_stream_set_parallelism(s, 1);
			weir_watermark_strategy ws = { .kind = WEIR_WM_BOUNDED, .ts_column = "t",
						       .out_of_orderness_ms = 100 };
			s = weir_key_by(weir_assign_watermarks(s, "wm", &ws), "k");
			weir_window_spec w = { .kind = WEIR_WIN_SESSION, .gap = 40 };
			weir_sink_csv(weir_window_stats(s, "win", &w, NULL), "out",
				      path("out.csv"));
			run_ok(env);
			svec exp = { 0 };
			sv_add(&exp, "1,100,210,3");
			sv_add(&exp, "2,100,140,1");
			sv_add(&exp, "2,140,180,1");
			sv_add(&exp, "3,100,179,2");
			expect_file(path("out.csv"), &exp, "sessions");
			sv_free(&exp);
		}
}

/* ---- count windows ---------------------------------------------------------------------- */

static void expect_count(const model *m, int64_t N, int64_t S, svec *out)
{
	int64_t keys = 0;
	for (size_t i = 0; i < m->n; i++)
		if (m->key[i] + 1 > keys)
			keys = m->key[i] + 1;
	size_t *idx = malloc(m->n * sizeof(size_t));
	for (int64_t k = 0; k < keys; k++) {
		size_t c = 0;
		for (size_t i = 0; i < m->n; i++)
			if (m->key[i] == k)
				idx[c++] = i;
		for (size_t j = 1; j <= c; j++) {
			if (j % (size_t)S)
				continue;
			macc a = { 0 };
			int64_t mint = INT64_MAX;
			size_t from = j > (size_t)N ? j - (size_t)N : 0;
			for (size_t q = from; q < j; q++) {
				acc_add(&a, m->val[idx[q]], m->ts[idx[q]]);
				if (m->ts[idx[q]] < mint)
					mint = m->ts[idx[q]];
			}
			emit_acc(out, m, FMT_AGG, k, mint, a.maxt + 1, &a);
		}
	}
	free(idx);
}

Test(window, count_windows_tumbling_and_sliding)
{
	gen_params g = { .keys = 5, .step = 10, .jitter = 300, .late_every = 20,
			 .very_late = 5000, .n = 3000, .salt = 10 };
	model m = model_new(&g, 10);
	static const int64_t cases[][2] = { { 10, 0 }, { 10, 3 }, { 4, 6 } };
	for (size_t c = 0; c < ARRAY_SIZE(cases); c++) {
		weir_window_spec w = { .kind = WEIR_WIN_COUNT, .size = cases[c][0],
				       .slide = cases[c][1] };
		svec exp = { 0 }, late = { 0 };
		expect_count(&m, cases[c][0], cases[c][1] ? cases[c][1] : cases[c][0], &exp);
		/* count windows have no late rows, whatever the watermark */
		run_matrix(&g, 10, &w, build_aggregate, NULL, &exp, &late);
		sv_free(&exp);
		sv_free(&late);
	}
	model_free(&m);
}

/* ---- window join --------------------------------------------------------------------------- */

static void fill_join_b(void *arg, uint64_t seed, uint64_t first, uint32_t n,
			weir_batch *out)
{
	fill_rows(arg, seed, first, n, out);
}

static int join_fn(void *arg, const weir_value *a, int64_t ts_a, const weir_value *b,
		   int64_t ts_b, weir_out *out)
{
	(void)arg;
	cr_assert_eq(ts_a, a[2].i64);
	cr_assert_eq(ts_b, b[2].i64);
	weir_out_i64(out, 0, a[0].i64);
	weir_out_i64(out, 1, a[1].i64 * 10000 + b[1].i64);
	weir_out_emit(out);
	return 0;
}

Test(window, tumbling_join_pairs)
{
	/* no late rows (disorder within the out-of-orderness), as the
	 * watermark of a join is the minimum of its two inputs */
	gen_params ga = { .keys = 6, .step = 10, .jitter = 60, .n = 1500, .salt = 11 };
	gen_params gb = { .keys = 6, .step = 13, .jitter = 60, .n = 1200, .salt = 12 };
	weir_window_spec w = { .kind = WEIR_WIN_TUMBLING, .size = 100 };
	model a = model_new(&ga, 100), b = model_new(&gb, 100);
	svec exp = { 0 }, expf = { 0 };
	for (size_t i = 0; i < a.n; i++)
		for (size_t j = 0; j < b.n; j++) {
			int64_t s = floor_div(a.ts[i], 100) * 100;
			if (a.key[i] != b.key[j] || floor_div(b.ts[j], 100) * 100 != s)
				continue;
			sv_add(&exp, "%lld,%lld,%lld,%lld,%lld,%lld", (long long)a.key[i],
			       (long long)a.val[i], (long long)a.ts[i], (long long)b.key[j],
			       (long long)b.val[j], (long long)b.ts[j]);
			sv_add(&expf, "%lld,%lld", (long long)a.key[i],
			       (long long)(a.val[i] * 10000 + b.val[j]));
		}
	cr_assert_gt(exp.n, 1000);
	for (size_t pi = 0; pi < ARRAY_SIZE(pars); pi++)
		for (size_t bi = 0; bi < ARRAY_SIZE(batches); bi++) {
			weir_env *env = env_p(pars[pi], batches[bi]);
			weir_stream *sa = keyed_input(env, &ga, 100, 0);
			weir_generator_conf gc = {
				.count = gb.n, .schema = weir_schema_parse(env, "k:i64,w:i64,t:i64"),
				.fill = fill_join_b, .arg = &gb,
			};
			weir_stream *sb = weir_source_generator(env, "gen-b", &gc);
			weir_stream_set_parallelism(sb, 1);
			weir_watermark_strategy ws = { .kind = WEIR_WM_BOUNDED, .ts_column = "t",
						       .out_of_orderness_ms = 100 };
			sb = weir_key_by(weir_assign_watermarks(sb, "wm-b", &ws), "k");
			weir_stream *j = weir_window_join(sa, sb, "join", &w, NULL, NULL, NULL);
			const weir_schema *js = weir_stream_schema(j);
			cr_assert_not_null(js, "%s", weir_env_error(env));
			cr_assert_eq(js->ncols, 6);
			cr_assert_str_eq(js->fields[3].name, "b_k");
			cr_assert_str_eq(js->fields[4].name, "w");
			cr_assert_str_eq(js->fields[5].name, "b_t");
			weir_sink_csv(j, "out", path("join.csv"));
			weir_stream *jf = weir_window_join(sa, sb, "join-fn", &w,
				weir_schema_parse(env, "k:i64,x:i64"), join_fn, NULL);
			weir_sink_csv(jf, "out-fn", path("joinf.csv"));
			run_ok(env);
			char what[64];
			snprintf(what, sizeof(what), "join p=%d batch=%u", pars[pi], batches[bi]);
			expect_file(path("join.csv"), &exp, what);
			expect_file(path("joinf.csv"), &expf, what);
		}
	sv_free(&exp);
	sv_free(&expf);
	model_free(&a);
	model_free(&b);
}

/* b's rows from t >= 50000 on get an event time 100 s in the past */
static int shift_late(void *arg, const weir_batch *in, weir_batch *out)
{
	(void)arg;
	for (uint32_t r = 0; r < in->rows; r++) {
		for (int c = 0; c < 3; c++)
			weir_col_i64(out, c)[r] = weir_col_i64(in, c)[r];
		if (weir_col_i64(in, 2)[r] >= 50000)
			out->ts[r] = in->ts[r] - 100000;
	}
	return 0;
}

Test(window, late_output_of_an_interval_join)
{
	gen_params g = { .keys = 5, .step = 10, .n = 8000, .salt = 16 };
	for (size_t bi = 0; bi < ARRAY_SIZE(batches); bi++) {
		weir_env *env = env_p(2, batches[bi]);
		weir_generator_conf gc = {
			.count = g.n, .schema = weir_schema_parse(env, "k:i64,v:i64,t:i64"),
			.fill = fill_rows, .arg = &g,
		};
		weir_stream *src = weir_source_generator(env, "gen", &gc);
		weir_stream_set_parallelism(src, 1);
		weir_watermark_strategy ws = { .kind = WEIR_WM_MONOTONIC, .ts_column = "t" };
		src = weir_assign_watermarks(src, "wm", &ws);
		weir_stream *b = weir_map(src, "shift", weir_stream_schema(src), shift_late, NULL);
		weir_stream_set_parallelism(b, 1);
		weir_stream *j = weir_interval_join(weir_key_by(src, "k"), weir_key_by(b, "k"),
						    "ij", -10, 10, NULL, NULL, NULL);
		weir_stream *late = weir_window_late(j);
		cr_assert_not_null(late, "%s", weir_env_error(env));
		cr_assert(weir_window_late(j) != NULL);
		cr_assert(schema_equal(weir_stream_schema(late), weir_stream_schema(src)));
		weir_sink_csv(late, "late", path("ij-late.csv"));
		weir_sink_discard(j, "out");
		run_ok(env);
		svec exp = { 0 };
		for (uint64_t i = 5000; i < g.n; i++)
			sv_add(&exp, "%lld,%lld,%lld", (long long)in_key(&g, i),
			       (long long)in_val(&g, i), (long long)in_ts(&g, i));
		expect_file(path("ij-late.csv"), &exp, "late rows of the interval join");
		sv_free(&exp);
	}
}

/* ---- processing time and early firing ------------------------------------------------- */

typedef struct row7 {
	long long k, s, e, n, sum, mn, mx;
} row7;

static size_t read_rows7(const char *file, row7 *rows, size_t max)
{
	FILE *f = fopen(file, "r");
	size_t n = 0;
	cr_assert_not_null(f);
	while (n < max && fscanf(f, "%lld,%lld,%lld,%lld,%lld,%lld,%lld\n", &rows[n].k,
				 &rows[n].s, &rows[n].e, &rows[n].n, &rows[n].sum,
				 &rows[n].mn, &rows[n].mx) == 7)
		n++;
	fclose(f);
	return n;
}

Test(window, processing_time_tumbling)
{
	/* 400 rows at 500 rows/s (0.8 s at least) into 50 ms windows: 16 of
	 * them; fewer than 4 would take a stall of the window's thread of
	 * most of the run (it was 0.4 s: a 250 ms stall was enough) */
	gen_params g = { .keys = 3, .step = 1, .n = 400, .salt = 13 };
	for (int p = 1; p <= 2; p++) {
		weir_env *env = env_p(p, 16);
		weir_env_config(env)->buffer_timeout_us = 0;
		weir_stream *k = keyed_input(env, &g, 0, 500);
		weir_window_spec w = { .kind = WEIR_WIN_TUMBLING, .time = WEIR_PROCESSING_TIME,
				       .size = 50 };
		weir_sink_csv(weir_window_stats(k, "win", &w, "v"), "out", path("pt.csv"));
		run_ok(env);
		static row7 rows[4096];
		size_t n = read_rows7(path("pt.csv"), rows, 4096);
		long long total = 0, sum = 0, exp_sum = 0, wins = 0;
		for (size_t i = 0; i < g.n; i++)
			exp_sum += in_val(&g, i);
		for (size_t i = 0; i < n; i++) {
			cr_assert_eq(rows[i].e - rows[i].s, 50);
			cr_assert_eq(rows[i].s % 50, 0);
			for (size_t j = 0; j < i; j++)
				cr_assert(rows[j].k != rows[i].k || rows[j].s != rows[i].s,
					  "window %lld of key %lld fired twice", rows[i].s, rows[i].k);
			total += rows[i].n;
			sum += rows[i].sum;
			bool first = true;
			for (size_t j = 0; j < i; j++)
				first &= rows[j].s != rows[i].s;
			wins += first;
		}
		cr_assert_eq(total, (long long)g.n);
		cr_assert_eq(sum, exp_sum);
		/* about 16 windows of wall-clock time; allow a slow machine */
		cr_assert_geq(wins, 4, "only %lld distinct windows", wins);
	}
}

Test(window, early_firing_and_processing_time_sessions)
{
	/* one event-time window for everything; early firing every 30 ms of
	 * processing time while rows trickle in for 0.8 s at least (~26
	 * firings; fewer than 3 would take a stall of most of the run) */
	gen_params g = { .keys = 2, .step = 1, .n = 400, .salt = 14 };
	weir_env *env = env_p(2, 8);
	weir_env_config(env)->buffer_timeout_us = 0;
	weir_stream *k = keyed_input(env, &g, 0, 500);
	weir_window_spec w = { .kind = WEIR_WIN_TUMBLING, .size = 1000000,
			       .early_fire_ms = 30 };
	weir_sink_csv(weir_window_stats(k, "win", &w, "v"), "out", path("early.csv"));
	/* rows of a key 4 ms apart: a gap of 3 s is a stall no machine has */
	weir_window_spec ps = { .kind = WEIR_WIN_SESSION, .time = WEIR_PROCESSING_TIME,
				.gap = 3000 };
	weir_sink_csv(weir_window_stats(k, "psess", &ps, "v"), "out2", path("psess.csv"));
	run_ok(env);

	static row7 rows[4096];
	size_t n = read_rows7(path("early.csv"), rows, 4096);
	for (int key = 0; key < 2; key++) {
		long long last = 0, fires = 0, exp = 0;
		for (size_t i = 0; i < g.n; i++)
			exp += in_key(&g, i) == key;
		for (size_t i = 0; i < n; i++) {
			if (rows[i].k != key)
				continue;
			cr_assert_geq(rows[i].n, last, "counts of one window never shrink");
			last = rows[i].n;
			fires++;
		}
		cr_assert_eq(last, exp, "key %d: final count %lld, expected %lld", key, last, exp);
		cr_assert_geq(fires, 3, "key %d fired %lld times: no early firing?", key, fires);
	}
	/* processing-time sessions with a 3 s gap: one session per key */
	n = read_rows7(path("psess.csv"), rows, 4096);
	cr_assert_eq(n, 2);
	cr_assert_eq(rows[0].n + rows[1].n, (long long)g.n);
}

/* ---- state is freed ------------------------------------------------------------------------ */

Test(window, state_is_freed_after_cleanup)
{
	/* in order: 200 k rows, 10 keys, 100 ms windows: 20 000 windows in
	 * all; with cleanup a subtask holds only those near the watermark */
	gen_params g = { .keys = 10, .step = 1, .n = 200000, .salt = 15 };
	weir_window_spec specs[] = {
		{ .kind = WEIR_WIN_TUMBLING, .size = 100 },
		{ .kind = WEIR_WIN_TUMBLING, .size = 100, .allowed_lateness = 1000 },
		{ .kind = WEIR_WIN_SLIDING, .size = 100, .slide = 50 },
		{ .kind = WEIR_WIN_SESSION, .gap = 30 },
		{ .kind = WEIR_WIN_COUNT, .size = 100 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(specs); i++) {
		weir_env *env = env_p(1, 1024);
		weir_stream *k = keyed_input(env, &g, 10, 0);
		weir_stream *out = weir_window_stats(k, "win", &specs[i], "v");
		weir_sink_discard(out, "out");
		(void)window_take_peak_states();
		run_ok(env);
		uint64_t peak = window_take_peak_states();
		cr_assert_gt(peak, 0);
		cr_assert_lt(peak, 600, "spec %zu: %llu windows held at once", i,
			     (unsigned long long)peak);
	}
}

/* ---- parsing and build errors ------------------------------------------------------------------ */

Test(window, parse)
{
	weir_window_spec w;
	cr_assert_eq(weir_window_parse("tumbling:1000", &w), 0);
	cr_assert(w.kind == WEIR_WIN_TUMBLING && w.size == 1000 && w.slide == 0);
	cr_assert_eq(weir_window_parse("sliding:1000:250", &w), 0);
	cr_assert(w.kind == WEIR_WIN_SLIDING && w.size == 1000 && w.slide == 250);
	cr_assert_eq(weir_window_parse("session:30", &w), 0);
	cr_assert(w.kind == WEIR_WIN_SESSION && w.gap == 30 && w.size == 0);
	cr_assert_eq(weir_window_parse("count:5", &w), 0);
	cr_assert(w.kind == WEIR_WIN_COUNT && w.size == 5 && w.slide == 0);
	cr_assert_eq(weir_window_parse("count:5:2", &w), 0);
	cr_assert(w.kind == WEIR_WIN_COUNT && w.size == 5 && w.slide == 2);
	static const char *bad[] = {
		"", "tumbling", "tumbling:", "tumbling:0", "tumbling:-5", "tumbling:+5",
		"tumbling: 5", "tumbling:5x", "tumbling:5:", "tumbling:5:5", "sliding:10",
		"sliding:10:0", "sliding:10:5:1", "session:", "session:0", "session:5:5",
		"count:0", "count:5:0", "count:1:2:3", "hopping:10", "Tumbling:10",
		"tumbling:99999999999999999999", "tumbling::5", ":5",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		w = (weir_window_spec){ .kind = WEIR_WIN_SESSION, .gap = 77 };
		cr_assert_eq(weir_window_parse(bad[i], &w), -EINVAL, "'%s' parsed", bad[i]);
		cr_assert_eq(w.gap, 77, "'%s' changed the spec", bad[i]);
	}
	cr_assert_eq(weir_window_parse(NULL, &w), -EINVAL);
}

static void expect_build_error(weir_env *env, const char *needle)
{
	const char *e = weir_env_error(env);
	cr_assert_not_null(e, "no error, expected '%s'", needle);
	cr_assert(strstr(e, needle), "error '%s' does not mention '%s'", e, needle);
	weir_env_free(env);
}

static weir_stream *small_input(weir_env *env, bool keyed)
{
	weir_generator_conf g = { .count = 10 };
	weir_stream *s = weir_source_generator(env, "gen", &g);
	return keyed ? weir_key_by(s, "key") : s;
}

Test(window, build_errors)
{
	weir_window_spec tw = { .kind = WEIR_WIN_TUMBLING, .size = 10 };
	weir_env *env;

	env = env_p(1, 1024);
	cr_assert_null(weir_window_stats(small_input(env, false), "w", &tw, NULL));
	expect_build_error(env, "not keyed");

	struct { weir_window_spec w; const char *msg; } specs[] = {
		{ { .kind = WEIR_WIN_TUMBLING, .size = 0 }, "size must be > 0" },
		{ { .kind = WEIR_WIN_SLIDING, .size = 10, .slide = 0 }, "slide must be > 0" },
		{ { .kind = WEIR_WIN_SLIDING, .size = 1 << 20, .slide = 1 }, "too many windows" },
		{ { .kind = WEIR_WIN_SESSION, .gap = -1 }, "gap must be > 0" },
		{ { .kind = WEIR_WIN_COUNT, .size = 0 }, "count window size" },
		{ { .kind = WEIR_WIN_COUNT, .size = 5, .trigger_count = 2 }, "by count only" },
		{ { .kind = 99, .size = 5 }, "unknown window kind" },
		{ { .kind = WEIR_WIN_TUMBLING, .size = 5, .time = 7 }, "unknown time domain" },
		{ { .kind = WEIR_WIN_TUMBLING, .size = 5, .allowed_lateness = -1 }, ">= 0" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(specs); i++) {
		env = env_p(1, 1024);
		cr_assert_null(weir_window_stats(small_input(env, true), "w", &specs[i].w,
						     NULL));
		expect_build_error(env, specs[i].msg);
	}

	env = env_p(1, 1024);
	cr_assert_null(weir_window_stats(small_input(env, true), "w", &tw, "nope"));
	expect_build_error(env, "no column 'nope'");
	env = env_p(1, 1024);
	cr_assert_null(weir_window_stats(small_input(env, true), "w", &tw, "key"));
	expect_build_error(env, "is the key");
	/* a string column is not a number */
	env = env_p(1, 1024);
	{
		gen_params g = { .keys = 2, .step = 1, .n = 10, .str_keys = true };
		weir_stream *s = weir_key_by(keyed_input(env, &g, 0, 0), "v");
		cr_assert_null(weir_window_stats(s, "w", &tw, "k"));
	}
	expect_build_error(env, "not i64 or f64");

	/* joins: count windows, key types, function without schema */
	weir_window_spec cw = { .kind = WEIR_WIN_COUNT, .size = 3 };
	env = env_p(1, 1024);
	cr_assert_null(weir_window_join(small_input(env, true), small_input(env, true), "j",
					&cw, NULL, NULL, NULL));
	expect_build_error(env, "count windows cannot join");
	env = env_p(1, 1024);
	{
		gen_params g = { .keys = 2, .step = 1, .n = 10, .str_keys = true };
		cr_assert_null(weir_window_join(small_input(env, true),
						keyed_input(env, &g, 0, 0), "j", &tw, NULL,
						NULL, NULL));
	}
	expect_build_error(env, "differ in type");
	env = env_p(1, 1024);
	cr_assert_null(weir_window_join(small_input(env, true), small_input(env, true), "j",
					&tw, NULL, join_fn, NULL));
	expect_build_error(env, "or neither");
	env = env_p(1, 1024);
	cr_assert_null(weir_window_join(small_input(env, true), small_input(env, false), "j",
					&tw, NULL, NULL, NULL));
	expect_build_error(env, "not keyed");

	/* late output of something else */
	env = env_p(1, 1024);
	cr_assert_null(weir_window_late(small_input(env, false)));
	expect_build_error(env, "not a window operator");

	/* the built-in output schema */
	env = env_p(1, 1024);
	const weir_schema *os = weir_stream_schema(
		weir_window_stats(small_input(env, true), "w", &tw, "value"));
	cr_assert_not_null(os);
	cr_assert_eq(os->ncols, 7);
	static const char *names[] = { "key", "window_start", "window_end", "count", "sum",
				       "min", "max" };
	for (int i = 0; i < 7; i++)
		cr_assert_str_eq(os->fields[i].name, names[i]);
	cr_assert_eq(os->fields[1].type, WEIR_TS);
	cr_assert_eq(os->fields[4].type, WEIR_I64);
	os = weir_stream_schema(weir_window_stats(small_input(env, true), "w2", &tw, NULL));
	cr_assert_eq(os->ncols, 4);
	cr_assert_null(weir_env_error(env));
	weir_env_free(env);
}
