/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyed running aggregates: sum, min, max, count and user reduce, on a
 * hash-partitioned (key_by) stream, and the owned buffers (obuf) and their
 * value codec that this file shares with the window functions
 * (window_fns.c).
 *
 * Each subtask keeps, per key, one accumulator in a kvtab of state/
 * registered as "accumulators" (key = the key column, namespace 0), so
 * every update is logged and restorable at any parallelism.  The
 * accumulator is the output row without its key column (the key is the
 * entry's key):
 *
 *   +---------------+--------+--------+-----+
 *   | [obuf *strs]  | cell 0 | cell 1 | ... |   one 8-byte cell per
 *   +---------------+--------+--------+-----+   non-key output column
 *
 * A cell holds an i64/ts, an f64's bits, a bool as 0/1, or for a string
 * column (u32 offset, u32 length) into `strs`, an obuf holding the row's
 * strings; `strs` is there only when the row has string columns besides
 * the key, which word count's (word, count) has not, so its value is one
 * i64 and its entry 32 bytes.  COUNT's accumulator is its count.  Encoded
 * with obuf_table_conf (plain bytes when there is no `strs`).  A reduce
 * that stores new strings rewrites `strs` in place when they fit, so
 * string updates do not allocate per record; a new key with strings
 * allocates its buffer.  Since the key is not stored twice, the output's
 * key column is always the key: a reduce function that changes it in acc
 * is ignored there.
 *
 * STREAMING mode emits the updated accumulator for every input record;
 * BATCH mode emits each key's final accumulator once, at end of input.
 *
 * Two-phase aggregation (BATCH mode): the planner puts a combiner, the same
 * operator with `combiner` set, in the chain before the hash exchange.  It
 * folds records locally and sends one partial row per key, at end of input
 * or whenever its table passes COMBINER_MAX_KEYS (then it empties the
 * table), so the exchange carries partial aggregates instead of every
 * record.  A combiner runs only in BATCH mode, and sends its partial rows
 * at every barrier too (agg_snapshot), so it never has state to
 * checkpoint: it keeps its accumulators (same layout, same code) in a
 * private table that stores keys in place (ctab, below): word count's hot
 * path.
 *
 * The keyed table is updated in chunks of rows: the keys of a chunk first
 * (hashing and interning), then the updates, each entry prefetched
 * (kv_prefetch) a few rows ahead.  Nothing is allocated per record: a key
 * is interned once per subtask, and the tables grow amortised.
 *
 * Threading: agg_state belongs to the subtask's reactor thread; open and
 * close run on the thread that runs the job.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "keyhash.h"
#include "ops.h"
#include "state.h"

/* ---- owned buffers and their codec (ops.h) ------------------------------------------ */

int obuf_set(obuf **bp, const void *p, size_t n)
{
	obuf *b = *bp;
	if (n > UINT32_MAX / 2)
		return -E2BIG;
	if (!b || b->cap < n) {
		uint32_t cap = b ? b->cap : 0;
		if (cap < 16)
			cap = 16;
		while (cap < n)
			cap *= 2;
		obuf *nb = realloc(b, sizeof(*nb) + cap);
		if (!nb)
			return -ENOMEM;
		nb->cap = cap;
		if (!b)
			nb->len = 0;
		*bp = b = nb;
	}
	if (n)
		memcpy(b->data, p, n);
	b->len = (uint32_t)n;
	return 0;
}

#define OBUF_NONE UINT32_MAX

static void obuf_free_value(void *v)
{
	free(*(obuf **)v);
}

static inline size_t obuf_enc_size(const void *v, uint32_t plain)
{
	const obuf *b = *(obuf *const *)v;
	return 4 + (size_t)(b ? b->len : 0) + plain;
}

static inline void obuf_enc(const void *v, void *out, uint32_t plain)
{
	const obuf *b = *(obuf *const *)v;
	uint32_t n = b ? b->len : OBUF_NONE;
	char *o = out;
	memcpy(o, &n, 4);
	o += 4;
	if (b && b->len) {
		memcpy(o, b->data, b->len);
		o += b->len;
	}
	memcpy(o, (const char *)v + 8, plain);
}

/* Into a zeroed value; on error nothing is allocated. */
static inline int obuf_dec(void *v, const void *in, size_t len, uint32_t plain)
{
	const char *p = in;
	uint32_t n;
	if (len < 4 + (size_t)plain)
		return -EINVAL;
	memcpy(&n, p, 4);
	size_t body = n == OBUF_NONE ? 0 : n;
	if (len - 4 - plain != body)
		return -EINVAL;
	obuf *b = NULL;
	if (n != OBUF_NONE) {
		int rc = obuf_set(&b, p + 4, n);
		if (rc < 0)
			return rc == -E2BIG ? -EINVAL : rc;
	}
	*(obuf **)v = b;
	memcpy((char *)v + 8, p + 4 + body, plain);
	return 0;
}

/* The callbacks get no context, so there is one codec per plain size
 * (k 8-byte words), chosen when the table is configured. */
#define OBUF_CODEC(k)                                                             \
	static size_t obuf_size_##k(const void *v) { return obuf_enc_size(v, 8 * k); } \
	static void obuf_encode_##k(const void *v, void *o) { obuf_enc(v, o, 8 * k); } \
	static int obuf_decode_##k(void *v, const void *in, size_t n)             \
	{                                                                         \
		return obuf_dec(v, in, n, 8 * k);                                 \
	}
#define OBUF_WORDS(X)                                                             \
	X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12)       \
	X(13) X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23)        \
	X(24) X(25) X(26) X(27) X(28) X(29) X(30) X(31) X(32)
