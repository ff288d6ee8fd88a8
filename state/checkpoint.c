/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Checkpoint storage (see checkpoint.h): per-task registries of keyed
 * state, the state-log entries their mutations append, materialization,
 * manifests, recovery and savepoints.
 *
 * What a task's log range holds.  DEL, APPEND and timer entries are
 * appended as the mutation happens.  PUTs are deferred: kv_written only
 * marks the entry dirty, and at each barrier st_task_barrier has every
 * registered table log one PUT per dirty entry (kv_flush_dirty) before it
 * marks the task's position, so the range [materialization, mark) holds
 * each key's value at the barrier once, however often it changed (a
 * running sum over 4 M keys wrote a 56-byte entry per record, ~400 MB/s;
 * keyed.c explains why the order still replays correctly).  The cost moves
 * to the barrier: the task pauses to encode the changed entries, fewer
 * than the records since the previous barrier.  A barrier that
 * materializes into the log skips that: the materialization writes every
 * entry, so the dirty marks are just forgotten.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "keyhash.h"
#include "statelog.h"

/* Messages name paths; one cut short is still a useful message. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

/* ---- registries ------------------------------------------------------------------ */

/* Does this process run t?  (In a cluster, other workers run the rest.) */
static bool is_local(const task *t)
{
	return runtime_core_local(t->rt, task_core(t));
}


typedef struct st_task st_task;

struct st_bind {
	st_task *owner;
	uint8_t tab;
	/* A table with fixed-width keys whose values are their vsize bytes
	 * (no codec, no lists): st_log_put copies them without asking the
	 * table (a barrier's flush logs millions). */
	bool plain;
	uint32_t vsize;
};

typedef struct st_reg {
	char name[48];
	kvtab *tab;  /* or */
	tsvc *svc;
} st_reg;

struct st_task {
	task *t;
	int n;
	st_reg regs[ST_MAX_TABLES];
	st_bind binds[ST_MAX_TABLES];
	slog *log;      /* the core's log while logging, else NULL */
	uint16_t node;  /* manifest index of the operator */
	uint16_t sub;
	int err;        /* first logging error (reported at the barrier) */
	int core;
	/* checkpoint positions (owner core; the coordinator reads them
	 * after the core's acknowledgement) */
	bool has_mat;
	slog_pos from, to;      /* at the task's checkpoint t->ck_id */
	slog_pos final_to;      /* when it ended */
	/* the savepoint in flight */
	int64_t sp_id;
	slog_pos sp_from, sp_to;
};

static void st_task_free(void *p)
{
	free(p);
}

