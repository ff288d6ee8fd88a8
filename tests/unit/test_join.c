/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The regular streaming join (weir_join) and top-N per key (weir_topn),
 * operators/join.c and operators/topn.c:
 *
 *   - jobs on the real runtime at -p 1/2/4 and batch sizes 1 and 1024,
 *     checked against a brute-force computation here: every pair of equal
 *     keys exactly once (i64 and string keys, a join function, rows larger
 *     than a batch); the final top n per key read from the last output row
 *     per (key, rank), descending and ascending, ties, string and f64
 *     order columns, n above a key's row count; the exact change stream at
 *     batch size 1;
 *   - hand-built subtasks driven batch by batch with a fake clock: state
 *     TTL (rows expire one by one, memory is reclaimed), latest-only
 *     inputs, top-N changes coalesced per batch;
 *   - checkpoints: jobs cancelled and resumed exactly once, savepoints
 *     restored at another parallelism, a top-N savepoint refused by a job
 *     whose n changed.
 *
 * Jobs write CSV; a function that finds something wrong returns -EPROTO,
 * which fails the job.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weir/keyed.h>

#include "ops.h"
#include "reactor.h"
#include "state.h"
#define TESTENV_LINES
#include "testenv.h"

TestSuite(join, .init = testenv_mkdir, .fini = testenv_rmdir, .timeout = 240);
TestSuite(topn, .init = testenv_mkdir, .fini = testenv_rmdir, .timeout = 240);

/* ---- lines of text --------------------------------------------------------------- */

/* The committed part files of a weir_sink_files directory in commit order
 * (an earlier run's, moved to before/, first), as one list of lines. */
static void lines_read_parts(lines *l, const char *dir)
{
	char cmd[600], name[300];
	snprintf(cmd, sizeof(cmd),
		 "cd %s && { ls before/part-* 2>/dev/null | sort -t- -k2,2n -k3,3n; "
		 "ls part-* 2>/dev/null | sort -t- -k2,2n -k3,3n; }", dir);
	FILE *ls = popen(cmd, "r");
	cr_assert_not_null(ls);
	while (fgets(name, sizeof(name), ls)) {
		char p[700];
		name[strcspn(name, "\n")] = 0;
		snprintf(p, sizeof(p), "%s/%s", dir, name);
		lines_read(l, p);
	}
	pclose(ls);
}

