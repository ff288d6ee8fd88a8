/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Windows (include/weir/keyed.h): the window operator, op_window, that
 * assigns the records of a keyed stream to windows (window_assign.c),
 * keeps per (key, window) state in a kvtab of state/ (window.h), fires
 * windows from timers, and hands each firing to one of five window
 * functions: the built-in aggregate (count, sum, min, max), a user
 * aggregate, a reduce, a full window function over the buffered rows
 * (window_fns.c), or a join of two inputs (window_join.c).  This file is
 * the operator itself: open and close, its input, watermark and timer
 * callbacks, popping timers (fire and free), checkpoints, and the
 * configuration of its state; when a window fires and what is late is
 * window_trigger.c's, the window spec window_spec.c's (window.h lists
 * the files).
 *
 * Event time.  A window [s, e) fires when the watermark wm reaches e - 1.
 * With allowed lateness L a record is accepted into window w if
 * e - 1 + L > wm; if w had already fired (e - 1 <= wm) it fires again at
 * once, with its cumulative contents.  A window's state is freed when
 * wm >= e - 1 + L (with L = 0: when it fires).  A record for which every
 * window it belongs to is late goes, unchanged, to the late side output
 * (port 1, made by weir_window_late); without one it is counted in the
 * dead-letter metric and close() logs a warning with the count.  A sliding
 * record late for some windows only is added to the others.  Sessions
 * check lateness after merging (a merged window that is late makes the
 * record late), like Flink.
 *
 * Processing time.  A window fires, and is freed, when the wall clock
 * reaches its end (not end - 1: a record arriving in the window's last
 * millisecond must not open it again after it fired).  Allowed lateness
 * does not apply.  Processing-time timers run through task_set_timer and
 * the timer() callback.
 *
 * End of input: the runtime raises the watermark to INT64_MAX, and every
 * window fires and is freed, processing-time windows too (unlike the
 * timers of process functions, which are dropped: a window's contents are
 * data, and dropping them at the end of a bounded input would lose it).
 *
 * Output event time is the window end - 1; what a firing emits is each
 * window function's (window_fns.c, window_join.c).
 *
 * Checkpoints.  The tables and the timer service are registered (open):
 * "windows", "session-index" (sessions), "count-per-key" (sliding count
 * windows) and "timers"; every change of them goes through kv_written,
 * kv_appended or kv_delete (tsvc_add / tsvc_pop).  Encodings: built-in
 * and user aggregates are plain bytes; a reduce's value is [obuf | plain]
 * (obuf_table_conf); process and join values are lists (nlists 1 or 2):
 * a record added to one is logged as the appended row alone, which is
 * why their count and times are not kept beside the lists; the session
 * index has its own codec.  Operator state (snapshot): the count of late
 * records dropped.  Not logged: the dirty bit (firing clears it as a
 * side effect); instead, after a restore every window counts as changed,
 * so with early_fire_ms each restored window fires early once -- an early
 * result the uninterrupted run produced after the checkpoint was rolled
 * back with it and is produced again, at the price of possibly one more
 * early firing than that run had.  Restored rows are checked against the
 * input schema before use, and the window count is recounted (win_start).
 *
 * Firing pops timers in groups and prefetches their windows (pop_timers).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "ops.h"
#include "rows.h"
#include "state.h"
#include "window.h"

/* ---- test hook ------------------------------------------------------------------ */

static uint64_t peak_states; /* see window_take_peak_states (window.h) */

uint64_t window_take_peak_states(void)
{
	return __atomic_exchange_n(&peak_states, 0, __ATOMIC_RELAXED);
}

/* ---- timers ------------------------------------------------------------------ */

/* A popped timer: fire and/or free its window if it is still current. */
static void on_timer(task *t, win_state *s, const timer *tm)
{
	if (s->sliced) {
		sliced_on_timer(t, s, tm);
		return;
	}
	void *v = kv_get(s->wins, tm->key, tm->ns);
	if (!v)
		return;
	if (s->o_due) {
		session_on_timer(t, s, tm, v);
		return;
	}
	int64_t end = win_end(s, tm->ns, v);
	if (tm->ts == fire_time(s, end))
		fire_window(t, s, tm->key, tm->ns, v);
	if (tm->ts == clean_time(s, end))
		free_window(s, tm->key, tm->ns);
}

#define TIMER_GROUP 32

/* Act on every timer at or below upto: popped in groups whose windows are
 * prefetched first, since a million windows firing at one watermark are a
 * million random probes.  Timers a group adds (a session's cleanup) are
 * later than the one that added them and come in a later group. */
