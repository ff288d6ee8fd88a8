/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Frame checks shared by every transport (format drawn in xport.h).
 */
#include <errno.h>

#include "core.h"
#include "xport.h"

int xf_check_header(const xf_hdr *h)
{
	if (h->magic != XF_MAGIC || h->version != XF_VERSION ||
	    h->kind < XF_DATA || h->kind > XF_BYE)
		return -EBADMSG;
	if (h->len > XPORT_MAX_FRAME - XF_HDR)
		return -EMSGSIZE;
	if (h->kind != XF_DATA && h->len != 0)
		return -EBADMSG;
	return 0;
}

int xf_check_payload(const xf_hdr *h, const void *payload)
{
	return crc32c(0, payload, h->len) == h->crc ? 0 : -EBADMSG;
}

/* ---- frame reader (net_internal.h) ------------------------------------- */

#include <stdio.h>
#include <stdlib.h>

#include "net_internal.h"

static int reader_fail(xf_reader *r, int err, const char *fmt, uint64_t a)
{
	snprintf(r->why_buf, sizeof(r->why_buf), fmt, (unsigned long long)a);
	r->why = r->why_buf;
	return err;
}

/* The header in r->hdr is complete: check it and make room for a payload
 * that may straddle. */
static int reader_header(xf_reader *r)
{
	int rc = xf_check_header(&r->hdr);
	if (rc == -EMSGSIZE)
		return reader_fail(r, -EBADMSG, "frame length %llu over the limit",
				   r->hdr.len);
	if (rc)
		return reader_fail(r, -EBADMSG, "bad frame header (kind %llu)", r->hdr.kind);
	r->have = 0;
	return 0;
}

static int reader_reserve(xf_reader *r, size_t len)
{
	if (r->cap >= len)
		return 0;
	size_t cap = r->cap ? r->cap * 2 : (64u << 10);
	while (cap < len)
		cap *= 2;
	if (cap > XPORT_MAX_FRAME)
		cap = XPORT_MAX_FRAME;
	uint8_t *b = realloc(r->buf, cap);
	if (!b)
		return reader_fail(r, -ENOMEM, "no memory for a %llu-byte frame", len);
	r->buf = b;
	r->cap = cap;
	return 0;
}

static int reader_deliver(xf_reader *r, const void *payload, xf_frame_fn fn, void *ctx)
{
	if (xf_check_payload(&r->hdr, payload))
		return reader_fail(r, -EBADMSG, "bad payload checksum (%llu bytes)", r->hdr.len);
	r->hdr_have = 0;
	r->have = 0;
	return fn(ctx, r, &r->hdr, payload);
}

int xf_reader_feed(xf_reader *r, const uint8_t *p, size_t n, xf_frame_fn fn, void *ctx)
{
	int rc;
	while (n) {
		if (r->hdr_have < XF_HDR) {
			size_t k = XF_HDR - r->hdr_have;
			if (k > n)
				k = n;
			memcpy((uint8_t *)&r->hdr + r->hdr_have, p, k);
			r->hdr_have += (uint32_t)k;
			p += k;
			n -= k;
			if (r->hdr_have < XF_HDR)
				return 0;
			if ((rc = reader_header(r)))
				return rc;
			if (r->hdr.len == 0) { /* may end exactly at the end of p */
				if ((rc = reader_deliver(r, p, fn, ctx)))
					return rc;
				continue;
			}
		}
		uint32_t len = r->hdr.len;
		if (r->have == 0 && n >= len) { /* the payload is wholly here */
			const uint8_t *pl = p;
			p += len;
			n -= len;
			if ((rc = reader_deliver(r, pl, fn, ctx)))
				return rc;
			continue;
		}
		/* The payload straddles: copy what is here. */
		if ((rc = reader_reserve(r, len)))
			return rc;
		size_t k = len - r->have;
		if (k > n)
			k = n;
		memcpy(r->buf + r->have, p, k);
		r->have += (uint32_t)k;
		p += k;
		n -= k;
		if (r->have == len && (rc = reader_deliver(r, r->buf, fn, ctx)))
			return rc;
	}
	return 0;
}

void xf_reader_free(xf_reader *r)
{
	free(r->buf);
	r->buf = NULL;
	r->cap = 0;
}
