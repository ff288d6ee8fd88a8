/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyed state (state/): key interning and hashing, kvtab against a
 * reference model, TTL with a fake clock, lists and maps of byte strings,
 * timer services and the row encoding.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyhash.h"
#include "reactor.h"
#include "state.h"

/* ---- helpers -------------------------------------------------------------- */

/* A batch built by hand (no pool): every column has room for 8-byte cells. */
typedef struct tbatch {
	weir_schema s;
	weir_batch b;
	char heap[1 << 16];
} tbatch;

static tbatch *tb_new(const weir_type *types, int ncols, uint32_t cap)
{
	tbatch *t = calloc(1, sizeof(*t));
	t->s.ncols = ncols;
	for (int c = 0; c < ncols; c++) {
		snprintf(t->s.fields[c].name, WEIR_MAX_NAME, "c%d", c);
		t->s.fields[c].type = types[c];
		t->b.cols[c] = calloc(cap, 8);
	}
	t->b.schema = &t->s;
	t->b.capacity = cap;
	t->b.ts = calloc(cap, 8);
	t->b.heap = t->heap;
	t->b.heap_cap = sizeof(t->heap);
	return t;
}

static void tb_free(tbatch *t)
{
	for (int c = 0; c < t->s.ncols; c++)
		free(t->b.cols[c]);
	free(t->b.ts);
	free(t);
}

static void tb_str(tbatch *t, int c, uint32_t row, const char *p, uint32_t len)
{
	weir_str *s = &weir_col_str(&t->b, c)[row];
	s->off = t->b.heap_used;
	s->len = len;
	memcpy(t->b.heap + t->b.heap_used, p, len);
	t->b.heap_used += len;
}

static skey ki(int64_t v)
{
	weir_value x = { .i64 = v };
	return key_from_value(NULL, WEIR_I64, x);
}

static skey ks(kdict *d, const char *p)
{
	weir_value x;
	x.str.ptr = p;
	x.str.len = (uint32_t)strlen(p);
	return key_from_value(d, WEIR_STR, x);
}

static uint64_t rng = 88172645463325252ULL;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int64_t fake_now;
static int64_t fake_clock(void)
{
	return fake_now;
}

static int freed_values;
static void count_free(void *v)
{
	(void)v;
	freed_values++;
}

/* ---- keys ----------------------------------------------------------------- */

Test(keys, hash_agrees_with_partitioning)
{
	weir_type types[] = { WEIR_I64, WEIR_F64, WEIR_BOOL, WEIR_TS, WEIR_STR };
	tbatch *t = tb_new(types, 5, 8);
	kdict *d = kdict_new();
	for (uint32_t r = 0; r < 8; r++) {
		weir_col_i64(&t->b, 0)[r] = (int64_t)r * 1000003 - 7;
		weir_col_f64(&t->b, 1)[r] = r * 0.5 - 1.0;
		weir_col_bool(&t->b, 2)[r] = r & 1;
		weir_col_i64(&t->b, 3)[r] = 1700000000000 + r;
		char buf[16];
		int n = r ? snprintf(buf, sizeof(buf), "key-%u", r) : 0;
		tb_str(t, 4, r, buf, (uint32_t)n);
		t->b.rows++;
	}
	for (uint32_t r = 0; r < 8; r++) {
		for (int c = 0; c < 5; c++) {
			skey k = key_of(d, types[c], &t->b, c, r);
			cr_assert_eq(k.hash, key_hash(&t->b, c, r), "col %d row %u", c, r);
			weir_value v = cell_value(&t->b, c, r);
			skey k2 = key_from_value(d, types[c], v);
			cr_assert(key_eq(k, k2), "col %d row %u", c, r);
			weir_value back = key_value(types[c], k);
			if (types[c] == WEIR_STR) {
				cr_assert_eq(back.str.len, v.str.len);
				cr_assert_eq(memcmp(back.str.ptr, v.str.ptr, v.str.len), 0);
			} else if (types[c] == WEIR_BOOL) {
				cr_assert_eq(back.b, v.b);
			} else {
				cr_assert_eq(back.i64, v.i64);
			}
			key_done(d, types[c], k);
		}
	}
	cr_assert_eq(kdict_count(d), 0);
	kdict_free(d);
	tb_free(t);
}