OBUF_WORDS(OBUF_CODEC)

static const struct obuf_codec {
	size_t (*size)(const void *);
	void (*encode)(const void *, void *);
	int (*decode)(void *, const void *, size_t);
} obuf_codecs[] = {
#define OBUF_ENTRY(k) [k] = { obuf_size_##k, obuf_encode_##k, obuf_decode_##k },
	OBUF_WORDS(OBUF_ENTRY)
#undef OBUF_ENTRY
};
_Static_assert(ARRAY_SIZE(obuf_codecs) == OBUF_MAX_PLAIN / 8 + 1,
	       "one obuf codec per plain size");

int obuf_table_conf(kvtab_conf *c)
{
	if (c->vsize < 8 || (c->vsize - 8) % 8 || c->vsize - 8 > OBUF_MAX_PLAIN)
		return -EINVAL;
	const struct obuf_codec *k = &obuf_codecs[(c->vsize - 8) / 8];
	c->free_value = obuf_free_value;
	c->nlists = 0;
	c->encoded_size = k->size;
	c->encode = k->encode;
	c->decode = k->decode;
	return 0;
}

/* ---- the operator's state -------------------------------------------------------------- */

enum agg_op { OP_COUNT, OP_SUM_I64, OP_SUM_F64, OP_MIN_I64, OP_MIN_F64,
	      OP_MAX_I64, OP_MAX_F64, OP_REDUCE };

/*
 * The combiner's table (BATCH mode only: never checkpointed, emptied at
 * every flush).  Open addressing with linear probing on the key's hash
 * (stored | 1, 0 = empty), at most half full; the key itself is in the
 * slot (a string key's bytes in an arena of 1 MiB chunks), the value is
 * laid out as in the kvtab, so the same accumulator code runs on both:
 *
 *   +-----------+-----------------------------+------------+--------------+
 *   | hash u64  | key u64: cell, or arena ptr | klen u64   | value[vsize] |
 *   +-----------+-----------------------------+------------+--------------+
 *
 * Not a kvtab: a string key there costs an interning probe on top of the
 * table's, per record, which made word count (whose hot path this is)
 * 45% slower, and an allocation per key in every combiner.
 */
typedef struct arena_chunk {
	struct arena_chunk *next;
	size_t used, cap;
	char data[];
} arena_chunk;

typedef struct ctab {
	char *slots;
	size_t cap, used, slot_size;
	arena_chunk *arena;
} ctab;

enum { C_HASH = 0, C_KEY = 1, C_KLEN = 2, C_VALUE = 24 };

