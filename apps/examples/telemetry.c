/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-host latency percentiles over sliding event-time windows, with an
 * alert file for the windows whose p99 crosses a threshold.
 *
 *   weir run [-p N] telemetry.so --input FILE --output PATH --alerts PATH
 *            --size MS --slide MS --p99-threshold US [--out-of-orderness MS]
 *            [--rate N]
 *
 * Input: CSV "host,ts,latency_us" (host a string, ts milliseconds since the
 * epoch, latency_us an integer), no header.  Output: one line
 * "host,window_start,window_end,count,p50,p99,max" per host and sliding
 * window [window_start, window_end) of --size ms starting every --slide ms
 * (aligned to the epoch).  Percentiles are exact, nearest rank: with the
 * window's latencies sorted ascending, pN is the value at 1-based rank
 * ceil(N/100 * count).  --alerts gets the same lines for the windows with
 * p99 > US.  Each window fires once, when the watermark (greatest ts so far
 * - out-of-orderness - 1) reaches window_end - 1; a record that arrives
 * after every window it belongs to fired is dropped (counted as late in
 * --metrics).  Malformed lines are skipped and reported on stderr.  When
 * the run takes checkpoints, --output and --alerts name directories of
 * exactly-once part files (weir_sink_files).  --rate caps the source at N
 * records/s.
 *
 * Dataflow: CSV source -> assign_watermarks (bounded) -> key_by(host) ->
 * window_process (all of a window's rows at its firing) -> CSV sink, and a
 * filter(p99 > US) branch -> CSV sink.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <weir/weir.h>

#include "example_opts.h"

int weir_job(weir_env *env, int argc, char **argv);

static void usage(FILE *f, const char *self)
{
	(void)self;
	fprintf(f,
		"usage: weir run [-p N] telemetry.so --input FILE --output PATH --alerts PATH\n"
		"                --size MS --slide MS --p99-threshold US [--out-of-orderness MS]\n"
		"                [--rate N]\n"
		"\n"
		"Per-host p50/p99/max latency over sliding event-time windows, and alerts.\n"
		"\n"
		"  --input FILE           CSV 'host,ts,latency_us', no header: host a string,\n"
		"                         ts milliseconds since the epoch (i64), latency_us\n"
		"                         an integer (i64)\n"
		"  --output PATH          CSV 'host,window_start,window_end,count,p50,p99,max',\n"
		"                         one line per host and window, no header\n"
		"  --alerts PATH          the output lines whose p99 > US\n"
		"  --size MS              window length in ms\n"
		"  --slide MS             a window starts every MS ms (aligned to the epoch)\n"
		"  --p99-threshold US     alert threshold for p99 (same unit as latency_us)\n"
		"  --out-of-orderness MS  watermark = greatest ts so far - MS - 1 (default 0);\n"
		"                         records arriving after their windows fired are dropped\n"
		"  --rate N               read at most N records per second\n"
		"  --help                 this help\n"
		"\n"
		"Percentiles are exact, nearest rank: pN is the value at 1-based rank\n"
		"ceil(N/100 * count) of the window's latencies sorted ascending.\n"
		"Malformed lines are skipped and reported on stderr.\n"
		"\n"
		"When the run takes checkpoints (weir run --checkpoint-dir), --output and\n"
		"--alerts are directories (created if missing) of files part-<subtask>-<n>,\n"
		"committed at each checkpoint, so both are exactly-once.\n" EX_URI_HELP);
}

static void report_dead(void *arg, const weir_batch *in, uint8_t *keep)
{
	const char *path = arg;
	const int64_t *line = weir_col_i64(in, 0);
	for (uint32_t r = 0; r < in->rows; r++) {
		uint32_t wn, rn;
		const char *why = weir_batch_str(in, 1, r, &wn);
		const char *raw = weir_batch_str(in, 2, r, &rn);
		fprintf(stderr, "telemetry: %s line %" PRId64 ": %.*s: %.*s\n", path,
			line[r], (int)wn, why, (int)(rn > 200 ? 200 : rn), raw);
		keep[r] = 0;
	}
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* Nearest rank: the value at 1-based rank ceil(pct/100 * n) of sorted v. */
static int64_t percentile(const int64_t *v, size_t n, int pct)
{
	size_t rank = ((size_t)pct * n + 99) / 100;
	if (rank < 1)
		rank = 1;
	return v[rank - 1];
}

/* Output columns. */
enum { O_HOST, O_START, O_END, O_COUNT, O_P50, O_P99, O_MAX };

static int window_percentiles(void *arg, weir_value key, int64_t start, int64_t end,
			      weir_rows *rows, weir_out *out)
{
	int64_t small[256];
	size_t n = weir_rows_count(rows), k = 0;
	weir_value cells[3];
	int64_t ts;
	(void)arg;

	if (!n)
		return 0;
	int64_t *v = n <= 256 ? small : malloc(n * sizeof(*v));
	if (!v)
		return -ENOMEM;
	while (k < n && weir_rows_next(rows, cells, &ts))
		v[k++] = cells[2].i64; /* latency_us */
	if (k) {
		qsort(v, k, sizeof(*v), cmp_i64);
		weir_out_str(out, O_HOST, key.str.ptr, key.str.len);
		weir_out_i64(out, O_START, start);
		weir_out_i64(out, O_END, end);
		weir_out_i64(out, O_COUNT, (int64_t)k);
		weir_out_i64(out, O_P50, percentile(v, k, 50));
		weir_out_i64(out, O_P99, percentile(v, k, 99));
		weir_out_i64(out, O_MAX, v[k - 1]);
		weir_out_emit(out);
	}
	if (v != small)
		free(v);
	return 0;
}

static void over_threshold(void *arg, const weir_batch *in, uint8_t *keep)
{
	const int64_t threshold = *(const int64_t *)arg;
	const int64_t *p99 = weir_col_i64(in, O_P99);
	for (uint32_t r = 0; r < in->rows; r++)
		keep[r] = p99[r] > threshold;
}

int weir_job(weir_env *env, int argc, char **argv)
{
	/* Read by the filter while the job runs: outlives weir_job. */
	static int64_t threshold;
	const char *input = NULL, *output = NULL, *alerts = NULL;
	int64_t size = 0, slide = 0, ooo = 0;
	double rate = 0;
	bool have_threshold = false;
	const char *integer = "an integer";
	const ex_opt opts[] = {
		{ .name = "input", .kind = EX_STR, .out = &input },
		{ .name = "output", .kind = EX_STR, .out = &output },
		{ .name = "alerts", .kind = EX_STR, .out = &alerts },
		{ .name = "size", .kind = EX_I64, .out = &size, .min = 1, .what = integer },
		{ .name = "slide", .kind = EX_I64, .out = &slide, .min = 1, .what = integer },
		{ .name = "p99-threshold", .kind = EX_I64, .out = &threshold,
		  .min = INT64_MIN, .what = integer, .seen = &have_threshold },
		{ .name = "out-of-orderness", .kind = EX_I64, .out = &ooo,
		  .min = 0, .what = integer },
		{ .name = "rate", .kind = EX_RATE, .out = &rate },
		{ .name = "help", .kind = EX_HELP },
		{ 0 },
	};
	int rc = ex_parse_options("telemetry", opts, argc, argv, usage);
	if (rc)
		return rc;
	if (ex_extra_args("telemetry", argc, argv, usage))
		return 2;
	if (!input || !output || !alerts || !size || !slide || !have_threshold) {
		fprintf(stderr, "telemetry: --input, --output, --alerts, --size, --slide and "
			"--p99-threshold are required\n");
		usage(stderr, argv[0]);
		return 2;
	}

	const weir_schema *schema = weir_schema_parse(env, "host:str,ts:i64,latency_us:i64");
	weir_stream *rows = weir_source_uri(env, "telemetry", input, schema, false, "ts");
	if (rate > 0)
		weir_source_set_rate(rows, rate);
	weir_stream *malformed = weir_filter(weir_source_dead_letters(rows), "report-malformed",
					     report_dead, (void *)input);
	weir_stream_set_parallelism(malformed, 1);
	weir_sink_discard(malformed, "malformed");
	weir_watermark_strategy ws = {
		.kind = WEIR_WM_BOUNDED,
		.ts_column = "ts",
		.out_of_orderness_ms = ooo,
	};
	weir_stream *timed = weir_assign_watermarks(rows, "watermarks", &ws);
	weir_window_spec w = { .kind = WEIR_WIN_SLIDING, .time = WEIR_EVENT_TIME,
			       .size = size, .slide = slide };
	weir_stream *stats = weir_window_process(weir_key_by(timed, "host"), "percentiles",
		&w, weir_schema_parse(env, "host:str,window_start:ts,window_end:ts,"
					   "count:i64,p50:i64,p99:i64,max:i64"),
		window_percentiles, NULL);
	weir_stream *over = weir_filter(stats, "p99-over-threshold", over_threshold,
					&threshold);
	/* A path or a kafka:// URI; with checkpoints, a path is a
	 * directory of exactly-once part files. */
	weir_sink_uri(stats, "output", output);
	weir_sink_uri(over, "alerts", alerts);
	return weir_env_error(env) ? 1 : 0;
}
