/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The state-log write path (log_write.h): per-task registries of keyed
 * state, the bindings through which registered tables and timer services
 * log their changes, the encoding of those changes as state-log entries,
 * materialization (a task's whole state as entries), and the flush of the
 * PUTs tables deferred to the barrier.  The store (checkpoint.c) decides
 * when to materialize and where the log is; this file only writes.
 *
 * What a task's log range holds.  DEL, APPEND and timer entries are
 * appended as the mutation happens.  PUTs are deferred: kv_written only
 * marks the entry dirty, and at each barrier the store (st_task_barrier
 * in checkpoint.c) has every registered table log one PUT per dirty entry
 * (st_flush_dirty, kv_flush_dirty) before it marks the task's position,
 * so the range [materialization, mark) holds each key's value at the barrier once, however often it changed (a
 * running sum over 4 M keys wrote a 56-byte entry per record, ~400 MB/s;
 * keyed.c explains why the order still replays correctly).  The cost moves
 * to the barrier: the task pauses to encode the changed entries, fewer
 * than the records since the previous barrier.  A barrier that
 * materializes into the log skips that: the materialization writes every
 * entry, so the dirty marks are just forgotten.
 *
 * That was the synchronous path, which the final barrier and savepoints
 * still take.  A checkpoint's barrier takes the asynchronous one
 * (st_snapshot_begin / st_snapshot_step): the changed entries, or for a
 * materialization all of them, are logged as SNAP entries after the
 * barrier, while the task goes on (keyed.c "Asynchronous snapshots").
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log_write.h"

/* ---- registries ------------------------------------------------------------------ */

static void st_task_free(void *p)
{
	st_task *s = p;
	if (s)
		free(s->base);
	free(p);
}

st_task *st_of(task *t)
{
	if (!t->keyed) {
		st_task *s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
		s->t = t;
		s->sub = (uint16_t)t->subtask;
		for (int i = 0; i < ST_MAX_TABLES; i++)
			s->binds[i] = (st_bind){ .owner = s, .tab = (uint8_t)i };
		t->keyed = s;
		t->keyed_free = st_task_free;
	}
	return t->keyed;
}

static int reg_add(task *t, const char *name, kvtab *tab, tsvc *svc)
{
	st_task *s = st_of(t);
	if (!s)
		return -ENOMEM;
	if (strlen(name) >= sizeof(s->regs[0].name))
		return -ENAMETOOLONG;
	for (int i = 0; i < s->n; i++)
		if (!strcmp(s->regs[i].name, name))
			return -EEXIST;
	if (s->n == ST_MAX_TABLES)
		return -E2BIG;
	st_reg *r = &s->regs[s->n++];
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->tab = tab;
	r->svc = svc;
	return 0;
}

int state_register_table(task *t, const char *name, kvtab *tab)
{
	return reg_add(t, name, tab, NULL);
}

int state_register_timers(task *t, const char *name, tsvc *s)
{
	return reg_add(t, name, NULL, s);
}

/* ---- log entries ----------------------------------------------------------------- */

static size_t key_len(weir_type kt, skey k)
{
	return kt == WEIR_STR ? ((const kstr *)(uintptr_t)k.v)->len : 8;
}

static const void *key_bytes(weir_type kt, const skey *k)
{
	return kt == WEIR_STR ? ((const kstr *)(uintptr_t)k->v)->data
			      : (const void *)&k->v;
}

/* Reserve an entry of task s in log w and fill its header; returns where
 * the value goes (after the key), or NULL (error recorded in s->err). */
static char *entry_write(st_task *s, slog *w, uint8_t tab, uint8_t kind,
			 uint64_t khash, const void *key, size_t klen,
			 int64_t ns, size_t vlen)
{
	char *p = slog_reserve(w, ST_ENTRY_HDR + klen + vlen);
	if (!p) {
		if (!s->err)
			s->err = slog_error(w) ? slog_error(w) : -ENOMEM;
		return NULL;
	}
	uint32_t kl = (uint32_t)klen, vl = (uint32_t)vlen;
	uint16_t zero = 0;
	p[0] = (char)kind;
	p[1] = (char)tab;
	memcpy(p + 2, &s->node, 2);
	memcpy(p + 4, &s->sub, 2);
	memcpy(p + 6, &zero, 2);
	memcpy(p + 8, &kl, 4);
	memcpy(p + 12, &vl, 4);
	memcpy(p + 16, &khash, 8);
	memcpy(p + 24, &ns, 8);
	if (klen)
		memcpy(p + ST_ENTRY_HDR, key, klen);
	return p + ST_ENTRY_HDR + klen;
}