typedef struct agg_state {
	const agg_conf *c;
	const weir_schema *out; /* the accumulator's schema (= output) */
	int ncols;
	int key;                /* key column of the output row */
	weir_type kt;
	enum agg_op op;
	bool strs;              /* the value starts with an obuf * */
	uint32_t coff;          /* byte offset of the cells: 0 or 8 */
	uint32_t vsize;
	int acell;              /* cell that SUM/MIN/MAX/COUNT update */
	int8_t cell[WEIR_MAX_COLS]; /* cell of output column c; -1: the key */
	kdict *d;               /* keyed aggregate: its table */
	kvtab *tab;
	ctab ct;                /* combiner: its table */
	bool started;           /* restored entries checked */
	char *scratch;          /* strings of a row being stored */
	size_t scratch_cap;
	weir_value *row;        /* reduce: the input row */
	weir_value acc[WEIR_MAX_COLS]; /* reduce: the accumulator as cells */
} agg_state;

/* The layout of agg_state for conf c with output schema out; the table's
 * configuration into kc.  0 or -EINVAL (a row too wide to encode). */
static int agg_plan(agg_state *s, const agg_conf *c, const weir_schema *out,
		    kvtab_conf *kc)
{
	bool f64;
	int n = 0;

	s->c = c;
	s->out = out;
	s->ncols = out->ncols;
	s->key = c->kind == AGG_COUNT ? 0 : c->key_col;
	s->kt = out->fields[s->key].type;
	s->strs = false;
	for (int col = 0; col < s->ncols; col++) {
		s->cell[col] = col == s->key ? -1 : (int8_t)n++;
		if (col != s->key && out->fields[col].type == WEIR_STR)
			s->strs = true;
	}
	s->coff = s->strs ? 8 : 0;
	/* at least one word, also for a reduce over key-only rows */
	s->vsize = s->coff + 8u * (uint32_t)(n ? n : 1);
	f64 = c->kind != AGG_COUNT && c->kind != AGG_REDUCE &&
	      c->in->fields[c->col].type == WEIR_F64;
	switch (c->kind) {
	case AGG_COUNT:
		s->op = OP_COUNT;
		s->acell = 0;
		break;
	case AGG_SUM:
		s->op = f64 ? OP_SUM_F64 : OP_SUM_I64;
		break;
	case AGG_MIN:
		s->op = f64 ? OP_MIN_F64 : OP_MIN_I64;
		break;
	case AGG_MAX:
		s->op = f64 ? OP_MAX_F64 : OP_MAX_I64;
		break;
	default:
		s->op = OP_REDUCE;
	}
	if (c->kind != AGG_COUNT && c->kind != AGG_REDUCE)
		s->acell = s->cell[c->col];
	*kc = (kvtab_conf){ .key_type = s->kt, .vsize = s->vsize };
	return s->strs ? obuf_table_conf(kc) : 0;
}

int aggregate_table_conf(const lnode *n, const char *name, kvtab_conf *out)
{
	agg_state s;
	const agg_conf *c = n->conf;
	if (n->ops != &op_aggregate || c->combiner || strcmp(name, "accumulators"))
		return -ENOENT;
	return agg_plan(&s, c, n->schema[0], out);
}

/* ---- the combiner's table ------------------------------------------------------------- */

#define CTAB_MIN_CAP 1024

/*
 * A zeroed table that is written before it is read.  calloc() may hand out
 * fresh zero-page mappings: probing (a read) would map the shared zero page
 * and the first insert on each page would then take a copy-on-write fault
 * with a TLB shootdown IPI to every other core running this process, which
 * cost about 10% of word count at -p 2.  Zeroing writes every page first.
 */
static char *ctab_alloc(size_t cap, size_t slot_size)
{
	char *p = malloc(cap * slot_size);
	/* explicit_bzero: GCC turns malloc + memset(0) back into calloc. */
	if (p)
		explicit_bzero(p, cap * slot_size);
	return p;
}

