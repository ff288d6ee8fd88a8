/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Recovery (store_internal.h st_restore_from): a job restored from a
 * manifest and the state logs it points at, before the job runs, on the
 * main thread.  The manifest's operators and tables are mapped onto the
 * job's by name (map_job); each core's log is read once, the ranges of
 * its tasks merged (scan_core), and every entry goes to the subtask that
 * owns its key group now, so a savepoint restores at another parallelism
 * (scan_range, apply).  Timer entries are netted and added at the end, in
 * time order (restore_timers); then in-flight data is read (inflight.c),
 * operators restore their own state and watermarks, and last the
 * in-flight data goes back into the channels.  A corrupt or missing log
 * found midway empties the tables again, so the store can try an older
 * checkpoint.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyhash.h"
#include "store_internal.h"

/* Messages name paths; one cut short is still a useful message. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

typedef struct tmr_op {
	uint32_t task;      /* index in runtime tasks */
	uint8_t reg;
	int8_t delta;       /* +1 add, -1 delete */
	uint32_t klen;
	int64_t ts, ns;
	uint64_t khash, seq;
	char *key;          /* klen bytes, owned */
} tmr_op;

/* A subtask of node n this process runs, whose registrations stand for
 * every subtask's (they all register the same); NULL: none here. */
static task *rep_task(task **by_node_n, int par)
{
	for (int i = 0; by_node_n && i < par; i++)
		if (is_local(by_node_n[i]))
			return by_node_n[i];
	return NULL;
}

static int task_index(runtime *rt, task *t)
{
	for (int i = 0; i < runtime_ntasks(rt); i++)
		if (runtime_task(rt, i) == t)
			return i;
	return -1;
}

static skey make_key(kdict *d, weir_type kt, uint64_t khash, const char *kp,
		     uint32_t klen, bool *ok)
{
	*ok = true;
	if (kt == WEIR_STR) {
		weir_value v = { .str = { kp, klen } };
		skey k = key_from_value(d, kt, v);
		if (!k.v || k.hash != khash) {
			if (k.v)
				key_done(d, kt, k);
			*ok = false;
		}
		return k;
	}
	skey k = { .hash = khash, .v = 0 };
	if (klen != 8)
		*ok = false;
	else
		memcpy(&k.v, kp, 8);
	return k;
}

/* ---- applying entries to the tables ---------------------------------------------- */

/* Apply one entry to registered structure r of target task t. */
static int apply(rctx *c, task *t, int reg, uint8_t kind, uint64_t khash,
		 const char *kp, uint32_t klen, int64_t ns, const char *vp,
		 uint32_t vlen)
{
	st_task *k = t->keyed;
	st_reg *r = &k->regs[reg];
	if (kind == ST_TIMER_ADD || kind == ST_TIMER_DEL) {
		if (!r->svc || vlen != 8)
			return -EINVAL;
		if (c->ntmr == c->cap_tmr) {
			size_t cap = c->cap_tmr ? c->cap_tmr * 2 : 1024;
			tmr_op *n = realloc(c->tmr, cap * sizeof(*n));
			if (!n)
				return -ENOMEM;
			c->tmr = n;
			c->cap_tmr = cap;
		}
		tmr_op *o = &c->tmr[c->ntmr];
		*o = (tmr_op){ .task = (uint32_t)task_index(c->rt, t), .reg = (uint8_t)reg,
			       .delta = kind == ST_TIMER_ADD ? 1 : -1, .klen = klen,
			       .ns = ns, .khash = khash, .seq = c->ntmr };
		memcpy(&o->ts, vp, 8);
		o->key = malloc(klen ? klen : 1);
		if (!o->key)
			return -ENOMEM;
		memcpy(o->key, kp, klen);
		c->ntmr++;
		return 0;
	}
	if (!r->tab)
		return -EINVAL;
	kvtab *tab = r->tab;
	const kvtab_conf *conf = kv_conf(tab);
	weir_type kt = kv_key_type(tab);
	kdict *d = kv_dict(tab);
	bool ok;
	skey key = make_key(d, kt, khash, kp, klen, &ok);
	if (!ok)
		return -EINVAL;
	/* Hold the key: a DEL may drop the table's last reference. */
	key_retain(kt, key);
	int rc = 0;
	bool created;
	void *v;
	switch (kind) {
	case ST_PUT:
		v = kv_upsert(tab, key, ns, &created);
		if (!v) {
			rc = -ENOMEM;
			break;
		}
		if (!created && conf->free_value)
			conf->free_value(v);
		memset(v, 0, conf->vsize);
		rc = kv_value_decode(tab, v, vp, vlen);
		if (rc < 0)
			kv_delete(tab, key, ns);
		break;
	case ST_APPEND: {
		uint32_t list;
		if (vlen < 4 || (memcpy(&list, vp, 4),
				 list >= (conf->append ? 1u : conf->nlists))) {
			rc = -EINVAL;
			break;
		}
		v = kv_upsert(tab, key, ns, &created);
		if (!v) {
			rc = -ENOMEM;
			break;
		}
		if (conf->append)
			rc = conf->append(v, vp + 4, vlen - 4);
		else
			rc = blist_add(&((blist **)v)[list], vp + 4, vlen - 4);
		break;
	}
	case ST_DEL:
		kv_delete(tab, key, ns);
		break;
	default:
		rc = -EINVAL;
	}
	key_release(d, kt, key);
	return rc;
}

