/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Volume-weighted average price per symbol over tumbling event-time windows.
 *
 *   weir run [-p N] vwap.so --input FILE --output PATH --window-ms W
 *            [--out-of-orderness MS] [--rate N]
 *
 * Input: CSV trades "symbol,ts,price,qty" (symbol a string, ts milliseconds
 * since the epoch, price a float, qty a positive integer), no header.
 * Output: one line "symbol,window_start,window_end,trades,volume,vwap" per
 * symbol and window [window_start, window_end) of W ms aligned to the
 * epoch, where trades is the number of trades, volume = sum(qty) and
 * vwap = sum(price * qty) / sum(qty).  Each window fires once, when the
 * watermark (greatest ts so far - out-of-orderness - 1) reaches
 * window_end - 1; a trade that arrives after its window fired is dropped
 * (counted as late in --metrics).  Malformed lines and trades with
 * qty <= 0 are skipped and reported on stderr.  When the run takes
 * checkpoints, --output names a directory of exactly-once part files
 * (weir_sink_files).  --rate caps the source at N records/s.
 *
 * Dataflow: CSV source -> assign_watermarks (bounded) -> filter(qty > 0) ->
 * key_by(symbol) -> window_agg (a user accumulator) -> CSV sink.
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
		"usage: weir run [-p N] vwap.so --input FILE --output PATH --window-ms W\n"
		"                [--out-of-orderness MS] [--rate N]\n"
		"\n"
		"Per-symbol volume-weighted average price over tumbling event-time windows.\n"
		"\n"
		"  --input FILE           CSV trades 'symbol,ts,price,qty', no header: symbol\n"
		"                         a string, ts milliseconds since the epoch (i64),\n"
		"                         price a float (f64), qty a positive integer (i64)\n"
		"  --output PATH          CSV 'symbol,window_start,window_end,trades,volume,vwap',\n"
		"                         one line per symbol and window, no header;\n"
		"                         volume = sum(qty), vwap = sum(price*qty)/sum(qty)\n"
		"  --window-ms W          window size in ms (windows [k*W, (k+1)*W))\n"
		"  --out-of-orderness MS  watermark = greatest ts so far - MS - 1 (default 0);\n"
		"                         trades arriving after their window fired are dropped\n"
		"  --rate N               read at most N trades per second\n"
		"  --help                 this help\n"
		"\n"
		"Malformed lines and trades with qty <= 0 are skipped and reported on stderr.\n"
		"\n"
		"When the run takes checkpoints (weir run --checkpoint-dir), --output is\n"
		"a directory (created if missing) of files part-<subtask>-<n>, committed at\n"
		"each checkpoint, so the output is exactly-once.\n" EX_URI_HELP);
}

static void report_dead(void *arg, const weir_batch *in, uint8_t *keep)
{
	const char *path = arg;
	const int64_t *line = weir_col_i64(in, 0);
	for (uint32_t r = 0; r < in->rows; r++) {
		uint32_t wn, rn;
		const char *why = weir_batch_str(in, 1, r, &wn);
		const char *raw = weir_batch_str(in, 2, r, &rn);
		fprintf(stderr, "vwap: %s line %" PRId64 ": %.*s: %.*s\n", path, line[r],
			(int)wn, why, (int)(rn > 200 ? 200 : rn), raw);
		keep[r] = 0;
	}
}

/* Input columns. */
enum { C_SYMBOL, C_TS, C_PRICE, C_QTY };

static void positive_qty(void *arg, const weir_batch *in, uint8_t *keep)
{
	const int64_t *qty = weir_col_i64(in, C_QTY);
	const int64_t *ts = weir_col_i64(in, C_TS);
	(void)arg;
	for (uint32_t r = 0; r < in->rows; r++) {
		keep[r] = qty[r] > 0;
		if (!keep[r]) {
			uint32_t n;
			const char *sym = weir_batch_str(in, C_SYMBOL, r, &n);
			fprintf(stderr, "vwap: skipping the trade of %.*s at %" PRId64
				": qty %" PRId64 " is not positive\n", (int)(n > 200 ? 200 : n),
				sym, ts[r], qty[r]);
		}
	}
}

typedef struct vwap_acc {
	int64_t trades;
	int64_t volume;
	double notional; /* sum(price * qty) */
} vwap_acc;