static inline uint64_t *ct_slot(const ctab *ct, size_t i)
{
	return (uint64_t *)(ct->slots + i * ct->slot_size);
}

static bool ctab_init(ctab *ct, uint32_t vsize)
{
	ct->slot_size = C_VALUE + vsize;
	ct->cap = CTAB_MIN_CAP;
	ct->used = 0;
	ct->slots = ctab_alloc(ct->cap, ct->slot_size);
	return ct->slots != NULL;
}

static char *arena_copy(ctab *ct, const char *p, uint32_t n)
{
	arena_chunk *a = ct->arena;
	if (!a || a->cap - a->used < n) {
		size_t cap = n > (1u << 20) ? n : (1u << 20);
		arena_chunk *na = malloc(sizeof(*na) + cap);
		if (!na)
			return NULL;
		na->next = a;
		na->used = 0;
		na->cap = cap;
		ct->arena = a = na;
	}
	char *d = a->data + a->used;
	if (n)
		memcpy(d, p, n);
	a->used += n;
	return d;
}

/* Free the values' buffers and the keys; keep the slots (zeroed) unless
 * `all`. */
static void ctab_clear(ctab *ct, bool strs, bool all)
{
	if (ct->slots) {
		if (strs)
			for (size_t i = 0; i < ct->cap; i++)
				if (ct_slot(ct, i)[C_HASH])
					obuf_free_value(ct->slots + i * ct->slot_size + C_VALUE);
		if (all) {
			free(ct->slots);
			ct->slots = NULL;
		} else {
			memset(ct->slots, 0, ct->cap * ct->slot_size);
		}
	}
	ct->used = 0;
	while (ct->arena) {
		arena_chunk *n = ct->arena->next;
		free(ct->arena);
		ct->arena = n;
	}
}

static bool ctab_grow(ctab *ct)
{
	size_t ncap = ct->cap * 2, ocap = ct->cap;
	char *n = ctab_alloc(ncap, ct->slot_size), *old = ct->slots;
	if (!n)
		return false;
	ct->slots = n;
	ct->cap = ncap;
	for (size_t i = 0; i < ocap; i++) {
		uint64_t h = *(uint64_t *)(old + i * ct->slot_size);
		if (!h)
			continue;
		size_t j = h & (ncap - 1);
		while (ct_slot(ct, j)[C_HASH])
			j = (j + 1) & (ncap - 1);
		memcpy(ct_slot(ct, j), old + i * ct->slot_size, ct->slot_size);
	}
	free(old);
	return true;
}

/* The key of a combiner slot as a cell. */
static inline weir_value ct_key(const agg_state *s, const uint64_t *e)
{
	weir_value k;
	if (s->kt == WEIR_STR) {
		k.str.ptr = (const char *)(uintptr_t)e[C_KEY];
		k.str.len = (uint32_t)e[C_KLEN];
	} else {
		k.i64 = (int64_t)e[C_KEY];
	}
	return k;
}

/* ---- open and close ------------------------------------------------------------------- */

static int agg_open(task *t)
{
	agg_state *s = calloc(1, sizeof(*s));
	kvtab_conf kc;
	int rc;

	if (!s)
		return -ENOMEM;
	t->st = s; /* close() frees what open() got to */
	rc = agg_plan(s, t->node->conf, t->node->schema[0], &kc);
	if (rc < 0)
		return rc;
	s->row = calloc((size_t)s->c->in->ncols, sizeof(weir_value));
	if (!s->row)
		return -ENOMEM;
	if (s->c->combiner) /* BATCH mode only: nothing to register */
		return ctab_init(&s->ct, s->vsize) ? 0 : -ENOMEM;
	s->d = kdict_new();
	if (!s->d || !(s->tab = kv_new(&kc, s->d)))
		return -ENOMEM;
	return state_register_table(t, "accumulators", s->tab);
}

static void agg_close(task *t)
{
	agg_state *s = t->st;
	if (!s)
		return;
	kv_free(s->tab); /* releases its keys: before the dictionary */
	if (s->d)
		kdict_free(s->d);
	ctab_clear(&s->ct, s->strs, true);
	free(s->row);
	free(s->scratch);
	free(s);
	t->st = NULL;
}

