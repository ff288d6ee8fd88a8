/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyed process functions, connect (keyed and broadcast state) and the
 * interval join, through the public API on the real local runtime, with
 * results checked against a brute-force computation here.
 *
 * Jobs write CSV files; a test reads them back as lines and compares the
 * sorted lines with the expected ones.  A function that finds something
 * wrong returns -EPROTO, which fails the job, so weir_env_execute's result
 * carries it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weir/keyed.h>

#include "ops.h"
#define TESTENV_LINES
#include "testenv.h"

TestSuite(proc, .init = testenv_mkdir, .fini = testenv_rmdir, .timeout = 120);

/* ---- lines of text, compared as sorted sets ---------------------------------------- */

/* Keep one of each run of equal lines (sorted first). */
static void lines_uniq(lines *l)
{
	size_t w = 0;
	lines_sort(l);
	for (size_t i = 0; i < l->n; i++) {
		if (w && !strcmp(l->v[w - 1], l->v[i])) {
			free(l->v[i]);
			continue;
		}
		l->v[w++] = l->v[i];
	}
	l->n = w;
}

/* ---- the default generator's rows (datastream.h) ----------------------------------- */

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static int64_t gen_key(uint64_t seed, int64_t keys, uint64_t seq)
{
	uint64_t r = splitmix64(seed ^ (seq * 0xd1b54a32d192ed03ULL));
	return (int64_t)(((r >> 32) * (uint64_t)keys) >> 32);
}

static int64_t gen_value(uint64_t seed, uint64_t seq)
{
	uint64_t r = splitmix64(seed ^ (seq * 0xd1b54a32d192ed03ULL));
	return (int64_t)(((r & 0xffffffffu) * 1000) >> 32);
}

static weir_stream *gen(weir_env *env, const char *name, uint64_t count, uint64_t seed,
			int64_t keys)
{
	weir_generator_conf g = { .count = count, .seed = seed, .keys = keys };
	return weir_source_generator(env, name, &g);
}

#define CHECK(cond)                                                              \
	do {                                                                     \
		if (!(cond)) {                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,   \
				__LINE__, #cond);                                \
			return -EPROTO;                                          \
		}                                                                \
	} while (0)

/* ==== every state kind, i64 and string keys ========================================= */

enum { S_MAX, S_LIST, S_MAP, S_SUM, S_AGG, NSTATES1 };

#define T1_ROWS 20000
#define T1_KEYS 97

static int64_t t1_key(uint64_t i) { return (int64_t)(splitmix64(i * 7919) % T1_KEYS); }
static int64_t t1_val(uint64_t i) { return (int64_t)(splitmix64(i ^ 0xabc) % 1000); }

/* "seq:i64,k:i64,ks:str,v:i64", event time = seq */
static void t1_fill(void *arg, uint64_t seed, uint64_t first, uint32_t n, weir_batch *out)
{
	(void)arg;
	(void)seed;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t s = first + i;
		char ks[32];
		int len = snprintf(ks, sizeof(ks), "key-%lld", (long long)t1_key(s));
		weir_col_i64(out, 0)[i] = (int64_t)s;
		weir_col_i64(out, 1)[i] = t1_key(s);
		weir_batch_set_str(out, 2, i, ks, (size_t)len);
		weir_col_i64(out, 3)[i] = t1_val(s);
		out->ts[i] = (int64_t)s;
	}
}

typedef struct agg3 {
	int64_t cnt, sum, sq;
} agg3;

static void fold_sum(void *arg, void *acc, const void *in)
{
	(void)arg;
	*(int64_t *)acc += *(const int64_t *)in;
}

static void fold_agg(void *arg, void *acc, const void *in)
{
	agg3 *a = acc;
	int64_t v = *(const int64_t *)in;
	(void)arg;
	a->cnt++;
	a->sum += v;
	a->sq += v * v;
}

static const weir_state_desc t1_states[NSTATES1] = {
	[S_MAX] = { .name = "max", .kind = WEIR_STATE_VALUE, .size = 8 },
	[S_LIST] = { .name = "list", .kind = WEIR_STATE_LIST },
	[S_MAP] = { .name = "hist", .kind = WEIR_STATE_MAP, .size = 8 },
	[S_SUM] = { .name = "sum", .kind = WEIR_STATE_REDUCING, .size = 8, .fold = fold_sum },
	[S_AGG] = { .name = "agg", .kind = WEIR_STATE_AGGREGATING, .size = sizeof(agg3),
		    .fold = fold_agg },
};

typedef struct t1_arg {
	bool str_key;
} t1_arg;

static int t1_process(void *arg, weir_ctx *c, int input, const weir_batch *in,
		      uint32_t row, weir_out *out)
{
	const t1_arg *a = arg;
	int64_t v = weir_col_i64(in, 3)[row];
	weir_value key = weir_ctx_key(c);
	(void)out;

	CHECK(input == 0);
	CHECK(weir_ctx_timestamp(c) == in->ts[row]);
	if (a->str_key) {
		uint32_t len;
		const char *p = weir_batch_str(in, 2, row, &len);
		CHECK(key.str.len == len && !memcmp(key.str.ptr, p, len));
	} else {
		CHECK(key.i64 == weir_col_i64(in, 1)[row]);
	}
	const int64_t *mx = weir_state_get(c, S_MAX);
	if (!mx || v > *mx)
		CHECK(weir_state_set(c, S_MAX, &v) == 0);
	CHECK(weir_state_add(c, S_LIST, &v, sizeof(v)) == 0);
	uint8_t mk = (uint8_t)(v % 7);
	const int64_t *cnt = weir_state_map_get(c, S_MAP, &mk, 1);
	int64_t nc = (cnt ? *cnt : 0) + 1;
	CHECK(weir_state_map_put(c, S_MAP, &mk, 1, &nc) == 0);
	CHECK(weir_state_add(c, S_SUM, &v, 0) == 0);
	CHECK(weir_state_add(c, S_AGG, &v, 0) == 0);
	CHECK(weir_timer_register(c, WEIR_EVENT_TIME, INT64_MAX - 1) == 0);
	/* misuse: wrong kinds and indices */
	CHECK(weir_state_set(c, S_LIST, &v) == -EINVAL);
	CHECK(weir_state_set(c, S_SUM, &v) == -EINVAL);
	CHECK(weir_state_get(c, NSTATES1) == NULL);
	CHECK(weir_state_get(c, -1) == NULL);
	CHECK(weir_state_get(c, S_LIST) == NULL);
	CHECK(weir_state_add(c, S_MAX, &v, 8) == -EINVAL);
	CHECK(weir_state_map_put(c, S_SUM, &mk, 1, &v) == -EINVAL);
	CHECK(weir_state_list_len(c, S_MAP) == 0);
	CHECK(weir_state_clear(c, 99) == -EINVAL);
	return 0;
}

