/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Nexmark generator (operators/nexmark.c) against the rules of
 * ../shared/NEXMARK.md: single events (determinism, proportions, ids, hot
 * sellers/bidders/auctions, prices, strings, extra sizes, event time), the
 * out-of-order permutation, the option parser; the source on hand-built
 * tasks (snapshot, restore with rescaling, watermarks, unconsumed streams,
 * refused foreign checkpoints); and jobs on the real runtime: the streams
 * of runs at parallelism 1, 2 and 4 and two batch sizes carry exactly the
 * events [0, N) (compared with weir_nexmark_event), and a checkpointed run
 * cancelled and resumed, or stopped with a savepoint and restored at
 * another parallelism, commits each event exactly once (compared with the
 * CSV dump).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weir/nexmark.h>

#include "ops.h"
#include "reactor.h"
#include "testenv.h"

#define BASE WEIR_NEXMARK_BASE_TIME_MS

static weir_nexmark_row ev(const weir_nexmark_conf *c, uint64_t id)
{
	weir_nexmark_row r;
	cr_assert_eq(weir_nexmark_event(c, id, &r), 0);
	return r;
}

/* ---- single events ----------------------------------------------------------------------- */

Test(nexmark_event, is_a_pure_function_of_seed_and_id)
{
	weir_nexmark_conf a = { .seed = 7 }, b = { .seed = 7, .events = 10, .emit_rate = 5 },
			  other = { .seed = 8 };
	int differ = 0;
	/* any order, any bound, any emit rate: the same event */
	for (int64_t id = 999; id >= 0; id -= 3) {
		weir_nexmark_row x = ev(&a, (uint64_t)id), y = ev(&b, (uint64_t)id),
				 z = ev(&other, (uint64_t)id);
		cr_assert_eq(memcmp(&x, &y, sizeof(x)), 0, "id %ld", (long)id);
		differ += memcmp(&x, &z, sizeof(x)) != 0;
	}
	cr_assert_gt(differ, 300, "another seed gives other events");
	weir_nexmark_conf bad = { .ooo_group = 953 };
	weir_nexmark_row r;
	cr_assert_eq(weir_nexmark_event(&bad, 0, &r), -EINVAL);
	cr_assert_eq(weir_nexmark_event(NULL, 0, &r), -EINVAL);
}

Test(nexmark_event, proportions_and_ids)
{
	weir_nexmark_conf c = { .seed = 1 };
	long n[3] = { 0 };
	int64_t next_person = 1000, next_auction = 1000;
	for (uint64_t id = 0; id < 50000; id++) {
		weir_nexmark_row r = ev(&c, id);
		cr_assert_eq(r.id, id);
		n[r.kind]++;
		uint64_t off = id % 50;
		cr_assert_eq(r.kind, off == 0 ? WEIR_NEXMARK_PERSON
				     : off < 4 ? WEIR_NEXMARK_AUCTION : WEIR_NEXMARK_BID);
		/* new people and auctions get consecutive ids from 1000 */
		if (r.kind == WEIR_NEXMARK_PERSON)
			cr_assert_eq(r.person.id, next_person++);
		if (r.kind == WEIR_NEXMARK_AUCTION)
			cr_assert_eq(r.auction.id, next_auction++);
	}
	cr_assert_eq(n[0], 1000);
	cr_assert_eq(n[1], 3000);
	cr_assert_eq(n[2], 46000);
}

/* Hot choices at their rates, other choices in their ranges. */
Test(nexmark_event, sellers_bidders_and_auctions)
{
	weir_nexmark_conf c = { .seed = 3 };
	long auctions = 0, hot_sellers = 0, bids = 0, hot_bidders = 0, hot_auctions = 0;
	long categories[5] = { 0 };
	for (uint64_t id = 0; id < 400000; id++) {
		if (id % 50 == 0)
			continue;
		weir_nexmark_row r = ev(&c, id);
		uint64_t epoch = id / 50;
		uint64_t newest_person = epoch, n_people = epoch + 1;
		uint64_t active = n_people < 1000 ? n_people : 1000;
		if (r.kind == WEIR_NEXMARK_AUCTION) {
			auctions++;
			int64_t s = r.auction.seller - 1000;
			if (s == (int64_t)(newest_person / 100 * 100))
				hot_sellers++;
			else
				cr_assert(s >= (int64_t)(n_people - active) &&
					  s < (int64_t)(n_people + 10), "seller %ld at %lu", (long)s,
					  (unsigned long)id);
			cr_assert(r.auction.category >= 10 && r.auction.category < 15);
			categories[r.auction.category - 10]++;
			cr_assert_gt(r.auction.reserve, r.auction.initial_bid);
			continue;
		}
		bids++;
		int64_t b = r.bid.bidder - 1000, a = r.bid.auction - 1000;
		int64_t newest_auction = (int64_t)epoch * 3 + 2;
		if (b == (int64_t)(newest_person / 100 * 100 + 1))
			hot_bidders++;
		else
			cr_assert(b >= (int64_t)(n_people - active) && b < (int64_t)(n_people + 10));
		if (a == newest_auction / 100 * 100)
			hot_auctions++;
		else
			cr_assert(a >= (newest_auction > 100 ? newest_auction - 100 : 0) &&
				  a <= newest_auction + 10, "auction %ld, newest %ld", (long)a,
				  (long)newest_auction);
	}
	/* 3/4, 3/4 and 1/2, plus what the uniform picks add by chance (< 1%);
	 * bounds of about 5 standard deviations */
	double fs = (double)hot_sellers / auctions, fb = (double)hot_bidders / bids,
	       fa = (double)hot_auctions / bids;
	cr_assert(fs > 0.735 && fs < 0.77, "hot sellers %.4f", fs);
	cr_assert(fb > 0.745 && fb < 0.76, "hot bidders %.4f", fb);
	cr_assert(fa > 0.495 && fa < 0.515, "hot auctions %.4f", fa);
	for (int k = 0; k < 5; k++)
		cr_assert(categories[k] > auctions / 5 * 0.93 && categories[k] < auctions / 5 * 1.07,
			  "category %d: %ld of %ld", 10 + k, categories[k], auctions);
}

