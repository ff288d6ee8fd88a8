/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Top-N per key (weir_topn, include/weir/keyed.h): Flink SQL's
 * ROW_NUMBER() <= n over an append-only stream, the operator of Nexmark
 * q19.  Each subtask keeps, per key, its best rows in rank order, in one
 * kvtab entry whose value is a tn_val: a buffer of records, unaligned,
 *
 *   +-----------+---------+------------------------------------------+
 *   | okey u64  | len u32 | len bytes: the cells but the key's        |
 *   +-----------+---------+------------------------------------------+
 *
 * where the cells are encoded as row_encode does (state.h: i64/ts/f64 8
 * bytes, bool 1, str [u32 len][bytes]), in schema order, without the row's
 * time (no output shows it) and without the key column (the table entry's
 * key is that cell): q19's bids take 12 + ~180 bytes instead of 16 + ~200
 * with the time, the key and padding to 8.
 *
 * plus the order key of the last (worst) record, so that a row that cannot
 * enter a full top n -- nearly every row, once a key has n -- costs one
 * table lookup and one comparison, without touching the buffer.
 *
 * Order.  okey is the order cell mapped to an unsigned 64-bit integer that
 * sorts as the cell does (i64/ts: sign bit flipped; f64: IEEE total order
 * bits; bool: 0/1; str: its first 8 bytes, big-endian, zero-padded),
 * complemented when descending, so "ranks before" is "smaller okey".
 * Equal okeys (equal fixed-width cells, or strings sharing 8 bytes) are
 * decided by rank_cmp: the whole order cell, then the other columns in
 * schema order, ascending.  The top n is thus a function of the set of
 * rows; rows equal in every column rank in arrival order, which no output
 * can tell apart (a row's own event time is not in the output).
 *
 * Changes.  A row that enters a key's top n at rank r (0-based here, 1 +
 * r in the output) moves ranks r.. down by one and pushes the last one
 * out when there were n.  Within one input batch the changed keys are
 * collected (the key, the lowest rank changed, the greatest event time of
 * the rows that changed it), and at the end of the batch each changed key
 * emits its rows from that rank down, once: a hot key updated 500 times
 * in a batch costs n output rows, not 500 times up to n.  Upsert
 * semantics make that exact: the last row per (key, rank) is that rank's
 * current row.  The input is append-only, so a key's count of ranked rows
 * never decreases and a rank is never emptied.
 *
 * Memory.  A key's buffer is a chunk of the subtask's slab (tn_slab
 * below) of the size class that fits it, moved to the next class as it
 * grows, so slack is a few percent and a change costs no malloc; nothing
 * is touched for a row that does not enter.  Keys are never dropped (no
 * TTL: an expired key would leave its ranks in the downstream upsert
 * table with no way to retract them).
 *
 * Checkpoints.  The table is registered as "top-n"; a value encodes as
 * [u32 n][its records as above], logged as a PUT of the whole value at
 * the next barrier after a change (kv_written: n small, so the whole top n
 * of a key costs about what one appended row would).  The per-batch change
 * mark is transient (cleared before the batch ends, never encoded).
 * Restored values are checked on the first call: rows against the input
 * schema, order keys against this operator's order column and direction,
 * rank order, and at most n rows (a job whose n or order changed is
 * refused with a clear message).  No operator state, no timers.
 *
 * Everything in tn_state belongs to one subtask, on its reactor thread
 * (open and close on the thread that runs the job).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "checkpoint.h"
#include "ops.h"
#include "state.h"
#include "two_input.h"

typedef struct tn_conf {
	int n;
	int order_col;
	bool desc;
	weir_type order_type;
	const weir_schema *in;
	int key_col;
	weir_type key_type;
} tn_conf;

/* A key's top rows: the value of a kvtab entry. */
typedef struct tn_val {
	char *data;          /* records in rank order: a slab chunk of cap
			      * bytes, or malloc'd when `heap` */
	uint32_t used, cap;
	uint32_t n : 31;     /* records */
	uint32_t heap : 1;   /* data is malloc'd (restored, or > TN_SLAB_MAX) */
	uint32_t mark;       /* 1 + index of the key's change in the current
			      * batch; 0: unchanged (transient, not encoded) */
	uint64_t worst;      /* okey of the last record */
} tn_val;

#define TREC_HDR 12
#define TN_MAX_N (1 << 20)
#define TN_MAX_REC (1u << 30)