static int count_entry(void *arg, const void *k, size_t klen, const void *value)
{
	(void)k;
	(void)value;
	(void)klen;
	(*(int *)arg)++;
	return 0;
}

static int t1_on_timer(void *arg, weir_ctx *c, weir_time_domain d, int64_t ts,
		       weir_out *out)
{
	const t1_arg *a = arg;
	weir_value key = weir_ctx_key(c);
	char kbuf[32], mbuf[256];
	int mlen = 0, entries = 0, nonzero = 0;

	CHECK(d == WEIR_EVENT_TIME && ts == INT64_MAX - 1);
	CHECK(weir_ctx_timestamp(c) == ts);
	CHECK(weir_ctx_watermark(c) == INT64_MAX);
	if (a->str_key)
		weir_out_str(out, 0, key.str.ptr, key.str.len);
	else
		weir_out_str(out, 0, kbuf,
			     (size_t)snprintf(kbuf, sizeof(kbuf), "key-%lld",
					      (long long)key.i64));
	const int64_t *mx = weir_state_get(c, S_MAX);
	CHECK(mx);
	weir_out_i64(out, 1, *mx);
	size_t n = weir_state_list_len(c, S_LIST);
	int64_t lsum = 0;
	for (size_t i = 0; i < n; i++) {
		size_t len;
		const void *p = weir_state_list_get(c, S_LIST, i, &len);
		int64_t v;
		CHECK(p && len == 8);
		memcpy(&v, p, 8);
		lsum += v;
	}
	CHECK(weir_state_list_get(c, S_LIST, n, NULL) == NULL);
	weir_out_i64(out, 2, (int64_t)n);
	weir_out_i64(out, 3, lsum);
	for (uint8_t mk = 0; mk < 7; mk++) {
		const int64_t *cnt = weir_state_map_get(c, S_MAP, &mk, 1);
		nonzero += cnt != NULL;
		mlen += snprintf(mbuf + mlen, sizeof(mbuf) - (size_t)mlen, "%s%lld",
				 mk ? ";" : "", (long long)(cnt ? *cnt : 0));
	}
	CHECK(weir_state_map_foreach(c, S_MAP, count_entry, &entries) == 0);
	CHECK(entries == nonzero);
	weir_out_str(out, 4, mbuf, (size_t)mlen);
	const int64_t *sum = weir_state_get(c, S_SUM);
	const agg3 *ag = weir_state_get(c, S_AGG);
	CHECK(sum && ag);
	weir_out_i64(out, 5, *sum);
	weir_out_i64(out, 6, ag->cnt);
	weir_out_i64(out, 7, ag->sum);
	weir_out_i64(out, 8, ag->sq);
	weir_out_emit(out);
	for (int i = 0; i < NSTATES1; i++)
		CHECK(weir_state_clear(c, i) == 0);
	uint8_t mk = 0;
	CHECK(weir_state_get(c, S_MAX) == NULL && weir_state_get(c, S_SUM) == NULL &&
	      weir_state_get(c, S_AGG) == NULL);
	CHECK(weir_state_list_len(c, S_LIST) == 0);
	CHECK(weir_state_map_get(c, S_MAP, &mk, 1) == NULL);
	return 0;
}

static void t1_run(int p, uint32_t batch, bool str_key)
{
	weir_env *env = env_p(p, batch);
	t1_arg arg = { .str_key = str_key };
	weir_generator_conf g = {
		.count = T1_ROWS, .fill = t1_fill,
		.schema = weir_schema_parse(env, "seq:i64,k:i64,ks:str,v:i64"),
	};
	weir_process_fns fns = { .process = t1_process, .on_timer = t1_on_timer,
				 .arg = &arg, .states = t1_states, .nstates = NSTATES1 };
	weir_stream *s = weir_source_generator(env, "gen", &g);
	s = weir_process(weir_key_by(s, str_key ? "ks" : "k"), "states",
			 weir_schema_parse(env, "key:str,max:i64,n:i64,lsum:i64,map:str,"
					   "sum:i64,cnt:i64,asum:i64,asq:i64"), &fns);
	weir_sink_csv(s, "out", path("t1.csv"));
	run_ok(env);

	struct {
		int64_t max, n, sum, sq;
		int64_t hist[7];
	} k[T1_KEYS] = { 0 };
	for (uint64_t i = 0; i < T1_ROWS; i++) {
		int64_t key = t1_key(i), v = t1_val(i);
		if (!k[key].n || v > k[key].max)
			k[key].max = v;
		k[key].n++;
		k[key].sum += v;
		k[key].sq += v * v;
		k[key].hist[v % 7]++;
	}
	lines exp = { 0 };
	for (int i = 0; i < T1_KEYS; i++) {
		if (!k[i].n)
			continue;
		char m[256];
		int ml = 0;
		for (int h = 0; h < 7; h++)
			ml += snprintf(m + ml, sizeof(m) - (size_t)ml, "%s%lld", h ? ";" : "",
				       (long long)k[i].hist[h]);
		lines_add(&exp, "key-%d,%lld,%lld,%lld,%s,%lld,%lld,%lld,%lld", i,
			  (long long)k[i].max, (long long)k[i].n, (long long)k[i].sum, m,
			  (long long)k[i].sum, (long long)k[i].n, (long long)k[i].sum,
			  (long long)k[i].sq);
	}
	expect_file_lines(path("t1.csv"), &exp, str_key ? "string keys" : "i64 keys");
	lines_free(&exp);
}