static char *entry_begin(st_bind *b, uint8_t kind, weir_type kt, skey k,
			 int64_t ns, size_t vlen)
{
	return entry_write(b->owner, b->owner->log, b->tab, kind, k.hash,
			   key_bytes(kt, &k), key_len(kt, k), ns, vlen);
}

/* A whole value: a PUT, or a snapshot's SNAP. */
static inline void log_value(st_bind *b, uint8_t kind, const kvtab *t, skey k, int64_t ns,
			     const void *value)
{
	st_task *s = b->owner;
	if (!s->log)
		return;
	if (b->plain) {
		char *v = entry_write(s, s->log, b->tab, kind, k.hash, &k.v, 8, ns, b->vsize);
		if (v)
			memcpy(v, value, b->vsize);
		return;
	}
	size_t vlen = kv_value_encoded_size(t, value);
	char *v = entry_begin(b, kind, kv_key_type(t), k, ns, vlen);
	if (v)
		kv_value_encode(t, value, v);
}

static void st_log_put(st_bind *b, const kvtab *t, skey k, int64_t ns,
		       const void *value)
{
	log_value(b, ST_PUT, t, k, ns, value);
}

static void st_log_snap(st_bind *b, const kvtab *t, skey k, int64_t ns,
			const void *value)
{
	log_value(b, ST_SNAP, t, k, ns, value);
}

static void *st_log_snap_run(st_bind *b, const kvtab *t, uint32_t n, uint32_t slot_size)
{
	st_task *s = b->owner;
	(void)t;
	if (!s->log)
		return NULL;
	return entry_write(s, s->log, b->tab, ST_SNAPS, 0, NULL, 0, (int64_t)n,
			   (size_t)n * slot_size);
}

static void st_log_append(st_bind *b, const kvtab *t, skey k, int64_t ns,
			  unsigned list, const void *p, uint32_t len)
{
	if (!b->owner->log)
		return;
	char *v = entry_begin(b, ST_APPEND, kv_key_type(t), k, ns, 4 + (size_t)len);
	if (v) {
		uint32_t l = list;
		memcpy(v, &l, 4);
		memcpy(v + 4, p, len);
	}
}

static void st_log_del(st_bind *b, const kvtab *t, skey k, int64_t ns)
{
	if (b->owner->log)
		entry_begin(b, ST_DEL, kv_key_type(t), k, ns, 0);
}

static void st_log_timer(st_bind *b, bool add, weir_type kt, const timer *tm)
{
	if (!b->owner->log)
		return;
	char *v = entry_begin(b, add ? ST_TIMER_ADD : ST_TIMER_DEL, kt, tm->key,
			      tm->ns, 8);
	if (v)
		memcpy(v, &tm->ts, 8);
}

/* What a bound table or timer service logs through (state.h). */
static const st_log_ops log_ops = {
	.put = st_log_put,
	.append = st_log_append,
	.del = st_log_del,
	.timer = st_log_timer,
	.snap = st_log_snap,
	.snap_run = st_log_snap_run,
};