/* ---- accumulators ------------------------------------------------------------------------ */

static inline int64_t *cells_of(const agg_state *s, void *v)
{
	return (int64_t *)((char *)v + s->coff);
}

static inline obuf *strs_of(const agg_state *s, void *v)
{
	return s->strs ? *(obuf **)v : NULL;
}

/* A string cell: (offset, length) into the value's obuf. */
static inline void str_cell(int64_t cell, uint32_t *off, uint32_t *len)
{
	uint64_t u = (uint64_t)cell;
	*off = (uint32_t)u;
	*len = (uint32_t)(u >> 32);
}

static inline const char *str_at(const obuf *b, int64_t cell, uint32_t *len)
{
	uint32_t off;
	str_cell(cell, &off, len);
	return b ? b->data + off : "";
}

static bool scratch_room(agg_state *s, size_t n)
{
	if (n <= s->scratch_cap)
		return true;
	size_t cap = s->scratch_cap ? s->scratch_cap : 256;
	while (cap < n)
		cap *= 2;
	char *p = realloc(s->scratch, cap);
	if (!p)
		return false;
	s->scratch = p;
	s->scratch_cap = cap;
	return true;
}

/* Make the value's strings those of str[col] (for every non-key string
 * column): copied aside, then into its obuf (grown only if they do not
 * fit).  False on ENOMEM. */
static bool store_strs(agg_state *s, void *v, const weir_value *str)
{
	int64_t *cells = cells_of(s, v);
	size_t total = 0;

	for (int col = 0; col < s->ncols; col++)
		if (s->cell[col] >= 0 && s->out->fields[col].type == WEIR_STR)
			total += str[col].str.len;
	if (!scratch_room(s, total))
		return false;
	size_t off = 0;
	for (int col = 0; col < s->ncols; col++) {
		if (s->cell[col] < 0 || s->out->fields[col].type != WEIR_STR)
			continue;
		uint32_t len = str[col].str.len;
		if (len)
			memcpy(s->scratch + off, str[col].str.ptr, len);
		cells[s->cell[col]] = (int64_t)(((uint64_t)len << 32) | off);
		off += len;
	}
	return obuf_set((obuf **)v, s->scratch, total) == 0;
}

/* Load cell (col, r) of b as a weir_value (strings point into b). */
static inline weir_value load_cell(const weir_batch *b, int col, uint32_t r)
{
	weir_value v;
	switch (b->schema->fields[col].type) {
	case WEIR_STR: {
		weir_str x = weir_col_str(b, col)[r];
		v.str.ptr = b->heap + x.off;
		v.str.len = x.len;
		break;
	}
	case WEIR_BOOL:
		v.i64 = weir_col_bool(b, col)[r];
		break;
	default:
		v.i64 = weir_col_i64(b, col)[r];
	}
	return v;
}

/* A new key's accumulator: its first record (COUNT: a count of 1). */
static bool acc_init(agg_state *s, void *v, const weir_batch *b, uint32_t r)
{
	int64_t *cells = cells_of(s, v);

	if (s->op == OP_COUNT) {
		cells[0] = 1;
		return true;
	}
	for (int col = 0; col < s->ncols; col++) {
		int k = s->cell[col];
		if (k < 0)
			continue;
		weir_value x = load_cell(b, col, r);
		if (s->out->fields[col].type == WEIR_STR)
			s->acc[col] = x;
		else
			cells[k] = x.i64;
	}
	return !s->strs || store_strs(s, v, s->acc);
}