Test(proc, state_kinds_i64_keys_p1_p3)
{
	t1_run(1, 1024, false);
	t1_run(3, 1024, false);
}

Test(proc, state_kinds_string_keys_p2)
{
	t1_run(2, 7, true);
}

/* ==== TTL ========================================================================= */

enum { T2_VAL, T2_LIST, T2_MAP, NSTATES2 };

#define T2_TTL 150

static const weir_state_desc t2_states[NSTATES2] = {
	[T2_VAL] = { .name = "v", .kind = WEIR_STATE_VALUE, .size = 8, .ttl_ms = T2_TTL },
	[T2_LIST] = { .name = "l", .kind = WEIR_STATE_LIST, .ttl_ms = T2_TTL },
	[T2_MAP] = { .name = "m", .kind = WEIR_STATE_MAP, .size = 8, .ttl_ms = T2_TTL },
};

static void t2_fill(void *arg, uint64_t seed, uint64_t first, uint32_t n, weir_batch *out)
{
	(void)arg;
	(void)seed;
	for (uint32_t i = 0; i < n; i++) {
		weir_col_i64(out, 0)[i] = (int64_t)(first + i);
		weir_col_i64(out, 1)[i] = 42;
		out->ts[i] = (int64_t)(first + i);
	}
}

static int t2_process(void *arg, weir_ctx *c, int input, const weir_batch *in,
		      uint32_t row, weir_out *out)
{
	int64_t seq = weir_col_i64(in, 0)[row];
	const int64_t *v = weir_state_get(c, T2_VAL);
	const int64_t *m = weir_state_map_get(c, T2_MAP, "x", 1);
	(void)arg;
	(void)input;
	weir_out_i64(out, 0, seq);
	weir_out_i64(out, 1, v ? *v : -1);
	weir_out_i64(out, 2, (int64_t)weir_state_list_len(c, T2_LIST));
	weir_out_i64(out, 3, m ? *m : -1);
	weir_out_emit(out);
	CHECK(weir_state_set(c, T2_VAL, &seq) == 0);
	CHECK(weir_state_add(c, T2_LIST, &seq, 8) == 0);
	CHECK(weir_state_map_put(c, T2_MAP, "x", 1, &seq) == 0);
	if (seq == 2)
		usleep(2 * T2_TTL * 1000); /* everything written so far expires */
	return 0;
}

/* Rows 0-2 and rows 3-5 come in two batches of three (one key: one
 * channel, and a batch goes when full), so what must still be live is
 * written and read within one process loop, microseconds apart, and not
 * across a hand-over between threads that a loaded machine may stall for
 * longer than the TTL; what must have expired is older than the sleep. */
Test(proc, ttl_expires_values_lists_and_maps)
{
	weir_env *env = env_p(1, 3);
	weir_generator_conf g = { .count = 6, .fill = t2_fill,
				  .schema = weir_schema_parse(env, "seq:i64,k:i64") };
	weir_process_fns fns = { .process = t2_process, .states = t2_states,
				 .nstates = NSTATES2 };
	weir_stream *s = weir_source_generator(env, "gen", &g);
	s = weir_process(weir_key_by(s, "k"), "ttl",
			 weir_schema_parse(env, "seq:i64,v:i64,n:i64,m:i64"), &fns);
	weir_sink_csv(s, "out", path("t2.csv"));
	run_ok(env);
	lines exp = { 0 };
	lines_add(&exp, "0,-1,0,-1");
	lines_add(&exp, "1,0,1,0");
	lines_add(&exp, "2,1,2,1");
	lines_add(&exp, "3,-1,0,-1"); /* expired while seq 2 slept */
	lines_add(&exp, "4,3,1,3");
	lines_add(&exp, "5,4,2,4");
	expect_file_lines(path("t2.csv"), &exp, "ttl");
	lines_free(&exp);
}

/* ==== event-time timers ================================================================ */

#define T3_ROWS 20000
#define T3_KEYS 20
#define T3_SEED 5

static int64_t t3_at(int64_t seq) { return seq / 50 * 50 + 100; }

static int t3_process(void *arg, weir_ctx *c, int input, const weir_batch *in,
		      uint32_t row, weir_out *out)
{
	int64_t at = t3_at(weir_col_i64(in, 0)[row]);
	(void)arg;
	(void)input;
	(void)out;
	CHECK(weir_timer_register(c, WEIR_EVENT_TIME, at) == 0);
	CHECK(weir_timer_register(c, WEIR_EVENT_TIME, at) == 0); /* once */
	CHECK(weir_timer_register(c, WEIR_EVENT_TIME, at + 1) == 0);
	CHECK(weir_timer_delete(c, WEIR_EVENT_TIME, at + 1) == 0); /* never */
	CHECK(weir_timer_register(c, 7, at) == -EINVAL);
	return 0;
}

static int t3_on_timer(void *arg, weir_ctx *c, weir_time_domain d, int64_t ts,
		       weir_out *out)
{
	(void)arg;
	CHECK(d == WEIR_EVENT_TIME);
	CHECK(ts % 50 == 0);
	CHECK(weir_ctx_timestamp(c) == ts);
	CHECK(weir_ctx_watermark(c) >= ts);
	weir_out_i64(out, 0, weir_ctx_key(c).i64);
	weir_out_i64(out, 1, ts);
	weir_out_emit(out);
	return 0;
}