/* ---- reading each core's log once ------------------------------------------------ */

/* Key groups [lo, hi) of subtask `sub` of `par` (the exchange's routing:
 * key group kg goes to kg * par / maxp). */
static void kg_range(int sub, int par, int maxp, uint64_t *lo, uint64_t *hi)
{
	*lo = ((uint64_t)sub * (uint64_t)maxp + (uint64_t)par - 1) / (uint64_t)par;
	*hi = ((uint64_t)(sub + 1) * (uint64_t)maxp + (uint64_t)par - 1) / (uint64_t)par;
}

/* A materialization of manifest task w starts with these entry counts:
 * size the tables that will receive its entries once, instead of growing
 * them step by step.  Best effort (a failure to reserve is no error). */
static void reserve_for(rctx *c, const mf_task *w, const char *vp, uint32_t vlen)
{
	const manifest *m = c->m;
	int gn = c->op_map[w->op];
	if (gn < 0 || !c->by_node[gn])
		return;
	int newp = c->node_par[gn], maxp = m->max_parallelism;
	uint64_t lo, hi;
	kg_range(w->sub, m->ops[w->op].parallelism, maxp, &lo, &hi);
	for (int tab = 0; tab < (int)(vlen / 8) && tab < m->ops[w->op].ntables; tab++) {
		int reg = c->tab_map[w->op][tab];
		uint64_t n;
		memcpy(&n, vp + 8 * tab, 8);
		if (reg < 0 || !n)
			continue;
		for (int sub = 0; sub < newp; sub++) {
			task *t = c->by_node[gn][sub];
			kvtab *tab_ = ((st_task *)t->keyed)->regs[reg].tab;
			if (!tab_)
				continue;
			uint64_t share, nlo, nhi;
			if (kv_conf(tab_)->broadcast) {
				share = w->sub == 0 ? n : 0;
			} else {
				kg_range(sub, newp, maxp, &nlo, &nhi);
				uint64_t a = lo > nlo ? lo : nlo, b = hi < nhi ? hi : nhi;
				share = b > a && hi > lo ? n * (b - a) / (hi - lo) : 0;
			}
			if (!share)
				continue;
			uint64_t *acc = &c->reserved[(size_t)task_index(c->rt, t) * ST_MAX_TABLES + reg];
			*acc += share;
			kv_reserve(tab_, *acc);
			if (kv_key_type(tab_) == WEIR_STR)
				kdict_reserve(kv_dict(tab_), kdict_count(kv_dict(tab_)) + share);
		}
	}
}

/*
 * Start fetching the table slot of the entry at p (of a frame ending at
 * end), if it is a keyed entry of a fixed-width key: replaying a
 * materialization inserts keys in an order unrelated to the new table's, so
 * each would otherwise wait for its own cache miss.  Returns the next
 * entry, or NULL at the frame's end or at anything malformed (the replay
 * itself reports that).
 */
static const char *prefetch_entry(rctx *c, const char *p, const char *end)
{
	const manifest *m = c->m;
	st_entry e;
	const char *next = entry_parse(p, end, &e);
	if (!next || (e.kind != ST_PUT && e.kind != ST_SNAP && e.kind != ST_DEL) || e.klen != 8 ||
	    e.node >= m->nops || e.tab >= m->ops[e.node].ntables)
		return next;
	int gn = c->op_map[e.node], reg = gn < 0 ? -1 : c->tab_map[e.node][e.tab];
	if (reg < 0)
		return next;
	uint64_t key;
	memcpy(&key, e.kp, 8);
	task *t = c->by_kg[gn][key_group(e.khash, (uint32_t)m->max_parallelism)];
	kvtab *tb = ((st_task *)t->keyed)->regs[reg].tab;
	if (tb && kv_key_type(tb) != WEIR_STR)
		kv_prefetch(tb, (skey){ .hash = e.khash, .v = key }, e.ns);
	return next;
}