static void prefetch_timer(win_state *s, const timer *tm)
{
	if (!s->sliced) {
		kv_prefetch(s->wins, tm->key, tm->ns);
		return;
	}
	/* the window's slices and those the next windows may read (a few,
	 * for windows of many slices) */
	int64_t e = sat_add(tm->ts, 1), a = sat_add(e, -s->size);
	int64_t last = sat_add(e, s->size - s->slide);
	for (int q = 0; q < 12 && a <= last; q++, a = sat_add(a, s->slide))
		kv_prefetch(s->wins, tm->key, a);
}

#define TIMER_AHEAD 4 /* timers; all 32 at once overran the misses in flight */

static void pop_timers(task *t, win_state *s, int64_t upto)
{
	timer tm[TIMER_GROUP];
	uint32_t n;

	s->upto = upto;
	do {
		for (n = 0; n < TIMER_GROUP; n++) {
			/* Slices: a group is one window end, since a firing may
			 * add its key's next window, which must fire before the
			 * key's later ones. */
			if ((s->sliced && n > 0 && tsvc_next(s->tm) != tm[0].ts) ||
			    !tsvc_pop(s->tm, upto, &tm[n]))
				break;
			if (n < TIMER_AHEAD)
				prefetch_timer(s, &tm[n]);
		}
		for (uint32_t i = 0; i < n; i++) {
			if (i + TIMER_AHEAD < n)
				prefetch_timer(s, &tm[i + TIMER_AHEAD]);
			on_timer(t, s, &tm[i]);
			key_release(s->d, s->kt, tm[i].key);
		}
	} while (n > 0); /* not n == TIMER_GROUP: the group may have added timers */
}

/* ---- after a restore ---------------------------------------------------------- */

typedef struct start_ctx {
	task *t;
	win_state *s;
	bool bad;
} start_ctx;

/* Check a restored window's rows (a context-free decode cannot) and list
 * it as changed for early firing (see Checkpoints at the top). */
static int start_window(void *arg, skey k, int64_t ns, void *v)
{
	start_ctx *x = arg;
	win_state *s = x->s;
	const win_conf *c = s->c;
	uint32_t len;

	if (s->lists) {
		for (uint32_t l = 0; l < s->nptr; l++)
			for (uint32_t i = 0; i < blist_len(PTR(v, l)); i++) {
				const void *p = blist_get(PTR(v, l), i, &len);
				if (!row_valid(c->in[l], p, len))
					x->bad = true;
			}
	} else if (c->fn == WF_REDUCE) {
		const obuf *a = PTR(v, 0);
		if (a && !row_valid(c->in[0], a->data, a->len))
			x->bad = true;
	}
	if (x->bad)
		return 1;
	if (s->o_flags) {
		I64(v, s->o_flags) = 0; /* as logged: meaningless */
		mark_dirty(x->t, s, k, ns, v);
	}
	return 0;
}

/*
 * The first call on the reactor thread (open() asks for an early timer()
 * so that it comes even without input): windows present now were
 * restored (open() made the tables empty).  Count them, check them, and
 * arm the deadlines of processing-time windows and early firing.
 */
static void win_start(task *t, win_state *s)
{
	start_ctx x = { t, s, false };
	size_t n = kv_count(s->wins);

	s->started = true;
	if (!n)
		return;
	s->live = n;
	if (n > s->peak)
		s->peak = n;
	if (s->lists || s->c->fn == WF_REDUCE || s->o_flags)
		kv_foreach(s->wins, start_window, &x);
	if (x.bad) {
		task_fail(t, "window '%s': a restored window's rows do not fit the input "
			  "schema (did the job change since the checkpoint?)", t->node->name);
		return;
	}
	win_schedule(t, s);
}

/* ---- the operator ------------------------------------------------------------ */

static void win_process(task *t, int input, weir_batch *b)
{
	win_state *s = t->st;

	if (unlikely(!s->started))
		win_start(t, s);
	assign_batch(t, s, input, b);
	batch_release(b);
	if (s->proc)
		win_schedule(t, s);
}

static void win_watermark(task *t, int64_t wm)
{
	win_state *s = t->st;

	if (unlikely(!s->started))
		win_start(t, s);
	if (!s->proc && s->kind != WEIR_WIN_COUNT)
		pop_timers(t, s, wm);
	if (wm == INT64_MAX) {
		/* End of input: processing-time windows fire too; early
		 * firing is moot (every window fired or was freed). */
		if (s->proc)
			pop_timers(t, s, INT64_MAX);
		fire_dirty(t, s, false);
		win_schedule(t, s);
	}
}