Test(proc, event_timers_fire_in_order_once_after_the_watermark)
{
	weir_env *env = env_p(2, 256);
	weir_process_fns fns = { .process = t3_process, .on_timer = t3_on_timer };
	weir_stream *s = gen(env, "gen", T3_ROWS, T3_SEED, T3_KEYS);
	s = weir_process(weir_key_by(s, "key"), "timers",
			 weir_schema_parse(env, "key:i64,at:i64"), &fns);
	weir_sink_csv(s, "out", path("t3.csv"));
	run_ok(env);

	/* In the order written: per key, strictly increasing. */
	lines got = { 0 };
	int64_t last[T3_KEYS];
	for (int i = 0; i < T3_KEYS; i++)
		last[i] = INT64_MIN;
	lines_read(&got, path("t3.csv"));
	for (size_t i = 0; i < got.n; i++) {
		long long k, at;
		cr_assert_eq(sscanf(got.v[i], "%lld,%lld", &k, &at), 2);
		cr_assert(k >= 0 && k < T3_KEYS);
		cr_assert_gt(at, last[k], "key %lld: timer %lld after %lld", k, at,
			     (long long)last[k]);
		last[k] = at;
	}
	lines exp = { 0 };
	for (int64_t i = 0; i < T3_ROWS; i++)
		lines_add(&exp, "%lld,%lld", (long long)gen_key(T3_SEED, T3_KEYS, (uint64_t)i),
			  (long long)t3_at(i));
	lines_uniq(&exp);
	lines_expect(&got, &exp, "event timers");
	lines_free(&got);
	lines_free(&exp);
}

/* ==== processing-time timers and side outputs ========================================== */

static int t4_process(void *arg, weir_ctx *c, int input, const weir_batch *in,
		      uint32_t row, weir_out *out)
{
	int64_t seq = weir_col_i64(in, 0)[row];
	(void)arg;
	(void)input;
	if (seq == 0) /* pending at end of input: dropped, not waited for */
		CHECK(weir_timer_register(c, WEIR_PROCESSING_TIME,
					  weir_ctx_processing_time(c) + 60000) == 0);
	if (seq >= 40)
		return 0;
	int64_t at = weir_ctx_processing_time(c) + 20 + seq % 3;
	CHECK(weir_timer_register(c, WEIR_PROCESSING_TIME, at) == 0);
	CHECK(weir_timer_register(c, WEIR_PROCESSING_TIME, at) == 0);
	CHECK(weir_timer_register(c, WEIR_PROCESSING_TIME, at + 100000) == 0);
	CHECK(weir_timer_delete(c, WEIR_PROCESSING_TIME, at + 100000) == 0);
	weir_out *side = weir_out_side(out, 1);
	weir_out_i64(side, 0, weir_ctx_key(c).i64);
	weir_out_i64(side, 1, at);
	weir_out_emit(side);
	return 0;
}

static int t4_on_timer(void *arg, weir_ctx *c, weir_time_domain d, int64_t ts,
		       weir_out *out)
{
	(void)arg;
	CHECK(d == WEIR_PROCESSING_TIME);
	CHECK(weir_ctx_processing_time(c) >= ts);
	CHECK(weir_ctx_timestamp(c) == ts);
	weir_out_i64(out, 0, weir_ctx_key(c).i64);
	weir_out_i64(out, 1, ts);
	weir_out_emit(out);
	return 0;
}

Test(proc, processing_timers_and_side_outputs)
{
	weir_env *env = env_p(2, 64);
	weir_generator_conf g = { .count = 300, .rate = 1000, .seed = 3, .keys = 5 };
	weir_process_fns fns = { .process = t4_process, .on_timer = t4_on_timer };
	const weir_schema *ks = weir_schema_parse(env, "key:i64,at:i64");
	weir_stream *s = weir_source_generator(env, "gen", &g);
	weir_stream_set_parallelism(s, 1);
	s = weir_process(weir_key_by(s, "key"), "ptimers", ks, &fns);
	weir_stream *reg = weir_side_output(s, 1, ks);
	weir_sink_csv(s, "fired", path("t4-fired.csv"));
	weir_sink_csv(reg, "registered", path("t4-reg.csv"));
	uint64_t t0 = now_ns();
	run_ok(env);
	/* The timer a minute away was dropped at end of input. */
	cr_assert_lt(now_ns() - t0, 30ull * 1000000000u); /* well under the minute */

	lines fired = { 0 }, reg_l = { 0 };
	lines_read(&fired, path("t4-fired.csv"));
	lines_read(&reg_l, path("t4-reg.csv"));
	cr_assert_eq(reg_l.n, 40);
	lines_uniq(&reg_l);
	lines_expect(&fired, &reg_l, "processing timers"); /* each once */
	lines_free(&fired);
	lines_free(&reg_l);
}

/* ==== connect: a control stream enables keys ============================================= */

#define T5_ROWS 10000
#define T5_KEYS 50
#define T5_SEED 9

enum { T5_ON, T5_PENDING, NSTATES5 };

static const weir_state_desc t5_states[NSTATES5] = {
	[T5_ON] = { .name = "on", .kind = WEIR_STATE_VALUE, .size = 1 },
	[T5_PENDING] = { .name = "pending", .kind = WEIR_STATE_LIST },
};

/* control rows "k:ts,on:bool": key i, enabled when i % 3 == 0 */
static void t5_fill(void *arg, uint64_t seed, uint64_t first, uint32_t n, weir_batch *out)
{
	(void)arg;
	(void)seed;
	for (uint32_t i = 0; i < n; i++) {
		weir_col_i64(out, 0)[i] = (int64_t)(first + i);
		weir_col_bool(out, 1)[i] = (first + i) % 3 == 0;
		out->ts[i] = 0;
	}
}

