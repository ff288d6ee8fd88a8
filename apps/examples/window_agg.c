/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyed event-time window aggregates over a CSV file, with out-of-order
 * input, allowed lateness and a late-record file.
 *
 *   weir run [-p N] window_agg.so --input FILE --output PATH --window W
 *            --late-output PATH [--out-of-orderness MS] [--allowed-lateness MS]
 *            [--rate N]
 *
 * Input: CSV lines "key,ts,value" (key a string, ts milliseconds since the
 * epoch, value a signed 64-bit integer), no header.  W is tumbling:SIZE,
 * sliding:SIZE:SLIDE or session:GAP (milliseconds, aligned to the epoch).
 * Output: one line "key,window_start,window_end,count,sum,min,max" per
 * window firing.  A window fires when the watermark (greatest ts so far
 * minus the out-of-orderness minus 1) reaches window_end - 1, then again for
 * each late record it accepts within the allowed lateness (with the updated
 * aggregate).  A record too late for every window it belongs to is written
 * unchanged to the late file.  A malformed line is skipped and reported on
 * stderr with its line number; it does not fail the job.  When the run takes
 * checkpoints, --output and --late-output name directories of exactly-once
 * part files (weir_sink_files).  --rate caps the source at N records/s.
 *
 * Dataflow: CSV source (parallelism 1) -> assign_watermarks (bounded,
 * chained) -> key_by(key) -> window_aggregate(value) at the job's
 * parallelism -> CSV sink; late side output -> CSV sink; dead letters ->
 * stderr.  (With checkpoints: file sinks at the window's parallelism.)
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
		"usage: weir run [-p N] window_agg.so --input FILE --output PATH --window W\n"
		"                --late-output PATH [--out-of-orderness MS] [--allowed-lateness MS]\n"
		"                [--rate N]\n"
		"\n"
		"Keyed event-time window aggregates (count, sum, min, max of 'value').\n"
		"\n"
		"  --input FILE            CSV 'key,ts,value', no header: key a string, ts\n"
		"                          milliseconds since the epoch (i64), value a signed\n"
		"                          integer (i64); lines may arrive out of order\n"
		"  --output PATH           CSV 'key,window_start,window_end,count,sum,min,max',\n"
		"                          one line per window firing, no header\n"
		"  --window W              tumbling:SIZE, sliding:SIZE:SLIDE or session:GAP\n"
		"                          (milliseconds; windows are [start, end),\n"
		"                          aligned to the epoch; a session is [first ts,\n"
		"                          last ts + GAP), a record GAP or more after it\n"
		"                          starts a new one)\n"
		"  --late-output PATH      records too late for every window they belong\n"
		"                          to, unchanged ('key,ts,value')\n"
		"  --out-of-orderness MS   watermark = greatest ts so far - MS - 1 (default 0)\n"
		"  --allowed-lateness MS   keep a window MS ms of event time after it fired;\n"
		"                          each late record it accepts fires it again with\n"
		"                          the updated aggregate (default 0)\n"
		"  --rate N                read at most N records per second\n"
		"  --help                  this help\n"
		"\n"
		"A window fires when the watermark reaches window_end - 1.  A malformed input\n"
		"line is skipped and reported on stderr ('window_agg: FILE line N: reason:\n"
		"text'); the job goes on.\n"
		"\n"
		"When the run takes checkpoints (weir run --checkpoint-dir), --output and\n"
		"--late-output are directories (created if missing) of files\n"
		"part-<subtask>-<n>, committed at each checkpoint, so both are exactly-once.\n" EX_URI_HELP);
}

/* Dead letters ("line,reason,raw") of the CSV source: report each on
 * stderr, keep none. */
static void report_dead(void *arg, const weir_batch *in, uint8_t *keep)
{
	const char *path = arg;
	const int64_t *line = weir_col_i64(in, 0);
	for (uint32_t r = 0; r < in->rows; r++) {
		uint32_t wn, rn;
		const char *why = weir_batch_str(in, 1, r, &wn);
		const char *raw = weir_batch_str(in, 2, r, &rn);
		fprintf(stderr, "window_agg: %s line %" PRId64 ": %.*s: %.*s\n", path,
			line[r], (int)wn, why, (int)(rn > 200 ? 200 : rn), raw);
		keep[r] = 0;
	}
}

int weir_job(weir_env *env, int argc, char **argv)
{
	const char *input = NULL, *output = NULL, *window = NULL, *late = NULL;
	int64_t ooo = 0, lateness = 0;
	double rate = 0;
	const char *ms = "a number of milliseconds";
	const ex_opt opts[] = {
		{ .name = "input", .kind = EX_STR, .out = &input },
		{ .name = "output", .kind = EX_STR, .out = &output },
		{ .name = "window", .kind = EX_STR, .out = &window },
		{ .name = "late-output", .kind = EX_STR, .out = &late },
		{ .name = "out-of-orderness", .kind = EX_I64, .out = &ooo, .min = 0, .what = ms },
		{ .name = "allowed-lateness", .kind = EX_I64, .out = &lateness,
		  .min = 0, .what = ms },
		{ .name = "rate", .kind = EX_RATE, .out = &rate },
		{ .name = "help", .kind = EX_HELP },
		{ 0 },
	};
	int rc = ex_parse_options("window_agg", opts, argc, argv, usage);
	if (rc)
		return rc;
	if (ex_extra_args("window_agg", argc, argv, usage))
		return 2;
	if (!input || !output || !window || !late) {
		fprintf(stderr, "window_agg: --input, --output, --window and --late-output "
			"are required\n");
		usage(stderr, argv[0]);
		return 2;
	}
	weir_window_spec w;
	if (weir_window_parse(window, &w) != 0) {
		fprintf(stderr, "window_agg: --window: cannot parse '%s' (expected "
			"tumbling:SIZE, sliding:SIZE:SLIDE or session:GAP, positive ms)\n", window);
		usage(stderr, argv[0]);
		return 2;
	}
	if (w.kind == WEIR_WIN_COUNT) {
		fprintf(stderr, "window_agg: --window: count windows ('%s') are not "
			"event-time windows; use tumbling, sliding or session\n", window);
		usage(stderr, argv[0]);
		return 2;
	}
	w.allowed_lateness = lateness;

	const weir_schema *schema = weir_schema_parse(env, "key:str,ts:i64,value:i64");
	weir_stream *rows = weir_source_uri(env, "events", input, schema, false, "ts");
	weir_stream_set_parallelism(rows, 1);
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
	weir_stream *windows = weir_window_stats(weir_key_by(timed, "key"), "window",
						     &w, "value");
	/* A path or a kafka:// URI; with checkpoints, a path is a
	 * directory of exactly-once part files. */
	weir_sink_uri(windows, "output", output);
	weir_sink_uri(weir_window_late(windows), "late", late);
	return weir_env_error(env) ? 1 : 0;
}
