/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Value encodings of the operators' keyed state (operators/ops.h): for the
 * table configurations the built-in operators register -- asked from
 * operator nodes built through the API, so they are the ones open() uses --
 * values are filled, encoded, decoded into a fresh zeroed slot and compared,
 * and malformed encodings (every truncation, a byte too many, random byte
 * flips) must give -EINVAL or a value that encodes again, never a crash or
 * a leak (the sanitizer build checks the latter).  A randomized history of
 * writes, appends, removals and deletes must restore exactly into fresh
 * tables, as a checkpoint restore does.  And the watermark generator's
 * clock across a restore at the same and at another parallelism.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "state.h"

/* ---- helpers -------------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void no_fill(void *arg, uint64_t seed, uint64_t first, uint32_t n,
		    weir_batch *out)
{
	(void)arg;
	(void)seed;
	(void)first;
	(void)n;
	(void)out;
}

/* A keyed stream of `schema` keyed by `key` (built only, never run). */
static weir_stream *keyed(weir_env *env, const char *schema, const char *key)
{
	weir_generator_conf g = { .count = 1, .fill = no_fill,
				  .schema = weir_schema_parse(env, schema) };
	cr_assert_not_null(g.schema);
	weir_stream *s = weir_source_generator(env, "gen", &g);
	return weir_key_by(s, key);
}

static skey kstrkey(kdict *d, const char *p)
{
	weir_value x;
	x.str.ptr = p;
	x.str.len = (uint32_t)strlen(p);
	return key_from_value(d, WEIR_STR, x);
}

static void *slot_new(const kvtab *t)
{
	void *v = calloc(1, kv_conf(t)->vsize + 8);
	cr_assert_not_null(v);
	return v;
}

static void slot_free(const kvtab *t, void *v)
{
	if (kv_conf(t)->free_value)
		kv_conf(t)->free_value(v);
	free(v);
}

static void *encode(const kvtab *t, const void *v, size_t *n)
{
	*n = kv_value_encoded_size(t, v);
	void *e = malloc(*n + 1);
	cr_assert_not_null(e);
	kv_value_encode(t, v, e);
	return e;
}

/* Decode v's encoding into a fresh slot, which must encode to the same
 * bytes; returns the slot (slot_free it). */
static void *roundtrip(const kvtab *t, const void *v)
{
	size_t n, m;
	void *e = encode(t, v, &n), *d = slot_new(t);
	cr_assert_eq(kv_value_decode(t, d, e, n), 0);
	void *e2 = encode(t, d, &m);
	cr_assert_eq(m, n);
	cr_assert(memcmp(e, e2, n) == 0, "re-encoding differs");
	free(e);
	free(e2);
	return d;
}

/* Truncations and an extra byte are -EINVAL; random flips decode or fail
 * cleanly.  A failed decode may leave a partial value: freed like any. */
static void malformed(const kvtab *t, const void *e, size_t n)
{
	char *b = malloc(n + 1);
	cr_assert_not_null(b);
	memcpy(b, e, n);
	for (size_t k = 0; k < n; k++) {
		void *d = slot_new(t);
		int rc = kv_value_decode(t, d, b, k);
		cr_assert_eq(rc, -EINVAL, "prefix of %zu of %zu bytes: %d", k, n, rc);
		slot_free(t, d);
	}
	b[n] = 0;
	void *d = slot_new(t);
	cr_assert_eq(kv_value_decode(t, d, b, n + 1), -EINVAL);
	slot_free(t, d);
	for (int i = 0; i < 300 && n; i++) {
		memcpy(b, e, n);
		b[rnd() % n] ^= (char)(1u << (rnd() % 8));
		if (i & 1)
			b[rnd() % n] = (char)rnd();
		d = slot_new(t);
		int rc = kv_value_decode(t, d, b, n);
		cr_assert(rc == 0 || rc == -EINVAL, "rc %d", rc);
		if (rc == 0) {
			size_t m;
			free(encode(t, d, &m));
		}
		slot_free(t, d);
	}
	free(b);
}

static void roundtrip_and_malformed(const kvtab *t, const void *v)
{
	size_t n;
	slot_free(t, roundtrip(t, v));
	void *e = encode(t, v, &n);
	malformed(t, e, n);
	free(e);
}

/* Decode hand-made bytes: their re-encoding must be the same bytes. */
static void decode_same(const kvtab *t, const void *e, size_t n)
{
	size_t m;
	void *d = slot_new(t);
	cr_assert_eq(kv_value_decode(t, d, e, n), 0);
	void *e2 = encode(t, d, &m);
	cr_assert_eq(m, n);
	cr_assert(memcmp(e, e2, n) == 0);
	free(e2);
	slot_free(t, d);
}

static void decode_fails(const kvtab *t, const void *e, size_t n)
{
	void *d = slot_new(t);
	cr_assert_eq(kv_value_decode(t, d, e, n), -EINVAL);
	slot_free(t, d);
}

static void fill_list(blist **l, int n)
{
	for (int i = 0; i < n; i++) {
		char b[64];
		uint32_t len = (uint32_t)(rnd() % sizeof(b));
		for (uint32_t k = 0; k < len; k++)
			b[k] = (char)rnd();
		cr_assert_eq(blist_add(l, b, len), 0);
	}
}

static bool lists_equal(const blist *a, const blist *b)
{
	uint32_t la, lb;
	if (blist_len(a) != blist_len(b))
		return false;
	for (uint32_t i = 0; i < blist_len(a); i++) {
		const void *pa = blist_get(a, i, &la), *pb = blist_get(b, i, &lb);
		if (la != lb || memcmp(pa, pb, la))
			return false;
	}
	return true;
}

/* ---- owned buffers ------------------------------------------------------------------ */