Test(nexmark_event, prices_are_log_uniform_from_1_to_1M_dollars)
{
	weir_nexmark_conf c = { .seed = 11 };
	long deciles[10] = { 0 }, n = 0;
	for (uint64_t id = 4; id < 300000; id++) {
		if (id % 50 < 4)
			continue;
		int64_t p = ev(&c, id).bid.price;
		cr_assert(p >= 100 && p <= 100000000, "price %ld", (long)p);
		double u = log10((double)p / 100) / 6;
		int d = (int)(u * 10);
		deciles[d > 9 ? 9 : d]++;
		n++;
	}
	for (int d = 0; d < 10; d++)
		cr_assert(deciles[d] > n / 10 * 0.97 && deciles[d] < n / 10 * 1.03,
			  "decile %d: %ld of %ld", d, deciles[d], n);
}

static bool in_list(const char *s, const char *const *l, int n)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(s, l[i]))
			return true;
	return false;
}

/* A random string: letters and spaces, no space at either end. */
static void rand_text(const char *s, size_t max, long *spaces, long *chars)
{
	size_t n = strlen(s);
	cr_assert_leq(n, max, "'%s' longer than %zu", s, max);
	if (n)
		cr_assert(s[0] != ' ' && s[n - 1] != ' ', "'%s' not trimmed", s);
	for (size_t i = 0; i < n; i++) {
		cr_assert(s[i] == ' ' || (s[i] >= 'a' && s[i] <= 'z'), "'%s'", s);
		*spaces += s[i] == ' ';
	}
	*chars += (long)n;
}

Test(nexmark_event, strings_and_sizes)
{
	static const char *const first[] = { "Peter", "Paul", "Luke", "John", "Saul", "Vicky",
					     "Kate", "Julie", "Sarah", "Deiter", "Walter" };
	static const char *const last[] = { "Shultz", "Abrams", "Spencer", "White", "Bartels",
					    "Walton", "Smith", "Jones", "Noris" };
	static const char *const cities[] = { "Phoenix", "Los Angeles", "San Francisco",
					      "Boise", "Portland", "Bend", "Redmond", "Seattle",
					      "Kent", "Cheyenne" };
	static const char *const states[] = { "AZ", "CA", "ID", "OR", "WA", "WY" };
	static const char *const hot[] = { "Google", "Facebook", "Baidu", "Apple" };
	weir_nexmark_conf c = { .seed = 5 };
	long spaces = 0, chars = 0;
	double size[3] = { 0 };
	long count[3] = { 0 }, hot_bids = 0, item_len = 0, desc_len = 0;
	long with_id = 0, channels_seen = 0;
	static char url_of[10000][80];
	memset(url_of, 0, sizeof(url_of));

	for (uint64_t id = 0; id < 250000; id++) {
		weir_nexmark_row r = ev(&c, id);
		count[r.kind]++;
		if (r.kind == WEIR_NEXMARK_PERSON) {
			weir_nexmark_person *p = &r.person;
			char f[16], l[16], a[16], b[16];
			cr_assert_eq(sscanf(p->name, "%15s %15s", f, l), 2);
			cr_assert(in_list(f, first, 11) && in_list(l, last, 9), "%s", p->name);
			cr_assert_eq(strlen(p->name), strlen(f) + 1 + strlen(l));
			const char *at = strchr(p->email_address, '@');
			size_t el = strlen(p->email_address);
			cr_assert(at && el >= 5 && !strcmp(p->email_address + el - 4, ".com"), "%s",
				  p->email_address);
			snprintf(a, sizeof(a), "%.*s", (int)(at - p->email_address), p->email_address);
			snprintf(b, sizeof(b), "%.*s", (int)(el - 4 - (size_t)(at + 1 - p->email_address)),
				 at + 1);
			rand_text(a, 6, &spaces, &chars);
			rand_text(b, 4, &spaces, &chars);
			cr_assert_eq(strlen(p->credit_card), 19);
			for (int i = 0; i < 19; i++)
				cr_assert(i % 5 == 4 ? p->credit_card[i] == ' '
						     : (p->credit_card[i] >= '0' && p->credit_card[i] <= '9'),
					  "%s", p->credit_card);
			cr_assert(in_list(p->city, cities, 10) && in_list(p->state, states, 6));
			rand_text(p->extra, 181, &spaces, &chars);
			size[0] += 8 + strlen(p->name) + el + 19 + strlen(p->city) + 2 +
				   strlen(p->extra);
		} else if (r.kind == WEIR_NEXMARK_AUCTION) {
			weir_nexmark_auction *a = &r.auction;
			rand_text(a->item_name, 19, &spaces, &chars);
			rand_text(a->description, 99, &spaces, &chars);
			rand_text(a->extra, 541, &spaces, &chars);
			item_len += (long)strlen(a->item_name);
			desc_len += (long)strlen(a->description);
			size[1] += strlen(a->item_name) + strlen(a->description) + 48 +
				   strlen(a->extra);
		} else {
			weir_nexmark_bid *b = &r.bid;
			rand_text(b->extra, 80, &spaces, &chars);
			size[2] += 32 + strlen(b->extra);
			cr_assert_eq(strncmp(b->url, "https://www.nexmark.com/", 24), 0, "%s", b->url);
			/* three random strings (maybe empty), each followed by '/' */
			const char *q = b->url + 24;
			for (int i = 0; i < 3; i++) {
				char seg[8];
				const char *slash = strchr(q, '/');
				cr_assert(slash && slash - q <= 4, "%s", b->url);
				snprintf(seg, sizeof(seg), "%.*s", (int)(slash - q), q);
				rand_text(seg, 4, &spaces, &chars);
				q = slash + 1;
			}
			cr_assert_eq(strncmp(q, "item.htm?query=1", 16), 0, "%s", b->url);
			int n = (int)(q + 16 - (b->url + 24));
			const char *rest = b->url + 24 + n;
			if (in_list(b->channel, hot, 4)) {
				hot_bids++;
				cr_assert_str_empty(rest, "%s", b->url);
				continue;
			}
			int ch = -1;
			cr_assert_eq(sscanf(b->channel, "channel-%d", &ch), 1, "%s", b->channel);
			cr_assert(ch >= 0 && ch < 10000);
			/* a channel's url is fixed for the run */
			if (url_of[ch][0]) {
				cr_assert_str_eq(url_of[ch], b->url);
			} else {
				snprintf(url_of[ch], sizeof(url_of[ch]), "%s", b->url);
				channels_seen++;
				if (*rest) {
					unsigned long v;
					cr_assert_eq(sscanf(rest, "&channel_id=%lu", &v), 1, "%s", b->url);
					/* the scrambling is reversible: bits reversed */
					uint32_t x = (uint32_t)v, back = 0;
					for (int i = 0; i < 32; i++)
						back |= ((x >> i) & 1u) << (31 - i);
					cr_assert_eq(back, (uint32_t)ch);
					with_id++;
				}
			}
		}
	}
	/* spaces 1/13 of the characters (trimming takes a little off) */
	double fs = (double)spaces / chars;
	cr_assert(fs > 0.068 && fs < 0.0775, "spaces %.4f", fs);
	/* lengths 3 + uniform [0, m - 3), trimmed: means about 10.8 and 50.8 */
	cr_assert(fabs((double)item_len / count[1] - 10.8) < 0.3, "%f", (double)item_len / count[1]);
	cr_assert(fabs((double)desc_len / count[1] - 50.8) < 0.8, "%f", (double)desc_len / count[1]);
	cr_assert(fabs(size[0] / count[0] - 200) < 3, "person %f", size[0] / count[0]);
	cr_assert(fabs(size[1] / count[1] - 500) < 3, "auction %f", size[1] / count[1]);
	cr_assert(fabs(size[2] / count[2] - 100) < 2, "bid %f", size[2] / count[2]);
	double fh = (double)hot_bids / count[2], fid = (double)with_id / channels_seen;
	cr_assert(fh > 0.49 && fh < 0.51, "hot channels %.4f", fh);
	cr_assert(channels_seen > 9900, "%ld channels", channels_seen);
	cr_assert(fid > 0.88 && fid < 0.92, "channel_id on %.4f", fid);
}

