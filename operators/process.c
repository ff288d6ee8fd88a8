/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyed process functions (include/weir/keyed.h); the interval join,
 * which shared this file once, is interval_join.c.
 *
 * op_process runs a user function per record with keyed state, timers and
 * side outputs: weir_process() on one keyed input, weir_connect_process()
 * on two (keyed + keyed on a column of the same type, or keyed + a
 * broadcast stream).  Each subtask owns
 *
 *   - one kvtab per state descriptor (namespace 0), in a kdict shared with
 *     its timers: VALUE/REDUCING/AGGREGATING store the `size` bytes of the
 *     value (an entry exists exactly while a value is present), LIST a
 *     blist*, MAP a pmap (a bmap* and its value size); BROADCAST_MAP is one
 *     pmap per subtask, kept in a kvtab under a fixed key so its writes
 *     take the same path as keyed ones (kv_written).  It is operator
 *     state, not keyed state: its table is configured `broadcast`, so a
 *     restore gives every subtask the whole map, whatever the key group of
 *     that fixed key.  TTL comes from the descriptor;
 *   - an event-time and a processing-time timer service (both dedup).
 *     Event timers fire from watermark() for every timer at or below the
 *     watermark, in time order.  Processing-time timers keep the runtime's
 *     task timer (task_set_timer) at the earliest pending one and fire from
 *     timer().  Processing-time timers still pending at end of input are
 *     dropped, as in a bounded Flink job: the job is over, and waiting for
 *     the clock would only delay its end.
 *
 * Checkpoints.  A process function registers each state table under the
 * descriptor's name (process_op checks that names are given, unique, at
 * most 47 bytes and not a timer's) and its timers as "event-timers" and
 * "processing-timers".  Encodings: values plain, a LIST its list (nlists
 * 1: weir_state_add logs the added element alone), a MAP every entry
 * (pmap: each put or remove logs the key's whole map, fine for the small
 * per-key maps this state is for).  open() asks for an early timer() so
 * that restored processing-time timers are armed without input.
 *
 * Everything here belongs to one subtask, on its reactor thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "ops.h"
#include "state.h"
#include "two_input.h"

/* ==== keyed process functions ======================================================= */

typedef struct proc_conf {
	weir_process_fns fns;
	weir_state_desc states[WEIR_MAX_STATES];
	char names[WEIR_MAX_STATES][64];
	int ninputs;
	int key_col[2];         /* -1: a broadcast input (no key) */
	weir_type key_type[2];
	bool bcast;             /* input 1 is a broadcast stream */
} proc_conf;

struct proc_state;

/* The context handed to user functions; one per subtask, reused, touched
 * only on the subtask's reactor thread. */
struct weir_ctx {
	task *t;
	struct proc_state *s;
	skey key;
	bool has_key;
	int input;   /* input of the record being processed; -1 in a timer */
	int64_t ts;
};

/* A process subtask's state (t->st): its reactor thread only. */
typedef struct proc_state {
	weir_ctx ctx;
	const proc_conf *c;
	kdict *dict;
	weir_type kt;                    /* key type of the tables and timers */
	kvtab *tab[WEIR_MAX_STATES];
	tsvc *ev, *pt;                   /* event- and processing-time timers */
	int64_t pt_armed;                /* wall ms the task timer is set for */
	bool ended;                      /* end of input: no more proc timers */
} proc_state;

/* The key under which a subtask keeps its BROADCAST_MAP states. */
static const skey bcast_key = { 0, 0 };

static void free_list_value(void *v) { blist_free(*(blist **)v); }

/*
 * A MAP or BROADCAST_MAP value: the map and the size of its values, kept
 * beside it because the codec sees nothing else.  Encoded as
 *
 *   [u32 vsize][u32 count] then count x ([u32 klen][key bytes][vsize bytes])
 */
typedef struct pmap {
	bmap *m;          /* first: the state API passes a pmap as a bmap ** */
	uint32_t vsize;
	uint32_t pad;
} pmap;

#define MAP_MAX_VSIZE (1u << 24) /* as process_op allows */