Test(keys, interning_and_references)
{
	kdict *d = kdict_new();
	skey a = ks(d, "hello"), b = ks(d, "hello"), c = ks(d, "world");
	cr_assert(key_eq(a, b));
	cr_assert(!key_eq(a, c));
	cr_assert_eq(a.v, b.v, "same bytes, same kstr");
	cr_assert_eq(kdict_count(d), 2);
	key_retain(WEIR_STR, a);
	key_retain(WEIR_STR, b);
	cr_assert_eq(((kstr *)(uintptr_t)a.v)->refs, 2);
	key_done(d, WEIR_STR, a); /* retained: stays */
	key_done(d, WEIR_STR, c); /* nobody retained it: freed */
	cr_assert_eq(kdict_count(d), 1);
	key_release(d, WEIR_STR, a);
	cr_assert_eq(kdict_count(d), 1);
	key_release(d, WEIR_STR, b);
	cr_assert_eq(kdict_count(d), 0);

	/* many strings: growth and backward-shift removal of the dictionary */
	skey keys[5000];
	for (int i = 0; i < 5000; i++) {
		char buf[32];
		snprintf(buf, sizeof(buf), "k%d", i);
		keys[i] = ks(d, buf);
		key_retain(WEIR_STR, keys[i]);
	}
	cr_assert_eq(kdict_count(d), 5000);
	for (int i = 0; i < 5000; i += 2)
		key_release(d, WEIR_STR, keys[i]);
	cr_assert_eq(kdict_count(d), 2500);
	for (int i = 1; i < 5000; i += 2) {
		char buf[32];
		snprintf(buf, sizeof(buf), "k%d", i);
		cr_assert_eq(ks(d, buf).v, keys[i].v);
		key_release(d, WEIR_STR, keys[i]);
	}
	cr_assert_eq(kdict_count(d), 0);
	/* the empty string is a key like any other */
	skey e = ks(d, "");
	cr_assert_eq(key_value(WEIR_STR, e).str.len, 0);
	key_done(d, WEIR_STR, e);
	cr_assert_eq(kdict_count(d), 0);
	kdict_free(d);
}

/* ---- kvtab ---------------------------------------------------------------- */

static void kv_basic(weir_type type, const skey *k, int nk, kdict *d)
{
	kvtab_conf c = { .key_type = type, .vsize = 12 };
	kvtab *t = kv_new(&c, d);
	cr_assert_not_null(t);
	for (int i = 0; i < nk; i++)
		for (int64_t ns = -1; ns <= 1; ns++) {
			cr_assert_null(kv_get(t, k[i], ns));
			bool created = false;
			int64_t *v = kv_upsert(t, k[i], ns, &created);
			cr_assert_not_null(v);
			cr_assert(created);
			cr_assert_eq(v[0], 0);
			v[0] = i * 10 + ns;
			kv_written(t, v);
		}
	cr_assert_eq(kv_count(t), (size_t)nk * 3);
	cr_assert_eq(kv_writes(t), (uint64_t)nk * 3);
	for (int i = 0; i < nk; i++)
		for (int64_t ns = -1; ns <= 1; ns++) {
			int64_t *v = kv_get(t, k[i], ns);
			cr_assert_not_null(v);
			cr_assert_eq(v[0], i * 10 + ns);
			bool created = true;
			cr_assert_eq(kv_upsert(t, k[i], ns, &created), v);
			cr_assert(!created);
			v[0] += 1000;
			kv_written(t, v);
		}
	cr_assert_eq(*(int64_t *)kv_get(t, k[0], 1), 1001);
	cr_assert(kv_delete(t, k[0], 0));
	cr_assert(!kv_delete(t, k[0], 0));
	cr_assert_null(kv_get(t, k[0], 0));
	cr_assert_eq(*(int64_t *)kv_get(t, k[0], 1), 1001);
	cr_assert_eq(*(int64_t *)kv_get(t, k[0], -1), 999);
	cr_assert_eq(kv_count(t), (size_t)nk * 3 - 1);
	cr_assert_eq(kv_writes(t), (uint64_t)nk * 6 + 1);
	kv_prefetch(t, k[1], 0);
	cr_assert_geq(kv_memsize(t), kv_count(t) * 40);
	kv_free(t);
}

Test(kvtab, basic_i64_f64_bool)
{
	skey k[6];
	int64_t iv[] = { 0, 1, -1, INT64_MIN, INT64_MAX, 42 };
	for (int i = 0; i < 6; i++)
		k[i] = ki(iv[i]);
	kv_basic(WEIR_I64, k, 6, NULL);
	kv_basic(WEIR_TS, k, 6, NULL);

	double fv[] = { 0.0, -0.0, 1.5, -1e300, INFINITY, NAN };
	for (int i = 0; i < 6; i++) {
		weir_value x = { .f64 = fv[i] };
		k[i] = key_from_value(NULL, WEIR_F64, x);
	}
	kv_basic(WEIR_F64, k, 6, NULL);

	weir_value f = { .b = false }, tr = { .b = true };
	k[0] = key_from_value(NULL, WEIR_BOOL, f);
	k[1] = key_from_value(NULL, WEIR_BOOL, tr);
	cr_assert_eq(k[0].v, 0);
	cr_assert_eq(k[1].v, 1);
	kv_basic(WEIR_BOOL, k, 2, NULL);
}