#define PREFETCH_ENTRIES 12

/* Whether a table's values are plain bytes under fixed-width keys: its
 * PUTs restore by copying (what st_log_put's fast path writes). */
static bool plain_table(const kvtab *t)
{
	const kvtab_conf *c = kv_conf(t);
	return c->key_type != WEIR_STR && !c->nlists && !c->encoded_size && !c->encode &&
	       !c->decode && !c->free_value;
}

/* A PUT into a plain table: upsert and copy.  0, -EINVAL, -ENOMEM. */
static int apply_plain_put(kvtab *t, uint64_t khash, const char *kp, uint32_t klen,
			   int64_t ns, const char *vp, uint32_t vlen, uint32_t vsize)
{
	bool created;
	skey key = { .hash = khash };
	if (klen != 8 || vlen != vsize)
		return -EINVAL;
	memcpy(&key.v, kp, 8);
	void *v = kv_upsert(t, key, ns, &created);
	if (!v)
		return -ENOMEM;
	memcpy(v, vp, vsize);
	return 0;
}

/* How far ahead a run of slots (SNAPS) prefetches its records' targets. */
#define RUN_AHEAD 8

/* Start loading the slot a run's record at r will be written to. */
static void prefetch_rec(rctx *c, int gn, int reg, const char *r)
{
	uint64_t khash;
	skey key;
	int64_t ns;
	memcpy(&khash, r, 8);
	memcpy(&key.v, r + 8, 8);
	memcpy(&ns, r + 16, 8);
	key.hash = khash;
	task *t = c->by_kg[gn][key_group(khash, (uint32_t)c->m->max_parallelism)];
	kvtab *tb = ((st_task *)t->keyed)->regs[reg].tab;
	if (tb)
		kv_prefetch(tb, key, ns);
}

/* Apply one entry (PUT, APPEND, DEL, TIMER) of old subtask `sub` of graph
 * node gn, registration reg, to the task that owns its key group now (to
 * every local subtask for broadcast state).  0 or -errno. */
static int route(rctx *c, int gn, int reg, bool plain, bool bcast, uint32_t vsize, int sub,
		 uint8_t kind, uint64_t khash, const char *kp, uint32_t klen, int64_t ns,
		 const char *vp, uint32_t vlen)
{
	const manifest *m = c->m;
	int rc;
	if (kind == ST_PUT && plain && !bcast) {
		task *tt = c->by_kg[gn][key_group(khash, (uint32_t)m->max_parallelism)];
		if (!is_local(tt))
			return 0; /* another worker's key group */
		return apply_plain_put(((st_task *)tt->keyed)->regs[reg].tab, khash, kp, klen, ns,
				       vp, vlen, vsize);
	}
	if (bcast) {
		if (sub != 0)
			return 0; /* the same in every old subtask */
		for (int i = 0; i < c->node_par[gn]; i++)
			if (is_local(c->by_node[gn][i]) &&
			    (rc = apply(c, c->by_node[gn][i], reg, kind, khash, kp, klen, ns, vp,
					vlen)) < 0)
				return rc;
		return 0;
	}
	task *tgt = c->by_kg[gn][key_group(khash, (uint32_t)m->max_parallelism)];
	if (!is_local(tgt))
		return 0;
	return apply(c, tgt, reg, kind, khash, kp, klen, ns, vp, vlen);
}

/*
 * Where manifest task w's entries lie in the log of `core` of the run being
 * scanned (c->run): its own range in the manifest's run, or its base range
 * of that earlier run.  [*from, *to) takes every entry, [*to, *tail) only
 * SNAP entries (tail {0, 0}: none).  False if it has none there.
 */
static bool task_range(const rctx *c, const mf_task *w, int core, slog_pos *from,
		       slog_pos *to, slog_pos *tail)
{
	if (c->run == c->m->run) {
		if (w->core != core || (!w->from_off && !w->to_off))
			return false; /* nothing logged (no checkpoint directory) */
		*from = (slog_pos){ w->from_seg, w->from_off };
		*to = (slog_pos){ w->to_seg, w->to_off };
		*tail = (slog_pos){ w->tail_seg, w->tail_off };
		return true;
	}
	for (int i = 0; i < w->nbase; i++) {
		const mf_range *r = &w->base[i];
		if (r->run != c->run || r->core != core)
			continue;
		*from = (slog_pos){ r->from_seg, r->from_off };
		*to = (slog_pos){ r->to_seg, r->to_off };
		*tail = (slog_pos){ r->tail_seg, r->tail_off };
		return true;
	}
	return false;
}

/* Apply the entries of the manifest's tasks that lie in [from, to) of
 * core's log.  0 or -errno (message in c->err). */
