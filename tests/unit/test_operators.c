/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every built-in operator through the public API, run on the real local
 * runtime at several parallelisms, with results checked against values
 * computed here independently.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ops.h"

static char dir[64];

static void mkdir_tmp(void)
{
	snprintf(dir, sizeof(dir), "/tmp/weir-unit.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void rm_tmp(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(ops, .init = mkdir_tmp, .fini = rm_tmp);

static const char *path(const char *name)
{
	static char p[8][128];
	static int k;
	k = (k + 1) % 8;
	snprintf(p[k], sizeof(p[k]), "%s/%s", dir, name);
	return p[k];
}

static weir_env *env_p(int p)
{
	weir_env *env = weir_env_new();
	weir_env_config(env)->parallelism = p;
	weir_env_config(env)->pin = false;
	return env;
}

static void run_ok(weir_env *env)
{
	cr_assert_null(weir_env_error(env), "build error: %s", weir_env_error(env));
	cr_assert_eq(weir_env_execute(env, "test", 0), 0);
	weir_env_free(env);
}

/* Sum of column `col` (integers) over all lines of a CSV file; counts lines. */
static long long csv_sum(const char *file, int col, long *lines)
{
	FILE *f = fopen(file, "r");
	char buf[4096];
	long long sum = 0;
	*lines = 0;
	cr_assert_not_null(f, "no output file %s", file);
	while (fgets(buf, sizeof(buf), f)) {
		char *p = buf;
		for (int c = 0; c < col; c++)
			p = strchr(p, ',') + 1;
		sum += atoll(p);
		(*lines)++;
	}
	fclose(f);
	return sum;
}

/* ---- map, filter, project, chains ------------------------------------------ */

static int double_value(void *arg, const weir_batch *in, weir_batch *out)
{
	(void)arg;
	for (uint32_t i = 0; i < in->rows; i++) {
		weir_col_i64(out, 0)[i] = weir_col_i64(in, 0)[i];
		weir_col_i64(out, 1)[i] = weir_col_i64(in, 2)[i] * 2;
	}
	return 0;
}

static void keep_even(void *arg, const weir_batch *in, uint8_t *keep)
{
	(void)arg;
	for (uint32_t i = 0; i < in->rows; i++)
		keep[i] = (weir_col_i64(in, 0)[i] & 1) == 0;
}

Test(ops, generator_map_filter_project_at_p1_p2_p4)
{
	for (int p = 1; p <= 4; p *= 2) {
		weir_env *env = env_p(p);
		weir_generator_conf g = { .count = 100000, .seed = 7 };
		weir_stream *s = weir_source_generator(env, "gen", &g);
		s = weir_map(s, "double", weir_schema_parse(env, "seq:i64,v2:i64"),
			     double_value, NULL);
		s = weir_filter(s, "even", keep_even, NULL);
		s = weir_project(s, "proj", "v2,seq");
		weir_sink_csv(s, "out", path("map.csv"));
		run_ok(env);
		long lines;
		long long seqsum = csv_sum(path("map.csv"), 1, &lines);
		cr_assert_eq(lines, 50000, "p=%d lines %ld", p, lines);
		/* sum of even numbers below 100000 */
		cr_assert_eq(seqsum, 2LL * (49999LL * 50000 / 2), "p=%d", p);
	}
}

Test(ops, plan_chains_forward_edges_and_places_on_cores)
{
	char buf[2048];
	weir_env *env = env_p(2);
	weir_env_config(env)->cores = 2;
	weir_generator_conf g = { .count = 10 };
	weir_stream *s = weir_source_generator(env, "gen", &g);
	s = weir_filter(s, "f", keep_even, NULL);
	weir_stream *k = weir_count(weir_key_by(s, "key"));
	weir_sink_discard(k, "sink");
	weir_env_config(env)->mode = WEIR_MODE_STREAMING;
	cr_assert_eq(weir_env_describe_plan(env, buf, sizeof(buf)), 0, "%s", buf);
	cr_assert(strstr(buf, "chain x2: gen -> f  (cores: 0 1)"), "%s", buf);
	cr_assert(strstr(buf, "chain x2: count -> sink"), "%s", buf);
	cr_assert(strstr(buf, "exchange: f =hash=> count"), "%s", buf);
	/* 2 x 2 hash channels; nothing else crosses an actor boundary. */
	cr_assert(strstr(buf, "actors 4 channels 4"), "%s", buf);
	weir_env_free(env);

	/* Batch mode (bounded sources): a combiner is chained before the
	 * exchange, which then carries partial counts (two-phase). */
	env = env_p(2);
	weir_env_config(env)->cores = 2;
	s = weir_filter(weir_source_generator(env, "gen", &g), "f", keep_even, NULL);
	weir_sink_discard(weir_count(weir_key_by(s, "key")), "sink");
	cr_assert_eq(weir_env_describe_plan(env, buf, sizeof(buf)), 0, "%s", buf);
	cr_assert(strstr(buf, "chain x2: gen -> f -> count-combine  (cores: 0 1)"), "%s", buf);
	cr_assert(strstr(buf, "exchange: count-combine =hash=> count"), "%s", buf);
	weir_env_free(env);

	env = env_p(2);
	weir_env_config(env)->chaining = false;
	s = weir_source_generator(env, "gen", &g);
	weir_sink_discard(weir_filter(s, "f", keep_even, NULL), "sink");
	cr_assert_eq(weir_env_describe_plan(env, buf, sizeof(buf)), 0, "%s", buf);
	cr_assert(strstr(buf, "actors 6 channels 4"), "%s", buf);
	cr_assert(strstr(buf, "exchange: gen =forward=> f"), "%s", buf);
	weir_env_free(env);
}

Test(ops, bad_graphs_are_reported)
{
	char buf[512];
	weir_env *env = env_p(1);
	weir_generator_conf g = { .count = 10 };
	weir_stream *s = weir_source_generator(env, "gen", &g);
	cr_assert_null(weir_key_by(s, "nope"));
	cr_assert(strstr(weir_env_error(env), "no column 'nope'"));
	weir_env_free(env);

	env = env_p(1);
	s = weir_source_generator(env, "gen", &g);
	cr_assert_null(weir_sum(s, "value"));
	cr_assert(strstr(weir_env_error(env), "not keyed"));
	weir_env_free(env);

	env = env_p(1);
	s = weir_source_generator(env, "gen", &g);
	cr_assert_null(weir_project(s, "p", "seq,zz"));
	cr_assert_null(weir_schema_parse(env, "a:wat"));
	weir_env_free(env);

	env = env_p(1);
	s = weir_source_stdin(env, "in");
	weir_stream_set_parallelism(s, 2);
	weir_sink_discard(s, "d");
	cr_assert_lt(weir_env_describe_plan(env, buf, sizeof(buf)), 0);
	cr_assert(strstr(buf, "parallelism 1 only"), "%s", buf);
	weir_env_free(env);
}

/* ---- keyed aggregates --------------------------------------------------------- */

/* Rows (seq, key, value) of the default generator, recomputed here. */
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void gen_row(uint64_t seed, uint64_t id, uint64_t keys, int64_t *key,
		    int64_t *value)
{
	uint64_t r = mix(seed ^ (id * 0xd1b54a32d192ed03ULL));
	*key = (int64_t)(((r >> 32) * keys) >> 32);
	*value = (int64_t)(((r & 0xffffffffu) * 1000) >> 32);
}

static void read_kv(const char *file, int kcol, int vcol, int64_t *out, int n)
{
	FILE *f = fopen(file, "r");
	char buf[256];
	cr_assert_not_null(f);
	for (int i = 0; i < n; i++)
		out[i] = INT64_MIN;
	while (fgets(buf, sizeof(buf), f)) {
		long long v[3];
		cr_assert_eq(sscanf(buf, "%lld,%lld,%lld", &v[0], &v[1], &v[2]),
			     kcol == 0 ? 2 : 3, "%s", buf);
		cr_assert(v[kcol] >= 0 && v[kcol] < n);
		cr_assert_eq(out[v[kcol]], INT64_MIN, "key %lld twice", v[kcol]);
		out[v[kcol]] = v[vcol];
	}
	fclose(f);
}

Test(ops, keyed_sum_min_max_count_batch_mode)
{
	enum { N = 200000, K = 37 };
	int64_t sum[K] = { 0 }, mn[K], mx[K], cnt[K] = { 0 };
	for (int k = 0; k < K; k++) {
		mn[k] = INT64_MAX;
		mx[k] = INT64_MIN;
	}
	for (uint64_t i = 0; i < N; i++) {
		int64_t k, v;
		gen_row(3, i, K, &k, &v);
		sum[k] += v;
		cnt[k]++;
		if (v < mn[k]) mn[k] = v;
		if (v > mx[k]) mx[k] = v;
	}
	for (int p = 1; p <= 4; p *= 2) {
		weir_env *env = env_p(p);
		weir_generator_conf g = { .count = N, .seed = 3, .keys = K };
		weir_stream *s = weir_source_generator(env, "gen", &g);
		weir_stream *keyed = weir_key_by(s, "key");
		weir_sink_csv(weir_sum(keyed, "value"), "sum", path("sum.csv"));
		weir_sink_csv(weir_min(keyed, "value"), "min", path("min.csv"));
		weir_sink_csv(weir_max(keyed, "value"), "max", path("max.csv"));
		weir_sink_csv(weir_count(keyed), "count", path("count.csv"));
		run_ok(env);
		int64_t got[K];
		read_kv(path("sum.csv"), 1, 2, got, K);
		cr_assert_arr_eq(got, sum, sizeof(sum), "sum p=%d", p);
		read_kv(path("min.csv"), 1, 2, got, K);
		cr_assert_arr_eq(got, mn, sizeof(mn), "min p=%d", p);
		read_kv(path("max.csv"), 1, 2, got, K);
		cr_assert_arr_eq(got, mx, sizeof(mx), "max p=%d", p);
		read_kv(path("count.csv"), 0, 1, got, K);
		cr_assert_arr_eq(got, cnt, sizeof(cnt), "count p=%d", p);
	}
}

static void reduce_max_seq(void *arg, weir_value *acc, const weir_value *in,
			   const weir_schema *s)
{
	(void)arg;
	(void)s;
	if (in[0].i64 > acc[0].i64)
		acc[0].i64 = in[0].i64;
}

Test(ops, streaming_mode_emits_every_update)
{
	enum { N = 5000, K = 10 };
	weir_env *env = env_p(2);
	weir_env_config(env)->mode = WEIR_MODE_STREAMING;
	weir_generator_conf g = { .count = N, .seed = 1, .keys = K };
	weir_stream *s = weir_source_generator(env, "gen", &g);
	weir_stream *r = weir_reduce(weir_key_by(s, "key"), "maxseq", reduce_max_seq, NULL);
	weir_sink_csv(r, "out", path("upd.csv"));
	run_ok(env);
	long lines;
	csv_sum(path("upd.csv"), 0, &lines);
	cr_assert_eq(lines, N, "one update per record");
}

/* ---- union, rebalance, broadcast, branching ------------------------------------- */

Test(ops, union_rebalance_broadcast)
{
	weir_env *env = env_p(2);
	weir_generator_conf g1 = { .count = 3000, .seed = 1 };
	weir_generator_conf g2 = { .count = 5000, .seed = 2 };
	weir_stream *a = weir_source_generator(env, "a", &g1);
	weir_stream *b = weir_source_generator(env, "b", &g2);
	weir_stream_set_parallelism(b, 3);
	weir_stream *u = weir_union(weir_rebalance(a), weir_rebalance(b));
	weir_sink_csv(u, "all", path("union.csv"));
	/* broadcast into 3 subtasks, then gather: every row 3 times */
	weir_stream *bc = weir_broadcast(a);
	weir_stream *f = weir_filter(bc, "pass", keep_even, NULL);
	weir_stream_set_parallelism(f, 3);
	weir_sink_csv(f, "bcast", path("bcast.csv"));
	run_ok(env);
	long lines;
	long long s = csv_sum(path("union.csv"), 0, &lines);
	cr_assert_eq(lines, 8000);
	cr_assert_eq(s, 2999LL * 3000 / 2 + 4999LL * 5000 / 2);
	csv_sum(path("bcast.csv"), 0, &lines);
	cr_assert_eq(lines, 3 * 1500);
}

/* ---- flat_map with a side output ---------------------------------------------------- */

static int split_odd(void *arg, const weir_batch *in, weir_out *out)
{
	(void)arg;
	weir_out *side = weir_out_side(out, 1);
	for (uint32_t i = 0; i < in->rows; i++) {
		int64_t seq = weir_col_i64(in, 0)[i];
		weir_out *o = seq & 1 ? side : out;
		weir_out_i64(o, 0, seq);
		weir_out_str(o, 1, seq & 1 ? "odd" : "even", seq & 1 ? 3 : 4);
		weir_out_ts(o, in->ts[i]);
		weir_out_emit(o);
		if (!(seq & 1)) { /* two rows for even numbers */
			weir_out_i64(out, 0, seq);
			weir_out_str(out, 1, "again", 5);
			weir_out_emit(out);
		}
	}
	return 0;
}

Test(ops, flat_map_and_side_output)
{
	weir_env *env = env_p(2);
	weir_generator_conf g = { .count = 10000 };
	const weir_schema *sc = weir_schema_parse(env, "seq:i64,tag:str");
	weir_stream *s = weir_source_generator(env, "gen", &g);
	weir_stream *fm = weir_flat_map(s, "split", sc, split_odd, NULL);
	weir_stream *odd = weir_side_output(fm, 1, sc);
	weir_sink_csv(fm, "main", path("main.csv"));
	weir_sink_csv(odd, "odd", path("odd.csv"));
	run_ok(env);
	long lines;
	long long sum = csv_sum(path("main.csv"), 0, &lines);
	cr_assert_eq(lines, 10000);
	cr_assert_eq(sum, 2 * (9998LL * 5000 / 2));
	sum = csv_sum(path("odd.csv"), 0, &lines);
	cr_assert_eq(lines, 5000);
	cr_assert_eq(sum, 5000LL * 5000);
}

Test(ops, side_output_tags_are_numbered_in_declaration_order)
{
	weir_env *env = env_p(1);
	weir_generator_conf g = { .count = 10 };
	const weir_schema *sc = weir_schema_parse(env, "seq:i64,tag:str");
	weir_stream *fm = weir_flat_map(weir_source_generator(env, "gen", &g), "split", sc,
					split_odd, NULL);
	cr_assert_null(weir_side_output(fm, 2, sc), "tag 2 before tag 1");
	cr_assert_not_null(strstr(weir_env_error(env), "numbered 1, 2"), "%s",
			   weir_env_error(env));
	weir_env_free(env);
}

/* ---- user-defined sinks (weir_sink) ---------------------------------------------------------- */

typedef struct sum_sink {
	long long sum, rows;
	int opened, closed;
} sum_sink;

static int sum_open(void *arg, int subtask, int parallelism, void **state)
{
	sum_sink *all = arg;
	cr_assert(subtask >= 0 && subtask < parallelism && parallelism == 2);
	all[subtask].opened++;
	*state = &all[subtask];
	return 0;
}

static int sum_invoke(void *state, const weir_batch *in)
{
	sum_sink *s = state;
	const int64_t *seq = weir_col_i64(in, 0);
	for (uint32_t r = 0; r < in->rows; r++)
		s->sum += seq[r];
	s->rows += in->rows;
	return 0;
}

static void sum_close(void *state)
{
	((sum_sink *)state)->closed++;
}

Test(ops, user_sink_sees_every_row_once_per_subtask)
{
	weir_env *env = env_p(2);
	weir_generator_conf g = { .count = 100000 };
	sum_sink all[2] = { 0 };
	weir_sink_fns f = { .open = sum_open, .invoke = sum_invoke, .close = sum_close,
			    .arg = all };
	cr_assert_eq(weir_sink(weir_rebalance(weir_source_generator(env, "gen", &g)), "sum",
			       &f), 0);
	run_ok(env);
	cr_assert_eq(all[0].rows + all[1].rows, 100000);
	cr_assert_eq(all[0].sum + all[1].sum, 99999LL * 100000 / 2);
	for (int i = 0; i < 2; i++)
		cr_assert(all[i].opened == 1 && all[i].closed == 1);
}

static int failing_invoke(void *state, const weir_batch *in)
{
	(void)state;
	(void)in;
	return -EIO;
}

Test(ops, user_sink_error_fails_the_job)
{
	weir_env *env = env_p(1);
	weir_generator_conf g = { .count = 1000 };
	weir_sink_fns f = { .invoke = failing_invoke };
	cr_assert_eq(weir_sink(weir_source_generator(env, "gen", &g), "bad", &f), 0);
	cr_assert_neq(weir_env_execute(env, "t", 0), 0);
	weir_env_free(env);
	env = env_p(1);
	weir_sink_fns none = { 0 };
	cr_assert_eq(weir_sink(weir_source_generator(env, "gen", &g), "none", &none), -EINVAL);
	weir_env_free(env);
}

/* ---- sources: text split, CSV with dead letters ------------------------------------------ */

Test(ops, text_source_reads_every_line_once_at_any_parallelism)
{
	FILE *f = fopen(path("lines.txt"), "w");
	long long want = 0;
	for (int i = 0; i < 30000; i++) {
		fprintf(f, "%d%s\n", i, i % 7 ? "" : " padding padding padding");
		want += i;
	}
	fprintf(f, "30000"); /* no final newline */
	want += 30000;
	fclose(f);
	for (int p = 1; p <= 7; p += 2) {
		weir_env *env = env_p(p);
		weir_sink_csv(weir_source_text_file(env, "in", path("lines.txt")), "out",
			      path("lines.out"));
		run_ok(env);
		long lines;
		cr_assert_eq(csv_sum(path("lines.out"), 0, &lines), want, "p=%d", p);
		cr_assert_eq(lines, 30001, "p=%d", p);
	}
}

Test(ops, csv_source_dead_letters_with_line_numbers)
{
	FILE *f = fopen(path("in.csv"), "w");
	fprintf(f, "name,qty,price\n"
		   "apple,3,1.5\n"
		   "pear,x,2\n"              /* line 3: bad i64 */
		   "\"multi\nline\",4,2.5\n" /* lines 4-5: quoted newline */
		   "plum,1\n"                /* line 6: too few fields */
		   "kiwi,2,\"oops\"x\n"      /* line 7: text after quote */
		   "fig,5,0.25\n");
	fclose(f);
	weir_env *env = env_p(1);
	weir_stream *s = weir_source_csv(env, "csv", path("in.csv"),
		weir_schema_parse(env, "name:str,qty:i64,price:f64"), true, NULL);
	weir_sink_csv(s, "good", path("good.csv"));
	weir_sink_csv(weir_csv_dead_letters(s), "dead", path("dead.csv"));
	run_ok(env);
	char buf[4096];
	f = fopen(path("good.csv"), "r");
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	cr_assert_str_eq(buf, "apple,3,1.5\n\"multi\nline\",4,2.5\nfig,5,0.25\n");
	f = fopen(path("dead.csv"), "r");
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	cr_assert(strstr(buf, "3,column 2 (qty): 'x' is not a valid i64,\"pear,x,2\"\n"), "%s", buf);
	cr_assert(strstr(buf, "6,\"expected 3 fields, found 2\",\"plum,1\"\n"), "%s", buf);
	cr_assert(strstr(buf, "7,text after a closing quote,"), "%s", buf);
}

Test(ops, missing_file_fails_the_job_with_a_message)
{
	weir_env *env = env_p(1);
	weir_sink_discard(weir_source_text_file(env, "in", path("absent.txt")), "d");
	cr_assert_lt(weir_env_execute(env, "test", 0), 0);
	weir_env_free(env);
}

Test(ops, csv_malformed_line_across_the_read_buffer_boundary)
{
	FILE *f = fopen(path("straddle.csv"), "w");
	long bytes = 0, rows = 0;
	/* fill to 6 bytes short of 1 MiB, so the bad line crosses it */
	while (bytes < (1 << 20) - 6 - 4) {
		bytes += fprintf(f, "k,1\n");
		rows++;
	}
	while (bytes < (1 << 20) - 6)
		bytes += fprintf(f, "\n");
	fprintf(f, "ab\"c,GOOD,5\nz,2\n");
	fclose(f);
	weir_env *env = env_p(1);
	weir_stream *s = weir_source_csv(env, "csv", path("straddle.csv"),
		weir_schema_parse(env, "k:str,v:i64"), false, NULL);
	weir_sink_csv(s, "good", path("good.csv"));
	weir_sink_csv(weir_csv_dead_letters(s), "dead", path("dead.csv"));
	run_ok(env);
	long lines;
	cr_assert_eq(csv_sum(path("good.csv"), 1, &lines), rows + 2);
	cr_assert_eq(lines, rows + 1, "the bad line's tail must not become a row");
	char buf[256];
	f = fopen(path("dead.csv"), "r");
	cr_assert_not_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	cr_assert(strstr(buf, ",quote inside an unquoted field,\"ab\"\"c,GOOD,5\"\n"), "%s", buf);
}

Test(ops, csv_all_malformed_file_is_all_dead_lettered)
{
	FILE *f = fopen(path("allbad.csv"), "w");
	for (int i = 0; i < 200000; i++)
		fprintf(f, "bad\"row,%d\n", i);
	fclose(f);
	weir_env *env = env_p(1);
	weir_env_config(env)->chaining = false;
	weir_env_config(env)->cores = 2;
	weir_stream *s = weir_source_csv(env, "csv", path("allbad.csv"),
		weir_schema_parse(env, "k:str,v:i64"), false, NULL);
	weir_sink_discard(s, "good");
	weir_sink_csv(weir_csv_dead_letters(s), "dead", path("dead.csv"));
	run_ok(env);
	long lines;
	csv_sum(path("dead.csv"), 0, &lines);
	cr_assert_eq(lines, 200000);
}

Test(ops, rate_limited_generator_sleeps_between_rows)
{
	struct timespec c0, c1;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
	uint64_t t0 = now_ns();
	weir_env *env = env_p(1);
	weir_generator_conf g = { .count = 150, .rate = 500 };
	weir_sink_csv(weir_source_generator(env, "gen", &g), "out", path("rate.csv"));
	run_ok(env);
	double wall = (now_ns() - t0) / 1e9;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
	double cpu = (c1.tv_sec - c0.tv_sec) + (c1.tv_nsec - c0.tv_nsec) / 1e9;
	long lines;
	csv_sum(path("rate.csv"), 0, &lines);
	cr_assert_eq(lines, 150);
	cr_assert_geq(wall, 0.28, "150 rows at 500/s took %.3f s", wall);
	cr_assert_lt(cpu, wall * 0.5, "the reactor spun: %.3f s CPU in %.3f s", cpu, wall);
}

/* Keep the lexicographically greatest name per key (strings in reduce). */
static void max_name(void *arg, weir_value *acc, const weir_value *in,
		     const weir_schema *s)
{
	(void)arg;
	(void)s;
	uint32_t n = acc[1].str.len < in[1].str.len ? acc[1].str.len : in[1].str.len;
	int c = memcmp(in[1].str.ptr, acc[1].str.ptr, n);
	if (c > 0 || (c == 0 && in[1].str.len > acc[1].str.len))
		acc[1] = in[1];
	acc[2].i64 += in[2].i64;
}

Test(ops, reduce_with_strings_in_both_modes)
{
	FILE *f = fopen(path("names.csv"), "w");
	char want[10][32] = { { 0 } };
	long long total[10] = { 0 };
	for (int i = 0; i < 30000; i++) {
		char name[32];
		int k = (i * 7) % 10;
		snprintf(name, sizeof(name), "n%0*d", 1 + i % 9, (i * 7919) % 100000);
		fprintf(f, "%d,%s,1\n", k, name);
		if (strcmp(name, want[k]) > 0)
			strcpy(want[k], name);
		total[k]++;
	}
	fclose(f);
	for (int mode = WEIR_MODE_STREAMING; mode <= WEIR_MODE_BATCH; mode++) {
		weir_env *env = env_p(2);
		weir_env_config(env)->mode = (weir_runtime_mode)mode;
		weir_stream *s = weir_source_csv(env, "csv", path("names.csv"),
			weir_schema_parse(env, "k:i64,name:str,n:i64"), false, NULL);
		weir_stream *r = weir_reduce(weir_key_by(s, "k"), "maxname", max_name, NULL);
		weir_sink_csv(r, "out", path("red.csv"));
		run_ok(env);
		/* the last line per key is its final value */
		char got[10][32] = { { 0 } };
		long long cnt[10] = { 0 };
		char line[128];
		f = fopen(path("red.csv"), "r");
		while (fgets(line, sizeof(line), f)) {
			int k;
			char nm[32];
			long long n;
			cr_assert_eq(sscanf(line, "%d,%31[^,],%lld", &k, nm, &n), 3, "%s", line);
			strcpy(got[k], nm);
			cnt[k] = n;
		}
		fclose(f);
		for (int k = 0; k < 10; k++) {
			cr_assert_str_eq(got[k], want[k], "mode %d key %d", mode, k);
			cr_assert_eq(cnt[k], total[k]);
		}
	}
}

/* Generator rows "k:i64,name:str": k = i mod 10, name = "name-<i, 8 digits>". */
static void fill_names(void *arg, uint64_t seed, uint64_t first, uint32_t n,
		       weir_batch *out)
{
	(void)arg;
	(void)seed;
	for (uint32_t i = 0; i < n; i++) {
		char nm[24];
		int len = snprintf(nm, sizeof(nm), "name-%08llu",
				   (unsigned long long)(first + i));
		weir_col_i64(out, 0)[i] = (int64_t)((first + i) % 10);
		weir_batch_set_str(out, 1, i, nm, (size_t)len);
		out->ts[i] = 0;
	}
}

static void take_latest(void *arg, weir_value *acc, const weir_value *in,
			const weir_schema *s)
{
	(void)s;
	if (arg)
		acc[1] = in[1]; /* store the input's string: runtime must copy it */
}

static long run_names(bool replace)
{
	weir_env *env = env_p(1);
	weir_env_config(env)->mode = WEIR_MODE_STREAMING;
	weir_generator_conf g = { .count = 3000000, .fill = fill_names,
				  .schema = weir_schema_parse(env, "k:i64,name:str") };
	weir_stream *s = weir_source_generator(env, "gen", &g);
	weir_stream *r = weir_reduce(weir_key_by(s, "k"), "latest", take_latest,
				     replace ? (void *)1 : NULL);
	weir_sink_discard(r, "out");
	run_ok(env);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss; /* KB, high-water mark */
}

Test(ops, reduce_string_updates_reuse_the_keys_buffers)
{
	long base = run_names(false);
	long after = run_names(true);
	/* 3 M updates of a 13-byte string would add ~39 MB if each were kept. */
	cr_assert_lt(after - base, 8192, "max RSS grew by %ld KB", after - base);
}