Test(kvtab, basic_str_keys_are_retained_and_released)
{
	kdict *d = kdict_new();
	const char *names[] = { "", "a", "b", "alpha", "beta", "a much longer key string" };
	skey k[6];
	for (int i = 0; i < 6; i++)
		k[i] = ks(d, names[i]);
	kv_basic(WEIR_STR, k, 6, d);
	/* kv_free released them all; nobody else holds them */
	cr_assert_eq(kdict_count(d), 0);

	kvtab_conf c = { .key_type = WEIR_STR, .vsize = 8 };
	kvtab *t = kv_new(&c, d);
	bool created;
	skey a = ks(d, "x");
	kv_upsert(t, a, 0, &created);
	kv_upsert(t, a, 1, &created);
	key_done(d, WEIR_STR, a);
	cr_assert_eq(kdict_count(d), 1);
	cr_assert_eq(((kstr *)(uintptr_t)a.v)->refs, 2);
	kv_delete(t, a, 0);
	cr_assert_eq(kdict_count(d), 1);
	skey again = ks(d, "x");
	cr_assert_eq(again.v, a.v);
	kv_delete(t, again, 1);
	cr_assert_eq(kdict_count(d), 0);
	kv_free(t);
	kdict_free(d);
}

typedef struct model_ent {
	bool live;
	int64_t val;
} model_ent;

static int count_cb(void *arg, skey k, int64_t ns, void *value)
{
	(void)k;
	(void)ns;
	(void)value;
	(*(size_t *)arg)++;
	return 0;
}

Test(kvtab, randomized_against_model)
{
	enum { NKEYS = 30000, NNS = 3, OPS = 200000 };
	int64_t *kpool = malloc(NKEYS * sizeof(*kpool));
	model_ent *m = calloc((size_t)NKEYS * NNS, sizeof(*m));
	for (int i = 0; i < NKEYS; i++)
		kpool[i] = i < 4 ? (int64_t[]){ 0, 1, -1, INT64_MIN }[i]
				: (int64_t)rnd();
	kvtab_conf c = { .key_type = WEIR_I64, .vsize = 16 };
	kvtab *t = kv_new(&c, NULL);
	size_t live = 0;
	uint64_t writes = 0;
	for (int op = 0; op < OPS; op++) {
		/* first half mostly inserts (growth), second half churn */
		int kind = (int)(rnd() % 10);
		int ki_ = (int)(rnd() % NKEYS), ns = (int)(rnd() % NNS);
		model_ent *e = &m[ki_ * NNS + ns];
		skey k = ki(kpool[ki_]);
		int64_t nsv = (int64_t)ns * 60000 - 60000;
		if (op % 7 == 0)
			kv_prefetch(t, k, nsv);
		if (kind < (op < OPS / 2 ? 7 : 4)) {
			bool created;
			int64_t *v = kv_upsert(t, k, nsv, &created);
			cr_assert_not_null(v);
			cr_assert_eq(created, !e->live, "op %d", op);
			if (!created)
				cr_assert_eq(v[0], e->val, "op %d", op);
			else
				cr_assert_eq(v[0] | v[1], 0);
			v[0] = (int64_t)rnd();
			v[1] = ~v[0];
			kv_written(t, v);
			writes++;
			if (!e->live)
				live++;
			e->live = true;
			e->val = v[0];
		} else if (kind < 8) {
			cr_assert_eq(kv_delete(t, k, nsv), e->live, "op %d", op);
			if (e->live) {
				live--;
				writes++;
			}
			e->live = false;
		} else {
			int64_t *v = kv_get(t, k, nsv);
			cr_assert_eq(v != NULL, e->live, "op %d", op);
			if (v) {
				cr_assert_eq(v[0], e->val);
				cr_assert_eq(v[1], ~e->val);
			}
		}
		cr_assert_eq(kv_count(t), live);
		if (op % 50000 == 49999) {
			size_t n = 0;
			kv_foreach(t, count_cb, &n);
			cr_assert_eq(n, live);
			for (int i = 0; i < NKEYS * NNS; i++) {
				int64_t *v = kv_get(t, ki(kpool[i / NNS]),
						    (int64_t)(i % NNS) * 60000 - 60000);
				cr_assert_eq(v != NULL, m[i].live);
				if (v)
					cr_assert_eq(v[0], m[i].val);
			}
		}
	}
	cr_assert_eq(kv_writes(t), writes);
	cr_assert_gt(live, 20000, "the table grew (%zu live)", live);
	kv_free(t);
	free(m);
	free(kpool);
}

Test(kvtab, randomized_string_keys_no_leak)
{
	enum { NKEYS = 3000, OPS = 60000 };
	kdict *d = kdict_new();
	model_ent *m = calloc(NKEYS * 2, sizeof(*m));
	kvtab_conf c = { .key_type = WEIR_STR, .vsize = 8 };
	kvtab *t = kv_new(&c, d);
	for (int op = 0; op < OPS; op++) {
		int i = (int)(rnd() % NKEYS), ns = (int)(rnd() % 2);
		char buf[32];
		snprintf(buf, sizeof(buf), "user-%d", i);
		/* borrowed, and a delete may drop the last reference: hold
		 * one while using it (what an operator does per record) */
		skey k = ks(d, buf);
		key_retain(WEIR_STR, k);
		model_ent *e = &m[i * 2 + ns];
		if (rnd() % 3) {
			bool created;
			int64_t *v = kv_upsert(t, k, ns, &created);
			cr_assert_eq(created, !e->live);
			if (!created)
				cr_assert_eq(*v, e->val);
			*v = op;
			kv_written(t, v);
			e->live = true;
			e->val = op;
		} else {
			cr_assert_eq(kv_delete(t, k, ns), e->live);
			e->live = false;
		}
		key_release(d, WEIR_STR, k);
	}
	size_t live = 0;
	for (int i = 0; i < NKEYS * 2; i++)
		live += m[i].live;
	cr_assert_eq(kv_count(t), live);
	cr_assert_leq(kdict_count(d), live);
	kv_free(t);
	cr_assert_eq(kdict_count(d), 0, "%zu strings leaked", kdict_count(d));
	kdict_free(d);
	free(m);
}

