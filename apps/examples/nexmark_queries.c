/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Nexmark queries (../shared/NEXMARK.md) as example jobs, one shared
 * object each: this file is built once per query with NEXMARK_QUERY set
 * (apps/examples/meson.build), as nexmark_q0.so ... nexmark_q19.so.
 *
 *   weir run [-p N] build/apps/examples/nexmark_qN.so [generator options]
 *       --output DIR|discard
 *
 * Generator options (the same in every query): --events N, --event-rate R,
 * --emit-rate R, --ooo-group G, --seed S (weir_nexmark_options).  --output
 * DIR writes CSV part files without header lines into DIR (created if
 * missing; exactly-once files when the run checkpoints); `discard` drops
 * the rows (throughput runs).  Event time is each event's date_time; the
 * source's watermark trails it by 4 s, as in Flink's suite.
 *
 * Output rows, per query (columns in this order):
 *
 *   q0   every bid: auction, bidder, price, channel, url, date_time, extra
 *   q1   auction, bidder, price (0.908 * price, f64), date_time, extra
 *   q2   auction, price of bids with auction mod 123 = 0
 *   q3   name, city, state, auction id: auctions of category 10 joined with
 *        their sellers living in OR, ID or CA (an unwindowed join)
 *   q4   category, average: per category, the average winning price of its
 *        auctions (an auction's highest bid between its date_time and its
 *        expires); an update whenever an auction's winning price rises, so
 *        on a bounded run the last row per category is the answer
 *   q5   auction, count, window_start, window_end: per sliding window of
 *        10 s every 2 s, the auction(s) with the most bids
 *   q7   auction, price, bidder, date_time, extra, window_start: per
 *        tumbling 10 s window, the bid(s) with the window's highest price
 *   q8   id, name, window_start: people who opened an auction in the
 *        10 s tumbling window in which they registered (once per window)
 *   q11  bidder, count, session_start, session_end: per bidder, sessions
 *        of bids with gaps under 10 s (session_end = the last bid's time + 10 s)
 *   q14  auction, bidder, price (0.908 * price, f64), bid_time_type,
 *        date_time, extra, c_counts: bids with 1,000,000 < 0.908 * price <
 *        50,000,000, the time of day of the bid (dayTime for hours 8-18,
 *        nightTime for hours <= 6 or >= 20, else otherTime; UTC) and the
 *        number of 'c's in extra
 *   q18  the bid columns, then pair, rank: the last bid (greatest
 *        date_time) per (bidder, auction); pair = bidder * 2^32 + auction;
 *        an update per newer bid, so the last row per pair is the answer
 *   q19  the bid columns, then rank: the top 10 bids by price per auction,
 *        as updates: the last row per (auction, rank) is the answer
 *
 * Ties (q18, q19) are broken by the remaining columns (weir_topn), so every
 * answer is a function of the events, whatever the parallelism.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weir/nexmark.h>
#include <weir/weir.h>

#ifndef NEXMARK_QUERY
#error "build with -DNEXMARK_QUERY=<query number>"
#endif

int weir_job(weir_env *env, int argc, char **argv);

typedef struct nx_job {
	weir_env *env;
	const char *output;
	weir_stream *person, *auction, *bid;
} nx_job;

#define STR_(x) #x
#define STR(x) STR_(x)
#define QNAME "nexmark_q" STR(NEXMARK_QUERY)

static void usage(FILE *f, const char *self)
{
	fprintf(f,
		"usage: weir run [-p N] %s [generator options] --output DIR|discard\n"
		"\n"
		"Nexmark query %d (the meaning and output columns are at the top of\n"
		"apps/examples/nexmark_queries.c and in the README).\n"
		"\n"
		"  --output DIR   CSV part files without header lines, in DIR (created\n"
		"                 if missing; exactly-once when the run checkpoints);\n"
		"                 'discard' drops the rows\n"
		"generator options:\n" WEIR_NEXMARK_OPTIONS_HELP,
		self, NEXMARK_QUERY);
}

/* Write s to the output: part files in the output directory, or nowhere. */
static void nx_sink(nx_job *j, weir_stream *s, const char *name)
{
	if (!strcmp(j->output, "discard"))
		weir_sink_discard(s, name);
	else
		weir_sink_files(s, name, j->output);
}

/* ---- small helpers for the queries -------------------------------------------- */

static const weir_schema *schema(nx_job *j, const char *spec)
{
	return weir_schema_parse(j->env, spec);
}

/* A map's output starts with the 7 bid columns: copy them, and ts. */
static int copy_bid(const weir_batch *in, weir_batch *out)
{
	for (int c = 0; c < 7; c++)
		if (in->schema->fields[c].type != WEIR_STR)
			memcpy(out->cols[c], in->cols[c], (size_t)in->rows * 8);
	memcpy(out->ts, in->ts, (size_t)in->rows * 8);
	static const int strs[] = { WEIR_BID_CHANNEL, WEIR_BID_URL, WEIR_BID_EXTRA };
	for (uint32_t r = 0; r < in->rows; r++)
		for (int i = 0; i < 3; i++) {
			uint32_t len;
			const char *p = weir_batch_str(in, strs[i], r, &len);
			int rc = weir_batch_set_str(out, strs[i], r, p, len);
			if (rc)
				return rc; /* -ENOSPC: called again on a smaller slice */
		}
	return 0;
}

#define Q1_PRICE(p) (0.908 * (double)(p))

/* ---- q0, q1, q2, q14: stateless ---------------------------------------------- */

static int q0(nx_job *j)
{
	nx_sink(j, j->bid, "sink");
	return 0;
}

/* Column by column: a map keeps the row count, so no per-row emitter. */
static int q1_map(void *arg, const weir_batch *in, weir_batch *out)
{
	(void)arg;
	uint32_t n = in->rows;
	const int64_t *price = weir_col_i64(in, WEIR_BID_PRICE);
	double *euro = weir_col_f64(out, 2);
	memcpy(weir_col_i64(out, 0), weir_col_i64(in, WEIR_BID_AUCTION), n * sizeof(int64_t));
	memcpy(weir_col_i64(out, 1), weir_col_i64(in, WEIR_BID_BIDDER), n * sizeof(int64_t));
	memcpy(weir_col_i64(out, 3), weir_col_i64(in, WEIR_BID_DATE_TIME), n * sizeof(int64_t));
	memcpy(out->ts, in->ts, n * sizeof(int64_t));
	for (uint32_t r = 0; r < n; r++)
		euro[r] = Q1_PRICE(price[r]);
	for (uint32_t r = 0; r < n; r++) {
		uint32_t len;
		const char *p = weir_batch_str(in, WEIR_BID_EXTRA, r, &len);
		int rc = weir_batch_set_str(out, 4, r, p, len);
		if (rc)
			return rc; /* -ENOSPC: called again on a smaller slice */
	}
	return 0;
}

static int q1(nx_job *j)
{
	weir_stream *s = weir_map(j->bid, "q1",
		schema(j, "auction:i64,bidder:i64,price:f64,date_time:ts,extra:str"), q1_map, NULL);
	nx_sink(j, s, "sink");
	return 0;
}

static int q2_map(void *arg, const weir_batch *in, weir_out *out)
{
	(void)arg;
	const int64_t *auction = weir_col_i64(in, WEIR_BID_AUCTION);
	const int64_t *price = weir_col_i64(in, WEIR_BID_PRICE);
	for (uint32_t r = 0; r < in->rows; r++) {
		if (auction[r] % 123)
			continue;
		weir_out_i64(out, 0, auction[r]);
		weir_out_i64(out, 1, price[r]);
		weir_out_ts(out, in->ts[r]);
		weir_out_emit(out);
	}
	return 0;
}

static int q2(nx_job *j)
{
	weir_stream *s = weir_flat_map(j->bid, "q2", schema(j, "auction:i64,price:i64"), q2_map,
				       NULL);
	nx_sink(j, s, "sink");
	return 0;
}

/* The number of 'c' bytes in p[0, len), eight at a time: a byte of
 * w ^ "cccccccc" is zero exactly where p has a 'c', and the zero test
 * below sets that byte's top bit without carries between bytes. */
static int64_t count_c(const char *p, uint32_t len)
{
	const uint64_t ones7 = 0x7f7f7f7f7f7f7f7full, cs = 0x6363636363636363ull;
	int64_t n = 0;
	uint32_t k = 0;
	for (; k + 8 <= len; k += 8) {
		uint64_t w;
		memcpy(&w, p + k, 8);
		w ^= cs;
		n += __builtin_popcountll(~(((w & ones7) + ones7) | w | ones7));
	}
	for (; k < len; k++)
		n += p[k] == 'c';
	return n;
}

static int q14_map(void *arg, const weir_batch *in, weir_out *out)
{
	(void)arg;
	const int64_t *price = weir_col_i64(in, WEIR_BID_PRICE);
	const int64_t *dt = weir_col_i64(in, WEIR_BID_DATE_TIME);
	uint32_t sel[256];
	for (uint32_t base = 0; base < in->rows; base += 256) {
		uint32_t end = in->rows - base < 256 ? in->rows : base + 256, k = 0;
		/* The rows in range first, without a branch per row: about a
		 * quarter pass, at random, which a branch would mispredict. */
		for (uint32_t r = base; r < end; r++) {
			double p = Q1_PRICE(price[r]);
			sel[k] = r;
			k += (p > 1000000.0) & (p < 50000000.0);
		}
		for (uint32_t i = 0; i < k; i++) {
			uint32_t r = sel[i];
			int64_t hour = ((dt[r] / 1000) % 86400 + 86400) % 86400 / 3600;
			const char *type = hour >= 8 && hour <= 18 ? "dayTime"
					   : hour <= 6 || hour >= 20 ? "nightTime"
								     : "otherTime";
			uint32_t len;
			const char *extra = weir_batch_str(in, WEIR_BID_EXTRA, r, &len);
			weir_out_i64(out, 0, weir_col_i64(in, WEIR_BID_AUCTION)[r]);
			weir_out_i64(out, 1, weir_col_i64(in, WEIR_BID_BIDDER)[r]);
			weir_out_f64(out, 2, Q1_PRICE(price[r]));
			weir_out_str(out, 3, type, strlen(type));
			weir_out_i64(out, 4, dt[r]);
			weir_out_str(out, 5, extra, len);
			weir_out_i64(out, 6, count_c(extra, len));
			weir_out_ts(out, in->ts[r]);
			weir_out_emit(out);
		}
	}
	return 0;
}

static int q14(nx_job *j)
{
	weir_stream *s = weir_flat_map(j->bid, "q14",
		schema(j, "auction:i64,bidder:i64,price:f64,bid_time_type:str,date_time:ts,"
			  "extra:str,c_counts:i64"), q14_map, NULL);
	nx_sink(j, s, "sink");
	return 0;
}

/* ---- q3: an unwindowed join ------------------------------------------------------ */

static void keep_category_10(void *arg, const weir_batch *in, uint8_t *keep)
{
	(void)arg;
	const int64_t *cat = weir_col_i64(in, WEIR_AUCTION_CATEGORY);
	for (uint32_t r = 0; r < in->rows; r++)
		keep[r] = cat[r] == 10;
}

static void keep_or_id_ca(void *arg, const weir_batch *in, uint8_t *keep)
{
	(void)arg;
	for (uint32_t r = 0; r < in->rows; r++) {
		uint32_t len;
		const char *s = weir_batch_str(in, WEIR_PERSON_STATE, r, &len);
		keep[r] = len == 2 && ((s[0] == 'O' && s[1] == 'R') || (s[0] == 'I' && s[1] == 'D') ||
				       (s[0] == 'C' && s[1] == 'A'));
	}
}

/* a: auction, b: person. */
static int q3_pair(void *arg, const weir_value *a, int64_t ts_a, const weir_value *b,
		   int64_t ts_b, weir_out *out)
{
	(void)arg, (void)ts_a, (void)ts_b;
	weir_out_str(out, 0, b[WEIR_PERSON_NAME].str.ptr, b[WEIR_PERSON_NAME].str.len);
	weir_out_str(out, 1, b[WEIR_PERSON_CITY].str.ptr, b[WEIR_PERSON_CITY].str.len);
	weir_out_str(out, 2, b[WEIR_PERSON_STATE].str.ptr, b[WEIR_PERSON_STATE].str.len);
	weir_out_i64(out, 3, a[WEIR_AUCTION_ID].i64);
	weir_out_emit(out);
	return 0;
}

static int q3(nx_job *j)
{
	weir_stream *a = weir_key_by(weir_filter(j->auction, "category-10", keep_category_10, NULL),
				     "seller");
	weir_stream *p = weir_key_by(weir_filter(j->person, "or-id-ca", keep_or_id_ca, NULL), "id");
	/* A person registers once: the person side keeps its latest row. */
	weir_join_conf jc = { .b_latest_only = true };
	weir_stream *s = weir_join(a, p, "q3", &jc,
				   schema(j, "name:str,city:str,state:str,id:i64"), q3_pair, NULL);
	nx_sink(j, s, "sink");
	return 0;
}

/* ---- q4: winning bids per auction, average per category ----------------------- */

/*
 * Stage 1, keyed by auction id, auctions on input 0 and bids on input 1:
 * the auction's lifetime and category and its winning price so far (value
 * state), and the bids that came before their auction (list state; only
 * with out-of-order groups).  A row (auction, category, price, old price)
 * goes out whenever the winning price rises, so stage 2 sees every change.  This is
 * the inner join of the query's meaning, with the bid side reduced to its
 * maximum as it arrives: a join that kept every bid (weir_join) holds the
 * whole bid stream in state.  An auction's 32 bytes stay for the run:
 * bids can reference it until the end.
 */
typedef struct q4_auction {
	int64_t date_time, expires, category, best; /* best: -1 = no winning bid yet */
} q4_auction;

typedef struct q4_pending {
	int64_t date_time, price;
} q4_pending;

/* The auction's winning price rose from `old` (-1: none) to a->best. */
static int q4_emit(weir_ctx *ctx, int64_t auction, const q4_auction *a, int64_t old,
		   weir_out *out)
{
	int rc = weir_state_set(ctx, 0, a);
	if (rc)
		return rc;
	weir_out_i64(out, 0, auction);
	weir_out_i64(out, 1, a->category);
	weir_out_i64(out, 2, a->best);
	weir_out_i64(out, 3, old);
	weir_out_emit(out);
	return 0;
}

static int q4_winning(void *arg, weir_ctx *ctx, int input, const weir_batch *in, uint32_t row,
		      weir_out *out)
{
	(void)arg;
	if (input == 0) {
		int64_t id = weir_col_i64(in, 0)[row];
		q4_auction a = { .date_time = weir_col_i64(in, 1)[row],
				 .expires = weir_col_i64(in, 2)[row],
				 .category = weir_col_i64(in, 3)[row],
				 .best = -1 };
		size_t n = weir_state_list_len(ctx, 1);
		for (size_t i = 0; i < n; i++) {
			size_t len;
			const q4_pending *p = weir_state_list_get(ctx, 1, i, &len);
			if (p->date_time >= a.date_time && p->date_time <= a.expires &&
			    p->price > a.best)
				a.best = p->price;
		}
		int rc = n ? weir_state_clear(ctx, 1) : 0;
		if (rc)
			return rc;
		if (a.best < 0)
			return weir_state_set(ctx, 0, &a);
		return q4_emit(ctx, id, &a, -1, out);
	}
	q4_pending b = { weir_col_i64(in, 2)[row],
			 weir_col_i64(in, 1)[row] };
	const q4_auction *cur = weir_state_get(ctx, 0);
	if (!cur)
		return weir_state_add(ctx, 1, &b, sizeof(b));
	if (b.date_time < cur->date_time || b.date_time > cur->expires || b.price <= cur->best)
		return 0;
	q4_auction a = *cur;
	a.best = b.price;
	return q4_emit(ctx, weir_col_i64(in, 0)[row], &a, cur->best, out);
}

/* Stage 2, per category: the sum and count of its auctions' winning
 * prices, moved by each change (a new winner adds an auction, a higher
 * price replaces the old one in the sum). */
typedef struct q4_sum {
	int64_t sum, count;
} q4_sum;

static int q4_avg(void *arg, weir_ctx *ctx, int input, const weir_batch *in, uint32_t row,
		  weir_out *out)
{
	(void)arg, (void)input;
	int64_t price = weir_col_i64(in, 2)[row], old = weir_col_i64(in, 3)[row];
	const q4_sum *cur = weir_state_get(ctx, 0);
	q4_sum s = cur ? *cur : (q4_sum){ 0, 0 };
	if (old < 0) {
		s.sum += price;
		s.count++;
	} else {
		s.sum += price - old;
	}
	int rc = weir_state_set(ctx, 0, &s);
	if (rc)
		return rc;
	weir_out_i64(out, 0, weir_col_i64(in, 1)[row]);
	weir_out_f64(out, 1, (double)s.sum / (double)s.count);
	weir_out_emit(out);
	return 0;
}

static int q4(nx_job *j)
{
	static const weir_state_desc winning[] = {
		{ .name = "auction", .kind = WEIR_STATE_VALUE, .size = sizeof(q4_auction) },
		{ .name = "early-bids", .kind = WEIR_STATE_LIST },
	};
	weir_process_fns wf = { .process = q4_winning, .states = winning, .nstates = 2 };
	weir_stream *a = weir_project(j->auction, "auction-columns",
				      "id,date_time,expires,category");
	weir_stream *b = weir_project(j->bid, "bid-columns", "auction,price,date_time");
	weir_stream *best = weir_connect_process(weir_key_by(a, "id"), weir_key_by(b, "auction"),
						 "winning-price",
						 schema(j, "auction:i64,category:i64,price:i64,old:i64"),
						 &wf);
	static const weir_state_desc states[] = {
		{ .name = "sum", .kind = WEIR_STATE_VALUE, .size = sizeof(q4_sum) },
	};
	weir_process_fns fns = { .process = q4_avg, .states = states, .nstates = 1 };
	weir_stream *avg = weir_process(weir_key_by(best, "category"), "average",
					schema(j, "category:i64,average:f64"), &fns);
	nx_sink(j, avg, "sink");
	return 0;
}

/* ---- q5: hot items -------------------------------------------------------------- */

/* All rows of one (window_end) group of stage 1's counts: emit the
 * auctions with the most bids. */
static int q5_hot(void *arg, weir_value key, int64_t start, int64_t end, weir_rows *rows,
		  weir_out *out)
{
	(void)arg, (void)key, (void)start, (void)end;
	weir_value cells[8];
	int64_t ts, best = -1;
	int64_t *hot = NULL, ws = 0, we = 0;
	size_t n = 0, cap = 0;
	/* One pass: the auctions tied at the highest count so far (per
	 * firing, not per record, so a growing array is fine). */
	while (weir_rows_next(rows, cells, &ts)) {
		int64_t c = cells[3].i64;
		if (c < best)
			continue;
		if (c > best) {
			best = c;
			n = 0;
			ws = cells[1].i64;
			we = cells[2].i64;
		}
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			int64_t *h = realloc(hot, nc * sizeof(*h));
			if (!h) {
				free(hot);
				return -ENOMEM;
			}
			hot = h;
			cap = nc;
		}
		hot[n++] = cells[0].i64;
	}
	for (size_t i = 0; i < n; i++) {
		weir_out_i64(out, 0, hot[i]);
		weir_out_i64(out, 1, best);
		weir_out_i64(out, 2, ws);
		weir_out_i64(out, 3, we);
		weir_out_emit(out);
	}
	free(hot);
	return 0;
}