Test(codec, obuf_set_and_table_conf_limits)
{
	obuf *b = NULL;
	cr_assert_eq(obuf_set(&b, "abc", 3), 0);
	cr_assert_eq(b->len, 3);
	uint32_t cap = b->cap;
	char big[1000];
	memset(big, 'x', sizeof(big));
	cr_assert_eq(obuf_set(&b, big, sizeof(big)), 0);
	cr_assert_geq(b->cap, sizeof(big));
	cr_assert_gt(b->cap, cap);
	cap = b->cap;
	cr_assert_eq(obuf_set(&b, "z", 1), 0); /* never shrinks */
	cr_assert_eq(b->cap, cap);
	cr_assert_eq(b->len, 1);
	cr_assert_eq(obuf_set(&b, big, (size_t)UINT32_MAX), -E2BIG);
	cr_assert_eq(b->len, 1);
	free(b);

	for (uint32_t vs = 0; vs < 300; vs++) {
		kvtab_conf c = { .key_type = WEIR_I64, .vsize = vs };
		bool ok = vs >= 8 && vs % 8 == 0 && vs - 8 <= OBUF_MAX_PLAIN;
		cr_assert_eq(obuf_table_conf(&c), ok ? 0 : -EINVAL, "vsize %u", vs);
		if (ok)
			cr_assert(c.encode && c.decode && c.encoded_size && c.free_value);
	}
}

Test(codec, every_obuf_plain_size_round_trips)
{
	kdict *d = kdict_new();
	for (uint32_t plain = 0; plain <= OBUF_MAX_PLAIN; plain += 8) {
		kvtab_conf c = { .key_type = WEIR_I64, .vsize = 8 + plain };
		cr_assert_eq(obuf_table_conf(&c), 0);
		kvtab *t = kv_new(&c, d);
		void *v = slot_new(t);
		for (uint32_t i = 0; i < plain; i++)
			((char *)v)[8 + i] = (char)rnd();
		/* no buffer, an empty one, a full one */
		slot_free(t, roundtrip(t, v));
		cr_assert_eq(obuf_set((obuf **)v, "", 0), 0);
		slot_free(t, roundtrip(t, v));
		cr_assert_eq(obuf_set((obuf **)v, "some bytes", 10), 0);
		void *r = roundtrip(t, v);
		const obuf *a = *(obuf **)v, *b = *(obuf **)r;
		cr_assert_eq(b->len, 10);
		cr_assert(memcmp(a->data, b->data, 10) == 0);
		cr_assert(memcmp((char *)v + 8, (char *)r + 8, plain) == 0);
		slot_free(t, r);
		if (plain == 16 || plain == 0) {
			size_t n;
			void *e = encode(t, v, &n);
			malformed(t, e, n);
			free(e);
		}
		slot_free(t, v);
		kv_free(t);
	}
	kdict_free(d);
}

/* ---- keyed aggregates --------------------------------------------------------------- */

static void reduce_nop(void *arg, weir_value *acc, const weir_value *in,
		       const weir_schema *s)
{
	(void)arg;
	(void)acc;
	(void)in;
	(void)s;
}

Test(codec, aggregate_accumulators)
{
	weir_env *env = weir_env_new();
	weir_stream *k = keyed(env, "k:str,name:str,n:i64,x:f64,ok:bool", "k");
	weir_stream *red = weir_reduce(k, "red", reduce_nop, NULL);
	weir_stream *k2 = keyed(env, "k:i64,v:i64", "k");
	weir_stream *sum = weir_sum(k2, "v");
	weir_stream *cnt = weir_count(keyed(env, "k:f64,v:i64", "k"));
	weir_stream *smin = weir_min(keyed(env, "k:i64,s:str,v:f64", "k"), "v");
	cr_assert_null(weir_env_error(env), "%s", weir_env_error(env));
	kvtab_conf kc;

	/* plain: one cell, no codec */
	cr_assert_eq(aggregate_table_conf(stream_node(sum), "accumulators", &kc), 0);
	cr_assert_eq(kc.vsize, 8);
	cr_assert_eq(kc.key_type, WEIR_I64);
	cr_assert_null(kc.encode);
	cr_assert_null(kc.free_value);
	cr_assert_eq(aggregate_table_conf(stream_node(cnt), "accumulators", &kc), 0);
	cr_assert_eq(kc.vsize, 8);
	cr_assert_eq(kc.key_type, WEIR_F64);
	cr_assert_eq(aggregate_table_conf(stream_node(sum), "windows", &kc), -ENOENT);
	cr_assert_eq(aggregate_table_conf(stream_node(k2), "accumulators", &kc), -ENOENT);

	/* min over a row with a string: [obuf][s][v] */
	cr_assert_eq(aggregate_table_conf(stream_node(smin), "accumulators", &kc), 0);
	cr_assert_eq(kc.vsize, 8 + 16);
	cr_assert_not_null(kc.encode);

	/* reduce: [obuf][name][n][x][ok], string key */
	cr_assert_eq(aggregate_table_conf(stream_node(red), "accumulators", &kc), 0);
	cr_assert_eq(kc.vsize, 8 + 4 * 8);
	cr_assert_eq(kc.key_type, WEIR_STR);
	kdict *d = kdict_new();
	kvtab *t = kv_new(&kc, d);
	bool created;
	skey key = kstrkey(d, "alice");
	void *v = kv_upsert(t, key, 0, &created);
	cr_assert(created);
	cr_assert_eq(obuf_set((obuf **)v, "bobcarol", 8), 0);
	int64_t *cells = (int64_t *)((char *)v + 8);
	double x = 2.5;
	cells[0] = (int64_t)((5ull << 32) | 3); /* "carol" */
	cells[1] = -42;
	memcpy(&cells[2], &x, 8);
	cells[3] = 1;
	kv_written(t, v);
	void *r = roundtrip(t, v);
	cr_assert(memcmp((char *)r + 8, (char *)v + 8, 32) == 0);
	const obuf *sb = *(obuf **)r;
	cr_assert_eq(sb->len, 8);
	cr_assert(memcmp(sb->data, "bobcarol", 8) == 0);
	slot_free(t, r);
	roundtrip_and_malformed(t, v);
	kv_free(t);
	cr_assert_eq(kdict_count(d), 0);
	kdict_free(d);
	weir_env_free(env);
}

/* ---- windows ---------------------------------------------------------------------- */

static int proc_nop(void *arg, weir_value key, int64_t start, int64_t end,
		    weir_rows *rows, weir_out *out)
{
	(void)arg;
	(void)key;
	(void)start;
	(void)end;
	(void)rows;
	(void)out;
	return 0;
}