static int stop_after_one(void *arg, skey k, int64_t ns, void *value)
{
	(void)k;
	(void)ns;
	(void)value;
	(*(int *)arg)++;
	return 1;
}

Test(kvtab, free_value_and_foreach_stop)
{
	kvtab_conf c = { .key_type = WEIR_I64, .vsize = 8, .free_value = count_free };
	kvtab *t = kv_new(&c, NULL);
	bool created;
	for (int i = 0; i < 10; i++)
		kv_upsert(t, ki(i), 0, &created);
	freed_values = 0;
	kv_delete(t, ki(3), 0);
	cr_assert_eq(freed_values, 1);
	int calls = 0;
	kv_foreach(t, stop_after_one, &calls);
	cr_assert_eq(calls, 1);
	kv_free(t);
	cr_assert_eq(freed_values, 10);
}

Test(kvtab, ttl_with_fake_clock)
{
	kdict *d = kdict_new();
	kvtab_conf c = { .key_type = WEIR_STR, .vsize = 8, .ttl_ms = 100,
			 .free_value = count_free };
	kvtab *t = kv_new(&c, d);
	kv_set_clock(t, fake_clock);
	fake_now = 1000;
	freed_values = 0;
	bool created;
	skey a = ks(d, "a");
	int64_t *v = kv_upsert(t, a, 0, &created);
	cr_assert(created);
	*v = 7;
	kv_written(t, v);
	key_done(d, WEIR_STR, a);
	fake_now = 1099;
	cr_assert_not_null(kv_get(t, a, 0));
	fake_now = 1100;
	cr_assert_null(kv_get(t, a, 0), "expired reads as absent");

	/* upsert of an expired entry starts it over */
	v = kv_upsert(t, a, 0, &created);
	cr_assert(created);
	cr_assert_eq(*v, 0);
	cr_assert_eq(freed_values, 1);
	*v = 8;
	kv_written(t, v);
	/* rewriting refreshes */
	fake_now = 1150;
	v = kv_upsert(t, a, 0, &created);
	cr_assert(!created);
	cr_assert_eq(*v, 8);
	kv_written(t, v);
	fake_now = 1249;
	cr_assert_not_null(kv_get(t, a, 0));
	cr_assert_eq(kv_count(t), 1);
	cr_assert_eq(kdict_count(d), 1);
	uint64_t w = kv_writes(t);
	fake_now = 1250; /* expired: deleting it finds nothing to record */
	cr_assert(!kv_delete(t, a, 0));
	cr_assert_eq(kv_writes(t), w);
	cr_assert_eq(kv_count(t), 0);
	cr_assert_eq(kdict_count(d), 0);

	/* incremental cleanup: many keys written, then expire, then only
	 * other keys are written: the expired ones go without being read */
	fake_now = 2000;
	for (int i = 0; i < 1000; i++) {
		char buf[16];
		snprintf(buf, sizeof(buf), "old%d", i);
		skey k = ks(d, buf);
		kv_written(t, kv_upsert(t, k, 0, &created));
		key_done(d, WEIR_STR, k);
	}
	cr_assert_eq(kv_count(t), 1000);
	size_t mem = kv_memsize(t);
	fake_now = 5000;
	for (int i = 0; i < 4000; i++) {
		char buf[16]; /* any work: a fixed set of other keys */
		snprintf(buf, sizeof(buf), "new%d", i % 10);
		skey k = ks(d, buf);
		kv_written(t, kv_upsert(t, k, 0, &created));
		key_done(d, WEIR_STR, k);
	}
	cr_assert_eq(kv_count(t), 10, "expired entries reclaimed: %zu left",
		     kv_count(t));
	cr_assert_eq(kdict_count(d), 10);
	cr_assert_eq(kv_memsize(t), mem);

	/* kv_written stamps the time of the write, not of the lookup */
	fake_now = 6000;
	skey g = ks(d, "g");
	kv_written(t, kv_upsert(t, g, 0, &created));
	fake_now = 6050;
	kv_written(t, kv_get(t, g, 0));
	fake_now = 6149;
	cr_assert_not_null(kv_get(t, g, 0));
	fake_now = 6150;
	cr_assert_null(kv_get(t, g, 0));
	key_done(d, WEIR_STR, g);
	kv_free(t);
	cr_assert_eq(kdict_count(d), 0);
	kdict_free(d);
}