static st_task *st_of(task *t)
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
			tsvc_bind(k->regs[r].svc, log ? &k->binds[r] : NULL);
		else if (kv_bind(k->regs[r].tab, log ? &k->binds[r] : NULL) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* ---- log entries ------------------------------------------------------------------ */

/* An entry read back (format at the top of checkpoint.h). */
typedef struct st_entry {
	uint8_t kind, tab;
	uint16_t node, sub, spare;
	uint32_t klen, vlen;
	uint64_t khash;
	int64_t ns;
	const char *kp, *vp;  /* key and value bytes */
} st_entry;

/* Parse the entry at p of a frame that ends at end: the next entry, or
 * NULL if it does not fit in the frame. */
static const char *entry_parse(const char *p, const char *end, st_entry *e)
{
	if (end - p < ST_ENTRY_HDR)
		return NULL;
	e->kind = (uint8_t)p[0];
	e->tab = (uint8_t)p[1];
	memcpy(&e->node, p + 2, 2);
	memcpy(&e->sub, p + 4, 2);
	memcpy(&e->spare, p + 6, 2);
	memcpy(&e->klen, p + 8, 4);
	memcpy(&e->vlen, p + 12, 4);
	memcpy(&e->khash, p + 16, 8);
	memcpy(&e->ns, p + 24, 8);
	if ((uint64_t)(end - p) - ST_ENTRY_HDR < (uint64_t)e->klen + e->vlen)
		return NULL;
	e->kp = p + ST_ENTRY_HDR;
	e->vp = e->kp + e->klen;
	return e->vp + e->vlen;
}

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

void st_log_put(st_bind *b, const kvtab *t, skey k, int64_t ns,
		const void *value)
{
	st_task *s = b->owner;
	if (!s->log)
		return;
	if (b->plain) {
		char *v = entry_write(s, s->log, b->tab, ST_PUT, k.hash, &k.v, 8, ns, b->vsize);
		if (v)
			memcpy(v, value, b->vsize);
		return;
	}
	size_t vlen = kv_value_encoded_size(t, value);
	char *v = entry_begin(b, ST_PUT, kv_key_type(t), k, ns, vlen);
	if (v)
		kv_value_encode(t, value, v);
}

void st_log_append(st_bind *b, const kvtab *t, skey k, int64_t ns,
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

void st_log_del(st_bind *b, const kvtab *t, skey k, int64_t ns)
{
	if (b->owner->log)
		entry_begin(b, ST_DEL, kv_key_type(t), k, ns, 0);
}

void st_log_timer(st_bind *b, bool add, weir_type kt, const timer *tm)
{
	if (!b->owner->log)
		return;
	char *v = entry_begin(b, add ? ST_TIMER_ADD : ST_TIMER_DEL, kt, tm->key,
			      tm->ns, 8);
	if (v)
		memcpy(v, &tm->ts, 8);
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

/* Write a materialization of s into w: [from, to) positions; adds the
 * entry bytes to *bytes.  0 or -errno. */
static int materialize(st_task *s, slog *w, slog_pos *from, slog_pos *to,
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

/* ---- the store ---------------------------------------------------------------------- */

#define MAX_PEND 16

typedef struct core_st {
	slog *log;              /* this run's state log (checkpoint dir) */
	slog *sp;               /* the savepoint in flight's file */
	int64_t sp_for;         /* the savepoint id c->sp belongs to */
	slog *sp_done;          /* handed to the coordinator after the ack */
	struct { int64_t id; uint64_t lt, st; } pend[MAX_PEND];
	int npend;
	int64_t durable;
	int64_t mat_decided, mat_round;
	uint64_t bytes_at_mat, mat_size;
	uint64_t bytes_at_sync; /* published with the acknowledgement */
	/* in-flight data of the unaligned checkpoint inf_id: [inf_from,
	 * inf_to) of the log (inf_to set by core_sync) */
	int64_t inf_id;
	slog_pos inf_from, inf_to;
	/* statistics (read by the main thread after the reactors stopped) */
	uint64_t inflight_bytes;
	uint64_t mats, mat_bytes, mat_max_ns, mat_acc_ns;
	int64_t mat_acc_id;
	uint64_t flush_max_ns, flush_acc_ns;
	int64_t flush_acc_id;
	int err;
	int ntasks;
	task **tasks;
} core_st;

struct ckpt_store {
	runtime *rt;
	const weir_config *cfg;
	int ncores;
	core_st *cores;
	char dir[2048];         /* checkpoint directory, "" = none */
	char run_dir[2200];
	uint64_t run;
	int nops;
	char (*uids)[160];      /* per graph node */
	/* set by begin() on the main thread before the trigger's release;
	 * read by reactors (relaxed: the trigger orders it) */
	_Atomic int64_t sp_id;
	char sp_path[3200];
	uint64_t begin_ns;
	uint64_t bytes_prev;    /* log bytes at the previous completion */
	int64_t restored_id;
	uint64_t restore_bytes;
	int lock_fd;            /* flock of <dir>/.lock, -1 = none */
	char job[256];
};

static core_st *core_of(ckpt_store *s, int core)
{
	return &s->cores[core];
}

static int mkdir_p(const char *path)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			if (mkdir(buf, 0777) && errno != EEXIST)
				return -errno;
			*p = '/';
		}
	if (mkdir(buf, 0777) && errno != EEXIST)
		return -errno;
	return 0;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) ? -errno : 0;
	close(fd);
	return rc;
}

/* Log the PUTs task k's tables deferred (see the top of the file). */
static void flush_dirty(st_task *k)
{
	for (int i = 0; i < k->n; i++)
		if (k->regs[i].tab)
			kv_flush_dirty(k->regs[i].tab);
}

/* Savepoint id: task k's whole state into the savepoint's file (once).
 * 0 or -errno. */
static int sp_materialize(ckpt_store *s, st_task *k, core_st *c, int64_t id)
{
	int rc;
	int64_t spid = atomic_load_explicit(&s->sp_id, memory_order_relaxed);
	if (id != CKPT_FINAL && id == spid && k->sp_id != id) {
		if (c->sp && c->sp_for != id) { /* of an abandoned savepoint */
			slog_close(c->sp);
			c->sp = NULL;
		}
		if (!c->sp) {
			char prefix[32];
			snprintf(prefix, sizeof(prefix), "core-%d", k->core);
			slog_conf sc = { .dir = s->sp_path, .prefix = prefix, .run = s->run,
					 .core = (uint32_t)k->core, .seg_size = UINT64_MAX / 2,
					 .eventfd = runtime_core_efd(s->rt, k->core) };
			if ((rc = slog_open(&sc, &c->sp)) < 0)
				return rc;
			c->sp_for = id;
		}
		uint64_t spb = 0;
		if ((rc = materialize(k, c->sp, &k->sp_from, &k->sp_to, &spb)) < 0)
			return rc;
		k->sp_id = id;
	}
	return 0;
}

static int st_task_barrier(ckpt_store *s, task *t, int64_t id)
{
	st_task *k = st_of(t);
	int rc;

	if (!k)
		return -ENOMEM;
	core_st *c = core_of(s, k->core);
	if (k->err)
		return k->err;
	if ((rc = sp_materialize(s, k, c, id)) < 0)
		return rc;
	if (!c->log)
		return 0;
	if (id != CKPT_FINAL && c->mat_decided < id) {
		/* Materialize this core's tasks when the log since the last
		 * materialization outgrew max(64 MiB, 2 x its size), so
		 * recovery replays a bounded log. */
		c->mat_decided = id;
		uint64_t since = slog_bytes_written(c->log) - c->bytes_at_mat;
		uint64_t lim = 2 * c->mat_size > (64u << 20) ? 2 * c->mat_size : (64u << 20);
		if (since > lim) {
			c->mat_round = id;
			c->mat_size = 0;
			c->bytes_at_mat = slog_bytes_written(c->log);
		}
	}
	if (!k->has_mat || (id != CKPT_FINAL && c->mat_round == id)) {
		slog_pos to;
		uint64_t t0 = now_ns(), mb = 0;
		/* Every entry is written below: nothing deferred is needed
		 * (the interval's PUTs would fall before k->from anyway). */
		for (int i = 0; i < k->n; i++)
			if (k->regs[i].tab)
				kv_dirty_forget(k->regs[i].tab);
		if ((rc = materialize(k, c->log, &k->from, &to, &mb)) < 0)
			return rc;
		k->has_mat = true;
		/* A core's pause to materialize at barrier id: all its tasks. */
		if (c->mat_acc_id != id) {
			c->mat_acc_id = id;
			c->mat_acc_ns = 0;
		}
		c->mat_acc_ns += now_ns() - t0;
		if (c->mat_acc_ns > c->mat_max_ns)
			c->mat_max_ns = c->mat_acc_ns;
		c->mats++;
		c->mat_bytes += mb;
		c->mat_size += mb; /* this round's, over the core's tasks */
	} else {
		/* Before the mark: the range up to it must hold them (the
		 * final barrier, CKPT_FINAL, too: nothing changes after it). */
		uint64_t t0 = now_ns();
		flush_dirty(k);
		/* A core's pause at barrier id: all its tasks. */
		if (c->flush_acc_id != id) {
			c->flush_acc_id = id;
			c->flush_acc_ns = 0;
		}
		c->flush_acc_ns += now_ns() - t0;
		if (c->flush_acc_ns > c->flush_max_ns)
			c->flush_max_ns = c->flush_acc_ns;
	}
	if (id == CKPT_FINAL)
		k->final_to = slog_mark(c->log);
	else
		k->to = slog_mark(c->log);
	return k->err;
}

static int st_channel_state(ckpt_store *s, int core, int64_t id, const channel *ch,
			    uint64_t key, const elem *e)
{
	core_st *c = core_of(s, core);
	if (!c->log)
		return 0; /* no checkpoint directory: nothing to restore from */
	if (c->inf_id != id) {
		c->inf_id = id;
		c->inf_from = slog_mark(c->log);
		c->inf_to = (slog_pos){ 0, 0 };
	}
	size_t vlen = 1 + (e->kind == ELEM_DATA ? batch_encoded_size(e->batch) : 8);
	char *p = slog_reserve(c->log, ST_ENTRY_HDR + 8 + vlen);
	if (!p)
		return slog_error(c->log) ? slog_error(c->log) : -ENOMEM;
	uint16_t node = (uint16_t)ch->dst_node, sub = (uint16_t)ch->dst_sub;
	uint16_t src = (uint16_t)ch->src_sub;
	uint32_t kl = 8, vl = (uint32_t)vlen;
	uint64_t from = (uint64_t)ch->src_node | (uint64_t)ch->src_port << 16;
	p[0] = ST_CHAN;
	p[1] = (char)ch->dst_input;
	memcpy(p + 2, &node, 2);
	memcpy(p + 4, &sub, 2);
	memcpy(p + 6, &src, 2);
	memcpy(p + 8, &kl, 4);
	memcpy(p + 12, &vl, 4);
	memcpy(p + 16, &from, 8);
	memcpy(p + 24, &id, 8);
	memcpy(p + 32, &key, 8);
	p[40] = (char)e->kind;
	if (e->kind == ELEM_DATA)
		batch_encode(e->batch, p + 41);
	else
		memcpy(p + 41, &e->value, 8);
	c->inflight_bytes += ST_ENTRY_HDR + 8 + vlen;
	return 0;
}

static void st_core_sync(ckpt_store *s, int core, int64_t id)
{
	core_st *c = core_of(s, core);
	if (c->log && c->inf_id == id)
		c->inf_to = slog_mark(c->log);
	/* Tasks that ended before the savepoint's barrier reached them:
	 * their final state goes into the savepoint now. */
	int64_t spid = atomic_load_explicit(&s->sp_id, memory_order_relaxed);
	if (id == spid)
		for (int i = 0; i < c->ntasks; i++) {
			task *t = c->tasks[i];
			st_task *k = t->keyed;
			int e;
			if (t->ck_final && k->sp_id != id && (e = sp_materialize(s, k, c, id)) < 0)
				c->err = e;
		}
	if (c->npend == MAX_PEND) { /* cannot happen: one in flight */
		c->err = -EOVERFLOW;
		return;
	}
	c->pend[c->npend].id = id;
	c->pend[c->npend].lt = c->log ? slog_sync(c->log) : 0;
	c->pend[c->npend].st = c->sp && id == spid ? slog_sync(c->sp) : 0;
	c->npend++;
	if (c->log)
		c->bytes_at_sync = slog_bytes_written(c->log);
}

static int st_core_sync_fd(ckpt_store *s, int core, int fd)
{
	core_st *c = core_of(s, core);
	if (c->log)
		return slog_add_fd_sync(c->log, fd);
	return fdatasync(fd) ? -errno : 0;
}

static int64_t st_core_poll(ckpt_store *s, int core)
{
	core_st *c = core_of(s, core);
	if (c->err)
		return c->err;
	if (!c->npend)
		return c->durable;
	int e = c->log ? slog_error(c->log) : 0;
	if (!e && c->sp)
		e = slog_error(c->sp);
	if (e)
		return e;
	uint64_t dl = c->log ? slog_poll(c->log) : 0;
	uint64_t ds = c->sp ? slog_poll(c->sp) : 0;
	while (c->npend && c->pend[0].lt <= dl && c->pend[0].st <= ds) {
		if (c->pend[0].st) {
			/* The savepoint's file is durable: hand it over. */
			c->sp_done = c->sp;
			c->sp = NULL;
		}
		c->durable = c->pend[0].id;
		memmove(c->pend, c->pend + 1, (size_t)--c->npend * sizeof(c->pend[0]));
	}
	return c->durable;
}

/*
 * io_uring runs a request that had to wait (a drained fsync, a write
 * punted to a worker) in the context of the thread that submitted it, and
 * cancels it if that thread has exited: the final checkpoint, synced from
 * the main thread, would find the core's last writes failed (-ECANCELED,
 * -EFAULT).  So a reactor leaves only once its log's I/O completed.
 */
static void st_core_quiesce(ckpt_store *s, int core)
{
	core_st *c = core_of(s, core);
	if (c->log)
		slog_wait(c->log, slog_sync(c->log));
	if (c->sp)
		slog_wait(c->sp, slog_sync(c->sp));
}

/* ---- manifests ------------------------------------------------------------------ */

static void enc_name(const char *in, char *out, size_t cap)
{
	size_t o = 0;
	for (; *in && o + 4 < cap; in++) {
		unsigned char ch = (unsigned char)*in;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.' ||
		    ch == '#')
			out[o++] = (char)ch;
		else
			o += (size_t)snprintf(out + o, cap - o, "%%%02X", ch);
	}
	out[o] = 0;
}

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

