/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Schemas, columnar batches and the per-core block pools they come from.
 * The block layout is drawn in include/weir/batch.h; the pool contract is in
 * core.h.  Remote free: a core that drops the last reference to another
 * core's block pushes it on the owner's SPSC return ring for that core pair
 * (ck_ring); in the rare case that ring is full (a burst larger than the
 * ring) it goes on the owner's overflow stack instead, a lock-free
 * multi-producer ck_stack that the owner empties whole.  Either way the
 * owner is woken and gets the block back on its next reclaim: no block is
 * ever stranded on the core that released it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ck_stack.h>

#include <sys/uio.h>

#include "core.h"
#include "tsan.h"

/* ---- schemas ---------------------------------------------------------------- */

size_t type_width(weir_type t)
{
	switch (t) {
	case WEIR_I64: case WEIR_F64: case WEIR_TS: case WEIR_STR:
		return 8;
	case WEIR_BOOL:
		return 1;
	}
	return 0;
}

const char *type_name(weir_type t)
{
	switch (t) {
	case WEIR_I64: return "i64";
	case WEIR_F64: return "f64";
	case WEIR_BOOL: return "bool";
	case WEIR_TS: return "ts";
	case WEIR_STR: return "str";
	}
	return "?";
}

bool schema_equal(const weir_schema *a, const weir_schema *b)
{
	if (a->ncols != b->ncols)
		return false;
	for (int i = 0; i < a->ncols; i++)
		if (a->fields[i].type != b->fields[i].type)
			return false;
	return true;
}

int weir_schema_find(const weir_schema *s, const char *name)
{
	for (int i = 0; i < s->ncols; i++)
		if (strcmp(s->fields[i].name, name) == 0)
			return i;
	return -ENOENT;
}

int schema_parse(const char *spec, weir_schema *out, char *err, size_t errlen)
{
	static const struct { const char *n; weir_type t; } types[] = {
		{ "i64", WEIR_I64 }, { "f64", WEIR_F64 }, { "bool", WEIR_BOOL },
		{ "ts", WEIR_TS }, { "str", WEIR_STR },
	};
	const char *p = spec;

	memset(out, 0, sizeof(*out));
	if (!spec || !*spec) {
		snprintf(err, errlen, "empty schema");
		return -EINVAL;
	}
	while (*p) {
		const char *colon = strchr(p, ':');
		const char *end = strchr(p, ',');
		size_t nlen, tlen;
		int i;

		if (!end)
			end = p + strlen(p);
		if (!colon || colon > end) {
			snprintf(err, errlen, "schema '%s': field '%.*s' has no ':type'",
				 spec, (int)(end - p), p);
			return -EINVAL;
		}
		nlen = (size_t)(colon - p);
		tlen = (size_t)(end - colon - 1);
		if (nlen == 0 || nlen >= WEIR_MAX_NAME) {
			snprintf(err, errlen, "schema '%s': bad field name length at '%.*s'",
				 spec, (int)(end - p), p);
			return -EINVAL;
		}
		if (out->ncols == WEIR_MAX_COLS) {
			snprintf(err, errlen, "schema '%s': more than %d columns", spec,
				 WEIR_MAX_COLS);
			return -EINVAL;
		}
		for (i = 0; i < (int)ARRAY_SIZE(types); i++)
			if (strlen(types[i].n) == tlen && !strncmp(colon + 1, types[i].n, tlen))
				break;
		if (i == (int)ARRAY_SIZE(types)) {
			snprintf(err, errlen,
				 "schema '%s': unknown type '%.*s' (use i64, f64, bool, ts, str)",
				 spec, (int)tlen, colon + 1);
			return -EINVAL;
		}
		memcpy(out->fields[out->ncols].name, p, nlen);
		out->fields[out->ncols].type = types[i].t;
		for (int j = 0; j < out->ncols; j++)
			if (!strcmp(out->fields[j].name, out->fields[out->ncols].name)) {
				snprintf(err, errlen, "schema '%s': duplicate column '%s'",
					 spec, out->fields[j].name);
				return -EINVAL;
			}
		out->ncols++;
		p = *end ? end + 1 : end;
	}
	return 0;
}