static int t5_process(void *arg, weir_ctx *c, int input, const weir_batch *in,
		      uint32_t row, weir_out *out)
{
	int64_t key = weir_ctx_key(c).i64;
	(void)arg;
	if (input == 0) {
		int64_t seq = weir_col_i64(in, 0)[row];
		CHECK(key == weir_col_i64(in, 1)[row]);
		if (weir_state_get(c, T5_ON)) {
			weir_out_i64(out, 0, key);
			weir_out_i64(out, 1, seq);
			weir_out_emit(out);
		} else {
			CHECK(weir_state_add(c, T5_PENDING, &seq, 8) == 0);
		}
		return 0;
	}
	CHECK(input == 1);
	CHECK(key == weir_col_i64(in, 0)[row]);
	if (!weir_col_bool(in, 1)[row])
		return 0;
	uint8_t one = 1;
	CHECK(weir_state_set(c, T5_ON, &one) == 0);
	size_t n = weir_state_list_len(c, T5_PENDING);
	for (size_t i = 0; i < n; i++) {
		int64_t seq;
		memcpy(&seq, weir_state_list_get(c, T5_PENDING, i, NULL), 8);
		weir_out_i64(out, 0, key);
		weir_out_i64(out, 1, seq);
		weir_out_emit(out);
	}
	CHECK(weir_state_clear(c, T5_PENDING) == 0);
	return 0;
}

Test(proc, connect_keyed_control_stream_p1_p2)
{
	for (int p = 1; p <= 2; p++) {
		weir_env *env = env_p(p, p == 1 ? 1024 : 33);
		weir_generator_conf cg = { .count = T5_KEYS, .fill = t5_fill,
					   .schema = weir_schema_parse(env, "k:ts,on:bool") };
		weir_process_fns fns = { .process = t5_process, .states = t5_states,
					 .nstates = NSTATES5 };
		weir_stream *data = gen(env, "data", T5_ROWS, T5_SEED, T5_KEYS);
		weir_stream *ctl = weir_source_generator(env, "control", &cg);
		weir_stream *s = weir_connect_process(weir_key_by(data, "key"),
						      weir_key_by(ctl, "k"), "enable",
						      weir_schema_parse(env, "key:i64,seq:i64"),
						      &fns);
		weir_sink_csv(s, "out", path("t5.csv"));
		run_ok(env);
		lines exp = { 0 };
		for (int64_t i = 0; i < T5_ROWS; i++) {
			int64_t k = gen_key(T5_SEED, T5_KEYS, (uint64_t)i);
			if (k % 3 == 0)
				lines_add(&exp, "%lld,%lld", (long long)k, (long long)i);
		}
		expect_file_lines(path("t5.csv"), &exp, "connect");
		lines_free(&exp);
	}
}

/* ==== broadcast state ================================================================== */

#define T7_ROWS 5000
#define T7_KEYS 30
#define T7_SEED 11
#define T7_RULES 4

enum { T7_RULESET, T7_BUF, T7_X, NSTATES7 };

static const weir_state_desc t7_states[NSTATES7] = {
	[T7_RULESET] = { .name = "rules", .kind = WEIR_STATE_BROADCAST_MAP, .size = 16 },
	[T7_BUF] = { .name = "buf", .kind = WEIR_STATE_LIST },
	[T7_X] = { .name = "x", .kind = WEIR_STATE_VALUE, .size = 8 },
};

static int64_t t7_mod(int64_t r) { return 3 + r; }
static int64_t t7_rem(int64_t r) { return r % 2; }

/* rules "rule:i64,mod:i64,rem:i64" */
static void t7_fill(void *arg, uint64_t seed, uint64_t first, uint32_t n, weir_batch *out)
{
	(void)arg;
	(void)seed;
	for (uint32_t i = 0; i < n; i++) {
		int64_t r = (int64_t)(first + i);
		weir_col_i64(out, 0)[i] = r;
		weir_col_i64(out, 1)[i] = t7_mod(r);
		weir_col_i64(out, 2)[i] = t7_rem(r);
		out->ts[i] = 0;
	}
}

static int t7_process(void *arg, weir_ctx *c, int input, const weir_batch *in,
		      uint32_t row, weir_out *out)
{
	int64_t v = 0;
	(void)arg;
	(void)out;
	if (input == 1) {
		int64_t rule = weir_col_i64(in, 0)[row];
		int64_t mr[2] = { weir_col_i64(in, 1)[row], weir_col_i64(in, 2)[row] };
		/* no key here: keyed state and timers are off limits */
		CHECK(weir_state_get(c, T7_X) == NULL);
		CHECK(weir_state_set(c, T7_X, &v) == -EINVAL);
		CHECK(weir_state_add(c, T7_BUF, &v, 8) == -EINVAL);
		CHECK(weir_state_list_len(c, T7_BUF) == 0);
		CHECK(weir_state_clear(c, T7_X) == -EINVAL);
		CHECK(weir_timer_register(c, WEIR_EVENT_TIME, 5) == -EINVAL);
		CHECK(weir_timer_register(c, WEIR_PROCESSING_TIME, 5) == -EINVAL);
		CHECK(weir_state_map_put(c, T7_RULESET, &rule, 8, mr) == 0);
		CHECK(weir_state_map_get(c, T7_RULESET, &rule, 8) != NULL);
		return 0;
	}
	int64_t rec[2] = { weir_col_i64(in, 0)[row], weir_col_i64(in, 2)[row] };
	int64_t rule = 0, mr[2] = { 1, 0 };
	/* the keyed input reads the broadcast state but may not write it */
	CHECK(weir_state_map_put(c, T7_RULESET, &rule, 8, mr) == -EPERM);
	CHECK(weir_state_map_remove(c, T7_RULESET, &rule, 8) == -EPERM);
	CHECK(weir_state_clear(c, T7_RULESET) == -EPERM);
	(void)weir_state_map_get(c, T7_RULESET, &rule, 8);
	CHECK(weir_state_add(c, T7_BUF, rec, sizeof(rec)) == 0);
	CHECK(weir_timer_register(c, WEIR_EVENT_TIME, INT64_MAX - 1) == 0);
	return 0;
}

