/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The reliable datagram protocol (net/rdp.c) between two endpoints joined
 * by a simulated link in memory, in simulated time: random loss (1%, 10%),
 * duplication, reordering (random extra delay), delay, corrupted datagrams,
 * a partition then recovery, sequence numbers wrapping.  Frames of 0 bytes
 * to several MB go both ways; every frame must arrive exactly once, in
 * order, intact, and every cookie come back through sent().  Also: flow
 * control bounds what is in flight with a receiver that polls rarely, and
 * a peer that stops answering is reported lost after the give-up time.
 * Seeds are fixed (RDP_SEED overrides) and printed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rdp.h"

#define MS 1000000ull
#define US 1000ull

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

typedef struct pkt {
	uint64_t at;
	int to;
	uint32_t n;
	uint8_t b[1500];
} pkt;

typedef struct link {
	pkt *q;
	int cap, len, peak[2];
	uint64_t rng;
	double loss, dup, corrupt;
	uint64_t delay, jitter;
	bool down;
	uint64_t sent, dropped, corrupted, dups;
} link;

typedef struct node {
	rdp *r;
	int id;
	/* sender */
	uint32_t nframes, next_send, sent_back;
	uint64_t seed;
	/* receiver: frames from the other node */
	uint32_t next_recv;
	uint32_t bad;
	bool lost;
	int lost_err;
	uint32_t slow_every; /* input only every n-th tick (0: every tick) */
} node;

typedef struct sim {
	link l;
	node n[2];
	uint64_t now;
} sim;

static uint32_t frame_size(uint64_t seed, uint32_t i)
{
	uint64_t x = mix(seed ^ (i * 0x1000193ull));
	if (i == 3 || i == 70)
		return 3u * 1024 * 1024 + (uint32_t)(x % 1000000); /* several MB */
	switch (x % 10) {
	case 0: return 0;
	case 1: case 2: return (uint32_t)(x >> 8) % 100;
	case 3: case 4: case 5: return (uint32_t)(x >> 8) % 4096;
	case 6: case 7: return 1400 + (uint32_t)(x >> 8) % 3000; /* around the mss */
	default: return (uint32_t)(x >> 8) % 70000;
	}
}

static void frame_fill(uint64_t seed, uint32_t i, uint8_t *b, uint32_t n)
{
	uint64_t x = mix(seed + i);
	for (uint32_t k = 0; k < n; k++) {
		if ((k & 7) == 0)
			x = mix(x);
		b[k] = (uint8_t)(x >> ((k & 7) * 8));
	}
}

static uint64_t rnd(link *l) { return l->rng = mix(l->rng); }
static double unif(link *l) { return (double)(rnd(l) >> 11) / 9007199254740992.0; }

static void link_put(link *l, int to, const uint8_t *b, uint32_t n, uint64_t now)
{
	if (l->len == l->cap) {
		l->dropped++;
		return;
	}
	pkt *p = &l->q[l->len++];
	p->to = to;
	p->n = n;
	memcpy(p->b, b, n);
	p->at = now + l->delay + (l->jitter ? rnd(l) % l->jitter : 0);
	if (unif(l) < l->corrupt) {
		p->b[rnd(l) % n] ^= (uint8_t)(1 + rnd(l) % 255);
		l->corrupted++;
	}
	int c = 0;
	for (int i = 0; i < l->len; i++)
		c += l->q[i].to == to;
	if (c > l->peak[to])
		l->peak[to] = c;
}

typedef struct ectx {
	sim *s;
	int from;
} ectx;

static int emit(void *ctx, int peer, const struct iovec *iov, int iovcnt, void *cookie)
{
	(void)cookie;
	ectx *e = ctx;
	link *l = &e->s->l;
	uint8_t buf[1500];
	uint32_t n = 0;
	for (int i = 0; i < iovcnt; i++) {
		cr_assert_leq(n + iov[i].iov_len, sizeof(buf), "datagram over the MTU");
		memcpy(buf + n, iov[i].iov_base, iov[i].iov_len);
		n += (uint32_t)iov[i].iov_len;
	}
	cr_assert_eq(peer, 1 - e->from);
	if (l->len == l->cap)
		return -EAGAIN; /* the device queue is full */
	l->sent++;
	if (l->down || unif(l) < l->loss) {
		l->dropped++;
		return 0;
	}
	link_put(l, peer, buf, n, e->s->now);
	if (unif(l) < l->dup) {
		l->dups++;
		link_put(l, peer, buf, n, e->s->now);
	}
	return 0;
}

