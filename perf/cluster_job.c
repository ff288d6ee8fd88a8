/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The jobs of perf/bench_cluster.sh, as one shared object for `weir run
 * --cluster`:
 *
 *   cluster_job.so --job throughput [--records N] [--keys K]
 *       generator of (key:i64, value:i64, ts) rows at full speed ->
 *       rebalance -> count sink.  At -p 1 on two workers of one core each
 *       the generator is chain 0 (global core 0: worker 0) and the sink
 *       chain 1 (core 1: worker 1), so every batch crosses the wire.  The
 *       sink prints "cluster_job: throughput rows R seconds S rows_per_s X"
 *       on the worker's stderr when it closes, timed from the first batch's
 *       arrival to the last one's.
 *
 *   cluster_job.so --job latency [--rate R] [--seconds S] [--warmup S]
 *       latency source (operators/latency.h: records stamped with their
 *       intended emission time) -> rebalance -> pass (a copy) -> rebalance
 *       -> latency sink.  At -p 1 on two workers the chains are dealt to
 *       cores 0, 1, 0: source and sink on worker 0, pass on worker 1, so
 *       each record makes one round trip between the workers.  The sink
 *       leaves out the first `warmup` seconds' records (by seq) and prints
 *       "cluster_job: latency count N p50_us .. p99_us .. p999_us .. max_us .."
 *       on its worker's stderr when it closes.
 *
 * Written against the public API only (weir_source_generator, weir_sink),
 * as any job is: libweir exports nothing else.  The latency source is the
 * generator at the given rate; record i is stamped with the time it was
 * due, t0 + i / rate (t0: the first batch), so a stall shows in full in
 * the latency of every record it delayed (no coordinated omission, as
 * operators/latency.h explains).
 */
#include <errno.h>
#include <getopt.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <weir/weir.h>

int weir_job(weir_env *env, int argc, char **argv);

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- throughput: (key, value, ts) rows, counted at the far end ------------------------ */

static void fill_kv(void *arg, uint64_t seed, uint64_t first, uint32_t n, weir_batch *out)
{
	int64_t *key = weir_col_i64(out, 0), *val = weir_col_i64(out, 1);
	(void)arg;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t id = first + i, r = (seed ^ id) * 0x9e3779b97f4a7c15ULL;
		key[i] = (int64_t)((r >> 32) & 1023);
		val[i] = (int64_t)(r & 0xffff);
		out->ts[i] = (int64_t)id;
	}
}

/* A count sink subtask's figures: its reactor's thread only, printed by
 * close() on the thread that ran the job, after the reactors stopped. */
typedef struct count_state {
	int subtask;
	uint64_t rows, first_ns, last_ns;
} count_state;

static int count_open(void *arg, int subtask, int parallelism, void **state)
{
	count_state *s = calloc(1, sizeof(*s));
	(void)arg;
	(void)parallelism;
	if (!s)
		return -ENOMEM;
	s->subtask = subtask;
	*state = s;
	return 0;
}

static int count_invoke(void *state, const weir_batch *b)
{
	count_state *s = state;
	uint64_t now = mono_ns();
	if (!s->rows)
		s->first_ns = now;
	s->last_ns = now;
	s->rows += b->rows;
	return 0;
}

static void count_close(void *state)
{
	count_state *s = state;
	double secs = (double)(s->last_ns - s->first_ns) / 1e9;
	if (s->rows)
		fprintf(stderr, "cluster_job: throughput subtask %d rows %llu seconds %.6f "
			"rows_per_s %.0f\n", s->subtask, (unsigned long long)s->rows, secs,
			secs > 0 ? (double)s->rows / secs : 0.0);
	free(s);
}

/* ---- latency: a round trip through the other worker ----------------------------------- */

typedef struct lat_conf {
	double rate;
	_Atomic uint64_t t0;   /* when record 0 was due (the first fill) */
	int64_t warm_seq;      /* records with seq below this are the warm-up */
	size_t max_samples;    /* per sink subtask */
} lat_conf;

/* Columns: seq, key, value, intended_ns. */
static void fill_ticks(void *arg, uint64_t seed, uint64_t first, uint32_t n, weir_batch *out)
{
	lat_conf *c = arg;
	uint64_t t0 = atomic_load_explicit(&c->t0, memory_order_relaxed), zero = 0;
	if (!t0) {
		t0 = mono_ns();
		/* Relaxed: only this source subtask writes it; a value read
		 * back by the compare-exchange is as good as ours. */
		if (!atomic_compare_exchange_strong_explicit(&c->t0, &zero, t0,
							     memory_order_relaxed,
							     memory_order_relaxed))
			t0 = zero;
	}
	/* A record the rate cap lets out before it is due (the cap admits
	 * up to 10 ms at once) counts from when it left, not from its due
	 * time: latency is never negative, and a late one shows its delay. */
	uint64_t now = mono_ns();
	int64_t *seq = weir_col_i64(out, 0), *key = weir_col_i64(out, 1),
		*val = weir_col_i64(out, 2), *due = weir_col_i64(out, 3);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t id = first + i;
		seq[i] = (int64_t)id;
		key[i] = (int64_t)(((seed ^ id) * 0x9e3779b97f4a7c15ULL) >> 54);
		val[i] = (int64_t)id;
		uint64_t d = t0 + (uint64_t)((double)id * 1e9 / c->rate);
		due[i] = (int64_t)(d < now ? d : now);
		out->ts[i] = (int64_t)id;
	}
}

