/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The io_uring TCP transport (interface and frame format in xport.h): one
 * TCP connection per pair of workers, all socket I/O after connect()
 * through one io_uring owned by the xport.
 *
 *   connect()  blocking, before the data-plane loop: worker i connects to
 *              every peer j > i (the lower index connects, as xport.h
 *              says) and accepts every j < i; both ends send XF_HELLO
 *              (value: own index, edge: conf->attempt) first.  An accepted
 *              connection whose HELLO names a wrong attempt, a bad index
 *              or a peer already connected is closed and accepting goes on
 *              (a stale worker of an older attempt must not stop us); a
 *              wrong HELLO on a connection we made is an error (-EPROTO).
 *   receive    one multishot recv per peer into a ring of provided buffers
 *              (RBUF_COUNT x RBUF_SIZE, shared by the peers), re-armed
 *              when it ends (-ENOBUFS when we fell behind).  Each buffer
 *              goes through the peer's xf_reader (net_internal.h): frames
 *              wholly inside it are delivered in place, a straddling one
 *              is copied into the peer's reassembly buffer.  The buffer
 *              returns to the ring as soon as its CQE is processed.
 *   send       a bounded queue per peer (SQ_FRAMES entries, SQ_BYTES
 *              bytes); one IORING_OP_SENDMSG (or SENDMSG_ZC) in flight per
 *              peer, gathering up to GATHER_IOV iovecs of consecutive
 *              frames.  Short sends resume where they stopped.  A frame
 *              is released (ev->sent(cookie)) once the kernel no longer
 *              reads its memory: at the send's completion for a copying
 *              send, at the notification CQE for a zero-copy one.  `ops`
 *              keeps the sends whose memory the kernel may still hold, in
 *              order, so frames are released in order.
 *
 *        q_rel            q_cur (+q_off)           q_tail
 *          |  sent, kernel may |  queued, not yet sent |
 *          |  still hold them  |                       |
 *
 *   finish()   queues XF_BYE after what is queued; once everything up to
 *              it is released, shutdown(SHUT_WR); done when every peer
 *              sent its BYE and then EOF.
 *   loss       a reset, an error, a malformed frame, EOF before BYE: the
 *              socket is shut down (which ends its pending requests), the
 *              data plane told through ev->lost; frames still queued to
 *              that peer are released through ev->sent once no request
 *              refers to them, so the data plane can free the batches.
 *
 * Not done: IPv6 addresses; registered (fixed) buffers for sends; a
 * per-core choice of CPU (conf->core is not used by this transport).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core.h"
#include "net_internal.h"
#include "xport.h"

#define RING_SQ 256
#define RING_CQ 4096
#define RBUF_SIZE (128u << 10) /* one provided receive buffer */
#define RBUF_COUNT 64u         /* power of two */
#define RBUF_GROUP 0
#define SQ_FRAMES 256u          /* per-peer queue slots, power of two */
#define SQ_BYTES (32u << 20)    /* per-peer queued bytes (one bigger frame may pass) */
#define SQ_MAXIOV 8             /* iovecs of one frame, header included */
#define GATHER_IOV 64           /* iovecs of one sendmsg */
#define GATHER_BYTES (8u << 20) /* bytes of one sendmsg */
#define OPS 16u                 /* sends whose memory the kernel may hold, per peer */
#define ZC_MIN (16u << 10)      /* smaller sends copy: ZC costs more than it saves */

enum { UD_RECV = 1, UD_SEND = 2, UD_EFD = 3 };
#define UD(kind, seq, peer) \
	((uint64_t)(kind) << 56 | (uint64_t)((seq) & 0xffffffu) << 32 | (uint32_t)(peer))
#define UD_KIND(u) ((int)((u) >> 56))
#define UD_SEQ(u) ((uint32_t)((u) >> 32) & 0xffffffu)
#define UD_PEER(u) ((int)(uint32_t)(u))

typedef struct qent {
	xf_hdr hdr; /* copied: the caller's header need not outlive send() */
	struct iovec iov[SQ_MAXIOV];
	int iovcnt;
	size_t len;
	void *cookie;
	void *copy; /* the payload, when sent with cookie NULL */
} qent;

typedef struct sop {
	uint32_t release_upto; /* queue position every frame before which it sent */
	bool done;             /* its result CQE arrived */
	bool notified;         /* the kernel no longer holds its memory */
} sop;

