/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Snapshot buffers: the byte strings in which operators write their
 * non-keyed state at a barrier (snap_put*, op_ops.snapshot) and read it
 * back on restore (snap_get*, op_ops.restore).  The layout is the
 * operator's (core.h: little-endian fixed-width integers, a version byte
 * first); this file only grows and walks the buffers.  Allocation happens
 * at barriers, never per record.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

int snap_put(snap_buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *q = realloc(b->p, cap);
		if (!q)
			return -ENOMEM;
		b->p = q;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

int snap_put_u64(snap_buf *b, uint64_t v)
{
	return snap_put(b, &v, 8);
}

int snap_put_str(snap_buf *b, const char *s)
{
	uint32_t n = (uint32_t)strlen(s);
	int rc = snap_put(b, &n, 4);
	return rc ? rc : snap_put(b, s, n);
}

void snap_free(snap_buf *b)
{
	free(b->p);
	*b = (snap_buf){ 0 };
}

const void *snap_get(snap_rd *r, size_t n)
{
	if (r->err || r->len - r->off < n) {
		r->err = true;
		return NULL;
	}
	const void *p = r->p + r->off;
	r->off += n;
	return p;
}

uint64_t snap_get_u64(snap_rd *r)
{
	uint64_t v = 0;
	const void *p = snap_get(r, 8);
	if (p)
		memcpy(&v, p, 8);
	return v;
}

bool snap_get_str(snap_rd *r, char *buf, size_t cap)
{
	uint32_t n = 0;
	const void *p = snap_get(r, 4);
	if (p)
		memcpy(&n, p, 4);
	const char *s = p ? snap_get(r, n) : NULL;
	if (!s || n + 1 > cap) {
		r->err = true;
		return false;
	}
	memcpy(buf, s, n);
	buf[n] = 0;
	return true;
}
