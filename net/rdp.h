/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rdp: the reliable datagram protocol under the DPDK transport.  Pure
 * logic -- no DPDK, no sockets, no clock, no threads: the caller hands it
 * received datagrams (rdp_input), asks it what to transmit now (rdp_poll,
 * through an emit callback) and passes the time in as `now` (ns, any
 * monotonic origin).  That keeps it unit-testable over a simulated lossy
 * link (tests/unit/test_rdp.c) and fuzzable (tests/fuzz/fuzz_rdp.c).
 *
 * Per peer, a frame (xport.h's header + payload, up to max_frame bytes) is
 * cut into fragments of equal size (the last one shorter), each carried by
 * one datagram with its own sequence number.  The receiver acknowledges
 * cumulatively (every seq < ack is in) plus a 64-bit SACK bitmap of the
 * fragments after ack, keeps out-of-order fragments in a reorder ring of
 * `window` slots, and delivers whole frames in order, each exactly once.
 * The sender keeps at most min(window, the peer's advertised wnd) fragments
 * in flight (flow control in packets: the receiver's ring can always hold
 * them), retransmits a fragment after RTO (Jacobson/Karels estimate, Karn's
 * rule, exponential backoff up to rto_max) or earlier when three later
 * fragments were SACKed (fast retransmit), and reports the peer lost when
 * the oldest unacknowledged fragment made no progress for give_up_ns, or
 * when a peer it has heard from stays silent that long (idle peers send a
 * bare ACK every keepalive_ns).
 *
 * Datagram (the UDP payload; little-endian; 52 bytes then payload):
 *
 *   0      1      2      3      4             6             8
 *   +------+------+------+------+-------------+-------------+
 *   | 'R'  | vers | type | flags| src u16     | dst u16     |   type 1 DATA, 2 ACK
 *   +------+------+------+------+-------------+-------------+   flags 0
 *   | attempt u32               | seq u32 (DATA; ACK: 0)    |
 *   +---------------------------+---------------------------+
 *   | ack u32: all seq < ack in | wnd u32: fragments the    |
 *   |                           | sender may have past ack  |
 *   +---------------------------+---------------------------+
 *   | sack u64 (two u32, low first): bit i = seq ack+1+i in |
 *   +---------------------------+---------------------------+
 *   | frag_idx u32              | frag_cnt u32              |   DATA: this
 *   +---------------------------+-------------+-------------+   fragment of
 *   | frame_len u32             | len u16     | resv u16 0  |   frame_len
 *   +---------------------------+-------------+-------------+   bytes
 *   | crc u32: crc32c(header with crc 0, payload)           |
 *   +-------------------------------------------------------+
 *   | payload[len]: frame bytes [frag_idx * fsz, + len)      |
 *   +-------------------------------------------------------+
 *
 * fsz = ceil(frame_len / frag_cnt): every fragment but the last carries
 * fsz bytes, so the receiver places a fragment without knowing the
 * sender's MTU, and checks len against it.  A 0-byte frame is one fragment
 * of 0 bytes.  Datagrams of another deploy attempt are dropped (stale);
 * anything malformed is counted (rdp_stats.rx_bad) and dropped.
 *
 * Who may touch it: an rdp belongs to one thread (the transport's data-plane
 * thread); nothing in it is shared.  Callbacks run inside rdp_input(),
 * rdp_poll() and rdp_send_frame() never; they may call rdp_send_frame()
 * but not rdp_free().
 *
 * Memory: everything is allocated by rdp_new(), sized by the conf, except
 * one reassembly buffer per peer that grows to the largest multi-fragment
 * frame received (amortised; never per packet), and the copy of a frame
 * sent without cookie when it is larger than RDP_INLINE bytes.
 */
#ifndef WEIR_NET_RDP_H
#define WEIR_NET_RDP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define RDP_MAGIC 'R'
#define RDP_VERSION 1
#define RDP_HDR 52u
/* IPv4 (20) + UDP (8) in front of every datagram: conf.mtu counts them. */
#define RDP_IPUDP 28u
#define RDP_DEFAULT_MTU 1500u
#define RDP_MIN_MTU 576u
#define RDP_MAX_IOV 8        /* iovecs per frame in rdp_send_frame() */
#define RDP_INLINE 128u      /* frames sent without cookie up to this are copied inline */
#define RDP_MAX_WINDOW 65536u

enum rdp_type { RDP_DATA = 1, RDP_ACK = 2 };

typedef struct rdp_hdr {
	uint8_t magic, version, type, flags;
	uint16_t src, dst;
	uint32_t attempt;
	uint32_t seq;
	uint32_t ack;
	uint32_t wnd;
	uint32_t sack_lo, sack_hi;
	uint32_t frag_idx, frag_cnt;
	uint32_t frame_len;
	uint16_t len, resv;
	uint32_t crc;
} rdp_hdr;

_Static_assert(sizeof(rdp_hdr) == RDP_HDR, "rdp header is 52 bytes");

typedef struct rdp_conf {
	int self;               /* our peer id */
	int npeers;             /* ids 0 .. npeers-1 (ours included, unused) */
	uint32_t attempt;       /* deploy attempt carried by every datagram */
	uint32_t mtu;           /* IP MTU of the link (0: 1500); >= RDP_MIN_MTU */
	uint32_t window;        /* fragments in flight / reorder slots per peer
				 * (0: 512); a power of two <= RDP_MAX_WINDOW */
	uint32_t txq;           /* frames queued per peer (0: 256) */
	uint32_t max_frame;     /* largest frame accepted (0: XPORT_MAX_FRAME) */
	uint64_t rto_init_ns;   /* 0: 20 ms */
	uint64_t rto_min_ns;    /* 0: 2 ms */
	uint64_t rto_max_ns;    /* 0: 200 ms */
	uint64_t give_up_ns;    /* 0: 5 s */
	uint64_t keepalive_ns;  /* 0: give_up / 5 */
	uint32_t isn;           /* first sequence number, both ways (tests: wrap) */
} rdp_conf;

typedef struct rdp_cb {
	void *ctx;
	/* A whole frame from peer, in order; memory valid during the call. */
	void (*deliver)(void *ctx, int peer, const void *frame, size_t len);
	/* Every fragment of the frame sent with this (non-NULL) cookie was
	 * acknowledged, or the peer was lost: the caller's memory is free. */
	void (*sent)(void *ctx, void *cookie);
	/* Peer lost: err -ETIMEDOUT (gave up) or -EPROTO (peer broke the
	 * protocol in a datagram with a valid checksum).  Reported once;
	 * the cookies of its unacknowledged frames follow through sent(). */
	void (*lost)(void *ctx, int peer, int err, const char *why);
} rdp_cb;

/*
 * Transmit one datagram to peer: iov[0] is the rdp header, iov[1..] the
 * payload.  The header is valid during the call only; the payload too when
 * cookie is NULL, else until rdp reports sent(cookie) (the caller may keep
 * references to it, e.g. mbufs attached to it, meanwhile).  Return 0 when
 * taken, < 0 when the device queue is full: rdp stops emitting and tries
 * again at the next rdp_poll().
 */
typedef int (*rdp_emit_fn)(void *ctx, int peer, const struct iovec *iov, int iovcnt,
			   void *cookie);

typedef struct rdp_stats {
	uint64_t rx_datagrams;   /* accepted */
	uint64_t rx_bad;         /* malformed: length, field, checksum */
	uint64_t rx_stale;       /* another attempt, or from a lost peer */
	uint64_t rx_dup;         /* fragments already received */
	uint64_t rx_window;      /* fragments beyond the receive window */
	uint64_t tx_data;        /* data datagrams, first transmissions */
	uint64_t tx_rexmit;      /* retransmissions after RTO */
	uint64_t tx_fast;        /* fast retransmissions (SACK holes) */
	uint64_t tx_ack;         /* bare acknowledgements */
	uint64_t frames_in, frames_out;
	uint32_t max_inflight;   /* most fragments ever in flight to one peer */
	uint32_t max_reorder;    /* most fragments ever held out of order */
} rdp_stats;

typedef struct rdp rdp;

/* Make an endpoint: 0, -EINVAL (bad conf) or -ENOMEM; *out NULL on error. */
int rdp_new(const rdp_conf *conf, const rdp_cb *cb, rdp **out);
/* Free it; no callback fires (the caller owns the cookies it still holds). */
void rdp_free(rdp *r);

/*
 * Queue one frame to peer: the concatenation of iov[0..iovcnt) (at most
 * RDP_MAX_IOV, total <= max_frame).  With a cookie the bytes are
 * referenced until sent(cookie); without, copied now.  0, -EAGAIN (txq
 * frames already queued to peer), -EPIPE (peer lost), -EINVAL, -EMSGSIZE.
 */
int rdp_send_frame(rdp *r, int peer, const struct iovec *iov, int iovcnt, void *cookie);
/* One received datagram of n bytes: 1 accepted, 0 dropped (and counted). */
int rdp_input(rdp *r, const void *dgram, size_t n, uint64_t now);
/* Emit what is due now (retransmissions, new fragments, acks); checks
 * timers and reports lost peers.  Returns the datagrams emitted. */
int rdp_poll(rdp *r, uint64_t now, rdp_emit_fn emit, void *ectx);

/* Declare peer lost (the caller found its frames malformed): lost() and
 * sent() fire as for a give-up; its datagrams are dropped from now on. */
void rdp_abort_peer(rdp *r, int peer, int err, const char *why);
/* Frames queued to peer and not yet fully acknowledged. */
uint32_t rdp_pending(const rdp *r, int peer);
bool rdp_lost(const rdp *r, int peer);
/* Nanoseconds since a valid datagram from peer was last seen (UINT64_MAX:
 * never). */
uint64_t rdp_silence(const rdp *r, int peer, uint64_t now);
/* Current retransmission timeout to peer. */
uint64_t rdp_rto(const rdp *r, int peer);
/* Fragments held in reorder slots for peer now. */
uint32_t rdp_reorder_held(const rdp *r, int peer);
const rdp_stats *rdp_get_stats(const rdp *r);
/* Largest fragment payload (bytes) for this conf. */
uint32_t rdp_mss(const rdp *r);

#endif