/* acc = reduce(acc, row r of b) for key cell k.  False on ENOMEM. */
static bool acc_reduce(agg_state *s, weir_value k, void *v, const weir_batch *b,
		       uint32_t r)
{
	const agg_conf *c = s->c;
	int64_t *cells = cells_of(s, v);
	const obuf *sb = strs_of(s, v);
	bool changed = false;

	for (int col = 0; col < s->ncols; col++) {
		int i = s->cell[col];
		if (i < 0)
			s->acc[col] = k;
		else if (s->out->fields[col].type == WEIR_STR)
			s->acc[col].str.ptr = str_at(sb, cells[i], &s->acc[col].str.len);
		else
			s->acc[col].i64 = cells[i];
	}
	for (int col = 0; col < b->schema->ncols; col++)
		s->row[col] = load_cell(b, col, r);
	c->fn(c->arg, s->acc, s->row, b->schema);
	/* The key column is the key: a change of it in acc is ignored. */
	for (int col = 0; col < s->ncols; col++) {
		int i = s->cell[col];
		if (i < 0)
			continue;
		if (s->out->fields[col].type != WEIR_STR) {
			cells[i] = s->acc[col].i64;
			continue;
		}
		uint32_t len;
		const char *p = str_at(sb, cells[i], &len);
		if (s->acc[col].str.ptr != p || s->acc[col].str.len != len)
			changed = true;
	}
	return !changed || store_strs(s, v, s->acc);
}

/* Fold row r of b into an existing accumulator (not REDUCE). */
static inline void acc_fold(const agg_state *s, int64_t *cells,
			    const weir_batch *b, uint32_t r)
{
	int64_t *a = &cells[s->acell];
	int vc = s->c->col;
	double x, y;

	switch (s->op) {
	case OP_COUNT:
		(*a)++;
		break;
	case OP_SUM_I64:
		*a = (int64_t)((uint64_t)*a + (uint64_t)weir_col_i64(b, vc)[r]);
		break;
	case OP_MIN_I64:
		if (weir_col_i64(b, vc)[r] < *a)
			*a = weir_col_i64(b, vc)[r];
		break;
	case OP_MAX_I64:
		if (weir_col_i64(b, vc)[r] > *a)
			*a = weir_col_i64(b, vc)[r];
		break;
	case OP_SUM_F64:
	case OP_MIN_F64:
	case OP_MAX_F64:
		memcpy(&x, a, 8);
		y = weir_col_f64(b, vc)[r];
		if (s->op == OP_SUM_F64)
			x += y;
		else if (s->op == OP_MIN_F64 ? y < x : y > x)
			x = y;
		memcpy(a, &x, 8);
		break;
	case OP_REDUCE:
		break;
	}
}

/* Emit the accumulator v of key cell k (a string points at its bytes). */
static void emit_acc(task *t, const agg_state *s, weir_value k, void *v, int64_t ts)
{
	weir_out *o = task_out(t, 0);
	const int64_t *cells = cells_of(s, v);
	const obuf *sb = strs_of(s, v);

	for (int col = 0; col < s->ncols; col++) {
		int i = s->cell[col];
		if (i < 0) {
			if (s->kt == WEIR_STR)
				weir_out_str(o, col, k.str.ptr, k.str.len);
			else
				weir_out_i64(o, col, k.i64); /* f64, bool: the bits */
		} else if (s->out->fields[col].type == WEIR_STR) {
			uint32_t len;
			const char *p = str_at(sb, cells[i], &len);
			weir_out_str(o, col, p, len);
		} else {
			weir_out_i64(o, col, cells[i]); /* f64, bool: the same bits */
		}
	}
	weir_out_ts(o, ts);
	weir_out_emit(o);
}

typedef struct emit_ctx {
	task *t;
	agg_state *s;
} emit_ctx;

/* key_value(), inline: a fixed-width key's word is its cell's 8 bytes
 * (a bool's 0 or 1), which is how accumulators hold cells. */
static inline weir_value key_cell(weir_type kt, skey k)
{
	weir_value v;
	if (kt == WEIR_STR) {
		const kstr *ks = (const kstr *)(uintptr_t)k.v;
		v.str.ptr = ks->data;
		v.str.len = ks->len;
	} else {
		v.i64 = (int64_t)k.v;
	}
	return v;
}

static int emit_one(void *arg, skey k, int64_t ns, void *v)
{
	emit_ctx *e = arg;
	(void)ns;
	emit_acc(e->t, e->s, key_cell(e->s->kt, k), v, INT64_MAX);
	return 0;
}

