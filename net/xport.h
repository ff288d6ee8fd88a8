/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Data-plane transports: how a worker's frames reach the other workers of
 * a cluster.  The data plane (dataplane.c) turns the exchange edges that
 * cross workers into frames -- batches, watermarks, barriers, end of
 * input, credits -- and hands them to a transport, which delivers them to
 * the peer whole, unchanged and in order per peer, or reports the peer
 * lost.  Two transports implement this interface:
 *
 *   tcp   (xport_tcp.c)  one TCP connection per pair of workers, all I/O
 *                        through io_uring: multishot receive into provided
 *                        buffers, zero-copy send where the kernel has it;
 *   dpdk  (xport_dpdk.c) kernel bypass: one DPDK port (a NIC, or a virtual
 *                        device: af_packet or tap on a veth, memif), a
 *                        reliable datagram protocol on top (rdp.c).
 *
 * Every function runs on the data-plane thread of the worker (one thread
 * owns an xport), except open(), which the worker calls before it starts
 * that thread.
 *
 * Frame format (little-endian, the same on every transport):
 *
 *   0       2       3       4               8              12              16
 *   +-------+-------+-------+---------------+---------------+---------------+
 *   | magic | vers  | kind  | edge u32      | len u32       | crc u32       |
 *   | 'W''F'| 1     | u8    |               | payload bytes | crc32c(payload)|
 *   +-------+-------+-------+---------------+---------------+---------------+
 *   | value u64 (watermark ms, barrier id, idleness, credits granted)        |
 *   +------------------------------------------------------------------------+
 *   | payload[len]: a batch in the batch codec's layout (core/batch.c)       |
 *   +------------------------------------------------------------------------+
 *
 * `edge` is the exchange channel's index in the execution plan, which every
 * worker computes identically from the same job and configuration.  A
 * frame longer than XPORT_MAX_FRAME, with a bad magic, version, kind or
 * checksum, is refused: the transport closes that peer and reports it.
 */
#ifndef WEIR_NET_XPORT_H
#define WEIR_NET_XPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define XF_MAGIC 0x4657u /* "WF" read as little-endian u16 */
#define XF_VERSION 1
#define XF_HDR 24u
/* Largest frame (header included): a jumbo batch may not cross workers
 * beyond this; the sender fails the job with a message instead. */
#define XPORT_MAX_FRAME (64u << 20)
/* Pieces of one frame in send() (header included): every transport takes
 * at least this many. */
#define XF_MAX_IOV 8

enum xf_kind {
	XF_DATA = 1,      /* payload: one batch */
	XF_WATERMARK = 2, /* value: event time ms (as i64) */
	XF_BARRIER = 3,   /* value: checkpoint id */
	XF_EOI = 4,       /* end of input on this edge */
	XF_IDLE = 5,      /* value: 1 idle, 0 active */
	XF_CREDIT = 6,    /* value: more data frames the sender may send on edge */
	XF_HELLO = 7,     /* value: the sender's worker index; edge: the deploy
			   * attempt (first frame on a connection) */
	XF_BYE = 8,       /* the sender sends nothing more to this peer */
};

typedef struct xf_hdr {
	uint16_t magic;
	uint8_t version;
	uint8_t kind;
	uint32_t edge;
	uint32_t len;
	uint32_t crc;
	uint64_t value;
} xf_hdr;

_Static_assert(sizeof(xf_hdr) == XF_HDR, "frame header is 24 bytes");

/*
 * Check a received header: 0, or -EBADMSG (bad magic, version or kind) or
 * -EMSGSIZE (len over XPORT_MAX_FRAME - XF_HDR).  The payload checksum is
 * checked separately, once the payload is in (xf_check_payload).
 */
int xf_check_header(const xf_hdr *h);
/* 0 if crc32c(payload) matches h->crc, else -EBADMSG. */
int xf_check_payload(const xf_hdr *h, const void *payload);

typedef struct xport xport;

/* What the transport reports to the data plane from poll(). */
typedef struct xport_events {
	void *ctx;
	/* A whole frame arrived from peer (header checked, payload checked).
	 * The memory is valid only during the call. */
	void (*frame)(void *ctx, int peer, const xf_hdr *h, const void *payload);
	/* The frame sent with this cookie has left our memory: the data plane
	 * may release the batch it pointed into. */
	void (*sent)(void *ctx, void *cookie);
	/* Peer is lost (connection closed or reset, retransmissions gave up,
	 * a malformed frame): err is -errno, why says what happened. */
	void (*lost)(void *ctx, int peer, int err, const char *why);
} xport_events;

typedef struct xport_conf {
	const char *bind;   /* tcp: "IP:PORT" to listen on (port 0: any);
			     * dpdk: the local IP used in the datagrams' IP header */
	const char *device; /* dpdk: EAL device, e.g. "net_af_packet0,iface=veth1"
			     * (NULL: the first port bound to DPDK) */
	int core;           /* CPU the data-plane thread runs on (-1: any) */
	bool zerocopy;      /* tcp: IORING_OP_SEND_ZC when the kernel has it */
	int self;           /* this worker's index */
	uint32_t attempt;   /* deploy attempt: frames of older attempts are dropped */
} xport_conf;

typedef struct xport_ops {
	const char *name;
	/*
	 * Set up the local endpoint (listen, or start DPDK on its port);
	 * write the address peers use to reach it into addr ("IP:PORT" for
	 * tcp, "MAC/IP" for dpdk).  Any thread, before the data-plane thread
	 * starts.  0 or -errno with a message in err.  *out NULL on error.
	 */
	int (*open)(const xport_conf *conf, xport **out, char *addr, size_t addrlen,
		    char *err, size_t errlen);
	/*
	 * Reach every peer: addrs[i] is worker i's address (addrs[self] is
	 * ours, unused).  Returns once a connection to each peer exists both
	 * ways (tcp: the lower index connects, the higher accepts; both send
	 * XF_HELLO first), or -ETIMEDOUT after timeout_ms.
	 */
	int (*connect)(xport *x, int npeers, const char *const *addrs,
		       int timeout_ms, char *err, size_t errlen);
	/*
	 * Queue one frame to peer: iov[0] is the header, iov[1..] the payload
	 * (which may point into a batch: the transport references, it does not
	 * copy, until it reports sent(cookie)).  cookie NULL: the bytes are
	 * copied now.  0, or -EAGAIN (the transport's queue to peer is full:
	 * try again after poll()), -EPIPE (peer lost).
	 */
	int (*send)(xport *x, int peer, const struct iovec *iov, int iovcnt,
		    void *cookie);
	/* Submit queued sends, reap completions, deliver what arrived.  > 0
	 * when it did work; never blocks. */
	int (*poll)(xport *x, const xport_events *ev);
	/* Wait (sleep) up to timeout_ns for transport activity, or until fd
	 * (the polling reactor's eventfd, -1: none) is readable. */
	void (*wait)(xport *x, int fd, uint64_t timeout_ns);
	/*
	 * We send nothing more: flush what is queued, tell every peer (XF_BYE),
	 * and return 1 once every frame we sent was delivered and every peer
	 * said the same to us; 0 while in progress; -errno on failure.
	 * Called repeatedly (poll() still delivers frames meanwhile).
	 */
	int (*finish)(xport *x, const xport_events *ev);
	/* Close everything at once (cancellation: nothing is flushed) and free. */
	void (*close)(xport *x);
} xport_ops;

extern const xport_ops xport_tcp_ops;
extern const xport_ops xport_dpdk_ops; /* only when built with DPDK */

#endif