Test(nexmark_event, event_time_and_expiry)
{
	static const uint64_t rates[] = { 1, 7, 1000, 3333, 10000000 };
	for (size_t k = 0; k < ARRAY_SIZE(rates); k++) {
		weir_nexmark_conf c = { .seed = 2, .event_rate = rates[k] };
		for (uint64_t id = 0; id < 20000; id += 1 + id / 7) {
			weir_nexmark_row r = ev(&c, id);
			int64_t want = BASE + (int64_t)(id * 1000 / rates[k]);
			int64_t dt = r.kind == WEIR_NEXMARK_PERSON ? r.person.date_time
				     : r.kind == WEIR_NEXMARK_AUCTION ? r.auction.date_time
								       : r.bid.date_time;
			cr_assert_eq(dt, want, "rate %lu id %lu", (unsigned long)rates[k],
				     (unsigned long)id);
			if (r.kind == WEIR_NEXMARK_AUCTION) {
				int64_t h = (int64_t)((id + 1666) * 1000 / rates[k]) -
					    (int64_t)(id * 1000 / rates[k]);
				cr_assert(r.auction.expires >= dt + 1 &&
					  r.auction.expires <= dt + 1 + (h > 0 ? 2 * h - 1 : 0),
					  "expires %ld, date_time %ld, h %ld", (long)r.auction.expires,
					  (long)dt, (long)h);
			}
		}
	}
	weir_nexmark_conf b = { .base_time_ms = 5, .event_rate = 1000 };
	cr_assert_eq(ev(&b, 123).bid.date_time, 128);
}

/* ---- the emission order -------------------------------------------------------------------- */

Test(nexmark_order, groups_are_permutations_and_bounded_runs_are_prefixes)
{
	static const uint32_t groups[] = { 1, 2, 7, 100, 952, 954, 1000, 4096 };
	for (size_t k = 0; k < ARRAY_SIZE(groups); k++) {
		uint32_t g = groups[k];
		weir_nexmark_conf c = { .ooo_group = g };
		char *seen = calloc(3 * g, 1);
		for (uint64_t p = 0; p < 3 * (uint64_t)g; p++) {
			uint64_t id = weir_nexmark_id_at(&c, p);
			cr_assert_eq(id / g, p / g, "g %u: position %lu left its group", g,
				     (unsigned long)p);
			cr_assert(!seen[id], "g %u: id %lu twice", g, (unsigned long)id);
			seen[id] = 1;
			if (g > 1)
				cr_assert_eq(id, p / g * g + p * 953 % g);
		}
		free(seen);
		/* a bounded run: positions up to N rounded up, exactly ids [0, N) */
		for (uint64_t n = 1; n < 3 * (uint64_t)g + 3; n += 1 + n / 3) {
			weir_nexmark_conf b = { .ooo_group = g, .events = n };
			uint64_t end = (n + g - 1) / g * g, got = 0, prev_full = 0;
			char *s = calloc(n, 1);
			for (uint64_t p = 0; p < end; p++) {
				uint64_t id = weir_nexmark_id_at(&b, p);
				uint64_t full = weir_nexmark_id_at(&c, p);
				if (id == UINT64_MAX) {
					cr_assert_geq(full, n);
					continue;
				}
				cr_assert_eq(id, full);
				cr_assert(id < n && !s[id]);
				s[id] = 1;
				got++;
				prev_full = full;
			}
			(void)prev_full;
			cr_assert_eq(got, n, "g %u n %lu", g, (unsigned long)n);
			free(s);
		}
	}
}