Test(kvtab, writes_count_every_change)
{
	kvtab_conf c = { .key_type = WEIR_I64, .vsize = 8 };
	kvtab *t = kv_new(&c, NULL);
	bool created;
	cr_assert_eq(kv_writes(t), 0);
	void *v = kv_upsert(t, ki(1), 0, &created);
	cr_assert_eq(kv_writes(t), 0, "upsert alone records nothing");
	kv_written(t, v);
	kv_written(t, v);
	cr_assert_eq(kv_writes(t), 2);
	kv_delete(t, ki(2), 0);
	cr_assert_eq(kv_writes(t), 2, "deleting nothing records nothing");
	kv_delete(t, ki(1), 0);
	cr_assert_eq(kv_writes(t), 3);
	kv_free(t);
}

/* ---- blist and bmap ------------------------------------------------------- */

Test(blist, append_index_growth)
{
	blist *l = NULL;
	uint32_t len = 99;
	cr_assert_eq(blist_len(l), 0);
	cr_assert_null(blist_get(l, 0, &len));
	char buf[300];
	for (uint32_t i = 0; i < 20000; i++) {
		uint32_t n = i % 257;
		memset(buf, (int)(i & 0xff), n);
		cr_assert_eq(blist_add(&l, buf, n), 0);
	}
	cr_assert_eq(blist_len(l), 20000);
	for (uint32_t i = 0; i < 20000; i++) {
		const unsigned char *p = blist_get(l, i, &len);
		cr_assert_not_null(p);
		cr_assert_eq(len, i % 257);
		cr_assert_eq((uintptr_t)p % 8, 0);
		for (uint32_t j = 0; j < len; j++)
			cr_assert_eq(p[j], i & 0xff);
	}
	cr_assert_null(blist_get(l, 20000, &len));
	blist_free(l);
	blist_free(NULL);
}

Test(blist, push_clear_and_drop_front)
{
	blist *l = NULL;
	uint32_t len;
	char *e = blist_push(&l, 5);
	cr_assert_not_null(e);
	cr_assert_eq((uintptr_t)e % 8, 0);
	memcpy(e, "hello", 5);
	cr_assert_eq(blist_len(l), 1);
	cr_assert(!memcmp(blist_get(l, 0, &len), "hello", 5) && len == 5);
	blist_clear(l);
	cr_assert_eq(blist_len(l), 0);
	cr_assert_null(blist_get(l, 0, &len));
	for (uint32_t i = 0; i < 1000; i++) {
		uint32_t n = i % 37;
		e = blist_push(&l, n);
		cr_assert_not_null(e);
		memset(e, (int)(i & 0xff), n);
	}
	blist_drop_front(l, 0);
	cr_assert_eq(blist_len(l), 1000);
	uint32_t first = 0;
	for (uint32_t k = 1; k < 300; k += k) { /* 1, 2, 4, ... */
		blist_drop_front(l, k);
		first += k;
		cr_assert_eq(blist_len(l), 1000 - first);
		for (uint32_t i = 0; i < blist_len(l); i++) {
			const unsigned char *p = blist_get(l, i, &len);
			cr_assert_eq(len, (first + i) % 37);
			cr_assert_eq((uintptr_t)p % 8, 0);
			for (uint32_t b = 0; b < len; b++)
				cr_assert_eq(p[b], (first + i) & 0xff);
		}
	}
	cr_assert_eq(blist_add(&l, "z", 1), 0); /* still appends after drops */
	cr_assert(!memcmp(blist_get(l, blist_len(l) - 1, &len), "z", 1) && len == 1);
	blist_drop_front(l, 5000);
	cr_assert_eq(blist_len(l), 0);
	blist_drop_front(NULL, 3);
	blist_clear(NULL);
	blist_free(l);
}

static int sum_cb(void *arg, const void *k, size_t klen, const void *value)
{
	int64_t v;
	memcpy(&v, value, 8);
	*(int64_t *)arg += v + (int64_t)klen;
	(void)k;
	return 0;
}

static int stop_cb(void *arg, const void *k, size_t klen, const void *value)
{
	(void)k;
	(void)klen;
	(void)value;
	(*(int *)arg)++;
	return 5;
}