static int q5(nx_job *j)
{
	weir_window_spec sliding = { .kind = WEIR_WIN_SLIDING, .size = 10000, .slide = 2000 };
	/* Only the key crosses the exchange. */
	weir_stream *auctions = weir_project(j->bid, "auction", "auction");
	weir_stream *counts = weir_window_stats(weir_key_by(auctions, "auction"), "bids",
						    &sliding, NULL);
	/* Each stage-1 result has event time window_end - 1, so the 2 s
	 * tumbling windows of stage 2 hold exactly one sliding window's
	 * counts. */
	weir_window_spec step = { .kind = WEIR_WIN_TUMBLING, .size = 2000 };
	weir_stream *hot = weir_window_process(weir_key_by(counts, "window_end"), "hottest",
					       &step,
					       schema(j, "auction:i64,count:i64,window_start:ts,"
							 "window_end:ts"), q5_hot, NULL);
	nx_sink(j, hot, "sink");
	return 0;
}

/* ---- q7: highest bid per window -------------------------------------------------- */

/* Per tumbling window (the key): the highest price so far (value state)
 * and the bids with it (list state, encoded rows), emitted by a timer at
 * the window's end.  Only ties of the maximum are kept, so the state is a
 * few rows per window, not the window's bids. */
#define Q7_WINDOW 10000