/* ---- options ----------------------------------------------------------------------------------- */

static int parse(const char *line, weir_nexmark_conf *c, char *err, char **out, int *argc)
{
	static char buf[1024];
	static char *argv[64];
	int n = 0;
	snprintf(buf, sizeof(buf), "%s", line);
	for (char *t = strtok(buf, " "); t && n < 63; t = strtok(NULL, " "))
		argv[n++] = t;
	argv[n] = NULL;
	*argc = n;
	int rc = weir_nexmark_options(argc, argv, c, err, 256);
	for (int i = 0; i <= *argc; i++)
		out[i] = argv[i];
	return rc;
}

Test(nexmark_options, parses_and_removes_the_shared_options)
{
	weir_nexmark_conf c = { .seed = 9, .emit_rate = 3 };
	char err[256], *out[64];
	int argc;
	cr_assert_eq(parse("job.so --output x --events 100 --event-rate=250 --ooo-group 7 "
			   "--emit-rate 0.5 -v --seed=18446744073709551615 last", &c, err, out, &argc),
		     0, "%s", err);
	cr_assert_eq(c.events, 100);
	cr_assert_eq(c.event_rate, 250);
	cr_assert_eq(c.ooo_group, 7);
	cr_assert_eq(c.emit_rate, 0.5);
	cr_assert_eq(c.seed, UINT64_MAX);
	cr_assert_eq(argc, 5);
	cr_assert_str_eq(out[0], "job.so");
	cr_assert_str_eq(out[1], "--output");
	cr_assert_str_eq(out[2], "x");
	cr_assert_str_eq(out[3], "-v");
	cr_assert_str_eq(out[4], "last");
	cr_assert_null(out[5]);
	/* options not given keep their value; "--" ends the scan */
	weir_nexmark_conf d = { .seed = 4, .events = 8 };
	cr_assert_eq(parse("job.so --events 5 -- --seed 3", &d, err, out, &argc), 0);
	cr_assert_eq(d.events, 5);
	cr_assert_eq(d.seed, 4);
	cr_assert_eq(argc, 4);
	cr_assert_str_eq(out[1], "--");
	cr_assert_str_eq(out[2], "--seed");
	/* an option that only starts like one of ours is not ours */
	cr_assert_eq(parse("job.so --eventsx 5 --seeds 1", &d, err, out, &argc), 0);
	cr_assert_eq(argc, 5);
}