static void free_map_value(void *v) { bmap_free(((pmap *)v)->m); }

typedef struct map_enc {
	char *o;
	size_t n;
	uint32_t vsize;
} map_enc;

static int map_count_entry(void *arg, const void *k, size_t klen, const void *v)
{
	map_enc *e = arg;
	(void)k;
	(void)v;
	e->n += 4 + klen + e->vsize;
	return 0;
}

static int map_put_entry(void *arg, const void *k, size_t klen, const void *v)
{
	map_enc *e = arg;
	uint32_t kl = (uint32_t)klen;
	memcpy(e->o, &kl, 4);
	memcpy(e->o + 4, k, klen);
	memcpy(e->o + 4 + klen, v, e->vsize);
	e->o += 4 + klen + e->vsize;
	return 0;
}

static size_t map_encoded_size(const void *v)
{
	const pmap *pm = v;
	map_enc e = { .n = 8, .vsize = pm->vsize };
	bmap_foreach(pm->m, map_count_entry, &e);
	return e.n;
}

static void map_encode(const void *v, void *out)
{
	const pmap *pm = v;
	uint32_t hdr[2] = { pm->vsize, bmap_len(pm->m) };
	map_enc e = { .o = (char *)out + 8, .vsize = pm->vsize };
	memcpy(out, hdr, 8);
	bmap_foreach(pm->m, map_put_entry, &e);
}

static int map_decode(void *v, const void *in, size_t len)
{
	pmap *pm = v;
	const char *p = in, *end = p + len;
	uint32_t hdr[2], klen;
	bmap *m = NULL;

	if (len < 8)
		return -EINVAL;
	memcpy(hdr, p, 8);
	p += 8;
	if (hdr[1] && (hdr[0] == 0 || hdr[0] > MAP_MAX_VSIZE))
		return -EINVAL;
	for (uint32_t i = 0; i < hdr[1]; i++) {
		if (end - p < 4)
			goto bad;
		memcpy(&klen, p, 4);
		p += 4;
		if ((size_t)(end - p) < (size_t)klen + hdr[0])
			goto bad;
		uint32_t before = bmap_len(m);
		void *val = bmap_put(&m, hdr[0], p, klen);
		if (!val) {
			bmap_free(m);
			return -ENOMEM;
		}
		if (bmap_len(m) == before)
			goto bad; /* a key twice */
		memcpy(val, p + klen, hdr[0]);
		p += (size_t)klen + hdr[0];
	}
	if (p != end)
		goto bad;
	pm->m = m;
	pm->vsize = hdr[0];
	return 0;
bad:
	bmap_free(m);
	return -EINVAL;
}

/* Names the operator registers besides the user's states, and the
 * longest name state_register_table() takes. */
#define EV_TIMERS "event-timers"
#define PT_TIMERS "processing-timers"
#define STATE_NAME_MAX 47

/* The table of state descriptor d with key type kt. */
static kvtab_conf state_conf(const weir_state_desc *d, weir_type kt)
{
	kvtab_conf kc = { .key_type = kt, .vsize = d->size, .ttl_ms = d->ttl_ms };
	switch (d->kind) {
	case WEIR_STATE_LIST:
		kc.vsize = sizeof(blist *);
		kc.free_value = free_list_value;
		kc.nlists = 1;
		break;
	case WEIR_STATE_BROADCAST_MAP:
		kc.key_type = WEIR_I64;
		kc.broadcast = true;
		/* fall through */
	case WEIR_STATE_MAP:
		kc.vsize = sizeof(pmap);
		kc.free_value = free_map_value;
		kc.encoded_size = map_encoded_size;
		kc.encode = map_encode;
		kc.decode = map_decode;
		break;
	default:
		break;
	}
	return kc;
}

