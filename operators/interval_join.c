/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The interval join (weir_interval_join, include/weir/keyed.h), one of the
 * joins over the two-input core (two_input.h: its chunked key loop, key
 * types, output schema).
 *
 * op_interval_join keeps, per side and key, the rows not yet too old to
 * join, in one kvtab entry per (side, key): a jbuf, whose byte buffer holds
 * row_encode()d rows sorted by event time:
 *
 *   jbuf.data: [head ... used) live records, each 8-byte aligned:
 *   +----------+---------+--------------------------------------+-----+
 *   | size u32 | len u32 | row_encode bytes (event time i64 ...) | pad |
 *   +----------+---------+--------------------------------------+-----+
 *   size = bytes of the whole record (a multiple of 8), len = encoded bytes
 *
 * A new row probes the other side's buffer of its key (a scan that skips
 * rows before the interval and stops after it, since rows are in time
 * order) and is then appended (in-order input appends; an out-of-order row
 * is moved into place).  Rows leave in time order too: an a-row at ta is
 * useless once the watermark reaches ta + upper (every later b-row has
 * tb > wm), a b-row at tb once it reaches tb - lower, so cleanup drops a
 * prefix.  It is driven by one cleanup timer per (side, key) at a time,
 * rounded up to a bucket of about half the interval width, so a key costs
 * a timer per bucket, not per row.  Input that is roughly in time order
 * makes timers in time order, so a side's timers go to a FIFO while their
 * times do not decrease (no heap, O(1) each) and only the stragglers to a
 * timer service (tsvc); the watermark drains both.  Buffers come from
 * per-subtask free lists of power-of-two blocks, so keys that come and go
 * do not malloc per record in steady state.
 *
 * A probe scans the key's buffer from its oldest row, so its cost grows
 * with the rows a key holds (about the interval width times the key's
 * rate, plus a bucket): fine for the small per-key buffers joins usually
 * have; a key with a huge buffer would want an index by time.
 *
 * A row whose event time is at or below the watermark is late: it is not
 * joined (as in Flink) and goes to port 1 when the node has one with the
 * row's schema (weir_window_late), else it is counted as a dead letter and
 * logged once at close.
 *
 * Checkpoints.  The interval join registers "buffer-a" and "buffer-b"; a
 * buffer encodes its live records (jbuf_encode), so each buffered row logs
 * the key's whole buffer -- fine for the small per-key buffers this join
 * is built for (above), and what a join with large per-key buffers would
 * change first (an appendable layout).  The cleanup timers are not
 * registered: they are derived from the buffers (one per (side, key) at
 * the bucket of its oldest row's drop time) and rebuilt after a restore
 * (ij_start), and most of them live in FIFOs that no timer service would
 * log.  Operator state (snapshot): the count of late records dropped.
 *
 * Everything here belongs to one subtask, on its reactor thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "blocks.h"
#include "ops.h"
#include "rows.h"
#include "state.h"
#include "two_input.h"

typedef struct ij_conf {
	int64_t lower, upper;
	int64_t bucket;            /* cleanup timer granularity, ms */
	weir_join_fn fn;
	void *arg;
	const weir_schema *in[2];
	int key_col[2];
	weir_type key_type[2];
} ij_conf;

struct ij_state;

/* Buffered rows of one key on one side (the value of a kvtab entry). */
typedef struct jbuf {
	char *data;
	uint32_t head, used, cap;  /* live records in data[head, used) */
	uint32_t n;                /* live records */
	int64_t max_ts;            /* greatest event time buffered */
	int64_t timer;             /* pending cleanup timer, or NO_TIMER */
	struct ij_state *owner;    /* whose block free lists data returns to */
} jbuf;

#define NO_TIMER INT64_MIN
#define REC_HDR 8

/* An interval-join subtask's state (t->st): its reactor thread only. */
typedef struct ij_state {
	const ij_conf *c;
	kdict *dict;
	kvtab *buf[2];
	struct cfifo {
		struct centry {
			int64_t at;
			skey key;   /* retained while queued */
		} *v;
		uint32_t head, n, cap; /* ring; cap is a power of two */
		int64_t last;          /* time of the newest entry */
	} fifo[2];                 /* in-order cleanup timers per side */
	tsvc *cleanup;            /* the other cleanup timers; ns = side */
	int late_port[2];         /* port for late rows of each input, or -1 */
	uint64_t late_dropped;
	bool started;             /* ij_start ran (restored buffers adopted) */
	blk_lists blk;             /* free blocks for the buffers */
	weir_value cells[2][WEIR_MAX_COLS];
	skey keys[KEY_CHUNK];
} ij_state;

static inline uint32_t rec_size(const char *p) { return *(const uint32_t *)p; }
static inline int64_t rec_ts(const char *p) { return *(const int64_t *)(p + REC_HDR); }

static inline int64_t drop_time(const ij_conf *c, int side, int64_t ts)
{
	return side == 0 ? sat_add(ts, c->upper) : sat_sub(ts, c->lower);
}

/* Round up to the cleanup bucket. */
static inline int64_t bucket_up(const ij_conf *c, int64_t d)
{
	int64_t w = c->bucket, q = d / w;
	if (d % w > 0) {
		if (q >= INT64_MAX / w)
			return INT64_MAX;
		q++;
	}
	return q * w;
}

static void jbuf_free_value(void *v)
{
	jbuf *b = v;
	if (b->data && b->owner)
		blk_free(&b->owner->blk, b->data, b->cap);
	else
		free(b->data); /* decoded, not yet adopted by ij_start */
	b->data = NULL;
}

/*
 * A buffer's encoding: [u32 n] then its n live records exactly as in
 * `data` (size, len, row, zero padding).  max_ts is the last record's
 * time; the cleanup timer is not state (see ij_start).  A decoded buffer
 * has no owner until ij_start adopts it.
 */
static size_t jbuf_encoded_size(const void *v)
{
	const jbuf *b = v;
	return 4 + (size_t)(b->used - b->head);
}

static void jbuf_encode(const void *v, void *out)
{
	const jbuf *b = v;
	memcpy(out, &b->n, 4);
	if (b->used > b->head)
		memcpy((char *)out + 4, b->data + b->head, b->used - b->head);
}

static int jbuf_decode(void *v, const void *in, size_t len)
{
	jbuf *b = v;
	const char *p = (const char *)in + 4;
	int64_t ts, last = INT64_MIN;
	uint32_t n, k = 0, cap = 1u << BLK_MIN_SHIFT, hdr[2];
	size_t bytes, off = 0;

	if (len < 4)
		return -EINVAL;
	memcpy(&n, in, 4);
	bytes = len - 4;
	if (n == 0 || bytes > (1u << 30))
		return -EINVAL;
	while (off < bytes) {
		if (bytes - off < REC_HDR + 8)
			return -EINVAL;
		memcpy(hdr, p + off, 8);
		if (hdr[0] % 8 || hdr[0] < REC_HDR + 8 || hdr[0] > bytes - off ||
		    hdr[1] < 8 || hdr[1] > hdr[0] - REC_HDR ||
		    hdr[0] - REC_HDR - hdr[1] >= 8)
			return -EINVAL;
		memcpy(&ts, p + off + REC_HDR, 8);
		if (ts < last) /* rows are kept in time order */
			return -EINVAL;
		last = ts;
		off += hdr[0];
		k++;
	}
	if (k != n)
		return -EINVAL;
	while (cap < bytes)
		cap *= 2;
	b->data = malloc(cap);
	if (!b->data)
		return -ENOMEM;
	memcpy(b->data, p, bytes);
	b->cap = cap;
	b->head = 0;
	b->used = (uint32_t)bytes;
	b->n = n;
	b->max_ts = last;
	b->timer = NO_TIMER;
	b->owner = NULL;
	return 0;
}

static const char *const ij_buf_name[2] = { "buffer-a", "buffer-b" };

static kvtab_conf jbuf_conf(weir_type kt)
{
	return (kvtab_conf){ .key_type = kt, .vsize = sizeof(jbuf),
			     .free_value = jbuf_free_value,
			     .encoded_size = jbuf_encoded_size,
			     .encode = jbuf_encode, .decode = jbuf_decode };
}

/* Make room for `need` more bytes at the end of b's records. */
static int jbuf_room(ij_state *s, jbuf *b, uint32_t need)
{
	uint32_t live = b->used - b->head;
	if ((uint64_t)live + need > (1u << 31))
		return -E2BIG;
	if (b->data && b->cap - live >= need && b->head >= live / 2) {
		/* Enough room once the dropped prefix is reclaimed; worth a
		 * move when the prefix is at least half the live bytes (else
		 * grow: a near-full buffer would move again soon). */
		memmove(b->data, b->data + b->head, live);
		b->used = live;
		b->head = 0;
		return 0;
	}
	uint32_t ncap;
	size_t want = (size_t)live + need;
	if (want < (size_t)b->cap * 2)
		want = (size_t)b->cap * 2;
	char *n = blk_alloc(&s->blk, want, &ncap);
	if (!n)
		return -ENOMEM;
	if (b->data) {
		memcpy(n, b->data + b->head, live);
		blk_free(&s->blk, b->data, b->cap);
	}
	b->data = n;
	b->cap = ncap;
	b->used = live;
	b->head = 0;
	return 0;
}

static int ij_open(task *t)
{
	const ij_conf *c = t->node->conf;
	ij_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	t->st = s;
	s->c = c;
	for (int i = 0; i < 2; i++)
		s->late_port[i] = t->nports > 1 && schema_equal(t->node->schema[1], c->in[i])
					  ? 1 : -1;
	s->dict = kdict_new();
	if (!s->dict)
		return -ENOMEM;
	kvtab_conf kc = jbuf_conf(c->key_type[0]);
	for (int i = 0; i < 2; i++) {
		s->buf[i] = kv_new(&kc, s->dict);
		if (!s->buf[i])
			return -ENOMEM;
		int rc = state_register_table(t, ij_buf_name[i], s->buf[i]);
		if (rc < 0)
			return rc;
	}
	/* Not registered: the cleanup timers are derived from the buffers
	 * (ij_start), and most of them live in the FIFOs anyway. */
	s->cleanup = tsvc_new(s->dict, c->key_type[0], false);
	return s->cleanup ? 0 : -ENOMEM;
}

int interval_join_table_conf(const lnode *n, const char *name, kvtab_conf *out)
{
	if (n->ops != &op_interval_join)
		return -ENOENT;
	for (int i = 0; i < 2; i++)
		if (!strcmp(name, ij_buf_name[i])) {
			*out = jbuf_conf(((const ij_conf *)n->conf)->key_type[0]);
			return 0;
		}
	return -ENOENT;
}

static void ij_close(task *t)
{
	ij_state *s = t->st;
	if (!s)
		return;
	if (s->late_dropped)
		wlog(LOG_WARN, "interval join '%s' #%d: %llu late records dropped "
		     "(counted as dead letters; weir_window_late keeps them)",
		     t->node->name, t->subtask, (unsigned long long)s->late_dropped);
	if (s->cleanup)
		tsvc_free(s->cleanup);
	for (int i = 0; i < 2; i++) {
		struct cfifo *f = &s->fifo[i];
		for (uint32_t k = 0; k < f->n; k++)
			key_release(s->dict, s->c->key_type[0],
				    f->v[(f->head + k) & (f->cap - 1)].key);
		free(f->v);
	}
	for (int i = 0; i < 2; i++)
		if (s->buf[i])
			kv_free(s->buf[i]); /* returns blocks to the free lists */
	blk_release(&s->blk);
	if (s->dict)
		kdict_free(s->dict);
	free(s);
	t->st = NULL;
}

static int emit_pair(task *t, ij_state *s, int64_t ta, int64_t tb)
{
	const ij_conf *c = s->c;
	weir_out *o = task_out(t, 0);
	int64_t ts = ta > tb ? ta : tb;

	if (c->fn) {
		out_default_ts(t, ts);
		return c->fn(c->arg, s->cells[0], ta, s->cells[1], tb, o);
	}
	row_stage_cells(o, c->in[0], s->cells[0], 0);
	row_stage_cells(o, c->in[1], s->cells[1], c->in[0]->ncols);
	weir_out_ts(o, ts);
	weir_out_emit(o);
	return 0;
}

/* Pairs of row r of b (on `side`, at ts) with the other side's rows in o. */
static int probe(task *t, ij_state *s, int side, const weir_batch *b, uint32_t r,
		 int64_t ts, const jbuf *o)
{
	const ij_conf *c = s->c;
	const weir_schema *os = c->in[1 - side];
	int64_t lo, hi;
	bool loaded = false;

	if (side == 0) {
		lo = sat_add(ts, c->lower);
		hi = sat_add(ts, c->upper);
	} else {
		lo = sat_sub(ts, c->upper);
		hi = sat_sub(ts, c->lower);
	}
	for (const char *p = o->data + o->head, *e = o->data + o->used; p < e;
	     p += rec_size(p)) {
		int64_t ots = rec_ts(p);
		if (ots < lo)
			continue;
		if (ots > hi)
			break;
		if (!loaded) {
			for (int k = 0; k < b->schema->ncols; k++)
				s->cells[side][k] = cell_value(b, k, r);
			loaded = true;
		}
		row_decode(os, p + REC_HDR, s->cells[1 - side], &ots);
		int rc = side == 0 ? emit_pair(t, s, ts, ots) : emit_pair(t, s, ots, ts);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* A cleanup timer for (side, k) at `at`: the FIFO if it keeps it sorted. */
static int cleanup_add(ij_state *s, int side, int64_t at, skey k)
{
	struct cfifo *f = &s->fifo[side];
	if (f->n && at < f->last)
		return tsvc_add(s->cleanup, at, k, side);
	if (f->n == f->cap) {
		uint32_t ncap = f->cap ? f->cap * 2 : 256;
		struct centry *nv = malloc((size_t)ncap * sizeof(*nv));
		if (!nv || ncap < f->cap) {
			free(nv);
			return -ENOMEM;
		}
		for (uint32_t i = 0; i < f->n; i++)
			nv[i] = f->v[(f->head + i) & (f->cap - 1)];
		free(f->v);
		f->v = nv;
		f->cap = ncap;
		f->head = 0;
	}
	f->v[(f->head + f->n) & (f->cap - 1)] = (struct centry){ at, k };
	f->n++;
	f->last = at;
	key_retain(s->c->key_type[0], k);
	return 0;
}

/* Buffer row r of b on `side` under key k. */
static int buffer_row(ij_state *s, int side, skey k, const weir_batch *b,
		      uint32_t r, int64_t ts, int64_t drop)
{
	bool created;
	kvtab *tab = s->buf[side];
	jbuf *jb = kv_upsert(tab, k, 0, &created);
	if (!jb)
		return -ENOMEM;
	if (created) {
		jb->timer = NO_TIMER;
		jb->owner = s;
	}
	size_t enc = row_encoded_size(b, r);
	size_t rec = (REC_HDR + enc + 7) & ~(size_t)7;
	if (rec > (1u << 30))
		return -E2BIG;
	if (jb->cap - jb->used < rec) {
		int rc = jbuf_room(s, jb, (uint32_t)rec);
		if (rc < 0)
			return rc;
	}
	char *dst = jb->data + jb->used;
	if (jb->n && ts < jb->max_ts) {
		/* Out of order: after the last record at or before ts. */
		char *p = jb->data + jb->head;
		while (p < dst && rec_ts(p) <= ts)
			p += rec_size(p);
		memmove(p + rec, p, (size_t)(dst - p));
		dst = p;
	} else {
		jb->max_ts = ts;
	}
	((uint32_t *)dst)[0] = (uint32_t)rec;
	((uint32_t *)dst)[1] = (uint32_t)enc;
	row_encode(b, r, dst + REC_HDR);
	/* zero the padding: it is part of the buffer's encoding */
	memset(dst + REC_HDR + enc, 0, rec - REC_HDR - enc);
	jb->used += (uint32_t)rec;
	jb->n++;
	if (jb->timer == NO_TIMER) {
		/* One cleanup timer per (side, key) at a time: a row that
		 * expires before it merely stays a little longer. */
		int64_t at = bucket_up(s->c, drop);
		int rc = cleanup_add(s, side, at, k);
		if (rc < 0)
			return rc;
		jb->timer = at;
	}
	kv_written(tab, jb); /* logs the key's whole buffer (see the top) */
	return 0;
}

static void late_row(task *t, ij_state *s, int side, const weir_batch *b,
		     uint32_t r)
{
	int port = s->late_port[side];
	if (port < 0) {
		s->late_dropped++;
		metric_add(&t->m.dead_letters, 1);
		return;
	}
	for (int k = 0; k < b->schema->ncols; k++)
		s->cells[side][k] = cell_value(b, k, r);
	weir_out *o = task_out(t, port);
	row_stage(o, s->c->in[side], s->cells[side], b->ts[r]);
	weir_out_emit(o);
}

/* ---- after a restore ---------------------------------------------------------- */

typedef struct ij_start_ctx {
	ij_state *s;
	int side;
	bool bad;
	int err;
} ij_start_ctx;

static int start_buffer(void *arg, skey k, int64_t ns, void *v)
{
	ij_start_ctx *x = arg;
	ij_state *s = x->s;
	const ij_conf *c = s->c;
	jbuf *jb = v;
	(void)ns;

	jb->owner = s;
	for (const char *p = jb->data + jb->head, *e = jb->data + jb->used; p < e;
	     p += rec_size(p))
		if (!row_valid(c->in[x->side], p + REC_HDR, ((const uint32_t *)p)[1])) {
			x->bad = true;
			return 1;
		}
	/* the timer cleanup_key would have set (not logged: derived) */
	int64_t at = bucket_up(c, drop_time(c, x->side, rec_ts(jb->data + jb->head)));
	x->err = cleanup_add(s, x->side, at, k);
	if (x->err < 0)
		return 1;
	jb->timer = at;
	return 0;
}

/*
 * The first call on the reactor thread: buffers present now were restored
 * (open() made the tables empty).  Adopt their blocks, check their rows
 * against the input schemas (a context-free decode cannot), and give each
 * its cleanup timer.
 */
static bool ij_start(task *t, ij_state *s)
{
	s->started = true;
	for (int side = 0; side < 2; side++) {
		ij_start_ctx x = { s, side, false, 0 };
		if (!kv_count(s->buf[side]))
			continue;
		kv_foreach(s->buf[side], start_buffer, &x);
		if (x.bad || x.err) {
			task_fail(t, "interval join '%s': %s", t->node->name,
				  x.bad ? "restored rows do not fit the input schema (did the "
					  "job change since the checkpoint?)"
					: strerror(-x.err));
			return false;
		}
	}
	return true;
}

static void ij_process(task *t, int side, weir_batch *b)
{
	ij_state *s = t->st;
	const ij_conf *c = s->c;
	int kc = c->key_col[side];
	weir_type kt = c->key_type[side];
	kvtab *mine = s->buf[side], *other = s->buf[1 - side];
	kvtab *const pf[2] = { other, mine };
	bool fixed = key_fixed(kt);
	int64_t wm = t->watermark;
	int rc = 0;

	if (unlikely(!s->started) && !ij_start(t, s)) {
		batch_release(b);
		return;
	}
	for (uint32_t r0 = 0; r0 < b->rows && rc == 0; r0 += KEY_CHUNK) {
		/* fixed-width keys: the chunk's keys, both tables' slots
		 * loading (two_input.h) */
		uint32_t n = key_chunk_prefetch(s->dict, kt, b, kc, r0, s->keys, pf, 2);
		for (uint32_t i = 0; i < n && rc == 0; i++) {
			uint32_t r = r0 + i;
			int64_t ts = b->ts[r];
			if (ts <= wm) {
				late_row(t, s, side, b, r);
				continue;
			}
			skey k = fixed ? s->keys[i] : key_of(s->dict, kt, b, kc, r);
			const jbuf *o = kv_get(other, k, 0);
			if (o && o->n)
				rc = probe(t, s, side, b, r, ts, o);
			int64_t drop = drop_time(c, side, ts);
			/* Keep the row only if a later row of the other side
			 * can still join it. */
			if (rc == 0 && drop > wm)
				rc = buffer_row(s, side, k, b, r, ts, drop);
			key_done(s->dict, kt, k);
		}
	}
	if (rc < 0)
		task_fail(t, "interval join '%s': %s", t->node->name,
			  rc == -ENOMEM ? "out of memory for buffered rows"
					: strerror(-rc));
	batch_release(b);
}

/* The cleanup timer of (side, k) fired: drop the rows the watermark made
 * useless (a prefix: rows leave in time order) and set the next timer. */
static void cleanup_key(ij_state *s, int side, skey k, int64_t wm)
{
	const ij_conf *c = s->c;
	kvtab *tab = s->buf[side];
	jbuf *jb = kv_get(tab, k, 0);
	if (!jb)
		return;
	char *p = jb->data + jb->head, *e = jb->data + jb->used;
	jb->timer = NO_TIMER;
	while (p < e && drop_time(c, side, rec_ts(p)) <= wm) {
		p += rec_size(p);
		jb->n--;
	}
	jb->head = (uint32_t)(p - jb->data);
	if (jb->n == 0) {
		kv_delete(tab, k, 0);
		return;
	}
	int64_t at = bucket_up(c, drop_time(c, side, rec_ts(p)));
	/* On ENOMEM the rows stay until the key's next row sets a timer. */
	if (cleanup_add(s, side, at, k) == 0)
		jb->timer = at;
	kv_written(tab, jb);
}

static void ij_watermark(task *t, int64_t wm)
{
	ij_state *s = t->st;
	weir_type kt = s->c->key_type[0];
	timer tm;

	if (unlikely(!s->started) && !ij_start(t, s))
		return;
	for (int side = 0; side < 2; side++) {
		struct cfifo *f = &s->fifo[side];
		while (f->n && f->v[f->head].at <= wm) {
			skey k = f->v[f->head].key;
			f->head = (f->head + 1) & (f->cap - 1);
			f->n--;
			cleanup_key(s, side, k, wm);
			key_release(s->dict, kt, k);
		}
	}
	while (tsvc_pop(s->cleanup, wm, &tm)) {
		cleanup_key(s, (int)tm.ns, tm.key, wm);
		key_release(s->dict, kt, tm.key);
	}
}

/*
 * Operator state: [u8 version = 1][u64 late records dropped] (the count
 * the warning at close reports).  With rescaling, new subtask i adds up
 * the counts of old subtasks s with s % p == i.
 */
#define IJ_SNAP_VERSION 1

static int ij_snapshot(task *t, int64_t id, snap_buf *out)
{
	ij_state *s = t->st;
	uint8_t version = IJ_SNAP_VERSION;
	(void)id;
	int rc = snap_put(out, &version, 1);
	return rc ? rc : snap_put_u64(out, s->late_dropped);
}

static int ij_restore(task *t, const op_restore *r)
{
	ij_state *s = t->st;
	for (int i = 0; i < r->n; i++) {
		const op_blob *b = &r->blobs[i];
		snap_rd rd = { .p = b->p, .len = b->len };
		if (b->subtask % t->parallelism != t->subtask || !b->len)
			continue; /* not ours, or written without this state */
		const uint8_t *v = snap_get(&rd, 1);
		uint64_t n = snap_get_u64(&rd);
		if (rd.err || *v != IJ_SNAP_VERSION || rd.off != rd.len)
			return -EINVAL;
		s->late_dropped += n;
	}
	return 0;
}

const op_ops op_interval_join = {
	.kind = "interval-join", .open = ij_open, .process = ij_process,
	.watermark = ij_watermark, .snapshot = ij_snapshot, .restore = ij_restore,
	.close = ij_close,
};

weir_stream *weir_interval_join(weir_stream *a, weir_stream *b, const char *name,
				int64_t lower_ms, int64_t upper_ms,
				const weir_schema *out_schema, weir_join_fn fn,
				void *arg)
{
	const char *nm = name && *name ? name : "interval-join";
	weir_env *env;
	ij_conf *c;
	int ka, kb;

	if (!a || !b)
		return NULL;
	env = stream_env(a);
	ka = stream_key_col(a);
	kb = stream_key_col(b);
	if (ka < 0 || kb < 0) {
		env_error(env, "interval join '%s': both inputs must be keyed "
			  "(call weir_key_by first)", nm);
		return NULL;
	}
	const weir_schema *sa = weir_stream_schema(a), *sb = weir_stream_schema(b);
	if (!key_types_match(sa->fields[ka].type, sb->fields[kb].type)) {
		env_error(env, "interval join '%s': key columns of different types "
			  "(%s and %s)", nm, type_name(sa->fields[ka].type),
			  type_name(sb->fields[kb].type));
		return NULL;
	}
	if (lower_ms > upper_ms) {
		env_error(env, "interval join '%s': lower bound %lld is above the "
			  "upper bound %lld", nm, (long long)lower_ms, (long long)upper_ms);
		return NULL;
	}
	if (!fn && out_schema) {
		env_error(env, "interval join '%s': an output schema needs a join "
			  "function (without one the output is a's columns then b's)", nm);
		return NULL;
	}
	if (fn && !out_schema) {
		env_error(env, "interval join '%s': a join function needs an output "
			  "schema", nm);
		return NULL;
	}
	if (!fn) {
		out_schema = join_concat_schema(env, "interval join", nm, sa, sb);
		if (!out_schema)
			return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		env_error(env, "out of memory");
		return NULL;
	}
	c->lower = lower_ms;
	c->upper = upper_ms;
	/* Cleanup granularity: half the interval's width (at least 8 ms):
	 * rows stay at most that long after they became useless. */
	uint64_t width = (uint64_t)upper_ms - (uint64_t)lower_ms;
	c->bucket = width / 2 > (1ull << 40) ? (1ll << 40) : (int64_t)(width / 2);
	if (c->bucket < 8)
		c->bucket = 8;
	c->fn = fn;
	c->arg = arg;
	c->in[0] = sa;
	c->in[1] = sb;
	c->key_col[0] = ka;
	c->key_col[1] = kb;
	c->key_type[0] = sa->fields[ka].type;
	c->key_type[1] = sb->fields[kb].type;
	weir_stream *in[2] = { a, b };
	return stream_add_op(in, 2, name, "interval-join", &op_interval_join,
			     out_schema, c, NULL);
}

/*
 * For weir_window_late (window.c), which gives an interval join its late
 * output (port 1): the schema of input i (0 = a, 1 = b) of interval-join
 * node n, or NULL if n is not one.  Late rows of an input go to port 1
 * when its schema equals that port's.
 */
const weir_schema *interval_join_input_schema(const lnode *n, int i)
{
	if (!n || n->ops != &op_interval_join || i < 0 || i > 1)
		return NULL;
	return ((const ij_conf *)n->conf)->in[i];
}
