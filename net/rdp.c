/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The reliable datagram protocol (design and datagram format in rdp.h).
 *
 * Per peer, the sender side is a ring of queued frames (txq slots) and a
 * ring of in-flight fragments indexed by seq % window; the receiver side a
 * reorder ring of `window` fragment slots (mss bytes each) and the frame
 * being reassembled.  Sequence numbers are u32 and compared in serial
 * arithmetic, so they may wrap.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "rdp.h"
#include "xport.h"

#define NS_MS 1000000ull

typedef struct txframe {
	void *cookie;
	struct iovec iov[RDP_MAX_IOV];
	int iovcnt;
	uint32_t len, nfrag, fsz;
	uint32_t first_seq;   /* valid once fragment 0 was sent */
	uint32_t nsent;       /* fragments sent at least once */
	uint32_t nacked;
	uint8_t *heap;        /* copy of a large frame sent without cookie */
	uint8_t inl[RDP_INLINE];
} txframe;

typedef struct txfrag {
	uint64_t sent_at;
	uint32_t slot;        /* txframe index in the peer's ring */
	uint32_t idx;         /* fragment index in the frame */
	uint16_t tries;
	uint8_t sacked;
} txfrag;

typedef struct rxslot {
	uint32_t idx, cnt, flen, len;
} rxslot;

typedef struct rpeer {
	/* sender */
	txframe *q;
	uint32_t q_head, q_len;   /* ring of txq frames */
	uint32_t q_unsent;        /* frames from head with every fragment sent */
	txfrag *fr;               /* window entries, seq % window */
	uint32_t snd_una, snd_nxt, high_sack;
	uint32_t peer_wnd;
	uint32_t probe;           /* RTO retransmissions allowed past high_sack */
	bool recovering;          /* an RTO fired since everything was acked */
	uint64_t srtt, rttvar, rto;
	uint64_t progress_at;     /* last time snd_una moved, or sending began */
	uint64_t tx_at;           /* last datagram emitted */
	/* receiver */
	uint32_t rcv_nxt;
	uint8_t *have;            /* window bytes */
	rxslot *meta;
	uint8_t *slots;           /* window * mss */
	uint32_t held;
	uint8_t *asm_buf;
	size_t asm_cap;
	uint32_t asm_next, asm_cnt, asm_flen;
	bool asm_on;
	bool ack_due;
	bool heard, lost;
	uint64_t rx_at;
} rpeer;

struct rdp {
	rdp_conf c;
	rdp_cb cb;
	uint32_t mss, wmask;
	rpeer *p;
	rdp_stats st;
};

static inline bool seq_lt(uint32_t a, uint32_t b) { return (int32_t)(a - b) < 0; }
static inline bool seq_le(uint32_t a, uint32_t b) { return (int32_t)(a - b) <= 0; }

uint32_t rdp_mss(const rdp *r) { return r->mss; }
const rdp_stats *rdp_get_stats(const rdp *r) { return &r->st; }
bool rdp_lost(const rdp *r, int id) { return r->p[id].lost; }
uint32_t rdp_pending(const rdp *r, int id) { return r->p[id].q_len; }
uint64_t rdp_rto(const rdp *r, int id) { return r->p[id].rto; }
uint32_t rdp_reorder_held(const rdp *r, int id) { return r->p[id].held; }

uint64_t rdp_silence(const rdp *r, int id, uint64_t now)
{
	const rpeer *p = &r->p[id];
	return p->heard ? now - p->rx_at : UINT64_MAX;
}

void rdp_free(rdp *r)
{
	if (!r)
		return;
	if (r->p) {
		for (int i = 0; i < r->c.npeers; i++) {
			rpeer *p = &r->p[i];
			if (p->q)
				for (uint32_t k = 0; k < r->c.txq; k++)
					free(p->q[k].heap);
			free(p->q);
			free(p->fr);
			free(p->have);
			free(p->meta);
			free(p->slots);
			free(p->asm_buf);
		}
		free(r->p);
	}
	free(r);
}