Test(bmap, put_get_remove_growth)
{
	bmap *m = NULL;
	cr_assert_eq(bmap_len(m), 0);
	cr_assert_null(bmap_get(m, "x", 1));
	cr_assert(!bmap_remove(m, "x", 1));
	cr_assert_eq(bmap_foreach(m, sum_cb, NULL), 0);
	enum { N = 5000 };
	for (int i = 0; i < N; i++) {
		char k[32];
		int n = snprintf(k, sizeof(k), "field-%d", i);
		int64_t *v = bmap_put(&m, 24, k, (uint32_t)n);
		cr_assert_not_null(v);
		cr_assert_eq(v[0] | v[1] | v[2], 0);
		v[0] = i;
	}
	/* the empty key */
	int64_t *e = bmap_put(&m, 24, "", 0);
	*e = -1;
	cr_assert_eq(bmap_len(m), N + 1);
	for (int i = 0; i < N; i++) {
		char k[32];
		int n = snprintf(k, sizeof(k), "field-%d", i);
		int64_t *v = bmap_get(m, k, (uint32_t)n);
		cr_assert_not_null(v);
		cr_assert_eq(*v, i);
		cr_assert_eq(bmap_put(&m, 24, k, (uint32_t)n), v);
	}
	cr_assert_eq(*(int64_t *)bmap_get(m, "", 0), -1);
	cr_assert_null(bmap_get(m, "field-", 6));
	for (int i = 0; i < N; i += 2) {
		char k[32];
		int n = snprintf(k, sizeof(k), "field-%d", i);
		cr_assert(bmap_remove(m, k, (uint32_t)n));
		cr_assert(!bmap_remove(m, k, (uint32_t)n));
	}
	cr_assert_eq(bmap_len(m), N / 2 + 1);
	int64_t sum = 0, want = -1;
	for (int i = 1; i < N; i += 2) {
		char k[32];
		int n = snprintf(k, sizeof(k), "field-%d", i);
		int64_t *v = bmap_get(m, k, (uint32_t)n);
		cr_assert_not_null(v);
		cr_assert_eq(*v, i);
		want += i + n;
	}
	cr_assert_eq(bmap_foreach(m, sum_cb, &sum), 0);
	cr_assert_eq(sum, want);
	int calls = 0;
	cr_assert_eq(bmap_foreach(m, stop_cb, &calls), 5);
	cr_assert_eq(calls, 1);
	bmap_free(m);
	bmap_free(NULL);
}

Test(bmap, churn_reuses_key_arena)
{
	bmap *m = NULL;
	/* put/remove cycles with ever new keys: live data stays small, and
	 * the removed keys' bytes must be reclaimed, not accumulate */
	for (int i = 0; i < 200000; i++) {
		char k[32];
		int n = snprintf(k, sizeof(k), "churn-key-%d", i);
		int64_t *v = bmap_put(&m, 8, k, (uint32_t)n);
		cr_assert_not_null(v);
		*v = i;
		if (i >= 10) {
			n = snprintf(k, sizeof(k), "churn-key-%d", i - 10);
			cr_assert(bmap_remove(m, k, (uint32_t)n));
		}
	}
	cr_assert_eq(bmap_len(m), 10);
	for (int i = 200000 - 10; i < 200000; i++) {
		char k[32];
		int n = snprintf(k, sizeof(k), "churn-key-%d", i);
		int64_t *v = bmap_get(m, k, (uint32_t)n);
		cr_assert_not_null(v);
		cr_assert_eq(*v, i);
	}
	bmap_free(m);
}

/* ---- timers --------------------------------------------------------------- */

Test(tsvc, order_ties_dedup_delete_upto)
{
	kdict *d = kdict_new();
	tsvc *s = tsvc_new(d, WEIR_STR, true);
	skey a = ks(d, "a"), b = ks(d, "b"), c = ks(d, "c");
	cr_assert_eq(tsvc_next(s), INT64_MAX);
	cr_assert_eq(tsvc_add(s, 30, a, 0), 0);
	cr_assert_eq(tsvc_add(s, 10, b, 0), 0);
	cr_assert_eq(tsvc_add(s, 20, c, 0), 0);
	cr_assert_eq(tsvc_add(s, 20, a, 0), 0);
	cr_assert_eq(tsvc_add(s, 20, b, 0), 0);
	cr_assert_eq(tsvc_add(s, 20, c, 0), 0); /* duplicate: no-op */
	cr_assert_eq(tsvc_add(s, 20, c, 1), 0); /* other namespace */
	key_done(d, WEIR_STR, a);
	key_done(d, WEIR_STR, b);
	key_done(d, WEIR_STR, c);
	cr_assert_eq(tsvc_count(s), 6);
	cr_assert_eq(tsvc_next(s), 10);
	cr_assert_eq(tsvc_delete(s, 99, a, 0), -ENOENT);
	cr_assert_eq(tsvc_delete(s, 10, b, 0), 0);
	cr_assert_eq(tsvc_delete(s, 10, b, 0), -ENOENT);
	cr_assert_eq(tsvc_count(s), 5);
	cr_assert_eq(tsvc_next(s), 20, "deleted top is gone");

	timer tm;
	cr_assert(!tsvc_pop(s, 19, &tm));
	skey want[] = { c, a, b, c };
	int64_t want_ns[] = { 0, 0, 0, 1 };
	for (int i = 0; i < 4; i++) {
		cr_assert(tsvc_pop(s, 25, &tm));
		cr_assert_eq(tm.ts, 20);
		cr_assert(key_eq(tm.key, want[i]), "tie %d in insertion order", i);
		cr_assert_eq(tm.ns, want_ns[i]);
		key_release(d, WEIR_STR, tm.key);
	}
	cr_assert(!tsvc_pop(s, 25, &tm));
	cr_assert_eq(tsvc_next(s), 30);
	/* delete and re-add: the new one orders by its new insertion */
	skey x = ks(d, "x");
	cr_assert_eq(tsvc_add(s, 30, x, 0), 0);
	cr_assert_eq(tsvc_delete(s, 30, a, 0), 0);
	/* that dropped the last reference to "a": intern it again */
	a = ks(d, "a");
	cr_assert_eq(tsvc_add(s, 30, a, 0), 0);
	key_done(d, WEIR_STR, x);
	cr_assert_eq(tsvc_count(s), 2);
	cr_assert(tsvc_pop(s, INT64_MAX, &tm));
	cr_assert(key_eq(tm.key, x));
	key_release(d, WEIR_STR, tm.key);
	cr_assert(tsvc_pop(s, INT64_MAX, &tm));
	cr_assert(key_eq(tm.key, a));
	key_release(d, WEIR_STR, tm.key);
	cr_assert(!tsvc_pop(s, INT64_MAX, &tm));
	cr_assert_eq(tsvc_count(s), 0);
	cr_assert_eq(kdict_count(d), 0);

	/* pending keys are released by tsvc_free */
	skey y = ks(d, "y");
	tsvc_add(s, 5, y, 0);
	tsvc_add(s, 6, y, 0);
	tsvc_delete(s, 6, y, 0);
	tsvc_add(s, 7, y, 0);
	key_done(d, WEIR_STR, y);
	cr_assert_eq(kdict_count(d), 1);
	tsvc_free(s);
	cr_assert_eq(kdict_count(d), 0);
	kdict_free(d);
}