/* One connection.  Touched only by the thread that polls the data plane. */
typedef struct tpeer {
	int fd;
	int err; /* the loss, once lost */
	bool lost, recv_armed, eof;
	bool bye_queued, shut_wr, bye_rcvd;
	bool send_busy; /* a sendmsg is in flight */
	xf_reader rd;
	qent *q;
	uint32_t q_tail, q_cur, q_rel;
	size_t q_off;   /* bytes of q[q_cur] already sent */
	size_t q_bytes; /* bytes between q_rel and q_tail */
	sop ops[OPS];
	uint32_t op_head, op_tail;
	struct msghdr msg; /* of the sendmsg in flight */
	struct iovec giov[GATHER_IOV];
} tpeer;

/* Owned by the thread that polls the worker's data plane (open() may run elsewhere,
 * before that thread starts; the ring is made by connect()). */
struct xport {
	int lfd;
	int self, npeers;
	uint32_t attempt;
	bool want_zc, zc;
	tpeer *peers;
	struct io_uring ring;
	bool ring_ok;
	struct io_uring_buf_ring *br;
	uint8_t *rbufs;
	int efd_armed; /* the eventfd with a POLL_ADD in flight, -1: none */
	const xport_events *ev; /* during poll() */
};

static int64_t mono_ms(void)
{
	return (int64_t)(now_ns() / 1000000u);
}

static void hdr_make(xf_hdr *h, int kind, uint32_t edge, uint64_t value)
{
	memset(h, 0, sizeof(*h));
	h->magic = XF_MAGIC;
	h->version = XF_VERSION;
	h->kind = (uint8_t)kind;
	h->edge = edge;
	h->crc = crc32c(0, "", 0);
	h->value = value;
}

static int parse_addr(const char *s, struct sockaddr_in *a)
{
	char ip[64];
	const char *colon = s ? strrchr(s, ':') : NULL;
	if (!colon || (size_t)(colon - s) >= sizeof(ip))
		return -EINVAL;
	memcpy(ip, s, (size_t)(colon - s));
	ip[colon - s] = 0;
	char *end;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (*end || end == colon + 1 || port > 65535)
		return -EINVAL;
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, ip, &a->sin_addr) != 1)
		return -EINVAL;
	return 0;
}

/* ---- open / connect (blocking, before the data-plane loop) ------------ */

static int tcp_open(const xport_conf *conf, xport **out, char *addr, size_t addrlen,
		    char *err, size_t errlen)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	int one = 1, rc;
	xport *x = NULL;

	*out = NULL;
	if ((rc = parse_addr(conf->bind, &a))) {
		snprintf(err, errlen, "tcp transport: bad address '%s' (want IPv4:PORT)",
			 conf->bind ? conf->bind : "(null)");
		return rc;
	}
	x = calloc(1, sizeof(*x));
	if (!x) {
		snprintf(err, errlen, "tcp transport: out of memory");
		return -ENOMEM;
	}
	x->efd_armed = -1;
	x->self = conf->self;
	x->attempt = conf->attempt;
	x->want_zc = conf->zerocopy;
	x->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (x->lfd < 0)
		goto fail;
	if (setsockopt(x->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(x->lfd, (struct sockaddr *)&a, sizeof(a)) || listen(x->lfd, 128) ||
	    getsockname(x->lfd, (struct sockaddr *)&a, &alen))
		goto fail;
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &a.sin_addr, ip, sizeof(ip));
	snprintf(addr, addrlen, "%s:%u", ip, ntohs(a.sin_port));
	*out = x;
	return 0;
fail:
	rc = -errno;
	snprintf(err, errlen, "tcp transport: listen on %s: %s", conf->bind, strerror(errno));
	if (x->lfd >= 0)
		close(x->lfd);
	free(x);
	return rc;
}

/* Read or write all n bytes by the deadline: 0, -ETIMEDOUT, -ECONNRESET on
 * EOF, or -errno. */
static int io_full(int fd, void *buf, size_t n, bool rd, int64_t deadline)
{
	uint8_t *p = buf;
	while (n) {
		int64_t left = deadline - mono_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd pf = { .fd = fd, .events = rd ? POLLIN : POLLOUT };
		int k = poll(&pf, 1, (int)left);
		if (k < 0 && errno != EINTR)
			return -errno;
		if (k <= 0)
			continue;
		ssize_t m = rd ? recv(fd, p, n, MSG_DONTWAIT)
			       : send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (m == 0 && rd)
			return -ECONNRESET;
		if (m < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno;
		}
		p += m;
		n -= (size_t)m;
	}
	return 0;
}

