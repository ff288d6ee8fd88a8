/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyed running aggregates: sum, min, max, count and user reduce, on a
 * hash-partitioned (key_by) stream.  Each subtask keeps, per key, one
 * accumulator row in an open-addressing hash table; string cells of the
 * accumulators live in an append-only arena of 1 MiB chunks.  Memory is
 * allocated when the table or the arena grows (amortised over many keys),
 * never per record.
 *
 * STREAMING mode emits the updated accumulator for every input record;
 * BATCH mode emits each key's final accumulator once, at end of input.
 *
 * Two-phase aggregation (BATCH mode): the planner puts a combiner, the same
 * operator with `combiner` set, in the chain before the hash exchange.  It
 * folds records locally and sends one partial row per key, at end of input
 * or whenever its table passes COMBINER_MAX_KEYS (then it empties the table),
 * so the exchange carries partial aggregates instead of every record.
 *
 * This table is the operator's private state for now; the keyed-state
 * backend of state/ (key groups, state logs, checkpoints) replaces it when
 * that lands, and then every mutation goes through it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "keyhash.h"
#include "ops.h"

typedef struct arena_chunk {
	struct arena_chunk *next;
	size_t used, cap;
	char data[];
} arena_chunk;

typedef struct agg_state {
	const agg_conf *c;
	const weir_schema *out;
	int ncols;        /* accumulator = output row */
	int key;          /* key column in the accumulator */
	size_t slot_size; /* bytes per table slot */
	/* slot: [hash u64][weir_value x ncols][owned x ncols]; hash 0 = empty.
	 * owned[c] is the arena buffer this key's string column c lives in
	 * (pointer, capacity), reused when a reduce stores a new string that
	 * fits, so updates do not grow the arena. */
	char *slots;
	size_t cap, used;
	arena_chunk *arena;
	weir_value *row;  /* scratch: the input row for reduce */
} agg_state;

#define SLOT_HASH(s, i) (*(uint64_t *)((s)->slots + (i) * (s)->slot_size))
#define SLOT_VALS(s, i) ((weir_value *)((s)->slots + (i) * (s)->slot_size + 8))
#define SLOT_OWNED(s, i) (SLOT_VALS(s, i) + (s)->ncols)

static char *arena_copy(agg_state *s, const char *p, uint32_t n)
{
	arena_chunk *a = s->arena;
	if (!a || a->cap - a->used < n) {
		size_t cap = n > (1u << 20) ? n : (1u << 20);
		arena_chunk *na = malloc(sizeof(*na) + cap);
		if (!na)
			return NULL;
		na->next = a;
		na->used = 0;
		na->cap = cap;
		s->arena = a = na;
	}
	char *d = a->data + a->used;
	if (n)
		memcpy(d, p, n);
	a->used += n;
	return d;
}

/*
 * A zeroed table that is written before it is read.  calloc() may hand out
 * fresh zero-page mappings: probing (a read) would map the shared zero page
 * and the first insert on each page would then take a copy-on-write fault
 * with a TLB shootdown IPI to every other core running this process, which
 * cost about 10% of word count at -p 2.  Zeroing writes every page first.
 */
static char *table_alloc(size_t cap, size_t slot_size)
{
	char *t = malloc(cap * slot_size);
	/* explicit_bzero: GCC turns malloc + memset(0) back into calloc. */
	if (t)
		explicit_bzero(t, cap * slot_size);
	return t;
}

static int agg_open(task *t)
{
	agg_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->c = t->node->conf;
	s->out = t->node->schema[0];
	s->ncols = s->out->ncols;
	s->key = s->c->kind == AGG_COUNT ? 0 : s->c->key_col;
	s->slot_size = 8 + 2 * sizeof(weir_value) * (size_t)s->ncols;
	s->cap = 1024;
	s->slots = table_alloc(s->cap, s->slot_size);
	s->row = calloc((size_t)s->c->in->ncols, sizeof(weir_value));
	if (!s->slots || !s->row) {
		free(s->slots);
		free(s->row);
		free(s);
		return -ENOMEM;
	}
	t->st = s;
	return 0;
}