Test(tsvc, without_dedup)
{
	tsvc *s = tsvc_new(NULL, WEIR_I64, false);
	cr_assert_eq(tsvc_add(s, 5, ki(1), 0), 0);
	cr_assert_eq(tsvc_add(s, 5, ki(2), 0), 0);
	cr_assert_eq(tsvc_add(s, 4, ki(3), 7), 0);
	cr_assert_eq(tsvc_delete(s, 5, ki(1), 0), -ENOTSUP);
	timer tm;
	cr_assert(tsvc_pop(s, 100, &tm));
	cr_assert_eq(tm.ts, 4);
	cr_assert_eq(tm.ns, 7);
	cr_assert(key_eq(tm.key, ki(3)));
	cr_assert(tsvc_pop(s, 100, &tm));
	cr_assert(key_eq(tm.key, ki(1)));
	cr_assert(tsvc_pop(s, 100, &tm));
	cr_assert(key_eq(tm.key, ki(2)));
	cr_assert_eq(tsvc_count(s), 0);
	tsvc_free(s);
}

Test(tsvc, million_timers_sorted_and_released)
{
	enum { N = 1000000, NK = 5000 };
	kdict *d = kdict_new();
	tsvc *s = tsvc_new(d, WEIR_STR, true);
	skey *keys = malloc(NK * sizeof(*keys));
	for (int i = 0; i < NK; i++) {
		char buf[16];
		snprintf(buf, sizeof(buf), "k%d", i);
		keys[i] = ks(d, buf);
		key_retain(WEIR_STR, keys[i]);
	}
	size_t added = 0;
	for (int i = 0; i < N; i++) {
		int64_t ts = (int64_t)(rnd() % 100000);
		/* (ts, key) pairs repeat now and then: dedup */
		size_t before = tsvc_count(s);
		cr_assert_eq(tsvc_add(s, ts, keys[i % NK], ts & 1), 0);
		added += tsvc_count(s) - before;
	}
	/* delete every timer of key 0 at an even ts */
	size_t deleted = 0;
	for (int64_t ts = 0; ts < 100000; ts += 2)
		deleted += tsvc_delete(s, ts, keys[0], 0) == 0;
	cr_assert_eq(tsvc_count(s), added - deleted);
	timer tm, prev = { .ts = INT64_MIN };
	size_t popped = 0;
	while (tsvc_pop(s, 49999, &tm)) {
		cr_assert_leq(prev.ts, tm.ts);
		cr_assert(tm.ts <= 49999);
		cr_assert(!(key_eq(tm.key, keys[0]) && tm.ts % 2 == 0));
		key_release(d, WEIR_STR, tm.key);
		prev = tm;
		popped++;
	}
	cr_assert_geq(tsvc_next(s), 50000);
	while (tsvc_pop(s, INT64_MAX, &tm)) {
		cr_assert_leq(prev.ts, tm.ts);
		key_release(d, WEIR_STR, tm.key);
		prev = tm;
		popped++;
	}
	cr_assert_eq(popped, added - deleted);
	cr_assert_eq(tsvc_count(s), 0);
	for (int i = 0; i < NK; i++)
		key_release(d, WEIR_STR, keys[i]);
	cr_assert_eq(kdict_count(d), 0);
	tsvc_free(s);
	kdict_free(d);
	free(keys);
}

/* ---- rows ----------------------------------------------------------------- */