static int scan_range(rctx *c, int core, slog_pos from, slog_pos to)
{
	const manifest *m = c->m;
	char prefix[32];
	slog_reader *rd = NULL;
	const mf_task *w = NULL;

	struct {
		bool valid, bcast, plain, in_tail;
		uint16_t node, sub;
		uint8_t tab;
		int gn, reg;
		uint32_t vsize;
	} rs = { .valid = false };

	snprintf(prefix, sizeof(prefix), "core-%d", core);
	int rc = slog_reader_open(c->logdir, prefix, from, to, &rd, c->err, c->errlen);
	if (rc < 0)
		return rc;
	const void *fp;
	size_t fn;
	while ((rc = slog_next(rd, &fp, &fn, c->err, c->errlen)) > 0) {
		const char *p = fp, *end = p + fn, *pf = p;
		slog_pos pos = slog_reader_frame_pos(rd);
		rs.valid = false; /* ranges are checked per frame */
		int ahead = 0;
		c->s->restore_bytes += fn + 8;
		while (p < end) {
			/* Keep the prefetch cursor PREFETCH_ENTRIES ahead. */
			while (pf && pf < end && ahead < PREFETCH_ENTRIES) {
				pf = prefetch_entry(c, pf, end);
				ahead++;
			}
			ahead--;
			st_entry e;
			const char *next = entry_parse(p, end, &e);
			if (!next || e.kind < ST_PUT || e.kind > ST_SNAPS || e.node >= m->nops ||
			    e.sub >= m->ops[e.node].parallelism)
				goto bad;
			p = next;
			uint8_t kind = e.kind, tab = e.tab;
			uint16_t node = e.node, sub = e.sub;
			uint32_t klen = e.klen, vlen = e.vlen;
			uint64_t khash = e.khash;
			int64_t ns = e.ns;
			const char *kp = e.kp, *vp = e.vp;
			if (kind == ST_CHAN)
				continue; /* in-flight data: inflight.c */
			/* Entries come in long runs of one (node, subtask,
			 * table) -- a materialization -- so what they resolve to
			 * is kept from one entry to the next. */
			if (!rs.valid || node != rs.node || sub != rs.sub || tab != rs.tab ||
			    kind == ST_MAT) {
				int wi = c->mt_of[node][sub];
				rs.valid = false;
				if (wi < 0)
					continue; /* a task the checkpoint does not cover */
				w = &m->tasks[wi];
				slog_pos rf, rt, rtail;
				if (!task_range(c, w, core, &rf, &rt, &rtail) ||
				    slog_pos_cmp(pos, rf) < 0)
					continue; /* before its materialization */
				/* After its barrier only its snapshot's entries
				 * count, up to its tail. */
				rs.in_tail = slog_pos_cmp(pos, rt) >= 0;
				if (rs.in_tail && slog_pos_cmp(pos, rtail) >= 0)
					continue; /* after it */
				if (kind == ST_MAT) {
					if (!rs.in_tail)
						reserve_for(c, w, vp, vlen);
					continue;
				}
				if (tab >= m->ops[node].ntables)
					goto bad;
				rs.gn = c->op_map[node];
				rs.reg = rs.gn < 0 ? -1 : c->tab_map[node][tab];
				rs.bcast = rs.plain = false;
				if (rs.reg >= 0) {
					st_task *k0 = rep_task(c->by_node[rs.gn],
							       c->node_par[rs.gn])->keyed;
					kvtab *t0 = k0->regs[rs.reg].tab;
					rs.bcast = t0 && kv_conf(t0)->broadcast;
					rs.plain = t0 && plain_table(t0);
					rs.vsize = t0 ? kv_conf(t0)->vsize : 0;
				}
				rs.node = node;
				rs.sub = sub;
				rs.tab = tab;
				rs.valid = true;
			}
			int gn = rs.gn, reg = rs.reg;
			if (reg < 0)
				continue; /* state the job no longer has (allowed) */
			if (rs.in_tail && kind != ST_SNAP && kind != ST_SNAPS)
				continue; /* a change after the barrier */
			/* A SNAPS entry is a run of slots of a plain table, each
			 * [khash][key][ns][value, padded to 8]: one PUT each. */
			uint32_t nrec = 1, rec = 0, ri = 0;
			const char *runp = NULL;
			if (kind == ST_SNAPS) {
				rec = 24 + ((rs.vsize + 7) & ~7u);
				if (ns <= 0 || ns > (int64_t)vlen / 24 || klen)
					goto bad;
				if (!rs.plain || (uint64_t)ns * rec != vlen) {
					rc = -EINVAL; /* another value layout */
					goto fail;
				}
				nrec = (uint32_t)ns;
				runp = vp;
				for (uint32_t j = 0; j < nrec && j < RUN_AHEAD; j++)
					prefetch_rec(c, gn, reg, runp + (size_t)j * rec);
			}
			if (kind == ST_SNAP || kind == ST_SNAPS)
				kind = ST_PUT; /* a value at the barrier */
			for (;;) {
				if (runp) {
					const char *r = runp + (size_t)ri * rec;
					memcpy(&khash, r, 8);
					kp = r + 8;
					klen = 8;
					memcpy(&ns, r + 16, 8);
					vp = r + 24;
					vlen = rs.vsize;
					if (ri + RUN_AHEAD < nrec)
						prefetch_rec(c, gn, reg, runp + (size_t)(ri + RUN_AHEAD) * rec);
				}
				if ((rc = route(c, gn, reg, rs.plain, rs.bcast, rs.vsize, sub, kind, khash,
						kp, klen, ns, vp, vlen)) < 0)
					goto fail;
				if (++ri >= nrec)
					break;
			}
		}
	}
	slog_reader_close(rd);
	return rc;
bad:
	snprintf(c->err, c->errlen, "%s/%s: malformed state-log entry%s%s%s", c->logdir,
		 prefix, w ? " after one of operator '" : "", w ? m->ops[w->op].uid : "",
		 w ? "'" : "");
	slog_reader_close(rd);
	return -EBADMSG;
fail:
	snprintf(c->err, c->errlen, "%s/%s: cannot restore an entry of '%s' (%s): %s",
		 c->logdir, prefix, m->ops[w->op].uid, m->ops[w->op].tables[0],
		 rc == -EINVAL ? "value or key does not decode for this operator"
			       : strerror(-rc));
	slog_reader_close(rd);
	return rc;
}

