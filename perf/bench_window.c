/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyed, event-time throughput on one core (one reactor), through the
 * public API on the real runtime, generator included:
 *
 *   tumbling   count/sum/min/max per key over 1 M distinct keys
 *   session    session windows over 100 k keys
 *   join       interval join of two streams
 *   regular    regular (unwindowed) join of two streams, 10 k keys, rows
 *              kept for a state TTL of 10 ms of processing time
 *   latest     regular join of two upsert streams (latest row per key on
 *              both sides), 10 k keys
 *   topn       top 10 per key by value, 100 k keys
 *   state      bytes of keyed state per key for a count/sum window
 *
 * Event time is the generator's sequence number (ms); watermarks are
 * monotonic.  Prints one JSON line per scenario with records/s and the
 * issue's target beside it.
 *
 *   bench_window [records] [tumbling|session|join|regular|latest|topn|state|all]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core.h"
#include "state.h"
#include <weir/weir.h>

static weir_env *env_one_core(void)
{
	weir_env *env = weir_env_new();
	weir_config *cfg = weir_env_config(env);
	cfg->parallelism = 1;
	cfg->cores = 1;
	return env;
}

static weir_stream *events(weir_env *env, const char *name, uint64_t n,
			   int64_t keys, uint64_t seed)
{
	weir_generator_conf g = { .count = n, .seed = seed, .keys = keys };
	weir_watermark_strategy ws = { .kind = WEIR_WM_MONOTONIC, .ts_column = "seq" };
	return weir_assign_watermarks(weir_source_generator(env, name, &g), NULL, &ws);
}

static double execute(weir_env *env, const char *what)
{
	uint64_t t0 = now_ns();
	if (weir_env_execute(env, what, 0) != 0) {
		fprintf(stderr, "bench_window: %s failed\n", what);
		exit(1);
	}
	double dt = (double)(now_ns() - t0) / 1e9;
	weir_env_free(env);
	return dt;
}