Test(nexmark_options, errors_name_the_option_and_the_value)
{
	static const struct {
		const char *line, *want;
	} bad[] = {
		{ "j --events", "--events: missing value" },
		{ "j --events abc", "--events: 'abc'" },
		{ "j --events -1", "--events: '-1'" },
		{ "j --events 99999999999999999999", "--events: '99999999999999999999'" },
		{ "j --event-rate 0", "--event-rate: '0'" },
		{ "j --event-rate=1.5", "--event-rate: '1.5'" },
		{ "j --emit-rate -3", "--emit-rate: '-3'" },
		{ "j --emit-rate inf", "--emit-rate: 'inf'" },
		{ "j --emit-rate nan", "--emit-rate: 'nan'" },
		{ "j --emit-rate 5x", "--emit-rate: '5x'" },
		{ "j --ooo-group 0", "--ooo-group: '0'" },
		{ "j --ooo-group 1906", "--ooo-group: '1906' is a multiple of 953" },
		{ "j --ooo-group 4294967296", "--ooo-group: '4294967296'" },
		{ "j --seed=", "--seed: ''" },
		{ "j --seed 0x10", "--seed: '0x10'" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		weir_nexmark_conf c = { .events = 77 };
		char err[256], *out[64];
		int argc;
		cr_assert_eq(parse(bad[i].line, &c, err, out, &argc), -EINVAL, "%s", bad[i].line);
		cr_assert(strstr(err, bad[i].want), "'%s': %s", bad[i].line, err);
		cr_assert_eq(c.events, 77, "conf unchanged on error");
	}
}

/* ---- the source on hand-built tasks ------------------------------------------------------------ */

#define ROWS 64

static pool_set *pools;

static void setup(void)
{
	testenv_mkdir();
	pools = pool_set_new(1, 128 * 1024, ROWS, 1 << 20);
	pool_bind_thread(pools, 0);
}

static void teardown(void)
{
	pool_set_free(pools);
	testenv_rmdir();
}

/* What the three capture tasks saw: event ids (event rate 1000, so
 * date_time - BASE is the id), and whether each row equals
 * weir_nexmark_event's. */
typedef struct captured {
	uint64_t *ids;
	long n, cap;
	long rows[3];
	int64_t max_ts;
	weir_nexmark_conf conf;
	bool check_rows;
} captured;

static captured cap;

static void cap_reset(const weir_nexmark_conf *c)
{
	free(cap.ids);
	memset(&cap, 0, sizeof(cap));
	cap.conf = *c;
	cap.max_ts = INT64_MIN;
}

static int kind_of_schema(const weir_schema *s)
{
	return s->ncols == 8 ? 0 : s->ncols == 10 ? 1 : 2;
}

static bool str_is(const weir_batch *b, int c, uint32_t r, const char *want)
{
	uint32_t len;
	const char *p = weir_batch_str(b, c, r, &len);
	return len == strlen(want) && !memcmp(p, want, len);
}

/* Row r of b (of kind k) equals event id. */
static bool row_equals(const weir_batch *b, int k, uint32_t r, uint64_t id)
{
	weir_nexmark_row e = ev(&cap.conf, id);
	if ((int)e.kind != k)
		return false;
	const int64_t *ts = b->ts;
	if (k == 0) {
		const weir_nexmark_person *p = &e.person;
		return weir_col_i64(b, 0)[r] == p->id && str_is(b, 1, r, p->name) &&
		       str_is(b, 2, r, p->email_address) && str_is(b, 3, r, p->credit_card) &&
		       str_is(b, 4, r, p->city) && str_is(b, 5, r, p->state) &&
		       weir_col_i64(b, 6)[r] == p->date_time && ts[r] == p->date_time &&
		       str_is(b, 7, r, p->extra);
	}
	if (k == 1) {
		const weir_nexmark_auction *a = &e.auction;
		return weir_col_i64(b, 0)[r] == a->id && str_is(b, 1, r, a->item_name) &&
		       str_is(b, 2, r, a->description) && weir_col_i64(b, 3)[r] == a->initial_bid &&
		       weir_col_i64(b, 4)[r] == a->reserve && weir_col_i64(b, 5)[r] == a->date_time &&
		       ts[r] == a->date_time && weir_col_i64(b, 6)[r] == a->expires &&
		       weir_col_i64(b, 7)[r] == a->seller && weir_col_i64(b, 8)[r] == a->category &&
		       str_is(b, 9, r, a->extra);
	}
	const weir_nexmark_bid *x = &e.bid;
	return weir_col_i64(b, 0)[r] == x->auction && weir_col_i64(b, 1)[r] == x->bidder &&
	       weir_col_i64(b, 2)[r] == x->price && str_is(b, 3, r, x->channel) &&
	       str_is(b, 4, r, x->url) && weir_col_i64(b, 5)[r] == x->date_time &&
	       ts[r] == x->date_time && str_is(b, 6, r, x->extra);
}

static void cap_process(task *t, int input, weir_batch *b)
{
	int k = kind_of_schema(b->schema);
	int dtcol = k == 0 ? 6 : k == 1 ? 5 : 5;
	(void)t;
	(void)input;
	for (uint32_t r = 0; r < b->rows; r++) {
		int64_t dt = weir_col_i64(b, dtcol)[r];
		uint64_t id = (uint64_t)(dt - BASE);
		if (cap.check_rows)
			cr_assert(row_equals(b, k, r, id), "kind %d id %lu differs", k,
				  (unsigned long)id);
		if (cap.n == cap.cap) {
			cap.cap = cap.cap ? cap.cap * 2 : 4096;
			cap.ids = realloc(cap.ids, (size_t)cap.cap * sizeof(*cap.ids));
		}
		cap.ids[cap.n++] = id;
		cap.rows[k]++;
		if (dt > cap.max_ts)
			cap.max_ts = dt;
	}
	batch_release(b);
}

static const op_ops cap_ops = { .kind = "capture", .process = cap_process };

typedef struct src {
	lnode node;
	weir_nexmark_conf conf;
	weir_config cfg;
	task t, sink[3];
	outlet o[3];
	actor a;
} src;

static weir_schema schemas[3];

/* A source subtask whose ports in `ports` (bit k: port k) are consumed. */
static src *nx_src(const weir_nexmark_conf *c, int subtask, int parallelism, int ports)
{
	static const char *const spec[3] = { WEIR_NEXMARK_PERSON_SCHEMA,
					     WEIR_NEXMARK_AUCTION_SCHEMA,
					     WEIR_NEXMARK_BID_SCHEMA };
	char err[128];
	src *s = calloc(1, sizeof(*s));
	for (int k = 0; k < 3; k++)
		cr_assert_eq(schema_parse(spec[k], &schemas[k], err, sizeof(err)), 0, "%s", err);
	s->conf = *c;
	snprintf(s->node.name, sizeof(s->node.name), "nexmark");
	s->node.ops = &op_nexmark;
	s->node.conf = &s->conf;
	s->node.nports = 3;
	s->cfg.batch_rows = ROWS;
	s->t.ops = &op_nexmark;
	s->t.node = &s->node;
	s->t.cfg = &s->cfg;
	s->t.subtask = subtask;
	s->t.parallelism = parallelism;
	s->t.actor = &s->a;
	s->t.watermark = s->t.out_watermark = INT64_MIN;
	s->t.nports = 3;
	for (int k = 0; k < 3; k++) {
		s->node.schema[k] = &schemas[k];
		s->sink[k].ops = &cap_ops;
		s->sink[k].watermark = s->sink[k].out_watermark = INT64_MIN;
		s->o[k] = (outlet){ .kind = OUT_CHAIN, .owner = &s->t, .next = &s->sink[k] };
		if (ports & (1 << k)) {
			s->t.nout[k] = 1;
			s->t.out[k] = &s->o[k];
		}
	}
	cr_assert_eq(s->t.ops->open(&s->t), 0);
	cap.max_ts = INT64_MIN; /* the watermark check is per subtask */
	return s;
}

/* Up to `calls` produce() calls (-1: until the source ends). */
static int run(src *s, int calls)
{
	int rc = 1;
	for (int i = 0; calls < 0 || i < calls; i++) {
		rc = s->t.ops->produce(&s->t);
		if (rc < 0)
			break;
		cr_assert_gt(rc, 0);
		/* the watermark trails what was made by 4 s (exactly what was
		 * emitted when every stream is consumed) */
		bool all = s->t.nout[0] && s->t.nout[1] && s->t.nout[2];
		for (int k = 0; cap.max_ts > INT64_MIN && k < 3; k++) {
			if (s->t.nout[k] && all)
				cr_assert_eq(s->sink[k].watermark,
					     cap.max_ts - WEIR_NEXMARK_WATERMARK_DELAY_MS);
			else if (s->t.nout[k])
				cr_assert_geq(s->sink[k].watermark,
					      cap.max_ts - WEIR_NEXMARK_WATERMARK_DELAY_MS);
		}
	}
	return rc;
}

static snap_buf snapshot(src *s)
{
	snap_buf b = { 0 };
	cr_assert_eq(s->t.ops->snapshot(&s->t, 1, &b), 0);
	return b;
}

static void src_free(src *s)
{
	s->t.ops->close(&s->t);
	free(s);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Every id in [0, n) whose kind is in `kinds` exactly once. */
static void expect_each_once(uint64_t n, int kinds)
{
	if (cap.n)
		qsort(cap.ids, (size_t)cap.n, sizeof(*cap.ids), cmp_u64);
	long k = 0;
	for (uint64_t id = 0; id < n; id++) {
		uint64_t off = id % 50;
		int kind = off == 0 ? 0 : off < 4 ? 1 : 2;
		if (!(kinds & (1 << kind)))
			continue;
		cr_assert(k < cap.n && cap.ids[k] == id, "id %lu missing or repeated (got %lu)",
			  (unsigned long)id, k < cap.n ? (unsigned long)cap.ids[k] : 0ul);
		k++;
	}
	cr_assert_eq(k, cap.n, "%ld rows, %ld expected", cap.n, k);
}

TestSuite(nexmark_source, .init = setup, .fini = teardown);

Test(nexmark_source, subtasks_split_the_ids_and_rows_equal_the_events)
{
	static const uint32_t groups[] = { 1, 10, 333 };
	for (size_t gi = 0; gi < ARRAY_SIZE(groups); gi++)
		for (int p = 1; p <= 3; p++) {
			weir_nexmark_conf c = { .events = 7777, .event_rate = 1000, .seed = 3,
						.ooo_group = groups[gi] };
			cap_reset(&c);
			cap.check_rows = true;
			for (int i = 0; i < p; i++) {
				src *s = nx_src(&c, i, p, 7);
				run(s, -1);
				src_free(s);
			}
			expect_each_once(c.events, 7);
			cr_assert_eq(cap.rows[0], 156);
			cr_assert_eq(cap.rows[1], 3 * 155 + 3);
		}
}

Test(nexmark_source, unconsumed_streams_are_skipped)
{
	weir_nexmark_conf c = { .events = 20000, .event_rate = 1000 };
	for (int ports = 0; ports < 8; ports++) {
		cap_reset(&c);
		src *s = nx_src(&c, 0, 1, ports);
		cr_assert_lt(run(s, -1), 0);
		src_free(s);
		expect_each_once(c.events, ports);
	}
}

Test(nexmark_source, unbounded_blocks_are_dealt_round_robin)
{
	weir_nexmark_conf c = { .event_rate = 1000, .ooo_group = 1 };
	cap_reset(&c);
	src *s = nx_src(&c, 1, 3, 7);
	run(s, 50);
	src_free(s);
	cr_assert_gt(cap.n, 2000);
	for (long i = 0; i < cap.n; i++)
		cr_assert_eq(cap.ids[i] / ROWS % 3, 1, "id %lu", (unsigned long)cap.ids[i]);
}

static void restore_case(const weir_nexmark_conf *c, int old_p, const int *calls, int new_p)
{
	snap_buf bufs[8];
	op_blob blobs[8];
	cap_reset(c);
	for (int i = 0; i < old_p; i++) {
		src *s = nx_src(c, i, old_p, 7);
		run(s, calls[i]);
		bufs[i] = snapshot(s);
		blobs[i] = (op_blob){ .subtask = i, .p = bufs[i].p, .len = bufs[i].len };
		src_free(s);
	}
	op_restore r = { .old_parallelism = old_p, .n = old_p, .blobs = blobs };
	for (int i = 0; i < new_p; i++) {
		src *s = nx_src(c, i, new_p, 7);
		s->cfg.batch_rows = 16; /* the saved blocks keep their size */
		cr_assert_eq(s->t.ops->restore(&s->t, &r), 0);
		run(s, -1);
		src_free(s);
	}
	for (int i = 0; i < old_p; i++)
		snap_free(&bufs[i]);
}

Test(nexmark_source, restore_rescaled_replays_each_event_once)
{
	static const int calls[] = { 3, 0, 7, 1 };
	weir_nexmark_conf c = { .events = 9000, .event_rate = 1000, .seed = 1 };
	restore_case(&c, 3, calls, 2);
	expect_each_once(c.events, 7);
	restore_case(&c, 2, calls + 1, 4);
	expect_each_once(c.events, 7);
	c.ooo_group = 101;
	restore_case(&c, 4, calls, 3);
	expect_each_once(c.events, 7);
}

Test(nexmark_source, restore_refuses_other_options_and_other_sources)
{
	weir_nexmark_conf c = { .events = 9000, .event_rate = 1000, .seed = 1 };
	cap_reset(&c);
	src *s = nx_src(&c, 0, 1, 7);
	run(s, 2);
	snap_buf b = snapshot(s);
	src_free(s);
	op_blob blob = { .subtask = 0, .p = b.p, .len = b.len };
	op_restore r = { .old_parallelism = 1, .n = 1, .blobs = &blob };
	weir_nexmark_conf other[] = { c, c, c, c };
	other[0].seed = 2;
	other[1].events = 9001;
	other[2].event_rate = 1001;
	other[3].ooo_group = 2;
	for (size_t i = 0; i < ARRAY_SIZE(other); i++) {
		s = nx_src(&other[i], 0, 1, 7);
		cr_assert_eq(s->t.ops->restore(&s->t, &r), -EINVAL, "case %zu", i);
		src_free(s);
	}
	/* the same options resume */
	s = nx_src(&c, 0, 1, 7);
	cr_assert_eq(s->t.ops->restore(&s->t, &r), 0);
	src_free(s);
	snap_free(&b);
	/* a generator's position is not a Nexmark source's */
	snap_buf g = { 0 };
	src_split sp = { .pos = 0, .end = 100 };
	cr_assert_eq(src_splits_write(&g, SRC_BLOB_GEN, &sp, 1), 0);
	blob = (op_blob){ .subtask = 0, .p = g.p, .len = g.len };
	s = nx_src(&c, 0, 1, 7);
	cr_assert_eq(s->t.ops->restore(&s->t, &r), -EINVAL);
	src_free(s);
	snap_free(&g);
}

/* ---- jobs on the runtime ---------------------------------------------------------------------------
 *
 * A collector per stream (a flat_map at parallelism 1 that emits nothing)
 * records a hash of each row's text; the sorted hashes must equal those of
 * weir_nexmark_event for ids [0, N).
 */

typedef struct collector {
	uint64_t *h;
	long n, cap;
	bool ts_ok;
} collector;

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * 0x100000001b3ULL;
	return (h ^ 0xff) * 0x100000001b3ULL; /* field separator */
}

static uint64_t fnv_i64(uint64_t h, int64_t v)
{
	return fnv(h, &v, sizeof(v));
}

static uint64_t fnv_str(uint64_t h, const char *s)
{
	return fnv(h, s, strlen(s));
}

static uint64_t event_hash(const weir_nexmark_row *e)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	switch (e->kind) {
	case WEIR_NEXMARK_PERSON: {
		const weir_nexmark_person *p = &e->person;
		h = fnv_i64(h, p->id);
		h = fnv_str(h, p->name);
		h = fnv_str(h, p->email_address);
		h = fnv_str(h, p->credit_card);
		h = fnv_str(h, p->city);
		h = fnv_str(h, p->state);
		h = fnv_i64(h, p->date_time);
		return fnv_str(h, p->extra);
	}
	case WEIR_NEXMARK_AUCTION: {
		const weir_nexmark_auction *a = &e->auction;
		h = fnv_i64(h, a->id);
		h = fnv_str(h, a->item_name);
		h = fnv_str(h, a->description);
		h = fnv_i64(h, a->initial_bid);
		h = fnv_i64(h, a->reserve);
		h = fnv_i64(h, a->date_time);
		h = fnv_i64(h, a->expires);
		h = fnv_i64(h, a->seller);
		h = fnv_i64(h, a->category);
		return fnv_str(h, a->extra);
	}
	default: {
		const weir_nexmark_bid *b = &e->bid;
		h = fnv_i64(h, b->auction);
		h = fnv_i64(h, b->bidder);
		h = fnv_i64(h, b->price);
		h = fnv_str(h, b->channel);
		h = fnv_str(h, b->url);
		h = fnv_i64(h, b->date_time);
		return fnv_str(h, b->extra);
	}
	}
}