static int q7_window(void *arg, const weir_batch *in, weir_batch *out)
{
	(void)arg;
	const int64_t *dt = weir_col_i64(in, WEIR_BID_DATE_TIME);
	int64_t *w = weir_col_i64(out, 7);
	for (uint32_t r = 0; r < in->rows; r++)
		w[r] = dt[r] - ((dt[r] % Q7_WINDOW) + Q7_WINDOW) % Q7_WINDOW;
	return copy_bid(in, out);
}

typedef struct q7_row {
	int64_t auction, price, bidder, date_time;
	uint32_t extra_len;
	char extra[];
} q7_row;

static int q7_process(void *arg, weir_ctx *ctx, int input, const weir_batch *in, uint32_t row,
		      weir_out *out)
{
	(void)arg, (void)input, (void)out;
	int64_t price = weir_col_i64(in, WEIR_BID_PRICE)[row];
	const int64_t *best = weir_state_get(ctx, 0);
	if (best && price < *best)
		return 0;
	int rc = 0;
	if (!best || price > *best) {
		if ((rc = weir_state_set(ctx, 0, &price)) || (rc = weir_state_clear(ctx, 1)))
			return rc;
		/* one timer per window: at its last millisecond */
		rc = weir_timer_register(ctx, WEIR_EVENT_TIME,
					 weir_col_i64(in, 7)[row] + Q7_WINDOW - 1);
		if (rc)
			return rc;
	}
	uint32_t len;
	const char *extra = weir_batch_str(in, WEIR_BID_EXTRA, row, &len);
	char buf[sizeof(q7_row) + 1024];
	q7_row *q = (q7_row *)buf;
	if (len > 1024)
		len = 1024; /* extra is at most ~120 bytes by the rules */
	q->auction = weir_col_i64(in, WEIR_BID_AUCTION)[row];
	q->price = price;
	q->bidder = weir_col_i64(in, WEIR_BID_BIDDER)[row];
	q->date_time = weir_col_i64(in, WEIR_BID_DATE_TIME)[row];
	q->extra_len = len;
	memcpy(q->extra, extra, len);
	return weir_state_add(ctx, 1, q, sizeof(*q) + len);
}