int rdp_new(const rdp_conf *conf, const rdp_cb *cb, rdp **out)
{
	*out = NULL;
	rdp_conf c = *conf;
	if (!c.mtu)
		c.mtu = RDP_DEFAULT_MTU;
	if (!c.window)
		c.window = 512;
	if (!c.txq)
		c.txq = 256;
	if (!c.max_frame)
		c.max_frame = XPORT_MAX_FRAME;
	if (!c.rto_init_ns)
		c.rto_init_ns = 20 * NS_MS;
	if (!c.rto_min_ns)
		c.rto_min_ns = 2 * NS_MS;
	if (!c.rto_max_ns)
		c.rto_max_ns = 200 * NS_MS;
	if (!c.give_up_ns)
		c.give_up_ns = 5000 * NS_MS;
	if (!c.keepalive_ns)
		c.keepalive_ns = c.give_up_ns / 5;
	if (c.npeers < 1 || c.npeers > 65535 || c.self < 0 || c.self >= c.npeers ||
	    c.mtu < RDP_MIN_MTU || c.mtu > 65535 || c.window > RDP_MAX_WINDOW ||
	    c.window < 64 || (c.window & (c.window - 1)) || c.txq > (1u << 20) ||
	    c.rto_min_ns > c.rto_max_ns || c.max_frame > XPORT_MAX_FRAME ||
	    !cb->deliver || !cb->sent || !cb->lost)
		return -EINVAL;

	rdp *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->c = c;
	r->cb = *cb;
	r->mss = c.mtu - RDP_IPUDP - RDP_HDR;
	r->wmask = c.window - 1;
	r->p = calloc((size_t)c.npeers, sizeof(rpeer));
	if (!r->p)
		goto fail;
	for (int i = 0; i < c.npeers; i++) {
		rpeer *p = &r->p[i];
		if (i == c.self)
			continue;
		p->q = calloc(c.txq, sizeof(txframe));
		p->fr = calloc(c.window, sizeof(txfrag));
		p->have = calloc(c.window, 1);
		p->meta = calloc(c.window, sizeof(rxslot));
		p->slots = malloc((size_t)c.window * r->mss);
		if (!p->q || !p->fr || !p->have || !p->meta || !p->slots)
			goto fail;
		p->peer_wnd = 64; /* until the peer advertises its own */
		p->probe = 8;
		p->snd_una = p->snd_nxt = p->high_sack = p->rcv_nxt = c.isn;
		p->rto = c.rto_init_ns;
	}
	*out = r;
	return 0;
fail:
	rdp_free(r);
	return -ENOMEM;
}

/* ---- sending ------------------------------------------------------------ */

int rdp_send_frame(rdp *r, int peer_id, const struct iovec *iov, int iovcnt, void *cookie)
{
	if (peer_id < 0 || peer_id >= r->c.npeers || peer_id == r->c.self ||
	    iovcnt < 0 || iovcnt > RDP_MAX_IOV)
		return -EINVAL;
	rpeer *p = &r->p[peer_id];
	if (p->lost)
		return -EPIPE;
	if (p->q_len == r->c.txq)
		return -EAGAIN;
	size_t len = 0;
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (len > r->c.max_frame)
		return -EMSGSIZE;

	txframe *f = &p->q[(p->q_head + p->q_len) % r->c.txq];
	f->cookie = cookie;
	f->len = (uint32_t)len;
	f->nfrag = len ? (uint32_t)((len + r->mss - 1) / r->mss) : 1;
	f->fsz = len ? (uint32_t)((len + f->nfrag - 1) / f->nfrag) : 0;
	f->nsent = f->nacked = 0;
	if (cookie) {
		memcpy(f->iov, iov, sizeof(*iov) * (size_t)iovcnt);
		f->iovcnt = iovcnt;
	} else {
		uint8_t *dst = f->inl;
		if (len > RDP_INLINE) {
			dst = malloc(len);
			if (!dst)
				return -ENOMEM;
			f->heap = dst;
		}
		size_t off = 0;
		for (int i = 0; i < iovcnt; i++) {
			if (iov[i].iov_len)
				memcpy(dst + off, iov[i].iov_base, iov[i].iov_len);
			off += iov[i].iov_len;
		}
		f->iov[0] = (struct iovec){ dst, len };
		f->iovcnt = 1;
	}
	p->q_len++;
	return 0;
}

static void frame_release(txframe *f)
{
	free(f->heap);
	f->heap = NULL;
	f->cookie = NULL;
}

/* Gather payload bytes [off, off + n) of f into out[] (at most RDP_MAX_IOV). */
static int frame_slice(const txframe *f, uint32_t off, uint32_t n, struct iovec *out)
{
	int k = 0;
	for (int i = 0; i < f->iovcnt && n; i++) {
		size_t l = f->iov[i].iov_len;
		if (off >= l) {
			off -= (uint32_t)l;
			continue;
		}
		size_t take = l - off < n ? l - off : n;
		out[k++] = (struct iovec){ (uint8_t *)f->iov[i].iov_base + off, take };
		n -= (uint32_t)take;
		off = 0;
	}
	return k;
}