static int proc_open(task *t)
{
	const proc_conf *c = t->node->conf;
	proc_state *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	t->st = s; /* close() frees what open() got to */
	s->c = c;
	s->kt = c->key_type[0];
	s->pt_armed = INT64_MAX;
	s->ctx = (weir_ctx){ .t = t, .s = s, .input = -1 };
	s->dict = kdict_new();
	if (!s->dict)
		return -ENOMEM;
	for (int i = 0; i < c->fns.nstates; i++) {
		kvtab_conf kc = state_conf(&c->states[i], s->kt);
		s->tab[i] = kv_new(&kc, s->dict);
		if (!s->tab[i])
			return -ENOMEM;
		/* names were checked when the job was built (process_op) */
		int rc = state_register_table(t, c->names[i], s->tab[i]);
		if (rc < 0) {
			task_fail(t, "process '%s': cannot register state '%s': %s",
				  t->node->name, c->names[i], strerror(-rc));
			return rc;
		}
	}
	s->ev = tsvc_new(s->dict, s->kt, true);
	s->pt = tsvc_new(s->dict, s->kt, true);
	if (!s->ev || !s->pt)
		return -ENOMEM;
	int rc = state_register_timers(t, EV_TIMERS, s->ev);
	if (rc == 0)
		rc = state_register_timers(t, PT_TIMERS, s->pt);
	if (rc < 0)
		return rc;
	/* An early timer(): restored processing-time timers get armed (or
	 * fire) without waiting for input. */
	task_set_timer(t, now_ns());
	return 0;
}


int process_table_conf(const lnode *n, const char *name, kvtab_conf *out)
{
	if (n->ops == &op_process) {
		const proc_conf *c = n->conf;
		for (int i = 0; i < c->fns.nstates; i++)
			if (!strcmp(c->names[i], name)) {
				*out = state_conf(&c->states[i], c->key_type[0]);
				return 0;
			}
		return -ENOENT;
	}
	return interval_join_table_conf(n, name, out);
}

static void proc_close(task *t)
{
	proc_state *s = t->st;
	if (!s)
		return;
	if (s->pt && tsvc_count(s->pt))
		wlog(LOG_DEBUG, "process '%s' #%d: %zu processing-time timers pending "
		     "at end of input were dropped", t->node->name, t->subtask,
		     tsvc_count(s->pt));
	/* Timers and tables hold references to interned keys: free them
	 * before the dictionary. */
	if (s->ev)
		tsvc_free(s->ev);
	if (s->pt)
		tsvc_free(s->pt);
	for (int i = 0; i < WEIR_MAX_STATES; i++)
		if (s->tab[i])
			kv_free(s->tab[i]);
	if (s->dict)
		kdict_free(s->dict);
	free(s);
	t->st = NULL;
}

/* Point the task timer at the earliest processing-time timer (never
 * later than it is already set for: a spurious call only re-arms). */
static void pt_arm(proc_state *s)
{
	int64_t next = tsvc_next(s->pt);
	if (s->ended || next >= s->pt_armed)
		return;
	int64_t delay = next - wall_ms();
	if (delay < 0)
		delay = 0;
	if (delay > (int64_t)1 << 40) /* ~35 years: keeps ns in range */
		delay = (int64_t)1 << 40;
	s->pt_armed = next;
	task_set_timer(s->ctx.t, now_ns() + (uint64_t)delay * 1000000u);
}

/* Fire the timers of svc up to `upto` in time order. */
static void fire_timers(task *t, proc_state *s, tsvc *svc, int64_t upto,
			weir_time_domain d)
{
	const weir_process_fns *f = &s->c->fns;
	weir_ctx *x = &s->ctx;
	timer tm;

	while (tsvc_pop(svc, upto, &tm)) {
		int rc = 0;
		x->key = tm.key;
		x->has_key = true;
		x->input = -1;
		x->ts = tm.ts;
		if (f->on_timer) {
			out_default_ts(t, tm.ts);
			rc = f->on_timer(f->arg, x, d, tm.ts, task_out(t, 0));
		}
		x->has_key = false;
		key_release(s->dict, s->kt, tm.key);
		if (rc < 0) {
			task_fail(t, "process '%s': timer function failed: %s",
				  t->node->name, strerror(-rc));
			return;
		}
	}
}

