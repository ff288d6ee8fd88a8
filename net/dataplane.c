/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The data plane of a worker carries the elements of the channels crossing
 * workers over a transport (xport.h).  It has no thread of its own: the
 * worker's first reactor polls it each turn and parks in the transport's
 * wait (dataplane_step, dataplane_wait), so a one-core worker never
 * switches threads to move a frame.
 *
 *   local producer --ring--> [data plane] ==frames==> [peer's data plane]
 *                                                         --ring--> consumer
 *
 * On the sending side the data plane is the consumer of the channel's ring:
 * it pops an element and gives it to the transport as a frame: a header
 * and the batch in the batch codec's layout, whose event times and
 * fixed-width columns are the batch's own memory (a gather list, sent
 * zero-copy where the transport can: SEND_ZC, mbufs attached to it); only
 * bool and string columns are re-laid into a send buffer.  The batch is
 * released once the transport says the frame left (sent());
 * on the receiving side it is the ring's producer: it decodes each frame
 * into a batch from its own pool and pushes it.
 *
 * Flow control crosses the network as it crosses cores: the sender may
 * have at most `credits` data frames of an edge unconsumed at the far end
 * (the same number the local channel grants); the receiver returns credit
 * (XF_CREDIT) as the consuming actor finishes batches (channel_consumed
 * advancing the ring's `consumed`).  A slow consumer therefore stops the
 * sender's data plane from popping that edge's ring, which fills, and the
 * producing actor is backpressured exactly as by a local consumer.
 *
 * Control elements (watermarks, barriers, end of input, idleness) travel
 * in band on the same edge, so their order with the data is kept.  Send
 * buffers come from a free list of block-sized buffers grown at most to
 * edges x credits; the per-record path has no allocation.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "dataplane.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

typedef struct sbuf_ {
	struct sbuf_ *next;  /* free list */
	struct sbuf_ *all;   /* every buffer, freed at the end (the
			      * transport may hold some when torn down) */
	weir_batch *batch;   /* referenced by the frame until sent() */
	bool in_flight;
	size_t cap;
	uint8_t data[]; /* header, then payload */
} sendbuf;

typedef struct edge {
	channel *c;
	int dir;             /* 1: we send (pop the ring), 2: we receive (push) */
	int peer;
	const weir_schema *schema;
	/* sending */
	uint32_t credit;     /* data frames we may still send */
	bool eoi_sent;
	bool held;           /* `next` was popped but could not go yet */
	elem next;
	/* receiving */
	uint64_t credited;   /* consumed count last returned as credit */
	bool eoi_seen;
} edge;

struct dataplane {
	runtime *rt;
	const xport_ops *ops;
	xport *x;
	int self, npeers;
	edge *edges;         /* by channel index; dir 0: not ours */
	int nedges;
	int *cross;          /* the indexes of the crossing ones (dir 1 or 2) */
	int ncross;
	xport_events ev;
	bool attached;       /* connected (on the polling reactor's thread) */
	bool finished;       /* finish() returned: result 1 clean, -1 failed */
	bool detaching;
	int result;
	_Atomic int done;    /* set by dataplane_detach: 1 clean, -1 torn down */
	sendbuf *free_bufs, *all_bufs;
	/* whom to connect to (on the polling reactor's thread: the
	 * transport's ring is single-issuer) */
	int npeers_c;
	char **addrs;
	size_t buf_size;
	uint64_t frames_out, frames_in, bytes_out, bytes_in;
};

static void fail(dataplane *dp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(dataplane *dp, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	runtime_fail(dp->rt, "data plane: %s", msg);
}

static sendbuf *buf_get(dataplane *dp, size_t need)
{
	sendbuf *b = dp->free_bufs;
	if (b && b->cap >= need) {
		dp->free_bufs = b->next;
		return b;
	}
	/* A new buffer: the list grows to the frames in flight, bounded by
	 * the edges' credits; a jumbo batch gets one of its own size. */
	size_t cap = need > dp->buf_size ? need : dp->buf_size;
	b = malloc(sizeof(*b) + cap);
	if (b) {
		b->cap = cap;
		b->all = dp->all_bufs;
		dp->all_bufs = b;
	}
	return b;
}

static void buf_put(dataplane *dp, sendbuf *b)
{
	/* (A jumbo buffer goes back too; the list head is reused only when
	 * it is large enough.) */
	b->next = dp->free_bufs;
	dp->free_bufs = b;
}

static void ev_sent(void *ctx, void *cookie)
{
	sendbuf *sb = cookie;
	if (sb->batch) {
		batch_release(sb->batch);
		sb->batch = NULL;
	}
	sb->in_flight = false;
	buf_put(ctx, sb);
}

static void hdr_init(xf_hdr *h, uint8_t kind, uint32_t eid, uint64_t value)
{
	*h = (xf_hdr){ .magic = XF_MAGIC, .version = XF_VERSION, .kind = kind,
		       .edge = eid, .value = value };
}

/* Send a header-only frame; false if the transport is full. */
static bool send_ctl(dataplane *dp, int peer, uint8_t kind, uint32_t e, uint64_t v)
{
	xf_hdr h;
	hdr_init(&h, kind, e, v);
	struct iovec iov = { &h, XF_HDR };
	int rc = dp->ops->send(dp->x, peer, &iov, 1, NULL);
	if (rc == -EAGAIN)
		return false;
	if (rc < 0)
		fail(dp, "sending to worker %d: %s", peer, strerror(-rc));
	dp->frames_out++;
	return true;
}

static uint32_t elem_to_kind(uint32_t k)
{
	switch (k) {
	case ELEM_WATERMARK: return XF_WATERMARK;
	case ELEM_BARRIER: return XF_BARRIER;
	case ELEM_EOI: return XF_EOI;
	case ELEM_IDLE: return XF_IDLE;
	default: return XF_DATA;
	}
}

/* Move what edge i's ring holds onto the wire, as credits allow. */
static bool pump_out(dataplane *dp, int i)
{
	edge *e = &dp->edges[i];
	channel *c = e->c;
	bool did = false;
	elem el;

	/* Popped before it can go (not peeked: the ring's slots are ck_ring's
	 * to read); one that must wait is held in the edge. */
	while (!e->eoi_sent && (e->held || channel_pop(c, &e->next))) {
		el = e->next;
		e->held = true;
		if (el.kind == ELEM_DATA) {
			if (!e->credit)
				break;
			weir_batch *b = el.batch;
			size_t n = batch_encoded_size(b);
			if (n + XF_HDR > XPORT_MAX_FRAME) {
				fail(dp, "a batch of %zu bytes cannot cross workers (frames are "
				     "at most %u bytes)", n, XPORT_MAX_FRAME);
				return did;
			}
			sendbuf *sb = buf_get(dp, XF_HDR + n);
			if (!sb) {
				fail(dp, "out of memory for a send buffer");
				return did;
			}
			xf_hdr *h = (xf_hdr *)sb->data;
			struct iovec iov[XF_MAX_IOV];
			size_t len = 0;
			int k = batch_encode_iov(b, sb->data + XF_HDR, iov + 1, XF_MAX_IOV - 1, &len);
			bool by_ref = k > 0;
			if (!by_ref) { /* too many pieces: one copy */
				batch_encode(b, sb->data + XF_HDR);
				iov[1] = (struct iovec){ sb->data + XF_HDR, n };
				k = 1;
				len = n;
			}
			hdr_init(h, XF_DATA, (uint32_t)i, 0);
			h->len = (uint32_t)len;
			h->crc = 0;
			for (int v = 1; v <= k; v++)
				h->crc = crc32c(h->crc, iov[v].iov_base, iov[v].iov_len);
			iov[0] = (struct iovec){ sb->data, XF_HDR };
			sb->batch = by_ref ? b : NULL;
			sb->in_flight = true;
			int rc = dp->ops->send(dp->x, e->peer, iov, k + 1, sb);
			if (rc == -EAGAIN || rc < 0) {
				sb->batch = NULL;
				sb->in_flight = false;
			}
			if (rc == -EAGAIN) {
				buf_put(dp, sb);
				break;
			}
			if (rc < 0) {
				buf_put(dp, sb);
				fail(dp, "sending to worker %d: %s", e->peer, strerror(-rc));
				return did;
			}
			e->held = false;
			if (!by_ref)
				batch_release(el.batch);
			channel_consumed(c);
			e->credit--;
			dp->frames_out++;
			dp->bytes_out += XF_HDR + n;
		} else {
			if (!send_ctl(dp, e->peer, (uint8_t)elem_to_kind(el.kind), (uint32_t)i,
				      (uint64_t)el.value))
				break;
			e->held = false;
			if (el.kind == ELEM_EOI)
				e->eoi_sent = true;
		}
		did = true;
	}
	return did;
}

/* Return credit for what the local consumer of edge i finished. */
static bool pump_credit(dataplane *dp, int i)
{
	edge *e = &dp->edges[i];
	/* Pairs with the consumer's release store in channel_consumed. */
	uint64_t consumed = __atomic_load_n(&e->c->consumed, __ATOMIC_ACQUIRE);
	bool did = false;
	if (consumed > e->credited &&
	    send_ctl(dp, e->peer, XF_CREDIT, (uint32_t)i, consumed - e->credited)) {
		e->credited = consumed;
		did = true;
	}
	if (e->c->pend_len)
		did |= channel_flush_pending(e->c);
	return did;
}

static void ev_frame(void *ctx, int peer, const xf_hdr *h, const void *payload)
{
	dataplane *dp = ctx;
	edge *e = h->edge < (uint32_t)dp->nedges ? &dp->edges[h->edge] : NULL;
	bool credit = h->kind == XF_CREDIT;

	dp->frames_in++;
	dp->bytes_in += XF_HDR + h->len;
	if (h->kind == XF_HELLO || h->kind == XF_BYE)
		return; /* the transport's */
	if (!e || e->peer != peer || e->dir != (credit ? 1 : 2)) {
		fail(dp, "worker %d sent a %s frame for edge %u, which it does not "
		     "%s", peer, credit ? "credit" : "data", h->edge,
		     credit ? "receive" : "send");
		return;
	}
	if (credit) {
		if (h->value > e->c->credits || e->credit + h->value > e->c->credits) {
			fail(dp, "worker %d granted more credit on edge %u than the channel "
			     "has", peer, h->edge);
			return;
		}
		e->credit += (uint32_t)h->value;
		return;
	}
	if (e->eoi_seen) {
		fail(dp, "worker %d sent on edge %u after its end of input", peer, h->edge);
		return;
	}
	elem el = { .kind = 0 };
	switch (h->kind) {
	case XF_DATA: {
		weir_batch *b;
		int rc = batch_decode(e->schema, payload, h->len, &b);
		if (rc < 0) {
			fail(dp, "worker %d sent edge %u a batch that does not decode "
			     "(%s)", peer, h->edge, strerror(-rc));
			return;
		}
		el = (elem){ .kind = ELEM_DATA, .batch = b };
		break;
	}
	case XF_WATERMARK: el = (elem){ .kind = ELEM_WATERMARK, .value = (int64_t)h->value }; break;
	case XF_BARRIER: el = (elem){ .kind = ELEM_BARRIER, .value = (int64_t)h->value }; break;
	case XF_IDLE: el = (elem){ .kind = ELEM_IDLE, .value = (int64_t)h->value }; break;
	case XF_EOI:
		el = (elem){ .kind = ELEM_EOI };
		e->eoi_seen = true;
		break;
	default:
		fail(dp, "worker %d sent an unknown frame kind %u", peer, h->kind);
		return;
	}
	/* Queued (not lost) when the ring is full: flushed by pump_credit. */
	channel_push(e->c, el);
}

static void ev_lost(void *ctx, int peer, int err, const char *why)
{
	dataplane *dp = ctx;
	if (dp->detaching)
		return;
	fail(dp, "lost worker %d: %s (%s)", peer, why, strerror(-err));
}

static bool has_work(dataplane *dp)
{
	for (int x = 0; x < dp->ncross; x++) {
		edge *e = &dp->edges[dp->cross[x]];
		if (e->dir == 1 && !e->eoi_sent && (e->held || ck_ring_size(&e->c->ring) > 0))
			return true;
		if (e->dir == 2 && (__atomic_load_n(&e->c->consumed, __ATOMIC_ACQUIRE) > e->credited ||
				    e->c->pend_len))
			return true;
	}
	return false;
}

static const xport_events *events(dataplane *dp)
{
	dp->ev = (xport_events){ .ctx = dp, .frame = ev_frame, .sent = ev_sent,
				 .lost = ev_lost };
	return &dp->ev;
}

int dataplane_attach(dataplane *dp, char *err, size_t errlen)
{
	int rc = dp->ops->connect(dp->x, dp->npeers_c, (const char *const *)dp->addrs, 20000,
				  err, errlen);
	dp->attached = rc == 0;
	return rc;
}

int dataplane_step(dataplane *dp, bool flush)
{
	const xport_events *ev = events(dp);
	bool did = false;

	if (dp->finished)
		return -1;
	for (int x = 0; x < dp->ncross; x++) {
		int i = dp->cross[x];
		if (dp->edges[i].dir == 1)
			did |= pump_out(dp, i);
		else if (dp->edges[i].dir == 2)
			did |= pump_credit(dp, i);
	}
	if (dp->ops->poll(dp->x, ev) > 0)
		did = true;
	if (flush) {
		/* Every local actor finished: nothing more comes into the
		 * sending rings.  Once they are empty, flush and say goodbye. */
		bool all = true;
		for (int x = 0; x < dp->ncross && all; x++) {
			const edge *e = &dp->edges[dp->cross[x]];
			if (e->dir == 1 && (e->held || ck_ring_size(&e->c->ring)))
				all = false;
		}
		if (all) {
			int rc = dp->ops->finish(dp->x, ev);
			if (rc != 0) {
				if (rc < 0)
					fail(dp, "finishing: %s", strerror(-rc));
				dp->finished = true;
				dp->result = rc > 0 ? 1 : -1;
				return -1;
			}
		}
	}
	return did ? 1 : 0;
}

bool dataplane_has_work(dataplane *dp)
{
	return !dp->finished && has_work(dp);
}

void dataplane_wait(dataplane *dp, int fd, uint64_t timeout_ns)
{
	dp->ops->wait(dp->x, fd, timeout_ns);
}

void dataplane_detach(dataplane *dp)
{
	/* Close the transport here (its ring belongs to this thread), then
	 * release the batches of frames it never reported sent; batches
	 * queued towards local rings are the runtime's to drain
	 * (drain_after_cancel). */
	dp->detaching = true;
	if (dp->x)
		dp->ops->close(dp->x);
	dp->x = NULL;
	for (int x = 0; x < dp->ncross; x++) {
		edge *e = &dp->edges[dp->cross[x]];
		if (e->held && e->next.kind == ELEM_DATA) {
			batch_release(e->next.batch);
			e->held = false;
		}
	}
	for (sendbuf *b = dp->all_bufs; b; b = b->all)
		if (b->in_flight && b->batch) {
			batch_release(b->batch);
			b->batch = NULL;
			b->in_flight = false;
		}
	/* Last: the runtime may free the pools once it sees this. */
	atomic_store(&dp->done, dp->finished && dp->result > 0 ? 1 : -1);
}

int dataplane_start(runtime *rt, const xport_ops *ops, xport *x, int self,
		    const int *worker_of_core, int npeers, const char *const *addrs,
		    dataplane **out, char *err, size_t errlen)
{
	dataplane *dp = calloc(1, sizeof(*dp));
	const weir_config *cfg = NULL;
	*out = NULL;
	if (!dp) {
		ops->close(x); /* taken over, as on every error below */
		return -ENOMEM;
	}
	dp->rt = rt;
	dp->ops = ops;
	dp->x = x;
	dp->self = self;
	dp->nedges = runtime_nchannels(rt);
	dp->edges = calloc((size_t)dp->nedges + 1, sizeof(edge));
	dp->cross = calloc((size_t)dp->nedges + 1, sizeof(int));
	if (!dp->edges || !dp->cross) {
		free(dp->edges);
		free(dp->cross);
		ops->close(x);
		free(dp);
		return -ENOMEM;
	}
	if (runtime_ntasks(rt))
		cfg = runtime_task(rt, 0)->cfg;
	dp->buf_size = XF_HDR + (cfg ? cfg->block_size + 4096 : 256 << 10);
	const graph *g = runtime_graph(rt);
	for (int i = 0; i < dp->nedges; i++) {
		channel *c = runtime_channel(rt, i);
		int dir = channel_remote(rt, c);
		if (dir != 1 && dir != 2)
			continue;
		/* the worker at the far end: where the remote task runs */
		int node = dir == 1 ? c->dst_node : c->src_node;
		int sub = dir == 1 ? c->dst_sub : c->src_sub;
		int core = -1;
		for (int k = 0; k < runtime_ntasks(rt); k++) {
			task *t = runtime_task(rt, k);
			if (t->node->id == node && t->subtask == sub)
				core = task_core(t);
		}
		if (core < 0) {
			snprintf(err, errlen, "edge %d: no task %d/%d", i, node, sub);
			ops->close(x);
			free(dp->edges);
			free(dp->cross);
			free(dp);
			return -EINVAL;
		}
		dp->cross[dp->ncross++] = i;
		dp->edges[i] = (edge){ .c = c, .dir = dir, .peer = worker_of_core[core],
				       .schema = g->nodes[c->src_node]->schema[c->src_port],
				       .credit = c->credits };
	}
	dp->npeers_c = npeers;
	dp->addrs = calloc((size_t)npeers + 1, sizeof(char *));
	for (int k = 0; dp->addrs && k < npeers; k++)
		if (!(dp->addrs[k] = strdup(addrs[k] ? addrs[k] : "")))
			break;
	if (!dp->addrs || (npeers && !dp->addrs[npeers - 1])) {
		for (int k = 0; dp->addrs && k < npeers; k++)
			free(dp->addrs[k]);
		free(dp->addrs);
		ops->close(x);
		free(dp->edges);
		free(dp->cross);
		free(dp);
		return -ENOMEM;
	}
	*out = dp;
	return 0;
}

int dataplane_done(const dataplane *dp)
{
	return atomic_load(&dp->done) != 0;
}

void dataplane_stop(dataplane *dp, dataplane_stats *st)
{
	if (!dp)
		return;
	if (st)
		*st = (dataplane_stats){ dp->frames_out, dp->frames_in, dp->bytes_out,
					 dp->bytes_in };
	if (dp->x) /* never attached */
		dp->ops->close(dp->x);
	while (dp->all_bufs) {
		sendbuf *b = dp->all_bufs;
		dp->all_bufs = b->all;
		free(b);
	}
	for (int k = 0; k < dp->npeers_c; k++)
		free(dp->addrs[k]);
	free(dp->addrs);
	free(dp->edges);
	free(dp->cross);
	free(dp);
}