static uint64_t sack_bits(const rdp *r, const rpeer *p)
{
	uint64_t bits = 0;
	uint32_t lim = r->c.window - 1 < 64 ? r->c.window - 1 : 64;
	if (!p->held)
		return 0;
	for (uint32_t i = 0; i < lim; i++)
		if (p->have[(p->rcv_nxt + 1 + i) & r->wmask])
			bits |= 1ull << i;
	return bits;
}

static void hdr_fill(const rdp *r, const rpeer *p, int peer_id, rdp_hdr *h, uint8_t type)
{
	memset(h, 0, sizeof(*h));
	h->magic = RDP_MAGIC;
	h->version = RDP_VERSION;
	h->type = type;
	h->src = (uint16_t)r->c.self;
	h->dst = (uint16_t)peer_id;
	h->attempt = r->c.attempt;
	h->ack = p->rcv_nxt;
	h->wnd = r->c.window;
	uint64_t s = sack_bits(r, p);
	h->sack_lo = (uint32_t)s;
	h->sack_hi = (uint32_t)(s >> 32);
}

static uint32_t dgram_crc(const rdp_hdr *h, const struct iovec *pl, int n)
{
	uint32_t c = crc32c(0, h, RDP_HDR);
	for (int i = 0; i < n; i++)
		c = crc32c(c, pl[i].iov_base, pl[i].iov_len);
	return c;
}

/* Emit fragment seq (its txfrag already filled in). */
static int emit_data(rdp *r, int peer_id, uint32_t seq, rdp_emit_fn emit, void *ectx, uint64_t now)
{
	rpeer *p = &r->p[peer_id];
	txfrag *t = &p->fr[seq & r->wmask];
	txframe *f = &p->q[t->slot];
	struct iovec iov[1 + RDP_MAX_IOV];
	rdp_hdr h;
	hdr_fill(r, p, peer_id, &h, RDP_DATA);
	uint32_t off = t->idx * f->fsz;
	uint32_t n = f->len ? (f->len - off < f->fsz ? f->len - off : f->fsz) : 0;
	h.seq = seq;
	h.frag_idx = t->idx;
	h.frag_cnt = f->nfrag;
	h.frame_len = f->len;
	h.len = (uint16_t)n;
	int k = frame_slice(f, off, n, iov + 1);
	h.crc = dgram_crc(&h, iov + 1, k);
	iov[0] = (struct iovec){ &h, RDP_HDR };
	if (emit(ectx, peer_id, iov, 1 + k, f->cookie) < 0)
		return -EAGAIN;
	t->sent_at = now;
	p->tx_at = now;
	p->ack_due = false;
	return 0;
}

static int emit_ack(rdp *r, int peer_id, rdp_emit_fn emit, void *ectx, uint64_t now)
{
	rpeer *p = &r->p[peer_id];
	rdp_hdr h;
	hdr_fill(r, p, peer_id, &h, RDP_ACK);
	h.crc = crc32c(0, &h, RDP_HDR);
	struct iovec iov = { &h, RDP_HDR };
	if (emit(ectx, peer_id, &iov, 1, NULL) < 0)
		return -EAGAIN;
	p->tx_at = now;
	p->ack_due = false;
	r->st.tx_ack++;
	return 0;
}

static void peer_lose(rdp *r, int peer_id, int err, const char *why)
{
	rpeer *p = &r->p[peer_id];
	if (p->lost)
		return;
	p->lost = true;
	r->cb.lost(r->cb.ctx, peer_id, err, why);
	while (p->q_len) {
		txframe *f = &p->q[p->q_head];
		void *cookie = f->cookie;
		frame_release(f);
		p->q_head = (p->q_head + 1) % r->c.txq;
		p->q_len--;
		if (cookie)
			r->cb.sent(r->cb.ctx, cookie);
	}
	p->q_unsent = 0;
	p->snd_una = p->snd_nxt;
	p->asm_on = false;
}

void rdp_abort_peer(rdp *r, int peer_id, int err, const char *why)
{
	if (peer_id >= 0 && peer_id < r->c.npeers && peer_id != r->c.self)
		peer_lose(r, peer_id, err, why);
}