typedef struct log_range {
	slog_pos from, to;
} log_range;

static int range_cmp(const void *a, const void *b)
{
	return slog_pos_cmp(((const log_range *)a)->from, ((const log_range *)b)->from);
}

/*
 * Read core's log once: the ranges of the manifest's tasks on that core
 * overlap (their materializations interleave), so they are merged and each
 * merged stretch is read once, every entry going to the task whose range
 * holds it.  0 or -errno.
 */
static int scan_core(rctx *c, int core)
{
	const manifest *m = c->m;
	log_range *r = malloc(((size_t)m->ntasks + 1) * sizeof(*r));
	int n = 0, rc = 0;
	if (!r)
		return -ENOMEM;
	for (int i = 0; i < m->ntasks; i++) {
		slog_pos f, t, tail;
		if (!task_range(c, &m->tasks[i], core, &f, &t, &tail))
			continue;
		r[n++] = (log_range){ f, tail.off ? tail : t };
	}
	qsort(r, (size_t)n, sizeof(*r), range_cmp);
	for (int i = 0; i < n && rc == 0;) {
		log_range u = r[i++];
		while (i < n && slog_pos_cmp(r[i].from, u.to) <= 0) {
			if (slog_pos_cmp(r[i].to, u.to) > 0)
				u.to = r[i].to;
			i++;
		}
		if (slog_pos_cmp(u.from, u.to) < 0)
			rc = scan_range(c, core, u.from, u.to);
	}
	free(r);
	return rc;
}

/* Undo what a failed restore applied: empty every registered table. */
static void reset_tables(rctx *c)
{
	for (int i = 0; i < runtime_ntasks(c->rt); i++) {
		st_task *k = runtime_task(c->rt, i)->keyed;
		for (int r = 0; k && r < k->n; r++)
			if (k->regs[r].tab)
				kv_clear_all(k->regs[r].tab);
	}
}

/* ---- timers: netted, then added in time order ------------------------------------ */

static int tmr_cmp(const void *a, const void *b)
{
	const tmr_op *x = a, *y = b;

#define CMP(f) if (x->f != y->f) return x->f < y->f ? -1 : 1
	CMP(task);
	CMP(reg);
	CMP(ts);
	CMP(ns);
	CMP(khash);
	CMP(klen);
	int k = memcmp(x->key, y->key, x->klen);
	if (k)
		return k;
	CMP(seq);
	return 0;
#undef CMP
}