static int hello_send(xport *x, int fd, int64_t deadline)
{
	xf_hdr h;
	hdr_make(&h, XF_HELLO, x->attempt, (uint64_t)x->self);
	return io_full(fd, &h, sizeof(h), false, deadline);
}

/* Read a HELLO: the index it names, or -errno (-EPROTO: not a HELLO of
 * this attempt). */
static int hello_recv(xport *x, int fd, int64_t deadline)
{
	xf_hdr h;
	int rc = io_full(fd, &h, sizeof(h), true, deadline);
	if (rc)
		return rc;
	if (xf_check_header(&h) || h.kind != XF_HELLO || xf_check_payload(&h, "") ||
	    h.edge != x->attempt || h.value >= (uint64_t)x->npeers || (int)h.value == x->self)
		return -EPROTO;
	return (int)h.value;
}

static int dial(const char *addr, int64_t deadline)
{
	struct sockaddr_in a;
	int rc = parse_addr(addr, &a);
	if (rc)
		return rc;
	for (;;) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			return fd;
		rc = -errno;
		close(fd);
		/* The peer may not listen yet (it opens on its own schedule). */
		if (rc != -ECONNREFUSED && rc != -EINTR)
			return rc;
		if (mono_ms() + 20 >= deadline)
			return -ETIMEDOUT;
		usleep(20000);
	}
}

static int ring_setup(xport *x, char *err, size_t errlen);
static void recv_arm(xport *x, int i);

