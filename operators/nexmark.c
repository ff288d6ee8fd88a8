/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Nexmark generator (include/weir/nexmark.h, ../shared/NEXMARK.md): the
 * source operator with three output streams, single events as plain values,
 * the shared job options and the CSV dump.  Everything here makes events
 * through the same three functions (gen_person, gen_auction, gen_bid), so
 * the source, weir_nexmark_event and the dump agree by construction.
 *
 * Determinism.  Event n draws from its own random stream, seeded from
 * (seed, n) only (splitmix64: a mixed seed, stepped by the golden ratio).
 * Its type comes from n mod 50, its ids from n div 50, its date_time from
 * n * 1000 / event_rate; the draws, in a fixed order per type (gen_*),
 * decide the rest.  Which subtask makes an event, in which batch, after
 * which restore, never enters.
 *
 * Performance design (a bid has a budget of about 50 ns, 120 cycles):
 *   - Random text comes from a string pool: 64 KiB (+ 2 KiB of slack) of
 *     characters, each i.i.d. as the rules say (a space with probability
 *     1/13, else a letter a-z), a pure function of (seed, index).  A
 *     random string of length L is pool[o .. o + L) for a uniform offset o,
 *     trimmed: one draw and one fixed-size copy instead of a draw per
 *     character.  Within a string the characters are independent as the
 *     rules ask; strings of different events may overlap in the pool (they
 *     are not independent of each other), which no query observes.
 *   - A channel's url is fixed for the run: what varies in it (three pool
 *     strings, the scrambled channel id) is in a table of 10,004 entries of
 *     32 bytes, so the table and the pool (386 KiB) stay in L2.  A bid draws
 *     its channel first and prefetches the entry.
 *   - The source builds pool and table once per subtask at open (~1 ms);
 *     weir_nexmark_event computes the few characters and the one channel
 *     it needs from their index instead (no memory, the same text).
 *   - One 64-bit draw serves a string (length from the low half, offset
 *     from the top 16 bits) or two small choices; range reduction is
 *     multiply-shift, never a division.  A price is two table lookups and
 *     a degree-4 polynomial, not exp().
 *   - Event time is stepped (quotient and remainder) along a run of ids;
 *     only out-of-order emission divides per event.
 *   - Strings are built straight into the output batch's heap, columns
 *     written in place: no malloc, no lock, no copy per event.  Strings are
 *     copied in fixed-size pieces (vector moves, no variable memcpy), so
 *     each batch keeps room for the largest event of its type plus the
 *     over-copy (MAX_HEAP + OVERCOPY), checked once per event.
 *   - An event whose stream has no consumer (t->nout of its port is 0) is
 *     skipped after its type test: no draw, no string.  A bid-only job
 *     (q0) pays for bids only.
 *
 * Parallelism and replay.  Subtasks split emission positions (not ids: an
 * out-of-order group maps position n to id (n div g) * g + (n * 953 mod
 * g), a permutation of each group since 953 is prime and g is no multiple
 * of it) into blocks of batch-size positions dealt round-robin, as the
 * unbounded generator does (source.c), for bounded runs too, so event time
 * advances evenly on every subtask.  A bounded run of N events covers
 * positions [0, N rounded up to g) and skips ids >= N.  Work is a list of
 * src_split (ops.h); snapshot writes what is left, restore takes the
 * splits of old subtasks s with s % parallelism == subtask (rescaling) and
 * reads them in order of position.  Each produce() call emits everything
 * it made (one full batch of the most frequent consumed stream plus the
 * partial batches of the others), so a split's position is exact between
 * calls, where barriers pass.  The split's `line` field carries a
 * fingerprint of the options that decide the events; a restore with other
 * options is refused instead of silently mixing two runs.
 *
 * Rate cap: the token bucket of source.c (rate_gate), over positions.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <weir/nexmark.h>

#include "ops.h"

#define GOLDEN 0x9e3779b97f4a7c15ULL
#define ID_MULT 0xd1b54a32d192ed03ULL

#define POOL_LEN 65536u /* offsets are the top 16 bits of a draw */
#define POOL_SLACK 2048u /* a trimmed string start plus a fixed-size copy */

/* 100 * 50 / 3 in-flight auctions' worth of events: an auction's horizon. */
#define AUCTION_HORIZON_EVENTS (100 * 50 / 3)

/* The longest strings the rules can make (the header's arrays add one for
 * the NUL), and so the most heap bytes one event of each type takes. */
#define MAX_NAME 14
#define MAX_EMAIL 15
#define MAX_CC 19
#define MAX_CITY 13
#define MAX_PERSON_EXTRA 181
#define MAX_ITEM 19
#define MAX_DESC 99
#define MAX_AUCTION_EXTRA 541
#define MAX_CHANNEL 12
#define MAX_URL 77
#define MAX_BID_EXTRA 80
static const uint32_t MAX_HEAP[3] = {
	MAX_NAME + MAX_EMAIL + MAX_CC + MAX_CITY + 2 + MAX_PERSON_EXTRA,
	MAX_ITEM + MAX_DESC + MAX_AUCTION_EXTRA,
	MAX_CHANNEL + MAX_URL + MAX_BID_EXTRA,
};
/* Strings are copied in fixed-size pieces (a few vector moves instead of a
 * variable-length memcpy), which may write this much past an event's
 * bytes: buffers keep room for it. */
#define OVERCOPY 128u

_Static_assert(sizeof(((weir_nexmark_person *)0)->name) > MAX_NAME, "name");
_Static_assert(sizeof(((weir_nexmark_person *)0)->email_address) > MAX_EMAIL, "email");
_Static_assert(sizeof(((weir_nexmark_person *)0)->credit_card) > MAX_CC, "cc");
_Static_assert(sizeof(((weir_nexmark_person *)0)->city) > MAX_CITY, "city");
_Static_assert(sizeof(((weir_nexmark_person *)0)->extra) > MAX_PERSON_EXTRA, "p extra");
_Static_assert(sizeof(((weir_nexmark_auction *)0)->item_name) > MAX_ITEM, "item");
_Static_assert(sizeof(((weir_nexmark_auction *)0)->description) > MAX_DESC, "desc");
_Static_assert(sizeof(((weir_nexmark_auction *)0)->extra) > MAX_AUCTION_EXTRA, "a extra");
_Static_assert(sizeof(((weir_nexmark_bid *)0)->channel) > MAX_CHANNEL, "channel");
_Static_assert(sizeof(((weir_nexmark_bid *)0)->url) > MAX_URL, "url");
_Static_assert(sizeof(((weir_nexmark_bid *)0)->extra) > MAX_BID_EXTRA, "b extra");
_Static_assert(POOL_SLACK > 2 * MAX_AUCTION_EXTRA, "pool slack");

typedef struct word {
	const char *s;
	uint32_t len;
} word;
#define W(x) { x, sizeof(x) - 1 }

static const word FIRST[] = { W("Peter"), W("Paul"), W("Luke"), W("John"), W("Saul"),
			      W("Vicky"), W("Kate"), W("Julie"), W("Sarah"),
			      W("Deiter"), W("Walter") };