static int tmr_order(const void *a, const void *b)
{
	const tmr_op *x = a, *y = b;
	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static bool same_timer(const tmr_op *x, const tmr_op *y)
{
	return x->task == y->task && x->reg == y->reg && x->ts == y->ts &&
	       x->ns == y->ns && x->khash == y->khash && x->klen == y->klen &&
	       !memcmp(x->key, y->key, x->klen);
}

/* Net the timer adds and deletes and add the survivors, in time order. */
static int restore_timers(rctx *c)
{
	tmr_op *keep = malloc((c->ntmr ? c->ntmr : 1) * sizeof(*keep));
	size_t n = 0;
	int rc = 0;
	if (!keep)
		return -ENOMEM;
	if (c->ntmr)
		qsort(c->tmr, c->ntmr, sizeof(*c->tmr), tmr_cmp);
	for (size_t i = 0; i < c->ntmr;) {
		size_t j = i;
		int net = 0;
		while (j < c->ntmr && same_timer(&c->tmr[i], &c->tmr[j]))
			net += c->tmr[j++].delta;
		for (size_t k = j; k > i && net > 0; k--)
			if (c->tmr[k - 1].delta > 0) {
				keep[n++] = c->tmr[k - 1];
				net--;
			}
		i = j;
	}
	if (n)
		qsort(keep, n, sizeof(*keep), tmr_order);
	for (size_t i = 0; i < n && rc == 0; i++) {
		task *t = runtime_task(c->rt, (int)keep[i].task);
		tsvc *svc = ((st_task *)t->keyed)->regs[keep[i].reg].svc;
		weir_type kt = tsvc_key_type(svc);
		bool ok;
		skey k = make_key(tsvc_dict(svc), kt, keep[i].khash, keep[i].key,
				  keep[i].klen, &ok);
		if (!ok) {
			rc = -EINVAL;
			break;
		}
		rc = tsvc_add(svc, keep[i].ts, k, keep[i].ns);
		key_done(tsvc_dict(svc), kt, k);
	}
	free(keep);
	return rc;
}

/* ---- the restore ----------------------------------------------------------------- */

static void rctx_free(rctx *c)
{
	for (size_t i = 0; i < c->ntmr; i++)
		free(c->tmr[i].key);
	free(c->tmr);
	if (c->mt_of)
		for (int o = 0; o < c->m->nops; o++)
			free(c->mt_of[o]);
	free(c->mt_of);
	free(c->reserved);
	if (c->els)
		inflight_free(c->rt, c->els, c->nels);
	free(c->op_map);
	free(c->tab_map);
	free(c->node_par);
	if (c->by_node)
		for (int n = 0; n < runtime_graph(c->rt)->nnodes; n++)
			free(c->by_node[n]);
	free(c->by_node);
	if (c->by_kg)
		for (int n = 0; n < runtime_graph(c->rt)->nnodes; n++)
			free(c->by_kg[n]);
	free(c->by_kg);
}

/* Map the manifest's operators and tables onto the job's.  0 or -errno. */
static int map_job(rctx *c, bool allow_missing)
{
	const manifest *m = c->m;
	const graph *g = runtime_graph(c->rt);
	c->op_map = malloc((size_t)m->nops * sizeof(int));
	c->tab_map = malloc((size_t)m->nops * sizeof(*c->tab_map));
	c->node_par = calloc((size_t)g->nnodes, sizeof(int));
	c->by_node = calloc((size_t)g->nnodes, sizeof(task **));
	if (!c->op_map || !c->tab_map || !c->node_par || !c->by_node)
		return -ENOMEM;
	for (int i = 0; i < runtime_ntasks(c->rt); i++) {
		task *t = runtime_task(c->rt, i);
		int n = t->node->id;
		if (!c->by_node[n]) {
			c->by_node[n] = calloc((size_t)t->parallelism, sizeof(task *));
			if (!c->by_node[n])
				return -ENOMEM;
			c->node_par[n] = t->parallelism;
		}
		c->by_node[n][t->subtask] = t;
	}
	/* Where each key group goes now (as the exchange routes it). */
	int maxp = c->s->cfg->max_parallelism;
	c->by_kg = calloc((size_t)g->nnodes, sizeof(task **));
	if (!c->by_kg)
		return -ENOMEM;
	for (int n = 0; n < g->nnodes; n++) {
		if (!c->by_node[n])
			continue;
		if (!(c->by_kg[n] = malloc((size_t)maxp * sizeof(task *))))
			return -ENOMEM;
		for (int kg = 0; kg < maxp; kg++)
			c->by_kg[n][kg] = c->by_node[n][(int)((uint64_t)kg *
							      (uint64_t)c->node_par[n] /
							      (uint64_t)maxp)];
	}
	if (m->max_parallelism != c->s->cfg->max_parallelism) {
		snprintf(c->err, c->errlen,
			 "it was taken with max parallelism (key groups) %d, the job has %d: "
			 "keyed state cannot be redistributed; run with --max-parallelism %d",
			 m->max_parallelism, c->s->cfg->max_parallelism, m->max_parallelism);
		return -EINVAL;
	}
	for (int o = 0; o < m->nops; o++) {
		c->op_map[o] = -1;
		for (int t = 0; t < ST_MAX_TABLES; t++)
			c->tab_map[o][t] = -1;
		for (int n = 0; n < g->nnodes; n++)
			if (!strcmp(c->s->uids[n], m->ops[o].uid))
				c->op_map[o] = n;
		bool has_blob = false;
		for (int i = 0; i < m->ntasks; i++)
			if (m->tasks[i].op == o && m->tasks[i].blob_len)
				has_blob = true;
		int n = c->op_map[o];
		if (n < 0) {
			if ((m->ops[o].ntables || has_blob) && !allow_missing) {
				snprintf(c->err, c->errlen,
					 "it has state of operator '%s', which the job does not "
					 "have (rename it back, or pass --allow-non-restored-state "
					 "to drop that state)", m->ops[o].uid);
				return -EINVAL;
			}
			continue;
		}
		task *rt0 = rep_task(c->by_node[n], c->node_par[n]);
		st_task *k = rt0 ? rt0->keyed : NULL;
		if (!rt0 && c->by_node[n])
			continue; /* no subtask of it here: its entries go elsewhere */
		for (int t = 0; t < m->ops[o].ntables; t++) {
			for (int r = 0; k && r < k->n; r++)
				if (!strcmp(k->regs[r].name, m->ops[o].tables[t]))
					c->tab_map[o][t] = r;
			if (c->tab_map[o][t] < 0 && !allow_missing) {
				snprintf(c->err, c->errlen,
					 "operator '%s' has no state named '%s' in this job "
					 "(pass --allow-non-restored-state to drop it)",
					 m->ops[o].uid, m->ops[o].tables[t]);
				return -EINVAL;
			}
		}
	}
	return 0;
}

/*
 * Incremental across restarts: each restored task whose operator kept its
 * parallelism (so the same key groups) and has tables takes the ranges its
 * state came from -- the manifest task's base ranges and its own -- as its
 * base, instead of materializing again at its first checkpoint.  Tasks of
 * a rescaled operator get none and materialize, as before.  0 or -ENOMEM.
 */
static int inherit_ranges(rctx *c)
{
	const manifest *m = c->m;
	for (int i = 0; i < m->ntasks; i++) {
		const mf_task *w = &m->tasks[i];
		int n = c->op_map[w->op];
		if (n < 0 || !c->by_node[n] || c->node_par[n] != m->ops[w->op].parallelism ||
		    (!w->from_off && !w->to_off))
			continue;
		task *t = c->by_node[n][w->sub];
		st_task *k = t->keyed;
		bool tables = false;
		for (int r = 0; k && r < k->n; r++)
			tables |= k->regs[r].tab != NULL;
		if (!is_local(t) || !tables)
			continue;
		mf_range *b = malloc(((size_t)w->nbase + 1) * sizeof(*b));
		if (!b)
			return -ENOMEM;
		if (w->nbase)
			memcpy(b, w->base, (size_t)w->nbase * sizeof(*b));
		b[w->nbase] = (mf_range){ m->run, w->core, w->from_seg, w->from_off, w->to_seg,
					  w->to_off, w->tail_seg, w->tail_off };
		free(k->base);
		k->base = b;
		k->nbase = w->nbase + 1;
	}
	return 0;
}

int st_restore_from(ckpt_store *s, const manifest *m, const char *logdir, bool inherit,
		    char *err, size_t errlen)
{
	rctx c = { .s = s, .rt = s->rt, .m = m, .err = err, .errlen = errlen };
	int rc;
	snprintf(c.logdir, sizeof(c.logdir), "%s", logdir);
	if ((rc = map_job(&c, s->cfg->allow_non_restored_state)) < 0)
		goto out;
	/* Which manifest task wrote what (node, subtask) says, and a sizing
	 * accumulator per table. */
	c.mt_of = calloc((size_t)m->nops, sizeof(*c.mt_of));
	c.reserved = calloc((size_t)runtime_ntasks(c.rt) * ST_MAX_TABLES + 1, sizeof(uint64_t));
	if (!c.mt_of || !c.reserved) {
		rc = -ENOMEM;
		goto out;
	}
	for (int o = 0; o < m->nops; o++) {
		if (!(c.mt_of[o] = malloc(((size_t)m->ops[o].parallelism + 1) * sizeof(int)))) {
			rc = -ENOMEM;
			goto out;
		}
		for (int sub = 0; sub <= m->ops[o].parallelism; sub++)
			c.mt_of[o][sub] = -1;
	}
	for (int i = 0; i < m->ntasks; i++)
		if (m->tasks[i].sub < m->ops[m->tasks[i].op].parallelism)
			c.mt_of[m->tasks[i].op][m->tasks[i].sub] = i;
	/* One pass per core's log: check each frame and apply its entries.
	 * Timers and operator state are applied only once everything was
	 * read; a bad checksum, a truncated or missing segment found midway
	 * empties the tables again, so a corrupt checkpoint leaves the job
	 * free to try an older one as if nothing had been loaded. */
	/* The runs to read, oldest first: the base ranges' earlier runs (in
	 * the manifest's folder's parent, beside its run), then its own. */
	int ncores = 0;
	uint64_t next = 0;
	for (int i = 0; i < m->ntasks; i++) {
		if (m->tasks[i].core >= ncores)
			ncores = m->tasks[i].core + 1;
		for (int b = 0; b < m->tasks[i].nbase; b++)
			if (m->tasks[i].base[b].core >= ncores)
				ncores = m->tasks[i].base[b].core + 1;
	}
	for (;;) {
		/* the oldest run not read yet (the manifest's own comes last) */
		uint64_t run = m->run;
		for (int i = 0; i < m->ntasks; i++)
			for (int b = 0; b < m->tasks[i].nbase; b++)
				if (m->tasks[i].base[b].run >= next && m->tasks[i].base[b].run < run)
					run = m->tasks[i].base[b].run;
		c.run = run;
		if (run == m->run) {
			snprintf(c.logdir, sizeof(c.logdir), "%s", logdir);
		} else {
			char parent[sizeof(c.logdir)];
			snprintf(parent, sizeof(parent), "%s", logdir);
			char *sl = strrchr(parent, '/');
			if (sl)
				*sl = 0;
			else
				snprintf(parent, sizeof(parent), ".");
			snprintf(c.logdir, sizeof(c.logdir), "%.3200s/run-%06llu", parent,
				 (unsigned long long)run);
		}
		for (int core = 0; core < ncores; core++)
			if ((rc = scan_core(&c, core)) < 0) {
				reset_tables(&c);
				goto out;
			}
		if (run == m->run)
			break;
		next = run + 1;
	}
	snprintf(c.logdir, sizeof(c.logdir), "%s", logdir);
	if ((rc = restore_timers(&c)) < 0) {
		snprintf(err, errlen, "restoring timers: %s", strerror(-rc));
		goto out;
	}
	/* In-flight data of an unaligned checkpoint: read and checked before
	 * any operator restores its state (a sink's restore commits files). */
	if ((rc = inflight_load(&c)) < 0) {
		reset_tables(&c);
		goto out;
	}
	/* Operator state and watermarks, per new task, from every old
	 * subtask of its operator. */
	for (int o = 0; o < m->nops; o++) {
		int n = c.op_map[o];
		if (n < 0 || !c.by_node[n])
			continue;
		op_blob *blobs = calloc((size_t)m->ops[o].parallelism + 1, sizeof(*blobs));
		if (!blobs) {
			rc = -ENOMEM;
			goto out;
		}
		int nb = 0;
		bool any = false;
		int64_t wm = INT64_MAX;
		for (int i = 0; i < m->ntasks; i++) {
			const mf_task *w = &m->tasks[i];
			if (w->op != o)
				continue;
			if (nb < m->ops[o].parallelism)
				blobs[nb++] = (op_blob){ w->sub, w->blob, w->blob_len };
			any |= w->blob_len > 0;
			if (w->watermark < wm)
				wm = w->watermark;
		}
		for (int sub = 0; sub < c.node_par[n]; sub++) {
			task *t = c.by_node[n][sub];
			if (!is_local(t))
				continue;
			if (wm != INT64_MAX && wm > t->watermark)
				t->watermark = wm;
			if (!any)
				continue;
			if (!t->ops->restore) {
				wlog(LOG_WARN, "operator '%s' has state in %s %lld but cannot "
				     "restore it", t->node->name,
				     m->savepoint ? "savepoint" : "checkpoint", (long long)m->id);
				continue;
			}
			op_restore r = { .old_parallelism = m->ops[o].parallelism, .n = nb,
					 .blobs = blobs, .savepoint = m->savepoint };
			if ((rc = t->ops->restore(t, &r)) < 0) {
				snprintf(err, errlen, "operator '%s' subtask %d: restoring its "
					 "state: %s", t->node->name, sub, strerror(-rc));
				free(blobs);
				goto out;
			}
		}
		free(blobs);
	}
	if (inherit && (rc = inherit_ranges(&c)) < 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	/* Last, as nothing can fail after it: in-flight data back into the
	 * channels. */
	inflight_inject(&c);
	rc = 0;
out:
	rctx_free(&c);
	return rc;
}