static const lnode *window_node(weir_env *env, const char *spec, int fn,
				int64_t lateness, int64_t early)
{
	weir_window_spec w;
	weir_stream *k = keyed(env, "k:str,v:i64,s:str", "k"), *o = NULL;
	cr_assert_eq(weir_window_parse(spec, &w), 0);
	w.allowed_lateness = lateness;
	w.early_fire_ms = early;
	switch (fn) {
	case 0:
		o = weir_window_stats(k, "agg", &w, "v");
		break;
	case 1:
		o = weir_window_reduce(k, "red", &w, reduce_nop, NULL);
		break;
	case 2:
		o = weir_window_process(k, "proc", &w, weir_schema_parse(env, "x:i64"),
					proc_nop, NULL);
		break;
	default:
		o = weir_window_join(k, keyed(env, "k:str,w:f64", "k"), "join", &w, NULL,
				     NULL, NULL);
	}
	cr_assert_not_null(o, "%s", weir_env_error(env));
	return stream_node(o);
}

Test(codec, window_values)
{
	weir_env *env = weir_env_new();
	kdict *d = kdict_new();
	kvtab_conf kc;
	bool created;

	/* built-in aggregate: plain n, sum, min, max (and the early-firing
	 * flag word); no session index or counts */
	const lnode *n = window_node(env, "tumbling:10", 0, 0, 0);
	cr_assert_eq(window_table_conf(n, "windows", &kc), 0);
	cr_assert_eq(kc.vsize, 32);
	cr_assert_null(kc.encode);
	cr_assert_eq(kc.nlists, 0);
	cr_assert_eq(window_table_conf(n, "session-index", &kc), -ENOENT);
	cr_assert_eq(window_table_conf(n, "count-per-key", &kc), -ENOENT);
	n = window_node(env, "sliding:10:5", 0, 5, 100);
	cr_assert_eq(window_table_conf(n, "windows", &kc), 0);
	cr_assert_eq(kc.vsize, 40);
	kvtab *t = kv_new(&kc, d);
	void *v = kv_upsert(t, kstrkey(d, "k"), 7, &created);
	for (int i = 0; i < 40; i++)
		((char *)v)[i] = (char)rnd();
	kv_written(t, v);
	roundtrip_and_malformed(t, v);
	kv_free(t);

	/* reduce over sessions: [obuf row][n][end due armed] */
	n = window_node(env, "session:10", 1, 0, 0);
	cr_assert_eq(window_table_conf(n, "windows", &kc), 0);
	cr_assert_eq(kc.vsize, 40);
	cr_assert_not_null(kc.encode);
	t = kv_new(&kc, d);
	v = kv_upsert(t, kstrkey(d, "s"), -5, &created);
	cr_assert_eq(obuf_set((obuf **)v, "an encoded row", 14), 0);
	for (int i = 8; i < 40; i++)
		((char *)v)[i] = (char)rnd();
	kv_written(t, v);
	roundtrip_and_malformed(t, v);
	kv_free(t);

	/* the session index: hand-made encodings (n, then sorted sessions) */
	cr_assert_eq(window_table_conf(n, "session-index", &kc), 0);
	t = kv_new(&kc, d);
	struct {
		uint32_t n;
		int64_t w[5][2];
	} __attribute__((packed)) e = { 1, { { 0, 10 } } };
	decode_same(t, &e, 4 + 16);
	e.n = 5; /* more than fit inline */
	for (int i = 0; i < 5; i++) {
		e.w[i][0] = -100 + 30 * i;
		e.w[i][1] = -100 + 30 * i + 20;
	}
	decode_same(t, &e, sizeof(e));
	malformed(t, &e, sizeof(e));
	e.w[3][0] = e.w[2][1] - 1; /* overlaps its predecessor */
	decode_fails(t, &e, sizeof(e));
	e.w[3][0] = e.w[3][1]; /* empty */
	decode_fails(t, &e, sizeof(e));
	e.n = 0;
	decode_fails(t, &e, 4);
	kv_free(t);

	/* a process function over sliding count windows: one list, nothing
	 * else (its count and times are in the rows); per-key counts */
	n = window_node(env, "count:3:1", 2, 0, 0);
	cr_assert_eq(window_table_conf(n, "windows", &kc), 0);
	cr_assert_eq(kc.nlists, 1);
	cr_assert_eq(kc.vsize, 8);
	cr_assert_eq(window_table_conf(n, "count-per-key", &kc), 0);
	cr_assert_eq(kc.vsize, 8);
	cr_assert_null(kc.encode);
	n = window_node(env, "session:10", 2, 3, 50);
	cr_assert_eq(window_table_conf(n, "windows", &kc), 0);
	cr_assert_eq(kc.nlists, 1);
	cr_assert_eq(kc.vsize, 8 + 24 + 8);
	t = kv_new(&kc, d);
	v = kv_upsert(t, kstrkey(d, "p"), 1, &created);
	fill_list((blist **)v, 20);
	for (int i = 8; i < 40; i++)
		((char *)v)[i] = (char)rnd();
	kv_written(t, v);
	void *r = roundtrip(t, v);
	cr_assert(lists_equal(*(blist **)v, *(blist **)r));
	cr_assert(memcmp((char *)v + 8, (char *)r + 8, 32) == 0);
	slot_free(t, r);
	roundtrip_and_malformed(t, v);
	kv_free(t);

	/* a join: two lists (a-rows, b-rows), one of them empty */
	n = window_node(env, "tumbling:10", 3, 0, 0);
	cr_assert_eq(window_table_conf(n, "windows", &kc), 0);
	cr_assert_eq(kc.nlists, 2);
	cr_assert_eq(kc.vsize, 16);
	t = kv_new(&kc, d);
	v = kv_upsert(t, kstrkey(d, "j"), 0, &created);
	fill_list((blist **)v, 5);
	slot_free(t, roundtrip(t, v));
	fill_list((blist **)v + 1, 7);
	r = roundtrip(t, v);
	cr_assert(lists_equal(((blist **)v)[0], ((blist **)r)[0]));
	cr_assert(lists_equal(((blist **)v)[1], ((blist **)r)[1]));
	slot_free(t, r);
	roundtrip_and_malformed(t, v);
	kv_free(t);

	cr_assert_eq(kdict_count(d), 0);
	kdict_free(d);
	weir_env_free(env);
}