static const word LAST[] = { W("Shultz"), W("Abrams"), W("Spencer"), W("White"),
			     W("Bartels"), W("Walton"), W("Smith"), W("Jones"),
			     W("Noris") };
static const word CITY[] = { W("Phoenix"), W("Los Angeles"), W("San Francisco"),
			     W("Boise"), W("Portland"), W("Bend"), W("Redmond"),
			     W("Seattle"), W("Kent"), W("Cheyenne") };
static const word STATE[] = { W("AZ"), W("CA"), W("ID"), W("OR"), W("WA"), W("WY") };
static const word HOT_CHANNEL[] = { W("Google"), W("Facebook"), W("Baidu"), W("Apple") };

/* Channels 0..9999 ("channel-<i>"), then the four hot ones. */
#define CHANNELS 10000u
#define NCHAN (CHANNELS + 4)

/* ---- random numbers --------------------------------------------------------------- */

static inline uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* splitmix64: the next draw of stream *s. */
static inline uint64_t rnext(uint64_t *s)
{
	*s += GOLDEN;
	return mix64(*s);
}

/* Uniform in [0, k) (multiply-shift range reduction, no division). */
static inline uint64_t rbelow(uint64_t *s, uint64_t k)
{
	return (uint64_t)(((unsigned __int128)rnext(s) * k) >> 64);
}

/* Uniform in [0, k) from the low 32 bits of a draw (k < 2^32): one draw
 * serves two small choices, its low and its high half. */
static inline uint32_t half_below(uint64_t bits, uint32_t k)
{
	return (uint32_t)(((bits & 0xffffffffu) * k) >> 32);
}

/*
 * round(10^(6u) * 100) for u uniform in [0, 1) (53 bits of r): cents, log-
 * uniform from $1 to $1M.  10^(6u) = T1[k >> 6] * T2[k & 63] * e^(6 ln10 f)
 * for the top 12 bits k of u and the rest f < 2^-12, the last factor a
 * degree-4 Taylor polynomial (relative error < 4e-15), cheaper than exp()
 * in the bid path.  The tables are filled once per process with exp()
 * (pthread_once in nx_init; read-only afterwards, from any thread).
 */
static double p10_hi[64], p10_lo[64];
static pthread_once_t p10_once = PTHREAD_ONCE_INIT;

static void p10_init(void)
{
	for (int i = 0; i < 64; i++) {
		p10_hi[i] = exp(13.815510557964274 * i / 64);   /* 6 ln 10 = 13.8155... */
		p10_lo[i] = exp(13.815510557964274 * i / 4096);
	}
}

static inline int64_t price_of(uint64_t r)
{
	uint64_t m = r >> 11; /* 53 bits: u = m / 2^53 */
	uint32_t k = (uint32_t)(m >> 41);
	double x = (double)(m & ((1ULL << 41) - 1)) * 0x1p-53 * 13.815510557964274;
	double e = 1 + x * (1 + x * (0.5 + x * (1.0 / 6 + x * (1.0 / 24))));
	return (int64_t)(p10_hi[k >> 6] * p10_lo[k & 63] * e * 100.0 + 0.5);
}

/* Person index among the active ones (NEXMARK.md: choosing a person),
 * from 32 bits. */
static inline uint64_t person_among_active(uint64_t bits, uint64_t newest)
{
	uint64_t n = newest + 1, active = n < 1000 ? n : 1000;
	return n - active + half_below(bits, (uint32_t)active + 10);
}

/* ---- a run's constants --------------------------------------------------------------- */

/*
 * What varies in a channel's name and url, 32 bytes (a 320 KiB table of
 * them stays in L2 beside the pool): name "channel-<digits>" (a hot
 * channel's name is HOT_CHANNEL's) and url
 * "https://www.nexmark.com/" mid "/item.htm?query=1" ["&channel_id=" id].
 */
typedef struct nx_chan {
	uint8_t name_len;  /* of the whole name */
	uint8_t mid_len;   /* "<s>/<s>/<s>" */
	uint8_t id_len;    /* digits of the channel id; 0: no channel id */
	uint8_t pad;
	char digits[4];    /* of i */
	char mid[14];
	char id[10];
} nx_chan;
_Static_assert(sizeof(nx_chan) == 32, "two channels per cache line");
#define URL_HEAD "https://www.nexmark.com/"
#define URL_TAIL "/item.htm?query=1&channel_id="
#define URL_TAIL_QUERY 17 /* "/item.htm?query=1" */

/* A run's constants: written by nx_init (and nx_tables_new), then only
 * read, by the one subtask (or call) that made it. */
typedef struct nx_ctx {
	weir_nexmark_conf c;   /* defaults resolved */
	uint64_t seed_ev, seed_pool, seed_url;
	uint64_t end_pos;      /* positions of a bounded run; UINT64_MAX */
	uint64_t limit;        /* ids below this exist: events or UINT64_MAX */
	/* Fast path (the source, the dump), else NULL: computed per use. */
	const char *pool;      /* POOL_LEN + POOL_SLACK characters */
	const nx_chan *chans;  /* NCHAN channels */
} nx_ctx;

/* Character j of the pool of seed_pool: ' ' with probability 26/338 =
 * 1/13, else each letter with probability 12/338. */
static inline char pool_char(uint64_t seed_pool, uint64_t j)
{
	uint32_t k = half_below(mix64(seed_pool + (j + 1) * GOLDEN) >> 32, 338);
	return k < 26 ? ' ' : (char)('a' + (k - 26) / 12);
}

/*
 * Pool text [off, off + len), trimmed of spaces at both ends, into dst;
 * its length.  With the pool, `cap` (a constant >= len) bytes are copied,
 * so dst needs room for that many.
 */
static inline uint32_t pool_copy(const nx_ctx *x, uint32_t off, uint32_t len, char *dst,
				 uint32_t cap)
{
	if (likely(x->pool != NULL)) {
		const char *p = x->pool + off;
		while (len && p[0] == ' ') {
			p++;
			len--;
		}
		while (len && p[len - 1] == ' ')
			len--;
		memcpy(dst, p, cap);
		return len;
	}
	uint32_t a = 0, b = len;
	while (a < b && pool_char(x->seed_pool, off + a) == ' ')
		a++;
	while (b > a && pool_char(x->seed_pool, off + b - 1) == ' ')
		b--;
	for (uint32_t i = a; i < b; i++)
		dst[i - a] = pool_char(x->seed_pool, off + i);
	return b - a;
}

/* A random string of length up to m (3 + uniform [0, m - 3), trimmed),
 * from one draw: the length from its low half, the offset its top 16 bits. */
static inline uint32_t rand_str(const nx_ctx *x, uint64_t *s, uint32_t m, char *dst,
				uint32_t cap)
{
	uint64_t r = rnext(s);
	return pool_copy(x, (uint32_t)(r >> 48), 3 + half_below(r, m - 3), dst, cap);
}

/* extra: pads an event of `cur` bytes toward `target`: a random string of
 * length uniform in [d - d/5, d + d/5) for d = target - cur > 0. */