/* ---- pools ------------------------------------------------------------------- */

typedef struct ret_ring {
	ck_ring_t ring;
	ck_ring_buffer_t *buf;
} ret_ring;

struct pool {
	int core;
	pool_set *set;
	uint32_t block_size, batch_rows, soft_limit;
	/* owner core only */
	weir_batch *free;
	uint32_t nfree;
	uint32_t outstanding;
	uint64_t allocated;
	/* ret[i]: blocks released on core i, consumed by this pool's core */
	ret_ring *ret;
	/* overflow: blocks released anywhere when their ring was full; pushed
	 * by any core, emptied whole by the owner */
	_Alignas(CACHELINE) ck_stack_t overflow;
};

/* A batch's `next` link doubles as its ck_stack entry on an overflow stack. */
static ck_stack_entry_t *stack_entry(weir_batch *b)
{
	return (ck_stack_entry_t *)(void *)&batch_meta_of(b)->next;
}

static weir_batch *from_stack_entry(ck_stack_entry_t *e)
{
	return (weir_batch *)(void *)((char *)e - offsetof(batch_meta, next) -
				      offsetof(weir_batch, runtime_private));
}

static _Thread_local pool *cur_pool;

static uint32_t pow2_at_least(uint32_t v)
{
	uint32_t p = 1;
	while (p < v)
		p <<= 1;
	return p;
}

pool_set *pool_set_new(int n, uint32_t block_size, uint32_t batch_rows,
		       uint32_t soft_limit)
{
	pool_set *ps = calloc(1, sizeof(*ps));
	uint32_t ring = pow2_at_least(soft_limit + 2);

	if (!ps)
		return NULL;
	ps->n = n;
	ps->pools = calloc((size_t)n, sizeof(pool *));
	if (!ps->pools)
		goto fail;
	for (int i = 0; i < n; i++) {
		pool *p = aligned_alloc(CACHELINE, (sizeof(pool) + CACHELINE - 1) /
						       CACHELINE * CACHELINE);
		if (!p)
			goto fail;
		memset(p, 0, sizeof(*p));
		ps->pools[i] = p;
		p->core = i;
		p->set = ps;
		p->block_size = block_size;
		p->batch_rows = batch_rows;
		p->soft_limit = soft_limit;
		p->ret = calloc((size_t)n, sizeof(ret_ring));
		if (!p->ret)
			goto fail;
		for (int j = 0; j < n; j++) {
			if (j == i)
				continue;
			p->ret[j].buf = calloc(ring, sizeof(ck_ring_buffer_t));
			if (!p->ret[j].buf)
				goto fail;
			ck_ring_init(&p->ret[j].ring, ring);
		}
	}
	return ps;
fail:
	pool_set_free(ps);
	return NULL;
}

static void block_free(weir_batch *b)
{
	free(b);
}

void pool_set_free(pool_set *ps)
{
	if (!ps)
		return;
	/* Reactors have stopped: take every returned block home. */
	for (int i = 0; ps->pools && i < ps->n; i++) {
		pool *p = ps->pools[i];
		if (!p)
			continue;
		if (p->ret)
			pool_reclaim(p);
		if (p->outstanding)
			wlog(LOG_WARN, "pool %d: %u blocks still in use at shutdown", i,
			     p->outstanding);
		while (p->free) {
			weir_batch *b = p->free;
			p->free = batch_meta_of(b)->next;
			block_free(b);
		}
		for (int j = 0; p->ret && j < ps->n; j++)
			free(p->ret[j].buf);
		free(p->ret);
		free(p);
	}
	free(ps->pools);
	free(ps);
}