/* The next unsent fragment, if the window allows: fills its txfrag. */
static bool next_fragment(rdp *r, rpeer *p)
{
	uint32_t wnd = p->peer_wnd < r->c.window ? p->peer_wnd : r->c.window;
	if (p->snd_nxt - p->snd_una >= wnd || p->q_unsent >= p->q_len)
		return false;
	uint32_t slot = (p->q_head + p->q_unsent) % r->c.txq;
	txframe *f = &p->q[slot];
	if (f->nsent == 0)
		f->first_seq = p->snd_nxt;
	txfrag *t = &p->fr[p->snd_nxt & r->wmask];
	*t = (txfrag){ .slot = slot, .idx = f->nsent, .tries = 1 };
	return true;
}

static void fragment_went(rdp *r, rpeer *p)
{
	txframe *f = &p->q[p->fr[p->snd_nxt & r->wmask].slot];
	if (p->snd_nxt == p->snd_una)
		p->progress_at = p->fr[p->snd_nxt & r->wmask].sent_at;
	p->snd_nxt++;
	if (++f->nsent == f->nfrag)
		p->q_unsent++;
	if (p->snd_nxt - p->snd_una > r->st.max_inflight)
		r->st.max_inflight = p->snd_nxt - p->snd_una;
	r->st.tx_data++;
}

static int poll_peer(rdp *r, int peer_id, uint64_t now, rdp_emit_fn emit, void *ectx)
{
	rpeer *p = &r->p[peer_id];
	int n = 0;
	if (p->lost)
		return 0;
	if (p->snd_una != p->snd_nxt && now - p->progress_at >= r->c.give_up_ns) {
		peer_lose(r, peer_id, -ETIMEDOUT, "no acknowledgement within the give-up time");
		return 0;
	}
	if (p->heard && now - p->rx_at >= r->c.give_up_ns) {
		peer_lose(r, peer_id, -ETIMEDOUT, "peer silent for the give-up time");
		return 0;
	}
	/* Retransmissions: RTO expired, or a hole with 3+ SACKed fragments
	 * beyond it that has waited more than two smoothed RTTs.  Past the
	 * highest SACKed fragment the receiver told us nothing, and most of
	 * those fragments are usually in its reorder ring: after an RTO only
	 * `probe` of them go again (the oldest one always does), and the
	 * allowance doubles with each acknowledgement that makes progress --
	 * a slow start that keeps a timeout from resending the whole window. */
	bool backoff = false;
	uint64_t fast_wait = 2 * p->srtt + 100000;
	for (uint32_t s = p->snd_una; seq_lt(s, p->snd_nxt); s++) {
		txfrag *t = &p->fr[s & r->wmask];
		if (t->sacked)
			continue;
		uint64_t age = now - t->sent_at;
		bool rto = age >= p->rto;
		bool fast = !rto && p->srtt && seq_lt(s + 3, p->high_sack + 1) && age >= fast_wait;
		if (!rto && !fast)
			continue;
		if (rto && !p->recovering) {
			p->recovering = true;
			p->probe = 8;
		}
		if (rto && s != p->snd_una && seq_lt(p->high_sack, s)) {
			if (!p->probe)
				continue;
			p->probe--;
		}
		if (emit_data(r, peer_id, s, emit, ectx, now) < 0)
			return n;
		n++;
		if (t->tries < UINT16_MAX)
			t->tries++;
		if (rto) {
			backoff = true;
			r->st.tx_rexmit++;
		} else {
			r->st.tx_fast++;
		}
	}
	if (backoff) {
		p->rto = p->rto * 2 > r->c.rto_max_ns ? r->c.rto_max_ns : p->rto * 2;
	}
	while (next_fragment(r, p)) {
		if (emit_data(r, peer_id, p->snd_nxt, emit, ectx, now) < 0)
			return n;
		fragment_went(r, p);
		n++;
	}
	if (p->ack_due || now - p->tx_at >= r->c.keepalive_ns) {
		if (emit_ack(r, peer_id, emit, ectx, now) < 0)
			return n;
		n++;
	}
	return n;
}

int rdp_poll(rdp *r, uint64_t now, rdp_emit_fn emit, void *ectx)
{
	int n = 0;
	for (int i = 0; i < r->c.npeers; i++)
		if (i != r->c.self)
			n += poll_peer(r, i, now, emit, ectx);
	return n;
}

/* ---- acknowledgements ------------------------------------------------------ */