/* Emit every accumulator (end of input in BATCH mode, combiner flush). */
static void emit_all(task *t, agg_state *s)
{
	if (s->tab) {
		emit_ctx e = { t, s };
		kv_foreach(s->tab, emit_one, &e);
		return;
	}
	for (size_t i = 0; i < s->ct.cap; i++) {
		uint64_t *e = ct_slot(&s->ct, i);
		if (e[C_HASH])
			emit_acc(t, s, ct_key(s, e), (char *)e + C_VALUE, INT64_MAX);
	}
}

/* Restored string cells must lie in their buffer (a decode cannot check:
 * it does not know which cells are strings). */
typedef struct check_ctx {
	const agg_state *s;
	bool bad;
} check_ctx;

static int check_one(void *arg, skey k, int64_t ns, void *v)
{
	check_ctx *x = arg;
	const agg_state *s = x->s;
	const obuf *sb = strs_of(s, v);
	const int64_t *cells = cells_of(s, v);
	(void)k;
	(void)ns;
	for (int col = 0; col < s->ncols; col++) {
		uint32_t off, len;
		if (s->cell[col] < 0 || s->out->fields[col].type != WEIR_STR)
			continue;
		str_cell(cells[s->cell[col]], &off, &len);
		if ((uint64_t)off + len > (sb ? sb->len : 0)) {
			x->bad = true;
			return 1;
		}
	}
	return 0;
}

/* The first call on the reactor thread: entries present now were
 * restored (open() made the table empty). */
static void agg_start(task *t, agg_state *s)
{
	check_ctx x = { s, false };
	s->started = true;
	if (s->strs && kv_count(s->tab))
		kv_foreach(s->tab, check_one, &x);
	if (x.bad)
		task_fail(t, "aggregate '%s': a restored accumulator does not fit the "
			  "output schema (did the job change since the checkpoint?)",
			  t->node->name);
}

#define COMBINER_MAX_KEYS (1u << 18)
#define CHUNK 64
#define PREFETCH_AHEAD 12

/* A keyed aggregate: every record updates (and in STREAMING mode emits)
 * its key's accumulator in the registered table. */
static void keyed_process(task *t, agg_state *s, const weir_batch *b)
{
	const int kc = s->c->key_col;
	const bool emit = !s->c->final_only;
	skey keys[CHUNK];

	for (uint32_t base = 0; base < b->rows; base += CHUNK) {
		uint32_t m = b->rows - base < CHUNK ? b->rows - base : CHUNK;
		/* Keys of the chunk, then the updates.  A string key is
		 * borrowed until its kv_upsert retains it: nothing in between
		 * releases keys (this table never deletes). */
		for (uint32_t i = 0; i < m; i++)
			keys[i] = key_of(s->d, s->kt, b, kc, base + i);
		for (uint32_t i = 0; i < m && i < PREFETCH_AHEAD; i++)
			kv_prefetch(s->tab, keys[i], 0);
		for (uint32_t i = 0; i < m; i++) {
			uint32_t r = base + i;
			bool created;
			if (i + PREFETCH_AHEAD < m)
				kv_prefetch(s->tab, keys[i + PREFETCH_AHEAD], 0);
			void *v = kv_upsert(s->tab, keys[i], 0, &created);
			if (unlikely(!v))
				goto oom;
			if (created) {
				if (!acc_init(s, v, b, r))
					goto oom;
			} else if (s->op == OP_REDUCE) {
				if (!acc_reduce(s, key_cell(s->kt, keys[i]), v, b, r))
					goto oom;
			} else {
				acc_fold(s, cells_of(s, v), b, r);
			}
			kv_written(s->tab, v);
			if (emit)
				emit_acc(t, s, key_cell(s->kt, keys[i]), v, b->ts[r]);
		}
	}
	return;
oom:
	/* keys not yet in the table are dropped with the dictionary */
	task_fail(t, "aggregate '%s': out of memory for keyed state", t->node->name);
}

/* Combiner: send the partial rows and start over with an empty table. */
static void combiner_flush(task *t, agg_state *s)
{
	emit_all(t, s);
	task_flush(t); /* the rows point into the buffers we free next */
	ctab_clear(&s->ct, s->strs, false);
}