void pool_bind_thread(pool_set *ps, int core)
{
	cur_pool = ps ? ps->pools[core] : NULL;
}

pool *pool_current(void) { return cur_pool; }
uint32_t pool_outstanding(pool *p) { return p->outstanding; }
uint64_t pool_blocks_allocated(const pool *p) { return p->allocated; }

static void pool_put_local(pool *p, weir_batch *b)
{
	p->outstanding--;
	if (unlikely(batch_meta_of(b)->flags & BATCH_JUMBO)) {
		block_free(b);
		return;
	}
	batch_meta_of(b)->next = p->free;
	p->free = b;
	p->nfree++;
}

/* Send b home: its owner's return ring from this core, else (ring full)
 * the owner's overflow stack.  Always succeeds; wakes the owner. */
static void push_remote(pool *self, weir_batch *b)
{
	int owner = batch_meta_of(b)->owner; /* b is not ours to read once published */
	pool *o = self->set->pools[owner];
	ret_ring *r = &o->ret[self->core];

	/* Pairs with tsan_acquire in pool_reclaim: everything this core did
	 * to the block happens before the owner reuses it (ck_pr's inline
	 * assembly is invisible to ThreadSanitizer). */
	tsan_release(b);
	if (!ck_ring_enqueue_spsc(&r->ring, r->buf, b)) {
		tsan_release(&o->overflow);
		/* CAS loop with a store fence before publishing the entry;
		 * pairs with the fetch-and-store in ck_stack_batch_pop_upmc. */
		ck_stack_push_upmc(&o->overflow, stack_entry(b));
	}
	if (self->set->wake)
		self->set->wake(self->set->wake_ctx, owner);
}

void pool_reclaim(pool *p)
{
	weir_batch *b;
	ck_stack_entry_t *e;

	for (int i = 0; i < p->set->n; i++) {
		ret_ring *r = &p->ret[i];
		if (i == p->core)
			continue;
		while (ck_ring_dequeue_spsc(&r->ring, r->buf, &b)) {
			tsan_acquire(b);
			pool_put_local(p, b);
		}
	}
	e = ck_stack_batch_pop_upmc(&p->overflow);
	if (e)
		tsan_acquire(&p->overflow);
	while (e) {
		ck_stack_entry_t *n = e->next;
		pool_put_local(p, from_stack_entry(e));
		e = n;
	}
}

bool pool_has_room(pool *p)
{
	if (p->outstanding < p->soft_limit)
		return true;
	pool_reclaim(p);
	return p->outstanding < p->soft_limit;
}

static size_t round64(size_t v) { return (v + 63) & ~(size_t)63; }

/* Fixed part (header, ts, columns) of a batch of `rows` rows. */
static size_t fixed_size(const weir_schema *s, uint32_t rows)
{
	size_t sz = round64(sizeof(weir_batch)) + round64((size_t)rows * 8);
	for (int i = 0; i < s->ncols; i++)
		sz += round64((size_t)rows * type_width(s->fields[i].type));
	return sz;
}

static bool schema_has_str(const weir_schema *s)
{
	for (int i = 0; i < s->ncols; i++)
		if (s->fields[i].type == WEIR_STR)
			return true;
	return false;
}

static void layout(weir_batch *b, const weir_schema *s, uint32_t rows,
		   size_t block)
{
	char *p = (char *)b + round64(sizeof(weir_batch));

	b->schema = s;
	b->rows = 0;
	b->capacity = rows;
	b->ts = (int64_t *)p;
	p += round64((size_t)rows * 8);
	for (int i = 0; i < s->ncols; i++) {
		b->cols[i] = p;
		p += round64((size_t)rows * type_width(s->fields[i].type));
	}
	b->heap = p;
	b->heap_used = 0;
	b->heap_cap = (uint32_t)(block - (size_t)(p - (char *)b));
	batch_meta_of(b)->next = NULL;
	atomic_store_explicit(&batch_meta_of(b)->refs, 1, memory_order_relaxed);
}