static int t7_on_timer(void *arg, weir_ctx *c, weir_time_domain d, int64_t ts,
		       weir_out *out)
{
	int n = 0;
	int64_t key = weir_ctx_key(c).i64, r0 = 0, mr0[2] = { 1, 0 };
	(void)arg;
	(void)d;
	(void)ts;
	CHECK(weir_state_map_foreach(c, T7_RULESET, count_entry, &n) == 0);
	CHECK(n == T7_RULES);
	CHECK(weir_state_map_put(c, T7_RULESET, &r0, 8, mr0) == -EPERM);
	size_t len = weir_state_list_len(c, T7_BUF);
	for (size_t i = 0; i < len; i++) {
		int64_t rec[2];
		memcpy(rec, weir_state_list_get(c, T7_BUF, i, NULL), sizeof(rec));
		for (int64_t r = 0; r < T7_RULES; r++) {
			const int64_t *mr = weir_state_map_get(c, T7_RULESET, &r, 8);
			CHECK(mr);
			if (rec[1] % mr[0] != mr[1])
				continue;
			weir_out_i64(out, 0, key);
			weir_out_i64(out, 1, rec[0]);
			weir_out_i64(out, 2, r);
			weir_out_emit(out);
		}
	}
	return 0;
}

Test(proc, broadcast_rules_reach_every_subtask_p1_p2_p4)
{
	lines exp = { 0 };
	for (int64_t i = 0; i < T7_ROWS; i++)
		for (int64_t r = 0; r < T7_RULES; r++)
			if (gen_value(T7_SEED, (uint64_t)i) % t7_mod(r) == t7_rem(r))
				lines_add(&exp, "%lld,%lld,%lld",
					  (long long)gen_key(T7_SEED, T7_KEYS, (uint64_t)i),
					  (long long)i, (long long)r);
	for (int p = 1; p <= 4; p *= 2) {
		weir_env *env = env_p(p, 128);
		weir_generator_conf rg = {
			.count = T7_RULES, .fill = t7_fill,
			.schema = weir_schema_parse(env, "rule:i64,mod:i64,rem:i64") };
		weir_process_fns fns = { .process = t7_process, .on_timer = t7_on_timer,
					 .states = t7_states, .nstates = NSTATES7 };
		weir_stream *data = gen(env, "data", T7_ROWS, T7_SEED, T7_KEYS);
		weir_stream *rules = weir_source_generator(env, "rules", &rg);
		weir_stream_set_parallelism(rules, 1);
		weir_stream *s = weir_connect_process(weir_key_by(data, "key"),
						      weir_broadcast(rules), "check",
						      weir_schema_parse(env, "key:i64,seq:i64,rule:i64"),
						      &fns);
		weir_sink_csv(s, "out", path("t7.csv"));
		run_ok(env);
		char what[32];
		snprintf(what, sizeof(what), "broadcast p=%d", p);
		expect_file_lines(path("t7.csv"), &exp, what);
	}
	lines_free(&exp);
}

/* ==== build errors ======================================================================= */

static int nop_process(void *arg, weir_ctx *c, int input, const weir_batch *in,
		       uint32_t row, weir_out *out)
{
	(void)arg, (void)c, (void)input, (void)in, (void)row, (void)out;
	return 0;
}

static void expect_build_error(weir_env *env, const char *what)
{
	const char *e = weir_env_error(env);
	cr_assert_not_null(e, "expected an error containing '%s'", what);
	cr_assert(strstr(e, what), "error '%s' lacks '%s'", e, what);
	weir_env_free(env);
}

Test(proc, build_errors)
{
	weir_process_fns fns = { .process = nop_process };
	weir_env *env;
	const weir_schema *os;

	env = env_p(1, 1024);
	os = weir_schema_parse(env, "x:i64");
	cr_assert_null(weir_process(gen(env, "g", 10, 1, 1), "p", os, &fns));
	expect_build_error(env, "not keyed");

	env = env_p(1, 1024);
	os = weir_schema_parse(env, "x:i64");
	{
		weir_state_desc d = { .name = "b", .kind = WEIR_STATE_BROADCAST_MAP, .size = 8 };
		weir_process_fns f2 = { .process = nop_process, .states = &d, .nstates = 1 };
		cr_assert_null(weir_process(weir_key_by(gen(env, "g", 10, 1, 1), "key"), "p",
					    os, &f2));
	}
	expect_build_error(env, "broadcast state 'b'");

	env = env_p(1, 1024);
	os = weir_schema_parse(env, "x:i64");
	{
		weir_state_desc d = { .name = "r", .kind = WEIR_STATE_REDUCING, .size = 8 };
		weir_process_fns f2 = { .process = nop_process, .states = &d, .nstates = 1 };
		cr_assert_null(weir_process(weir_key_by(gen(env, "g", 10, 1, 1), "key"), "p",
					    os, &f2));
	}
	expect_build_error(env, "fold");

	env = env_p(1, 1024);
	os = weir_schema_parse(env, "x:i64");
	{
		weir_generator_conf g = { .count = 1, .fill = t1_fill,
					  .schema = weir_schema_parse(env, "seq:i64,k:i64,ks:str,v:i64") };
		weir_stream *b = weir_key_by(weir_source_generator(env, "s", &g), "ks");
		cr_assert_null(weir_connect_process(weir_key_by(gen(env, "g", 10, 1, 1), "key"),
						    b, "c", os, &fns));
	}
	expect_build_error(env, "different types");

	env = env_p(1, 1024);
	os = weir_schema_parse(env, "x:i64");
	cr_assert_null(weir_connect_process(weir_key_by(gen(env, "g", 10, 1, 1), "key"),
					    gen(env, "h", 10, 1, 1), "c", os, &fns));
	expect_build_error(env, "keyed (weir_key_by) or broadcast");

	/* side outputs are declared on process operators */
	env = env_p(1, 1024);
	os = weir_schema_parse(env, "x:i64");
	{
		weir_stream *s = weir_process(weir_key_by(gen(env, "g", 10, 1, 1), "key"),
					      "p", os, &fns);
		cr_assert_not_null(weir_side_output(s, 1, os));
		cr_assert_null(weir_env_error(env));
	}
	weir_env_free(env);

	env = env_p(1, 1024);
	cr_assert_null(weir_interval_join(weir_key_by(gen(env, "a", 10, 1, 1), "key"),
					  weir_key_by(gen(env, "b", 10, 1, 1), "key"),
					  "j", 5, 4, NULL, NULL, NULL));
	expect_build_error(env, "lower bound");

	env = env_p(1, 1024);
	cr_assert_null(weir_interval_join(weir_key_by(gen(env, "a", 10, 1, 1), "key"),
					  gen(env, "b", 10, 1, 1), "j", 0, 4, NULL, NULL, NULL));
	expect_build_error(env, "keyed");

	env = env_p(1, 1024);
	os = weir_schema_parse(env, "x:i64");
	cr_assert_null(weir_interval_join(weir_key_by(gen(env, "a", 10, 1, 1), "key"),
					  weir_key_by(gen(env, "b", 10, 1, 1), "key"),
					  "j", 0, 4, os, NULL, NULL));
	expect_build_error(env, "needs a join function");
}