Test(rows, encode_decode_stage_every_type)
{
	weir_type types[] = { WEIR_I64, WEIR_STR, WEIR_F64, WEIR_BOOL, WEIR_TS,
			      WEIR_STR };
	tbatch *t = tb_new(types, 6, 4);
	for (uint32_t r = 0; r < 4; r++) {
		t->b.ts[r] = 1700000000000 + r;
		weir_col_i64(&t->b, 0)[r] = r == 3 ? INT64_MIN : (int64_t)r - 2;
		const char *s1 = r % 2 ? "" : "hello, world";
		tb_str(t, 1, r, s1, (uint32_t)strlen(s1));
		weir_col_f64(&t->b, 2)[r] = r == 1 ? -0.0 : r * 1.25;
		weir_col_bool(&t->b, 3)[r] = r & 1;
		weir_col_i64(&t->b, 4)[r] = -(int64_t)r * 1000;
		tb_str(t, 5, r, "xyz", r);
		t->b.rows++;
	}
	char buf[4096];
	size_t at = 0;
	for (uint32_t r = 0; r < 4; r++) {
		size_t n = row_encoded_size(&t->b, r);
		cr_assert_eq(n, 8 + 8 + 4 + (r % 2 ? 0 : 12) + 8 + 1 + 8 + 4 + r);
		cr_assert_eq(row_encode(&t->b, r, buf + at), n);
		at += n; /* rows back to back: unaligned */
	}
	weir_value cells[6];
	int64_t ts;
	size_t pos = 0;
	for (uint32_t r = 0; r < 4; r++) {
		size_t n = row_decode(&t->s, buf + pos, cells, &ts);
		cr_assert_eq(n, row_encoded_size(&t->b, r));
		pos += n;
		cr_assert_eq(ts, t->b.ts[r]);
		for (int c = 0; c < 6; c++) {
			weir_value w = cell_value(&t->b, c, r);
			switch (types[c]) {
			case WEIR_STR:
				cr_assert_eq(cells[c].str.len, w.str.len);
				cr_assert_eq(memcmp(cells[c].str.ptr, w.str.ptr, w.str.len), 0);
				break;
			case WEIR_BOOL:
				cr_assert_eq(cells[c].b, w.b);
				break;
			default:
				cr_assert_eq(cells[c].i64, w.i64, "col %d row %u", c, r);
			}
		}
		cr_assert_eq(signbit(cells[2].f64) != 0, r == 1);

		struct weir_out o;
		memset(&o, 0, sizeof(o));
		o.schema = &t->s;
		row_stage(&o, &t->s, cells, ts);
		cr_assert_eq(o.ts, ts);
		cr_assert_eq(o.v[0], cells[0].i64);
		cr_assert_eq(o.sp[1], cells[1].str.ptr);
		cr_assert_eq(o.sl[1], cells[1].str.len);
		cr_assert_eq(memcmp(&o.v[2], &cells[2].f64, 8), 0);
		cr_assert_eq(o.v[3], cells[3].b);
		cr_assert_eq(o.v[4], cells[4].i64);
		cr_assert_eq(o.sl[5], r);
	}
	cr_assert_eq(pos, at);
	tb_free(t);
}

/* A restore replays a materialization, which lists a table in slot order,
 * into a fresh table that grows as it goes.  When the home slot was the
 * hash's top bits, slot order was hash order and every insert probed one
 * ever-growing cluster: hours for a million keys (this test's timeout
 * catches that); it must take well under a second. */
static int copy_entry(void *arg, skey k, int64_t ns, void *value)
{
	kvtab *dst = arg;
	bool created;
	int64_t *v = kv_upsert(dst, k, ns, &created);
	cr_assert(v && created);
	memcpy(v, value, 16);
	return 0;
}

Test(state, slot_order_reinsertion_stays_linear)
{
	kdict *d = kdict_new();
	kvtab_conf c = { .key_type = WEIR_I64, .vsize = 16 };
	kvtab *a = kv_new(&c, d), *b = kv_new(&c, d);
	const int n = 1000000;
	for (int i = 0; i < n; i++) {
		weir_value v = { .i64 = i };
		skey k = key_from_value(d, WEIR_I64, v);
		bool created;
		int64_t *acc = kv_upsert(a, k, 0, &created);
		acc[0] = i;
		acc[1] = -i;
	}
	kv_foreach(a, copy_entry, b);
	cr_assert_eq(kv_count(b), (size_t)n);
	for (int i = 0; i < n; i += 997) {
		weir_value v = { .i64 = i };
		int64_t *acc = kv_get(b, key_from_value(d, WEIR_I64, v), 0);
		cr_assert(acc && acc[0] == i && acc[1] == -i);
	}
	/* Sizing once ahead gives the same table. */
	kvtab *r = kv_new(&c, d);
	cr_assert_eq(kv_reserve(r, (size_t)n), 0);
	size_t cap = kv_memsize(r);
	kv_foreach(a, copy_entry, r);
	cr_assert_eq(kv_memsize(r), cap, "a reserved table grew");
	kv_free(r);
	kv_free(b);
	kv_free(a);
	kdict_free(d);
}