static uint64_t batch_row_hash(const weir_batch *b, uint32_t r)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (int c = 0; c < b->schema->ncols; c++) {
		if (b->schema->fields[c].type == WEIR_STR) {
			uint32_t len;
			const char *p = weir_batch_str(b, c, r, &len);
			h = fnv(h, p, len);
		} else {
			h = fnv_i64(h, weir_col_i64(b, c)[r]);
		}
	}
	return h;
}

static int collect(void *arg, const weir_batch *in, weir_out *out)
{
	collector *c = arg;
	int dt = weir_schema_find(in->schema, "date_time");
	(void)out;
	for (uint32_t r = 0; r < in->rows; r++) {
		if (c->n == c->cap) {
			c->cap = c->cap ? c->cap * 2 : 4096;
			c->h = realloc(c->h, (size_t)c->cap * sizeof(*c->h));
		}
		c->h[c->n++] = batch_row_hash(in, r);
		if (in->ts[r] != weir_col_i64(in, dt)[r])
			c->ts_ok = false;
	}
	return 0;
}

static void run_and_compare(int p, uint32_t batch_rows, const weir_nexmark_conf *nc, int ports)
{
	static const char *const names[3] = { "person", "auction", "bid" };
	collector col[3];
	weir_stream *st[3];
	weir_env *env = env_p(p, batch_rows);
	memset(col, 0, sizeof(col));
	cr_assert_not_null(st[0] = weir_source_nexmark(env, "nexmark", nc));
	for (int k = 0; k < 3; k++) {
		st[k] = weir_nexmark_stream(st[0], (weir_nexmark_kind)k);
		if (!(ports & (1 << k)))
			continue;
		col[k].ts_ok = true;
		weir_stream *f = weir_flat_map(st[k], names[k], weir_stream_schema(st[k]), collect,
					       &col[k]);
		weir_stream_set_parallelism(f, 1);
		weir_sink_discard(f, names[k]);
	}
	run_ok(env);
	long want[3] = { 0 };
	uint64_t *exp[3];
	for (int k = 0; k < 3; k++)
		exp[k] = malloc(nc->events * sizeof(uint64_t));
	for (uint64_t id = 0; id < nc->events; id++) {
		weir_nexmark_row e = ev(nc, id);
		exp[e.kind][want[e.kind]++] = event_hash(&e);
	}
	for (int k = 0; k < 3; k++) {
		if (ports & (1 << k)) {
			cr_assert_eq(col[k].n, want[k], "p %d, %s: %ld rows, want %ld", p, names[k],
				     col[k].n, want[k]);
			cr_assert(col[k].ts_ok, "%s: batch ts is not date_time", names[k]);
			qsort(col[k].h, (size_t)col[k].n, sizeof(uint64_t), cmp_u64);
			qsort(exp[k], (size_t)want[k], sizeof(uint64_t), cmp_u64);
			cr_assert_eq(memcmp(col[k].h, exp[k], (size_t)want[k] * sizeof(uint64_t)), 0,
				     "p %d: %s rows differ from weir_nexmark_event", p, names[k]);
		}
		free(exp[k]);
		free(col[k].h);
	}
}