static void agg_close(task *t)
{
	agg_state *s = t->st;
	if (!s)
		return;
	while (s->arena) {
		arena_chunk *n = s->arena->next;
		free(s->arena);
		s->arena = n;
	}
	free(s->slots);
	free(s->row);
	free(s);
}

static bool grow(agg_state *s)
{
	size_t ncap = s->cap * 2;
	char *n = table_alloc(ncap, s->slot_size), *old = s->slots;
	size_t ocap = s->cap;
	if (!n)
		return false;
	s->slots = n;
	s->cap = ncap;
	for (size_t i = 0; i < ocap; i++) {
		uint64_t h = *(uint64_t *)(old + i * s->slot_size);
		if (!h)
			continue;
		size_t j = h & (ncap - 1);
		while (SLOT_HASH(s, j))
			j = (j + 1) & (ncap - 1);
		memcpy(s->slots + j * s->slot_size, old + i * s->slot_size, s->slot_size);
	}
	free(old);
	return true;
}

static inline bool key_eq(const weir_value *acc, weir_type kt,
			  const weir_batch *b, int col, uint32_t r)
{
	if (kt == WEIR_STR) {
		weir_str v = weir_col_str(b, col)[r];
		return acc->str.len == v.len &&
		       memcmp(acc->str.ptr, b->heap + v.off, v.len) == 0;
	}
	if (kt == WEIR_BOOL)
		return acc->i64 == weir_col_bool(b, col)[r];
	return acc->i64 == weir_col_i64(b, col)[r];
}

/* Load cell (c, r) of b into v (strings point into b). */
static inline void load_cell(const weir_batch *b, int c, uint32_t r,
			     weir_value *v)
{
	switch (b->schema->fields[c].type) {
	case WEIR_STR: {
		weir_str s = weir_col_str(b, c)[r];
		v->str.ptr = b->heap + s.off;
		v->str.len = s.len;
		break;
	}
	case WEIR_BOOL:
		v->i64 = weir_col_bool(b, c)[r];
		break;
	default:
		v->i64 = weir_col_i64(b, c)[r];
	}
}

static void emit_acc(task *t, const agg_state *s, const weir_value *acc,
		     int64_t ts)
{
	weir_out *o = task_out(t, 0);
	for (int c = 0; c < s->ncols; c++) {
		switch (s->out->fields[c].type) {
		case WEIR_STR:
			weir_out_str(o, c, acc[c].str.ptr, acc[c].str.len);
			break;
		case WEIR_F64:
			weir_out_f64(o, c, acc[c].f64);
			break;
		default:
			weir_out_i64(o, c, acc[c].i64);
		}
	}
	weir_out_ts(o, ts);
	weir_out_emit(o);
}

/* Give the accumulator's strings that point into input batch b a home in
 * the arena: this key's own buffer for the column if it is big enough,
 * else a new one. */
static bool copy_strings(agg_state *s, weir_value *acc, weir_value *owned,
			 const weir_batch *b)
{
	for (int c = 0; c < s->ncols; c++) {
		if (s->out->fields[c].type != WEIR_STR)
			continue;
		const char *p = acc[c].str.ptr;
		uint32_t n = acc[c].str.len;
		if (p < b->heap || p > b->heap + b->heap_used)
			continue;
		if (owned[c].str.ptr && owned[c].str.len >= n) {
			memmove((char *)owned[c].str.ptr, p, n);
		} else {
			char *d = arena_copy(s, p, n);
			if (!d)
				return false;
			owned[c].str.ptr = d;
			owned[c].str.len = n;
		}
		acc[c].str.ptr = owned[c].str.ptr;
	}
	return true;
}

#define COMBINER_MAX_KEYS (1u << 18)

static void emit_all(task *t, agg_state *s)
{
	for (size_t i = 0; i < s->cap; i++)
		if (SLOT_HASH(s, i))
			emit_acc(t, s, SLOT_VALS(s, i), INT64_MAX);
}

/* Combiner: send the partial rows and start over with an empty table. */
static void combiner_flush(task *t, agg_state *s)
{
	emit_all(t, s);
	task_flush(t); /* the rows point into the arena we free next */
	memset(s->slots, 0, s->cap * s->slot_size);
	s->used = 0;
	while (s->arena) {
		arena_chunk *n = s->arena->next;
		free(s->arena);
		s->arena = n;
	}
}