static void on_deliver(void *ctx, int peer, const void *frame, size_t len)
{
	node *me = ctx;
	cr_assert_eq(peer, 1 - me->id);
	uint64_t seed = 1000 + (uint64_t)peer; /* the sender's seed */
	uint32_t i = me->next_recv++;
	uint32_t want = frame_size(seed, i);
	if (len != want) {
		me->bad++;
		cr_log_error("node %d frame %u: %zu bytes, want %u", me->id, i, len, want);
		return;
	}
	uint8_t *b = malloc(want ? want : 1);
	frame_fill(seed, i, b, want);
	if (memcmp(b, frame, len)) {
		me->bad++;
		cr_log_error("node %d frame %u: content differs", me->id, i);
	}
	free(b);
}

static void on_sent(void *ctx, void *cookie)
{
	node *me = ctx;
	me->sent_back++;
	free(cookie);
}

static void on_lost(void *ctx, int peer, int err, const char *why)
{
	node *me = ctx;
	(void)peer;
	cr_log_info("node %d: peer lost: %s", me->id, why);
	me->lost = true;
	me->lost_err = err;
}

static void sim_init(sim *s, uint64_t seed, const rdp_conf *base, uint32_t nframes)
{
	memset(s, 0, sizeof(*s));
	s->l.cap = 8192;
	s->l.q = malloc(sizeof(pkt) * (size_t)s->l.cap);
	s->l.rng = seed;
	s->now = 1000 * MS;
	for (int i = 0; i < 2; i++) {
		node *n = &s->n[i];
		n->id = i;
		n->nframes = nframes;
		n->seed = 1000 + (uint64_t)i;
		rdp_conf c = base ? *base : (rdp_conf){ 0 };
		c.self = i;
		c.npeers = 2;
		c.attempt = 7;
		rdp_cb cb = { .ctx = n, .deliver = on_deliver, .sent = on_sent, .lost = on_lost };
		cr_assert_eq(rdp_new(&c, &cb, &n->r), 0);
	}
	fprintf(stderr, "rdp sim seed %#llx\n", (unsigned long long)seed);
}

static void sim_free(sim *s)
{
	for (int i = 0; i < 2; i++)
		rdp_free(s->n[i].r);
	free(s->l.q);
}

static void feed(node *n)
{
	while (n->next_send < n->nframes) {
		uint32_t len = frame_size(n->seed, n->next_send);
		uint8_t *b = malloc(len ? len : 1);
		frame_fill(n->seed, n->next_send, b, len);
		/* two iovecs, like the transport's header + payload */
		uint32_t cut = len / 3;
		struct iovec iov[2] = { { b, cut }, { b + cut, len - cut } };
		int rc = rdp_send_frame(n->r, 1 - n->id, iov, 2, b);
		if (rc == -EAGAIN) {
			free(b);
			return;
		}
		cr_assert_eq(rc, 0);
		n->next_send++;
	}
}

/* One tick: deliver what is due, poll both ends, feed frames. */
static void step(sim *s, uint64_t tick, bool run[2], uint64_t ticks)
{
	s->now += tick;
	link *l = &s->l;
	for (int i = 0; i < l->len;) {
		pkt *p = &l->q[i];
		node *to = &s->n[p->to];
		bool slow_skip = to->slow_every && ticks % to->slow_every;
		if (p->at > s->now || !run[p->to] || slow_skip) {
			i++;
			continue;
		}
		rdp_input(to->r, p->b, p->n, s->now);
		*p = l->q[--l->len];
	}
	for (int k = 0; k < 2; k++) {
		if (!run[k])
			continue;
		node *n = &s->n[k];
		if (n->slow_every && ticks % n->slow_every)
			continue;
		feed(n);
		ectx e = { s, k };
		rdp_poll(n->r, s->now, emit, &e);
	}
}

static bool done(const sim *s)
{
	for (int i = 0; i < 2; i++)
		if (s->n[i].next_recv < s->n[1 - i].nframes ||
		    s->n[i].sent_back < s->n[i].nframes)
			return false;
	return true;
}

/* Run until every frame is through both ways (or the sim deadline). */
static uint64_t run_to_end(sim *s, uint64_t tick, uint64_t part_at, uint64_t part_len)
{
	bool run[2] = { true, true };
	uint64_t start = s->now, ticks = 0;
	while (!done(s) && s->now - start < 120000 * MS) {
		s->l.down = part_len && s->now - start >= part_at &&
			    s->now - start < part_at + part_len;
		step(s, tick, run, ticks++);
		cr_assert(!s->n[0].lost && !s->n[1].lost, "a peer was reported lost");
	}
	return s->now - start;
}