/* ---- process functions and the interval join ------------------------------------------ */

static int process_nop(void *arg, weir_ctx *ctx, int input, const weir_batch *in,
		       uint32_t row, weir_out *out)
{
	(void)arg;
	(void)ctx;
	(void)input;
	(void)in;
	(void)row;
	(void)out;
	return 0;
}

static void fold_nop(void *arg, void *acc, const void *in)
{
	(void)arg;
	(void)acc;
	(void)in;
}

/* Mirrors process.c's MAP value (documented there): the map, its value
 * size. */
typedef struct test_pmap {
	bmap *m;
	uint32_t vsize, pad;
} test_pmap;

typedef struct map_cmp {
	const bmap *other;
	uint32_t vsize;
	bool differ;
} map_cmp;

static int cmp_entry(void *arg, const void *k, size_t klen, const void *v)
{
	map_cmp *c = arg;
	const void *o = bmap_get(c->other, k, (uint32_t)klen);
	if (!o || memcmp(o, v, c->vsize))
		c->differ = true;
	return 0;
}

static bool maps_equal(const test_pmap *a, const test_pmap *b)
{
	map_cmp c = { b->m, a->vsize, false };
	if (bmap_len(a->m) != bmap_len(b->m) || (bmap_len(a->m) && a->vsize != b->vsize))
		return false;
	bmap_foreach(a->m, cmp_entry, &c);
	return !c.differ;
}

static const weir_state_desc states[] = {
	{ .name = "value", .kind = WEIR_STATE_VALUE, .size = 12 },
	{ .name = "list", .kind = WEIR_STATE_LIST, .ttl_ms = 1000 },
	{ .name = "map", .kind = WEIR_STATE_MAP, .size = 24 },
	{ .name = "sum", .kind = WEIR_STATE_REDUCING, .size = 8, .fold = fold_nop },
};

Test(codec, process_states)
{
	weir_env *env = weir_env_new();
	weir_process_fns f = { .process = process_nop, .states = states, .nstates = 4 };
	weir_stream *p = weir_process(keyed(env, "k:str,v:i64", "k"), "proc",
				      weir_schema_parse(env, "x:i64"), &f);
	cr_assert_not_null(p, "%s", weir_env_error(env));
	const lnode *n = stream_node(p);
	kdict *d = kdict_new();
	kvtab_conf kc;
	bool created;

	cr_assert_eq(process_table_conf(n, "value", &kc), 0);
	cr_assert_eq(kc.vsize, 12);
	cr_assert_null(kc.encode);
	cr_assert_eq(kc.key_type, WEIR_STR);
	kvtab *t = kv_new(&kc, d);
	void *v = kv_upsert(t, kstrkey(d, "a"), 0, &created);
	memcpy(v, "twelve bytes", 12);
	roundtrip_and_malformed(t, v);
	kv_free(t);
	cr_assert_eq(process_table_conf(n, "sum", &kc), 0);
	cr_assert_eq(kc.vsize, 8);

	cr_assert_eq(process_table_conf(n, "list", &kc), 0);
	cr_assert_eq(kc.nlists, 1);
	cr_assert_eq(kc.ttl_ms, 1000);
	t = kv_new(&kc, d);
	v = kv_upsert(t, kstrkey(d, "a"), 0, &created);
	fill_list((blist **)v, 30);
	void *r = roundtrip(t, v);
	cr_assert(lists_equal(*(blist **)v, *(blist **)r));
	slot_free(t, r);
	roundtrip_and_malformed(t, v);
	kv_free(t);

	cr_assert_eq(process_table_conf(n, "map", &kc), 0);
	cr_assert_eq(kc.vsize, sizeof(test_pmap));
	cr_assert_not(kc.broadcast);
	t = kv_new(&kc, d);
	test_pmap *pm = kv_upsert(t, kstrkey(d, "a"), 0, &created);
	slot_free(t, roundtrip(t, pm)); /* no map yet */
	pm->vsize = 24;
	for (int i = 0; i < 40; i++) {
		char key[16], val[24];
		int klen = i ? snprintf(key, sizeof(key), "key-%d", i) : 0; /* "" too */
		memset(val, i, sizeof(val));
		void *slot = bmap_put(&pm->m, 24, key, (uint32_t)klen);
		cr_assert_not_null(slot);
		memcpy(slot, val, 24);
	}
	bmap_remove(pm->m, "key-7", 5);
	/* the same entries, maybe in another order (a map's slot order
	 * depends on its history) */
	size_t en, en2;
	void *enc = encode(t, pm, &en);
	r = slot_new(t);
	cr_assert_eq(kv_value_decode(t, r, enc, en), 0);
	free(encode(t, r, &en2));
	cr_assert_eq(en2, en);
	cr_assert(maps_equal(pm, r));
	cr_assert(maps_equal(r, pm));
	slot_free(t, r);
	malformed(t, enc, en);
	free(enc);
	/* hand-made: a key twice; no value size; a value size too large */
	struct {
		uint32_t vsize, count;
		uint32_t k1;
		char c1;
		char v1[8];
		uint32_t k2;
		char c2;
		char v2[8];
	} __attribute__((packed)) me = { 8, 2, 1, 'a', "1234567", 1, 'b', "7654321" };
	test_pmap *dm = slot_new(t);
	cr_assert_eq(kv_value_decode(t, dm, &me, sizeof(me)), 0);
	cr_assert_eq(bmap_len(dm->m), 2);
	cr_assert(memcmp(bmap_get(dm->m, "b", 1), "7654321", 8) == 0);
	slot_free(t, dm);
	me.c2 = 'a';
	decode_fails(t, &me, sizeof(me));
	me.c2 = 'b';
	me.vsize = 0;
	decode_fails(t, &me, sizeof(me));
	me.vsize = (1u << 24) + 1;
	decode_fails(t, &me, sizeof(me));
	kv_free(t);

	cr_assert_eq(process_table_conf(n, "nope", &kc), -ENOENT);
	cr_assert_eq(process_table_conf(n, "buffer-a", &kc), -ENOENT);

	/* broadcast state is marked so: a restore gives every subtask all */
	weir_state_desc bs = { .name = "rules", .kind = WEIR_STATE_BROADCAST_MAP, .size = 8 };
	weir_process_fns fb = { .process = process_nop, .states = &bs, .nstates = 1 };
	weir_stream *bc = weir_broadcast(weir_source_generator(env, "rules",
		&(weir_generator_conf){ .count = 1 }));
	weir_stream *cp = weir_connect_process(keyed(env, "k:i64,v:i64", "k"), bc, "conn",
					       weir_schema_parse(env, "x:i64"), &fb);
	cr_assert_not_null(cp, "%s", weir_env_error(env));
	cr_assert_eq(process_table_conf(stream_node(cp), "rules", &kc), 0);
	cr_assert(kc.broadcast);
	cr_assert_eq(kc.key_type, WEIR_I64);
	cr_assert_not_null(kc.encode);

	cr_assert_eq(kdict_count(d), 0);
	kdict_free(d);
	weir_env_free(env);
}