static int q7_fire(void *arg, weir_ctx *ctx, weir_time_domain d, int64_t ts, weir_out *out)
{
	(void)arg, (void)d;
	size_t n = weir_state_list_len(ctx, 1);
	for (size_t i = 0; i < n; i++) {
		size_t len;
		const q7_row *q = weir_state_list_get(ctx, 1, i, &len);
		weir_out_i64(out, 0, q->auction);
		weir_out_i64(out, 1, q->price);
		weir_out_i64(out, 2, q->bidder);
		weir_out_i64(out, 3, q->date_time);
		weir_out_str(out, 4, q->extra, q->extra_len);
		weir_out_i64(out, 5, ts - Q7_WINDOW + 1);
		weir_out_ts(out, ts);
		weir_out_emit(out);
	}
	int rc = weir_state_clear(ctx, 0);
	return rc ? rc : weir_state_clear(ctx, 1);
}

static int q7(nx_job *j)
{
	weir_stream *w = weir_map(j->bid, "window-of",
				  schema(j, "auction:i64,bidder:i64,price:i64,channel:str,url:str,"
					    "date_time:ts,extra:str,window:i64"), q7_window, NULL);
	static const weir_state_desc states[] = {
		{ .name = "best", .kind = WEIR_STATE_VALUE, .size = sizeof(int64_t) },
		{ .name = "bids", .kind = WEIR_STATE_LIST },
	};
	weir_process_fns fns = { .process = q7_process, .on_timer = q7_fire, .states = states,
				 .nstates = 2 };
	weir_stream *s = weir_process(weir_key_by(w, "window"), "highest-bid",
				      schema(j, "auction:i64,price:i64,bidder:i64,date_time:ts,"
						"extra:str,window_start:ts"), &fns);
	nx_sink(j, s, "sink");
	return 0;
}

