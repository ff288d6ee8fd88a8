/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The io_uring TCP transport (net/xport_tcp.c) on 127.0.0.1: two or three
 * xports in this process, one thread each (a thread touches only its own
 * xport), connected as a full mesh.  Frames of 0 bytes to 4 MiB with
 * random payloads arrive once, in order per peer, intact, with and
 * without zero-copy, referenced (cookie) and copied (cookie NULL); every
 * cookie comes back through sent() exactly once; a sender faster than its
 * receiver meets -EAGAIN and recovers; finish() with traffic both ways and
 * one way; a peer that closes abruptly is reported lost; a raw socket that
 * joins the mesh and then sends garbage, a truncated header, an oversized
 * length or a bad checksum is reported lost while the other peers carry
 * on.  Also the frame reader (net_internal.h) on a stream cut at random
 * places.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core.h"
#include "net_internal.h"
#include "xport.h"

#define MAXW 3
#define TIMEOUT_MS 30000 /* a deadline for what must happen: generous */

static const size_t sizes[] = { 0,     1,      23,        24,     1000,       65535,
				131079, 4096, 1u << 20, 77777, (4u << 20) + 3, 300 };

static uint64_t mix(uint64_t x)
{
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static size_t frame_size(int src, int dst, uint32_t seq, size_t fixed)
{
	return fixed != (size_t)-1 ? fixed : sizes[(seq + (uint32_t)src * 5 + (uint32_t)dst) % ARRAY_SIZE(sizes)];
}

static void fill(uint8_t *p, size_t n, int src, int dst, uint32_t seq)
{
	uint64_t s = mix(((uint64_t)src << 48) ^ ((uint64_t)dst << 32) ^ seq);
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		s = mix(s + 0x9e3779b97f4a7c15ULL);
		memcpy(p + i, &s, 8);
	}
	for (; i < n; i++)
		p[i] = (uint8_t)(s >> (8 * (i & 7))) ^ 0x5a;
}

typedef struct worker {
	int self, n;
	xport *x;
	const char *addrs[MAXW];
	bool zerocopy;
	int nframes[MAXW]; /* to send to each peer */
	size_t fixed;      /* frame payload size, (size_t)-1: the size table */
	int start_delay_ms;
	bool close_early; /* close right after connect (an abrupt peer) */
	bool skip_finish;
	int await_loss;   /* with skip_finish: peer + 1 whose loss to wait for */
	/* results, read by the main thread after join */
	int connect_rc, finish_rc;
	char err[256];
	uint32_t next[MAXW]; /* next expected seq per peer */
	int bad;             /* frames out of order, wrong size or content */
	long eagain;            /* atomic: a slow peer waits for it */
	struct worker *wait_for;/* read only once this worker's sends hit -EAGAIN */
	long cookies_out; /* sent with a cookie, not yet reported sent() */
	int lost_err[MAXW];
	char lost_why[MAXW][128];
	uint8_t *scratch;
} worker;

static void ev_frame(void *ctx, int peer, const xf_hdr *h, const void *payload)
{
	worker *w = ctx;
	uint32_t seq = w->next[peer];
	size_t want = frame_size(peer, w->self, seq, w->fixed);
	if (h->kind != XF_DATA || h->value != seq || h->edge != seq || h->len != want) {
		w->bad++;
		return;
	}
	fill(w->scratch, want, peer, w->self, seq);
	if (memcmp(payload, w->scratch, want))
		w->bad++;
	w->next[peer]++;
}

static void ev_sent(void *ctx, void *cookie)
{
	worker *w = ctx;
	free(cookie);
	w->cookies_out--;
}

static void ev_lost(void *ctx, int peer, int err, const char *why)
{
	worker *w = ctx;
	w->lost_err[peer] = err;
	snprintf(w->lost_why[peer], sizeof(w->lost_why[peer]), "%s", why);
}

static int send_one(worker *w, const xport_events *ev, int dst, uint32_t seq)
{
	size_t len = frame_size(w->self, dst, seq, w->fixed);
	xf_hdr h = { .magic = XF_MAGIC, .version = XF_VERSION, .kind = XF_DATA, .edge = seq,
		     .len = (uint32_t)len, .value = seq };
	bool by_ref = seq % 2 == 0;
	uint8_t *p = by_ref ? malloc(len ? len : 1) : w->scratch;
	fill(p, len, w->self, dst, seq);
	h.crc = crc32c(0, p, len);
	/* by reference: the payload in two pieces, to exercise gathering */
	struct iovec v[3] = { { &h, XF_HDR }, { p, len / 3 }, { p + len / 3, len - len / 3 } };
	int rc;
	while ((rc = xport_tcp_ops.send(w->x, dst, v, 3, by_ref ? p : NULL)) == -EAGAIN) {
		__atomic_fetch_add(&w->eagain, 1, __ATOMIC_RELAXED);
		xport_tcp_ops.poll(w->x, ev);
	}
	if (rc == 0 && by_ref)
		w->cookies_out++;
	else if (by_ref)
		free(p);
	return rc;
}

