/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The window operator's internals (the windows of include/weir/keyed.h),
 * private to its files in operators/, which it is cut into by concept:
 *
 *   window.c         the operator: open and close, the input, watermark
 *                    and timer callbacks, popping timers, checkpoints,
 *                    the state's configuration, weir_window_late
 *   window_assign.c  the assigners: tumbling, sliding (and its slices),
 *                    session merging, count
 *   window_trigger.c when windows fire: their timers, late records, count
 *                    and early triggers, processing-time deadlines
 *   window_fns.c     the window functions: built-in aggregate, user
 *                    aggregate, reduce, window process function
 *   window_join.c    the window join: the window function of two inputs
 *   window_spec.c    the window spec: parsing, checking, and what every
 *                    window builder starts with
 *   window_build.c   the builders (weir_window_stats, _aggregate, _reduce,
 *                    _process, _join): a checked spec, the window
 *                    function's configuration, op_window in the graph
 *
 * window.c calls only files listed after it up to window_spec.c, and none
 * of those calls or names anything in a file before it; window_build.c
 * sits on top, naming window_spec.c's win_begin and window.c's op_window,
 * and nothing refers back to it.
 *
 * This header holds what they share: the configuration, the per-subtask
 * state and the layout of a window value (below), the steps every
 * assigner takes per record (inline, since they run per record in the
 * assigners' loops: add a record to a window value, log it, check the
 * triggers), and the functions the files call across.
 *
 * State.  Per subtask: a kdict of keys, the window table `wins` ((key, ns)
 * -> window value, ns = the window start for time windows, the window's
 * ordinal for count windows), and for sessions an index table ((key, 0) ->
 * the key's open sessions, sorted by start), and for sliding count windows
 * a table of per-key record counts (never freed: one entry per key).  One
 * tsvc (event or processing time, without dedup) holds the timers.  A
 * tumbling or sliding window registers its two timers (firing and cleanup;
 * one without allowed lateness) once, when it is created; on a pop, the
 * window must still exist (sliding windows kept as slices differ: see
 * Slices in window_assign.c).  A session's end moves as it grows and
 * merges, so a session has one live timer at a time ("armed"), kept next
 * to the time it must act at ("due"); see session_timer() in
 * window_assign.c.  Timers whose window merged away find no window and are
 * ignored.  A window value:
 *
 *   +------+------+-----+-----------------+--------------+-----+---------+
 *   | ptr0 | ptr1 | [n] | [end due armed] | [mints maxts]| [fl]| payload |
 *   +------+------+-----+-----------------+--------------+-----+---------+
 *   ptr0/ptr1 (present for reduce, process, join; 0, 1 or 2 of them) own
 *   memory that the table frees with the entry: a reduce's encoded
 *   accumulator row (an obuf), a process function's blist of rows, a
 *   join's two blists (a-rows, b-rows); n = records in the window, except
 *   for the row-buffering process and join, whose count is their lists'
 *   length; end, due, armed: sessions; mints/maxts: count windows (not
 *   for process functions, which find them in their rows at firing); fl:
 *   the dirty bit of early firing; payload: built-in sum, min, max (8
 *   bytes each, i64 or f64) or a user accumulator.  The built-in tumbling
 *   aggregate is thus 32 bytes (count, sum, min, max) plus the entry
 *   header.
 *
 * Threading: everything in win_state belongs to the subtask's reactor
 * thread; open/close run on the thread that runs the job.
 */
#ifndef WEIR_OPERATORS_WINDOW_H
#define WEIR_OPERATORS_WINDOW_H

#include <string.h>

#include "ops.h"
#include "state.h"

/* ---- configuration (build time; read-only while the job runs) --------------- */

enum win_fn { WF_BUILTIN = 1, WF_AGG, WF_REDUCE, WF_PROCESS, WF_JOIN };

typedef struct win_conf {
	weir_window_spec w;     /* validated by spec_check */
	enum win_fn fn;
	int nin;                /* 1, or 2 for a join */
	int key_col[2];         /* per input */
	weir_type key_type;
	const weir_schema *in[2];
	int col;                /* WF_BUILTIN: aggregated column, or -1 */
	weir_type col_type;
	weir_window_aggregate_fns agg;
	weir_reduce_fn reduce;
	weir_window_process_fn process;
	weir_join_fn join;      /* NULL: concatenate a's and b's columns */
	void *arg;
} win_conf;

/* ---- per-subtask state --------------------------------------------------------- */

typedef struct dirty_ent {
	skey k;       /* retained while listed */
	int64_t ns;
} dirty_ent;

/* The open sessions of one key, sorted by start, pairwise not
 * overlapping.  Up to two inline; more in a heap array. */
#define SIDX_INLINE 2
typedef struct sess_idx {
	int64_t (*heap)[2];     /* first: freed by the table (sidx_free) */
	uint32_t n, cap;        /* cap 0: inline */
	int64_t in[SIDX_INLINE][2];
} sess_idx;

typedef struct win_state {
	const win_conf *c;
	weir_window_kind kind;
	bool proc;              /* processing time */
	bool late_port;         /* weir_window_late was asked for */
	int64_t size, slide, gap, off, lateness, tc, early_ms;
	weir_type kt;
	kdict *d;
	kvtab *wins;            /* (key, ns) -> window value */
	kvtab *sidx;            /* sessions: (key, 0) -> sess_idx */
	kvtab *kcnt;            /* sliding count: (key, 0) -> records seen */
	tsvc *tm;               /* window timers (event or processing time) */
	/* value layout: byte offsets (0 = absent for the optional ones;
	 * o_n is there unless `lists`) */
	uint32_t nptr, o_n, o_end, o_due, o_armed, o_ts, o_flags, o_pay, vsize;
	uint32_t o_fired;       /* slices: last window end fired */
	int64_t upto;           /* slices: the time pop_timers acts up to */
	bool lists;             /* ptr0/ptr1 are blists (process, join) */
	bool sliced;            /* slices (window_assign.c) */
	bool started;           /* win_start ran (restored state checked) */
	dirty_ent *dirty;
	uint32_t ndirty, cap_dirty;
	int64_t early_due;      /* processing time of the next early tick */
	int64_t sched_ms;       /* deadline given to task_set_timer */
	char *scratch;          /* row encoding */
	size_t scratch_cap;
	uint32_t added;         /* bytes of the row add_row appended to a list */
	uint64_t live, peak;    /* windows held now, and at most */
	uint64_t late_dropped;  /* late records without a late output */
	weir_value cells[2 * WEIR_MAX_COLS];
	weir_value cells2[WEIR_MAX_COLS];
} win_state;

#define I64(v, off) (*(int64_t *)((char *)(v) + (off)))
#define PTR(v, i) (((void **)(v))[i])

/* a mod m in [0, m), m > 0 */
static inline int64_t mod_floor(int64_t a, int64_t m)
{
	int64_t r = a % m;
	return r < 0 ? r + m : r;
}

/* Start of the window of `len` ms (offset off in [0, len)) containing ts. */
static inline int64_t align_start(int64_t ts, int64_t len, int64_t off)
{
	int64_t m = mod_floor(ts, len) - off, s;
	if (m < 0)
		m += len;
	if (__builtin_sub_overflow(ts, m, &s))
		return INT64_MIN;
	return s;
}

#define SLICES_MAX 63 /* slices per window, so a window and its next slice fit a u64 */

/* ---- window values -------------------------------------------------------------- */

static inline int64_t win_end(const win_state *s, int64_t ns, const void *v)
{
	return s->o_end ? I64(v, s->o_end) : sat_add(ns, s->size);
}

/* Event time: a window fires when the watermark reaches end - 1 and is
 * freed when it reaches end - 1 + lateness.  Processing time: both when
 * the clock reaches end, so that no record of the window's last
 * millisecond can come after the firing. */
static inline int64_t fire_time(const win_state *s, int64_t end)
{
	return s->proc ? end : end - 1;
}

static inline int64_t clean_time(const win_state *s, int64_t end)
{
	return s->proc ? end : sat_add(end - 1, s->lateness);
}

static inline bool oom(task *t)
{
	task_fail(t, "window '%s': out of memory for window state", t->node->name);
	return false;
}

/* Records in window value v. */
static inline int64_t win_n(const win_state *s, const void *v)
{
	if (!s->lists)
		return I64(v, s->o_n);
	return (int64_t)blist_len(PTR(v, 0)) +
	       (s->nptr > 1 ? (int64_t)blist_len(PTR(v, 1)) : 0);
}

/* ---- across the files ---------------------------------------------------------- */

/* window_assign.c: the assigners */
/* Assign the rows of b (from input `input`) to their windows. */
void assign_batch(task *t, win_state *s, int input, const weir_batch *b);
/* A popped timer of a sliced window; of a session (value v). */
void sliced_on_timer(task *t, win_state *s, const timer *tm);
void session_on_timer(task *t, win_state *s, const timer *tm, void *v);
/* Delete window (k, ns) (and its session index entry). */
void free_window(win_state *s, skey k, int64_t ns);
/* The "session-index" table's value size, codec and free function. */
void sidx_table_conf(kvtab_conf *kc);

/* window_trigger.c: when windows fire */
/* The timers of a new tumbling, sliding or processing-time window. */
bool add_timers(task *t, win_state *s, skey k, int64_t ns, int64_t end);
/* Row r of b is late for every window it belongs to. */
void late_record(task *t, win_state *s, const weir_batch *b, uint32_t r);
/* List window (k, ns) with value v as changed, for early firing. */
void mark_dirty(task *t, win_state *s, skey k, int64_t ns, void *v);
/* Fire the windows that changed since they last fired (if `fire`);
 * empty the list. */
void fire_dirty(task *t, win_state *s, bool fire);
/* Give the runtime the next processing-time deadline (task_set_timer). */
void win_schedule(task *t, win_state *s);

/* window_fns.c: the window functions */
/* Make s->scratch hold n bytes.  False after failing the job. */
bool scratch_room(task *t, win_state *s, size_t n);
/* Store the n bytes at src (not in *ap) as the accumulator *ap. */
bool racc_store(task *t, obuf **ap, const char *src, size_t n);
/* acc = reduce(acc, in) with both as cells; re-encode into *ap. */
bool reduce_into(task *t, win_state *s, obuf **ap, const weir_value *in);
/* Fold session window value o into v (v keeps its end). */
bool merge_value(task *t, win_state *s, void *v, void *o);
/* Emit the result of window (k, ns) with value v; it stays in the table. */
void fire_window(task *t, win_state *s, skey k, int64_t ns, void *v);
/* The "windows" table's value size, codec and free function.  0 or
 * -EINVAL. */
int win_values_conf(const win_state *s, kvtab_conf *kc);

/* window_spec.c: the spec and what every builder starts with */
/* The common part of every window builder: a new conf, or NULL after an
 * env error. */
win_conf *win_begin(weir_stream *keyed, const char *nm, const weir_window_spec *w);
/* window_join.c: the window join */
/* Emit every pair of window value v's a-rows and b-rows (the window ends
 * at end).  0, or the join function's negative error. */
int fire_join(task *t, win_state *s, const void *v, int64_t end);

/* ---- per record, inline ---------------------------------------------------------- */

/* The operator's name, or its default. */
static inline const char *op_name(const char *name, const char *dflt)
{
	return name && *name ? name : dflt;
}

/* A window was created. */
static inline void new_window(win_state *s)
{
	if (++s->live > s->peak)
		s->peak = s->live;
}

/*
 * Add row r of b (from input `input`) to window value v.  The caller then
 * records the change with row_logged(), or with kv_written() if it changed
 * more of v.
 */
static inline bool add_row(task *t, win_state *s, void *v, int input,
			   const weir_batch *b, uint32_t r)
{
	const win_conf *c = s->c;
	int64_t n = s->lists ? 0 : ++I64(v, s->o_n); /* lists count themselves */

	if (s->o_ts) {
		int64_t ts = b->ts[r];
		if (n == 1 || ts < I64(v, s->o_ts))
			I64(v, s->o_ts) = ts;
		if (n == 1 || ts > I64(v, s->o_ts + 8))
			I64(v, s->o_ts + 8) = ts;
	}
	switch (c->fn) {
	case WF_BUILTIN:
		if (c->col < 0)
			break;
		if (c->col_type == WEIR_F64) {
			double x = weir_col_f64(b, c->col)[r];
			double *p = (double *)((char *)v + s->o_pay);
			if (n == 1) {
				p[0] = p[1] = p[2] = x;
			} else {
				p[0] += x;
				if (x < p[1])
					p[1] = x;
				if (x > p[2])
					p[2] = x;
			}
		} else {
			int64_t x = weir_col_i64(b, c->col)[r];
			int64_t *p = (int64_t *)((char *)v + s->o_pay);
			if (n == 1) {
				p[0] = p[1] = p[2] = x;
			} else {
				p[0] = (int64_t)((uint64_t)p[0] + (uint64_t)x);
				if (x < p[1])
					p[1] = x;
				if (x > p[2])
					p[2] = x;
			}
		}
		break;
	case WF_AGG:
		c->agg.add(c->agg.arg, (char *)v + s->o_pay, b, r);
		break;
	case WF_REDUCE:
		if (!PTR(v, 0)) {
			size_t sz = row_encoded_size(b, r);
			if (!scratch_room(t, s, sz))
				return false;
			row_encode(b, r, s->scratch);
			return racc_store(t, (obuf **)&PTR(v, 0), s->scratch, sz);
		}
		for (int k = 0; k < b->schema->ncols; k++)
			s->cells2[k] = cell_value(b, k, r);
		return reduce_into(t, s, (obuf **)&PTR(v, 0), s->cells2);
	case WF_PROCESS:
	case WF_JOIN: {
		size_t sz = row_encoded_size(b, r);
		if (sz > UINT32_MAX || !scratch_room(t, s, sz))
			return sz > UINT32_MAX ? oom(t) : false;
		row_encode(b, r, s->scratch);
		if (blist_add((blist **)&PTR(v, input), s->scratch, (uint32_t)sz) < 0)
			return oom(t);
		s->added = (uint32_t)sz;
		break;
	}
	}
	return true;
}

/* Record add_row(..., input, ...) on v: a list logs the appended row
 * alone (which is all that changed: see the value layout), any other
 * value the whole. */
static inline void row_logged(win_state *s, void *v, int input)
{
	if (s->lists)
		kv_appended(s->wins, v, (unsigned)input, s->scratch, s->added);
	else
		kv_written(s->wins, v);
}

/* After a record went into window (k, ns): the triggers.  n0 = the
 * window's record count before it. */
static inline void after_add(task *t, win_state *s, skey k, int64_t ns, void *v,
			     int64_t n0, int64_t end)
{
	int64_t n1 = win_n(s, v);
	if ((s->tc > 0 && n0 / s->tc != n1 / s->tc) ||
	    (!s->proc && end - 1 <= t->watermark)) {
		fire_window(t, s, k, ns, v);
		return;
	}
	if (s->early_ms > 0)
		mark_dirty(t, s, k, ns, v);
}

/* Test hook: the largest number of windows one subtask held at once, over
 * the window tasks closed since the last call; the call resets it. */
uint64_t window_take_peak_states(void);

#endif