Test(nexmark_job, streams_carry_exactly_the_events_at_every_parallelism)
{
	weir_nexmark_conf nc = { .events = 200003, .seed = 12 };
	for (int p = 1; p <= 4; p *= 2)
		for (uint32_t rows = 64; rows <= 1024; rows *= 16)
			run_and_compare(p, rows, &nc, 7);
	/* out of order, an event rate of 1/s, a bound that cuts a group */
	weir_nexmark_conf o = { .events = 100001, .seed = 13, .ooo_group = 1000,
				.event_rate = 1 };
	run_and_compare(2, 1024, &o, 7);
	/* bids only (the other types skipped) */
	run_and_compare(2, 1024, &nc, 4);
}

Test(nexmark_job, bad_configurations_are_build_errors)
{
	weir_env *env = env_p(1, 1024);
	weir_stream *p;
	weir_nexmark_conf c = { .ooo_group = 953 * 3 };
	cr_assert_null(p = weir_source_nexmark(env, "nx", &c));
	cr_assert_null(weir_nexmark_stream(p, WEIR_NEXMARK_BID));
	cr_assert(strstr(weir_env_error(env), "953"), "%s", weir_env_error(env));
	weir_env_free(env);
	env = env_p(1, 1024);
	c = (weir_nexmark_conf){ .emit_rate = -1 };
	cr_assert_null(weir_source_nexmark(env, "nx", &c));
	cr_assert(strstr(weir_env_error(env), "emit rate"), "%s", weir_env_error(env));
	weir_env_free(env);
	cr_assert_null(weir_source_nexmark(NULL, "nx", &c));
	/* side outputs of the source are its own */
	env = env_p(1, 1024);
	c = (weir_nexmark_conf){ .events = 10 };
	cr_assert_not_null(p = weir_source_nexmark(env, NULL, &c));
	cr_assert_not_null(weir_nexmark_stream(p, WEIR_NEXMARK_AUCTION));
	weir_generator_conf g = { .count = 1 };
	cr_assert_null(weir_nexmark_stream(weir_source_generator(env, "g", &g),
					   WEIR_NEXMARK_AUCTION), "not a nexmark source");
	cr_assert_null(weir_side_output(p, 1, weir_stream_schema(p)));
	weir_env_free(env);
}