/* A build error about the state names of a process function. */
static void name_error(const weir_state_desc *s, int ns, const char *want)
{
	weir_env *env = weir_env_new();
	weir_process_fns f = { .process = process_nop, .states = s, .nstates = ns };
	cr_assert_null(weir_process(keyed(env, "k:i64,v:i64", "k"), "proc",
				    weir_schema_parse(env, "x:i64"), &f));
	cr_assert_not_null(weir_env_error(env));
	cr_assert_not_null(strstr(weir_env_error(env), want), "%s", weir_env_error(env));
	weir_env_free(env);
}

Test(codec, process_state_names_are_checked)
{
	weir_state_desc s[2] = {
		{ .name = "a", .kind = WEIR_STATE_VALUE, .size = 8 },
		{ .name = "a", .kind = WEIR_STATE_LIST },
	};
	name_error(s, 2, "two states are named 'a'");
	s[1].name = NULL;
	name_error(s, 2, "state 1 has no name");
	s[1].name = "";
	name_error(s, 2, "state 1 has no name");
	s[1].name = "event-timers";
	name_error(s, 2, "taken by the operator's timers");
	s[1].name = "a-name-that-is-much-longer-than-forty-seven-bytes-long";
	name_error(s, 2, "longer than 47 bytes");
}

static int join_nop(void *arg, const weir_value *a, int64_t ta, const weir_value *b,
		    int64_t tb, weir_out *out)
{
	(void)arg;
	(void)a;
	(void)ta;
	(void)b;
	(void)tb;
	(void)out;
	return 0;
}

/* One buffered record: [u32 size][u32 len][row: ts, i64, str][zero pad]. */
static size_t put_record(char *p, int64_t ts, int64_t x, const char *s)
{
	uint32_t sl = (uint32_t)strlen(s), len = 8 + 8 + 4 + sl;
	uint32_t size = (8 + len + 7) & ~7u;
	memset(p, 0, size);
	memcpy(p, &size, 4);
	memcpy(p + 4, &len, 4);
	memcpy(p + 8, &ts, 8);
	memcpy(p + 16, &x, 8);
	memcpy(p + 24, &sl, 4);
	memcpy(p + 28, s, sl);
	return size;
}

Test(codec, interval_join_buffers)
{
	weir_env *env = weir_env_new();
	weir_stream *a = keyed(env, "k:i64,s:str", "k"), *b = keyed(env, "k:i64,y:f64", "k");
	weir_stream *j = weir_interval_join(a, b, "ij", -5, 5, weir_schema_parse(env, "x:i64"),
					    join_nop, NULL);
	cr_assert_not_null(j, "%s", weir_env_error(env));
	kdict *d = kdict_new();
	kvtab_conf kc;

	cr_assert_eq(process_table_conf(stream_node(j), "buffer-a", &kc), 0);
	cr_assert_eq(process_table_conf(stream_node(j), "buffer-b", &kc), 0);
	cr_assert_eq(process_table_conf(stream_node(j), "buffer-c", &kc), -ENOENT);
	cr_assert_eq(kc.key_type, WEIR_I64);
	cr_assert_not_null(kc.encode);
	kvtab *t = kv_new(&kc, d);

	char e[4 + 3 * 48];
	uint32_t n = 3;
	size_t len = 4;
	memcpy(e, &n, 4);
	len += put_record(e + len, 100, 1, "first");
	len += put_record(e + len, 100, 2, "");
	len += put_record(e + len, 250, 3, "third row, longer");
	decode_same(t, e, len);
	malformed(t, e, len);

	char bad[sizeof(e)];
	uint32_t w;
	memcpy(bad, e, len);
	n = 2; /* count */
	memcpy(bad, &n, 4);
	decode_fails(t, bad, len);
	n = 0;
	memcpy(bad, &n, 4);
	decode_fails(t, bad, 4);
	memcpy(bad, e, len);
	int64_t ts = 99; /* the second record before the first */
	memcpy(&w, e + 4, 4);
	memcpy(bad + 4 + w + 8, &ts, 8);
	decode_fails(t, bad, len);
	memcpy(bad, e, len);
	memcpy(&w, bad + 4, 4); /* size not a multiple of 8 */
	w += 4;
	memcpy(bad + 4, &w, 4);
	decode_fails(t, bad, len);
	memcpy(bad, e, len);
	memcpy(&w, bad + 8, 4); /* len beyond the record */
	w += 8;
	memcpy(bad + 8, &w, 4);
	decode_fails(t, bad, len);
	memcpy(bad, e, len);
	memcpy(&w, bad + 8, 4); /* 8 bytes of padding or more */
	w -= 8;
	memcpy(bad + 8, &w, 4);
	decode_fails(t, bad, len);
	kv_free(t);
	kdict_free(d);
	weir_env_free(env);
}

/* A join record: [size][len][stored_ms][len bytes of `fill`][zero padding]. */
static size_t put_join_record(char *p, uint64_t ms, uint32_t len, char fill)
{
	uint32_t size = (16 + len + 7) & ~7u;
	memcpy(p, &size, 4);
	memcpy(p + 4, &len, 4);
	memcpy(p + 8, &ms, 8);
	memset(p + 16, fill, len);
	memset(p + 16 + len, 0, size - 16 - len);
	return size;
}