static void proc_process(task *t, int input, weir_batch *b)
{
	proc_state *s = t->st;
	const proc_conf *c = s->c;
	const weir_process_fns *f = &c->fns;
	weir_ctx *x = &s->ctx;
	weir_out *out = task_out(t, 0);
	int kc = c->key_col[input];
	weir_type kt = c->key_type[input];

	x->input = input;
	for (uint32_t r = 0; r < b->rows; r++) {
		int rc;
		x->ts = b->ts[r];
		out_default_ts(t, x->ts);
		if (kc >= 0) {
			x->key = key_of(s->dict, kt, b, kc, r);
			/* Held for the call: clearing the key's last state must not
			 * free the string the context still points to. */
			key_retain(kt, x->key);
			x->has_key = true;
			rc = f->process(f->arg, x, input, b, r, out);
			x->has_key = false;
			key_release(s->dict, kt, x->key);
		} else {
			rc = f->process(f->arg, x, input, b, r, out);
		}
		if (rc < 0) {
			task_fail(t, "process '%s' failed: %s", t->node->name,
				  strerror(-rc));
			break;
		}
	}
	x->input = -1;
	batch_release(b);
}

static void proc_watermark(task *t, int64_t wm)
{
	proc_state *s = t->st;
	fire_timers(t, s, s->ev, wm, WEIR_EVENT_TIME);
}

static void proc_timer(task *t)
{
	proc_state *s = t->st;
	s->pt_armed = INT64_MAX; /* the runtime cleared the task timer */
	fire_timers(t, s, s->pt, wall_ms(), WEIR_PROCESSING_TIME);
	pt_arm(s);
}

static void proc_end_input(task *t)
{
	proc_state *s = t->st;
	/* Pending processing-time timers are dropped (see the top). */
	s->ended = true;
	s->pt_armed = INT64_MAX;
	task_set_timer(t, 0);
}

const op_ops op_process = {
	.kind = "process", .open = proc_open, .process = proc_process,
	.watermark = proc_watermark, .end_input = proc_end_input,
	.timer = proc_timer, .close = proc_close,
};

/* ---- the context ------------------------------------------------------------------ */

weir_value weir_ctx_key(const weir_ctx *c)
{
	if (!c || !c->has_key)
		return (weir_value){ .i64 = 0 };
	return key_value(c->s->kt, c->key);
}

int64_t weir_ctx_timestamp(const weir_ctx *c) { return c->ts; }
int64_t weir_ctx_watermark(const weir_ctx *c) { return c->t->watermark; }
int64_t weir_ctx_processing_time(const weir_ctx *c) { (void)c; return wall_ms(); }
int weir_ctx_subtask(const weir_ctx *c) { return c->t->subtask; }
int weir_ctx_parallelism(const weir_ctx *c) { return c->t->parallelism; }

int weir_timer_register(weir_ctx *c, weir_time_domain d, int64_t ts)
{
	if (!c || !c->has_key)
		return -EINVAL;
	if (d == WEIR_EVENT_TIME)
		return tsvc_add(c->s->ev, ts, c->key, 0);
	if (d != WEIR_PROCESSING_TIME)
		return -EINVAL;
	int rc = tsvc_add(c->s->pt, ts, c->key, 0);
	if (rc == 0 && ts < c->s->pt_armed)
		pt_arm(c->s);
	return rc;
}

int weir_timer_delete(weir_ctx *c, weir_time_domain d, int64_t ts)
{
	int rc;
	if (!c || !c->has_key)
		return -EINVAL;
	if (d == WEIR_EVENT_TIME)
		rc = tsvc_delete(c->s->ev, ts, c->key, 0);
	else if (d == WEIR_PROCESSING_TIME)
		rc = tsvc_delete(c->s->pt, ts, c->key, 0);
	else
		return -EINVAL;
	/* Deleting a timer that is not there is not an error (Flink). */
	return rc == -ENOENT ? 0 : rc;
}

/* ---- state ------------------------------------------------------------------------ */

/*
 * Errors: -EINVAL for a bad index, a state of another kind, or a keyed
 * state without a current key (records of a broadcast input); -EPERM for a
 * write to a BROADCAST_MAP from anything but the broadcast input; -ENOMEM;
 * weir_state_map_remove of an absent key is -ENOENT.  Reads return NULL
 * (or 0) where a write would fail.
 */