static void win_timer(task *t)
{
	win_state *s = t->st;
	int64_t now = wall_ms();

	s->sched_ms = INT64_MAX; /* the runtime cleared our deadline */
	if (unlikely(!s->started))
		win_start(t, s);
	if (s->proc)
		pop_timers(t, s, now);
	if (s->early_due <= now)
		fire_dirty(t, s, true);
	task_flush(t);
	win_schedule(t, s);
}

/*
 * Operator state: [u8 version = 1][u64 late records dropped], so that the
 * warning at close counts the job's, not the run's.  With rescaling, new
 * subtask i adds up the counts of old subtasks s with s % p == i.
 */
#define WIN_SNAP_VERSION 1

static int win_snapshot(task *t, int64_t id, snap_buf *out)
{
	win_state *s = t->st;
	uint8_t version = WIN_SNAP_VERSION;
	(void)id;
	if (unlikely(!s->started))
		win_start(t, s);
	int rc = snap_put(out, &version, 1);
	return rc ? rc : snap_put_u64(out, s->late_dropped);
}

/* Restore a late-record counter written as [u8 version][u64 count]. */
static int restore_late_count(task *t, const op_restore *r, uint64_t *count)
{
	for (int i = 0; i < r->n; i++) {
		const op_blob *b = &r->blobs[i];
		snap_rd rd = { .p = b->p, .len = b->len };
		if (b->subtask % t->parallelism != t->subtask || !b->len)
			continue; /* not ours, or written without this state */
		const uint8_t *v = snap_get(&rd, 1);
		uint64_t n = snap_get_u64(&rd);
		if (rd.err || *v != WIN_SNAP_VERSION || rd.off != rd.len)
			return -EINVAL;
		*count += n;
	}
	return 0;
}

static int win_restore(task *t, const op_restore *r)
{
	win_state *s = t->st;
	return restore_late_count(t, r, &s->late_dropped);
}