static bool dec_name(const char *in, char *out, size_t cap)
{
	size_t o = 0;
	for (; *in; in++) {
		if (o + 1 >= cap)
			return false;
		if (*in == '%') {
			int a = hexval(in[1]), b = a < 0 ? -1 : hexval(in[2]);
			if (a < 0 || b < 0)
				return false;
			out[o++] = (char)(a * 16 + b);
			in += 2;
		} else {
			out[o++] = *in;
		}
	}
	out[o] = 0;
	return true;
}

typedef struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
	va_list ap;
	for (;;) {
		size_t room = b->cap - b->len;
		va_start(ap, fmt);
		int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap * 2 : 4096;
		while (cap < b->len + (size_t)n + 1)
			cap *= 2;
		char *q = realloc(b->p, cap);
		if (!q) {
			b->oom = true;
			return;
		}
		b->p = q;
		b->cap = cap;
	}
}

/* The manifest of checkpoint/savepoint id as the tasks left it. */
static int manifest_text(ckpt_store *s, int64_t id, bool savepoint, sbuf *b)
{
	runtime *rt = s->rt;
	const graph *g = runtime_graph(rt);
	char name[512];

	sb_printf(b, "weir-manifest 1\nkind %s\nid %" PRId64 "\n",
		  savepoint ? "savepoint" : "checkpoint", id);
	enc_name(s->job, name, sizeof(name));
	sb_printf(b, "job %s\ncreated %" PRId64 "\nrun %" PRIu64 "\n", name, wall_ms(), s->run);
	sb_printf(b, "max-parallelism %d\ncores %d\n", s->cfg->max_parallelism, s->ncores);
	for (int n = 0; n < g->nnodes; n++) {
		/* Table names from the operator's first subtask: every
		 * subtask registers the same ones. */
		st_task *k = NULL;
		int par = 0;
		for (int i = 0; i < runtime_ntasks(rt); i++) {
			task *t = runtime_task(rt, i);
			if (t->node->id != n)
				continue;
			par = t->parallelism;
			if (!k && is_local(t))
				k = t->keyed;
		}
		enc_name(s->uids[n], name, sizeof(name));
		sb_printf(b, "op %d %d %s %d", n, par, name, k ? k->n : 0);
		for (int i = 0; k && i < k->n; i++) {
			enc_name(k->regs[i].name, name, sizeof(name));
			sb_printf(b, " %s", name);
		}
		sb_printf(b, "\n");
		if (g->nodes[n]->not_replayable)
			sb_printf(b, "at-least-once %d\n", n);
	}
	for (int i = 0; i < runtime_ntasks(rt); i++) {
		task *t = runtime_task(rt, i);
		st_task *k = t->keyed;
		if (!is_local(t))
			continue; /* in another worker's part */
		/* The task passed barrier id, or ended before it did: then its
		 * final snapshot.  (Not ck_final first: the task may be ending
		 * right now, after it passed id.) */
		bool at_id = t->ck_id == id;
		const snap_buf *snap = at_id ? &t->snap : &t->final_snap;
		slog_pos f = savepoint ? k->sp_from : k->from;
		slog_pos to = savepoint ? k->sp_to : at_id ? k->to : k->final_to;
		if (!savepoint && !s->dir[0])
			f = to = (slog_pos){ 0, 0 };
		sb_printf(b, "task %d %d %d %d %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
			  " %" PRId64 " %zu ", t->node->id, t->subtask, k->core,
			  at_id ? 0 : 1, f.seg, f.off, to.seg, to.off,
			  at_id ? t->ck_watermark : t->final_watermark, snap->len);
		if (!snap->len)
			sb_printf(b, "-");
		for (size_t j = 0; j < snap->len; j++)
			sb_printf(b, "%02x", snap->p[j]);
		sb_printf(b, "\n");
	}
	for (int c = 0; !savepoint && s->dir[0] && c < s->ncores; c++) {
		core_st *cs = &s->cores[c];
		if (cs->inf_id == id && cs->inf_to.off)
			sb_printf(b, "inflight %d %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
				  c, cs->inf_from.seg, cs->inf_from.off, cs->inf_to.seg,
				  cs->inf_to.off);
	}
	if (b->oom)
		return -ENOMEM;
	sb_printf(b, "crc %08x\n", crc32c(0, b->p, b->len));
	return b->oom ? -ENOMEM : 0;
}

/* Write file dir/name atomically: tmp, fsync, rename, fsync dir. */
static int write_atomic(const char *dir, const char *name, const void *p,
			size_t n, char *err, size_t errlen)
{
	char tmp[4200], path[4200];
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", tmp, strerror(e));
		return -e;
	}
	const char *q = p;
	size_t left = n;
	while (left) {
		ssize_t w = write(fd, q, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = w < 0 ? errno : EIO;
			close(fd);
			unlink(tmp);
			snprintf(err, errlen, "%s: %s", tmp, strerror(e));
			return -e;
		}
		q += w;
		left -= (size_t)w;
	}
	if (fsync(fd)) {
		int e = errno;
		close(fd);
		unlink(tmp);
		snprintf(err, errlen, "fsync %s: %s", tmp, strerror(e));
		return -e;
	}
	close(fd);
	if (rename(tmp, path)) {
		int e = errno;
		unlink(tmp);
		snprintf(err, errlen, "rename %s: %s", path, strerror(e));
		return -e;
	}
	return fsync_dir(dir);
}

static void mf_free_ops(manifest *m)
{
	free(m->ops);
	free(m->at_least_once);
	for (int i = 0; i < m->ntasks; i++)
		free(m->tasks[i].blob);
	free(m->tasks);
	free(m->inflight);
}

void manifest_free(manifest *m)
{
	mf_free_ops(m);
	memset(m, 0, sizeof(*m));
}

/* Split line into space-separated words (in place); returns the count. */
static int words(char *line, char **w, int max)
{
	int n = 0;
	char *save = NULL;
	for (char *t = strtok_r(line, " ", &save); t && n < max; t = strtok_r(NULL, " ", &save))
		w[n++] = t;
	return n;
}