static void check_all(sim *s, const char *what, uint64_t took)
{
	for (int i = 0; i < 2; i++) {
		const rdp_stats *st = rdp_get_stats(s->n[i].r);
		fprintf(stderr,
			"%s: node %d got %u/%u frames in %.1f ms sim; tx %llu data, %llu rto, %llu fast, "
			"%llu acks; rx %llu ok, %llu bad, %llu dup, %llu window; link %llu sent, "
			"%llu dropped, %llu corrupted, %llu dups\n",
			what, i, s->n[i].next_recv, s->n[1 - i].nframes, took / 1e6,
			(unsigned long long)st->tx_data, (unsigned long long)st->tx_rexmit,
			(unsigned long long)st->tx_fast, (unsigned long long)st->tx_ack,
			(unsigned long long)st->rx_datagrams, (unsigned long long)st->rx_bad,
			(unsigned long long)st->rx_dup, (unsigned long long)st->rx_window,
			(unsigned long long)s->l.sent, (unsigned long long)s->l.dropped,
			(unsigned long long)s->l.corrupted, (unsigned long long)s->l.dups);
		cr_assert_eq(s->n[i].bad, 0, "%s: frames damaged", what);
		cr_assert_eq(s->n[i].next_recv, s->n[1 - i].nframes, "%s: frames missing", what);
		cr_assert_eq(s->n[i].sent_back, s->n[i].nframes, "%s: cookies missing", what);
		cr_assert_eq(rdp_pending(s->n[i].r, 1 - i), 0);
		if (s->l.corrupted)
			cr_assert_gt(rdp_get_stats(s->n[0].r)->rx_bad + rdp_get_stats(s->n[1].r)->rx_bad, 0);
	}
	/* After the last frame, a few idle ticks deliver nothing more: the
	 * retransmitted duplicates still in the link are suppressed. */
	bool run[2] = { true, true };
	s->l.loss = s->l.dup = s->l.corrupt = 0;
	for (int k = 0; k < 2000; k++)
		step(s, 100 * US, run, (uint64_t)k);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(s->n[i].next_recv, s->n[1 - i].nframes, "%s: a frame delivered twice", what);
}

static uint64_t seed_for(uint64_t dflt)
{
	const char *e = getenv("RDP_SEED");
	return e ? strtoull(e, NULL, 0) : dflt;
}

Test(rdp, clean_link)
{
	sim s;
	sim_init(&s, seed_for(0x5eed0001), NULL, 200);
	s.l.delay = 200 * US;
	check_all(&s, "clean", run_to_end(&s, 50 * US, 0, 0));
	sim_free(&s);
}

Test(rdp, loss_1_percent)
{
	sim s;
	sim_init(&s, seed_for(0x5eed0002), NULL, 200);
	s.l.delay = 500 * US;
	s.l.loss = 0.01;
	check_all(&s, "loss 1%", run_to_end(&s, 50 * US, 0, 0));
	sim_free(&s);
}

Test(rdp, loss_10_percent)
{
	sim s;
	sim_init(&s, seed_for(0x5eed0003), NULL, 200);
	s.l.delay = 500 * US;
	s.l.loss = 0.10;
	check_all(&s, "loss 10%", run_to_end(&s, 50 * US, 0, 0));
	sim_free(&s);
}

Test(rdp, dup_reorder_delay_corrupt)
{
	sim s;
	sim_init(&s, seed_for(0x5eed0004), NULL, 200);
	s.l.delay = 2 * MS;
	s.l.jitter = 3 * MS; /* reorders heavily */
	s.l.loss = 0.02;
	s.l.dup = 0.05;
	s.l.corrupt = 0.02;
	check_all(&s, "dup+reorder+corrupt", run_to_end(&s, 50 * US, 0, 0));
	sim_free(&s);
}

Test(rdp, partition_then_recovery)
{
	sim s;
	sim_init(&s, seed_for(0x5eed0005), NULL, 200);
	s.l.delay = 1 * MS;
	s.l.loss = 0.01;
	check_all(&s, "partition 300 ms", run_to_end(&s, 50 * US, 20 * MS, 300 * MS));
	sim_free(&s);
}