#define K(kind) (1u << (kind))
#define K_VALUES (K(WEIR_STATE_VALUE) | K(WEIR_STATE_REDUCING) | K(WEIR_STATE_AGGREGATING))
#define K_MAPS (K(WEIR_STATE_MAP) | K(WEIR_STATE_BROADCAST_MAP))

/*
 * The table of state i if its kind is in `kinds` and the context can use
 * it (a keyed state needs a current key), with the key to use; for a write
 * to a BROADCAST_MAP, *eperm is set when the context may not write it
 * (only records of the broadcast input may).  NULL otherwise.
 */
static kvtab *state_tab(weir_ctx *c, int i, unsigned kinds, skey *k)
{
	if (!c || i < 0 || i >= c->s->c->fns.nstates)
		return NULL;
	const weir_state_desc *d = &c->s->c->states[i];
	if (!(kinds & K(d->kind)))
		return NULL;
	if (d->kind == WEIR_STATE_BROADCAST_MAP) {
		*k = bcast_key;
	} else {
		if (!c->has_key)
			return NULL;
		*k = c->key;
	}
	return c->s->tab[i];
}

static bool bcast_write_denied(const weir_ctx *c, int i)
{
	return c->s->c->states[i].kind == WEIR_STATE_BROADCAST_MAP &&
	       !(c->s->c->bcast && c->input == 1);
}

const void *weir_state_get(weir_ctx *c, int state)
{
	skey k;
	kvtab *t = state_tab(c, state, K_VALUES, &k);
	return t ? kv_get(t, k, 0) : NULL;
}

int weir_state_set(weir_ctx *c, int state, const void *value)
{
	skey k;
	bool created;
	kvtab *t = state_tab(c, state, K(WEIR_STATE_VALUE), &k);
	if (!t || !value)
		return -EINVAL;
	void *v = kv_upsert(t, k, 0, &created);
	if (!v)
		return -ENOMEM;
	memcpy(v, value, c->s->c->states[state].size);
	kv_written(t, v);
	return 0;
}

int weir_state_add(weir_ctx *c, int state, const void *in, size_t len)
{
	skey k;
	bool created;
	kvtab *t = state_tab(c, state, K(WEIR_STATE_LIST) | K(WEIR_STATE_REDUCING) |
			     K(WEIR_STATE_AGGREGATING), &k);
	if (!t || (!in && len))
		return -EINVAL;
	const weir_state_desc *d = &c->s->c->states[state];
	if (d->kind == WEIR_STATE_LIST && len > UINT32_MAX)
		return -EINVAL;
	if (d->kind != WEIR_STATE_LIST && !in)
		return -EINVAL;
	void *v = kv_upsert(t, k, 0, &created);
	if (!v)
		return -ENOMEM;
	switch (d->kind) {
	case WEIR_STATE_LIST: {
		int rc = blist_add((blist **)v, in, (uint32_t)len);
		if (rc < 0)
			return rc;
		kv_appended(t, v, 0, in, (uint32_t)len); /* logs the element */
		return 0;
	}
	case WEIR_STATE_REDUCING:
		if (created)
			memcpy(v, in, d->size);
		else
			d->fold(d->arg, v, in);
		break;
	default: /* AGGREGATING: the accumulator starts zeroed */
		d->fold(d->arg, v, in);
		break;
	}
	kv_written(t, v);
	return 0;
}

size_t weir_state_list_len(weir_ctx *c, int state)
{
	skey k;
	kvtab *t = state_tab(c, state, K(WEIR_STATE_LIST), &k);
	blist **l = t ? kv_get(t, k, 0) : NULL;
	return l ? blist_len(*l) : 0;
}

const void *weir_state_list_get(weir_ctx *c, int state, size_t i, size_t *len)
{
	skey k;
	uint32_t n = 0;
	kvtab *t = state_tab(c, state, K(WEIR_STATE_LIST), &k);
	blist **l = t ? kv_get(t, k, 0) : NULL;
	const void *p = l && i < UINT32_MAX ? blist_get(*l, (uint32_t)i, &n) : NULL;
	if (len)
		*len = p ? n : 0;
	return p;
}