/* ---- the default generator's rows (datastream.h) ------------------------------------ */

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
			int64_t keys, double rate)
{
	weir_generator_conf g = { .count = count, .seed = seed, .keys = keys, .rate = rate };
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

/* Every pair of a (seed sa, na rows) and b (sb, nb rows) with equal keys,
 * as the default output "seq,key,value,b_seq,b_key,b_value". */
static void pairs_expected(lines *exp, uint64_t sa, int64_t na, uint64_t sb, int64_t nb,
			   int64_t keys)
{
	int64_t *cnt = calloc((size_t)keys + 1, sizeof(int64_t)), *idx = malloc((size_t)nb * 8);
	for (int64_t j = 0; j < nb; j++)
		cnt[gen_key(sb, keys, (uint64_t)j) + 1]++;
	for (int64_t k = 0; k < keys; k++)
		cnt[k + 1] += cnt[k];
	int64_t *pos = malloc(((size_t)keys + 1) * 8);
	memcpy(pos, cnt, ((size_t)keys + 1) * 8);
	for (int64_t j = 0; j < nb; j++)
		idx[pos[gen_key(sb, keys, (uint64_t)j)]++] = j;
	for (int64_t i = 0; i < na; i++) {
		int64_t k = gen_key(sa, keys, (uint64_t)i);
		for (int64_t x = cnt[k]; x < cnt[k + 1]; x++) {
			int64_t j = idx[x];
			lines_add(exp, "%lld,%lld,%lld,%lld,%lld,%lld", (long long)i, (long long)k,
				  (long long)gen_value(sa, (uint64_t)i), (long long)j, (long long)k,
				  (long long)gen_value(sb, (uint64_t)j));
		}
	}
	free(cnt);
	free(idx);
	free(pos);
}

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

/* ==== the join against brute force =================================================== */

#define JA_ROWS 3000
#define JA_KEYS 150

Test(join, i64_keys_every_pair_once_p1_p2_p4_batch_1_and_1024)
{
	lines exp = { 0 };
	pairs_expected(&exp, 21, JA_ROWS, 22, JA_ROWS * 2 / 3, JA_KEYS);
	cr_assert_gt(exp.n, (size_t)JA_ROWS * 5);
	for (int p = 1; p <= 4; p *= 2)
		for (uint32_t batch = 1; batch <= 1024; batch *= 1024) {
			weir_env *env = env_p(p, batch);
			weir_stream *a = gen(env, "a", JA_ROWS, 21, JA_KEYS, 0);
			/* b at another parallelism: the two sides interleave
			 * differently from run to run */
			weir_stream *b = gen(env, "b", JA_ROWS * 2 / 3, 22, JA_KEYS, 0);
			weir_stream_set_parallelism(b, 1);
			weir_stream *j = weir_join(weir_key_by(a, "key"), weir_key_by(b, "key"),
						   "join", NULL, NULL, NULL, NULL);
			const weir_schema *js = weir_stream_schema(j);
			cr_assert_not_null(js, "%s", weir_env_error(env));
			cr_assert_eq(js->ncols, 6);
			cr_assert_str_eq(js->fields[3].name, "b_seq");
			j = weir_flat_map(j, "check-ts", js, check_join_ts, NULL);
			weir_sink_csv(j, "out", path("ja.csv"));
			run_ok(env);
			char what[48];
			snprintf(what, sizeof(what), "join p=%d batch=%u", p, batch);
			expect_file_lines(path("ja.csv"), &exp, what);
		}
	lines_free(&exp);
}

/* String keys (one of them empty), strings and f64/bool besides, a join
 * function with its own schema, b's event times out of order. */
#define JB_A 1500
#define JB_B 1200
#define JB_NAMES 13

static const char *jb_name(int64_t i)
{
	static const char *n[JB_NAMES] = { "ann", "bob", "cy", "dee", "ed", "flo", "gus",
					   "hal", "ivy", "jo", "kit", "a-much-longer-name", "", };
	return n[i % JB_NAMES];
}

static void jb_note(int64_t i, char *buf, size_t cap)
{
	size_t len = (size_t)(i * 7 % 41);
	for (size_t k = 0; k < len && k + 1 < cap; k++)
		buf[k] = (char)('a' + (i + (int64_t)k) % 26);
	buf[len < cap ? len : cap - 1] = 0;
}

static int64_t jb_tb(int64_t j) { return (j * 7) % JB_B; } /* a permutation */

/* a: "id:i64,name:str,note:str" at ts = id */
static void jb_fill_a(void *arg, uint64_t seed, uint64_t first, uint32_t n, weir_batch *out)
{
	(void)arg;
	(void)seed;
	for (uint32_t i = 0; i < n; i++) {
		int64_t id = (int64_t)(first + i);
		const char *nm = jb_name(id * 5 + 1);
		char note[48];
		jb_note(id, note, sizeof(note));
		weir_col_i64(out, 0)[i] = id;
		weir_batch_set_str(out, 1, i, nm, strlen(nm));
		weir_batch_set_str(out, 2, i, note, strlen(note));
		out->ts[i] = id;
	}
}

/* b: "name:str,score:f64,ok:bool" */
static void jb_fill_b(void *arg, uint64_t seed, uint64_t first, uint32_t n, weir_batch *out)
{
	(void)arg;
	(void)seed;
	for (uint32_t i = 0; i < n; i++) {
		int64_t j = (int64_t)(first + i);
		const char *nm = jb_name(j);
		weir_batch_set_str(out, 0, i, nm, strlen(nm));
		weir_col_f64(out, 1)[i] = (double)j / 4 - 100;
		weir_col_bool(out, 2)[i] = j % 2 == 0;
		out->ts[i] = jb_tb(j);
	}
}

static int jb_join(void *arg, const weir_value *a, int64_t ta, const weir_value *b,
		   int64_t tb, weir_out *out)
{
	(void)arg;
	CHECK(a[1].str.len == b[0].str.len && !memcmp(a[1].str.ptr, b[0].str.ptr, a[1].str.len));
	CHECK(ta == a[0].i64);
	weir_out_str(out, 0, a[1].str.ptr, a[1].str.len);
	weir_out_i64(out, 1, a[0].i64);
	weir_out_str(out, 2, a[2].str.ptr, a[2].str.len);
	weir_out_f64(out, 3, b[1].f64);
	weir_out_bool(out, 4, b[2].b);
	weir_out_i64(out, 5, tb);
	weir_out_i64(out, 6, ta > tb ? ta : tb);
	weir_out_emit(out); /* event time: the default, max(ta, tb) */
	return 0;
}

/* The join function's rows: event time (default) = column 6. */
static void jb_keep(void *arg, const weir_batch *in, uint8_t *keep)
{
	(void)arg;
	for (uint32_t r = 0; r < in->rows; r++)
		keep[r] = in->ts[r] == weir_col_i64(in, 6)[r];
}

Test(join, string_keys_join_function_any_order)
{
	lines exp = { 0 };
	for (int64_t j = 0; j < JB_B; j++)
		for (int64_t i = 0; i < JB_A; i++)
			if (!strcmp(jb_name(i * 5 + 1), jb_name(j))) {
				char note[48];
				int64_t tb = jb_tb(j);
				jb_note(i, note, sizeof(note));
				lines_add(&exp, "%s,%lld,%s,%.15g,%s,%lld,%lld", jb_name(j), (long long)i,
					  note, (double)j / 4 - 100, j % 2 == 0 ? "true" : "false",
					  (long long)tb, (long long)(i > tb ? i : tb));
			}
	cr_assert_gt(exp.n, 10000);
	const struct { int p; uint32_t batch; } runs[] = { { 1, 1024 }, { 2, 7 }, { 4, 1 } };
	for (size_t r = 0; r < ARRAY_SIZE(runs); r++) {
		weir_env *env = env_p(runs[r].p, runs[r].batch);
		weir_generator_conf ga = { .count = JB_A, .fill = jb_fill_a,
					   .schema = weir_schema_parse(env, "id:i64,name:str,note:str") };
		weir_generator_conf gb = { .count = JB_B, .fill = jb_fill_b,
					   .schema = weir_schema_parse(env, "name:str,score:f64,ok:bool") };
		weir_stream *a = weir_source_generator(env, "a", &ga);
		weir_stream *b = weir_source_generator(env, "b", &gb);
		weir_stream *j = weir_join(
		    weir_key_by(a, "name"), weir_key_by(b, "name"), "join", NULL,
		    weir_schema_parse(env, "name:str,id:i64,note:str,score:f64,ok:bool,tb:ts,"
				      "mx:i64"),
		    jb_join, NULL);
		/* rows whose event time is not max(ta, tb) would go missing */
		j = weir_filter(j, "ts", jb_keep, NULL);
		weir_sink_csv(j, "out", path("jb.csv"));
		run_ok(env);
		char what[48];
		snprintf(what, sizeof(what), "string keys p=%d batch=%u", runs[r].p, runs[r].batch);
		expect_file_lines(path("jb.csv"), &exp, what);
	}
	lines_free(&exp);
}

/* Rows larger than a batch block (128 KiB): a's rows carry 300 000-byte
 * strings, b's 200 000; every output row is both, 500 000 bytes. */
#define JC_A 3
#define JC_B 4
#define JC_BIG_A 300000
#define JC_BIG_B 200000

static char jc_text[2][JC_BIG_A]; /* filled before the job runs; read-only */

/* "seq:i64,key:i64,value:i64" -> "k:i64,i:i64,big:str" */
static int jc_blow_up(void *arg, const weir_batch *in, weir_out *out)
{
	int side = (int)(intptr_t)arg;
	for (uint32_t r = 0; r < in->rows; r++) {
		int64_t i = weir_col_i64(in, 0)[r];
		weir_out_i64(out, 0, 7);
		weir_out_i64(out, 1, i);
		/* a different length per row; the text says whose it is */
		size_t len = (size_t)(side ? JC_BIG_B : JC_BIG_A) - (size_t)i;
		weir_out_str(out, 2, jc_text[side] + i, len);
		weir_out_ts(out, in->ts[r]);
		weir_out_emit(out);
	}
	return 0;
}

static int jc_summary(void *arg, const weir_batch *in, weir_out *out)
{
	(void)arg;
	for (uint32_t r = 0; r < in->rows; r++) {
		int64_t i = weir_col_i64(in, 1)[r], j = weir_col_i64(in, 4)[r];
		uint32_t la, lb;
		const char *pa = weir_batch_str(in, 2, r, &la), *pb = weir_batch_str(in, 5, r, &lb);
		CHECK(weir_col_i64(in, 0)[r] == 7 && weir_col_i64(in, 3)[r] == 7);
		CHECK(la == JC_BIG_A - i && !memcmp(pa, jc_text[0] + i, la));
		CHECK(lb == JC_BIG_B - j && !memcmp(pb, jc_text[1] + j, lb));
		weir_out_i64(out, 0, i);
		weir_out_i64(out, 1, j);
		weir_out_i64(out, 2, (int64_t)la + lb);
		weir_out_emit(out);
	}
	return 0;
}

Test(join, rows_larger_than_a_batch)
{
	for (int s = 0; s < 2; s++)
		for (size_t k = 0; k < JC_BIG_A; k++)
			jc_text[s][k] = (char)((s ? 'A' : 'a') + (k * 7 + k / 26) % 26);
	lines exp = { 0 };
	for (int i = 0; i < JC_A; i++)
		for (int j = 0; j < JC_B; j++)
			lines_add(&exp, "%d,%d,%d", i, j, JC_BIG_A - i + JC_BIG_B - j);
	for (int p = 1; p <= 2; p++) {
		weir_env *env = env_p(p, p == 1 ? 1024 : 1);
		const weir_schema *bs = weir_schema_parse(env, "k:i64,i:i64,big:str");
		weir_stream *a = weir_flat_map(gen(env, "a", JC_A, 1, 1, 0), "big-a", bs,
					       jc_blow_up, (void *)0);
		weir_stream *b = weir_flat_map(gen(env, "b", JC_B, 2, 1, 0), "big-b", bs,
					       jc_blow_up, (void *)1);
		weir_stream *j = weir_join(weir_key_by(a, "k"), weir_key_by(b, "k"), "join",
					   NULL, NULL, NULL, NULL);
		j = weir_flat_map(j, "summary", weir_schema_parse(env, "i:i64,j:i64,bytes:i64"),
				  jc_summary, NULL);
		weir_sink_csv(j, "out", path("jc.csv"));
		run_ok(env);
		expect_file_lines(path("jc.csv"), &exp, "big rows");
	}
	lines_free(&exp);
}

/* ==== TTL and latest-only on real jobs =============================================== */

Test(join, a_long_ttl_changes_nothing)
{
	lines exp = { 0 };
	pairs_expected(&exp, 5, 2000, 6, 2500, 40);
	weir_env *env = env_p(2, 64);
	weir_join_conf jc = { .state_ttl_ms = 3600 * 1000 };
	weir_stream *j = weir_join(weir_key_by(gen(env, "a", 2000, 5, 40, 0), "key"),
				   weir_key_by(gen(env, "b", 2500, 6, 40, 0), "key"), "join", &jc,
				   NULL, NULL, NULL);
	weir_sink_csv(j, "out", path("jt.csv"));
	run_ok(env);
	expect_file_lines(path("jt.csv"), &exp, "join with a TTL of an hour");
	lines_free(&exp);
}

static atomic_llong jt_pairs;

static int jt_count(void *arg, const weir_value *a, int64_t ta, const weir_value *b,
		    int64_t tb, weir_out *out)
{
	(void)arg, (void)ta, (void)tb, (void)out;
	CHECK(a[1].i64 == b[1].i64);
	atomic_fetch_add_explicit(&jt_pairs, 1, memory_order_relaxed);
	return 0;
}

/* A TTL of 2 ms on sources paced at 10 k rows/s (2 s): rows of a key
 * arrive about 10 ms apart on each side, so most pairs are never made
 * (the brute force has 20 000 * 20 000 / 100 = 4 M; without expiry every
 * one would be).  The TTL runs on the wall clock, so a stall of the join's
 * thread lets rows queue up and pairs the rows of the stall: a fraction of
 * about (stall / run)^2.  The run is long (it was 0.5 s) so that a quarter
 * takes a stall of half of it, a second and more, not a loaded machine's
 * usual hiccup.  (The fake-clock tests below check expiry exactly.) */
Test(join, a_short_ttl_forgets_rows)
{
	weir_env *env = env_p(2, 16);
	weir_join_conf jc = { .state_ttl_ms = 2 };
	atomic_store(&jt_pairs, 0);
	weir_stream *j = weir_join(weir_key_by(gen(env, "a", 20000, 8, 100, 10000), "key"),
				   weir_key_by(gen(env, "b", 20000, 9, 100, 10000), "key"), "join",
				   &jc, weir_schema_parse(env, "x:i64"), jt_count, NULL);
	weir_sink_discard(j, "out");
	run_ok(env);
	long long n = atomic_load(&jt_pairs);
	cr_log_info("short TTL: %lld of 4000000 pairs", n);
	cr_assert_gt(n, 0);
	cr_assert_lt(n, 4000000 / 4, "%lld pairs: the TTL forgot nothing", n);
}

/* b is an upsert stream ("key,ver", one source subtask so each key's
 * versions arrive in order), kept latest-only.  Whatever the interleaving,
 * each a row must pair with a contiguous run of its key's versions that
 * ends at the last one, each once: those current when it arrived or
 * after. */
#define JL_A 4000
#define JL_B 2000
#define JL_KEYS 50

static void jl_fill_b(void *arg, uint64_t seed, uint64_t first, uint32_t n, weir_batch *out)
{
	(void)arg;
	(void)seed;
	for (uint32_t i = 0; i < n; i++) {
		int64_t v = (int64_t)(first + i);
		weir_col_i64(out, 0)[i] = v % JL_KEYS;
		weir_col_i64(out, 1)[i] = v;
		out->ts[i] = v;
	}
}

Test(join, latest_only_b_pairs_each_a_with_a_suffix_of_versions)
{
	for (int p = 1; p <= 2; p++) {
		weir_env *env = env_p(p, p == 1 ? 1024 : 3);
		weir_generator_conf gb = { .count = JL_B, .fill = jl_fill_b, .rate = 20000,
					   .schema = weir_schema_parse(env, "key:i64,ver:i64") };
		weir_stream *b = weir_source_generator(env, "b", &gb);
		weir_stream_set_parallelism(b, 1);
		weir_join_conf jc = { .b_latest_only = true };
		weir_stream *j = weir_join(weir_key_by(gen(env, "a", JL_A, 3, JL_KEYS, 40000), "key"),
					   weir_key_by(b, "key"), "join", &jc, NULL, NULL, NULL);
		weir_sink_csv(j, "out", path("jl.csv"));
		run_ok(env);

		/* versions[i]: a bitmap of the versions a row i met */
		static uint8_t met[JL_A][JL_B / JL_KEYS];
		memset(met, 0, sizeof(met));
		FILE *f = fopen(path("jl.csv"), "r");
		cr_assert_not_null(f);
		long long seq, key, value, bkey, ver;
		long n = 0, multi = 0;
		while (fscanf(f, "%lld,%lld,%lld,%lld,%lld\n", &seq, &key, &value, &bkey, &ver) == 5) {
			cr_assert(seq >= 0 && seq < JL_A && key == bkey && ver % JL_KEYS == key);
			cr_assert_eq(key, gen_key(3, JL_KEYS, (uint64_t)seq));
			uint8_t *m = &met[seq][ver / JL_KEYS];
			cr_assert_eq(*m, 0, "a row %lld met version %lld twice", seq, ver);
			*m = 1;
			n++;
		}
		fclose(f);
		cr_assert_gt(n, 0);
		for (int i = 0; i < JL_A; i++) {
			const int nv = JL_B / JL_KEYS;
			int first = nv;
			while (first > 0 && met[i][first - 1])
				first--;
			cr_assert_lt(first, nv, "a row %d never met its key's last version", i);
			for (int v = 0; v < first; v++)
				cr_assert_eq(met[i][v], 0, "a row %d met version %d, then missed "
					     "some before the last", i, v * JL_KEYS);
			multi += first < nv - 1;
		}
		cr_log_info("latest-only p=%d: %ld pairs, %ld a rows met more than one version",
			    p, n, multi);
	}
}

/* ==== hand-built join subtasks, a fake clock ========================================= */

static pool_set *pools;

static void fake_setup(void)
{
	testenv_mkdir();
	pools = pool_set_new(1, 128 * 1024, 256, 1024);
	pool_bind_thread(pools, 0);
}

static void fake_teardown(void)
{
	pool_set_free(pools);
	testenv_rmdir();
}

TestSuite(fake, .init = fake_setup, .fini = fake_teardown, .timeout = 60);

static lines captured;
static const weir_schema *cap_schema;

/* Capture output rows as CSV-ish lines, event time last: "c0,c1,...@ts". */
static void cap_process(task *t, int input, weir_batch *b)
{
	(void)t;
	(void)input;
	for (uint32_t r = 0; r < b->rows; r++) {
		char buf[512];
		int n = 0;
		for (int c = 0; c < cap_schema->ncols; c++) {
			if (c)
				buf[n++] = ',';
			if (cap_schema->fields[c].type == WEIR_STR) {
				uint32_t len;
				const char *p = weir_batch_str(b, c, r, &len);
				n += snprintf(buf + n, sizeof(buf) - (size_t)n, "%.*s", (int)len, p);
			} else {
				n += snprintf(buf + n, sizeof(buf) - (size_t)n, "%lld",
					      (long long)weir_col_i64(b, c)[r]);
			}
		}
		lines_add(&captured, "%s@%lld", buf, (long long)b->ts[r]);
	}
	batch_release(b);
}

static const op_ops cap_ops = { .kind = "capture", .process = cap_process };

typedef struct fake {
	weir_env *env;
	const lnode *node;
	weir_config cfg;
	task t, cap;
	outlet o;
	weir_out wo;
	actor a;
} fake;

/* A subtask of the operator that makes stream s (built, never run). */
static fake *fake_new(weir_env *env, weir_stream *s)
{
	fake *f = calloc(1, sizeof(*f));
	cr_assert_not_null(s, "%s", weir_env_error(env));
	f->env = env;
	f->node = stream_node(s);
	cap_schema = f->node->schema[0];
	lines_free(&captured);
	f->cfg.batch_rows = 256;
	f->cap.ops = &cap_ops;
	f->o = (outlet){ .kind = OUT_CHAIN, .owner = &f->t, .next = &f->cap };
	f->wo = (weir_out){ .t = &f->t, .port = 0, .schema = f->node->schema[0] };
	f->t.ops = f->node->ops;
	f->t.node = f->node;
	f->t.cfg = &f->cfg;
	f->t.subtask = 0;
	f->t.parallelism = 1;
	f->t.actor = &f->a;
	f->t.watermark = f->t.out_watermark = INT64_MIN;
	f->t.nports = 1;
	f->t.nout[0] = 1;
	f->t.out[0] = &f->o;
	f->t.emit[0] = &f->wo;
	cr_assert_eq(f->t.ops->open(&f->t), 0);
	return f;
}

static void fake_free(fake *f)
{
	f->t.ops->close(&f->t);
	if (f->t.keyed_free)
		f->t.keyed_free(f->t.keyed);
	weir_env_free(f->env);
	free(f);
	lines_free(&captured);
}

static weir_schema kx_schema;

/* Feed one batch of rows "key:i64,x:i64" (x also the event time) on input
 * `side`, then flush what the operator emitted into `captured`. */
static void feed_kx(fake *f, int side, int n, const int64_t (*rows)[2])
{
	weir_batch *b = batch_alloc(&kx_schema, 0);
	for (int i = 0; i < n; i++) {
		weir_col_i64(b, 0)[i] = rows[i][0];
		weir_col_i64(b, 1)[i] = rows[i][1];
		b->ts[i] = rows[i][1];
	}
	b->rows = (uint32_t)n;
	f->t.ops->process(&f->t, side, b); /* takes b */
	task_flush(&f->t);
}

static void feed1(fake *f, int side, int64_t key, int64_t x)
{
	const int64_t row[1][2] = { { key, x } };
	feed_kx(f, side, 1, row);
}

static int64_t fake_now;
static int64_t fake_clock(void) { return fake_now; }

/* A join of two "key:i64,x:i64" streams. */
static fake *join_fake(const weir_join_conf *jc)
{
	char err[128];
	cr_assert_eq(schema_parse("key:i64,x:i64", &kx_schema, err, sizeof(err)), 0);
	weir_env *env = weir_env_new();
	weir_generator_conf g = { .count = 1, .fill = jl_fill_b,
				  .schema = weir_schema_parse(env, "key:i64,x:i64") };
	weir_stream *a = weir_key_by(weir_source_generator(env, "a", &g), "key");
	weir_stream *b = weir_key_by(weir_source_generator(env, "b", &g), "key");
	fake *f = fake_new(env, weir_join(a, b, "join", jc, NULL, NULL, NULL));
	join_set_clock(&f->t, fake_clock);
	return f;
}

static void expect_captured(const char *what, int n, ...)
{
	lines exp = { 0 };
	va_list ap;
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		lines_add(&exp, "%s", va_arg(ap, const char *));
	va_end(ap);
	lines_expect(&captured, &exp, what);
	lines_free(&exp);
	lines_free(&captured);
}

Test(fake, ttl_expires_each_row_on_its_own)
{
	fake *f = join_fake(&(weir_join_conf){ .state_ttl_ms = 100 });
	fake_now = 1000;
	feed1(f, 0, 1, 11);      /* a11 kept at 1000 */
	fake_now = 1050;
	feed1(f, 1, 1, 21);      /* b21 at 1050: meets a11 */
	expect_captured("b21", 1, "1,11,1,21@21");
	fake_now = 1099;
	feed1(f, 1, 1, 22);      /* a11 is 99 ms old: still there */
	expect_captured("b22", 1, "1,11,1,22@22");
	fake_now = 1100;
	feed1(f, 1, 1, 23);      /* a11 is 100 ms old: gone */
	expect_captured("b23", 0);
	fake_now = 1149;
	feed1(f, 0, 1, 12);      /* b21 (99 ms), b22, b23 */
	expect_captured("a12", 3, "1,12,1,21@21", "1,12,1,22@22", "1,12,1,23@23");
	feed1(f, 0, 2, 13);      /* another key: nothing */
	expect_captured("a13", 0);
	fake_now = 1150;
	feed1(f, 0, 1, 14);      /* b21 gone, b22 and b23 not */
	expect_captured("a14", 2, "1,14,1,22@22", "1,14,1,23@23");
	fake_now = 5000;
	feed1(f, 1, 1, 24);      /* every a row expired long ago */
	feed1(f, 0, 2, 15);
	expect_captured("late", 0);
	fake_free(f);
}

Test(fake, ttl_reclaims_memory_of_hot_and_idle_keys)
{
	fake *f = join_fake(&(weir_join_conf){ .state_ttl_ms = 100 });
	size_t keys[2], rows[2], bytes[2];
	/* a hot key on one side only: its expired rows make room for new
	 * ones, so it holds a TTL's worth (100 rows of 32 bytes) in a buffer
	 * of at most twice that, rounded to a power of two */
	for (int i = 0; i < 5000; i++) {
		fake_now = 10000 + i;
		feed1(f, 0, 1, i);
		join_state_size(&f->t, keys, rows, bytes);
		cr_assert_leq(rows[0], 100, "%zu rows kept at %d", rows[0], i);
		cr_assert_leq(bytes[0], 8192, "%zu bytes kept at %d", bytes[0], i);
	}
	cr_assert_eq(rows[0], 100);
	/* 300 keys seen once, then never again: the table's sweep reclaims
	 * them while other keys are written */
	for (int k = 0; k < 300; k++)
		feed1(f, 1, 1000 + k, k);
	join_state_size(&f->t, keys, rows, bytes);
	cr_assert_eq(keys[1], 300);
	fake_now += 1000;
	for (int i = 0; i < 2000; i++)
		feed1(f, 1, 5, i);
	join_state_size(&f->t, keys, rows, bytes);
	cr_assert_eq(keys[1], 1, "%zu keys left", keys[1]);
	cr_assert_eq(rows[1], 2000);
	expect_captured("nothing ever met", 0);
	/* an expired entry that comes back keeps its buffer */
	fake_now += 1000;
	feed1(f, 1, 5, 1);
	join_state_size(&f->t, keys, rows, bytes);
	cr_assert(keys[1] == 1 && rows[1] == 1 && bytes[1] >= 2000 * 32);
	fake_free(f);
}

Test(fake, latest_only_b_keeps_the_last_row_per_key)
{
	fake *f = join_fake(&(weir_join_conf){ .b_latest_only = true });
	size_t keys[2], rows[2], bytes[2];
	feed1(f, 0, 1, 11);
	feed1(f, 1, 1, 21);                 /* meets a11 */
	feed1(f, 1, 1, 22);                 /* replaces b21, meets a11 */
	expect_captured("b", 2, "1,11,1,21@21", "1,11,1,22@22");
	feed1(f, 0, 1, 12);                 /* meets b22 only */
	expect_captured("a12", 1, "1,12,1,22@22");
	const int64_t batch[3][2] = { { 1, 23 }, { 2, 31 }, { 1, 24 } };
	feed_kx(f, 1, 3, batch);            /* b24 replaces b23 within a batch */
	expect_captured("batch", 4, "1,11,1,23@23", "1,12,1,23@23", "1,11,1,24@24",
			"1,12,1,24@24");
	feed1(f, 0, 2, 13);
	feed1(f, 0, 1, 14);
	expect_captured("a13 a14", 2, "2,13,2,31@31", "1,14,1,24@24");
	join_state_size(&f->t, keys, rows, bytes);
	cr_assert(keys[0] == 2 && rows[0] == 4 && keys[1] == 2 && rows[1] == 2);
	fake_free(f);
}

Test(fake, latest_only_both_sides)
{
	fake *f = join_fake(&(weir_join_conf){ .a_latest_only = true, .b_latest_only = true });
	feed1(f, 0, 1, 11);
	feed1(f, 0, 1, 12);                 /* replaces a11 */
	feed1(f, 1, 1, 21);                 /* meets a12 */
	feed1(f, 0, 1, 13);                 /* replaces a12, meets b21 */
	feed1(f, 1, 1, 22);                 /* meets a13 */
	expect_captured("both", 3, "1,12,1,21@21", "1,13,1,21@21", "1,13,1,22@22");
	fake_free(f);
}

/* ==== top-N against brute force ==================================================== */

typedef struct trow {
	int64_t seq, key, value;
} trow;

static int trow_cmp_desc;

/* rank order of the default generator's rows by value (desc or asc),
 * ties: the other columns ascending (seq, then key) */
static int trow_cmp(const void *x, const void *y)
{
	const trow *a = x, *b = y;
	if (a->value != b->value)
		return (a->value < b->value) == !trow_cmp_desc ? -1 : 1;
	if (a->seq != b->seq)
		return a->seq < b->seq ? -1 : 1;
	return 0;
}

/* The expected final top n per key as "key,rank,seq,value" lines. */
static void topn_expected(lines *exp, uint64_t seed, int64_t rows, int64_t keys, int n,
			  bool desc)
{
	trow *v = malloc((size_t)rows * sizeof(*v));
	for (int64_t i = 0; i < rows; i++)
		v[i] = (trow){ i, gen_key(seed, keys, (uint64_t)i), gen_value(seed, (uint64_t)i) };
	trow_cmp_desc = desc;
	for (int64_t k = 0; k < keys; k++) {
		trow *kv = malloc((size_t)rows * sizeof(*kv));
		int64_t m = 0;
		for (int64_t i = 0; i < rows; i++)
			if (v[i].key == k)
				kv[m++] = v[i];
		qsort(kv, (size_t)m, sizeof(*kv), trow_cmp);
		for (int64_t r = 0; r < m && r < n; r++)
			lines_add(exp, "%lld,%lld,%lld,%lld", (long long)k, (long long)r + 1,
				  (long long)kv[r].seq, (long long)kv[r].value);
		free(kv);
	}
	free(v);
}

/* The last row per (key, rank) of "seq,key,value,rank" lines (in output
 * order), as "key,rank,seq,value" lines; every line must be a generator
 * row of `seed` with a rank in 1..n. */
static void topn_final(lines *out, const lines *in, uint64_t seed, int64_t keys, int n)
{
	int64_t(*last)[2] = calloc((size_t)(keys * n), sizeof(*last));
	bool *seen = calloc((size_t)(keys * n), 1);
	for (size_t i = 0; i < in->n; i++) {
		long long seq, key, value, rank;
		cr_assert_eq(sscanf(in->v[i], "%lld,%lld,%lld,%lld", &seq, &key, &value, &rank), 4,
			     "%s", in->v[i]);
		cr_assert(rank >= 1 && rank <= n, "rank %lld", rank);
		cr_assert_eq(key, gen_key(seed, keys, (uint64_t)seq));
		cr_assert_eq(value, gen_value(seed, (uint64_t)seq));
		size_t x = (size_t)(key * n + rank - 1);
		last[x][0] = seq;
		last[x][1] = value;
		seen[x] = true;
	}
	for (int64_t k = 0; k < keys; k++)
		for (int r = 0; r < n; r++)
			if (seen[k * n + r])
				lines_add(out, "%lld,%d,%lld,%lld", (long long)k, r + 1,
					  (long long)last[k * n + r][0], (long long)last[k * n + r][1]);
	free(last);
	free(seen);
}

static void topn_check_file(const char *file, uint64_t seed, int64_t rows, int64_t keys,
			    int n, bool desc, const char *what)
{
	lines got = { 0 }, fin = { 0 }, exp = { 0 };
	lines_read(&got, file);
	topn_final(&fin, &got, seed, keys, n);
	topn_expected(&exp, seed, rows, keys, n, desc);
	lines_expect(&fin, &exp, what);
	lines_free(&got);
	lines_free(&fin);
	lines_free(&exp);
}

#define TA_ROWS 20000
#define TA_KEYS 60

Test(topn, i64_desc_and_asc_p1_p2_p4_batch_1_and_1024)
{
	for (int desc = 1; desc >= 0; desc--)
		for (int p = 1; p <= 4; p *= 2)
			for (uint32_t batch = 1; batch <= 1024; batch *= 1024) {
				weir_env *env = env_p(p, batch);
				weir_stream *s = gen(env, "gen", TA_ROWS, 31, TA_KEYS, 0);
				weir_stream *t = weir_topn(weir_key_by(s, "key"), "top", 5, "value",
							   desc);
				const weir_schema *ts = weir_stream_schema(t);
				cr_assert_not_null(ts, "%s", weir_env_error(env));
				cr_assert_eq(ts->ncols, 4);
				cr_assert_str_eq(ts->fields[3].name, "rank");
				weir_sink_csv(t, "out", path("ta.csv"));
				run_ok(env);
				char what[64];
				snprintf(what, sizeof(what), "top-5 %s p=%d batch=%u",
					 desc ? "desc" : "asc", p, batch);
				/* values in [0, 1000): plenty of ties, broken by seq */
				topn_check_file(path("ta.csv"), 31, TA_ROWS, TA_KEYS, 5, desc, what);
			}
}

Test(topn, n_larger_than_a_keys_rows)
{
	weir_env *env = env_p(2, 100);
	weir_stream *s = gen(env, "gen", 3000, 32, 70, 0);
	weir_sink_csv(weir_topn(weir_key_by(s, "key"), "top", 100, "value", false), "out",
		      path("tb.csv"));
	run_ok(env);
	topn_check_file(path("tb.csv"), 32, 3000, 70, 100, false, "top-100 of ~43 rows");
}

/* At -p 1 with batch size 1 the change stream is exact: each row that
 * enters emits its rank and every rank below it, at its own event time. */
Test(topn, every_change_at_batch_size_1)
{
	const int n = 4;
	const int64_t rows = 3000, keys = 25;
	weir_env *env = env_p(1, 1);
	weir_stream *s = gen(env, "gen", (uint64_t)rows, 33, keys, 0);
	weir_sink_csv(weir_topn(weir_key_by(s, "key"), "top", n, "value", true), "out",
		      path("tc.csv"));
	run_ok(env);

	lines exp = { 0 };
	trow top[25][4];
	int cnt[25] = { 0 };
	trow_cmp_desc = 1;
	for (int64_t i = 0; i < rows; i++) {
		trow r = { i, gen_key(33, keys, (uint64_t)i), gen_value(33, (uint64_t)i) };
		trow *t = top[r.key];
		int c = cnt[r.key], at = 0;
		while (at < c && trow_cmp(&t[at], &r) <= 0)
			at++;
		if (at >= n)
			continue;
		memmove(&t[at + 1], &t[at], (size_t)((c < n ? c : n - 1) - at) * sizeof(trow));
		t[at] = r;
		if (c < n)
			cnt[r.key] = ++c;
		for (int k = at; k < c; k++)
			lines_add(&exp, "%lld,%lld,%lld,%d", (long long)t[k].seq, (long long)r.key,
				  (long long)t[k].value, k + 1);
	}
	lines got = { 0 };
	lines_read(&got, path("tc.csv"));
	cr_assert_eq(got.n, exp.n, "%zu changes, expected %zu", got.n, exp.n);
	for (size_t i = 0; i < got.n; i++) /* in order */
		cr_assert_str_eq(got.v[i], exp.v[i], "change %zu", i);
	lines_free(&got);
	lines_free(&exp);
}

/* String keys, a string order column whose values share long prefixes
 * (so the 8-byte order key ties and the full strings decide), and an f64
 * order column with negative values, -0.0 and +0.0; ties broken by the
 * other columns. */
#define TD_ROWS 6000
#define TD_KEYS 17

static void td_fill(void *arg, uint64_t seed, uint64_t first, uint32_t n, weir_batch *out)
{
	(void)arg;
	(void)seed;
	static const double f[] = { -3.5, -0.0, 0.0, 2.25, -1e9, 1e9, 2.25 };
	for (uint32_t i = 0; i < n; i++) {
		uint64_t s = first + i, r = splitmix64(s * 977);
		char k[16], name[64];
		int kl = snprintf(k, sizeof(k), "k%llu", (unsigned long long)(r % TD_KEYS));
		int nl = snprintf(name, sizeof(name), "%s%llu",
				  r >> 60 & 1 ? "a-shared-prefix-" : "a-shared-pre",
				  (unsigned long long)(r >> 20 & 0x3f));
		weir_batch_set_str(out, 0, i, k, (size_t)kl);
		weir_batch_set_str(out, 1, i, name, (size_t)nl);
		weir_col_f64(out, 2)[i] = f[(r >> 30) % 7];
		weir_col_i64(out, 3)[i] = (int64_t)(r >> 40 & 3); /* many full ties */
		out->ts[i] = (int64_t)s;
	}
}

typedef struct tdrow {
	char k[16], name[64];
	double f;
	int64_t x;
} tdrow;

static int td_col; /* 1: by name, 2: by f */
static int td_desc;

static uint64_t fkey(double d)
{
	uint64_t b;
	memcpy(&b, &d, 8);
	return b >> 63 ? ~b : b | (1ull << 63);
}

static int td_cmp(const void *x, const void *y)
{
	const tdrow *a = x, *b = y;
	int r = td_col == 1 ? strcmp(a->name, b->name)
			    : (fkey(a->f) > fkey(b->f)) - (fkey(a->f) < fkey(b->f));
	if (r)
		return td_desc ? -r : r;
	if ((r = strcmp(a->k, b->k)))
		return r;
	if (td_col != 1 && (r = strcmp(a->name, b->name)))
		return r;
	if (td_col != 2 && (r = (fkey(a->f) > fkey(b->f)) - (fkey(a->f) < fkey(b->f))))
		return r;
	return (a->x > b->x) - (a->x < b->x);
}

static void td_line(char *buf, size_t cap, const tdrow *r)
{
	snprintf(buf, cap, "%s,%s,%.15g,%lld", r->k, r->name, r->f, (long long)r->x);
}

Test(topn, string_and_f64_order_columns_with_ties)
{
	tdrow *all = malloc(TD_ROWS * sizeof(*all));
	for (uint64_t s = 0; s < TD_ROWS; s++) {
		static const double f[] = { -3.5, -0.0, 0.0, 2.25, -1e9, 1e9, 2.25 };
		uint64_t r = splitmix64(s * 977);
		snprintf(all[s].k, sizeof(all[s].k), "k%llu", (unsigned long long)(r % TD_KEYS));
		snprintf(all[s].name, sizeof(all[s].name), "%s%llu",
			 r >> 60 & 1 ? "a-shared-prefix-" : "a-shared-pre",
			 (unsigned long long)(r >> 20 & 0x3f));
		all[s].f = f[(r >> 30) % 7];
		all[s].x = (int64_t)(r >> 40 & 3);
	}
	const struct { int col; int desc; int n; int p; uint32_t batch; } runs[] = {
		{ 1, 1, 7, 1, 1024 }, { 1, 0, 3, 2, 1 }, { 2, 1, 6, 4, 33 }, { 2, 0, 9, 2, 1024 },
	};
	for (size_t ri = 0; ri < ARRAY_SIZE(runs); ri++) {
		td_col = runs[ri].col;
		td_desc = runs[ri].desc;
		int n = runs[ri].n;
		weir_env *env = env_p(runs[ri].p, runs[ri].batch);
		weir_generator_conf g = { .count = TD_ROWS, .fill = td_fill,
					  .schema = weir_schema_parse(env, "k:str,name:str,f:f64,x:i64") };
		weir_stream *s = weir_source_generator(env, "gen", &g);
		weir_stream *t = weir_topn(weir_key_by(s, "k"), "top", n,
					   td_col == 1 ? "name" : "f", td_desc);
		weir_sink_csv(t, "out", path("td.csv"));
		run_ok(env);

		/* expected: the top n of each key, as "k,name,f,x,rank" */
		lines exp = { 0 }, got = { 0 }, fin = { 0 };
		qsort(all, TD_ROWS, sizeof(*all), td_cmp); /* key-major needs a pass per key */
		for (int k = 0; k < TD_KEYS; k++) {
			char kn[16];
			int r = 0;
			snprintf(kn, sizeof(kn), "k%d", k);
			for (int i = 0; i < TD_ROWS && r < n; i++)
				if (!strcmp(all[i].k, kn)) {
					char line[128];
					td_line(line, sizeof(line), &all[i]);
					lines_add(&exp, "%s,%d", line, ++r);
				}
		}
		/* the last row per (k, rank) */
		lines_read(&got, path("td.csv"));
		for (size_t i = got.n; i-- > 0;) {
			char *rank = strrchr(got.v[i], ',');
			char k[16];
			cr_assert_not_null(rank);
			snprintf(k, sizeof(k), "%.*s", (int)strcspn(got.v[i], ","), got.v[i]);
			bool dup = false;
			for (size_t j = 0; j < fin.n && !dup; j++) {
				const char *fr = strrchr(fin.v[j], ',');
				dup = !strcmp(fr, rank) && !strncmp(fin.v[j], k, strlen(k)) &&
				      fin.v[j][strlen(k)] == ',';
			}
			if (!dup)
				lines_add(&fin, "%s", got.v[i]);
		}
		char what[64];
		snprintf(what, sizeof(what), "top-%d by %s %s", n, td_col == 1 ? "name" : "f",
			 td_desc ? "desc" : "asc");
		lines_expect(&fin, &exp, what);
		lines_free(&exp);
		lines_free(&got);
		lines_free(&fin);
	}
	free(all);
}

/* ==== hand-built top-N subtask: changes per batch =================================== */

static fake *topn_fake(int n, bool desc)
{
	char err[128];
	cr_assert_eq(schema_parse("key:i64,x:i64", &kx_schema, err, sizeof(err)), 0);
	weir_env *env = weir_env_new();
	weir_generator_conf g = { .count = 1, .fill = jl_fill_b,
				  .schema = weir_schema_parse(env, "key:i64,x:i64") };
	weir_stream *a = weir_key_by(weir_source_generator(env, "a", &g), "key");
	return fake_new(env, weir_topn(a, "top", n, "x", desc));
}

Test(fake, topn_changes_are_coalesced_per_batch)
{
	fake *f = topn_fake(3, true);
	const int64_t b1[2][2] = { { 1, 10 }, { 1, 5 } };
	feed_kx(f, 0, 2, b1);
	/* one emission per rank, at the greatest event time of the batch's
	 * changing rows */
	expect_captured("b1", 2, "1,10,1@10", "1,5,2@10");
	feed1(f, 0, 1, 7);
	expect_captured("7", 2, "1,7,2@7", "1,5,3@7");
	feed1(f, 0, 1, 1);      /* below a full top 3 */
	feed1(f, 0, 1, 5);      /* ties with the last: (5, key 1) equal rows */
	expect_captured("no change", 0);
	const int64_t b2[4][2] = { { 2, 3 }, { 1, 2 }, { 1, 8 }, { 1, 20 } };
	feed_kx(f, 0, 4, b2);   /* 2 is out; 8 and 20 enter; key 2 starts */
	expect_captured("b2", 4, "2,3,1@3", "1,20,1@20", "1,10,2@20", "1,8,3@20");
	const int64_t b3[2][2] = { { 1, 9 }, { 1, 4 } };
	feed_kx(f, 0, 2, b3);   /* 9 enters at rank 3; 4 does not, and its time
				 * is not the change's */
	expect_captured("b3", 1, "1,9,3@9");
	fake_free(f);
}

/* ==== checkpoints: cancel and resume, savepoints at another parallelism ================ */

#define CK_ROWS 30000
#define CK_KEYS 3000

typedef enum { CK_JOIN, CK_TOPN } ck_kind;

static weir_env *ck_job(ck_kind kind, int p, const char *ck, double rate, const char *out,
			int n)
{
	weir_env *env = env_p(p, 256);
	weir_config *cfg = weir_env_config(env);
	cfg->mode = WEIR_MODE_STREAMING;
	cfg->checkpoint_dir = ck;
	cfg->checkpoint_interval_ms = 40;
	weir_stream *a = gen(env, "a", CK_ROWS, 41, CK_KEYS, rate);
	weir_stream *o;
	if (kind == CK_JOIN) {
		weir_stream *b = gen(env, "b", CK_ROWS / 2, 42, CK_KEYS, rate / 2);
		o = weir_join(weir_key_by(a, "key"), weir_key_by(b, "key"), "join", NULL, NULL,
			      NULL, NULL);
	} else {
		o = weir_topn(weir_key_by(a, "key"), "top", n, "value", true);
	}
	cr_assert_eq(weir_sink_files(o, "out", out), 0, "%s", weir_env_error(env));
	return env;
}

static void ck_check(ck_kind kind, const char *dir)
{
	lines got = { 0 }, exp = { 0 };
	lines_read_parts(&got, dir);
	if (kind == CK_JOIN) {
		pairs_expected(&exp, 41, CK_ROWS, 42, CK_ROWS / 2, CK_KEYS);
		lines_expect(&got, &exp, "join committed exactly once");
	} else {
		lines fin = { 0 };
		topn_final(&fin, &got, 41, CK_KEYS, 3);
		topn_expected(&exp, 41, CK_ROWS, CK_KEYS, 3, true);
		lines_expect(&fin, &exp, "top-3 from the committed changes");
		lines_free(&fin);
	}
	lines_free(&got);
	lines_free(&exp);
}

static void cancel_and_resume(ck_kind kind)
{
	char ck[128];
	snprintf(ck, sizeof(ck), "%s", path("ck"));
	for (int i = 0; i < 3; i++) {
		pthread_t th;
		weir_env *env = ck_job(kind, 2, ck, 60000, path("out"), 3);
		/* at the earliest then, and once a checkpoint is complete: a run
		 * cancelled before any leaves in-progress files that the next,
		 * starting from the beginning, does not clean up */
		cancel_arg ca = { .ms = 120 + 80 * i, .ready = has_checkpoint, .ready_arg = ck };
		pthread_create(&th, NULL, cancel_when, &ca);
		int rc = weir_env_execute(env, "test", 0);
		pthread_join(th, NULL);
		weir_env_free(env);
		cr_assert(rc == 0 || rc == -ECANCELED, "rc %d", rc);
	}
	run_ok(ck_job(kind, 2, path("ck"), 0, path("out"), 3));
	ck_check(kind, path("out"));
}

Test(join, exactly_once_after_cancelled_runs)
{
	cancel_and_resume(CK_JOIN);
}

Test(topn, exactly_once_after_cancelled_runs)
{
	cancel_and_resume(CK_TOPN);
}

/* Run at p1 until a savepoint stops it, move its committed files aside,
 * restore the savepoint at p2; the savepoint's path is left in a->msg. */
static void savepoint_rescale(ck_kind kind, int p1, int p2, sp_arg *a)
{
	/* stopped once a checkpoint committed output: rows went through */
	static char out[128];
	snprintf(out, sizeof(out), "%s", path("out"));
	*a = (sp_arg){ .ready = has_committed_output, .ready_arg = out };
	snprintf(a->dir, sizeof(a->dir), "%s", path("sp"));
	pthread_t th;
	weir_env *env = ck_job(kind, p1, path("ck1"), 40000, out, 3);
	pthread_create(&th, NULL, stop_with_savepoint, a);
	cr_assert_eq(weir_env_execute(env, "test", 0), 0);
	pthread_join(th, NULL);
	weir_env_free(env);
	cr_assert_eq(a->rc, 0, "savepoint: %s", a->msg);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "cat %s/part-* | wc -l", path("out"));
	FILE *f = popen(cmd, "r");
	long rows = 0;
	cr_assert_eq(fscanf(f, "%ld", &rows), 1);
	pclose(f);
	cr_assert(rows > 0, "nothing before the stop");
	snprintf(cmd, sizeof(cmd), "mkdir %s/before && mv %s/part-* %s/before/", path("out"),
		 path("out"), path("out"));
	cr_assert_eq(system(cmd), 0);

	env = ck_job(kind, p2, path("ck2"), 0, path("out"), 3);
	weir_env_config(env)->restore_savepoint = a->msg;
	run_ok(env);
	ck_check(kind, path("out"));
}