/*
 * The slab: where a subtask's key buffers live.  Buffers grow a record at
 * a time, so with malloc and doubling a third of their memory was slack
 * (q19: 1.41 GB of capacity for 0.93 GB of records) and the arena's
 * growth (sysmalloc, mprotect, page faults) and free() cost a fifth of the
 * time.  Here a buffer is a chunk of one of TN_NCLS size classes: every
 * multiple of 16 up to 1 KiB, then 16 classes per doubling up to
 * TN_SLAB_MAX (at most 1/16 slack, on average 8 bytes per key for the
 * buffers of Nexmark).  A buffer that outgrows its class moves to a chunk
 * of the class that fits it exactly (the copy replaces the memmove that
 * made room for the new record) and its old chunk goes on its class's
 * free list, where the next key to grow through that size takes it.
 * Chunks are carved from TN_BLOCK blocks that are freed only with the
 * subtask; a block's tail too small for a chunk goes to the free lists.
 * (Not huge pages: on the 2-vCPU test VM, q19 spent 3-4 times the system
 * time clearing them, more than the TLB misses they save cost.)
 * So a record costs a free-list pop and push at most, and nothing is
 * allocated once the free lists hold the sizes keys pass through.
 * Buffers larger than TN_SLAB_MAX (n of hundreds of big rows) are
 * malloc'd and grow by doubling, as are restored values (decode has no
 * slab at hand) until their first change.
 */
#define TN_SLAB_MAX (64u << 10)
#define TN_NCLS 161
#define TN_BLOCK (2u << 20)

/* Free chunks of one class: a stack of pointers rather than a list
 * through the chunks, so that taking one does not wait for the chunk
 * (cold by then) to arrive. */
typedef struct tn_free {
	void **p;
	uint32_t n, cap;
} tn_free;

typedef struct tn_slab {
	tn_free free[TN_NCLS];
	char *bump, *end;     /* the rest of the newest block */
	void *blocks;         /* linked through their first word */
} tn_slab;

static const char tn_tab_name[] = "top-n";

/* A key changed in the current batch. */
typedef struct tn_change {
	skey key;            /* retained until emitted */
	int64_t ts;          /* greatest event time of the rows that changed it */
	uint32_t from;       /* lowest rank changed */
} tn_change;

/* A top-N subtask's state (t->st): its reactor thread only. */
typedef struct tn_state {
	const tn_conf *c;
	kdict *dict;
	kvtab *tab;
	bool started;
	tn_change *ch;
	uint32_t nch, capch;
	tn_slab slab;
	weir_value nc[WEIR_MAX_COLS];  /* the row being inserted */
	weir_value sc[WEIR_MAX_COLS];  /* a kept row */
	skey keys[KEY_CHUNK];
} tn_state;

static inline uint64_t trec_okey(const char *p)
{
	uint64_t k;
	memcpy(&k, p, 8);
	return k;
}

static inline uint32_t trec_len(const char *p)
{
	uint32_t n;
	memcpy(&n, p + 8, 4);
	return n;
}

static inline uint32_t trec_size(const char *p) { return TREC_HDR + trec_len(p); }

/* ---- the slab (see tn_slab) ----------------------------------------------------------- */

/* The class of a chunk of sz bytes (16 <= sz <= TN_SLAB_MAX). */
static inline unsigned cls_of(uint32_t sz)
{
	if (sz <= 1024)
		return (sz + 15) >> 4;
	/* 2^b < sz <= 2^(b+1), b >= 10: steps of 2^(b-4) */
	unsigned b = 31 - (unsigned)__builtin_clz(sz - 1);
	return 64 + (b - 10) * 16 + ((sz - 1) >> (b - 4)) - 15;
}

static inline uint32_t cls_size(unsigned c)
{
	if (c <= 64)
		return c << 4;
	c -= 65;
	return (17 + c % 16) << (10 + c / 16 - 4);
}

/* Chunk p of `size` bytes is free.  Its stack grows by doubling, so this
 * allocates only while the subtask's number of free chunks of a class
 * reaches a new high; when that fails, the chunk is lost until close. */
static void slab_free(tn_slab *sl, void *p, uint32_t size)
{
	tn_free *f = &sl->free[cls_of(size)];
	if (unlikely(f->n == f->cap)) {
		uint32_t ncap = f->cap ? f->cap * 2 : 64;
		void **np = realloc(f->p, (size_t)ncap * sizeof(*np));
		if (!np)
			return;
		f->p = np;
		f->cap = ncap;
	}
	f->p[f->n++] = p;
}