static int tcp_connect(xport *x, int npeers, const char *const *addrs, int timeout_ms,
		       char *err, size_t errlen)
{
	int64_t deadline = mono_ms() + timeout_ms;
	int one = 1, rc = 0;

	if (x->peers || npeers < 1 || x->self < 0 || x->self >= npeers) {
		snprintf(err, errlen, "tcp transport: connect: bad peer count %d or index %d",
			 npeers, x->self);
		return -EINVAL;
	}
	x->npeers = npeers;
	x->peers = calloc((size_t)npeers, sizeof(tpeer));
	if (!x->peers)
		goto nomem;
	for (int i = 0; i < npeers; i++) {
		x->peers[i].fd = -1;
		if (i != x->self && !(x->peers[i].q = calloc(SQ_FRAMES, sizeof(qent))))
			goto nomem;
	}
	/* Higher peers: a connect completes through their listen backlog even
	 * before they accept, so this phase waits on nobody's accept. */
	for (int j = x->self + 1; j < npeers; j++) {
		int fd = dial(addrs[j], deadline);
		if (fd < 0) {
			snprintf(err, errlen, "tcp transport: connect to worker %d at %s: %s", j,
				 addrs[j], strerror(-fd));
			return fd;
		}
		x->peers[j].fd = fd;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if ((rc = hello_send(x, fd, deadline))) {
			snprintf(err, errlen, "tcp transport: HELLO to worker %d at %s: %s", j,
				 addrs[j], strerror(-rc));
			return rc;
		}
	}
	/* Lower peers connect to us. */
	for (int need = x->self; need > 0;) {
		int64_t left = deadline - mono_ms();
		struct pollfd pf = { .fd = x->lfd, .events = POLLIN };
		if (left <= 0 || poll(&pf, 1, (int)left) == 0) {
			snprintf(err, errlen,
				 "tcp transport: %d of the workers below %d did not connect in %d ms",
				 need, x->self, timeout_ms);
			return -ETIMEDOUT;
		}
		int fd = accept4(x->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		int who = hello_recv(x, fd, deadline);
		if (who < 0 || who >= x->self || x->peers[who].fd >= 0) {
			close(fd); /* stale attempt, stranger or duplicate */
			continue;
		}
		x->peers[who].fd = fd;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if ((rc = hello_send(x, fd, deadline))) {
			snprintf(err, errlen, "tcp transport: HELLO to worker %d: %s", who,
				 strerror(-rc));
			return rc;
		}
		need--;
	}
	for (int j = x->self + 1; j < npeers; j++) {
		int who = hello_recv(x, x->peers[j].fd, deadline);
		if (who != j) {
			rc = who < 0 ? who : -EPROTO;
			snprintf(err, errlen, "tcp transport: worker %d at %s: %s", j, addrs[j],
				 rc == -EPROTO ? "bad HELLO (wrong attempt or index)" : strerror(-rc));
			return rc;
		}
	}
	if ((rc = ring_setup(x, err, errlen)))
		return rc;
	for (int i = 0; i < npeers; i++)
		if (i != x->self)
			recv_arm(x, i);
	io_uring_submit(&x->ring);
	return 0;
nomem:
	snprintf(err, errlen, "tcp transport: out of memory");
	return -ENOMEM;
}

/* The ring is made here, on the polling thread, so it can be
 * single-issuer with deferred task work (completions run when that thread
 * enters the kernel, not by interrupting it). */
static int ring_setup(xport *x, char *err, size_t errlen)
{
	struct io_uring_params p = { 0 };
	int rc;

	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	p.cq_entries = RING_CQ;
	rc = io_uring_queue_init_params(RING_SQ, &x->ring, &p);
	if (rc == -EINVAL) { /* a kernel before 6.1 */
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = RING_CQ;
		rc = io_uring_queue_init_params(RING_SQ, &x->ring, &p);
	}
	if (rc) {
		snprintf(err, errlen, "tcp transport: io_uring setup: %s", strerror(-rc));
		return rc;
	}
	x->ring_ok = true;
	struct io_uring_probe *pr = io_uring_get_probe_ring(&x->ring);
	x->zc = x->want_zc && pr && io_uring_opcode_supported(pr, IORING_OP_SENDMSG_ZC);
	io_uring_free_probe(pr);

	/* liburing 2.3 has no io_uring_setup_buf_ring(): map and register by hand. */
	size_t brsz = RBUF_COUNT * sizeof(struct io_uring_buf);
	void *m = mmap(NULL, brsz, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	x->rbufs = malloc((size_t)RBUF_COUNT * RBUF_SIZE);
	if (m == MAP_FAILED || !x->rbufs) {
		if (m != MAP_FAILED)
			munmap(m, brsz);
		snprintf(err, errlen, "tcp transport: out of memory for receive buffers");
		return -ENOMEM;
	}
	x->br = m;
	struct io_uring_buf_reg reg = { .ring_addr = (uintptr_t)m, .ring_entries = RBUF_COUNT,
					.bgid = RBUF_GROUP };
	if ((rc = io_uring_register_buf_ring(&x->ring, &reg, 0))) {
		snprintf(err, errlen, "tcp transport: provided buffer ring: %s", strerror(-rc));
		return rc;
	}
	io_uring_buf_ring_init(x->br);
	for (unsigned i = 0; i < RBUF_COUNT; i++)
		io_uring_buf_ring_add(x->br, x->rbufs + (size_t)i * RBUF_SIZE, RBUF_SIZE,
				      (unsigned short)i, io_uring_buf_ring_mask(RBUF_COUNT), (int)i);
	io_uring_buf_ring_advance(x->br, RBUF_COUNT);
	return 0;
}

/* ---- data path ---------------------------------------------------------- */

static struct io_uring_sqe *sqe_get(xport *x)
{
	struct io_uring_sqe *s = io_uring_get_sqe(&x->ring);
	if (!s) {
		io_uring_submit(&x->ring);
		s = io_uring_get_sqe(&x->ring);
	}
	return s; /* NULL: the caller retries at the next poll() */
}

static void recv_arm(xport *x, int i)
{
	tpeer *p = &x->peers[i];
	if (p->recv_armed || p->lost || p->eof)
		return;
	struct io_uring_sqe *s = sqe_get(x);
	if (!s)
		return;
	io_uring_prep_recv_multishot(s, p->fd, NULL, 0, 0);
	s->flags |= IOSQE_BUFFER_SELECT;
	s->buf_group = RBUF_GROUP;
	io_uring_sqe_set_data64(s, UD(UD_RECV, 0, i));
	p->recv_armed = true;
}

static void peer_lose(xport *x, int i, int err, const char *why)
{
	tpeer *p = &x->peers[i];
	if (p->lost)
		return;
	p->lost = true;
	p->err = err;
	/* Ends the pending recv (EOF) and send (-EPIPE); the fd is closed by
	 * close(), when no request can refer to it any more. */
	shutdown(p->fd, SHUT_RDWR);
	if (x->ev && x->ev->lost)
		x->ev->lost(x->ev->ctx, i, err, why);
}

/* Start the next sendmsg to peer i if none is in flight. */
static void send_kick(xport *x, int i)
{
	tpeer *p = &x->peers[i];
	if (p->send_busy || p->lost || p->q_cur == p->q_tail || p->op_tail - p->op_head == OPS)
		return;
	int n = 0;
	size_t total = 0, skip = p->q_off;
	for (uint32_t k = p->q_cur; k != p->q_tail && n < GATHER_IOV && total < GATHER_BYTES;
	     k++, skip = 0) {
		qent *e = &p->q[k & (SQ_FRAMES - 1)];
		for (int j = 0; j < e->iovcnt && n < GATHER_IOV; j++) {
			size_t l = e->iov[j].iov_len;
			if (skip >= l) {
				skip -= l;
				continue;
			}
			p->giov[n].iov_base = (uint8_t *)e->iov[j].iov_base + skip;
			p->giov[n].iov_len = l - skip;
			total += l - skip;
			skip = 0;
			n++;
		}
	}
	struct io_uring_sqe *s = sqe_get(x);
	if (!s)
		return;
	memset(&p->msg, 0, sizeof(p->msg));
	p->msg.msg_iov = p->giov;
	p->msg.msg_iovlen = (size_t)n;
	if (x->zc && total >= ZC_MIN)
		io_uring_prep_sendmsg_zc(s, p->fd, &p->msg, MSG_NOSIGNAL | MSG_WAITALL);
	else
		io_uring_prep_sendmsg(s, p->fd, &p->msg, MSG_NOSIGNAL | MSG_WAITALL);
	sop *o = &p->ops[p->op_tail % OPS];
	*o = (sop){ .release_upto = p->q_cur };
	io_uring_sqe_set_data64(s, UD(UD_SEND, p->op_tail, i));
	p->op_tail++;
	p->send_busy = true;
}

static void release_upto(xport *x, tpeer *p, uint32_t upto)
{
	while (p->q_rel != upto) {
		qent *e = &p->q[p->q_rel & (SQ_FRAMES - 1)];
		void *cookie = e->cookie;
		p->q_bytes -= e->len;
		free(e->copy);
		e->copy = NULL;
		p->q_rel++;
		if (cookie && x->ev && x->ev->sent)
			x->ev->sent(x->ev->ctx, cookie);
	}
}

static void ops_reap(xport *x, tpeer *p)
{
	while (p->op_head != p->op_tail) {
		sop *o = &p->ops[p->op_head % OPS];
		if (!o->done || !o->notified)
			break;
		p->op_head++;
		release_upto(x, p, o->release_upto);
	}
}

static void on_send(xport *x, int i, uint32_t seq, int res, unsigned flags)
{
	tpeer *p = &x->peers[i];
	sop *o = &p->ops[seq % OPS];
	if (flags & IORING_CQE_F_NOTIF) {
		o->notified = true;
		ops_reap(x, p);
		return;
	}
	p->send_busy = false;
	o->done = true;
	o->notified = !(flags & IORING_CQE_F_MORE);
	if (res < 0) {
		peer_lose(x, i, res, "send failed");
	} else { /* advance over what went out; a short send resumes there */
		size_t left = (size_t)res;
		while (left && p->q_cur != p->q_tail) {
			qent *e = &p->q[p->q_cur & (SQ_FRAMES - 1)];
			size_t rest = e->len - p->q_off;
			if (left < rest) {
				p->q_off += left;
				break;
			}
			left -= rest;
			p->q_off = 0;
			p->q_cur++;
		}
		/* A frame may end exactly where the send ended: q_off 0, q_cur past it. */
		o->release_upto = p->q_cur;
	}
	ops_reap(x, p);
}

typedef struct rctx {
	xport *x;
	int peer;
} rctx;

static int on_frame(void *ctx, xf_reader *r, const xf_hdr *h, const void *payload)
{
	rctx *c = ctx;
	tpeer *p = &c->x->peers[c->peer];
	const xport_events *ev = c->x->ev;
	if (p->bye_rcvd) {
		r->why = "a frame after its BYE";
		return -EBADMSG;
	}
	if (h->kind == XF_HELLO) {
		r->why = "a second HELLO";
		return -EBADMSG;
	}
	if (h->kind == XF_BYE) {
		p->bye_rcvd = true;
		return 0;
	}
	if (ev && ev->frame)
		ev->frame(ev->ctx, c->peer, h, payload);
	return 0;
}

static void on_recv(xport *x, int i, int res, unsigned flags)
{
	tpeer *p = &x->peers[i];
	if (!(flags & IORING_CQE_F_MORE))
		p->recv_armed = false;
	if (flags & IORING_CQE_F_BUFFER) {
		unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
		uint8_t *buf = x->rbufs + (size_t)bid * RBUF_SIZE;
		if (res > 0 && !p->lost && !p->eof) {
			rctx c = { x, i };
			int rc = xf_reader_feed(&p->rd, buf, (size_t)res, on_frame, &c);
			if (rc)
				peer_lose(x, i, rc, p->rd.why);
		}
		io_uring_buf_ring_add(x->br, buf, RBUF_SIZE, (unsigned short)bid,
				      io_uring_buf_ring_mask(RBUF_COUNT), 0);
		io_uring_buf_ring_advance(x->br, 1);
		return;
	}
	if (p->lost || res == -ENOBUFS) /* ENOBUFS: we fell behind, re-armed below */
		return;
	if (res == 0) {
		if (p->bye_rcvd && xf_reader_idle(&p->rd))
			p->eof = true;
		else
			peer_lose(x, i, -ECONNRESET, "the peer closed its connection before its BYE");
	} else if (res < 0) {
		peer_lose(x, i, res, res == -ECONNRESET ? "connection reset by the peer"
							: "receive failed");
	}
}

/* A lost peer's queued frames go back to the data plane once no request
 * can read them. */
static void lost_drain(xport *x, tpeer *p)
{
	if (p->send_busy || p->op_head != p->op_tail || p->q_rel == p->q_tail)
		return;
	p->q_cur = p->q_tail;
	p->q_off = 0;
	release_upto(x, p, p->q_tail);
}

static int tcp_poll(xport *x, const xport_events *ev)
{
	struct io_uring_cqe *cqes[64];
	int work = 0;

	x->ev = ev;
	for (int i = 0; i < x->npeers; i++)
		if (i != x->self)
			send_kick(x, i);
	io_uring_submit_and_get_events(&x->ring);
	for (int round = 0; round < 8; round++) {
		unsigned n = io_uring_peek_batch_cqe(&x->ring, cqes, ARRAY_SIZE(cqes));
		struct {
			uint64_t ud;
			int res;
			unsigned flags;
		} c[ARRAY_SIZE(cqes)];
		/* Copied out and advanced first: callbacks may submit (send()). */
		for (unsigned k = 0; k < n; k++)
			c[k].ud = cqes[k]->user_data, c[k].res = cqes[k]->res,
			c[k].flags = cqes[k]->flags;
		io_uring_cq_advance(&x->ring, n);
		for (unsigned k = 0; k < n; k++) {
			int peer = UD_PEER(c[k].ud);
			switch (UD_KIND(c[k].ud)) {
			case UD_RECV:
				on_recv(x, peer, c[k].res, c[k].flags);
				break;
			case UD_SEND:
				on_send(x, peer, UD_SEQ(c[k].ud), c[k].res, c[k].flags);
				break;
			case UD_EFD:
				x->efd_armed = -1;
				break;
			}
		}
		work += (int)n;
		if (n < ARRAY_SIZE(cqes))
			break;
	}
	for (int i = 0; i < x->npeers; i++) {
		if (i == x->self)
			continue;
		tpeer *p = &x->peers[i];
		if (p->lost)
			lost_drain(x, p);
		else if (!p->recv_armed)
			recv_arm(x, i);
		send_kick(x, i);
	}
	if (io_uring_sq_ready(&x->ring))
		io_uring_submit(&x->ring);
	x->ev = NULL;
	return work;
}

static void tcp_wait(xport *x, int fd, uint64_t timeout_ns)
{
	struct io_uring_cqe *cqe;
	if (fd >= 0 && x->efd_armed != fd) {
		struct io_uring_sqe *s = sqe_get(x);
		if (s) {
			io_uring_prep_poll_add(s, fd, POLLIN);
			io_uring_sqe_set_data64(s, UD(UD_EFD, 0, 0));
			x->efd_armed = fd;
		}
	}
	if (timeout_ns == 0 || io_uring_cq_ready(&x->ring)) {
		io_uring_submit_and_get_events(&x->ring);
		return;
	}
	struct __kernel_timespec ts = { .tv_sec = (long long)(timeout_ns / 1000000000),
					.tv_nsec = (long long)(timeout_ns % 1000000000) };
	io_uring_submit_and_wait_timeout(&x->ring, &cqe, 1, &ts, NULL);
}

static int queue_frame(xport *x, int peer, const struct iovec *iov, int iovcnt, void *cookie)
{
	tpeer *p = &x->peers[peer];
	size_t total = 0;
	for (int j = 0; j < iovcnt; j++)
		total += iov[j].iov_len;
	if (total > XPORT_MAX_FRAME)
		return -EMSGSIZE;
	if (p->q_tail - p->q_rel == SQ_FRAMES ||
	    (p->q_tail != p->q_rel && p->q_bytes + total > SQ_BYTES))
		return -EAGAIN;
	qent *e = &p->q[p->q_tail & (SQ_FRAMES - 1)];
	memcpy(&e->hdr, iov[0].iov_base, XF_HDR);
	e->iov[0] = (struct iovec){ &e->hdr, XF_HDR };
	e->iovcnt = 1;
	e->copy = NULL;
	if (cookie) { /* referenced until sent(cookie) */
		for (int j = 1; j < iovcnt; j++)
			e->iov[e->iovcnt++] = iov[j];
	} else if (total > XF_HDR) {
		uint8_t *c = malloc(total - XF_HDR);
		if (!c)
			return -ENOMEM;
		size_t off = 0;
		for (int j = 1; j < iovcnt; j++) {
			memcpy(c + off, iov[j].iov_base, iov[j].iov_len);
			off += iov[j].iov_len;
		}
		e->copy = c;
		e->iov[e->iovcnt++] = (struct iovec){ c, off };
	}
	e->len = total;
	e->cookie = cookie;
	p->q_tail++;
	p->q_bytes += total;
	send_kick(x, peer);
	return 0;
}

static int tcp_send(xport *x, int peer, const struct iovec *iov, int iovcnt, void *cookie)
{
	if (peer < 0 || peer >= x->npeers || peer == x->self || iovcnt < 1 ||
	    iovcnt > SQ_MAXIOV || iov[0].iov_len != XF_HDR)
		return -EINVAL;
	tpeer *p = &x->peers[peer];
	if (p->lost || p->bye_queued)
		return -EPIPE;
	return queue_frame(x, peer, iov, iovcnt, cookie);
}

static int tcp_finish(xport *x, const xport_events *ev)
{
	int done = 1, err = 0;
	for (int i = 0; i < x->npeers; i++) {
		tpeer *p = &x->peers[i];
		if (i == x->self || p->lost || p->bye_queued)
			continue;
		xf_hdr h;
		hdr_make(&h, XF_BYE, 0, 0);
		struct iovec v = { &h, XF_HDR };
		if (queue_frame(x, i, &v, 1, NULL) == 0) /* after everything queued */
			p->bye_queued = true;
	}
	tcp_poll(x, ev);
	for (int i = 0; i < x->npeers; i++) {
		tpeer *p = &x->peers[i];
		if (i == x->self)
			continue;
		if (p->lost) {
			if (!err)
				err = p->err;
			continue;
		}
		if (p->bye_queued && !p->shut_wr && p->q_rel == p->q_tail && !p->send_busy) {
			shutdown(p->fd, SHUT_WR); /* our BYE and all before it are out */
			p->shut_wr = true;
		}
		if (!p->shut_wr || !p->bye_rcvd || !p->eof)
			done = 0;
	}
	return err ? err : done;
}

static void tcp_close(xport *x)
{
	if (!x)
		return;
	if (x->ring_ok)
		io_uring_queue_exit(&x->ring);
	for (int i = 0; x->peers && i < x->npeers; i++) {
		tpeer *p = &x->peers[i];
		if (p->fd >= 0)
			close(p->fd);
		for (uint32_t k = p->q_rel; p->q && k != p->q_tail; k++)
			free(p->q[k & (SQ_FRAMES - 1)].copy);
		free(p->q);
		xf_reader_free(&p->rd);
	}
	free(x->peers);
	if (x->br)
		munmap(x->br, RBUF_COUNT * sizeof(struct io_uring_buf));
	free(x->rbufs);
	if (x->lfd >= 0)
		close(x->lfd);
	free(x);
}

const xport_ops xport_tcp_ops = {
	.name = "tcp",
	.open = tcp_open,
	.connect = tcp_connect,
	.send = tcp_send,
	.poll = tcp_poll,
	.wait = tcp_wait,
	.finish = tcp_finish,
	.close = tcp_close,
};