Test(join, savepoint_restored_at_another_parallelism_1_to_3)
{
	sp_arg a;
	savepoint_rescale(CK_JOIN, 1, 3, &a);
}

Test(topn, savepoint_restored_at_another_parallelism_4_to_2_and_refused_with_another_n)
{
	sp_arg a;
	savepoint_rescale(CK_TOPN, 4, 2, &a);
	/* the same savepoint into a job keeping the top 2: refused */
	weir_env *env = ck_job(CK_TOPN, 2, path("ck3"), 0, path("out3"), 2);
	weir_env_config(env)->restore_savepoint = a.msg;
	cr_assert_neq(weir_env_execute(env, "test", 0), 0);
	weir_env_free(env);
}

/* ==== build errors ===================================================================== */

static void expect_build_error(weir_env *env, const char *what)
{
	const char *e = weir_env_error(env);
	cr_assert_not_null(e, "expected an error containing '%s'", what);
	cr_assert(strstr(e, what), "error '%s' lacks '%s'", e, what);
	weir_env_free(env);
}

Test(join, build_errors)
{
	weir_env *env = env_p(1, 1024);
	cr_assert_null(weir_join(weir_key_by(gen(env, "a", 10, 1, 1, 0), "key"),
				 gen(env, "b", 10, 1, 1, 0), "j", NULL, NULL, NULL, NULL));
	expect_build_error(env, "keyed");

	env = env_p(1, 1024);
	cr_assert_null(weir_join(weir_key_by(gen(env, "a", 10, 1, 1, 0), "key"),
				 weir_key_by(gen(env, "b", 10, 1, 1, 0), "key"), "j",
				 &(weir_join_conf){ .state_ttl_ms = -1 }, NULL, NULL, NULL));
	expect_build_error(env, "negative state TTL");

	env = env_p(1, 1024);
	cr_assert_null(weir_join(weir_key_by(gen(env, "a", 10, 1, 1, 0), "key"),
				 weir_key_by(gen(env, "b", 10, 1, 1, 0), "key"), "j", NULL,
				 weir_schema_parse(env, "x:i64"), NULL, NULL));
	expect_build_error(env, "join function");

	env = env_p(1, 1024);
	{
		weir_generator_conf g = { .count = 1, .fill = jb_fill_b,
					  .schema = weir_schema_parse(env, "name:str,score:f64,ok:bool") };
		weir_stream *b = weir_key_by(weir_source_generator(env, "s", &g), "name");
		cr_assert_null(weir_join(weir_key_by(gen(env, "a", 10, 1, 1, 0), "key"), b, "j",
					 NULL, NULL, NULL, NULL));
	}
	expect_build_error(env, "different types");
}

Test(topn, build_errors)
{
	weir_env *env = env_p(1, 1024);
	cr_assert_null(weir_topn(gen(env, "a", 10, 1, 1, 0), "t", 3, "value", true));
	expect_build_error(env, "not keyed");

	env = env_p(1, 1024);
	cr_assert_null(weir_topn(weir_key_by(gen(env, "a", 10, 1, 1, 0), "key"), "t", 0,
				 "value", true));
	expect_build_error(env, "n = 0");

	env = env_p(1, 1024);
	cr_assert_null(weir_topn(weir_key_by(gen(env, "a", 10, 1, 1, 0), "key"), "t", 3,
				 "nope", true));
	expect_build_error(env, "no order column 'nope'");

	env = env_p(1, 1024);
	{
		weir_generator_conf g = { .count = 1, .fill = jl_fill_b,
					  .schema = weir_schema_parse(env, "key:i64,rank:i64") };
		weir_stream *s = weir_key_by(weir_source_generator(env, "s", &g), "key");
		cr_assert_null(weir_topn(s, "t", 3, "rank", true));
	}
	expect_build_error(env, "column 'rank'");
}