/* A top-n record: [okey][len][len bytes of `fill`], unaligned. */
static size_t put_topn_record(char *p, uint64_t okey, uint32_t len, char fill)
{
	memcpy(p, &okey, 8);
	memcpy(p + 8, &len, 4);
	memset(p + 12, fill, len);
	return 12 + len;
}

Test(codec, regular_join_rows_and_topn_values)
{
	weir_env *env = weir_env_new();
	kdict *d = kdict_new();
	kvtab_conf kc;

	/* join: [u32 n][records: size, len, stored_ms, row bytes, padding] */
	weir_join_conf jc = { .state_ttl_ms = 50 };
	weir_stream *j = weir_join(keyed(env, "k:str,v:i64,s:str", "k"),
				   keyed(env, "k:str,w:f64", "k"), "join", &jc, NULL, NULL, NULL);
	cr_assert_not_null(j, "%s", weir_env_error(env));
	const lnode *n = stream_node(j);
	cr_assert_eq(join_table_conf(n, "rows-a", &kc), 0);
	cr_assert_eq(join_table_conf(n, "rows-b", &kc), 0);
	cr_assert_eq(join_table_conf(n, "rows-c", &kc), -ENOENT);
	cr_assert_eq(join_table_conf(stream_node(keyed(env, "k:i64", "k")), "rows-a", &kc),
		     -ENOENT);
	cr_assert_eq(kc.ttl_ms, 50);
	cr_assert_eq(kc.key_type, WEIR_STR);
	cr_assert_not_null(kc.encode);
	cr_assert_not_null(kc.append);
	kvtab *t = kv_new(&kc, d);
	{
		/* records of [size][len][stored_ms][row][pad] */
		char e[4 + 3 * 64], bad[sizeof(e)], rec[64];
		uint32_t cnt = 3, w;
		size_t len = 4;
		memcpy(e, &cnt, 4);
		len += put_join_record(e + len, 1000, 8, 'a');
		len += put_join_record(e + len, 999, 21, 'b');  /* any times */
		len += put_join_record(e + len, 1001, 9, 'c');
		decode_same(t, e, len);
		malformed(t, e, len);
		memcpy(bad, e, len);
		cnt = 4; /* count */
		memcpy(bad, &cnt, 4);
		decode_fails(t, bad, len);
		cnt = 0;
		memcpy(bad, &cnt, 4);
		decode_fails(t, bad, 4);
		memcpy(bad, e, len);
		memcpy(&w, bad + 4, 4); /* size not a multiple of 8 */
		w += 4;
		memcpy(bad + 4, &w, 4);
		decode_fails(t, bad, len);
		memcpy(bad, e, len);
		memcpy(&w, bad + 8, 4); /* 8 bytes of padding or more */
		w -= 8;
		memcpy(bad + 8, &w, 4);
		decode_fails(t, bad, len);

		/* appends: a record at a time, onto a zeroed or a decoded value,
		 * as a restore replays them; the result encodes as the whole */
		void *v2 = slot_new(t);
		size_t off = 4;
		for (int i = 0; i < 3; i++) {
			uint32_t sz;
			memcpy(&sz, e + off, 4);
			cr_assert_eq(kc.append(v2, e + off, sz), 0);
			off += sz;
		}
		size_t m;
		void *e2 = encode(t, v2, &m);
		cr_assert_eq(m, len);
		cr_assert(!memcmp(e2, e, len));
		free(e2);
		size_t rl = put_join_record(rec, 5, 3, 'z');
		cr_assert_eq(kc.append(v2, rec, (uint32_t)rl - 8), -EINVAL); /* cut short */
		cr_assert_eq(kc.append(v2, rec, (uint32_t)rl + 8), -EINVAL); /* longer */
		memcpy(&w, rec + 4, 4);
		w += 8; /* len beyond the record */
		memcpy(rec + 4, &w, 4);
		cr_assert_eq(kc.append(v2, rec, (uint32_t)rl), -EINVAL);
		slot_free(t, v2);
	}
	kv_free(t);

	/* top-n: [u32 n][records in rank order: okey, len, cells] */
	weir_stream *tn = weir_topn(keyed(env, "k:i64,v:i64", "k"), "top", 4, "v", true);
	cr_assert_not_null(tn, "%s", weir_env_error(env));
	n = stream_node(tn);
	cr_assert_eq(topn_table_conf(n, "top-n", &kc), 0);
	cr_assert_eq(topn_table_conf(n, "top", &kc), -ENOENT);
	cr_assert_eq(topn_table_conf(stream_node(j), "top-n", &kc), -ENOENT);
	cr_assert_not_null(kc.encode);
	t = kv_new(&kc, d);
	char e[4 + 4 * 64], bad[sizeof(e)];
	uint32_t cnt = 3, w;
	size_t len = 4;
	memcpy(e, &cnt, 4);
	len += put_topn_record(e + len, 5, 8, 'a');
	len += put_topn_record(e + len, 5, 13, 'b');   /* ties in okey are fine */
	len += put_topn_record(e + len, 1ull << 63, 30, 'c');
	decode_same(t, e, len);
	malformed(t, e, len);

	memcpy(bad, e, len);
	cnt = 2; /* count */
	memcpy(bad, &cnt, 4);
	decode_fails(t, bad, len);
	cnt = 0;
	memcpy(bad, &cnt, 4);
	decode_fails(t, bad, 4);
	memcpy(bad, e, len);
	uint64_t ok = 4; /* the third record before the second */
	memcpy(bad + 4 + (12 + 8) + (12 + 13), &ok, 8);
	decode_fails(t, bad, len);
	memcpy(bad, e, len);
	w = 8 + 13 + 12 + 30 + 1; /* the first len beyond the value */
	memcpy(bad + 4 + 8, &w, 4);
	decode_fails(t, bad, len);
	memcpy(bad, e, len);
	w = 30 + 1; /* the last len beyond the value */
	memcpy(bad + 4 + (12 + 8) + (12 + 13) + 8, &w, 4);
	decode_fails(t, bad, len);
	memcpy(bad, e, len);
	w = 30 - 1; /* the last len short of it: a partial record follows */
	memcpy(bad + 4 + (12 + 8) + (12 + 13) + 8, &w, 4);
	decode_fails(t, bad, len);
	kv_free(t);
	kdict_free(d);
	weir_env_free(env);
}