/* A chunk of class c; NULL on ENOMEM. */
static void *slab_alloc(tn_slab *sl, unsigned c)
{
	tn_free *f = &sl->free[c];
	uint32_t size = cls_size(c);
	if (likely(f->n))
		return f->p[--f->n];
	if ((size_t)(sl->end - sl->bump) < size) {
		/* the old block's tail to the free lists, largest first */
		for (size_t rem = (size_t)(sl->end - sl->bump); rem >= 16;) {
			uint32_t r = rem > TN_SLAB_MAX ? TN_SLAB_MAX : (uint32_t)rem;
			unsigned rc = cls_of(r);
			if (cls_size(rc) > r)
				rc--;
			slab_free(sl, sl->bump, cls_size(rc));
			sl->bump += cls_size(rc);
			rem -= cls_size(rc);
		}
		/* populated at once: one call instead of 512 page faults,
		 * each of which cost more than clearing its page */
		void *b = mmap(NULL, TN_BLOCK, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (b == MAP_FAILED)
			return NULL;
		*(void **)b = sl->blocks;
		sl->blocks = b;
		sl->bump = (char *)b + 16;
		sl->end = (char *)b + TN_BLOCK;
	}
	void *p = sl->bump;
	sl->bump += size;
	return p;
}

static void slab_release(tn_slab *sl)
{
	for (int c = 0; c < TN_NCLS; c++)
		free(sl->free[c].p);
	while (sl->blocks) {
		void *b = sl->blocks;
		sl->blocks = *(void **)b;
		munmap(b, TN_BLOCK);
	}
}

/* ---- order -------------------------------------------------------------------------- */

static inline uint64_t f64_key(double d)
{
	uint64_t b;
	memcpy(&b, &d, 8);
	return b >> 63 ? ~b : b | (1ull << 63);
}

static inline uint64_t str_key(const char *p, uint32_t len)
{
	uint64_t k = 0;
	for (uint32_t i = 0; i < 8; i++)
		k = k << 8 | (i < len ? (uint8_t)p[i] : 0);
	return k;
}

static uint64_t okey_value(const tn_conf *c, weir_value v)
{
	uint64_t k;
	switch (c->order_type) {
	case WEIR_STR:
		k = str_key(v.str.ptr, v.str.len);
		break;
	case WEIR_F64:
		k = f64_key(v.f64);
		break;
	case WEIR_BOOL:
		k = v.b ? 1 : 0;
		break;
	default:
		k = (uint64_t)v.i64 ^ (1ull << 63);
	}
	return c->desc ? ~k : k;
}

/* okey of row r of b, straight from its column. */
static inline uint64_t okey_row(const tn_conf *c, const weir_batch *b, uint32_t r)
{
	uint64_t k;
	switch (c->order_type) {
	case WEIR_STR: {
		uint32_t len;
		const char *p = weir_batch_str(b, c->order_col, r, &len);
		k = str_key(p, len);
		break;
	}
	case WEIR_F64:
		k = f64_key(weir_col_f64(b, c->order_col)[r]);
		break;
	case WEIR_BOOL:
		k = weir_col_bool(b, c->order_col)[r] ? 1 : 0;
		break;
	default:
		k = (uint64_t)weir_col_i64(b, c->order_col)[r] ^ (1ull << 63);
	}
	return c->desc ? ~k : k;
}

static int cmp_cell(weir_type t, weir_value x, weir_value y)
{
	switch (t) {
	case WEIR_STR: {
		uint32_t n = x.str.len < y.str.len ? x.str.len : y.str.len;
		int r = n ? memcmp(x.str.ptr, y.str.ptr, n) : 0;
		if (r)
			return r < 0 ? -1 : 1;
		return (x.str.len > y.str.len) - (x.str.len < y.str.len);
	}
	case WEIR_F64: {
		uint64_t a = f64_key(x.f64), b = f64_key(y.f64);
		return (a > b) - (a < b);
	}
	case WEIR_BOOL:
		return (int)x.b - (int)y.b;
	default:
		return (x.i64 > y.i64) - (x.i64 < y.i64);
	}
}

/* < 0 when row x ranks before row y, 0 when they are equal in every
 * column. */
static int rank_cmp(const tn_conf *c, const weir_value *x, const weir_value *y)
{
	const weir_schema *s = c->in;
	int oc = c->order_col;
	int r = cmp_cell(c->order_type, x[oc], y[oc]);
	if (r)
		return c->desc ? -r : r;
	for (int i = 0; i < s->ncols; i++) {
		if (i == oc)
			continue;
		r = cmp_cell(s->fields[i].type, x[i], y[i]);
		if (r)
			return r;
	}
	return 0;
}

/* Cell col of row r of b against the cell of that type at *pp in a
 * record's row bytes, as cmp_cell; *pp moves past the cell. */
static int cmp_batch_cell(weir_type t, const weir_batch *b, int col, uint32_t r,
			  const char **pp)
{
	const char *p = *pp;
	switch (t) {
	case WEIR_STR: {
		uint32_t xl, yl;
		const char *x = weir_batch_str(b, col, r, &xl);
		memcpy(&yl, p, 4);
		*pp = p + 4 + yl;
		uint32_t n = xl < yl ? xl : yl;
		int res = n ? memcmp(x, p + 4, n) : 0;
		if (res)
			return res < 0 ? -1 : 1;
		return (xl > yl) - (xl < yl);
	}
	case WEIR_BOOL: {
		int x = weir_col_bool(b, col)[r] ? 1 : 0, y = *p != 0;
		*pp = p + 1;
		return x - y;
	}
	case WEIR_F64: {
		uint64_t x = f64_key(weir_col_f64(b, col)[r]), y;
		double d;
		memcpy(&d, p, 8);
		y = f64_key(d);
		*pp = p + 8;
		return (x > y) - (x < y);
	}
	default: {
		int64_t x = weir_col_i64(b, col)[r], y;
		memcpy(&y, p, 8);
		*pp = p + 8;
		return (x > y) - (x < y);
	}
	}
}

static inline const char *skip_cell(weir_type t, const char *p)
{
	uint32_t len;
	switch (t) {
	case WEIR_STR:
		memcpy(&len, p, 4);
		return p + 4 + len;
	case WEIR_BOOL:
		return p + 1;
	default:
		return p + 8;
	}
}

/*
 * rank_cmp of row r of b against a kept record's cell bytes whose order
 * key is the same as the row's, straight from the bytes, stopping at the
 * first column that differs (a tie in q18's date_time is nearly always
 * decided by the next column that is not the key).  Equal order keys of
 * fixed-width cells are equal cells; strings are compared in full.
 */
static int rank_cmp_record(const tn_conf *c, const weir_batch *b, uint32_t r,
			   const char *row)
{
	const weir_schema *s = c->in;
	int oc = c->order_col, kc = c->key_col, res;
	const char *p = row;

	if (c->order_type == WEIR_STR && oc != kc) {
		const char *q = p;
		for (int i = 0; i < oc; i++)
			if (i != kc)
				q = skip_cell(s->fields[i].type, q);
		res = cmp_batch_cell(WEIR_STR, b, oc, r, &q);
		if (res)
			return c->desc ? -res : res;
	}
	for (int i = 0; i < s->ncols; i++) {
		weir_type t = s->fields[i].type;
		if (i == kc) /* the same key: the same cell, not stored */
			continue;
		if (i == oc) {
			p = skip_cell(t, p);
			continue;
		}
		res = cmp_batch_cell(t, b, i, r, &p);
		if (res)
			return res;
	}
	return 0;
}

/* A record's cells (len bytes at p) into cells[], the key's from k;
 * false if they do not fit the schema. */
static bool rec_cells_decode(const tn_conf *c, skey k, const char *p,
			     uint32_t len, weir_value *cells)
{
	const weir_schema *s = c->in;
	const char *end = p + len;
	for (int i = 0; i < s->ncols; i++) {
		weir_value *v = &cells[i];
		memset(v, 0, sizeof(*v));
		if (i == c->key_col) {
			*v = key_value(c->key_type, k);
			continue;
		}
		switch (s->fields[i].type) {
		case WEIR_STR:
			if (end - p < 4)
				return false;
			memcpy(&v->str.len, p, 4);
			if ((size_t)(end - p - 4) < v->str.len)
				return false;
			v->str.ptr = p + 4;
			p += 4 + v->str.len;
			break;
		case WEIR_BOOL:
			if (end - p < 1)
				return false;
			v->b = *p++ != 0;
			break;
		default:
			if (end - p < 8)
				return false;
			memcpy(&v->i64, p, 8);
			p += 8;
		}
	}
	return p == end;
}

/* ---- values ------------------------------------------------------------------------- */

/* Slab chunks go with the slab (tn_close, after the table). */
static void tn_free_value(void *v)
{
	tn_val *t = v;
	if (t->heap)
		free(t->data);
}

/* [u32 n][records]. */
static size_t tn_encoded_size(const void *v)
{
	return 4 + (size_t)((const tn_val *)v)->used;
}

static void tn_encode(const void *v, void *out)
{
	const tn_val *t = v;
	uint32_t n = t->n;
	memcpy(out, &n, 4);
	if (t->used)
		memcpy((char *)out + 4, t->data, t->used);
}

static int tn_decode(void *v, const void *in, size_t len)
{
	tn_val *t = v;
	const char *p = (const char *)in + 4;
	uint32_t n, k = 0, rl;
	uint64_t okey, last = 0;
	size_t bytes, off = 0;

	if (len < 4)
		return -EINVAL;
	memcpy(&n, in, 4);
	bytes = len - 4;
	if (n == 0 || n > TN_MAX_N || bytes > UINT32_MAX / 2)
		return -EINVAL;
	while (off < bytes) {
		if (bytes - off < TREC_HDR)
			return -EINVAL;
		okey = trec_okey(p + off);
		rl = trec_len(p + off);
		if (rl > bytes - off - TREC_HDR)
			return -EINVAL;
		if (k && okey < last) /* rank order */
			return -EINVAL;
		last = okey;
		off += TREC_HDR + rl;
		k++;
	}
	if (k != n)
		return -EINVAL;
	t->data = malloc(bytes);
	if (!t->data)
		return -ENOMEM;
	memcpy(t->data, p, bytes);
	t->used = (uint32_t)bytes;
	t->cap = (uint32_t)bytes;
	t->heap = 1;
	t->n = n;
	t->mark = 0;
	t->worst = last;
	return 0;
}

static kvtab_conf tn_table(const tn_conf *c)
{
	return (kvtab_conf){ .key_type = c->key_type, .vsize = sizeof(tn_val),
			     .free_value = tn_free_value,
			     .encoded_size = tn_encoded_size, .encode = tn_encode,
			     .decode = tn_decode };
}

int topn_table_conf(const lnode *n, const char *name, kvtab_conf *out)
{
	if (n->ops != &op_topn || strcmp(name, tn_tab_name))
		return -ENOENT;
	*out = tn_table(n->conf);
	return 0;
}

/* ---- the subtask ---------------------------------------------------------------------- */

static int tn_open(task *t)
{
	const tn_conf *c = t->node->conf;
	tn_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	t->st = s; /* close() frees what open() got to */
	s->c = c;
	s->capch = t->cfg && t->cfg->batch_rows ? t->cfg->batch_rows : 1024;
	s->ch = malloc((size_t)s->capch * sizeof(*s->ch));
	s->dict = kdict_new();
	if (!s->ch || !s->dict)
		return -ENOMEM;
	kvtab_conf kc = tn_table(c);
	s->tab = kv_new(&kc, s->dict);
	if (!s->tab)
		return -ENOMEM;
	return state_register_table(t, tn_tab_name, s->tab);
}

static void tn_close(task *t)
{
	tn_state *s = t->st;
	if (!s)
		return;
	for (uint32_t i = 0; i < s->nch; i++) /* a failed batch */
		key_release(s->dict, s->c->key_type, s->ch[i].key);
	if (s->tab)
		kv_free(s->tab); /* releases its keys */
	slab_release(&s->slab);
	if (s->dict)
		kdict_free(s->dict);
	free(s->ch);
	free(s);
	t->st = NULL;
}

typedef struct tn_start_ctx {
	tn_state *s;
	bool bad;
} tn_start_ctx;

static int start_value(void *arg, skey k, int64_t ns, void *v)
{
	tn_start_ctx *x = arg;
	tn_state *s = x->s;
	const tn_conf *c = s->c;
	const tn_val *t = v;
	weir_value *prev = s->nc, *cur = s->sc, *tmp;
	(void)ns;

	if (t->n > (uint32_t)c->n)
		goto bad;
	for (uint32_t i = 0, off = 0; i < t->n; i++) {
		const char *p = t->data + off;
		if (!rec_cells_decode(c, k, p + TREC_HDR, trec_len(p), cur))
			goto bad;
		if (okey_value(c, cur[c->order_col]) != trec_okey(p) ||
		    (i && rank_cmp(c, prev, cur) > 0))
			goto bad;
		tmp = prev, prev = cur, cur = tmp;
		off += trec_size(p);
	}
	return 0;
bad:
	x->bad = true;
	return 1;
}

/*
 * The first call on the reactor thread: values present now were restored
 * (open() made the table empty); check them (see the top).
 */
static bool tn_start(task *t, tn_state *s)
{
	tn_start_ctx x = { s, false };
	s->started = true;
	if (kv_count(s->tab))
		kv_foreach(s->tab, start_value, &x);
	if (x.bad)
		task_fail(t, "top-n '%s': restored rows do not fit this operator's input "
			  "schema, order or n = %d (did the job change since the checkpoint?)",
			  t->node->name, s->c->n);
	return !x.bad;
}

/* Note that key k changed from rank `rank` because of a row at ts. */
static int mark_changed(tn_state *s, tn_val *v, skey k, uint32_t rank, int64_t ts)
{
	if (v->mark) {
		tn_change *ch = &s->ch[v->mark - 1];
		if (rank < ch->from)
			ch->from = rank;
		if (ts > ch->ts)
			ch->ts = ts;
		return 0;
	}
	if (s->nch == s->capch) { /* a batch bigger than batch_rows */
		uint32_t ncap = s->capch * 2;
		tn_change *n = realloc(s->ch, (size_t)ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		s->ch = n;
		s->capch = ncap;
	}
	s->ch[s->nch] = (tn_change){ .key = k, .ts = ts, .from = rank };
	key_retain(s->c->key_type, k);
	v->mark = ++s->nch;
	return 0;
}

/*
 * Give v's buffer, whose first `keep` bytes of records stay, a gap of rs
 * bytes at off (<= keep): in place when the chunk holds them without more
 * than a quarter of it idle, else in a chunk of the class that fits
 * (see tn_slab), copying around the gap.  0, -ENOMEM or -E2BIG.
 */
static int make_room(tn_state *s, tn_val *v, uint32_t off, uint32_t keep,
		     uint32_t rs)
{
	uint64_t need = (uint64_t)keep + rs, ncap;
	char *od = v->data, *nd;

	if (need <= v->cap &&
	    (v->heap ? need > TN_SLAB_MAX : need > v->cap - v->cap / 4)) {
		memmove(od + off + rs, od + off, keep - off);
		return 0;
	}
	if (need <= TN_SLAB_MAX) {
		unsigned c = cls_of((uint32_t)need);
		nd = slab_alloc(&s->slab, c);
		ncap = cls_size(c);
	} else { /* big: malloc'd, doubling */
		ncap = v->cap > 64 ? (uint64_t)v->cap * 2 : 64;
		while (ncap < need)
			ncap *= 2;
		if (ncap > UINT32_MAX)
			return -E2BIG;
		nd = malloc(ncap);
	}
	if (!nd)
		return -ENOMEM;
	if (od) {
		memcpy(nd, od, off);
		memcpy(nd + off + rs, od + off, keep - off);
		if (v->heap)
			free(od);
		else
			slab_free(&s->slab, od, v->cap);
	}
	v->data = nd;
	v->cap = (uint32_t)ncap;
	v->heap = need > TN_SLAB_MAX;
	return 0;
}

/* Row r of b, whose order key is okey, under key k (whose value is v,
 * NULL if it has none yet): into the key's top n if it belongs there. */
static int tn_insert(tn_state *s, tn_val *v, skey k, const weir_batch *b,
		     uint32_t r, uint64_t okey)
{
	const tn_conf *c = s->c;
	bool created;
	if (!v && !(v = kv_upsert(s->tab, k, 0, &created)))
		return -ENOMEM;

	/* The rank: after every record that ranks before the row or equals
	 * it. */
	uint32_t off = 0, rank = 0;
	for (; rank < v->n; rank++) {
		const char *p = v->data + off;
		uint64_t pk = trec_okey(p);
		if (okey < pk)
			break;
		if (okey == pk && rank_cmp_record(c, b, r, p + TREC_HDR) < 0)
			break;
		off += trec_size(p);
	}
	if (rank >= (uint32_t)c->n)
		return 0; /* ties with the last one: not in */

	size_t enc = row_cells_size(b, r, c->key_col);
	size_t rs = TREC_HDR + enc;
	if (rs > TN_MAX_REC)
		return -E2BIG;
	/* Where the records from `rank` on end, and where the last starts. */
	uint32_t used = v->used, n = v->n;
	if (n == (uint32_t)c->n) {
		uint32_t q = off, last = off;
		for (uint32_t i = rank; i < n; i++) {
			last = q;
			q += trec_size(v->data + q);
		}
		used = last; /* the last one goes */
		n--;
	}
	int rc = make_room(s, v, off, used, (uint32_t)rs);
	if (rc)
		return rc;
	char *dst = v->data + off;
	uint32_t len = (uint32_t)enc;
	memcpy(dst, &okey, 8);
	memcpy(dst + 8, &len, 4);
	row_cells_encode(b, r, c->key_col, dst + TREC_HDR);
	v->used = used + (uint32_t)rs;
	v->n = n + 1;
	/* the new last record's order key */
	uint32_t q = off;
	for (uint32_t i = rank; i + 1 < v->n; i++)
		q += trec_size(v->data + q);
	v->worst = trec_okey(v->data + q);
	kv_written(s->tab, v);
	return mark_changed(s, v, k, rank, b->ts[r]);
}

/* Start loading the first TN_PF_BYTES of v's records: finding a row's
 * rank walks them from the first, one dependent load per record. */
#define TN_PF_BYTES 512
static inline void prefetch_records(const tn_val *v)
{
	uint32_t end = v->used < TN_PF_BYTES ? v->used : TN_PF_BYTES;
	for (uint32_t off = 0; off < end; off += 64)
		__builtin_prefetch(v->data + off);
}

/* Emit the changed ranks of every key changed in this batch. */
/* Stage a record's cells (at p) and the key's cell (kv, from
 * key_value) as the emitter's next row. */
static void stage_record(weir_out *o, const tn_conf *c, weir_value kv,
			 const char *p)
{
	const weir_schema *sc = c->in;
	for (int i = 0; i < sc->ncols; i++) {
		if (i == c->key_col) {
			switch (c->key_type) {
			case WEIR_STR:
				weir_out_str(o, i, kv.str.ptr, kv.str.len);
				break;
			case WEIR_BOOL:
				weir_out_bool(o, i, kv.b);
				break;
			case WEIR_F64:
				weir_out_f64(o, i, kv.f64);
				break;
			default:
				weir_out_i64(o, i, kv.i64);
			}
			continue;
		}
		switch (sc->fields[i].type) {
		case WEIR_STR: {
			uint32_t len;
			memcpy(&len, p, 4);
			weir_out_str(o, i, p + 4, len);
			p += 4 + len;
			break;
		}
		case WEIR_BOOL:
			weir_out_bool(o, i, *p++ != 0);
			break;
		default: { /* i64, ts, f64: the 8 bytes as they are */
			int64_t x;
			memcpy(&x, p, 8);
			weir_out_i64(o, i, x);
			p += 8;
		}
		}
	}
}

/*
 * Emit the changed ranks of every key changed in this batch.  The batch's
 * inserts have pushed the first changed keys out of the cache by now, so
 * their slots are prefetched TN_EMIT_AHEAD changes ahead and their records
 * half that.
 */
#define TN_EMIT_AHEAD 8
static void tn_emit(task *t, tn_state *s)
{
	const tn_conf *c = s->c;
	weir_out *o = task_out(t, 0);
	uint32_t nch = s->nch;

	for (uint32_t i = 0; i < nch && i < TN_EMIT_AHEAD; i++)
		kv_prefetch(s->tab, s->ch[i].key, 0);
	for (uint32_t i = 0; i < nch; i++) {
		tn_change *ch = &s->ch[i];
		if (i + TN_EMIT_AHEAD < nch)
			kv_prefetch(s->tab, s->ch[i + TN_EMIT_AHEAD].key, 0);
		if (i + TN_EMIT_AHEAD / 2 < nch) {
			const tn_val *w = kv_get(s->tab, s->ch[i + TN_EMIT_AHEAD / 2].key, 0);
			if (w)
				prefetch_records(w);
		}
		tn_val *v = kv_get(s->tab, ch->key, 0);
		if (v) {
			weir_value kv = key_value(c->key_type, ch->key);
			const char *p = v->data;
			v->mark = 0;
			for (uint32_t rank = 0; rank < v->n; rank++, p += trec_size(p)) {
				if (rank < ch->from)
					continue;
				stage_record(o, c, kv, p + TREC_HDR);
				weir_out_ts(o, ch->ts);
				weir_out_i64(o, c->in->ncols, (int64_t)rank + 1);
				weir_out_emit(o);
			}
		}
		key_release(s->dict, c->key_type, ch->key);
	}
	s->nch = 0;
}

static void tn_process(task *t, int input, weir_batch *b)
{
	tn_state *s = t->st;
	const tn_conf *c = s->c;
	weir_type kt = c->key_type;
	bool fixed = key_fixed(kt);
	uint32_t full = (uint32_t)c->n;
	int rc = 0;
	(void)input;

	if (unlikely(!s->started) && !tn_start(t, s)) {
		batch_release(b);
		return;
	}
	for (uint32_t r0 = 0; r0 < b->rows && rc == 0; r0 += KEY_CHUNK) {
		/* Fixed-width keys: the chunk's keys, their table slots
		 * loading (two_input.h) ... */
		uint32_t n = key_chunk_prefetch(s->dict, kt, b, c->key_col, r0, s->keys,
						&s->tab, 1);
		if (fixed) {
			/* ... then (they arrive together) the buffers of the
			 * keys whose top n a row may enter: with many keys
			 * each is a cache miss, which would otherwise come one
			 * row at a time.  The values read here are for
			 * prefetching only: the rows before may change them. */
			for (uint32_t i = 0; i < n; i++) {
				const tn_val *v = kv_get(s->tab, s->keys[i], 0);
				if (v && (v->n < full || okey_row(c, b, r0 + i) <= v->worst))
					prefetch_records(v);
			}
		}
		for (uint32_t i = 0; i < n && rc == 0; i++) {
			uint32_t r = r0 + i;
			skey k = fixed ? s->keys[i] : key_of(s->dict, kt, b, c->key_col, r);
			uint64_t okey = okey_row(c, b, r);
			tn_val *v = kv_get(s->tab, k, 0);
			/* The common case: a full top n the row cannot enter. */
			if (!v || v->n < full || okey <= v->worst)
				rc = tn_insert(s, v, k, b, r, okey);
			key_done(s->dict, kt, k);
		}
	}
	tn_emit(t, s);
	if (rc < 0)
		task_fail(t, "top-n '%s': %s", t->node->name,
			  rc == -ENOMEM ? "out of memory for kept rows" : strerror(-rc));
	batch_release(b);
}

const op_ops op_topn = {
	.kind = "top-n", .open = tn_open, .process = tn_process, .close = tn_close,
};

/* ---- building --------------------------------------------------------------------- */

weir_stream *weir_topn(weir_stream *keyed, const char *name, int n,
		       const char *order_column, bool descending)
{
	const char *nm = name && *name ? name : "top-n";
	weir_env *env;
	weir_schema *out;
	tn_conf *c;
	int kc, oc;

	if (!keyed)
		return NULL;
	env = stream_env(keyed);
	kc = stream_key_col(keyed);
	if (kc < 0) {
		env_error(env, "top-n '%s': the input is not keyed (call weir_key_by first)",
			  nm);
		return NULL;
	}
	if (n < 1 || n > TN_MAX_N) {
		env_error(env, "top-n '%s': n = %d (1 to %d)", nm, n, TN_MAX_N);
		return NULL;
	}
	const weir_schema *in = weir_stream_schema(keyed);
	oc = order_column ? weir_schema_find(in, order_column) : -1;
	if (oc < 0) {
		env_error(env, "top-n '%s': no order column '%s'", nm,
			  order_column ? order_column : "(null)");
		return NULL;
	}
	if (in->ncols >= WEIR_MAX_COLS) {
		env_error(env, "top-n '%s': %d input columns leave no room for the rank "
			  "(at most %d columns)", nm, in->ncols, WEIR_MAX_COLS);
		return NULL;
	}
	if (weir_schema_find(in, "rank") >= 0) {
		env_error(env, "top-n '%s': the input has a column 'rank', the name of the "
			  "output's rank column (rename it first)", nm);
		return NULL;
	}
	if (!(out = env_alloc_schema(env)))
		return NULL;
	*out = *in;
	snprintf(out->fields[out->ncols].name, WEIR_MAX_NAME, "rank");
	out->fields[out->ncols++].type = WEIR_I64;
	c = calloc(1, sizeof(*c));
	if (!c) {
		env_error(env, "out of memory");
		return NULL;
	}
	c->n = n;
	c->order_col = oc;
	c->desc = descending;
	c->order_type = in->fields[oc].type;
	c->in = in;
	c->key_col = kc;
	c->key_type = in->fields[kc].type;
	return stream_add_op(&keyed, 1, name, "top-n", &op_topn, out, c, NULL);
}
