/* SPDX-License-Identifier: Apache-2.0 */
/*
 * How soon a row leaves the process (issue 15, "sinks that stream"): the
 * latency from a record entering the source to its CSV line being
 * readable from a pipe, at a steady 100 k records/s.
 *
 *   sink_latency   generator (rate 100 k/s; each row stamped with the
 *                  clock when the source makes it) -> weir_sink_csv to a
 *                  pipe's write end; a thread reads the pipe and records,
 *                  per line, now - stamp.  p50, p99, p99.9 and max, with
 *                  the buffer timeout at its default (1 ms) and at 0.
 *   pipe_floor     the yardstick, in the same run: a thread writes the same
 *                  lines to a pipe at the same rate, one write(2) each,
 *                  and the reader measures them the same way.  The ratio
 *                  is the sink's p99 over the floor's p99 plus the buffer
 *                  timeout (the most the sink is allowed to hold a row).
 *
 *   bench_sink_latency [--seconds S]   (default 3)
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "histogram.h"
#include <weir/weir.h>

#define RATE 100000.0

typedef struct reader {
	int fd;
	hist *h;
	uint64_t lines;
} reader;

/* Read lines "seq,stamp_ns" until EOF; record now - stamp for each. */
static void *read_lines(void *arg)
{
	reader *r = arg;
	static __thread char buf[1 << 16];
	size_t have = 0;
	for (;;) {
		ssize_t n = read(r->fd, buf + have, sizeof(buf) - have);
		if (n <= 0)
			break;
		uint64_t now = now_ns();
		have += (size_t)n;
		char *p = buf, *end = buf + have, *nl;
		while ((nl = memchr(p, '\n', (size_t)(end - p)))) {
			char *comma = memchr(p, ',', (size_t)(nl - p));
			if (comma) {
				uint64_t stamp = strtoull(comma + 1, NULL, 10);
				hist_record(r->h, (int64_t)(now - stamp));
				r->lines++;
			}
			p = nl + 1;
		}
		have = (size_t)(end - p);
		memmove(buf, p, have);
	}
	return NULL;
}

static void stamp_fill(void *arg, uint64_t seed, uint64_t first, uint32_t n, weir_batch *b)
{
	(void)arg;
	(void)seed;
	int64_t *seq = weir_col_i64(b, 0), *stamp = weir_col_i64(b, 1);
	uint64_t now = now_ns();
	for (uint32_t i = 0; i < n; i++) {
		seq[i] = (int64_t)(first + i);
		stamp[i] = (int64_t)now;
		b->ts[i] = 0;
	}
}

static void print(const char *bench, const char *extra, const reader *r, double secs)
{
	printf("{\"bench\":\"%s\",%s\"rate\":%.0f,\"lines\":%" PRIu64 ",\"seconds\":%.1f,"
	       "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f",
	       bench, extra, RATE, r->lines, secs, hist_percentile(r->h, 50) / 1e3,
	       hist_percentile(r->h, 99) / 1e3, hist_percentile(r->h, 99.9) / 1e3,
	       hist_percentile(r->h, 100) / 1e3);
}

/* The job: generator -> CSV sink on a pipe; returns the reader's figures. */
static int run_sink(double secs, int64_t timeout_us, reader *r)
{
	int p[2];
	char path[64];
	pthread_t th;
	if (pipe(p) < 0)
		return -errno;
	r->fd = p[0];
	r->h = hist_new();
	r->lines = 0;
	if (!r->h || pthread_create(&th, NULL, read_lines, r))
		return -ENOMEM;
	weir_env *env = weir_env_new();
	weir_config *cfg = weir_env_config(env);
	cfg->parallelism = 1;
	cfg->buffer_timeout_us = timeout_us;
	cfg->mode = WEIR_MODE_STREAMING;
	weir_generator_conf g = {
		.count = (uint64_t)(RATE * secs), .rate = RATE, .seed = 1,
		.schema = weir_schema_parse(env, "seq:i64,stamp:i64"), .fill = stamp_fill,
	};
	snprintf(path, sizeof(path), "/dev/fd/%d", p[1]);
	weir_sink_csv(weir_source_generator(env, "gen", &g), "out", path);
	int rc = weir_env_error(env) ? -EINVAL : weir_env_execute(env, "sink_latency", 0);
	weir_env_free(env);
	close(p[1]);
	pthread_join(th, NULL);
	close(p[0]);
	return rc;
}

/* The yardstick: one write(2) per line at the same rate. */
static void run_floor(double secs, reader *r)
{
	int p[2];
	pthread_t th;
	if (pipe(p) < 0)
		exit(1);
	r->fd = p[0];
	r->h = hist_new();
	r->lines = 0;
	if (!r->h || pthread_create(&th, NULL, read_lines, r))
		exit(1);
	uint64_t t0 = now_ns(), n = (uint64_t)(RATE * secs);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t due = t0 + (uint64_t)((double)i * 1e9 / RATE);
		while (now_ns() < due)
			;
		char line[64];
		int len = snprintf(line, sizeof(line), "%" PRIu64 ",%" PRIu64 "\n", i, now_ns());
		if (write(p[1], line, (size_t)len) != len)
			break;
	}
	close(p[1]);
	pthread_join(th, NULL);
	close(p[0]);
}

int main(int argc, char **argv)
{
	double secs = 3;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			secs = atof(argv[++i]);
		else {
			fprintf(stderr, "usage: bench_sink_latency [--seconds S]\n");
			return 2;
		}
	}
	log_set_level(LOG_WARN);
	reader fl, s1, s0;
	run_floor(secs, &fl);
	print("pipe_floor", "", &fl, secs);
	printf("}\n");
	int64_t timeouts[2] = { 1000, 0 };
	reader *rs[2] = { &s1, &s0 };
	for (int k = 0; k < 2; k++) {
		char extra[64];
		int rc = run_sink(secs, timeouts[k], rs[k]);
		if (rc < 0) {
			fprintf(stderr, "bench_sink_latency: the job failed (%d)\n", rc);
			return 1;
		}
		snprintf(extra, sizeof(extra), "\"buffer_timeout_us\":%" PRId64 ",", timeouts[k]);
		print("sink_latency", extra, rs[k], secs);
		double allowed = hist_percentile(fl.h, 99) / 1e3 + (double)timeouts[k];
		printf(",\"ratio_p99_to_floor_plus_timeout\":%.2f}\n",
		       hist_percentile(rs[k]->h, 99) / 1e3 / (allowed > 0 ? allowed : 1));
	}
	hist_free(fl.h);
	hist_free(s1.h);
	hist_free(s0.h);
	return 0;
}