static void win_close(task *t)
{
	win_state *s = t->st;
	if (!s)
		return;
	if (s->late_dropped)
		wlog(LOG_WARN, "window '%s' (subtask %d): %llu late records dropped "
		     "(counted as dead letters; weir_window_late() keeps them)",
		     t->node->name, t->subtask, (unsigned long long)s->late_dropped);
	if (s->kind == WEIR_WIN_COUNT && s->wins && kv_count(s->wins))
		wlog(LOG_WARN, "window '%s' (subtask %d): %zu partly filled count windows "
		     "did not fire at end of input", t->node->name, t->subtask,
		     kv_count(s->wins));
	uint64_t p = __atomic_load_n(&peak_states, __ATOMIC_RELAXED);
	while (s->peak > p &&
	       !__atomic_compare_exchange_n(&peak_states, &p, s->peak, false,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	if (s->d)
		fire_dirty(t, s, false);
	free(s->dirty);
	tsvc_free(s->tm);
	kv_free(s->wins);
	kv_free(s->sidx);
	kv_free(s->kcnt);
	if (s->d)
		kdict_free(s->d);
	free(s->scratch);
	free(s);
	t->st = NULL;
}

/* ---- configuration of the state ---------------------------------------------- */

/* Everything in win_state that the spec and function decide: parameters
 * and the value layout (window.h). */
static void win_plan(win_state *s, const win_conf *c)
{
	const weir_window_spec *w = &c->w;
	uint32_t off;

	s->c = c;
	s->kind = w->kind;
	s->proc = w->time == WEIR_PROCESSING_TIME && w->kind != WEIR_WIN_COUNT;
	s->size = w->size;
	s->slide = w->kind == WEIR_WIN_SLIDING || w->kind == WEIR_WIN_COUNT
			   ? (w->slide ? w->slide : w->size) : w->size;
	s->gap = w->gap;
	s->off = w->kind == WEIR_WIN_SLIDING ? mod_floor(w->offset, s->slide)
		 : w->kind == WEIR_WIN_TUMBLING ? mod_floor(w->offset, s->size) : 0;
	s->lateness = s->proc ? 0 : w->allowed_lateness;
	s->tc = w->trigger_count;
	s->early_ms = w->early_fire_ms;
	s->kt = c->key_type;
	s->early_due = INT64_MAX;
	s->sched_ms = INT64_MAX;

	s->nptr = c->fn == WF_JOIN ? 2 : c->fn == WF_REDUCE || c->fn == WF_PROCESS ? 1 : 0;
	s->lists = c->fn == WF_JOIN || c->fn == WF_PROCESS;
	s->sliced = w->kind == WEIR_WIN_SLIDING && !s->proc && c->fn == WF_BUILTIN &&
		    s->size % s->slide == 0 && s->size / s->slide <= SLICES_MAX &&
		    s->lateness == 0 && s->tc == 0 && s->early_ms == 0;
	off = s->nptr * 8;
	if (!s->lists) {
		s->o_n = off;
		off += 8;
	}
	if (s->sliced) {
		s->o_fired = off;
		off += 8;
	}
	if (w->kind == WEIR_WIN_SESSION) {
		s->o_end = off;
		s->o_due = off + 8;
		s->o_armed = off + 16;
		off += 24;
	}
	if (w->kind == WEIR_WIN_COUNT && !s->lists) {
		s->o_ts = off;
		off += 16;
	}
	if (s->early_ms > 0) {
		s->o_flags = off;
		off += 8;
	}
	s->o_pay = off;
	if (c->fn == WF_BUILTIN && c->col >= 0)
		off += 24;
	else if (c->fn == WF_AGG)
		off += (c->agg.acc_size + 7) & ~7u;
	s->vsize = off;
}

/* The table registered as `name` (window.c, Checkpoints); -ENOENT if none. */
static int win_table(const win_state *s, const char *name, kvtab_conf *kc)
{
	*kc = (kvtab_conf){ .key_type = s->kt };
	if (!strcmp(name, "windows"))
		return win_values_conf(s, kc);
	if (!strcmp(name, "session-index") && s->kind == WEIR_WIN_SESSION) {
		sidx_table_conf(kc);
		return 0;
	}
	if (!strcmp(name, "count-per-key") && s->kind == WEIR_WIN_COUNT &&
	    s->slide != s->size) {
		kc->vsize = 8;
		return 0;
	}
	return -ENOENT;
}

int window_table_conf(const lnode *n, const char *name, kvtab_conf *out)
{
	win_state s;
	if (n->ops != &op_window)
		return -ENOENT;
	memset(&s, 0, sizeof(s));
	win_plan(&s, n->conf);
	return win_table(&s, name, out);
}

/* Create and register table `name` as *tab. */
static int win_table_new(task *t, win_state *s, const char *name, kvtab **tab)
{
	kvtab_conf kc;
	int rc = win_table(s, name, &kc);
	if (rc < 0)
		return rc;
	*tab = kv_new(&kc, s->d);
	if (!*tab)
		return -ENOMEM;
	return state_register_table(t, name, *tab);
}

static int win_open(task *t)
{
	win_state *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	t->st = s; /* close() frees what open() got to */
	win_plan(s, t->node->conf);
	s->late_port = t->nports > 1;
	s->d = kdict_new();
	if (!s->d)
		return -ENOMEM;
	rc = win_table_new(t, s, "windows", &s->wins);
	if (rc == 0 && s->kind == WEIR_WIN_SESSION)
		rc = win_table_new(t, s, "session-index", &s->sidx);
	if (rc == 0 && s->kind == WEIR_WIN_COUNT && s->slide != s->size)
		rc = win_table_new(t, s, "count-per-key", &s->kcnt);
	if (rc < 0)
		return rc;
	if (!(s->tm = tsvc_new(s->d, s->kt, false)))
		return -ENOMEM;
	rc = state_register_timers(t, "timers", s->tm);
	if (rc < 0)
		return rc;
	task_set_timer(t, now_ns()); /* win_start soon, also without input */
	return 0;
}

const op_ops op_window = {
	.kind = "window", .open = win_open, .process = win_process,
	.watermark = win_watermark, .timer = win_timer, .snapshot = win_snapshot,
	.restore = win_restore, .close = win_close,
};

/* ---- building ---------------------------------------------------------------------- */

/*
 * Port 1 of a window operator or an interval join, with the input's
 * schema.  A join's two inputs must have the same schema (one side output
 * takes the late records of both).  Asking twice gives the same port.
 */
weir_stream *weir_window_late(weir_stream *windowed)
{
	const weir_schema *in[2];
	lnode *n;

	if (!windowed)
		return NULL;
	n = stream_node(windowed);
	if (n->ops == &op_window) {
		const win_conf *c = n->conf;
		in[0] = c->in[0];
		in[1] = c->nin == 2 ? c->in[1] : c->in[0];
	} else if ((in[0] = interval_join_input_schema(n, 0))) {
		in[1] = interval_join_input_schema(n, 1);
	} else {
		env_error(stream_env(windowed), "window_late: '%s' is not a window operator "
			  "or an interval join (it is a %s)", n->name, n->ops->kind);
		return NULL;
	}
	if (n->nports > 1)
		return stream_port(windowed, 1);
	if (!schema_equal(in[0], in[1])) {
		env_error(stream_env(windowed), "window_late: the inputs of join '%s' have "
			  "different schemas, so their late records have no one side output",
			  n->name);
		return NULL;
	}
	return stream_add_port(windowed, in[0]);
}