Test(rdp, sequence_numbers_wrap)
{
	sim s;
	rdp_conf c = { .isn = 0xffffff00u, .window = 256 };
	sim_init(&s, seed_for(0x5eed0006), &c, 120);
	s.l.delay = 300 * US;
	s.l.jitter = 300 * US;
	s.l.loss = 0.03;
	check_all(&s, "wrap", run_to_end(&s, 50 * US, 0, 0));
	sim_free(&s);
}

Test(rdp, flow_control_with_slow_receiver)
{
	sim s;
	rdp_conf c = { .window = 128 };
	sim_init(&s, seed_for(0x5eed0007), &c, 100);
	s.n[1].nframes = 0;        /* one way: 0 -> 1 */
	s.n[1].slow_every = 100;   /* node 1 runs every 5 ms only */
	s.l.delay = 100 * US;
	uint64_t took = run_to_end(&s, 50 * US, 0, 0);
	const rdp_stats *st = rdp_get_stats(s.n[0].r);
	fprintf(stderr, "slow receiver: max in flight %u, link peak %d datagrams toward it, "
		"%llu rto retransmissions\n", st->max_inflight, s.l.peak[1],
		(unsigned long long)st->tx_rexmit);
	cr_assert_leq(st->max_inflight, 128);
	cr_assert_leq(rdp_get_stats(s.n[1].r)->max_reorder, 128);
	/* The link holds what is in flight plus the retransmissions of it. */
	cr_assert_leq(s.l.peak[1], 4 * 128, "flow control did not bound the link");
	check_all(&s, "slow receiver", took);
	sim_free(&s);
}

Test(rdp, peer_that_stops_answering_is_lost)
{
	sim s;
	rdp_conf c = { .give_up_ns = 500 * MS };
	sim_init(&s, seed_for(0x5eed0008), &c, 50);
	s.l.delay = 200 * US;
	s.n[1].nframes = 0;
	bool run[2] = { true, true };
	uint64_t ticks = 0;
	while (s.n[1].next_recv < 5)
		step(&s, 50 * US, run, ticks++);
	run[1] = false; /* node 1 dies */
	uint64_t died = s.now;
	while (!s.n[0].lost && s.now - died < 5000 * MS)
		step(&s, 50 * US, run, ticks++);
	fprintf(stderr, "lost after %.1f ms (give-up 500 ms)\n", (s.now - died) / 1e6);
	cr_assert(s.n[0].lost);
	cr_assert_eq(s.n[0].lost_err, -ETIMEDOUT);
	cr_assert_geq(s.now - died, 500 * MS - 10 * MS);
	cr_assert_leq(s.now - died, 500 * MS + 250 * MS);
	cr_assert_eq(s.n[0].sent_back, s.n[0].next_send, "cookies of a lost peer come back");
	struct iovec iov = { "x", 1 };
	cr_assert_eq(rdp_send_frame(s.n[0].r, 1, &iov, 1, NULL), -EPIPE);
	sim_free(&s);
}

Test(rdp, idle_peer_that_goes_silent_is_lost)
{
	sim s;
	rdp_conf c = { .give_up_ns = 300 * MS };
	sim_init(&s, seed_for(0x5eed0009), &c, 0);
	s.l.delay = 200 * US;
	bool run[2] = { true, true };
	uint64_t ticks = 0;
	for (int k = 0; k < 20000; k++) /* 1 s idle: keepalives keep both up */
		step(&s, 50 * US, run, ticks++);
	cr_assert(!s.n[0].lost && !s.n[1].lost, "keepalives did not keep idle peers");
	run[1] = false;
	uint64_t died = s.now;
	while (!s.n[0].lost && s.now - died < 5000 * MS)
		step(&s, 50 * US, run, ticks++);
	cr_assert(s.n[0].lost);
	cr_assert_leq(s.now - died, 300 * MS + 10 * MS);
	sim_free(&s);
}

Test(rdp, garbage_is_counted_and_dropped)
{
	sim s;
	sim_init(&s, seed_for(0x5eed000a), NULL, 0);
	uint8_t b[1500];
	uint64_t x = 1;
	for (int k = 0; k < 10000; k++) {
		size_t n = (x = mix(x)) % sizeof(b);
		for (size_t i = 0; i < n; i++)
			b[i] = (uint8_t)(x = mix(x));
		cr_assert_eq(rdp_input(s.n[0].r, b, n, s.now), 0);
	}
	cr_assert_eq(rdp_get_stats(s.n[0].r)->rx_bad, 10000);
	sim_free(&s);
}