/* ==== interval join ====================================================================== */

#define T8_ROWS 10000
#define T8_KEYS 10
#define T8_LO -3
#define T8_HI 5

/* Output event time must be max(ta, tb); a's seq is column 0, b's column 3. */
static int check_join_ts(void *arg, const weir_batch *in, weir_out *out)
{
	(void)arg;
	for (uint32_t r = 0; r < in->rows; r++) {
		int64_t ta = weir_col_i64(in, 0)[r], tb = weir_col_i64(in, 3)[r];
		CHECK(in->ts[r] == (ta > tb ? ta : tb));
		for (int c = 0; c < 6; c++)
			weir_out_i64(out, c, weir_col_i64(in, c)[r]);
		weir_out_ts(out, in->ts[r]);
		weir_out_emit(out);
	}
	return 0;
}

static void t8_expected(lines *exp, uint64_t sa, uint64_t sb, int64_t rows,
			bool (*skip_b)(int64_t))
{
	for (int64_t i = 0; i < rows; i++) {
		int64_t ka = gen_key(sa, T8_KEYS, (uint64_t)i);
		for (int64_t j = i + T8_LO; j <= i + T8_HI; j++) {
			if (j < 0 || j >= rows || (skip_b && skip_b(j)))
				continue;
			if (gen_key(sb, T8_KEYS, (uint64_t)j) != ka)
				continue;
			lines_add(exp, "%lld,%lld,%lld,%lld,%lld,%lld", (long long)i,
				  (long long)ka, (long long)gen_value(sa, (uint64_t)i),
				  (long long)j, (long long)ka, (long long)gen_value(sb, (uint64_t)j));
		}
	}
}

Test(proc, interval_join_p1_p2_p4_batch_1_and_1024)
{
	lines exp = { 0 };
	t8_expected(&exp, 21, 22, T8_ROWS, NULL);
	cr_assert_gt(exp.n, T8_ROWS / 2);
	for (int p = 1; p <= 4; p *= 2)
		for (uint32_t batch = 1; batch <= 1024; batch *= 1024) {
			weir_env *env = env_p(p, batch);
			weir_stream *a = gen(env, "a", T8_ROWS, 21, T8_KEYS);
			weir_stream *b = gen(env, "b", T8_ROWS, 22, T8_KEYS);
			weir_stream *j = weir_interval_join(weir_key_by(a, "key"),
							    weir_key_by(b, "key"), "join",
							    T8_LO, T8_HI, NULL, NULL, NULL);
			const weir_schema *js = weir_stream_schema(j);
			cr_assert_not_null(js, "%s", weir_env_error(env));
			cr_assert_eq(js->ncols, 6);
			cr_assert_str_eq(js->fields[3].name, "b_seq");
			cr_assert_str_eq(js->fields[5].name, "b_value");
			j = weir_flat_map(j, "check-ts", js, check_join_ts, NULL);
			weir_sink_csv(j, "out", path("t8.csv"));
			run_ok(env);
			char what[48];
			snprintf(what, sizeof(what), "interval join p=%d batch=%u", p, batch);
			expect_file_lines(path("t8.csv"), &exp, what);
		}
	lines_free(&exp);
}

/* Late rows: b's rows with seq >= 20000 and seq % 7 == 0 are moved 10000 ms
 * back in event time, far behind the watermark (the generator's, at most a
 * few batches behind). */
#define T9_ROWS 40000

static bool t9_shifted(int64_t seq) { return seq >= 20000 && seq % 7 == 0; }

static int t9_shift(void *arg, const weir_batch *in, weir_batch *out)
{
	(void)arg;
	for (uint32_t r = 0; r < in->rows; r++) {
		for (int c = 0; c < 3; c++)
			weir_col_i64(out, c)[r] = weir_col_i64(in, c)[r];
		if (t9_shifted(weir_col_i64(in, 0)[r]))
			out->ts[r] = in->ts[r] - 10000;
	}
	return 0;
}