/* ---- checkpoints: exactly once across cancelled runs and rescaling ------------------------------- */

#define CK_EVENTS 300000

static weir_env *ck_job(int p, const char *ck, double emit_rate, const char *out)
{
	static const char *const names[3] = { "person", "auction", "bid" };
	weir_env *env = env_p(p, 256);
	weir_config *cfg = weir_env_config(env);
	cfg->mode = WEIR_MODE_STREAMING;
	cfg->checkpoint_dir = ck;
	cfg->checkpoint_interval_ms = 30;
	weir_nexmark_conf nc = { .events = CK_EVENTS, .seed = 21, .emit_rate = emit_rate };
	weir_stream *st[3];
	cr_assert_not_null(st[0] = weir_source_nexmark(env, "nexmark", &nc));
	for (int k = 0; k < 3; k++) {
		char dir[512];
		st[k] = weir_nexmark_stream(st[0], (weir_nexmark_kind)k);
		snprintf(dir, sizeof(dir), "%s/%s", out, names[k]);
		cr_assert_eq(weir_sink_files(st[k], names[k], dir), 0, "%s", weir_env_error(env));
	}
	return env;
}

/* The committed part files under out/<stream> (and its before/) hold
 * exactly the rows of the dump of the same run (header lines aside). */
static void check_committed(const char *out)
{
	static const char *const names[3] = { "person", "auction", "bid" };
	weir_nexmark_conf nc = { .events = CK_EVENTS, .seed = 21 };
	char err[512], cmd[2048];
	cr_assert_eq(weir_nexmark_write_csv(&nc, path("dump"), err, sizeof(err)), 0, "%s", err);
	for (int k = 0; k < 3; k++) {
		snprintf(cmd, sizeof(cmd),
			 "cd %s && tail -n +2 dump/%s.csv | LC_ALL=C sort > want.%s && "
			 "find %s/%s -name 'part-*' -exec cat {} + | LC_ALL=C sort > got.%s && "
			 "cmp -s want.%s got.%s", testenv_dir, names[k], names[k], out, names[k],
			 names[k], names[k], names[k]);
		cr_assert_eq(system(cmd), 0, "%s: committed rows differ from the dump", names[k]);
	}
	snprintf(cmd, sizeof(cmd), "find %s -name '.part-*' | grep -q .", out);
	cr_assert_neq(system(cmd), 0, "in-progress files left in %s", out);
}

Test(nexmark_job, checkpointed_runs_cancelled_and_resumed_commit_each_event_once,
     .init = testenv_mkdir, .fini = testenv_rmdir)
{
	char ck[128];
	snprintf(ck, sizeof(ck), "%s", path("ck"));
	for (int i = 0; i < 3; i++) {
		pthread_t th;
		weir_env *env = ck_job(2, ck, 400000, path("out"));
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
	run_ok(ck_job(2, path("ck"), 0, path("out")));
	check_committed(path("out"));
}

Test(nexmark_job, savepoint_at_3_restored_at_2_commits_each_event_once,
     .init = testenv_mkdir, .fini = testenv_rmdir)
{
	/* stopped once a checkpoint is complete: the job is under way */
	char ck[128];
	snprintf(ck, sizeof(ck), "%s", path("ck1"));
	sp_arg a = { .ready = has_checkpoint, .ready_arg = ck };
	pthread_t th;
	snprintf(a.dir, sizeof(a.dir), "%s", path("sp"));
	weir_env *env = ck_job(3, ck, 300000, path("out"));
	pthread_create(&th, NULL, stop_with_savepoint, &a);
	cr_assert_eq(weir_env_execute(env, "test", 0), 0);
	pthread_join(th, NULL);
	weir_env_free(env);
	cr_assert_eq(a.rc, 0, "savepoint: %s", a.msg);
	/* part of the events only; the stopped run's files apart */
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "cd %s && test $(cat out/bid/part-* | wc -l) -lt %d && "
		 "for s in person auction bid; do mkdir out/$s/before && "
		 "mv out/$s/part-* out/$s/before/; done", testenv_dir, CK_EVENTS * 46 / 50);
	cr_assert_eq(system(cmd), 0);
	env = ck_job(2, path("ck2"), 0, path("out"));
	weir_env_config(env)->restore_savepoint = a.msg;
	run_ok(env);
	check_committed(path("out"));
}