static void vwap_add(void *arg, void *accp, const weir_batch *in, uint32_t row)
{
	vwap_acc *acc = accp;
	int64_t qty = weir_col_i64(in, C_QTY)[row];
	(void)arg;
	acc->trades++;
	acc->volume += qty;
	acc->notional += weir_col_f64(in, C_PRICE)[row] * (double)qty;
}

static void vwap_merge(void *arg, void *accp, const void *otherp)
{
	vwap_acc *acc = accp;
	const vwap_acc *o = otherp;
	(void)arg;
	acc->trades += o->trades;
	acc->volume += o->volume;
	acc->notional += o->notional;
}

static int vwap_result(void *arg, const void *accp, weir_value key, int64_t start,
		       int64_t end, weir_out *out)
{
	const vwap_acc *acc = accp;
	(void)arg;
	weir_out_str(out, 0, key.str.ptr, key.str.len);
	weir_out_i64(out, 1, start);
	weir_out_i64(out, 2, end);
	weir_out_i64(out, 3, acc->trades);
	weir_out_i64(out, 4, acc->volume);
	weir_out_f64(out, 5, acc->notional / (double)acc->volume);
	weir_out_emit(out);
	return 0;
}

int weir_job(weir_env *env, int argc, char **argv)
{
	const char *input = NULL, *output = NULL;
	int64_t size = 0, ooo = 0;
	double rate = 0;
	const char *ms = "a number of milliseconds";
	const ex_opt opts[] = {
		{ .name = "input", .kind = EX_STR, .out = &input },
		{ .name = "output", .kind = EX_STR, .out = &output },
		{ .name = "window-ms", .kind = EX_I64, .out = &size, .min = 1, .what = ms },
		{ .name = "out-of-orderness", .kind = EX_I64, .out = &ooo, .min = 0, .what = ms },
		{ .name = "rate", .kind = EX_RATE, .out = &rate },
		{ .name = "help", .kind = EX_HELP },
		{ 0 },
	};
	int rc = ex_parse_options("vwap", opts, argc, argv, usage);
	if (rc)
		return rc;
	if (ex_extra_args("vwap", argc, argv, usage))
		return 2;
	if (!input || !output || !size) {
		fprintf(stderr, "vwap: --input, --output and --window-ms are required\n");
		usage(stderr, argv[0]);
		return 2;
	}

	const weir_schema *schema =
		weir_schema_parse(env, "symbol:str,ts:i64,price:f64,qty:i64");
	weir_stream *trades = weir_source_uri(env, "trades", input, schema, false, "ts");
	if (rate > 0)
		weir_source_set_rate(trades, rate);
	weir_stream *malformed = weir_filter(weir_source_dead_letters(trades), "report-malformed",
					     report_dead, (void *)input);
	weir_stream_set_parallelism(malformed, 1);
	weir_sink_discard(malformed, "malformed");
	weir_watermark_strategy ws = {
		.kind = WEIR_WM_BOUNDED,
		.ts_column = "ts",
		.out_of_orderness_ms = ooo,
	};
	weir_stream *timed = weir_assign_watermarks(trades, "watermarks", &ws);
	/* Same parallelism as the source, so it chains: a rebalance between the
	 * watermark generator and key_by would let records overtake watermarks
	 * on the other path, and the results would depend on timing. */
	timed = weir_filter(timed, "positive-qty", positive_qty, NULL);
	weir_stream_set_parallelism(timed, 1);
	weir_window_spec w = { .kind = WEIR_WIN_TUMBLING, .time = WEIR_EVENT_TIME,
			       .size = size };
	static const weir_window_aggregate_fns fns = {
		.acc_size = sizeof(vwap_acc),
		.add = vwap_add,
		.merge = vwap_merge,
		.result = vwap_result,
	};
	weir_stream *vwap = weir_window_aggregate(weir_key_by(timed, "symbol"), "vwap", &w,
		weir_schema_parse(env, "symbol:str,window_start:ts,window_end:ts,"
					"trades:i64,volume:i64,vwap:f64"),
		&fns);
	weir_sink_uri(vwap, "output", output);
	return weir_env_error(env) ? 1 : 0;
}