const void *weir_state_map_get(weir_ctx *c, int state, const void *key,
			       size_t klen)
{
	skey k;
	kvtab *t = state_tab(c, state, K_MAPS, &k);
	if (!t || klen > UINT32_MAX || (!key && klen))
		return NULL;
	bmap **m = kv_get(t, k, 0);
	return m ? bmap_get(*m, key, (uint32_t)klen) : NULL;
}

int weir_state_map_put(weir_ctx *c, int state, const void *key, size_t klen,
		       const void *value)
{
	skey k;
	bool created;
	kvtab *t = state_tab(c, state, K_MAPS, &k);
	if (!t || klen > UINT32_MAX || (!key && klen) || !value)
		return -EINVAL;
	if (bcast_write_denied(c, state))
		return -EPERM;
	uint32_t size = c->s->c->states[state].size;
	pmap *pm = kv_upsert(t, k, 0, &created);
	if (!pm)
		return -ENOMEM;
	pm->vsize = size;
	void *v = bmap_put(&pm->m, size, key, (uint32_t)klen);
	if (!v)
		return -ENOMEM;
	memcpy(v, value, size);
	kv_written(t, pm); /* logs the whole map (see pmap) */
	return 0;
}

int weir_state_map_remove(weir_ctx *c, int state, const void *key, size_t klen)
{
	skey k;
	kvtab *t = state_tab(c, state, K_MAPS, &k);
	if (!t || klen > UINT32_MAX || (!key && klen))
		return -EINVAL;
	if (bcast_write_denied(c, state))
		return -EPERM;
	bmap **m = kv_get(t, k, 0);
	if (!m || !bmap_remove(*m, key, (uint32_t)klen))
		return -ENOENT;
	if (bmap_len(*m) == 0)
		kv_delete(t, k, 0); /* an empty map is no map */
	else
		kv_written(t, m);
	return 0;
}

int weir_state_map_foreach(weir_ctx *c, int state,
			   int (*fn)(void *arg, const void *k, size_t klen,
				     const void *value),
			   void *arg)
{
	skey k;
	kvtab *t = state_tab(c, state, K_MAPS, &k);
	if (!t || !fn)
		return -EINVAL;
	bmap **m = kv_get(t, k, 0);
	return m ? bmap_foreach(*m, fn, arg) : 0;
}

int weir_state_clear(weir_ctx *c, int state)
{
	skey k;
	kvtab *t = state_tab(c, state, ~0u, &k);
	if (!t)
		return -EINVAL;
	if (bcast_write_denied(c, state))
		return -EPERM;
	kv_delete(t, k, 0);
	return 0;
}

/* ---- building --------------------------------------------------------------------- */