Test(proc, interval_join_late_rows_go_to_the_late_port)
{
	lines exp = { 0 }, late = { 0 };
	t8_expected(&exp, 31, 31, T9_ROWS, t9_shifted);
	for (int64_t i = 0; i < T9_ROWS; i++)
		if (t9_shifted(i))
			lines_add(&late, "%lld,%lld,%lld", (long long)i,
				  (long long)gen_key(31, T8_KEYS, (uint64_t)i),
				  (long long)gen_value(31, (uint64_t)i));
	for (int with_port = 0; with_port < 2; with_port++) {
		weir_env *env = env_p(2, 256);
		weir_stream *src = gen(env, "src", T9_ROWS, 31, T8_KEYS);
		weir_stream_set_parallelism(src, 1);
		weir_stream *b = weir_map(src, "shift", weir_stream_schema(src), t9_shift, NULL);
		weir_stream_set_parallelism(b, 1);
		weir_stream *j = weir_interval_join(weir_key_by(src, "key"),
						    weir_key_by(b, "key"), "join",
						    T8_LO, T8_HI, NULL, NULL, NULL);
		if (with_port) {
			/* what weir_window_late does for a join: port 1 with
			 * the inputs' schema */
			weir_stream *l = stream_add_port(j, weir_stream_schema(src));
			weir_sink_csv(l, "late", path("t9-late.csv"));
		}
		weir_sink_csv(j, "out", path("t9.csv"));
		run_ok(env);
		expect_file_lines(path("t9.csv"), &exp, "joined without late rows");
		if (with_port)
			expect_file_lines(path("t9-late.csv"), &late, "late rows");
	}
	lines_free(&exp);
	lines_free(&late);
}

/* String keys, out-of-order rows, a join function with its own schema. */
#define T10_A 2000
#define T10_B 1500
#define T10_NAMES 13

static const char *t10_name(int64_t i)
{
	static const char *n[T10_NAMES] = { "ann", "bob", "cy", "dee", "ed", "flo", "gus",
					    "hal", "ivy", "jo", "kit", "lu", "", };
	return n[i % T10_NAMES];
}

static int64_t t10_tb(int64_t i) { return (i * 7) % T10_B; } /* a permutation */

/* a: "id:i64,name:str" at ts = id */
static void t10_fill_a(void *arg, uint64_t seed, uint64_t first, uint32_t n, weir_batch *out)
{
	(void)arg;
	(void)seed;
	for (uint32_t i = 0; i < n; i++) {
		int64_t id = (int64_t)(first + i);
		const char *nm = t10_name(id * 5 + 1);
		weir_col_i64(out, 0)[i] = id;
		weir_batch_set_str(out, 1, i, nm, strlen(nm));
		out->ts[i] = id;
	}
}

/* b: "name:str,score:f64,ok:bool", out of order in event time */
static void t10_fill_b(void *arg, uint64_t seed, uint64_t first, uint32_t n, weir_batch *out)
{
	(void)arg;
	(void)seed;
	for (uint32_t i = 0; i < n; i++) {
		int64_t j = (int64_t)(first + i);
		const char *nm = t10_name(j);
		weir_batch_set_str(out, 0, i, nm, strlen(nm));
		weir_col_f64(out, 1)[i] = (double)j / 4;
		weir_col_bool(out, 2)[i] = j % 2 == 0;
		out->ts[i] = t10_tb(j);
	}
}

static int t10_join(void *arg, const weir_value *a, int64_t ta, const weir_value *b,
		    int64_t tb, weir_out *out)
{
	(void)arg;
	CHECK(a[1].str.len == b[0].str.len && !memcmp(a[1].str.ptr, b[0].str.ptr, a[1].str.len));
	CHECK(ta == a[0].i64);
	CHECK(tb - 10 <= ta && ta <= tb);
	weir_out_str(out, 0, a[1].str.ptr, a[1].str.len);
	weir_out_i64(out, 1, a[0].i64);
	weir_out_f64(out, 2, b[1].f64);
	weir_out_bool(out, 3, b[2].b);
	weir_out_i64(out, 4, tb);
	weir_out_emit(out);
	return 0;
}

Test(proc, interval_join_string_keys_out_of_order_with_function)
{
	lines exp = { 0 };
	for (int64_t j = 0; j < T10_B; j++) {
		int64_t tb = t10_tb(j);
		for (int64_t ta = tb - 10; ta <= tb; ta++) /* b.ts in [a.ts, a.ts + 10] */
			if (ta >= 0 && ta < T10_A && !strcmp(t10_name(ta * 5 + 1), t10_name(j)))
				lines_add(&exp, "%s,%lld,%g,%s,%lld", t10_name(j), (long long)ta,
					  (double)j / 4, j % 2 == 0 ? "true" : "false",
					  (long long)tb);
	}
	cr_assert_gt(exp.n, 100);
	for (int p = 1; p <= 2; p++) {
		weir_env *env = env_p(p, p == 1 ? 1024 : 10);
		weir_generator_conf ga = { .count = T10_A, .fill = t10_fill_a,
					   .schema = weir_schema_parse(env, "id:i64,name:str") };
		weir_generator_conf gb = { .count = T10_B, .fill = t10_fill_b,
					   .schema = weir_schema_parse(env, "name:str,score:f64,ok:bool") };
		weir_stream *a = weir_source_generator(env, "a", &ga);
		weir_stream *b = weir_source_generator(env, "b", &gb);
		weir_stream *j = weir_interval_join(
		    weir_key_by(a, "name"), weir_key_by(b, "name"), "join", 0, 10,
		    weir_schema_parse(env, "name:str,id:i64,score:f64,ok:bool,tb:ts"),
		    t10_join, NULL);
		weir_sink_csv(j, "out", path("t10.csv"));
		run_ok(env);
		expect_file_lines(path("t10.csv"), &exp, "string-key join");
	}
	lines_free(&exp);
}