Test(codec, row_valid_checks_the_row_encoding)
{
	weir_schema s = { .ncols = 3 };
	s.fields[0].type = WEIR_I64;
	s.fields[1].type = WEIR_STR;
	s.fields[2].type = WEIR_BOOL;
	char row[8 + 8 + 4 + 5 + 1];
	uint32_t sl = 5;
	memset(row, 0, sizeof(row));
	memcpy(row + 16, &sl, 4);
	memcpy(row + 20, "hello", 5);
	row[25] = 1;
	cr_assert(row_valid(&s, row, sizeof(row)));
	for (size_t k = 0; k < sizeof(row); k++)
		cr_assert_not(row_valid(&s, row, k), "prefix %zu", k);
	char longer[sizeof(row) + 1] = { 0 };
	memcpy(longer, row, sizeof(row));
	cr_assert_not(row_valid(&s, longer, sizeof(longer)));
	sl = 1000;
	memcpy(row + 16, &sl, 4);
	cr_assert_not(row_valid(&s, row, sizeof(row)));
}

/* ---- a random history restores exactly ------------------------------------------------ */

enum { H_AGG, H_LIST, H_MAP, H_JOIN, H_TABLES };

typedef struct restore_ctx {
	kvtab *from, *to;
	kdict *dto;
	int kind;
	size_t n;
} restore_ctx;

/* Materialize entry (k, ns, v) and restore it into ctx->to, whose keys
 * are interned in another dictionary, as a restore in a new run is. */
static int restore_one(void *arg, skey k, int64_t ns, void *v)
{
	restore_ctx *x = arg;
	size_t len;
	bool created;
	void *e = encode(x->from, v, &len);
	skey k2 = key_from_value(x->dto, WEIR_STR, key_value(WEIR_STR, k));
	void *v2 = kv_upsert(x->to, k2, ns, &created);
	cr_assert(created);
	cr_assert_eq(kv_value_decode(x->to, v2, e, len), 0);
	free(e);
	x->n++;
	return 0;
}

/* Every entry of `from` equals its restored copy in `to`. */
static int compare_one(void *arg, skey k, int64_t ns, void *v)
{
	restore_ctx *x = arg;
	skey k2 = key_from_value(x->dto, WEIR_STR, key_value(WEIR_STR, k));
	void *v2 = kv_get(x->to, k2, ns);
	key_done(x->dto, WEIR_STR, k2);
	cr_assert_not_null(v2);
	if (x->kind == H_MAP) {
		/* a map's encoding follows its slot order, which depends on
		 * its history: compare contents */
		cr_assert(maps_equal(v, v2) && maps_equal(v2, v));
		return 0;
	}
	size_t n, m;
	void *e = encode(x->from, v, &n), *e2 = encode(x->to, v2, &m);
	cr_assert_eq(n, m);
	cr_assert(memcmp(e, e2, n) == 0);
	free(e);
	free(e2);
	return 0;
}

static void check_restore(kvtab *const *tabs)
{
	for (int i = 0; i < H_TABLES; i++) {
		kdict *d2 = kdict_new();
		kvtab *t2 = kv_new(kv_conf(tabs[i]), d2);
		restore_ctx x = { tabs[i], t2, d2, i, 0 };
		kv_foreach(tabs[i], restore_one, &x);
		cr_assert_eq(x.n, kv_count(tabs[i]));
		cr_assert_eq(kv_count(t2), kv_count(tabs[i]));
		kv_foreach(tabs[i], compare_one, &x);
		kv_free(t2);
		cr_assert_eq(kdict_count(d2), 0);
		kdict_free(d2);
	}
}

Test(codec, random_history_restores_exactly)
{
	weir_env *env = weir_env_new();
	weir_stream *k = keyed(env, "k:str,name:str,n:i64", "k");
	weir_stream *red = weir_reduce(k, "red", reduce_nop, NULL);
	weir_process_fns f = { .process = process_nop, .states = states, .nstates = 4 };
	weir_stream *p = weir_process(keyed(env, "k:str,v:i64", "k"), "proc",
				      weir_schema_parse(env, "x:i64"), &f);
	const lnode *jn = window_node(env, "session:10", 3, 0, 0);
	kvtab_conf kc[H_TABLES];
	cr_assert_eq(aggregate_table_conf(stream_node(red), "accumulators", &kc[H_AGG]), 0);
	cr_assert_eq(process_table_conf(stream_node(p), "list", &kc[H_LIST]), 0);
	kc[H_LIST].ttl_ms = 0; /* the wall clock must not expire entries here */
	cr_assert_eq(process_table_conf(stream_node(p), "map", &kc[H_MAP]), 0);
	cr_assert_eq(window_table_conf(jn, "windows", &kc[H_JOIN]), 0);

	kdict *d = kdict_new();
	kvtab *tabs[H_TABLES];
	for (int i = 0; i < H_TABLES; i++)
		tabs[i] = kv_new(&kc[i], d);
	for (int op = 0; op < 20000; op++) {
		int ti = (int)(rnd() % H_TABLES);
		kvtab *t = tabs[ti];
		char name[16], bytes[48];
		snprintf(name, sizeof(name), "key-%d", (int)(rnd() % 64));
		skey key = kstrkey(d, name);
		int64_t ns = ti == H_JOIN ? (int64_t)(rnd() % 4) * 10 : 0;
		uint32_t len = (uint32_t)(rnd() % sizeof(bytes));
		bool created;
		for (uint32_t i = 0; i < len; i++)
			bytes[i] = (char)('a' + rnd() % 26);
		if (rnd() % 16 == 0) {
			key_retain(WEIR_STR, key); /* the delete may release the last */
			kv_delete(t, key, ns);
			key_release(d, WEIR_STR, key);
			continue;
		}
		void *v = kv_upsert(t, key, ns, &created);
		cr_assert_not_null(v);
		switch (ti) {
		case H_AGG: {
			/* [obuf][name (off, len)][n]: a string of `len` bytes */
			int64_t *cells = (int64_t *)((char *)v + 8);
			cr_assert_eq(obuf_set((obuf **)v, bytes, len), 0);
			cells[0] = (int64_t)((uint64_t)len << 32);
			cells[1] = (int64_t)rnd();
			kv_written(t, v);
			break;
		}
		case H_LIST:
			cr_assert_eq(blist_add((blist **)v, bytes, len), 0);
			kv_appended(t, v, 0, bytes, len);
			break;
		case H_MAP: {
			test_pmap *pm = v;
			char mk[8];
			int mkl = snprintf(mk, sizeof(mk), "m%d", (int)(rnd() % 12));
			pm->vsize = 24;
			if (rnd() % 4 == 0 && bmap_remove(pm->m, mk, (uint32_t)mkl)) {
				if (!bmap_len(pm->m)) {
					kv_delete(t, key, ns);
					break;
				}
			} else {
				void *mv = bmap_put(&pm->m, 24, mk, (uint32_t)mkl);
				cr_assert_not_null(mv);
				memset(mv, 0, 24);
				memcpy(mv, bytes, len < 24 ? len : 24);
			}
			kv_written(t, v);
			break;
		}
		default: {
			unsigned l = (unsigned)(rnd() % 2);
			cr_assert_eq(blist_add((blist **)v + l, bytes, len), 0);
			kv_appended(t, v, l, bytes, len);
			break;
		}
		}
		if (op % 5000 == 4999)
			check_restore(tabs);
	}
	check_restore(tabs);
	for (int i = 0; i < H_TABLES; i++)
		kv_free(tabs[i]);
	cr_assert_eq(kdict_count(d), 0);
	kdict_free(d);
	weir_env_free(env);
}