static weir_stream *process_op(weir_stream *a, weir_stream *b, const char *name,
			       const weir_schema *out, const weir_process_fns *fns)
{
	const char *nm = name && *name ? name : "process";
	weir_env *env;
	proc_conf *c;
	int ka;

	if (!a)
		return NULL;
	env = stream_env(a);
	if (!fns || !fns->process) {
		env_error(env, "process '%s': no process function", nm);
		return NULL;
	}
	if (!out) {
		env_error(env, "process '%s': no output schema", nm);
		return NULL;
	}
	if (fns->nstates < 0 || fns->nstates > WEIR_MAX_STATES ||
	    (fns->nstates > 0 && !fns->states)) {
		env_error(env, "process '%s': %d states (at most %d)", nm,
			  fns->nstates, WEIR_MAX_STATES);
		return NULL;
	}
	ka = stream_key_col(a);
	if (ka < 0) {
		env_error(env, "process '%s': the input is not keyed (call weir_key_by first)", nm);
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		env_error(env, "out of memory");
		return NULL;
	}
	c->fns = *fns;
	c->fns.states = c->states;
	c->ninputs = b ? 2 : 1;
	c->key_col[0] = ka;
	c->key_type[0] = weir_stream_schema(a)->fields[ka].type;
	c->key_col[1] = -1;
	if (b) {
		if (stream_is_broadcast(b)) {
			c->bcast = true;
		} else {
			int kb = stream_key_col(b);
			if (kb < 0) {
				env_error(env, "connect '%s': the second input must be keyed "
					  "(weir_key_by) or broadcast (weir_broadcast)", nm);
				goto fail;
			}
			weir_type tb = weir_stream_schema(b)->fields[kb].type;
			if (!key_types_match(c->key_type[0], tb)) {
				env_error(env, "connect '%s': key columns of different types "
					  "(%s and %s)", nm, type_name(c->key_type[0]),
					  type_name(tb));
				goto fail;
			}
			c->key_col[1] = kb;
			c->key_type[1] = tb;
		}
	}
	for (int i = 0; i < fns->nstates; i++) {
		weir_state_desc d = fns->states[i];
		const char *sn = d.name ? d.name : "?";
		bool sized = d.kind != WEIR_STATE_LIST;
		/* A checkpoint or savepoint finds a state by its name. */
		if (!d.name || !*d.name) {
			env_error(env, "process '%s': state %d has no name (checkpoints "
				  "find state by name)", nm, i);
			goto fail;
		}
		if (strlen(d.name) > STATE_NAME_MAX) {
			env_error(env, "process '%s': state name '%s' is longer than %d bytes",
				  nm, sn, STATE_NAME_MAX);
			goto fail;
		}
		if (!strcmp(d.name, EV_TIMERS) || !strcmp(d.name, PT_TIMERS)) {
			env_error(env, "process '%s': state name '%s' is taken by the "
				  "operator's timers", nm, sn);
			goto fail;
		}
		for (int j = 0; j < i; j++)
			if (!strcmp(c->names[j], d.name)) {
				env_error(env, "process '%s': two states are named '%s' (names "
					  "must be unique: checkpoints find state by name)",
					  nm, sn);
				goto fail;
			}
		if (d.kind < WEIR_STATE_VALUE || d.kind > WEIR_STATE_BROADCAST_MAP) {
			env_error(env, "process '%s': state '%s' has an unknown kind %d",
				  nm, sn, (int)d.kind);
			goto fail;
		}
		if (sized && (d.size == 0 || d.size > (1u << 24))) {
			env_error(env, "process '%s': state '%s' needs a size (1 to 16 MiB)",
				  nm, sn);
			goto fail;
		}
		if ((d.kind == WEIR_STATE_REDUCING || d.kind == WEIR_STATE_AGGREGATING) &&
		    !d.fold) {
			env_error(env, "process '%s': state '%s' needs a fold function",
				  nm, sn);
			goto fail;
		}
		if (d.ttl_ms < 0) {
			env_error(env, "process '%s': state '%s' has a negative TTL", nm, sn);
			goto fail;
		}
		if (d.kind == WEIR_STATE_BROADCAST_MAP && !c->bcast) {
			env_error(env, "process '%s': broadcast state '%s' needs "
				  "weir_connect_process with a weir_broadcast() input",
				  nm, sn);
			goto fail;
		}
		snprintf(c->names[i], sizeof(c->names[i]), "%s", sn);
		d.name = c->names[i];
		c->states[i] = d;
	}

	weir_stream *in[2] = { a, b };
	weir_stream *s = stream_add_op(in, c->ninputs, name, b ? "connect-process" : "process",
				       &op_process, out, c, NULL);
	if (s)
		stream_node(s)->side_outputs = true;
	return s;
fail:
	free(c);
	return NULL;
}

weir_stream *weir_process(weir_stream *keyed, const char *name,
			  const weir_schema *out_schema,
			  const weir_process_fns *fns)
{
	return process_op(keyed, NULL, name, out_schema, fns);
}

weir_stream *weir_connect_process(weir_stream *a, weir_stream *b,
				  const char *name,
				  const weir_schema *out_schema,
				  const weir_process_fns *fns)
{
	if (a && !b) {
		env_error(stream_env(a), "connect '%s': no second input",
			  name ? name : "connect-process");
		return NULL;
	}
	return process_op(a, b, name, out_schema, fns);
}
