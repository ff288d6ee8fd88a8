/* SPDX-License-Identifier: Apache-2.0 */
/*
 * net/ internals shared by the transports and their tests: the frame
 * reader, which turns a byte stream cut at arbitrary places (the receive
 * buffers of a TCP connection) back into checked frames (format in
 * xport.h).  It needs no socket, so the fuzz target (tests/fuzz/
 * fuzz_xframe.c) drives it on plain byte buffers.
 */
#ifndef WEIR_NET_INTERNAL_H
#define WEIR_NET_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "xport.h"

/*
 * Reassembly state of one stream.  A frame that lies wholly inside the
 * bytes given to one xf_reader_feed() call is delivered in place; only a
 * frame that straddles two calls is copied, into `buf`, which grows to the
 * largest such frame seen (never over XPORT_MAX_FRAME).  The header is
 * always copied (24 bytes) so it is aligned for the callee.
 * Owned by one thread (the transport's data-plane thread).
 */
typedef struct xf_reader {
	xf_hdr hdr;        /* header of the frame in progress */
	uint32_t hdr_have; /* header bytes in hdr (XF_HDR: collecting payload) */
	uint32_t have;     /* payload bytes in buf */
	uint8_t *buf;      /* straddling payloads; malloc'ed, xf_reader_free() */
	size_t cap;
	const char *why;   /* after an error: what was wrong */
	char why_buf[96];
} xf_reader;

/* Called once per whole, checked frame; payload is valid only during the
 * call.  0 to go on, or -errno to stop (set r->why): xf_reader_feed() then
 * returns that error. */
typedef int (*xf_frame_fn)(void *ctx, xf_reader *r, const xf_hdr *h, const void *payload);

/*
 * Feed n bytes of the stream.  Returns 0, or -EBADMSG (bad header or
 * checksum; an oversized len is reported as -EBADMSG too), -ENOMEM, or the
 * callback's error; r->why says what happened.  After an error the stream
 * is unusable (the caller drops the connection).
 */
int xf_reader_feed(xf_reader *r, const uint8_t *p, size_t n, xf_frame_fn fn, void *ctx);
/* True when no frame is partly received (a clean place for EOF). */
static inline int xf_reader_idle(const xf_reader *r) { return r->hdr_have == 0; }
void xf_reader_free(xf_reader *r);

#endif