static bool num(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || !*s || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

static bool unum(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	if (*s == '-' || !*s)
		return false;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

int manifest_parse(const char *text, size_t len, manifest *m, char *err,
		   size_t errlen)
{
	memset(m, 0, sizeof(*m));
	/* The last line is the checksum of everything before it. */
	if (len < 2 || text[len - 1] != '\n') {
		snprintf(err, errlen, "truncated (no final line)");
		return -EINVAL;
	}
	size_t last = len - 1;
	while (last > 0 && text[last - 1] != '\n')
		last--;
	char crcline[64];
	size_t cl = len - last;
	if (cl >= sizeof(crcline) || cl < 5 || strncmp(text + last, "crc ", 4)) {
		snprintf(err, errlen, "truncated: the last line is not the checksum");
		return -EINVAL;
	}
	memcpy(crcline, text + last, cl);
	crcline[cl - 1] = 0;
	char *end;
	unsigned long want = strtoul(crcline + 4, &end, 16);
	if (*end || strlen(crcline + 4) != 8) {
		snprintf(err, errlen, "malformed checksum line");
		return -EINVAL;
	}
	uint32_t got = crc32c(0, text, last);
	if (got != (uint32_t)want) {
		snprintf(err, errlen, "checksum mismatch (file says %08lx, content is %08x)",
			 want, got);
		return -EINVAL;
	}
	char *copy = malloc(last + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, text, last);
	copy[last] = 0;
	int lineno = 0, rc = -EINVAL, cap_tasks = 0;
	char *save = NULL;
	m->version = -1;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *w[8 + ST_MAX_TABLES] = { "" };
		int64_t v[12];
		uint64_t u[4];
		lineno++;
		int n = words(line, w, (int)ARRAY_SIZE(w));
		if (n == 0)
			goto bad;
		if (lineno == 1) {
			if (n != 2 || strcmp(w[0], "weir-manifest") || !num(w[1], 1, 1, v)) {
				snprintf(err, errlen, "line 1: not a weir manifest of version 1");
				goto out;
			}
			m->version = 1;
		} else if (!strcmp(w[0], "kind") && n == 2) {
			if (!strcmp(w[1], "savepoint"))
				m->savepoint = true;
			else if (strcmp(w[1], "checkpoint"))
				goto bad;
		} else if (!strcmp(w[0], "id") && n == 2) {
			if (!num(w[1], 1, INT64_MAX - 1, &m->id))
				goto bad;
		} else if (!strcmp(w[0], "job") && n == 2) {
			if (!dec_name(w[1], m->job, sizeof(m->job)))
				goto bad;
		} else if (!strcmp(w[0], "created") && n == 2) {
			if (!num(w[1], 0, INT64_MAX, &m->created_ms))
				goto bad;
		} else if (!strcmp(w[0], "run") && n == 2) {
			if (!unum(w[1], &m->run))
				goto bad;
		} else if (!strcmp(w[0], "max-parallelism") && n == 2) {
			if (!num(w[1], 1, 32768, v))
				goto bad;
			m->max_parallelism = (int)v[0];
		} else if (!strcmp(w[0], "cores") && n == 2) {
			if (!num(w[1], 1, 4096, v))
				goto bad;
			m->ncores = (int)v[0];
		} else if (!strcmp(w[0], "op") && n >= 5) {
			if (!num(w[1], m->nops, m->nops, v) || !num(w[2], 0, 32768, v + 1) ||
			    !num(w[4], 0, ST_MAX_TABLES, v + 2) || n != 5 + v[2] || m->nops >= 65535)
				goto bad;
			mf_op *ops = realloc(m->ops, (size_t)(m->nops + 1) * sizeof(*ops));
			bool *al = realloc(m->at_least_once, (size_t)(m->nops + 1));
			if (ops)
				m->ops = ops;
			if (al)
				m->at_least_once = al;
			if (!ops || !al) {
				rc = -ENOMEM;
				goto out;
			}
			mf_op *o = &m->ops[m->nops];
			memset(o, 0, sizeof(*o));
			m->at_least_once[m->nops] = false;
			o->parallelism = (int)v[1];
			o->ntables = (int)v[2];
			if (!dec_name(w[3], o->uid, sizeof(o->uid)))
				goto bad;
			for (int i = 0; i < o->ntables; i++)
				if (!dec_name(w[5 + i], o->tables[i], sizeof(o->tables[i])))
					goto bad;
			m->nops++;
		} else if (!strcmp(w[0], "at-least-once") && n == 2) {
			if (!num(w[1], 0, m->nops - 1, v))
				goto bad;
			m->at_least_once[v[0]] = true;
		} else if (!strcmp(w[0], "inflight") && n == 6) {
			mf_inflight f;
			if (!num(w[1], 0, 4095, v) || !unum(w[2], u) || !unum(w[3], u + 1) ||
			    !unum(w[4], u + 2) || !unum(w[5], u + 3) || u[1] < SLOG_PAGE ||
			    u[3] < SLOG_PAGE)
				goto bad;
			f = (mf_inflight){ (int)v[0], u[0], u[1], u[2], u[3] };
			mf_inflight *ni = realloc(m->inflight, (size_t)(m->ninflight + 1) * sizeof(*ni));
			if (!ni) {
				rc = -ENOMEM;
				goto out;
			}
			m->inflight = ni;
			m->inflight[m->ninflight++] = f;
		} else if (!strcmp(w[0], "task") && n == 12) {
			mf_task tk = { 0 };
			if (!num(w[1], 0, m->nops - 1, v) || !num(w[2], 0, 32767, v + 1) ||
			    !num(w[3], 0, 4095, v + 2) || !num(w[4], 0, 1, v + 3) ||
			    !unum(w[5], u) || !unum(w[6], u + 1) || !unum(w[7], u + 2) ||
			    !unum(w[8], u + 3) || !num(w[9], INT64_MIN, INT64_MAX, v + 4) ||
			    !num(w[10], 0, 1 << 30, v + 5))
				goto bad;
			tk.op = (int)v[0];
			tk.sub = (int)v[1];
			tk.core = (int)v[2];
			tk.final = v[3] != 0;
			tk.from_seg = u[0];
			tk.from_off = u[1];
			tk.to_seg = u[2];
			tk.to_off = u[3];
			tk.watermark = v[4];
			tk.blob_len = (size_t)v[5];
			if (tk.sub >= m->ops[tk.op].parallelism)
				goto bad;
			if (tk.blob_len) {
				if (strlen(w[11]) != 2 * tk.blob_len)
					goto bad;
				tk.blob = malloc(tk.blob_len);
				if (!tk.blob) {
					rc = -ENOMEM;
					goto out;
				}
				for (size_t i = 0; i < tk.blob_len; i++) {
					int a = hexval(w[11][2 * i]), b = hexval(w[11][2 * i + 1]);
					if (a < 0 || b < 0) {
						free(tk.blob);
						goto bad;
					}
					tk.blob[i] = (uint8_t)(a * 16 + b);
				}
			} else if (strcmp(w[11], "-")) {
				goto bad;
			}
			if (m->ntasks == cap_tasks) {
				cap_tasks = cap_tasks ? cap_tasks * 2 : 16;
				mf_task *nt = realloc(m->tasks, (size_t)cap_tasks * sizeof(*nt));
				if (!nt) {
					free(tk.blob);
					rc = -ENOMEM;
					goto out;
				}
				m->tasks = nt;
			}
			m->tasks[m->ntasks++] = tk;
		} else {
			goto bad;
		}
		continue;
bad:
		snprintf(err, errlen, "line %d: malformed '%s' record", lineno, w[0]);
		goto out;
	}
	if (m->version != 1 || !m->id || !m->max_parallelism || !m->ncores) {
		snprintf(err, errlen, "incomplete (missing version, id, max-parallelism or cores)");
		goto out;
	}
	for (int i = 0; i < m->ntasks; i++)
		if (m->tasks[i].core >= m->ncores) {
			snprintf(err, errlen, "task on core %d of %d", m->tasks[i].core, m->ncores);
			goto out;
		}
	for (int i = 0; i < m->ninflight; i++)
		if (m->inflight[i].core >= m->ncores || m->savepoint) {
			snprintf(err, errlen, "in-flight data on core %d of %d%s",
				 m->inflight[i].core, m->ncores,
				 m->savepoint ? " in a savepoint" : "");
			goto out;
		}
	rc = 0;
out:
	free(copy);
	return rc;
}

static int read_file(const char *path, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) || st.st_size > (64 << 20)) {
		close(fd);
		return -EFBIG;
	}
	char *p = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (p && got < (size_t)st.st_size) {
		ssize_t r = read(fd, p + got, (size_t)st.st_size - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (!p)
		return -ENOMEM;
	p[got] = 0;
	*out = p;
	*len = got;
	return 0;
}

/* ---- recovery ---------------------------------------------------------------------- */

typedef struct tmr_op {
	uint32_t task;      /* index in runtime tasks */
	uint8_t reg;
	int8_t delta;       /* +1 add, -1 delete */
	uint32_t klen;
	int64_t ts, ns;
	uint64_t khash, seq;
	char *key;          /* klen bytes, owned */
} tmr_op;

typedef struct rctx {
	ckpt_store *s;
	runtime *rt;
	const manifest *m;
	char logdir[3300];
	int *op_map;                 /* manifest op -> graph node, -1 */
	int (*tab_map)[ST_MAX_TABLES];
	int *node_par;               /* graph node -> parallelism */
	task ***by_node;             /* graph node -> its tasks by subtask */
	task ***by_kg;               /* graph node -> the task of each key group */
	tmr_op *tmr;
	size_t ntmr, cap_tmr;
	int **mt_of;                 /* manifest op, old subtask -> manifest task */
	uint64_t *reserved;          /* runtime task * ST_MAX_TABLES + reg */
	struct inflight_el *els;     /* in-flight data to inject, sorted */
	size_t nels;
	char *err;
	size_t errlen;
} rctx;

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
	if (!next || (e.kind != ST_PUT && e.kind != ST_DEL) || e.klen != 8 ||
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

/* Apply the entries of the manifest's tasks that lie in [from, to) of
 * core's log.  0 or -errno (message in c->err). */
static int scan_range(rctx *c, int core, slog_pos from, slog_pos to)
{
	const manifest *m = c->m;
	char prefix[32];
	slog_reader *rd = NULL;
	const mf_task *w = NULL;

	struct {
		bool valid, bcast, plain;
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
			if (!next || e.kind < ST_PUT || e.kind > ST_CHAN || e.node >= m->nops ||
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
				continue; /* in-flight data: restore_inflight */
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
				if (w->core != core ||
				    slog_pos_cmp(pos, (slog_pos){ w->from_seg, w->from_off }) < 0 ||
				    slog_pos_cmp(pos, (slog_pos){ w->to_seg, w->to_off }) >= 0)
					continue; /* before its materialization, or after
						   * its barrier */
				if (kind == ST_MAT) {
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
			if (kind == ST_PUT && rs.plain && !rs.bcast) {
				task *tt = c->by_kg[gn][key_group(khash, (uint32_t)m->max_parallelism)];
				if (!is_local(tt))
					continue; /* another worker's key group */
				rc = apply_plain_put(((st_task *)tt->keyed)->regs[reg].tab, khash, kp,
						     klen, ns, vp, vlen, rs.vsize);
				if (rc < 0)
					goto fail;
				continue;
			}
			int par = c->node_par[gn];
			task **tasks = c->by_node[gn];
			bool bcast = rs.bcast;
			if (bcast) {
				if (sub != 0)
					continue; /* the same in every old subtask */
				for (int i = 0; i < par; i++)
					if (is_local(tasks[i]) &&
					    (rc = apply(c, tasks[i], reg, kind, khash, kp, klen,
							ns, vp, vlen)) < 0)
						goto fail;
				continue;
			}
			task *tgt = c->by_kg[gn][key_group(khash, (uint32_t)m->max_parallelism)];
			if (!is_local(tgt))
				continue;
			if ((rc = apply(c, tgt, reg, kind, khash, kp, klen, ns, vp, vlen)) < 0)
				goto fail;
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
		const mf_task *w = &m->tasks[i];
		if (w->core != core || (!w->from_off && !w->to_off))
			continue; /* nothing logged (no checkpoint directory) */
		r[n++] = (log_range){ { w->from_seg, w->from_off }, { w->to_seg, w->to_off } };
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

struct inflight_el;
static void els_free(runtime *rt, struct inflight_el *els, size_t n);

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
		els_free(c->rt, c->els, c->nels);
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

/* ---- in-flight data of unaligned checkpoints ---------------------------------------- */

typedef struct inflight_el {
	int ch;             /* runtime channel index */
	uint64_t key;       /* order within the channel */
	uint64_t ord;       /* order in the log: ties */
	uint32_t kind;
	int64_t value;
	weir_batch *batch;  /* ELEM_DATA: decoded, owned */
} inflight_el;

static int el_cmp(const void *a, const void *b)
{
	const inflight_el *x = a, *y = b;
	if (x->ch != y->ch)
		return x->ch < y->ch ? -1 : 1;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return x->ord < y->ord ? -1 : x->ord > y->ord;
}

static int find_channel(runtime *rt, int gsrc, int ssub, int port, int gdst, int dsub,
			int input)
{
	for (int i = 0; i < runtime_nchannels(rt); i++) {
		const channel *ch = runtime_channel(rt, i);
		if (ch->src_node == gsrc && ch->src_sub == ssub && ch->src_port == port &&
		    ch->dst_node == gdst && ch->dst_sub == dsub && ch->dst_input == input)
			return i;
	}
	return -1;
}

static void els_free(runtime *rt, inflight_el *els, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (els[i].batch) {
			runtime_bind_pool(rt, runtime_channel(rt, els[i].ch));
			batch_release(els[i].batch);
		}
	runtime_bind_pool(rt, NULL);
	free(els);
}

/*
 * The in-flight data of unaligned checkpoint m, to be put back into the
 * channels it was in, in order, ahead of anything new: read every CHAN
 * entry of m's id in its inflight ranges and check it all (the edge
 * exists, at the same parallelism; batches decode) into c->els, sorted.
 * 0 or -errno (err).
 */
static int load_inflight(rctx *c)
{
	const manifest *m = c->m;
	runtime *rt = c->rt;
	inflight_el *els = NULL;
	size_t n = 0, cap = 0;
	uint64_t ord = 0;
	int rc = 0;

	for (int i = 0; i < m->ninflight && rc == 0; i++) {
		const mf_inflight *f = &m->inflight[i];
		char prefix[32];
		slog_reader *rd = NULL;
		snprintf(prefix, sizeof(prefix), "core-%d", f->core);
		rc = slog_reader_open(c->logdir, prefix, (slog_pos){ f->from_seg, f->from_off },
				      (slog_pos){ f->to_seg, f->to_off }, &rd, c->err, c->errlen);
		const void *fp;
		size_t fn;
		while (rc == 0 && (rc = slog_next(rd, &fp, &fn, c->err, c->errlen)) > 0) {
			rc = 0;
			const char *p = fp, *end = p + fn;
			while (p < end && rc == 0) {
				st_entry e;
				const char *next = entry_parse(p, end, &e);
				if (!next)
					goto bad;
				p = next;
				uint8_t kind = e.kind, input = e.tab;
				uint16_t node = e.node, sub = e.sub, ssub = e.spare;
				uint32_t klen = e.klen, vlen = e.vlen;
				uint64_t from = e.khash, key;
				int64_t id = e.ns;
				const char *kp = e.kp, *vp = e.vp;
				if (kind != ST_CHAN || id != m->id)
					continue;
				int snode = (int)(from & 0xffff), port = (int)(from >> 16 & 0xffff);
				if (klen != 8 || vlen < 9 || node >= m->nops || snode >= m->nops ||
				    sub >= m->ops[node].parallelism ||
				    ssub >= m->ops[snode].parallelism || port >= NODE_MAX_PORTS ||
				    (from >> 32) != 0)
					goto bad;
				uint8_t ek = (uint8_t)vp[0];
				if (ek != ELEM_DATA && ek != ELEM_WATERMARK && ek != ELEM_IDLE)
					goto bad;
				if (ek != ELEM_DATA && vlen != 9)
					goto bad;
				memcpy(&key, kp, 8);
				int gd = c->op_map[node], gs = c->op_map[snode];
				if (gd < 0 || gs < 0) {
					if (c->s->cfg->allow_non_restored_state)
						continue;
					snprintf(c->err, c->errlen,
						 "it holds in-flight data between operators '%s' and '%s', "
						 "which the job does not have (pass "
						 "--allow-non-restored-state to drop it)",
						 m->ops[snode].uid, m->ops[node].uid);
					rc = -EINVAL;
					break;
				}
				if (c->node_par[gd] != m->ops[node].parallelism ||
				    c->node_par[gs] != m->ops[snode].parallelism) {
					snprintf(c->err, c->errlen,
						 "it is an unaligned checkpoint holding in-flight data "
						 "between '%s' (parallelism %d) and '%s' (%d), which "
						 "the job runs at %d and %d: restore it at the same "
						 "parallelism, or rescale from a savepoint (always "
						 "aligned)", m->ops[snode].uid, m->ops[snode].parallelism,
						 m->ops[node].uid, m->ops[node].parallelism,
						 c->node_par[gs], c->node_par[gd]);
					rc = -EINVAL;
					break;
				}
				int ch = find_channel(rt, gs, ssub, port, gd, sub, input);
				if (ch < 0) {
					snprintf(c->err, c->errlen,
						 "it holds in-flight data of an edge from '%s' to '%s' "
						 "that the job does not have", m->ops[snode].uid,
						 m->ops[node].uid);
					rc = -EINVAL;
					break;
				}
				if (n == cap) {
					size_t nc = cap ? cap * 2 : 64;
					inflight_el *ne = realloc(els, nc * sizeof(*ne));
					if (!ne) {
						rc = -ENOMEM;
						break;
					}
					els = ne;
					cap = nc;
				}
				inflight_el *el = &els[n];
				*el = (inflight_el){ .ch = ch, .key = key, .ord = ord++, .kind = ek };
				if (ek == ELEM_DATA) {
					const channel *chan = runtime_channel(rt, ch);
					const weir_schema *schema = runtime_graph(rt)->nodes[gs]->schema[port];
					runtime_bind_pool(rt, chan);
					int d = schema ? batch_decode(schema, vp + 1, vlen - 1, &el->batch)
						       : -EBADMSG;
					runtime_bind_pool(rt, NULL);
					if (d < 0) {
						snprintf(c->err, c->errlen,
							 "%s/%s: in-flight batch from '%s' to '%s' does not "
							 "decode: %s", c->logdir, prefix,
							 m->ops[snode].uid, m->ops[node].uid,
							 d == -EBADMSG ? "malformed" : strerror(-d));
						rc = d;
						break;
					}
				} else {
					memcpy(&el->value, vp + 1, 8);
				}
				n++;
			}
			continue;
bad:
			snprintf(c->err, c->errlen, "%s/%s: malformed in-flight entry", c->logdir,
				 prefix);
			rc = -EBADMSG;
		}
		slog_reader_close(rd);
	}
	if (rc < 0) {
		els_free(rt, els, n);
		return rc;
	}
	if (n)
		qsort(els, n, sizeof(*els), el_cmp);
	c->els = els;
	c->nels = n;
	return 0;
}

/* Put the elements load_inflight() read into their channels (cannot
 * fail). */
static void inject_inflight(rctx *c)
{
	for (size_t i = 0; i < c->nels; i++) {
		inflight_el *el = &c->els[i];
		elem e = { .kind = el->kind };
		if (el->kind == ELEM_DATA)
			e.batch = el->batch; /* taken over */
		else
			e.value = el->value;
		el->batch = NULL;
		runtime_restore_element(c->rt, runtime_channel(c->rt, el->ch), e);
	}
}

/* Restore the job from manifest m (files under logdir).  0, or -errno with
 * the reason in err; on failure nothing was applied when `checked` is
 * false... so verify first: a corrupt file is found before any change. */
static int restore_from(ckpt_store *s, const manifest *m, const char *logdir,
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
	int ncores = 0;
	for (int i = 0; i < m->ntasks; i++)
		if (m->tasks[i].core >= ncores)
			ncores = m->tasks[i].core + 1;
	for (int core = 0; core < ncores; core++)
		if ((rc = scan_core(&c, core)) < 0) {
			reset_tables(&c);
			goto out;
		}
	if ((rc = restore_timers(&c)) < 0) {
		snprintf(err, errlen, "restoring timers: %s", strerror(-rc));
		goto out;
	}
	/* In-flight data of an unaligned checkpoint: read and checked before
	 * any operator restores its state (a sink's restore commits files). */
	if ((rc = load_inflight(&c)) < 0) {
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
	/* Last, as nothing can fail after it: in-flight data back into the
	 * channels. */
	inject_inflight(&c);
	rc = 0;
out:
	rctx_free(&c);
	return rc;
}

/* ---- the store's life ------------------------------------------------------------- */

static int cmp_desc(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x > y ? -1 : x < y;
}

/* Checkpoint ids with a manifest in dir, newest first; *n of them. */
static int64_t *list_manifests(const char *dir, int *n)
{
	DIR *d = opendir(dir);
	int64_t *ids = NULL;
	int cap = 0;
	*n = 0;
	if (!d)
		return NULL;
	struct dirent *e;
	while ((e = readdir(d))) {
		long long id;
		char tail[16];
		if (sscanf(e->d_name, "chk-%lld.manifes%1s", &id, tail) != 2 ||
		    strcmp(tail, "t") || id <= 0)
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			int64_t *q = realloc(ids, (size_t)cap * sizeof(*q));
			if (!q)
				break;
			ids = q;
		}
		ids[(*n)++] = id;
	}
	closedir(d);
	if (ids)
		qsort(ids, (size_t)*n, sizeof(*ids), cmp_desc);
	return ids;
}

static uint64_t max_run(const char *dir)
{
	DIR *d = opendir(dir);
	uint64_t r = 0;
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		unsigned long long x;
		if (sscanf(e->d_name, "run-%llu", &x) == 1 && x > r)
			r = x;
	}
	closedir(d);
	return r;
}

static int load_manifest(const char *path, manifest *m, char *err, size_t errlen)
{
	*m = (manifest){ 0 }; /* manifest_free works whatever happens */
	char *text = NULL;
	size_t len = 0;
	int rc = read_file(path, &text, &len);
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	char why[512];
	rc = manifest_parse(text, len, m, why, sizeof(why));
	free(text);
	if (rc < 0)
		snprintf(err, errlen, "%s: %s", path, why);
	return rc;
}

static void describe(const manifest *m, const char *where, char *out, size_t len)
{
	time_t secs = (time_t)(m->created_ms / 1000);
	struct tm tm;
	char when[64];
	localtime_r(&secs, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	int par = 0;
	for (int i = 0; i < m->nops; i++)
		if (m->ops[i].parallelism > par)
			par = m->ops[i].parallelism;
	snprintf(out, len, "%s %lld (%s, taken %s, parallelism of its operators up to %d)",
		 m->savepoint ? "savepoint" : "checkpoint", (long long)m->id, where, when,
		 par);
}

static int st_start(runtime *rt, const weir_config *cfg, ckpt_store **out,
		    int64_t *next_id, char *err, size_t errlen)
{
	ckpt_store *s = calloc(1, sizeof(*s));
	const graph *g = runtime_graph(rt);
	int rc = -ENOMEM;
	int64_t maxid = 0;
	bool finished = false;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->rt = rt;
	s->cfg = cfg;
	s->lock_fd = -1;
	s->ncores = runtime_ncores(rt);
	snprintf(s->job, sizeof(s->job), "%s", runtime_job(rt) ? runtime_job(rt) : "job");
	s->cores = calloc((size_t)s->ncores, sizeof(core_st));
	s->uids = calloc((size_t)g->nnodes + 1, sizeof(*s->uids));
	if (!s->cores || !s->uids)
		goto fail;
	/* Operator identity: its name, "#k" for its k-th repetition. */
	for (int n = 0; n < g->nnodes; n++) {
		int dup = 0;
		for (int p = 0; p < n; p++)
			dup += !strcmp(g->nodes[p]->name, g->nodes[n]->name);
		if (dup)
			snprintf(s->uids[n], sizeof(s->uids[n]), "%.140s#%d", g->nodes[n]->name, dup + 1);
		else
			snprintf(s->uids[n], sizeof(s->uids[n]), "%.150s", g->nodes[n]->name);
	}
	for (int i = 0; i < runtime_ntasks(rt); i++) {
		task *t = runtime_task(rt, i);
		st_task *k = st_of(t);
		if (!k)
			goto fail;
		k->node = (uint16_t)t->node->id;
		k->core = task_core(t);
		core_st *c = &s->cores[k->core];
		task **nt = realloc(c->tasks, (size_t)(c->ntasks + 1) * sizeof(*nt));
		if (!nt)
			goto fail;
		c->tasks = nt;
		c->tasks[c->ntasks++] = t;
	}
	if (cfg->checkpoint_dir && cfg->checkpoint_dir[0]) {
		snprintf(s->dir, sizeof(s->dir), "%s", cfg->checkpoint_dir);
		if ((rc = mkdir_p(s->dir)) < 0) {
			snprintf(err, errlen, "checkpoint directory %s: %s", s->dir, strerror(-rc));
			goto fail;
		}
		/* One run per directory: two would interleave their runs and
		 * delete each other's logs.  The lock goes with the process,
		 * however it ends (SIGKILL included). */
		char lock[2200];
		snprintf(lock, sizeof(lock), "%s/.lock", s->dir);
		/* (In a cluster the coordinator holds it: one job per
		 * directory; the workers share it.) */
		if (runtime_cluster(rt))
			;
		else if ((s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0 ||
			 flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
			rc = -errno;
			snprintf(err, errlen, "checkpoint directory %s%s%s", s->dir,
				 rc == -EWOULDBLOCK ? " " : ": ",
				 rc == -EWOULDBLOCK ? "is in use by another running job"
						    : strerror(-rc));
			goto fail;
		}
	}
	/* Recovery. */
	if (cfg->restore_savepoint) {
		manifest m;
		char path[4200], why[2048];
		struct stat st;
		snprintf(path, sizeof(path), "%s", cfg->restore_savepoint);
		if (!stat(path, &st) && S_ISDIR(st.st_mode))
			snprintf(path, sizeof(path), "%s/_metadata", cfg->restore_savepoint);
		rc = load_manifest(path, &m, why, sizeof(why));
		if (rc == 0) {
			char dir[4200];
			snprintf(dir, sizeof(dir), "%s", path);
			char *slash = strrchr(dir, '/');
			if (slash)
				*slash = 0;
			else
				snprintf(dir, sizeof(dir), ".");
			/* A retained checkpoint's manifest works too (as Flink's
			 * "run -s <checkpoint>"): its logs are in its run folder. */
			char logdir[4300];
			if (m.savepoint)
				snprintf(logdir, sizeof(logdir), "%s", dir);
			else
				snprintf(logdir, sizeof(logdir), "%s/run-%06llu", dir,
					 (unsigned long long)m.run);
			rc = restore_from(s, &m, logdir, why, sizeof(why));
			if (rc == 0) {
				char d[512];
				describe(&m, dir, d, sizeof(d));
				fprintf(stderr, "weir: restored from %s\n", d);
				maxid = m.id;
				s->restored_id = m.id;
			}
		}
		manifest_free(&m);
		if (rc < 0) {
			snprintf(err, errlen, "cannot restore savepoint %s: %s",
				 cfg->restore_savepoint, why);
			goto fail;
		}
	} else if (s->dir[0]) {
		int n;
		int64_t *ids = list_manifests(s->dir, &n);
		char reasons[2048] = "";
		size_t rl = 0;
		bool done = false;
		for (int i = 0; i < n && !done; i++) {
			char path[4200], why[1024];
			manifest m;
			if (ids[i] > maxid)
				maxid = ids[i];
			snprintf(path, sizeof(path), "%s/chk-%010lld.manifest", s->dir, (long long)ids[i]);
			rc = load_manifest(path, &m, why, sizeof(why));
			if (rc == 0) {
				char logdir[4200];
				snprintf(logdir, sizeof(logdir), "%s/run-%06llu", s->dir,
					 (unsigned long long)m.run);
				rc = restore_from(s, &m, logdir, why, sizeof(why));
				if (rc == 0) {
					char d[512];
					describe(&m, s->dir, d, sizeof(d));
					/* Every task ended (a bounded job's final
					 * checkpoint): nothing left to run. */
					finished = m.ntasks > 0 && !runtime_cluster(rt);
					for (int t = 0; t < m.ntasks; t++)
						finished = finished && m.tasks[t].final;
					if (finished)
						fprintf(stderr, "weir: checkpoint directory %s holds a "
							"finished run of this job (checkpoint %lld, "
							"final): nothing to do; use a new directory "
							"or remove it to run the job again\n", s->dir,
							(long long)m.id);
					else
						fprintf(stderr, "weir: resuming from %s\n", d);
					done = true;
					s->restored_id = m.id;
				} else if (rc == -EINVAL && strstr(why, "the job")) {
					manifest_free(&m);
					free(ids);
					snprintf(err, errlen, "cannot resume from %s: %s", path, why);
					goto fail;
				}
			}
			manifest_free(&m);
			if (!done) {
				fprintf(stderr, "weir: checkpoint %lld is not usable: %s\n",
					(long long)ids[i], why);
				rl += (size_t)snprintf(reasons + rl, rl < sizeof(reasons) ? sizeof(reasons) - rl : 0,
						       "%s checkpoint %lld: %s", rl ? ";" : "",
						       (long long)ids[i], why);
				if (rl >= sizeof(reasons))
					rl = sizeof(reasons) - 1;
			}
		}
		free(ids);
		if (n > 0 && !done) {
			snprintf(err, errlen, "no checkpoint in %s can be restored (%s); "
				 "refusing to start over silently: move the directory away "
				 "to start from scratch", s->dir, reasons);
			rc = -EBADMSG;
			goto fail;
		}
		if (!n)
			fprintf(stderr, "weir: no checkpoint in %s yet: starting from the "
				"beginning\n", s->dir);
	}
	if (finished) {
		*next_id = maxid + 1;
		*out = s;
		return 1;
	}
	/* Logging for this run. */
	if (s->dir[0]) {
		s->run = runtime_cluster(rt) ? runtime_cluster(rt)->run : max_run(s->dir) + 1;
		snprintf(s->run_dir, sizeof(s->run_dir), "%s/run-%06llu", s->dir,
			 (unsigned long long)s->run);
		if ((rc = mkdir_p(s->run_dir)) < 0 || (rc = fsync_dir(s->dir)) < 0) {
			snprintf(err, errlen, "%s: %s", s->run_dir, strerror(-rc));
			goto fail;
		}
		for (int c = 0; c < s->ncores; c++) {
			char prefix[32];
			if (!runtime_core_local(rt, c))
				continue; /* another worker logs it */
			snprintf(prefix, sizeof(prefix), "core-%d", c);
			slog_conf sc = { .dir = s->run_dir, .prefix = prefix, .run = s->run,
					 .core = (uint32_t)c, .eventfd = runtime_core_efd(rt, c) };
			if ((rc = slog_open(&sc, &s->cores[c].log)) < 0) {
				snprintf(err, errlen, "state log %s/%s: %s", s->run_dir, prefix,
					 strerror(-rc));
				goto fail;
			}
		}
		for (int i = 0; i < runtime_ntasks(rt); i++) {
			task *t = runtime_task(rt, i);
			st_task *k = t->keyed;
			if (!is_local(t))
				continue;
			if ((rc = state_bind_log(t, s->cores[k->core].log)) < 0) {
				snprintf(err, errlen, "state log: %s", strerror(-rc));
				goto fail;
			}
		}
		for (int n = 0; n < g->nnodes; n++)
			if (g->nodes[n]->not_replayable)
				fprintf(stderr, "weir: source '%s' cannot replay its input: "
					"the job is at-least-once for it, not exactly-once\n",
					g->nodes[n]->name);
		int n;
		int64_t *ids = list_manifests(s->dir, &n);
		if (n && ids[0] > maxid)
			maxid = ids[0];
		free(ids);
	}
	*next_id = maxid + 1;
	*out = s;
	return 0;
fail:
	checkpoint_store_ops.stop(s);
	return rc < 0 ? rc : -ENOMEM;
}

static int st_begin(ckpt_store *s, int64_t id, const char *sp_dir, char *err,
		    size_t errlen)
{
	s->begin_ns = now_ns();
	if (!sp_dir)
		return 0;
	struct stat st;
	char meta[3400];
	snprintf(meta, sizeof(meta), "%s/_metadata", sp_dir);
	if (!stat(meta, &st)) {
		snprintf(err, errlen, "%s already holds a savepoint", sp_dir);
		return -EEXIST;
	}
	int rc = mkdir_p(sp_dir);
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", sp_dir, strerror(-rc));
		return rc;
	}
	snprintf(s->sp_path, sizeof(s->sp_path), "%s", sp_dir);
	atomic_store_explicit(&s->sp_id, id, memory_order_relaxed);
	return 0;
}

/* Delete manifests beyond the retained count, then the log segments and
 * runs that no retained manifest needs. */
static void retain(ckpt_store *s)
{
	int n, keep = s->cfg->checkpoints_retained > 0 ? s->cfg->checkpoints_retained : 2;
	int64_t *ids = list_manifests(s->dir, &n);
	uint64_t *minseg = calloc((size_t)s->ncores, sizeof(uint64_t));
	uint64_t *runs = calloc((size_t)keep + 1, sizeof(uint64_t));
	int nruns = 0;
	if (!minseg || !runs)
		goto out;
	for (int c = 0; c < s->ncores; c++)
		minseg[c] = UINT64_MAX;
	for (int i = 0; i < n; i++) {
		char path[4200], why[256];
		snprintf(path, sizeof(path), "%s/chk-%010lld.manifest", s->dir, (long long)ids[i]);
		if (i >= keep) {
			unlink(path);
			continue;
		}
		manifest m;
		if (load_manifest(path, &m, why, sizeof(why)) == 0) {
			if (nruns >= 0)
				runs[nruns++] = m.run;
			if (m.run == s->run)
				for (int t = 0; t < m.ntasks; t++)
					if (m.tasks[t].core < s->ncores &&
					    (m.tasks[t].from_off || m.tasks[t].to_off) &&
					    m.tasks[t].from_seg < minseg[m.tasks[t].core])
						minseg[m.tasks[t].core] = m.tasks[t].from_seg;
		} else {
			/* keep what an unreadable retained manifest may need */
			nruns = -1;
		}
		manifest_free(&m);
	}
	if (nruns < 0)
		goto out;
	for (int c = 0; c < s->ncores; c++)
		if (minseg[c] != UINT64_MAX) {
			char prefix[32];
			snprintf(prefix, sizeof(prefix), "core-%d", c);
			slog_truncate_before(s->run_dir, prefix, minseg[c]);
		}
	/* Runs of earlier attempts no retained manifest points at. */
	DIR *d = opendir(s->dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		unsigned long long r;
		if (sscanf(e->d_name, "run-%llu", &r) != 1 || r == s->run)
			continue;
		bool used = false;
		for (int i = 0; i < nruns; i++)
			used |= runs[i] == r;
		if (used)
			continue;
		char rd[4200];
		snprintf(rd, sizeof(rd), "%s/%s", s->dir, e->d_name);
		DIR *dd = opendir(rd);
		struct dirent *f;
		while (dd && (f = readdir(dd))) {
			char fp[4500];
			if (f->d_name[0] == '.')
				continue;
			snprintf(fp, sizeof(fp), "%s/%s", rd, f->d_name);
			unlink(fp);
		}
		if (dd)
			closedir(dd);
		rmdir(rd);
	}
	if (d)
		closedir(d);
out:
	free(ids);
	free(minseg);
	free(runs);
}

/* Close the savepoint's log files of every core; the first error, or rc. */
static int close_sp_logs(ckpt_store *s, int rc)
{
	for (int c = 0; c < s->ncores; c++)
		if (s->cores[c].sp_done) {
			int e = slog_close(s->cores[c].sp_done);
			s->cores[c].sp_done = NULL;
			if (e < 0 && !rc)
				rc = e;
		}
	return rc;
}

static int st_complete(ckpt_store *s, int64_t id, char *msg, size_t msglen)
{
	bool sp = id == atomic_load_explicit(&s->sp_id, memory_order_relaxed);
	sbuf b = { 0 };
	char err[1024] = "", name[64];
	int rc = 0;
	uint64_t bytes = 0;

	for (int c = 0; c < s->ncores; c++)
		bytes += s->cores[c].bytes_at_sync;
	uint64_t delta = bytes - s->bytes_prev;
	if (s->dir[0]) {
		if ((rc = manifest_text(s, id, false, &b)) < 0) {
			snprintf(msg, msglen, "manifest: %s", strerror(-rc));
			goto out;
		}
		snprintf(name, sizeof(name), "chk-%010lld.manifest", (long long)id);
		if ((rc = write_atomic(s->dir, name, b.p, b.len, err, sizeof(err))) < 0) {
			snprintf(msg, msglen, "manifest: %s", err);
			goto out;
		}
		s->bytes_prev = bytes;
	}
	if (sp) {
		rc = close_sp_logs(s, rc);
		b.len = 0;
		if (!rc && (rc = manifest_text(s, id, true, &b)) == 0)
			rc = write_atomic(s->sp_path, "_metadata", b.p, b.len, err, sizeof(err));
		if (rc < 0) {
			snprintf(msg, msglen, "savepoint %s: %s", s->sp_path,
				 err[0] ? err : strerror(-rc));
			goto out;
		}
		snprintf(msg, msglen, "savepoint %lld complete: %s", (long long)id, s->sp_path);
	} else {
		double ms = (now_ns() - s->begin_ns) / 1e6;
		snprintf(msg, msglen, "checkpoint %lld complete in %.1f ms: %.2f MiB of "
			 "state log written since the previous one", (long long)id, ms,
			 delta / 1048576.0);
	}
	if (s->dir[0])
		retain(s);
out:
	free(b.p);
	return rc;
}

/* A cluster worker's part of manifest id: its tasks' lines (the
 * coordinator merges the parts, weir_manifest_merge_write); for a savepoint,
 * then a line "--- savepoint" and its part of the savepoint's metadata. */
static int st_part(ckpt_store *s, int64_t id, char **text, char *err, size_t errlen)
{
	bool sp = id == atomic_load_explicit(&s->sp_id, memory_order_relaxed);
	sbuf b = { 0 };
	int rc = 0;

	*text = NULL;
	if (s->dir[0] && (rc = manifest_text(s, id, false, &b)) < 0)
		goto out;
	if (sp) {
		rc = close_sp_logs(s, rc);
		sb_printf(&b, "--- savepoint\n");
		if (!rc)
			rc = manifest_text(s, id, true, &b);
	}
	if (!rc && b.oom)
		rc = -ENOMEM;
out:
	if (rc < 0) {
		snprintf(err, errlen, "%s %lld: %s", sp ? "savepoint" : "checkpoint",
			 (long long)id, strerror(-rc));
		free(b.p);
		return rc;
	}
	*text = b.p;
	return 0;
}

/* Line i of a text as [*p, *p + *n); false past the end. */
static bool next_line(const char **cur, const char *end, const char **p, size_t *n)
{
	if (*cur >= end)
		return false;
	const char *nl = memchr(*cur, '\n', (size_t)(end - *cur));
	*p = *cur;
	*n = (size_t)((nl ? nl : end) - *cur);
	*cur = nl ? nl + 1 : end;
	return true;
}

static bool starts(const char *p, size_t n, const char *w)
{
	size_t k = strlen(w);
	return n >= k && !memcmp(p, w, k);
}

int weir_manifest_merge_write(const char *dir, const char *name, const char *const *parts,
			 int nparts, char *err, size_t errlen)
{
	sbuf b = { 0 };
	int nops = 0, rc;
	/* per op index: the line with the most table names (a worker that
	 * runs no subtask of an operator names none of its tables) */
	const char **opl = NULL;
	size_t *opn = NULL;
	int *opt = NULL;

	if (nparts < 1) {
		snprintf(err, errlen, "no parts");
		return -EINVAL;
	}
	for (int k = 0; k < nparts; k++) {
		const char *cur = parts[k], *end = cur + strlen(cur), *p;
		size_t n;
		while (next_line(&cur, end, &p, &n)) {
			int idx, par, nt;
			char uid[512];
			if (!starts(p, n, "op ") || n > 4000)
				continue;
			char line[4096];
			memcpy(line, p, n);
			line[n] = 0;
			if (sscanf(line, "op %d %d %511s %d", &idx, &par, uid, &nt) != 4 ||
			    idx < 0 || idx > 65535)
				continue;
			if (idx >= nops) {
				int nn = idx + 1;
				const char **a = realloc(opl, (size_t)nn * sizeof(*a));
				size_t *bn = a ? realloc(opn, (size_t)nn * sizeof(*bn)) : NULL;
				int *c = bn ? realloc(opt, (size_t)nn * sizeof(*c)) : NULL;
				if (a)
					opl = a;
				if (bn)
					opn = bn;
				if (!c) {
					rc = -ENOMEM;
					goto out;
				}
				opt = c;
				for (int i = nops; i < nn; i++) {
					opl[i] = NULL;
					opn[i] = 0;
					opt[i] = -1;
				}
				nops = nn;
			}
			if (nt > opt[idx]) {
				opl[idx] = p;
				opn[idx] = n;
				opt[idx] = nt;
			}
		}
	}
	/* Header from the first part, then the operators, then every part's
	 * other lines (tasks, at-least-once, in-flight ranges). */
	const char *cur = parts[0], *end = cur + strlen(cur), *p;
	size_t n;
	while (next_line(&cur, end, &p, &n) && !starts(p, n, "op "))
		sb_printf(&b, "%.*s\n", (int)n, p);
	for (int i = 0; i < nops; i++)
		if (opl[i])
			sb_printf(&b, "%.*s\n", (int)opn[i], opl[i]);
	for (int k = 0; k < nparts; k++) {
		bool header = true;
		cur = parts[k];
		end = cur + strlen(cur);
		while (next_line(&cur, end, &p, &n)) {
			if (starts(p, n, "op "))
				header = false;
			if (header || starts(p, n, "op ") || starts(p, n, "crc ") || !n)
				continue;
			sb_printf(&b, "%.*s\n", (int)n, p);
		}
	}
	if (b.oom) {
		rc = -ENOMEM;
		goto out;
	}
	sb_printf(&b, "crc %08x\n", crc32c(0, b.p, b.len));
	if (b.oom) {
		rc = -ENOMEM;
		goto out;
	}
	/* What we write must read back. */
	manifest m;
	rc = manifest_parse(b.p, b.len, &m, err, errlen);
	manifest_free(&m);
	if (rc == 0)
		rc = write_atomic(dir, name, b.p, b.len, err, errlen);
out:
	free(b.p);
	free(opl);
	free(opn);
	free(opt);
	return rc;
}

static void st_abandon(ckpt_store *s, int64_t id)
{
	(void)s;
	(void)id;
	/* The log positions of an abandoned checkpoint are simply never
	 * referenced; a savepoint's partial files stay (its _metadata is
	 * never written, so it cannot be restored). */
}

static void st_stats(ckpt_store *s, weir_checkpoint_stats *st)
{
	st->restored_id = s->restored_id;
	st->restore_bytes = s->restore_bytes;
	for (int c = 0; c < s->ncores; c++) {
		core_st *cs = &s->cores[c];
		if (cs->log)
			st->log_bytes += slog_bytes_written(cs->log);
		st->materializations += cs->mats;
		st->materialized_bytes += cs->mat_bytes;
		st->inflight_bytes += cs->inflight_bytes;
		if (cs->mat_max_ns / 1e6 > st->max_materialize_ms)
			st->max_materialize_ms = cs->mat_max_ns / 1e6;
		if (cs->flush_max_ns / 1e6 > st->max_flush_ms)
			st->max_flush_ms = cs->flush_max_ns / 1e6;
	}
}

static void st_stop(ckpt_store *s)
{
	if (!s)
		return;
	for (int i = 0; i < runtime_ntasks(s->rt); i++) {
		st_task *k = runtime_task(s->rt, i)->keyed;
		if (k)
			k->log = NULL;
	}
	for (int c = 0; s->cores && c < s->ncores; c++) {
		core_st *cs = &s->cores[c];
		if (cs->log)
			slog_close(cs->log);
		if (cs->sp)
			slog_close(cs->sp);
		if (cs->sp_done)
			slog_close(cs->sp_done);
		free(cs->tasks);
	}
	free(s->cores);
	free(s->uids);
	if (s->lock_fd >= 0)
		close(s->lock_fd); /* releases the flock */
	free(s);
}

const ckpt_store_ops checkpoint_store_ops = {
	.start = st_start,
	.begin = st_begin,
	.task_barrier = st_task_barrier,
	.core_sync = st_core_sync,
	.channel_state = st_channel_state,
	.core_sync_fd = st_core_sync_fd,
	.core_poll = st_core_poll,
	.core_quiesce = st_core_quiesce,
	.complete = st_complete,
	.part = st_part,
	.abandon = st_abandon,
	.stats = st_stats,
	.stop = st_stop,
};