static long max_rss_kib(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* cores = 1: everything on one core.  cores = 2: the source (generator,
 * watermarks, hash partitioning) on one core, the window operator alone on
 * the other, which is what the windowing itself sustains. */
static void tumbling(uint64_t n, int cores)
{
	const int64_t keys = 1000000, size = (int64_t)(n / 4); /* 4 windows */
	weir_env *env = env_one_core();
	weir_env_config(env)->cores = cores;
	weir_window_spec w = { .kind = WEIR_WIN_TUMBLING, .size = size };
	weir_stream *s = weir_key_by(events(env, "gen", n, keys, 1), "key");
	weir_sink_discard(weir_window_stats(s, "tumbling", &w, "value"), "discard");
	long rss0 = max_rss_kib();
	double dt = execute(env, "tumbling");
	long rss1 = max_rss_kib();
	printf("{\"bench\":\"window_tumbling\",\"cores\":%d,\"window_operator_cores\":1,"
	       "\"keys\":%lld,\"window_ms\":%lld,"
	       "\"records\":%llu,\"seconds\":%.3f,\"records_per_s\":%.0f,"
	       "\"max_rss_growth_bytes_per_key\":%.1f,\"target_records_per_s\":20000000}\n",
	       cores, (long long)keys, (long long)size, (unsigned long long)n, dt,
	       (double)n / dt, (double)(rss1 - rss0) * 1024.0 / (double)keys);
}

static void session(uint64_t n)
{
	const int64_t keys = 100000, gap = 150000; /* mean spacing per key: 100 000 ms */
	weir_env *env = env_one_core();
	weir_window_spec w = { .kind = WEIR_WIN_SESSION, .gap = gap };
	weir_stream *s = weir_key_by(events(env, "gen", n, keys, 2), "key");
	weir_sink_discard(weir_window_stats(s, "session", &w, "value"), "discard");
	double dt = execute(env, "session");
	printf("{\"bench\":\"window_session\",\"cores\":1,\"keys\":%lld,\"gap_ms\":%lld,"
	       "\"records\":%llu,\"seconds\":%.3f,\"records_per_s\":%.0f,"
	       "\"target_records_per_s\":5000000}\n",
	       (long long)keys, (long long)gap, (unsigned long long)n, dt, (double)n / dt);
}

static long long pairs_seen;

static int count_pair(void *arg, const weir_value *a, int64_t ta, const weir_value *b,
		      int64_t tb, weir_out *out)
{
	(void)arg, (void)a, (void)ta, (void)b, (void)tb, (void)out;
	pairs_seen++; /* one subtask: no race */
	return 0;
}

static void join(uint64_t n)
{
	const int64_t keys = 10000, bound = 2000; /* ~4 matches per record */
	weir_env *env = env_one_core();
	weir_stream *a = weir_key_by(events(env, "left", n / 2, keys, 3), "key");
	weir_stream *b = weir_key_by(events(env, "right", n / 2, keys, 4), "key");
	weir_schema const *none = weir_schema_parse(env, "x:i64");
	pairs_seen = 0;
	weir_sink_discard(weir_interval_join(a, b, "join", -bound, bound, none,
					     count_pair, NULL), "discard");
	double dt = execute(env, "join");
	printf("{\"bench\":\"interval_join\",\"cores\":1,\"keys\":%lld,\"bounds_ms\":[%lld,%lld],"
	       "\"records\":%llu,\"pairs\":%lld,\"seconds\":%.3f,\"records_per_s\":%.0f,"
	       "\"target_records_per_s\":5000000}\n",
	       (long long)keys, (long long)-bound, (long long)bound, (unsigned long long)n,
	       pairs_seen, dt, (double)n / dt);
}

/* The regular join: pairs counted by the join function (no output rows,
 * so the figure is the join's own cost, as for the interval join). */
static void regular_join(uint64_t n, bool latest)
{
	const int64_t keys = 10000, ttl = latest ? 0 : 10;
	weir_env *env = env_one_core();
	weir_generator_conf ga = { .count = n / 2, .seed = 5, .keys = keys };
	weir_generator_conf gb = { .count = n / 2, .seed = 6, .keys = keys };
	weir_stream *a = weir_key_by(weir_source_generator(env, "left", &ga), "key");
	weir_stream *b = weir_key_by(weir_source_generator(env, "right", &gb), "key");
	weir_join_conf jc = { .state_ttl_ms = ttl, .a_latest_only = latest,
			      .b_latest_only = latest };
	pairs_seen = 0;
	weir_sink_discard(weir_join(a, b, "join", &jc, weir_schema_parse(env, "x:i64"),
				    count_pair, NULL), "discard");
	long rss0 = max_rss_kib();
	double dt = execute(env, "regular-join");
	long rss1 = max_rss_kib();
	/* No target of its own: Nexmark's q3 (>= 3 M events/s per core) is
	 * the whole query, of which the join sees a few percent. */
	if (latest)
		printf("{\"bench\":\"join_latest_only\",\"cores\":1,\"keys\":%lld,"
		       "\"records\":%llu,\"pairs\":%lld,\"seconds\":%.3f,"
		       "\"records_per_s\":%.0f,\"pairs_per_s\":%.0f}\n",
		       (long long)keys, (unsigned long long)n, pairs_seen, dt, (double)n / dt,
		       (double)pairs_seen / dt);
	else /* pairs per record grow with the speed: rows live for 10 ms */
		printf("{\"bench\":\"join_regular_ttl\",\"cores\":1,\"keys\":%lld,"
		       "\"state_ttl_ms\":%lld,\"records\":%llu,\"pairs\":%lld,"
		       "\"seconds\":%.3f,\"records_per_s\":%.0f,\"pairs_per_s\":%.0f,"
		       "\"max_rss_growth_mb\":%.1f}\n",
		       (long long)keys, (long long)ttl, (unsigned long long)n, pairs_seen, dt,
		       (double)n / dt, (double)pairs_seen / dt, (double)(rss1 - rss0) / 1024.0);
}

static long long rows_seen;

static void count_rows(void *arg, const weir_batch *in, uint8_t *keep)
{
	(void)arg;
	rows_seen += in->rows; /* one subtask: no race */
	memset(keep, 0, in->rows);
}

/* Top 10 per key by value (uniform in [0, 1000): ties too), the changed
 * ranks counted and dropped after the operator. */
static void topn(uint64_t n)
{
	const int64_t keys = 100000;
	weir_env *env = env_one_core();
	weir_generator_conf g = { .count = n, .seed = 7, .keys = keys };
	weir_stream *s = weir_key_by(weir_source_generator(env, "gen", &g), "key");
	rows_seen = 0;
	weir_sink_discard(weir_filter(weir_topn(s, "top-10", 10, "value", true), "count",
				      count_rows, NULL), "discard");
	double dt = execute(env, "topn");
	/* No target of its own either: q19's is the whole query's. */
	printf("{\"bench\":\"topn\",\"cores\":1,\"keys\":%lld,\"n\":10,"
	       "\"records\":%llu,\"changed_rows_out\":%lld,\"seconds\":%.3f,"
	       "\"records_per_s\":%.0f}\n",
	       (long long)keys, (unsigned long long)n, rows_seen, dt, (double)n / dt);
}

/* Bytes of a (key, window) table per key: count + sum, and the built-in
 * window aggregate's count/sum/min/max, for 1 M i64 keys. */
static void state_bytes(void)
{
	const uint32_t vs[] = { 16, 32 };
	const int nkeys = 1000000;
	for (size_t k = 0; k < ARRAY_SIZE(vs); k++) {
		kdict *d = kdict_new();
		kvtab_conf c = { .key_type = WEIR_I64, .vsize = vs[k] };
		kvtab *t = kv_new(&c, d);
		for (int i = 0; i < nkeys; i++) {
			weir_value v = { .i64 = (int64_t)i * 7919 };
			skey key = key_from_value(d, WEIR_I64, v);
			bool created;
			int64_t *acc = kv_upsert(t, key, 0, &created);
			acc[0]++;
			kv_written(t, acc);
		}
		printf("{\"bench\":\"state_bytes_per_key\",\"value_bytes\":%u,\"keys\":%d,"
		       "\"table_bytes\":%zu,\"bytes_per_key\":%.1f,\"key_bytes\":8,"
		       "\"bytes_per_key_beyond_key\":%.1f,\"target_beyond_key\":64}\n",
		       vs[k], nkeys, kv_memsize(t), (double)kv_memsize(t) / nkeys,
		       (double)kv_memsize(t) / nkeys - 8);
		kv_free(t);
		kdict_free(d);
	}
}

int main(int argc, char **argv)
{
	uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 40000000;
	const char *what = argc > 2 ? argv[2] : "all";
	bool all = !strcmp(what, "all");

	if (all || !strcmp(what, "state"))
		state_bytes();
	if (all || !strcmp(what, "tumbling"))
		tumbling(n, 1);
	if (all || !strcmp(what, "tumbling2"))
		tumbling(n, 2);
	if (all || !strcmp(what, "session"))
		session(n);
	if (all || !strcmp(what, "join"))
		join(n);
	if (all || !strcmp(what, "regular"))
		regular_join(n, false);
	if (all || !strcmp(what, "latest"))
		regular_join(n, true);
	if (all || !strcmp(what, "topn"))
		topn(n);
	return 0;
}