static void *peer_main(void *arg)
{
	worker *w = arg;
	xport_events ev = { w, ev_frame, ev_sent, ev_lost };
	w->connect_rc = xport_tcp_ops.connect(w->x, w->n, w->addrs, TIMEOUT_MS, w->err,
					      sizeof(w->err));
	if (w->connect_rc)
		return NULL;
	if (w->close_early) {
		xport_tcp_ops.close(w->x);
		w->x = NULL;
		return NULL;
	}
	if (w->start_delay_ms)
		usleep((useconds_t)w->start_delay_ms * 1000);
	/* A receiver that does not read until its peer's bounded queue is full
	 * (at most 20 s: if the bound never bites, the test says so). */
	for (int ms = 0; w->wait_for && ms < 20000 &&
	     !__atomic_load_n(&w->wait_for->eagain, __ATOMIC_RELAXED); ms++)
		usleep(1000);
	int most = 0;
	for (int j = 0; j < w->n; j++)
		most = w->nframes[j] > most ? w->nframes[j] : most;
	for (int k = 0; k < most; k++)
		for (int j = 0; j < w->n; j++)
			if (j != w->self && k < w->nframes[j] && !w->lost_err[j]) {
				if (send_one(w, &ev, j, (uint32_t)k))
					w->bad++;
				xport_tcp_ops.poll(w->x, &ev);
			}
	int64_t end = (int64_t)(now_ns() / 1000000) + TIMEOUT_MS;
	if (w->skip_finish) { /* just deliver for a while: peers are lost or slow */
		while ((int64_t)(now_ns() / 1000000) < end) {
			bool all = true;
			for (int j = 0; j < w->n; j++)
				if (j != w->self && !w->lost_err[j] && w->next[j] < (uint32_t)w->nframes[j])
					all = false;
			if (w->await_loss && !w->lost_err[w->await_loss - 1])
				all = false;
			if (all && w->cookies_out == 0)
				break;
			xport_tcp_ops.poll(w->x, &ev);
			xport_tcp_ops.wait(w->x, -1, 2000000);
		}
		return NULL;
	}
	while ((w->finish_rc = xport_tcp_ops.finish(w->x, &ev)) == 0 &&
	       (int64_t)(now_ns() / 1000000) < end)
		xport_tcp_ops.wait(w->x, -1, 5000000);
	return NULL;
}

typedef struct mesh {
	int n;
	worker w[MAXW];
	char addr[MAXW][64];
	pthread_t t[MAXW];
} mesh;

static void mesh_open(mesh *m, int n, bool zc)
{
	memset(m, 0, sizeof(*m));
	m->n = n;
	for (int i = 0; i < n; i++) {
		char err[256];
		xport_conf c = { .bind = "127.0.0.1:0", .core = -1, .zerocopy = zc, .self = i,
				 .attempt = 7 };
		int rc = xport_tcp_ops.open(&c, &m->w[i].x, m->addr[i], sizeof(m->addr[i]), err,
					    sizeof(err));
		cr_assert_eq(rc, 0, "open: %s", err);
		m->w[i].self = i;
		m->w[i].n = n;
		m->w[i].zerocopy = zc;
		m->w[i].fixed = (size_t)-1;
		m->w[i].scratch = malloc((5u << 20));
	}
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
			m->w[i].addrs[j] = m->addr[j];
}

static void mesh_run(mesh *m)
{
	for (int i = 0; i < m->n; i++)
		pthread_create(&m->t[i], NULL, peer_main, &m->w[i]);
	for (int i = 0; i < m->n; i++)
		pthread_join(m->t[i], NULL);
}

static void mesh_close(mesh *m)
{
	for (int i = 0; i < m->n; i++) {
		xport_tcp_ops.close(m->w[i].x);
		free(m->w[i].scratch);
	}
}

/* Every frame arrived once, in order, intact; every cookie came back. */
static void check_clean(mesh *m)
{
	for (int i = 0; i < m->n; i++) {
		worker *w = &m->w[i];
		cr_assert_eq(w->connect_rc, 0, "worker %d connect: %s", i, w->err);
		cr_assert_eq(w->finish_rc, 1, "worker %d finish: %d", i, w->finish_rc);
		cr_assert_eq(w->bad, 0, "worker %d: %d bad frames", i, w->bad);
		cr_assert_eq(w->cookies_out, 0, "worker %d: %ld cookies not reported sent", i,
			     w->cookies_out);
		for (int j = 0; j < m->n; j++) {
			if (j == i)
				continue;
			cr_assert_eq(w->lost_err[j], 0, "worker %d lost %d: %s", i, j, w->lost_why[j]);
			cr_assert_eq(w->next[j], (uint32_t)m->w[j].nframes[i],
				     "worker %d got %u of %d frames from %d", i, w->next[j],
				     m->w[j].nframes[i], j);
		}
	}
}