static int pass(void *arg, const weir_batch *in, weir_batch *out)
{
	(void)arg;
	for (int c = 0; c < 4; c++)
		memcpy(out->cols[c], in->cols[c], in->rows * sizeof(int64_t));
	return 0;
}

typedef struct lat_state {
	const lat_conf *c;
	uint64_t rows, dropped;
	size_t n;
	int64_t samples[]; /* c->max_samples latencies (ns), allocated at open */
} lat_state;

static int lat_open(void *arg, int subtask, int parallelism, void **state)
{
	const lat_conf *c = arg;
	(void)subtask;
	(void)parallelism;
	lat_state *s = malloc(sizeof(*s) + c->max_samples * sizeof(int64_t));
	if (!s)
		return -ENOMEM;
	*s = (lat_state){ .c = c };
	*state = s;
	return 0;
}

static int lat_invoke(void *state, const weir_batch *b)
{
	lat_state *s = state;
	const int64_t *seq = weir_col_i64(b, 0), *due = weir_col_i64(b, 3);
	int64_t now = (int64_t)mono_ns(); /* one clock read: the rows arrived together */
	for (uint32_t r = 0; r < b->rows; r++) {
		if (seq[r] < s->c->warm_seq)
			continue;
		if (s->n < s->c->max_samples)
			s->samples[s->n++] = now - due[r];
		else
			s->dropped++;
	}
	s->rows += b->rows;
	return 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static double pct_us(const lat_state *s, double p)
{
	size_t i = (size_t)(p / 100 * (double)s->n + 0.999999);
	i = i ? i - 1 : 0;
	return (double)s->samples[i < s->n ? i : s->n - 1] / 1e3;
}

static void lat_close(void *state)
{
	lat_state *s = state;
	if (s->n) {
		qsort(s->samples, s->n, sizeof(int64_t), cmp_i64);
		fprintf(stderr, "cluster_job: latency rows %llu count %zu p50_us %.1f "
			"p99_us %.1f p999_us %.1f max_us %.1f\n", (unsigned long long)s->rows,
			s->n, pct_us(s, 50), pct_us(s, 99), pct_us(s, 99.9), pct_us(s, 100));
	}
	if (s->dropped)
		fprintf(stderr, "cluster_job: latency: %llu samples beyond the %zu kept\n",
			(unsigned long long)s->dropped, s->c->max_samples);
	free(s);
}

static void usage(void)
{
	fprintf(stderr, "usage: cluster_job.so --job throughput [--records N]\n"
			"       cluster_job.so --job latency [--rate R] [--seconds S] "
			"[--warmup S]\n");
}

int weir_job(weir_env *env, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "job", required_argument, NULL, 'j' },
		{ "records", required_argument, NULL, 'n' },
		{ "rate", required_argument, NULL, 'r' },
		{ "seconds", required_argument, NULL, 's' },
		{ "warmup", required_argument, NULL, 'w' },
		{ 0 },
	};
	const char *job = "throughput";
	uint64_t records = 50000000, rate = 10000;
	double seconds = 3, warmup = 1;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'j': job = optarg; break;
		case 'n': records = strtoull(optarg, NULL, 10); break;
		case 'r': rate = strtoull(optarg, NULL, 10); break;
		case 's': seconds = atof(optarg); break;
		case 'w': warmup = atof(optarg); break;
		default: usage(); return 2;
		}
	}
	if (!strcmp(job, "throughput")) {
		weir_generator_conf g = { .count = records, .seed = 1,
					  .schema = weir_schema_parse(env, "key:i64,value:i64"),
					  .fill = fill_kv };
		weir_stream *s = weir_source_generator(env, "gen", &g);
		if (!s)
			return 1;
		weir_sink_fns f = { .open = count_open, .invoke = count_invoke,
				    .close = count_close };
		return weir_sink(weir_rebalance(s), "count", &f) ? 1 : 0;
	}
	if (!strcmp(job, "latency") && rate > 0 && seconds > 0 && warmup >= 0) {
		/* Lives as long as the job: the generator and the sinks read it. */
		static lat_conf k;
		k.rate = (double)rate;
		k.warm_seq = (int64_t)((double)rate * warmup);
		k.max_samples = (size_t)((double)rate * seconds) + 1024;
		weir_generator_conf g = {
			.count = (uint64_t)((double)rate * (seconds + warmup)), .rate = (double)rate,
			.seed = 42, .fill = fill_ticks, .arg = &k,
			.schema = weir_schema_parse(env, "seq:i64,key:i64,value:i64,intended_ns:i64"),
		};
		weir_stream *s = weir_source_generator(env, "ticks", &g);
		/* One schedule: record i is due at t0 + i / rate. */
		if (!s || weir_stream_set_parallelism(s, 1) < 0)
			return 1;
		weir_stream *p = weir_map(weir_rebalance(s), "pass", weir_stream_schema(s), pass,
					  NULL);
		weir_sink_fns f = { .open = lat_open, .invoke = lat_invoke, .close = lat_close,
				    .arg = &k };
		return weir_sink(weir_rebalance(p), "latency", &f) ? 1 : 0;
	}
	usage();
	return 2;
}