static inline bool ct_key_eq(const agg_state *s, const uint64_t *e,
			     const weir_batch *b, int kc, uint32_t r)
{
	switch (s->kt) {
	case WEIR_STR: {
		weir_str v = weir_col_str(b, kc)[r];
		return e[C_KLEN] == v.len &&
		       memcmp((const char *)(uintptr_t)e[C_KEY], b->heap + v.off, v.len) == 0;
	}
	case WEIR_BOOL:
		return e[C_KEY] == weir_col_bool(b, kc)[r];
	default:
		return e[C_KEY] == (uint64_t)weir_col_i64(b, kc)[r];
	}
}

/* A combiner (BATCH mode): fold records into partial rows per key. */
static void combiner_process(task *t, agg_state *s, const weir_batch *b)
{
	ctab *ct = &s->ct;
	const int kc = s->c->key_col;

	for (uint32_t r = 0; r < b->rows; r++) {
		uint64_t h = key_hash(b, kc, r) | 1; /* 0 marks an empty slot */
		size_t i = h & (ct->cap - 1);
		uint64_t *e;
		for (;; i = (i + 1) & (ct->cap - 1)) {
			e = ct_slot(ct, i);
			if (!e[C_HASH] || (e[C_HASH] == h && ct_key_eq(s, e, b, kc, r)))
				break;
		}
		void *v = (char *)e + C_VALUE;
		if (e[C_HASH]) {
			if (s->op != OP_REDUCE)
				acc_fold(s, cells_of(s, v), b, r);
			else if (!acc_reduce(s, ct_key(s, e), v, b, r))
				goto oom;
			continue;
		}
		/* A new key: the accumulator starts as this record. */
		if (ct->used + 1 > ct->cap / 2) {
			if (ct->used >= COMBINER_MAX_KEYS)
				combiner_flush(t, s);
			else if (!ctab_grow(ct))
				goto oom;
			r--; /* probe again in the new table */
			continue;
		}
		weir_value k = load_cell(b, kc, r);
		if (s->kt == WEIR_STR) {
			const char *p = arena_copy(ct, k.str.ptr, k.str.len);
			if (!p)
				goto oom;
			e[C_KEY] = (uint64_t)(uintptr_t)p;
			e[C_KLEN] = k.str.len;
		} else {
			e[C_KEY] = (uint64_t)k.i64;
		}
		e[C_HASH] = h;
		ct->used++;
		if (!acc_init(s, v, b, r))
			goto oom;
	}
	return;
oom:
	task_fail(t, "aggregate '%s': out of memory for partial aggregates",
		  t->node->name);
}

static void agg_process(task *t, int input, weir_batch *b)
{
	agg_state *s = t->st;
	(void)input;

	if (s->c->combiner) {
		combiner_process(t, s, b);
	} else {
		if (unlikely(!s->started))
			agg_start(t, s);
		keyed_process(t, s, b);
	}
	batch_release(b);
}

/* At a barrier, before it is forwarded: a combiner sends its partial rows
 * ahead of it and starts over, as Flink's pre-aggregation does in
 * prepareSnapshotPreBarrier, so its table (never checkpointed) is empty at
 * every checkpoint and savepoint and the partial counts are in the final
 * aggregate's state.  (A savepoint of a BATCH job lost them.) */
static int agg_snapshot(task *t, int64_t id, snap_buf *out)
{
	agg_state *s = t->st;
	(void)id, (void)out;
	if (id != CKPT_FINAL && s->c->combiner && s->ct.used)
		combiner_flush(t, s);
	return 0;
}

static void agg_end_input(task *t)
{
	agg_state *s = t->st;
	if (s->tab && unlikely(!s->started))
		agg_start(t, s);
	if (s->c->final_only || s->c->combiner)
		emit_all(t, s);
}

const op_ops op_aggregate = {
	.kind = "aggregate", .open = agg_open, .process = agg_process,
	.end_input = agg_end_input, .snapshot = agg_snapshot, .close = agg_close,
};