static void mesh_traffic(bool zc)
{
	mesh m;
	mesh_open(&m, 3, zc);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			m.w[i].nframes[j] = i == j ? 0 : 30;
	mesh_run(&m);
	check_clean(&m);
	mesh_close(&m);
}

Test(xport, mesh_of_three_copying_send)
{
	mesh_traffic(false);
}

Test(xport, mesh_of_three_zero_copy)
{
	mesh_traffic(true);
}

Test(xport, finish_one_way)
{
	mesh m;
	mesh_open(&m, 2, false);
	m.w[0].nframes[1] = 25; /* worker 1 sends nothing and finishes at once */
	mesh_run(&m);
	check_clean(&m);
	mesh_close(&m);
	mesh_open(&m, 2, true);
	m.w[1].nframes[0] = 25;
	mesh_run(&m);
	check_clean(&m);
	mesh_close(&m);
}

Test(xport, sender_faster_than_receiver)
{
	mesh m;
	mesh_open(&m, 2, false);
	m.w[0].nframes[1] = 600;
	m.w[0].fixed = m.w[1].fixed = 128u << 10;
	m.w[1].wait_for = &m.w[0]; /* not reading until the sender's queue is full */
	mesh_run(&m);
	check_clean(&m);
	cr_assert_gt(m.w[0].eagain, 0, "the bounded queue never said -EAGAIN");
	mesh_close(&m);
}

Test(xport, abrupt_close_is_a_loss)
{
	mesh m;
	mesh_open(&m, 2, false);
	m.w[0].nframes[1] = 3;
	m.w[0].skip_finish = true;
	m.w[1].close_early = true;
	mesh_run(&m);
	cr_assert_eq(m.w[0].connect_rc, 0, "%s", m.w[0].err);
	cr_assert(m.w[0].lost_err[1] == -ECONNRESET || m.w[0].lost_err[1] == -EPIPE,
		  "lost_err %d (%s)", m.w[0].lost_err[1], m.w[0].lost_why[1]);
	cr_assert_eq(m.w[0].cookies_out, 0, "frames to a lost peer are released");
	mesh_close(&m);
}

Test(xport, connect_times_out)
{
	mesh m;
	mesh_open(&m, 2, false);
	xport_conf c = { .bind = "127.0.0.1:0", .core = -1, .self = 1, .attempt = 7 };
	(void)c;
	/* worker 1 waits for worker 0, which never connects */
	char err[256];
	int64_t t0 = (int64_t)(now_ns() / 1000000);
	int rc = xport_tcp_ops.connect(m.w[1].x, 2, m.w[1].addrs, 200, err, sizeof(err));
	cr_assert_eq(rc, -ETIMEDOUT, "rc %d: %s", rc, err);
	/* not hung: far from any wait but the 200 ms asked for */
	cr_assert_lt((int64_t)(now_ns() / 1000000) - t0, 20000);
	mesh_close(&m);
}

Test(xport, open_reports_the_address)
{
	xport *x;
	char addr[64], err[256];
	xport_conf c = { .bind = "256.0.0.1:0", .core = -1 };
	cr_assert_eq(xport_tcp_ops.open(&c, &x, addr, sizeof(addr), err, sizeof(err)), -EINVAL);
	cr_assert_null(x);
	cr_assert(strstr(err, "256.0.0.1:0"), "%s", err);
	c.bind = "192.0.2.1:0"; /* not ours: bind fails with EADDRNOTAVAIL */
	cr_assert_lt(xport_tcp_ops.open(&c, &x, addr, sizeof(addr), err, sizeof(err)), 0);
	cr_assert(strstr(err, "192.0.2.1:0"), "%s", err);
}

/* ---- a raw socket as worker 0, then misbehaving ------------------------ */