/* A batch in a block of its own (sz bytes), freed rather than pooled. */
static weir_batch *alloc_jumbo(pool *p, const weir_schema *s, uint32_t rows, size_t sz)
{
	weir_batch *b = aligned_alloc(CACHELINE, sz);
	if (!b)
		return NULL;
	layout(b, s, rows, sz);
	batch_meta_of(b)->flags = BATCH_JUMBO;
	batch_meta_of(b)->owner = (uint16_t)p->core;
	p->outstanding++;
	p->allocated++;
	return b;
}

weir_batch *batch_alloc(const weir_schema *s, size_t min_heap)
{
	pool *p = cur_pool;
	uint32_t rows = p->batch_rows;
	size_t fixed;
	weir_batch *b;

	/* Keep at least a quarter of a block for strings when there are any. */
	while ((fixed = fixed_size(s, rows)) >
		       (schema_has_str(s) ? p->block_size / 4 * 3 : p->block_size) &&
	       rows > 8)
		rows /= 2;
	if (unlikely(fixed + min_heap > p->block_size)) {
		b = alloc_jumbo(p, s, rows, round64(fixed + min_heap));
		if (!b) {
			wlog(LOG_ERROR, "out of memory allocating a %zu-byte batch",
			     round64(fixed + min_heap));
			abort();
		}
		return b;
	}
	b = p->free;
	if (unlikely(!b)) {
		pool_reclaim(p);
		b = p->free;
	}
	if (likely(b)) {
		p->free = batch_meta_of(b)->next;
		p->nfree--;
	} else {
		b = aligned_alloc(CACHELINE, p->block_size);
		if (!b) {
			wlog(LOG_ERROR, "out of memory growing pool %d", p->core);
			abort();
		}
		p->allocated++;
	}
	layout(b, s, rows, p->block_size);
	batch_meta_of(b)->flags = 0;
	batch_meta_of(b)->owner = (uint16_t)p->core;
	p->outstanding++;
	return b;
}

void batch_retain(weir_batch *b, uint32_t n)
{
	/* Relaxed: the holder already has a reference; the batch travels to
	 * other cores through a channel whose release/acquire orders it. */
	atomic_fetch_add_explicit(&batch_meta_of(b)->refs, n, memory_order_relaxed);
}