static void rtt_sample(rdp *r, rpeer *p, uint64_t rtt)
{
	if (!p->srtt) {
		p->srtt = rtt;
		p->rttvar = rtt / 2;
	} else {
		uint64_t d = rtt > p->srtt ? rtt - p->srtt : p->srtt - rtt;
		p->rttvar = (3 * p->rttvar + d) / 4;
		p->srtt = (7 * p->srtt + rtt) / 8;
	}
	uint64_t rto = p->srtt + 4 * p->rttvar;
	if (rto < r->c.rto_min_ns)
		rto = r->c.rto_min_ns;
	if (rto > r->c.rto_max_ns)
		rto = r->c.rto_max_ns;
	p->rto = rto;
}

static void on_ack(rdp *r, int peer_id, const rdp_hdr *h, uint64_t now)
{
	rpeer *p = &r->p[peer_id];
	p->peer_wnd = h->wnd;
	uint32_t ack = h->ack;
	if (seq_lt(p->snd_una, ack)) {
		/* RTT from the newest fragment acked that went only once. */
		txfrag *last = &p->fr[(ack - 1) & r->wmask];
		if (last->tries == 1)
			rtt_sample(r, p, now - last->sent_at);
		for (uint32_t s = p->snd_una; s != ack; s++) {
			txfrag *t = &p->fr[s & r->wmask];
			p->q[t->slot].nacked++;
		}
		p->snd_una = ack;
		p->progress_at = now;
		if (p->recovering)
			p->probe = p->probe * 2 + 1 < r->c.window ? p->probe * 2 + 1 : r->c.window;
		if (ack == p->snd_nxt)
			p->recovering = false;
		/* Frames complete in order: pop them from the head. */
		while (p->q_len && p->q_unsent && p->q[p->q_head].nacked == p->q[p->q_head].nfrag) {
			txframe *f = &p->q[p->q_head];
			void *cookie = f->cookie;
			frame_release(f);
			p->q_head = (p->q_head + 1) % r->c.txq;
			p->q_len--;
			p->q_unsent--;
			r->st.frames_out++;
			if (cookie)
				r->cb.sent(r->cb.ctx, cookie);
			if (p->lost)
				return;
		}
	}
	if (seq_lt(p->high_sack, p->snd_una))
		p->high_sack = p->snd_una;
	uint64_t bits = (uint64_t)h->sack_hi << 32 | h->sack_lo;
	while (bits) {
		int i = __builtin_ctzll(bits);
		bits &= bits - 1;
		uint32_t s = ack + 1 + (uint32_t)i;
		if (!seq_lt(s, p->snd_nxt))
			break;
		if (seq_lt(s, p->snd_una))
			continue; /* an old ack's bitmap: those are acked already */
		p->fr[s & r->wmask].sacked = 1;
		if (seq_lt(p->high_sack, s))
			p->high_sack = s;
	}
}

/* ---- receiving -------------------------------------------------------------- */

/* The next fragment in sequence: reassemble, deliver whole frames.  False
 * when the peer broke the fragment sequence (it has been reported lost). */
static bool consume(rdp *r, int peer_id, const rdp_hdr *h, const void *payload)
{
	rpeer *p = &r->p[peer_id];
	if (!p->asm_on) {
		if (h->frag_idx != 0)
			goto broken;
		if (h->frag_cnt == 1) {
			r->st.frames_in++;
			r->cb.deliver(r->cb.ctx, peer_id, payload, h->len);
			return !p->lost;
		}
		if (p->asm_cap < h->frame_len) {
			/* Grows to the largest frame seen: amortised, not per packet. */
			size_t cap = p->asm_cap ? p->asm_cap : 65536;
			while (cap < h->frame_len)
				cap *= 2;
			uint8_t *b = realloc(p->asm_buf, cap);
			if (!b) {
				peer_lose(r, peer_id, -ENOMEM, "no memory to reassemble a frame");
				return false;
			}
			p->asm_buf = b;
			p->asm_cap = cap;
		}
		p->asm_on = true;
		p->asm_next = 0;
		p->asm_cnt = h->frag_cnt;
		p->asm_flen = h->frame_len;
	}
	if (h->frag_idx != p->asm_next || h->frag_cnt != p->asm_cnt || h->frame_len != p->asm_flen)
		goto broken;
	uint32_t fsz = (h->frame_len + h->frag_cnt - 1) / h->frag_cnt;
	memcpy(p->asm_buf + (size_t)h->frag_idx * fsz, payload, h->len);
	if (++p->asm_next == p->asm_cnt) {
		p->asm_on = false;
		r->st.frames_in++;
		r->cb.deliver(r->cb.ctx, peer_id, p->asm_buf, p->asm_flen);
	}
	return !p->lost;
broken:
	peer_lose(r, peer_id, -EPROTO, "fragment out of sequence");
	return false;
}