/* ---- q8: new users ------------------------------------------------------------- */

/* a: person, b: the seller's count of auctions in the window. */
static int q8_pair(void *arg, const weir_value *a, int64_t ts_a, const weir_value *b,
		   int64_t ts_b, weir_out *out)
{
	(void)arg, (void)ts_a, (void)ts_b;
	weir_out_i64(out, 0, a[0].i64); /* (id, name) */
	weir_out_str(out, 1, a[1].str.ptr, a[1].str.len);
	weir_out_i64(out, 2, b[1].i64); /* the window's start */
	weir_out_emit(out);
	return 0;
}

static int q8(nx_job *j)
{
	weir_window_spec w = { .kind = WEIR_WIN_TUMBLING, .size = 10000 };
	/* One row per (seller, window) first, so a person with several
	 * auctions in a window is listed once. */
	weir_stream *sellers = weir_window_stats(
		weir_key_by(weir_project(j->auction, "seller", "seller"), "seller"), "sellers", &w,
		NULL);
	weir_stream *people = weir_project(j->person, "person-columns", "id,name");
	weir_stream *s = weir_window_join(weir_key_by(people, "id"),
					  weir_key_by(sellers, "seller"), "q8", &w,
					  schema(j, "id:i64,name:str,window_start:ts"), q8_pair, NULL);
	nx_sink(j, s, "sink");
	return 0;
}