static int raw_dial(const char *addr)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	char ip[64];
	const char *colon = strrchr(addr, ':');
	memcpy(ip, addr, (size_t)(colon - addr));
	ip[colon - addr] = 0;
	inet_pton(AF_INET, ip, &a.sin_addr);
	a.sin_port = htons((uint16_t)atoi(colon + 1));
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static void garbage_case(const void *bad, size_t badlen, int want_err)
{
	mesh m;
	mesh_open(&m, 3, false);
	/* worker 0 is a raw socket: drop its xport, dial the others */
	for (int i = 1; i < 3; i++) {
		m.w[i].nframes[3 - i] = 20;
		m.w[i].skip_finish = true;
		/* the good peer's frames may all arrive before the test thread
		 * gets to send its garbage: deliver until the raw peer is lost */
		m.w[i].await_loss = 1;
		pthread_create(&m.t[i], NULL, peer_main, &m.w[i]);
	}
	int fd[3];
	for (int i = 1; i < 3; i++) {
		fd[i] = raw_dial(m.addr[i]);
		xf_hdr h = { .magic = XF_MAGIC, .version = XF_VERSION, .kind = XF_HELLO,
			     .edge = 7, .value = 0, .crc = crc32c(0, "", 0) };
		cr_assert_eq(write(fd[i], &h, sizeof(h)), (ssize_t)sizeof(h));
		xf_hdr back;
		cr_assert_eq(read(fd[i], &back, sizeof(back)), (ssize_t)sizeof(back));
		cr_assert_eq(back.kind, XF_HELLO);
		cr_assert_eq(back.value, (uint64_t)i);
		cr_assert_eq(write(fd[i], bad, badlen), (ssize_t)badlen);
		if (want_err == -ECONNRESET)
			close(fd[i]);
	}
	for (int i = 1; i < 3; i++)
		pthread_join(m.t[i], NULL);
	for (int i = 1; i < 3; i++) {
		worker *w = &m.w[i];
		cr_assert_eq(w->connect_rc, 0, "%s", w->err);
		cr_assert_eq(w->lost_err[0], want_err, "worker %d: err %d (%s)", i, w->lost_err[0],
			     w->lost_why[0]);
		cr_assert_eq(w->lost_err[3 - i], 0);
		cr_assert_eq(w->next[3 - i], 20u, "the good peer still delivers");
		cr_assert_eq(w->bad, 0);
		cr_assert_eq(w->cookies_out, 0);
		if (want_err != -ECONNRESET)
			close(fd[i]);
	}
	mesh_close(&m);
}

Test(xport, garbage_from_a_peer)
{
	char junk[300];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(mix(i) | 1);
	garbage_case(junk, sizeof(junk), -EBADMSG);
}

Test(xport, truncated_header_then_eof)
{
	xf_hdr h = { .magic = XF_MAGIC, .version = XF_VERSION, .kind = XF_DATA, .len = 4 };
	garbage_case(&h, 10, -ECONNRESET);
}

Test(xport, oversized_length)
{
	xf_hdr h = { .magic = XF_MAGIC, .version = XF_VERSION, .kind = XF_DATA,
		     .len = XPORT_MAX_FRAME };
	garbage_case(&h, sizeof(h), -EBADMSG);
}

Test(xport, bad_checksum)
{
	struct {
		xf_hdr h;
		char p[100];
	} f = { { .magic = XF_MAGIC, .version = XF_VERSION, .kind = XF_DATA, .len = 100 }, { 1 } };
	f.h.crc = crc32c(0, f.p, 100) ^ 1;
	garbage_case(&f, sizeof(f), -EBADMSG);
}

/* ---- the reader alone ---------------------------------------------------- */

typedef struct rd_check {
	int got;
	size_t bytes;
} rd_check;

static int rd_frame(void *ctx, xf_reader *r, const xf_hdr *h, const void *payload)
{
	(void)r;
	rd_check *c = ctx;
	uint8_t want[5000];
	fill(want, h->len, 0, 1, (uint32_t)h->value);
	cr_assert_eq(h->value, (uint64_t)c->got);
	cr_assert_eq(memcmp(payload, want, h->len), 0);
	c->got++;
	c->bytes += h->len;
	return 0;
}

Test(xport, reader_reassembles_any_cut)
{
	static uint8_t s[200000];
	size_t n = 0;
	int frames = 0;
	while (n < sizeof(s) - 5000 - XF_HDR) {
		uint32_t len = (uint32_t)(mix((uint64_t)frames) % 5000);
		if (frames % 7 == 0)
			len = 0;
		xf_hdr h = { .magic = XF_MAGIC, .version = XF_VERSION, .kind = XF_DATA, .len = len,
			     .value = (uint64_t)frames };
		fill(s + n + XF_HDR, len, 0, 1, (uint32_t)frames);
		h.crc = crc32c(0, s + n + XF_HDR, len);
		memcpy(s + n, &h, XF_HDR);
		n += XF_HDR + len;
		frames++;
	}
	for (int round = 0; round < 50; round++) {
		xf_reader r = { 0 };
		rd_check c = { 0 };
		size_t off = 0;
		while (off < n) {
			size_t k = 1 + mix((uint64_t)round * 1000003 + off) % (round < 10 ? 30 : 20000);
			if (k > n - off)
				k = n - off;
			cr_assert_eq(xf_reader_feed(&r, s + off, k, rd_frame, &c), 0, "%s", r.why);
			off += k;
		}
		cr_assert_eq(c.got, frames);
		cr_assert(xf_reader_idle(&r));
		xf_reader_free(&r);
	}
}