static void on_data(rdp *r, int peer_id, const rdp_hdr *h, const void *payload)
{
	rpeer *p = &r->p[peer_id];
	uint32_t s = h->seq;
	p->ack_due = true;
	if (seq_lt(s, p->rcv_nxt)) {
		r->st.rx_dup++;
		return;
	}
	if (s - p->rcv_nxt >= r->c.window) {
		r->st.rx_window++;
		return;
	}
	uint32_t k = s & r->wmask;
	if (p->have[k]) {
		r->st.rx_dup++;
		return;
	}
	if (s != p->rcv_nxt) {
		p->have[k] = 1;
		p->meta[k] = (rxslot){ h->frag_idx, h->frag_cnt, h->frame_len, h->len };
		memcpy(p->slots + (size_t)k * r->mss, payload, h->len);
		if (++p->held > r->st.max_reorder)
			r->st.max_reorder = p->held;
		return;
	}
	if (!consume(r, peer_id, h, payload))
		return;
	p->rcv_nxt++;
	while (p->have[p->rcv_nxt & r->wmask]) {
		k = p->rcv_nxt & r->wmask;
		rxslot *m = &p->meta[k];
		rdp_hdr hh = { .frag_idx = m->idx, .frag_cnt = m->cnt,
			       .frame_len = m->flen, .len = (uint16_t)m->len };
		p->have[k] = 0;
		p->held--;
		p->rcv_nxt++;
		if (!consume(r, peer_id, &hh, p->slots + (size_t)k * r->mss))
			return;
	}
}

/* Every field checked before anything is believed. */
static bool dgram_valid(const rdp *r, const rdp_hdr *h, size_t n, const void *payload)
{
	if (h->magic != RDP_MAGIC || h->version != RDP_VERSION || h->flags || h->resv)
		return false;
	if (h->src >= r->c.npeers || h->src == r->c.self || h->dst != r->c.self)
		return false;
	if (h->len != n - RDP_HDR || h->wnd == 0 || h->wnd > RDP_MAX_WINDOW)
		return false;
	if (h->type == RDP_ACK) {
		if (h->seq || h->frag_idx || h->frag_cnt || h->frame_len || h->len)
			return false;
	} else if (h->type == RDP_DATA) {
		if (h->len > r->mss || h->frame_len > r->c.max_frame || h->frag_cnt == 0 ||
		    h->frag_idx >= h->frag_cnt)
			return false;
		if (h->frame_len == 0) {
			if (h->frag_cnt != 1 || h->len)
				return false;
		} else {
			uint32_t fsz = (uint32_t)(((uint64_t)h->frame_len + h->frag_cnt - 1) / h->frag_cnt);
			uint64_t off = (uint64_t)h->frag_idx * fsz;
			uint64_t last = (uint64_t)(h->frag_cnt - 1) * fsz;
			if (last >= h->frame_len || fsz > r->mss)
				return false;
			uint64_t want = h->frame_len - off < fsz ? h->frame_len - off : fsz;
			if (h->len != want)
				return false;
		}
	} else {
		return false;
	}
	rdp_hdr c = *h;
	c.crc = 0;
	uint32_t crc = crc32c(0, &c, RDP_HDR);
	crc = crc32c(crc, payload, h->len);
	return crc == h->crc;
}

int rdp_input(rdp *r, const void *dgram, size_t n, uint64_t now)
{
	rdp_hdr h;
	if (n < RDP_HDR || n > RDP_HDR + 65535) {
		r->st.rx_bad++;
		return 0;
	}
	memcpy(&h, dgram, RDP_HDR);
	const uint8_t *payload = (const uint8_t *)dgram + RDP_HDR;
	if (!dgram_valid(r, &h, n, payload)) {
		r->st.rx_bad++;
		return 0;
	}
	rpeer *p = &r->p[h.src];
	if (h.attempt != r->c.attempt || p->lost) {
		r->st.rx_stale++;
		return 0;
	}
	/* An ack past what we sent is not ours to believe. */
	if (seq_lt(p->snd_nxt, h.ack)) {
		r->st.rx_bad++;
		return 0;
	}
	r->st.rx_datagrams++;
	p->heard = true;
	p->rx_at = now;
	on_ack(r, h.src, &h, now);
	if (!p->lost && h.type == RDP_DATA)
		on_data(r, h.src, &h, payload);
	return 1;
}