/* ---- q11: user sessions ---------------------------------------------------------- */

static int q11(nx_job *j)
{
	weir_window_spec w = { .kind = WEIR_WIN_SESSION, .gap = 10000 };
	weir_stream *bidders = weir_project(j->bid, "bidder", "bidder");
	weir_stream *s = weir_window_stats(weir_key_by(bidders, "bidder"), "sessions", &w,
					       NULL);
	nx_sink(j, weir_project(s, "columns", "bidder,count,window_start,window_end"), "sink");
	return 0;
}

/* ---- q18, q19: top-N ------------------------------------------------------------- */

static int q18_pair(void *arg, const weir_batch *in, weir_batch *out)
{
	(void)arg;
	int64_t *pair = weir_col_i64(out, 7);
	const int64_t *bidder = weir_col_i64(in, WEIR_BID_BIDDER);
	const int64_t *auction = weir_col_i64(in, WEIR_BID_AUCTION);
	for (uint32_t r = 0; r < in->rows; r++)
		pair[r] = (int64_t)(((uint64_t)bidder[r] << 32) ^ (uint64_t)(uint32_t)auction[r]);
	return copy_bid(in, out);
}

static int q18(nx_job *j)
{
	weir_stream *p = weir_map(j->bid, "pair",
				  schema(j, "auction:i64,bidder:i64,price:i64,channel:str,url:str,"
					    "date_time:ts,extra:str,pair:i64"), q18_pair, NULL);
	weir_stream *s = weir_topn(weir_key_by(p, "pair"), "last-bid", 1, "date_time", true);
	nx_sink(j, s, "sink");
	return 0;
}

