/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for the frame reader (net/net_internal.h, net/xport.c), the
 * part of the TCP transport that turns received bytes, cut wherever the
 * kernel cut them, back into frames.  It must deliver only frames whose
 * header and checksum are right, whole and in stream order, or stop with
 * an error and a reason; never read outside the input, crash, or allocate
 * more than XPORT_MAX_FRAME.
 *
 * The first input byte picks how the rest is used, so mutations reach past
 * the checksums:
 *   bit 0    fix up the stream first: every header the walk finds gets the
 *            right magic, version and checksum (len clamped to what is left)
 *   bits 1-7 seed of the cut points: the stream is fed in pieces of 1 to
 *            (seed * 37 + 1) bytes
 * Built as a libFuzzer target with clang (-Dfuzz=enabled), and always as a
 * replay driver (fuzz_driver.c) that the test suite runs over a seeded
 * corpus plus deterministic random mutations.
 */
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "net_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct seen {
	const uint8_t *stream;
	size_t fed; /* bytes fed before the current piece */
	size_t frames;
} seen;

static int on_frame(void *ctx, xf_reader *r, const xf_hdr *h, const void *payload)
{
	seen *s = ctx;
	(void)r;
	if (xf_check_header(h) || h->len > XPORT_MAX_FRAME - XF_HDR ||
	    crc32c(0, payload, h->len) != h->crc)
		abort(); /* the reader let a bad frame through */
	s->frames++;
	return 0;
}

static void fix_up(uint8_t *p, size_t n)
{
	size_t off = 0;
	while (off + XF_HDR <= n) {
		xf_hdr h;
		memcpy(&h, p + off, XF_HDR);
		h.magic = XF_MAGIC;
		h.version = XF_VERSION;
		h.kind = (uint8_t)(1 + h.kind % 8);
		size_t left = n - off - XF_HDR;
		if (h.kind != XF_DATA)
			h.len = 0;
		else if (h.len > left)
			h.len = (uint32_t)left;
		h.crc = crc32c(0, p + off + XF_HDR, h.len);
		memcpy(p + off, &h, XF_HDR);
		off += XF_HDR + h.len;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	size_t n = size - 1;
	uint8_t *p = malloc(n ? n : 1); /* a copy: ASan sees reads past the end */
	if (!p)
		return 0;
	memcpy(p, data + 1, n);
	if (mode & 1)
		fix_up(p, n);
	xf_reader r = { 0 };
	seen s = { p, 0, 0 };
	uint64_t rng = mode * 0x9e3779b97f4a7c15ULL + 1;
	size_t maxcut = (size_t)(mode >> 1) * 37 + 1;
	int rc = 0;
	while (s.fed < n && rc == 0) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		size_t k = 1 + rng % maxcut;
		if (k > n - s.fed)
			k = n - s.fed;
		rc = xf_reader_feed(&r, p + s.fed, k, on_frame, &s);
		s.fed += k;
	}
	if (rc && !r.why)
		abort(); /* an error without a reason */
	if (r.cap > XPORT_MAX_FRAME)
		abort();
	xf_reader_free(&r);
	free(p);
	return 0;
}