void batch_release(weir_batch *b)
{
	pool *p = cur_pool;

	/* acq_rel: our reads of the batch happen before the block's reuse by
	 * whoever drops the last reference, and that one sees all writes. */
	if (atomic_fetch_sub_explicit(&batch_meta_of(b)->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (likely(batch_meta_of(b)->owner == p->core)) {
		pool_put_local(p, b);
		return;
	}
	push_remote(p, b);
}

size_t batch_row_heap(const weir_batch *b, uint32_t row)
{
	size_t n = 0;
	const weir_schema *s = b->schema;
	for (int c = 0; c < s->ncols; c++)
		if (s->fields[c].type == WEIR_STR)
			n += ((const weir_str *)b->cols[c])[row].len;
	return n;
}

int weir_batch_set_str(weir_batch *b, int c, uint32_t row, const void *p,
		       size_t len)
{
	weir_str *s = (weir_str *)b->cols[c];
	if (unlikely(len > b->heap_cap - b->heap_used))
		return -ENOSPC;
	memcpy(b->heap + b->heap_used, p, len);
	s[row].off = b->heap_used;
	s[row].len = (uint32_t)len;
	b->heap_used += (uint32_t)len;
	return 0;
}

bool batch_append_row(weir_batch *dst, const weir_batch *src, uint32_t row)
{
	const weir_schema *s = src->schema;
	uint32_t r = dst->rows;

	if (unlikely(r == dst->capacity))
		return false;
	for (int c = 0; c < s->ncols; c++) {
		switch (s->fields[c].type) {
		case WEIR_I64: case WEIR_F64: case WEIR_TS:
			((int64_t *)dst->cols[c])[r] = ((const int64_t *)src->cols[c])[row];
			break;
		case WEIR_BOOL:
			((uint8_t *)dst->cols[c])[r] = ((const uint8_t *)src->cols[c])[row];
			break;
		case WEIR_STR: {
			weir_str v = ((const weir_str *)src->cols[c])[row];
			if (unlikely(v.len > dst->heap_cap - dst->heap_used))
				return false;
			memcpy(dst->heap + dst->heap_used, src->heap + v.off, v.len);
			((weir_str *)dst->cols[c])[r] =
				(weir_str){ dst->heap_used, v.len };
			dst->heap_used += v.len;
			break;
		}
		}
	}
	dst->ts[r] = src->ts[row];
	dst->rows = r + 1;
	return true;
}

weir_batch *batch_slice_copy(const weir_batch *src, uint32_t from, uint32_t n)
{
	size_t heap = 0;
	weir_batch *b;

	for (uint32_t i = 0; i < n; i++)
		heap += batch_row_heap(src, from + i);
	b = batch_alloc(src->schema, heap);
	if (n > b->capacity)
		n = b->capacity;
	for (uint32_t i = 0; i < n; i++)
		if (!batch_append_row(b, src, from + i))
			break;
	return b;
}

void batch_compact(weir_batch *b, const uint8_t *keep)
{
	const weir_schema *s = b->schema;
	uint32_t w = 0;

	for (uint32_t r = 0; r < b->rows; r++) {
		if (!keep[r])
			continue;
		if (w != r) {
			b->ts[w] = b->ts[r];
			for (int c = 0; c < s->ncols; c++) {
				if (s->fields[c].type == WEIR_BOOL)
					((uint8_t *)b->cols[c])[w] = ((uint8_t *)b->cols[c])[r];
				else
					((int64_t *)b->cols[c])[w] = ((int64_t *)b->cols[c])[r];
			}
		}
		w++;
	}
	b->rows = w;
}

/* ---- the batch codec --------------------------------------------------------------
 *
 * A batch as bytes, for the in-flight data of unaligned checkpoints (and,
 * later, the network).  Little-endian, every section padded to 8 bytes:
 *
 *   +------------+------------+----------------------+---------+
 *   | u32 rows   | u32 ncols  | u8 type[ncols], pad  | i64 ts  |  ts[rows]
 *   +------------+------------+----------------------+---------+
 *   then per column, in schema order:
 *     i64, f64, ts   8 bytes x rows
 *     bool           1 byte x rows (0 or 1), pad
 *     str            u32 len[rows], pad, then the bytes of every cell in
 *                    row order, pad
 *
 * Only the bytes the cells reference are written (a heap may hold more).
 * The encoding is canonical: the decoder refuses non-zero padding and bool
 * bytes other than 0 and 1, so what decodes encodes back to the same bytes.
 */

#define PAD8(x) (((x) + 7) & ~(size_t)7)

size_t batch_encoded_size(const weir_batch *b)
{
	const weir_schema *s = b->schema;
	size_t n = 8 + PAD8((size_t)s->ncols) + (size_t)b->rows * 8;
	for (int c = 0; c < s->ncols; c++) {
		switch (s->fields[c].type) {
		case WEIR_BOOL:
			n += PAD8(b->rows);
			break;
		case WEIR_STR: {
			size_t bytes = 0;
			const weir_str *v = b->cols[c];
			for (uint32_t r = 0; r < b->rows; r++)
				bytes += v[r].len;
			n += PAD8((size_t)b->rows * 4) + PAD8(bytes);
			break;
		}
		default:
			n += (size_t)b->rows * 8;
		}
	}
	return n;
}

/* Append [p, p + n) to a gather list, merging with the previous piece
 * when contiguous; false when more than max pieces would be needed. */
static bool iov_add(struct iovec *iov, int *n, int max, const void *p, size_t len)
{
	if (!len)
		return true;
	if (*n && (const char *)iov[*n - 1].iov_base + iov[*n - 1].iov_len == (const char *)p) {
		iov[*n - 1].iov_len += len;
		return true;
	}
	if (*n == max)
		return false;
	iov[(*n)++] = (struct iovec){ (void *)p, len };
	return true;
}

/*
 * Encode b as a gather list: with by_ref, the event times and fixed-width
 * columns are pointed at in place, everything else is written into
 * scratch; without, everything is written into scratch (one piece).
 */
static int encode(const weir_batch *b, char *scratch, struct iovec *iov, int maxiov,
		  size_t *len, bool by_ref)
{
	const weir_schema *s = b->schema;
	char *p = scratch;
	uint32_t rows = b->rows, ncols = (uint32_t)s->ncols;
	int n = 0;
	bool ok;

	memcpy(p, &rows, 4);
	memcpy(p + 4, &ncols, 4);
	memset(p + 8, 0, PAD8(ncols));
	for (uint32_t c = 0; c < ncols; c++)
		p[8 + c] = (char)s->fields[c].type;
	ok = iov_add(iov, &n, maxiov, p, 8 + PAD8(ncols));
	p += 8 + PAD8(ncols);
	for (int c = -1; ok && c < (int)ncols; c++) {
		/* c = -1: the event times, laid out as an i64 column */
		weir_type t = c < 0 ? WEIR_I64 : s->fields[c].type;
		const void *col = c < 0 ? (const void *)b->ts : b->cols[c];
		char *q = p;
		switch (t) {
		case WEIR_BOOL:
			memset(p, 0, PAD8(rows));
			memcpy(p, col, rows);
			p += PAD8(rows);
			break;
		case WEIR_STR: {
			const weir_str *v = col;
			size_t bytes = 0;
			memset(p, 0, PAD8((size_t)rows * 4));
			for (uint32_t r = 0; r < rows; r++)
				memcpy(p + 4 * (size_t)r, &v[r].len, 4);
			p += PAD8((size_t)rows * 4);
			for (uint32_t r = 0; r < rows; r++) {
				memcpy(p + bytes, b->heap + v[r].off, v[r].len);
				bytes += v[r].len;
			}
			memset(p + bytes, 0, PAD8(bytes) - bytes);
			p += PAD8(bytes);
			break;
		}
		default:
			/* already laid out as the codec writes it */
			if (by_ref) {
				ok = iov_add(iov, &n, maxiov, col, (size_t)rows * 8);
				continue;
			}
			memcpy(p, col, (size_t)rows * 8);
			p += (size_t)rows * 8;
		}
		ok = iov_add(iov, &n, maxiov, q, (size_t)(p - q));
	}
	if (!ok)
		return 0;
	*len = 0;
	for (int i = 0; i < n; i++)
		*len += iov[i].iov_len;
	return n;
}

void batch_encode(const weir_batch *b, void *out)
{
	struct iovec one;
	size_t len;
	encode(b, out, &one, 1, &len, false);
}

int batch_encode_iov(const weir_batch *b, void *scratch, struct iovec *iov, int maxiov,
		     size_t *len)
{
	return encode(b, scratch, iov, maxiov, len, true);
}

/* An empty batch of `s` with room for exactly `rows` rows and `heap` heap
 * bytes, pooled when it fits a block. */
static weir_batch *batch_alloc_exact(const weir_schema *s, uint32_t rows, size_t heap)
{
	pool *p = cur_pool;
	size_t fixed = fixed_size(s, rows);
	if (rows <= p->batch_rows && fixed + heap <= p->block_size) {
		weir_batch *b = batch_alloc(s, heap);
		if (b->capacity >= rows && b->heap_cap >= heap)
			return b;
		batch_release(b);
	}
	return alloc_jumbo(p, s, rows, round64(fixed + heap));
}

static bool zeros(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

int batch_decode(const weir_schema *s, const void *in, size_t n, weir_batch **out)
{
	const char *p = in, *end = p + n;
	uint32_t rows, ncols;
	size_t heap = 0;

	*out = NULL;
	if (n < 8)
		return -EBADMSG;
	memcpy(&rows, p, 4);
	memcpy(&ncols, p + 4, 4);
	if (ncols != (uint32_t)s->ncols || rows > (1u << 24))
		return -EBADMSG;
	p += 8;
	if ((size_t)(end - p) < PAD8(ncols))
		return -EBADMSG;
	for (uint32_t c = 0; c < ncols; c++)
		if ((weir_type)(uint8_t)p[c] != s->fields[c].type)
			return -EBADMSG;
	if (!zeros(p + ncols, PAD8(ncols) - ncols))
		return -EBADMSG;
	p += PAD8(ncols);
	/* First pass: check every length, add up the string bytes. */
	const char *q = p;
	if ((size_t)(end - q) < (size_t)rows * 8)
		return -EBADMSG;
	q += (size_t)rows * 8;
	for (uint32_t c = 0; c < ncols; c++) {
		size_t need;
		switch (s->fields[c].type) {
		case WEIR_BOOL:
			need = PAD8(rows);
			if ((size_t)(end - q) < need || !zeros(q + rows, need - rows))
				return -EBADMSG;
			for (uint32_t r = 0; r < rows; r++)
				if ((uint8_t)q[r] > 1)
					return -EBADMSG;
			break;
		case WEIR_STR: {
			size_t lens = (size_t)rows * 4;
			if ((size_t)(end - q) < PAD8(lens) || !zeros(q + lens, PAD8(lens) - lens))
				return -EBADMSG;
			size_t bytes = 0;
			for (uint32_t r = 0; r < rows; r++) {
				uint32_t len;
				memcpy(&len, q + 4 * (size_t)r, 4);
				bytes += len;
			}
			q += PAD8(lens);
			if (bytes > UINT32_MAX / 2)
				return -EBADMSG;
			heap += bytes;
			need = PAD8(bytes);
			if ((size_t)(end - q) < need || !zeros(q + bytes, need - bytes))
				return -EBADMSG;
			break;
		}
		default:
			need = (size_t)rows * 8;
		}
		if ((size_t)(end - q) < need)
			return -EBADMSG;
		q += need;
	}
	if (q != end || heap > UINT32_MAX / 2)
		return -EBADMSG;
	weir_batch *b = batch_alloc_exact(s, rows, heap);
	if (!b)
		return -ENOMEM;
	memcpy(b->ts, p, (size_t)rows * 8);
	p += (size_t)rows * 8;
	for (uint32_t c = 0; c < ncols; c++) {
		switch (s->fields[c].type) {
		case WEIR_BOOL: {
			memcpy(b->cols[c], p, rows);
			p += PAD8(rows);
			break;
		}
		case WEIR_STR: {
			weir_str *v = b->cols[c];
			const char *lens = p, *bytes;
			p += PAD8((size_t)rows * 4);
			bytes = p;
			size_t total = 0;
			for (uint32_t r = 0; r < rows; r++) {
				uint32_t len;
				memcpy(&len, lens + 4 * (size_t)r, 4);
				memcpy(b->heap + b->heap_used, bytes + total, len);
				v[r] = (weir_str){ b->heap_used, len };
				b->heap_used += len;
				total += len;
			}
			p += PAD8(total);
			break;
		}
		default:
			memcpy(b->cols[c], p, (size_t)rows * 8);
			p += (size_t)rows * 8;
		}
	}
	b->rows = rows;
	*out = b;
	return 0;
}