static int q19(nx_job *j)
{
	weir_stream *s = weir_topn(weir_key_by(j->bid, "auction"), "top-bids", 10, "price", true);
	nx_sink(j, s, "sink");
	return 0;
}

/* ---- the job ------------------------------------------------------------------------ */

int weir_job(weir_env *env, int argc, char **argv)
{
	char err[256];
	weir_nexmark_conf conf = { 0 };
	nx_job j = { .env = env };

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout, argv[0]);
			exit(0);
		}
	if (weir_nexmark_options(&argc, argv, &conf, err, sizeof(err)) < 0) {
		fprintf(stderr, QNAME ": %s\n", err);
		usage(stderr, argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--output") && i + 1 < argc) {
			j.output = argv[++i];
		} else if (!strncmp(argv[i], "--output=", 9)) {
			j.output = argv[i] + 9;
		} else {
			fprintf(stderr, QNAME ": unexpected argument '%s'\n", argv[i]);
			usage(stderr, argv[0]);
			return 2;
		}
	}
	if (!j.output || !j.output[0]) {
		fprintf(stderr, QNAME ": --output DIR or --output discard is required\n");
		usage(stderr, argv[0]);
		return 2;
	}
	/* Only the streams the query reads are generated. */
	int q = NEXMARK_QUERY;
	bool people = q == 3 || q == 8, auctions = q == 3 || q == 4 || q == 8,
	     bids = !(q == 3 || q == 8);
	weir_stream *src = weir_source_nexmark(env, "nexmark", &conf);
	if (!src)
		return 1;
	j.person = people ? src : NULL;
	j.auction = auctions ? weir_nexmark_stream(src, WEIR_NEXMARK_AUCTION) : NULL;
	j.bid = bids ? weir_nexmark_stream(src, WEIR_NEXMARK_BID) : NULL;
	switch (q) {
	case 0: q0(&j); break;
	case 1: q1(&j); break;
	case 2: q2(&j); break;
	case 3: q3(&j); break;
	case 4: q4(&j); break;
	case 5: q5(&j); break;
	case 7: q7(&j); break;
	case 8: q8(&j); break;
	case 11: q11(&j); break;
	case 14: q14(&j); break;
	case 18: q18(&j); break;
	case 19: q19(&j); break;
	default:
		fprintf(stderr, QNAME ": no such query\n");
		return 2;
	}
	return weir_env_error(env) ? 1 : 0;
}