static inline uint32_t rand_extra(const nx_ctx *x, uint64_t *s, uint32_t cur,
				  uint32_t target, char *dst, uint32_t cap)
{
	if (cur >= target)
		return 0;
	uint32_t d = target - cur, w = 2 * (d / 5);
	uint64_t r = rnext(s);
	return pool_copy(x, (uint32_t)(r >> 48), d - d / 5 + (w ? half_below(r, w) : 0), dst,
			 cap);
}

/* Milliseconds from base_time to event n's date_time. */
static inline int64_t time_off(const nx_ctx *x, uint64_t n)
{
	if (likely(n <= UINT64_MAX / 1000))
		return (int64_t)(n * 1000 / x->c.event_rate);
	return (int64_t)((unsigned __int128)n * 1000 / x->c.event_rate);
}

static inline char *put_u64(char *p, uint64_t v)
{
	char tmp[20];
	int n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

static inline uint32_t bitrev32(uint32_t v)
{
	v = ((v >> 1) & 0x55555555u) | ((v & 0x55555555u) << 1);
	v = ((v >> 2) & 0x33333333u) | ((v & 0x33333333u) << 2);
	v = ((v >> 4) & 0x0f0f0f0fu) | ((v & 0x0f0f0f0fu) << 4);
	return __builtin_bswap32(v);
}

/*
 * Channel i (i >= CHANNELS: hot channel i - CHANNELS), a pure function of
 * (seed, i): three random strings of length up to 5 for its url and, for
 * nine channels in ten that are not hot, its channel id: i bit-reversed (a
 * reversible scrambling, as Flink's).  Needs x's seeds only.
 */
static void channel_make(const nx_ctx *x, uint32_t i, nx_chan *e)
{
	nx_ctx slow = *x;
	uint64_t s = mix64(x->seed_url ^ ((uint64_t)i * ID_MULT));
	char *p;

	slow.pool = NULL; /* exact lengths, no over-copy into e */
	memset(e, 0, sizeof(*e));
	if (i < CHANNELS) {
		char d[8];
		uint32_t n = (uint32_t)(put_u64(d, i) - d);
		memcpy(e->digits, d, n);
		e->name_len = (uint8_t)(8 + n);
	} else {
		e->name_len = (uint8_t)HOT_CHANNEL[i - CHANNELS].len;
	}
	p = e->mid;
	for (int k = 0; k < 3; k++) {
		if (k)
			*p++ = '/';
		p += rand_str(&slow, &s, 5, p, 0);
	}
	e->mid_len = (uint8_t)(p - e->mid);
	if (i < CHANNELS && rbelow(&s, 10) < 9) {
		char d[24];
		e->id_len = (uint8_t)(put_u64(d, bitrev32(i)) - d);
		memcpy(e->id, d, e->id_len);
	}
}

/* Channel ci's name and url into buf (room for MAX_CHANNEL + MAX_URL +
 * OVERCOPY); their lengths. */
static inline void channel_put(const nx_chan *e, uint32_t ci, char *buf, uint32_t *name_len,
			       uint32_t *url_len)
{
	static const char hot8[4][8] = { "Google", "Facebook", "Baidu", "Apple" };
	static const char tail[32] = URL_TAIL;
	if (ci < CHANNELS) {
		memcpy(buf, "channel-", 8);
		memcpy(buf + 8, e->digits, 4);
	} else {
		memcpy(buf, hot8[ci - CHANNELS], 8);
	}
	char *u = buf + e->name_len;
	memcpy(u, URL_HEAD, 24);
	memcpy(u + 24, e->mid, 16); /* reads 2 bytes of id: inside e */
	char *t = u + 24 + e->mid_len;
	memcpy(t, tail, 32);
	if (e->id_len) {
		memcpy(t + sizeof(URL_TAIL) - 1, e->id, 10);
		t += sizeof(URL_TAIL) - 1 + e->id_len;
	} else {
		t += URL_TAIL_QUERY;
	}
	*name_len = e->name_len;
	*url_len = (uint32_t)(t - u);
}

static int nx_check(const weir_nexmark_conf *c, char *err, size_t errlen)
{
	if (!(c->emit_rate >= 0) || isinf(c->emit_rate)) {
		snprintf(err, errlen, "emit rate %g is not a number of events per second >= 0",
			 c->emit_rate);
		return -EINVAL;
	}
	if (c->ooo_group >= (1u << 31) || (c->ooo_group > 1 && c->ooo_group % 953 == 0)) {
		snprintf(err, errlen, "out-of-order group %u is %s", c->ooo_group,
			 c->ooo_group >= (1u << 31) ? "not below 2^31"
						    : "a multiple of 953 (not a permutation)");
		return -EINVAL;
	}
	return 0;
}

/* Resolve defaults and derive the run's constants (slow path: no pool,
 * no channel table; nx_tables_new adds them). */
static void nx_init(nx_ctx *x, const weir_nexmark_conf *c)
{
	memset(x, 0, sizeof(*x));
	pthread_once(&p10_once, p10_init);
	x->c = *c;
	if (!x->c.event_rate)
		x->c.event_rate = WEIR_NEXMARK_EVENT_RATE;
	if (!x->c.ooo_group)
		x->c.ooo_group = 1;
	if (!x->c.base_time_ms)
		x->c.base_time_ms = WEIR_NEXMARK_BASE_TIME_MS;
	x->seed_ev = mix64(x->c.seed ^ 0x6e65786d61726b31ULL);   /* "nexmark1" */
	x->seed_pool = mix64(x->c.seed ^ 0x6e65786d61726b32ULL); /* "nexmark2" */
	x->seed_url = mix64(x->c.seed ^ 0x6e65786d61726b33ULL);  /* "nexmark3" */
	x->limit = x->c.events ? x->c.events : UINT64_MAX;
	x->end_pos = x->limit;
	uint64_t g = x->c.ooo_group;
	if (x->c.events && g > 1 && x->c.events % g)
		x->end_pos = x->c.events > UINT64_MAX - g ? UINT64_MAX
							 : x->c.events + (g - x->c.events % g);
}

/*
 * The fast path's tables in one allocation (the pool, then the channels):
 * *mem is what to free.  Filled from the same functions the slow path
 * calls, so both give the same events.  0 or -ENOMEM.
 */
static int nx_tables_new(nx_ctx *x, void **mem)
{
	char *m = aligned_alloc(64, NCHAN * sizeof(nx_chan) + POOL_LEN + POOL_SLACK);
	*mem = m;
	if (!m)
		return -ENOMEM;
	nx_chan *ch = (nx_chan *)m;
	char *text = m + NCHAN * sizeof(nx_chan);
	for (uint32_t j = 0; j < POOL_LEN + POOL_SLACK; j++)
		text[j] = pool_char(x->seed_pool, j);
	for (uint32_t i = 0; i < NCHAN; i++)
		channel_make(x, i, &ch[i]);
	x->pool = text;
	x->chans = ch;
	return 0;
}

/* A fingerprint of what decides the events (split `line` of snapshots). */
static uint64_t nx_fingerprint(const nx_ctx *x)
{
	uint64_t h = mix64(x->c.seed + GOLDEN);
	h = mix64(h ^ x->c.events);
	h = mix64(h ^ x->c.event_rate);
	h = mix64(h ^ x->c.ooo_group);
	return mix64(h ^ (uint64_t)x->c.base_time_ms);
}

static inline uint64_t id_at(const nx_ctx *x, uint64_t pos)
{
	uint64_t g = x->c.ooo_group;
	if (g <= 1)
		return pos;
	return pos - pos % g + (pos % g) * (953 % g) % g;
}

static inline weir_nexmark_kind kind_of(uint64_t id)
{
	uint64_t r = id % 50;
	return r == 0 ? WEIR_NEXMARK_PERSON : r < 4 ? WEIR_NEXMARK_AUCTION : WEIR_NEXMARK_BID;
}

/* ---- the three event types ------------------------------------------------------------
 *
 * gen_*(x, id, dt, buf, out): event id (of that type, date_time dt) with
 * its strings written from buf (room for MAX_HEAP[type] + OVERCOPY bytes)
 * and referred to in *out relative to buf; returns the bytes of buf used.
 * The draws, in order, define the event.
 */

typedef struct nx_person {
	int64_t id;
	weir_str name, email, cc, city, state, extra;
} nx_person;

typedef struct nx_auction {
	int64_t id, initial_bid, reserve, expires, seller, category;
	weir_str item, desc, extra;
} nx_auction;

typedef struct nx_bid {
	int64_t auction, bidder, price;
	weir_str channel, url, extra;
} nx_bid;

static inline uint64_t ev_seed(const nx_ctx *x, uint64_t id)
{
	return mix64(x->seed_ev ^ (id * ID_MULT));
}

static inline uint32_t put_word(char *p, const word *w)
{
	memcpy(p, w->s, w->len);
	return w->len;
}

static inline void put_4digits(char *p, uint32_t v)
{
	p[3] = (char)('0' + v % 10);
	p[2] = (char)('0' + v / 10 % 10);
	p[1] = (char)('0' + v / 100 % 10);
	p[0] = (char)('0' + v / 1000);
}

static inline uint32_t gen_person(const nx_ctx *x, uint64_t id, char *buf, nx_person *o)
{
	uint64_t s = ev_seed(x, id);
	uint32_t w;

	o->id = 1000 + (int64_t)(id / 50);
	uint64_t r = rnext(&s); /* first and last name */
	w = put_word(buf, &FIRST[half_below(r, 11)]);
	buf[w++] = ' ';
	w += put_word(buf + w, &LAST[half_below(r >> 32, 9)]);
	o->name = (weir_str){ 0, w };

	o->email.off = w;
	w += rand_str(x, &s, 7, buf + w, 8);
	buf[w++] = '@';
	w += rand_str(x, &s, 5, buf + w, 8);
	memcpy(buf + w, ".com", 4);
	w += 4;
	o->email.len = w - o->email.off;

	o->cc.off = w;
	for (int g = 0; g < 4; g += 2) { /* two groups of 4 digits per draw */
		r = rnext(&s);
		put_4digits(buf + w, half_below(r, 10000));
		buf[w + 4] = ' ';
		put_4digits(buf + w + 5, half_below(r >> 32, 10000));
		buf[w + 9] = ' ';
		w += 10;
	}
	w--; /* no space after the last group */
	o->cc.len = MAX_CC;

	r = rnext(&s); /* city and state */
	o->city.off = w;
	o->city.len = put_word(buf + w, &CITY[half_below(r, 10)]);
	w += o->city.len;
	o->state.off = w;
	o->state.len = put_word(buf + w, &STATE[half_below(r >> 32, 6)]);
	w += o->state.len;

	uint32_t cur = 8 + o->name.len + o->email.len + o->cc.len + o->city.len + o->state.len;
	o->extra.off = w;
	o->extra.len = rand_extra(x, &s, cur, 200, buf + w, MAX_PERSON_EXTRA);
	return w + o->extra.len;
}

static inline uint32_t gen_auction(const nx_ctx *x, uint64_t id, int64_t dt, char *buf,
				   nx_auction *o)
{
	uint64_t s = ev_seed(x, id);
	uint64_t epoch = id / 50, off = id % 50;
	uint32_t w = 0;

	o->id = 1000 + (int64_t)(epoch * 3 + off - 1);
	o->item = (weir_str){ 0, rand_str(x, &s, 20, buf, MAX_ITEM) };
	w = o->item.len;
	o->desc = (weir_str){ w, rand_str(x, &s, 100, buf + w, MAX_DESC) };
	w += o->desc.len;
	o->initial_bid = price_of(rnext(&s));
	o->reserve = o->initial_bid + price_of(rnext(&s));
	int64_t h = time_off(x, id + AUCTION_HORIZON_EVENTS) - time_off(x, id);
	o->expires = dt + 1 + (int64_t)rbelow(&s, h > 0 ? 2 * (uint64_t)h : 1);
	uint64_t newest_person = epoch;
	uint64_t r = rnext(&s); /* hot seller or an active person */
	if (half_below(r >> 32, 4) < 3)
		o->seller = 1000 + (int64_t)(newest_person / 100 * 100);
	else
		o->seller = 1000 + (int64_t)person_among_active(r, newest_person);
	o->category = 10 + (int64_t)rbelow(&s, 5);
	o->extra.off = w;
	o->extra.len = rand_extra(x, &s, o->item.len + o->desc.len + 48, 500, buf + w,
				  MAX_AUCTION_EXTRA);
	return w + o->extra.len;
}

static inline uint32_t gen_bid(const nx_ctx *x, uint64_t id, char *buf, nx_bid *o)
{
	uint64_t s = ev_seed(x, id);
	uint64_t epoch = id / 50;
	uint64_t newest_auction = epoch * 3 + 2, newest_person = epoch;

	/* Channel first, so its table entry is on its way while the rest is
	 * drawn: a hot one (half the bids) or channel-<uniform [0, 10000)>. */
	uint64_t r = rnext(&s);
	uint32_t ci = half_below(r, 2) == 0 ? CHANNELS + half_below(r >> 32, 4)
					    : half_below(r >> 32, CHANNELS);
	const nx_chan *ch;
	nx_chan slow;
	if (likely(x->chans != NULL)) {
		ch = &x->chans[ci];
		__builtin_prefetch(ch);
	} else {
		channel_make(x, ci, &slow);
		ch = &slow;
	}

	r = rnext(&s); /* the hot auction, or uniform in [newest - 100, newest + 10] */
	if (half_below(r >> 32, 2) == 0) {
		o->auction = 1000 + (int64_t)(newest_auction / 100 * 100);
	} else {
		uint64_t lo = newest_auction > 100 ? newest_auction - 100 : 0;
		o->auction = 1000 + (int64_t)(lo + half_below(r, (uint32_t)(newest_auction + 11 - lo)));
	}
	r = rnext(&s); /* the hot bidder, or an active person */
	if (half_below(r >> 32, 4) < 3)
		o->bidder = 1000 + (int64_t)(newest_person / 100 * 100 + 1);
	else
		o->bidder = 1000 + (int64_t)person_among_active(r, newest_person);
	o->price = price_of(rnext(&s));

	uint32_t name_len, url_len;
	channel_put(ch, ci, buf, &name_len, &url_len);
	o->channel = (weir_str){ 0, name_len };
	o->url = (weir_str){ name_len, url_len };
	uint32_t w = name_len + url_len;
	o->extra.off = w;
	o->extra.len = rand_extra(x, &s, 32, 100, buf + w, MAX_BID_EXTRA);
	return w + o->extra.len;
}

/* ---- one event as plain values ------------------------------------------------------------ */

static void cstr(char *dst, size_t cap, const char *buf, weir_str v)
{
	size_t n = v.len < cap ? v.len : cap - 1; /* never cut: MAX_* < cap */
	memcpy(dst, buf + v.off, n);
	dst[n] = 0;
}

int weir_nexmark_event(const weir_nexmark_conf *conf, uint64_t id, weir_nexmark_row *out)
{
	char err[128], buf[MAX_AUCTION_EXTRA + MAX_ITEM + MAX_DESC + OVERCOPY];
	nx_ctx x;

	if (!conf || !out || nx_check(conf, err, sizeof(err)) < 0)
		return -EINVAL;
	nx_init(&x, conf);
	memset(out, 0, sizeof(*out));
	out->id = id;
	out->kind = kind_of(id);
	int64_t dt = x.c.base_time_ms + time_off(&x, id);
	switch (out->kind) {
	case WEIR_NEXMARK_PERSON: {
		nx_person v;
		weir_nexmark_person *p = &out->person;
		gen_person(&x, id, buf, &v);
		p->id = v.id;
		cstr(p->name, sizeof(p->name), buf, v.name);
		cstr(p->email_address, sizeof(p->email_address), buf, v.email);
		cstr(p->credit_card, sizeof(p->credit_card), buf, v.cc);
		cstr(p->city, sizeof(p->city), buf, v.city);
		cstr(p->state, sizeof(p->state), buf, v.state);
		p->date_time = dt;
		cstr(p->extra, sizeof(p->extra), buf, v.extra);
		break;
	}
	case WEIR_NEXMARK_AUCTION: {
		nx_auction v;
		weir_nexmark_auction *a = &out->auction;
		gen_auction(&x, id, dt, buf, &v);
		a->id = v.id;
		cstr(a->item_name, sizeof(a->item_name), buf, v.item);
		cstr(a->description, sizeof(a->description), buf, v.desc);
		a->initial_bid = v.initial_bid;
		a->reserve = v.reserve;
		a->date_time = dt;
		a->expires = v.expires;
		a->seller = v.seller;
		a->category = v.category;
		cstr(a->extra, sizeof(a->extra), buf, v.extra);
		break;
	}
	case WEIR_NEXMARK_BID: {
		nx_bid v;
		weir_nexmark_bid *b = &out->bid;
		gen_bid(&x, id, buf, &v);
		b->auction = v.auction;
		b->bidder = v.bidder;
		b->price = v.price;
		cstr(b->channel, sizeof(b->channel), buf, v.channel);
		cstr(b->url, sizeof(b->url), buf, v.url);
		b->date_time = dt;
		cstr(b->extra, sizeof(b->extra), buf, v.extra);
		break;
	}
	}
	return 0;
}

uint64_t weir_nexmark_id_at(const weir_nexmark_conf *conf, uint64_t pos)
{
	uint64_t g = conf->ooo_group > 1 ? conf->ooo_group : 1;
	uint64_t id = g <= 1 ? pos : pos - pos % g + (pos % g) * (953 % g) % g;
	return conf->events && id >= conf->events ? UINT64_MAX : id;
}

/* ---- options ------------------------------------------------------------------------------- */

enum { OPT_EVENTS, OPT_EVENT_RATE, OPT_EMIT_RATE, OPT_OOO, OPT_SEED, NOPTS };
static const char *const opt_name[NOPTS] = { "events", "event-rate", "emit-rate",
					     "ooo-group", "seed" };

/* Which option argv[i] is (-1: none); *inl gets an inline "=VALUE". */
static int opt_match(const char *a, const char **inl)
{
	*inl = NULL;
	if (strncmp(a, "--", 2))
		return -1;
	a += 2;
	for (int k = 0; k < NOPTS; k++) {
		size_t n = strlen(opt_name[k]);
		if (strncmp(a, opt_name[k], n))
			continue;
		if (a[n] == 0)
			return k;
		if (a[n] == '=') {
			*inl = a + n + 1;
			return k;
		}
	}
	return -1;
}

static bool parse_u64(const char *v, uint64_t *out)
{
	uint64_t x = 0;
	if (!*v)
		return false;
	for (const char *p = v; *p; p++) {
		if (*p < '0' || *p > '9' || x > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return false;
		x = x * 10 + (uint64_t)(*p - '0');
	}
	*out = x;
	return true;
}

static int opt_value(weir_nexmark_conf *c, int k, const char *v, char *err, size_t errlen)
{
	uint64_t u;
	switch (k) {
	case OPT_EVENTS:
		if (!parse_u64(v, &u)) {
			snprintf(err, errlen, "--events: '%s' is not a whole number of events "
				 "(0 = unbounded)", v);
			return -EINVAL;
		}
		c->events = u;
		return 0;
	case OPT_EVENT_RATE:
		if (!parse_u64(v, &u) || u == 0) {
			snprintf(err, errlen, "--event-rate: '%s' is not a whole number of events "
				 "per second >= 1", v);
			return -EINVAL;
		}
		c->event_rate = u;
		return 0;
	case OPT_EMIT_RATE: {
		char *end;
		errno = 0;
		double d = strtod(v, &end);
		if (!*v || *end || errno || !(d >= 0) || isinf(d)) {
			snprintf(err, errlen, "--emit-rate: '%s' is not a number of events per "
				 "second >= 0 (0 = as fast as possible)", v);
			return -EINVAL;
		}
		c->emit_rate = d;
		return 0;
	}
	case OPT_OOO:
		if (!parse_u64(v, &u) || u == 0 || u >= (1u << 31)) {
			snprintf(err, errlen, "--ooo-group: '%s' is not a group size in [1, 2^31)",
				 v);
			return -EINVAL;
		}
		if (u > 1 && u % 953 == 0) {
			snprintf(err, errlen, "--ooo-group: '%s' is a multiple of 953, so n * 953 "
				 "mod %s would not permute a group", v, v);
			return -EINVAL;
		}
		c->ooo_group = (uint32_t)u;
		return 0;
	case OPT_SEED:
		if (!parse_u64(v, &u)) {
			snprintf(err, errlen, "--seed: '%s' is not a whole number in [0, 2^64)", v);
			return -EINVAL;
		}
		c->seed = u;
		return 0;
	}
	return -EINVAL;
}

int weir_nexmark_options(int *argc, char **argv, weir_nexmark_conf *c, char *err,
			 size_t errlen)
{
	weir_nexmark_conf nc = *c;
	int n = *argc, i, o;

	if (errlen)
		err[0] = 0;
	/* Parse everything first: argv stays as it was on error. */
	for (i = 1; i < n && strcmp(argv[i], "--"); i++) {
		const char *v;
		int k = opt_match(argv[i], &v);
		if (k < 0)
			continue;
		if (!v) {
			if (i + 1 >= n) {
				snprintf(err, errlen, "--%s: missing value", opt_name[k]);
				return -EINVAL;
			}
			v = argv[++i];
		}
		if (opt_value(&nc, k, v, err, errlen) < 0)
			return -EINVAL;
	}
	for (i = o = 1; i < n; i++) {
		const char *v;
		int k = -1;
		if (!strcmp(argv[i], "--")) {
			while (i < n)
				argv[o++] = argv[i++];
			break;
		}
		k = opt_match(argv[i], &v);
		if (k < 0)
			argv[o++] = argv[i];
		else if (!v)
			i++;
	}
	if (n > 0) {
		argv[o] = NULL;
		*argc = o;
	}
	*c = nc;
	return 0;
}

/* ---- the CSV dump ---------------------------------------------------------------------------- */

static char *put_i64(char *p, int64_t v)
{
	if (v < 0) {
		*p++ = '-';
		return put_u64(p, 0 - (uint64_t)v);
	}
	return put_u64(p, (uint64_t)v);
}

static char *put_csv_str(char *p, const char *buf, weir_str v)
{
	return p + csv_escape(buf + v.off, v.len, p);
}

/* mkdir -p; 0 or -errno. */
static int make_dirs(const char *dir)
{
	char p[4096];
	size_t n = strlen(dir);
	if (n == 0 || n >= sizeof(p))
		return n ? -ENAMETOOLONG : -ENOENT;
	memcpy(p, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (p[i] != '/' && p[i] != 0)
			continue;
		char c = p[i];
		p[i] = 0;
		if (mkdir(p, 0777) < 0 && errno != EEXIST)
			return -errno;
		p[i] = c;
	}
	struct stat st;
	if (stat(dir, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static const char *const csv_file[3] = { "person.csv", "auction.csv", "bid.csv" };
static const char *const csv_header[3] = {
	"id,name,email_address,credit_card,city,state,date_time,extra\n",
	"id,item_name,description,initial_bid,reserve,date_time,expires,seller,category,"
	"extra\n",
	"auction,bidder,price,channel,url,date_time,extra\n",
};

int weir_nexmark_write_csv(const weir_nexmark_conf *conf, const char *dir, char *err,
			   size_t errlen)
{
	FILE *f[3] = { NULL, NULL, NULL };
	char path[3][4200];
	void *tables = NULL;
	nx_ctx x;
	int rc;

	if (!conf || !dir || (rc = nx_check(conf, err, errlen)) < 0) {
		if (!conf || !dir)
			snprintf(err, errlen, "no configuration or directory");
		return -EINVAL;
	}
	if (!conf->events) {
		snprintf(err, errlen, "a dump needs a bounded run (events > 0)");
		return -EINVAL;
	}
	if ((rc = make_dirs(dir)) < 0) {
		snprintf(err, errlen, "cannot create directory '%s': %s", dir, strerror(-rc));
		return rc;
	}
	nx_init(&x, conf);
	if (nx_tables_new(&x, &tables) < 0) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (int k = 0; k < 3; k++) {
		snprintf(path[k], sizeof(path[k]), "%s/%s", dir, csv_file[k]);
		f[k] = fopen(path[k], "w");
		if (!f[k]) {
			rc = -errno;
			snprintf(err, errlen, "cannot create '%s': %s", path[k], strerror(-rc));
			goto out;
		}
		setvbuf(f[k], NULL, _IOFBF, 1 << 20);
		fputs(csv_header[k], f[k]);
	}
	/* One row: numbers < 21 bytes each, strings at most 2n + 2. */
	char buf[MAX_AUCTION_EXTRA + MAX_ITEM + MAX_DESC + OVERCOPY], line[4096];
	for (uint64_t pos = 0; pos < x.end_pos; pos++) {
		uint64_t id = id_at(&x, pos);
		if (id >= x.limit)
			continue;
		int64_t dt = x.c.base_time_ms + time_off(&x, id);
		weir_nexmark_kind k = kind_of(id);
		char *p = line;
		if (k == WEIR_NEXMARK_PERSON) {
			nx_person v;
			gen_person(&x, id, buf, &v);
			p = put_i64(p, v.id);
			*p++ = ',';
			p = put_csv_str(p, buf, v.name);
			*p++ = ',';
			p = put_csv_str(p, buf, v.email);
			*p++ = ',';
			p = put_csv_str(p, buf, v.cc);
			*p++ = ',';
			p = put_csv_str(p, buf, v.city);
			*p++ = ',';
			p = put_csv_str(p, buf, v.state);
			*p++ = ',';
			p = put_i64(p, dt);
			*p++ = ',';
			p = put_csv_str(p, buf, v.extra);
		} else if (k == WEIR_NEXMARK_AUCTION) {
			nx_auction v;
			gen_auction(&x, id, dt, buf, &v);
			p = put_i64(p, v.id);
			*p++ = ',';
			p = put_csv_str(p, buf, v.item);
			*p++ = ',';
			p = put_csv_str(p, buf, v.desc);
			*p++ = ',';
			p = put_i64(p, v.initial_bid);
			*p++ = ',';
			p = put_i64(p, v.reserve);
			*p++ = ',';
			p = put_i64(p, dt);
			*p++ = ',';
			p = put_i64(p, v.expires);
			*p++ = ',';
			p = put_i64(p, v.seller);
			*p++ = ',';
			p = put_i64(p, v.category);
			*p++ = ',';
			p = put_csv_str(p, buf, v.extra);
		} else {
			nx_bid v;
			gen_bid(&x, id, buf, &v);
			p = put_i64(p, v.auction);
			*p++ = ',';
			p = put_i64(p, v.bidder);
			*p++ = ',';
			p = put_i64(p, v.price);
			*p++ = ',';
			p = put_csv_str(p, buf, v.channel);
			*p++ = ',';
			p = put_csv_str(p, buf, v.url);
			*p++ = ',';
			p = put_i64(p, dt);
			*p++ = ',';
			p = put_csv_str(p, buf, v.extra);
		}
		*p++ = '\n';
		if (fwrite(line, 1, (size_t)(p - line), f[k]) != (size_t)(p - line)) {
			rc = -(errno ? errno : EIO);
			snprintf(err, errlen, "cannot write '%s': %s", path[k], strerror(-rc));
			goto out;
		}
	}
	rc = 0;
out:
	for (int k = 0; k < 3; k++) {
		if (!f[k])
			continue;
		errno = 0;
		if (fclose(f[k]) != 0 && rc == 0) {
			rc = -(errno ? errno : EIO);
			snprintf(err, errlen, "cannot write '%s': %s", path[k], strerror(-rc));
		}
	}
	free(tables);
	return rc;
}

/* ---- the source operator ------------------------------------------------------------------------ */

/* One subtask; owner core only. */
typedef struct nx_state {
	nx_ctx x;
	void *tables;           /* the pool and channels of x */
	src_split *splits;      /* work left, in no particular order */
	int nsplits;
	rate_gate gate;
	bool want[3];           /* port has consumers */
	int primary;            /* most frequent consumed kind, -1: none */
	uint64_t fingerprint;
	uint64_t max_id;        /* greatest id made, if have_max: watermark */
	bool have_max;
	uint64_t max_positions; /* per produce() call */
	weir_batch *b[3];       /* batches being filled, NULL: none */
} nx_state;

static int nx_open(task *t)
{
	/* The node's configuration: a weir_nexmark_conf (defaults resolved). */
	const weir_nexmark_conf *c = t->node->conf;
	nx_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	t->st = s;
	nx_init(&s->x, c);
	if (nx_tables_new(&s->x, &s->tables) < 0)
		return -ENOMEM;
	s->fingerprint = nx_fingerprint(&s->x);
	s->primary = -1;
	for (int k = 0; k < 3; k++) {
		s->want[k] = k < t->nports && t->nout[k] > 0;
		if (s->want[k])
			s->primary = k; /* person < auction < bid in frequency */
	}
	s->max_positions = (uint64_t)t->cfg->batch_rows * 64;
	rate_gate_init(&s->gate, rate_min(c->emit_rate, t->node->rate), t->parallelism);
	s->splits = calloc(1, sizeof(*s->splits));
	if (!s->splits)
		return -ENOMEM;
	src_split sp = { .block_rows = t->cfg->batch_rows, .stride = (uint64_t)t->parallelism,
			 .end = s->x.end_pos, .line = s->fingerprint };
	sp.pos = (uint64_t)t->subtask * sp.block_rows;
	if (sp.pos < sp.end)
		s->splits[s->nsplits++] = sp;
	return 0;
}

static void nx_close(task *t)
{
	nx_state *s = t->st;
	if (!s)
		return;
	for (int k = 0; k < 3; k++)
		if (s->b[k])
			batch_release(s->b[k]);
	free(s->splits);
	free(s->tables);
	free(s);
}

static int nx_snapshot(task *t, int64_t id, snap_buf *out)
{
	nx_state *s = t->st;
	(void)id;
	return src_splits_write(out, SRC_BLOB_NEXMARK, s->splits, s->nsplits);
}

static int nx_restore(task *t, const op_restore *r)
{
	nx_state *s = t->st;
	src_split *sp;
	int n;
	bool stream;

	if (r->n == 0)
		return 0;
	int rc = src_splits_take(r, SRC_BLOB_NEXMARK, t->subtask, t->parallelism, &sp, &n,
				 &stream);
	if (rc < 0 || stream) {
		wlog(LOG_ERROR, "nexmark source '%s': the saved position is not one of a "
		     "Nexmark source", t->node->name);
		free(sp);
		return rc < 0 ? rc : -EINVAL;
	}
	for (int i = 0; i < n; i++)
		if (sp[i].line != s->fingerprint) {
			wlog(LOG_ERROR, "nexmark source '%s': the checkpoint was taken with "
			     "other generator options (events, event rate, ooo group, seed "
			     "or base time); run with the same ones to resume", t->node->name);
			free(sp);
			return -EINVAL;
		}
	free(s->splits);
	s->splits = sp;
	s->nsplits = n;
	s->have_max = false;
	return 0;
}

/* Make event id (of kind k, event time dt) in its batch; true when that
 * batch became full and went out. */
static inline bool put_event(task *t, nx_state *s, weir_nexmark_kind k, uint64_t id,
			     int64_t dt)
{
	weir_batch *b = s->b[k];
	if (!b)
		b = s->b[k] = batch_alloc(t->node->schema[k], MAX_HEAP[k] + OVERCOPY);
	uint32_t r = b->rows, at = b->heap_used;
	char *buf = b->heap + at;
	uint32_t used;

	switch (k) {
	case WEIR_NEXMARK_PERSON: {
		nx_person v;
		used = gen_person(&s->x, id, buf, &v);
		weir_col_i64(b, WEIR_PERSON_ID)[r] = v.id;
		weir_col_str(b, WEIR_PERSON_NAME)[r] = (weir_str){ at + v.name.off, v.name.len };
		weir_col_str(b, WEIR_PERSON_EMAIL_ADDRESS)[r] =
			(weir_str){ at + v.email.off, v.email.len };
		weir_col_str(b, WEIR_PERSON_CREDIT_CARD)[r] = (weir_str){ at + v.cc.off, v.cc.len };
		weir_col_str(b, WEIR_PERSON_CITY)[r] = (weir_str){ at + v.city.off, v.city.len };
		weir_col_str(b, WEIR_PERSON_STATE)[r] = (weir_str){ at + v.state.off, v.state.len };
		weir_col_i64(b, WEIR_PERSON_DATE_TIME)[r] = dt;
		weir_col_str(b, WEIR_PERSON_EXTRA)[r] = (weir_str){ at + v.extra.off, v.extra.len };
		break;
	}
	case WEIR_NEXMARK_AUCTION: {
		nx_auction v;
		used = gen_auction(&s->x, id, dt, buf, &v);
		weir_col_i64(b, WEIR_AUCTION_ID)[r] = v.id;
		weir_col_str(b, WEIR_AUCTION_ITEM_NAME)[r] = (weir_str){ at + v.item.off, v.item.len };
		weir_col_str(b, WEIR_AUCTION_DESCRIPTION)[r] =
			(weir_str){ at + v.desc.off, v.desc.len };
		weir_col_i64(b, WEIR_AUCTION_INITIAL_BID)[r] = v.initial_bid;
		weir_col_i64(b, WEIR_AUCTION_RESERVE)[r] = v.reserve;
		weir_col_i64(b, WEIR_AUCTION_DATE_TIME)[r] = dt;
		weir_col_i64(b, WEIR_AUCTION_EXPIRES)[r] = v.expires;
		weir_col_i64(b, WEIR_AUCTION_SELLER)[r] = v.seller;
		weir_col_i64(b, WEIR_AUCTION_CATEGORY)[r] = v.category;
		weir_col_str(b, WEIR_AUCTION_EXTRA)[r] = (weir_str){ at + v.extra.off, v.extra.len };
		break;
	}
	default: {
		nx_bid v;
		used = gen_bid(&s->x, id, buf, &v);
		weir_col_i64(b, WEIR_BID_AUCTION)[r] = v.auction;
		weir_col_i64(b, WEIR_BID_BIDDER)[r] = v.bidder;
		weir_col_i64(b, WEIR_BID_PRICE)[r] = v.price;
		weir_col_str(b, WEIR_BID_CHANNEL)[r] = (weir_str){ at + v.channel.off, v.channel.len };
		weir_col_str(b, WEIR_BID_URL)[r] = (weir_str){ at + v.url.off, v.url.len };
		weir_col_i64(b, WEIR_BID_DATE_TIME)[r] = dt;
		weir_col_str(b, WEIR_BID_EXTRA)[r] = (weir_str){ at + v.extra.off, v.extra.len };
		break;
	}
	}
	b->ts[r] = dt;
	b->rows = r + 1;
	b->heap_used = at + used;
	if (b->rows == b->capacity || b->heap_cap - b->heap_used < MAX_HEAP[k] + OVERCOPY) {
		task_emit(t, (int)k, b);
		s->b[k] = NULL;
		return true;
	}
	return false;
}

/*
 * Make the events of positions [pos, pos + n) of one block.  Returns the
 * positions done: n, or fewer when a batch of the primary kind went out
 * (*full), which ends the produce() call.
 */
static uint64_t nx_run(task *t, nx_state *s, uint64_t pos, uint64_t n, bool *full)
{
	const nx_ctx *x = &s->x;
	const uint64_t rate = x->c.event_rate, g = x->c.ooo_group;
	const int64_t base = x->c.base_time_ms;
	uint64_t i, max_id = 0;
	bool any = false;

	if (g <= 1) {
		/* In order: positions are ids, and the split ends at x->limit.
		 * Step event time (quotient and remainder) and the type. */
		uint64_t id = pos, q, rem;
		const uint64_t qstep = 1000 / rate, rstep = 1000 % rate;
		unsigned __int128 v = (unsigned __int128)pos * 1000;
		q = (uint64_t)(v / rate);
		rem = (uint64_t)(v % rate);
		uint32_t r50 = (uint32_t)(pos % 50);
		*full = false;
		for (i = 0; i < n; i++, id++) {
			weir_nexmark_kind k = r50 == 0 ? WEIR_NEXMARK_PERSON
				: r50 < 4 ? WEIR_NEXMARK_AUCTION : WEIR_NEXMARK_BID;
			int64_t dt = base + (int64_t)q;
			if (++r50 == 50)
				r50 = 0;
			q += qstep;
			rem += rstep;
			if (rem >= rate) {
				rem -= rate;
				q++;
			}
			if (!s->want[k])
				continue;
			if (put_event(t, s, k, id, dt) && (int)k == s->primary) {
				*full = true;
				i++;
				break;
			}
		}
		if (i && (!s->have_max || pos + i - 1 > s->max_id)) {
			s->max_id = pos + i - 1;
			s->have_max = true;
		}
		return i;
	}
	/* Out of order: position p carries id (p div g) * g + (p * 953 mod g),
	 * the second term stepped by 953 mod g. */
	const uint64_t step = 953 % g;
	uint64_t gbase = pos - pos % g, r = (pos % g) * step % g, m = pos % g;
	*full = false;
	for (i = 0; i < n; i++) {
		uint64_t id = gbase + r;
		if (++m == g) {
			m = 0;
			r = 0;
			gbase += g;
		} else if ((r += step) >= g) {
			r -= g;
		}
		if (id >= x->limit)
			continue;
		if (!any || id > max_id)
			max_id = id;
		any = true;
		weir_nexmark_kind k = kind_of(id);
		if (!s->want[k])
			continue;
		if (put_event(t, s, k, id, base + time_off(x, id)) && (int)k == s->primary) {
			*full = true;
			i++;
			break;
		}
	}
	if (any && (!s->have_max || max_id > s->max_id)) {
		s->max_id = max_id;
		s->have_max = true;
	}
	return i;
}

static int nx_produce(task *t)
{
	nx_state *s = t->st;

	if (!s->nsplits)
		return -1;
	uint32_t allow = gate_allow(t, &s->gate);
	if (!allow)
		return 0;
	uint64_t budget = allow < s->max_positions ? allow : s->max_positions, done = 0;
	bool full = false;
	while (done < budget && s->nsplits && !full) {
		/* The split with the smallest position: restored splits are read
		 * in order (merged block by block), so event time keeps rising. */
		src_split *sp = &s->splits[0];
		for (int i = 1; i < s->nsplits; i++)
			if (s->splits[i].pos < sp->pos)
				sp = &s->splits[i];
		uint64_t n = budget - done;
		if (n > sp->end - sp->pos)
			n = sp->end - sp->pos;
		if (sp->block_rows && n > sp->block_rows - sp->pos % sp->block_rows)
			n = sp->block_rows - sp->pos % sp->block_rows;
		uint64_t used = nx_run(t, s, sp->pos, n, &full);
		done += used;
		sp->pos += used;
		if (sp->block_rows && sp->pos % sp->block_rows == 0)
			sp->pos = sp->end - sp->pos <= (sp->stride - 1) * sp->block_rows
					  ? sp->end
					  : sp->pos + (sp->stride - 1) * sp->block_rows;
		if (sp->pos >= sp->end)
			*sp = s->splits[--s->nsplits];
	}
	rate_gate_take(&s->gate, (uint32_t)done);
	/* Everything made goes out now: positions are exact between calls. */
	for (int k = 0; k < 3; k++)
		if (s->b[k] && s->b[k]->rows) {
			task_emit(t, k, s->b[k]);
			s->b[k] = NULL;
		}
	if (s->have_max)
		task_emit_watermark(t, s->x.c.base_time_ms + time_off(&s->x, s->max_id) -
					       WEIR_NEXMARK_WATERMARK_DELAY_MS);
	return 1;
}

const op_ops op_nexmark = {
	.kind = "nexmark", .open = nx_open, .produce = nx_produce,
	.snapshot = nx_snapshot, .restore = nx_restore, .close = nx_close,
};

weir_stream *weir_source_nexmark(weir_env *env, const char *name, const weir_nexmark_conf *conf)
{
	const char *nm = name && *name ? name : "nexmark";
	char err[160];
	static const char *const spec[3] = { WEIR_NEXMARK_PERSON_SCHEMA,
					     WEIR_NEXMARK_AUCTION_SCHEMA,
					     WEIR_NEXMARK_BID_SCHEMA };
	const weir_schema *sc[3];

	if (!env)
		return NULL;
	if (!conf) {
		env_error(env, "nexmark source '%s': no configuration", nm);
		return NULL;
	}
	if (nx_check(conf, err, sizeof(err)) < 0) {
		env_error(env, "nexmark source '%s': %s", nm, err);
		return NULL;
	}
	for (int k = 0; k < 3; k++)
		if (!(sc[k] = weir_schema_parse(env, spec[k])))
			return NULL;
	weir_nexmark_conf *c = calloc(1, sizeof(*c));
	if (!c) {
		env_error(env, "out of memory");
		return NULL;
	}
	nx_ctx x;
	nx_init(&x, conf);
	*c = x.c;
	weir_stream *person = stream_add_source(env, nm, "nexmark", &op_nexmark, sc[0], c,
						conf->events > 0);
	/* The auction and bid ports, numbered as weir_nexmark_kind. */
	if (!person || !stream_add_port(person, sc[1]) || !stream_add_port(person, sc[2]))
		return NULL;
	return person;
}

weir_stream *weir_nexmark_stream(weir_stream *source, weir_nexmark_kind kind)
{
	if (!source || stream_node(source)->ops != &op_nexmark || kind < WEIR_NEXMARK_PERSON ||
	    kind > WEIR_NEXMARK_BID)
		return NULL;
	return stream_port(source, (int)kind);
}