static void agg_process(task *t, int input, weir_batch *b)
{
	agg_state *s = t->st;
	const agg_conf *c = s->c;
	int kc = c->key_col;
	weir_type kt = b->schema->fields[kc].type;
	weir_type vt = c->kind == AGG_COUNT || c->kind == AGG_REDUCE
			       ? WEIR_I64 : b->schema->fields[c->col].type;
	(void)input;

	for (uint32_t r = 0; r < b->rows; r++) {
		uint64_t h = key_hash(b, kc, r);
		h |= 1; /* 0 marks an empty slot */
		size_t i = h & (s->cap - 1);
		weir_value *acc;
		for (;;) {
			uint64_t sh = SLOT_HASH(s, i);
			if (!sh)
				break;
			if (sh == h && key_eq(&SLOT_VALS(s, i)[s->key], kt, b, kc, r))
				break;
			i = (i + 1) & (s->cap - 1);
		}
		acc = SLOT_VALS(s, i);
		if (!SLOT_HASH(s, i)) {
			/* New key: the accumulator starts as this record. */
			if (s->used + 1 > s->cap / 2) {
				if (c->combiner && s->used >= COMBINER_MAX_KEYS)
					combiner_flush(t, s);
				else if (!grow(s))
					goto oom;
				r--; /* probe again in the larger table */
				continue;
			}
			SLOT_HASH(s, i) = h;
			s->used++;
			if (c->kind == AGG_COUNT) {
				load_cell(b, kc, r, &acc[0]);
				acc[1].i64 = 1;
			} else {
				for (int k = 0; k < s->ncols; k++)
					load_cell(b, k, r, &acc[k]);
			}
			memset(SLOT_OWNED(s, i), 0, sizeof(weir_value) * (size_t)s->ncols);
			if (!copy_strings(s, acc, SLOT_OWNED(s, i), b))
				goto oom;
		} else {
			switch (c->kind) {
			case AGG_COUNT:
				acc[1].i64++;
				break;
			case AGG_SUM:
				if (vt == WEIR_F64)
					acc[c->col].f64 += weir_col_f64(b, c->col)[r];
				else
					acc[c->col].i64 = (int64_t)((uint64_t)acc[c->col].i64 +
						(uint64_t)weir_col_i64(b, c->col)[r]);
				break;
			case AGG_MIN:
				if (vt == WEIR_F64) {
					double v = weir_col_f64(b, c->col)[r];
					if (v < acc[c->col].f64)
						acc[c->col].f64 = v;
				} else if (weir_col_i64(b, c->col)[r] < acc[c->col].i64) {
					acc[c->col].i64 = weir_col_i64(b, c->col)[r];
				}
				break;
			case AGG_MAX:
				if (vt == WEIR_F64) {
					double v = weir_col_f64(b, c->col)[r];
					if (v > acc[c->col].f64)
						acc[c->col].f64 = v;
				} else if (weir_col_i64(b, c->col)[r] > acc[c->col].i64) {
					acc[c->col].i64 = weir_col_i64(b, c->col)[r];
				}
				break;
			case AGG_REDUCE:
				for (int k = 0; k < b->schema->ncols; k++)
					load_cell(b, k, r, &s->row[k]);
				c->fn(c->arg, acc, s->row, b->schema);
				if (!copy_strings(s, acc, SLOT_OWNED(s, i), b))
					goto oom;
				break;
			}
		}
		if (!c->final_only && !c->combiner)
			emit_acc(t, s, acc, b->ts[r]);
	}
	batch_release(b);
	return;
oom:
	task_fail(t, "aggregate '%s': out of memory for keyed state", t->node->name);
	batch_release(b);
}

static void agg_end_input(task *t)
{
	agg_state *s = t->st;
	if (s->c->final_only || s->c->combiner)
		emit_all(t, s);
}

const op_ops op_aggregate = {
	.kind = "aggregate", .open = agg_open, .process = agg_process,
	.end_input = agg_end_input, .close = agg_close,
};
