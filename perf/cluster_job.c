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
 * The sinks reach the engine's internal operator interface (ops.h,
 * histogram.h) through libweir's exported symbols: a measuring tool, not
 * an example for users.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "histogram.h"
#include "latency.h"
#include "ops.h"
#include <weir/weir.h>

int weir_job(weir_env *env, int argc, char **argv);

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
	uint64_t rows, first_ns, last_ns;
} count_state;

static int count_open(task *t)
{
	t->st = calloc(1, sizeof(count_state));
	return t->st ? 0 : -ENOMEM;
}

static void count_process(task *t, int input, weir_batch *b)
{
	count_state *s = t->st;
	uint64_t now = now_ns();
	(void)input;
	if (!s->rows)
		s->first_ns = now;
	s->last_ns = now;
	s->rows += b->rows;
	batch_release(b);
}

static void count_close(task *t)
{
	count_state *s = t->st;
	if (!s)
		return;
	double secs = (double)(s->last_ns - s->first_ns) / 1e9;
	if (s->rows)
		fprintf(stderr, "cluster_job: throughput subtask %d rows %llu seconds %.6f "
			"rows_per_s %.0f\n", t->subtask, (unsigned long long)s->rows, secs,
			secs > 0 ? (double)s->rows / secs : 0.0);
	free(s);
}

static const op_ops op_count_sink = {
	.kind = "count_sink", .open = count_open, .process = count_process,
	.close = count_close,
};

/* ---- latency: a round trip through the other worker ----------------------------------- */

static int pass(void *arg, const weir_batch *in, weir_batch *out)
{
	(void)arg;
	for (int c = 0; c < 4; c++)
		memcpy(out->cols[c], in->cols[c], in->rows * sizeof(int64_t));
	return 0;
}

typedef struct lat_conf {
	int64_t warm_seq; /* records with seq below this are the warm-up */
} lat_conf;

typedef struct lat_state {
	hist h;
	uint64_t rows;
} lat_state;

static int lat_open(task *t)
{
	lat_state *s = malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	hist_init(&s->h);
	s->rows = 0;
	t->st = s;
	return 0;
}

/* Columns of the latency source: seq, key, value, intended_ns. */
static void lat_process(task *t, int input, weir_batch *b)
{
	const lat_conf *c = t->node->conf;
	lat_state *s = t->st;
	const int64_t *seq = weir_col_i64(b, 0), *due = weir_col_i64(b, 3);
	int64_t now = (int64_t)now_ns(); /* one clock read: the rows arrived together */
	(void)input;
	for (uint32_t r = 0; r < b->rows; r++)
		if (seq[r] >= c->warm_seq)
			hist_record(&s->h, now - due[r]);
	s->rows += b->rows;
	batch_release(b);
}

static void lat_close(task *t)
{
	lat_state *s = t->st;
	if (!s)
		return;
	const hist *h = &s->h;
	if (s->rows)
		fprintf(stderr, "cluster_job: latency rows %llu count %llu p50_us %.1f "
			"p99_us %.1f p999_us %.1f max_us %.1f\n", (unsigned long long)s->rows,
			(unsigned long long)hist_count(h), hist_percentile(h, 50) / 1e3,
			hist_percentile(h, 99) / 1e3, hist_percentile(h, 99.9) / 1e3,
			hist_percentile(h, 100) / 1e3);
	free(s);
}

static const op_ops op_lat_sink = {
	.kind = "round_trip_latency_sink", .open = lat_open, .process = lat_process,
	.close = lat_close,
};

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
		return stream_add_op((weir_stream *[]){ weir_rebalance(s) }, 1, "count",
				     "count-sink", &op_count_sink, weir_stream_schema(s), NULL,
				     NULL) ? 0 : 1;
	}
	if (!strcmp(job, "latency") && rate > 0 && seconds > 0 && warmup >= 0) {
		latency_source_conf lc = { .rate = rate,
					   .count = (uint64_t)((double)rate * (seconds + warmup)),
					   .seed = 42 };
		lat_conf *k = malloc(sizeof(*k));
		if (!k)
			return 1;
		k->warm_seq = (int64_t)((double)rate * warmup);
		weir_stream *s = latency_source(env, "ticks", &lc);
		if (!s) {
			free(k);
			return 1;
		}
		weir_stream *p = weir_map(weir_rebalance(s), "pass", weir_stream_schema(s), pass,
					  NULL);
		/* stream_add_op takes ownership of k (free() as conf_free). */
		return stream_add_op((weir_stream *[]){ weir_rebalance(p) }, 1, "latency",
				     "latency-sink", &op_lat_sink, weir_stream_schema(s), k,
				     free) ? 0 : 1;
	}
	usage();
	return 2;
}