/* ---- the watermark generator's clock ------------------------------------------------ */

static const lnode *wm_node(weir_env *env)
{
	weir_generator_conf g = { .count = 1 };
	weir_watermark_strategy ws = { .kind = WEIR_WM_BOUNDED, .ts_column = "seq",
				       .out_of_orderness_ms = 10 };
	weir_stream *s = weir_assign_watermarks(weir_source_generator(env, "gen", &g),
						"wm", &ws);
	cr_assert_not_null(s, "%s", weir_env_error(env));
	return stream_node(s);
}

static void wm_task(task *t, const lnode *n, int subtask, int parallelism)
{
	memset(t, 0, sizeof(*t));
	t->node = n;
	t->ops = n->ops;
	t->subtask = subtask;
	t->parallelism = parallelism;
	t->watermark = INT64_MIN;
	t->out_watermark = INT64_MIN;
	cr_assert_eq(t->ops->open(t), 0);
}

/* [u8 1][i64 max_ts][i64 W][i64 last sent] */
static size_t wm_blob(uint8_t *p, int64_t max_ts, int64_t wm, int64_t sent)
{
	p[0] = 1;
	memcpy(p + 1, &max_ts, 8);
	memcpy(p + 9, &wm, 8);
	memcpy(p + 17, &sent, 8);
	return 25;
}

static void wm_expect(task *t, int64_t max_ts, int64_t wm, int64_t sent)
{
	snap_buf b = { 0 };
	uint8_t want[25];
	cr_assert_eq(t->ops->snapshot(t, CKPT_FINAL, &b), 0);
	cr_assert_eq(b.len, wm_blob(want, max_ts, wm, sent));
	cr_assert(memcmp(b.p, want, 25) == 0, "snapshot differs");
	snap_free(&b);
}

Test(codec, watermark_clock_same_parallelism_own_rescaled_minimum)
{
	weir_env *env = weir_env_new();
	const lnode *n = wm_node(env);
	uint8_t raw[3][25];
	op_blob blobs[3];
	task t;

	for (int i = 0; i < 3; i++) {
		blobs[i].subtask = i;
		blobs[i].p = raw[i];
		blobs[i].len = wm_blob(raw[i], 1000 + 100 * i, 989 + 100 * i, 980 + 100 * i);
	}
	/* a fresh generator knows nothing */
	wm_task(&t, n, 0, 1);
	wm_expect(&t, INT64_MIN, INT64_MIN, INT64_MIN);
	t.ops->close(&t);

	/* same parallelism: its own clock, whatever the others' */
	op_restore r = { .old_parallelism = 3, .n = 3, .blobs = blobs };
	for (int i = 0; i < 3; i++) {
		wm_task(&t, n, i, 3);
		cr_assert_eq(t.ops->restore(&t, &r), 0);
		wm_expect(&t, 1000 + 100 * i, 989 + 100 * i, 980 + 100 * i);
		t.ops->close(&t);
	}
	/* rescaled (3 -> 2 and 3 -> 5): the minimum over all old subtasks */
	for (int p = 2; p <= 5; p += 3)
		for (int i = 0; i < p; i++) {
			wm_task(&t, n, i, p);
			cr_assert_eq(t.ops->restore(&t, &r), 0);
			wm_expect(&t, 1000, 989, 980);
			t.ops->close(&t);
		}
	/* one old subtask had seen nothing: nobody may be ahead of it */
	blobs[1].len = wm_blob(raw[1], INT64_MIN, INT64_MIN, INT64_MIN);
	wm_task(&t, n, 0, 2);
	cr_assert_eq(t.ops->restore(&t, &r), 0);
	wm_expect(&t, INT64_MIN, INT64_MIN, INT64_MIN);
	t.ops->close(&t);

	/* an empty blob (written without this state) restores nothing */
	blobs[1].len = 0;
	wm_task(&t, n, 1, 3);
	cr_assert_eq(t.ops->restore(&t, &r), 0);
	wm_expect(&t, INT64_MIN, INT64_MIN, INT64_MIN);
	t.ops->close(&t);

	/* malformed blobs */
	blobs[1].len = 24;
	wm_task(&t, n, 1, 3);
	cr_assert_eq(t.ops->restore(&t, &r), -EINVAL);
	t.ops->close(&t);
	blobs[1].len = 25;
	raw[1][0] = 2;
	wm_task(&t, n, 1, 3);
	cr_assert_eq(t.ops->restore(&t, &r), -EINVAL);
	t.ops->close(&t);
	weir_env_free(env);
}