int state_bind_log(task *t, struct slog *log)
{
	st_task *k = st_of(t);
	if (!k)
		return -ENOMEM;
	k->log = log;
	for (int r = 0; r < k->n; r++) {
		const kvtab_conf *c = k->regs[r].tab ? kv_conf(k->regs[r].tab) : NULL;
		k->binds[r].plain = c && c->key_type != WEIR_STR && !c->nlists &&
				    !c->encoded_size && !c->encode;
		k->binds[r].vsize = c ? c->vsize : 0;
		if (!k->regs[r].tab)
			tsvc_bind(k->regs[r].svc, &log_ops, log ? &k->binds[r] : NULL);
		else if (kv_bind(k->regs[r].tab, &log_ops, log ? &k->binds[r] : NULL) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* ---- materialization: every entry of a task's tables, as PUTs and TIMER+ --------- */

typedef struct dump_ctx {
	st_task *s;
	slog *w;
	uint8_t tab;
	weir_type kt;
	const kvtab *t;
	uint64_t entries, bytes;
} dump_ctx;

static int dump_entry(void *arg, skey k, int64_t ns, void *value)
{
	dump_ctx *d = arg;
	size_t vlen = kv_value_encoded_size(d->t, value);
	char *v = entry_write(d->s, d->w, d->tab, ST_PUT, k.hash,
			      key_bytes(d->kt, &k), key_len(d->kt, k), ns, vlen);
	if (!v)
		return 1;
	kv_value_encode(d->t, value, v);
	d->entries++;
	d->bytes += ST_ENTRY_HDR + key_len(d->kt, k) + vlen;
	return 0;
}

static int dump_timer(void *arg, const timer *tm)
{
	dump_ctx *d = arg;
	char *v = entry_write(d->s, d->w, d->tab, ST_TIMER_ADD, tm->key.hash,
			      key_bytes(d->kt, &tm->key), key_len(d->kt, tm->key),
			      tm->ns, 8);
	if (!v)
		return 1;
	memcpy(v, &tm->ts, 8);
	d->entries++;
	d->bytes += ST_ENTRY_HDR + key_len(d->kt, tm->key) + 8;
	return 0;
}

int st_materialize(st_task *s, slog *w, slog_pos *from, slog_pos *to,
		   uint64_t *bytes)
{
	*from = slog_mark(w);
	/* The MAT entry says how many entries follow per registration, so a
	 * restore can size the tables once. */
	char *cnt = entry_write(s, w, 0, ST_MAT, 0, NULL, 0, 0, 8 * (size_t)s->n);
	if (!cnt)
		return s->err;
	for (int i = 0; i < s->n; i++) {
		uint64_t n = s->regs[i].tab ? kv_count(s->regs[i].tab) : tsvc_count(s->regs[i].svc);
		memcpy(cnt + 8 * i, &n, 8);
	}
	for (int i = 0; i < s->n; i++) {
		st_reg *r = &s->regs[i];
		dump_ctx d = { .s = s, .w = w, .tab = (uint8_t)i };
		if (r->tab) {
			d.t = r->tab;
			d.kt = kv_key_type(r->tab);
			kv_foreach(r->tab, dump_entry, &d);
		} else {
			d.kt = tsvc_key_type(r->svc);
			tsvc_foreach(r->svc, dump_timer, &d);
		}
		*bytes += d.bytes;
		if (s->err)
			return s->err;
	}
	*to = slog_mark(w);
	return s->err;
}

/* ---- asynchronous snapshots ------------------------------------------------------ */

int st_snapshot_begin(st_task *s, slog *w, bool mat, slog_pos *from)
{
	if (mat) {
		*from = slog_mark(w);
		char *cnt = entry_write(s, w, 0, ST_MAT, 0, NULL, 0, 0, 8 * (size_t)s->n);
		if (!cnt)
			return s->err;
		for (int i = 0; i < s->n; i++) {
			uint64_t n = s->regs[i].tab ? kv_count(s->regs[i].tab)
						    : tsvc_count(s->regs[i].svc);
			memcpy(cnt + 8 * i, &n, 8);
		}
	}
	for (int i = 0; i < s->n; i++) {
		st_reg *r = &s->regs[i];
		if (r->tab) {
			kv_snapshot_begin(r->tab, mat);
		} else if (mat) {
			/* Timers are written now (see log_write.h). */
			dump_ctx d = { .s = s, .w = w, .tab = (uint8_t)i,
				       .kt = tsvc_key_type(r->svc) };
			tsvc_foreach(r->svc, dump_timer, &d);
		}
		if (s->err)
			return s->err;
	}
	for (int i = 0; i < s->n; i++)
		if (s->regs[i].tab)
			s->snapping = true;
	return s->err;
}

size_t st_snapshot_step(st_task *s, size_t budget)
{
	size_t n = 0;
	bool pending = false;
	for (int i = 0; i < s->n; i++) {
		kvtab *t = s->regs[i].tab;
		if (!t || !kv_snapshot_pending(t))
			continue;
		if (n < budget)
			n += kv_snapshot_step(t, budget - n);
		pending |= kv_snapshot_pending(t);
	}
	s->snapping = pending;
	return n;
}

/* ---- the barrier's flush --------------------------------------------------------- */

/* See the top of the file. */
void st_flush_dirty(st_task *k)
{
	for (int i = 0; i < k->n; i++)
		if (k->regs[i].tab)
			kv_flush_dirty(k->regs[i].tab);
}

void st_forget_dirty(st_task *k)
{
	for (int i = 0; i < k->n; i++)
		if (k->regs[i].tab)
			kv_dirty_forget(k->regs[i].tab);
}
