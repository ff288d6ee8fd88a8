/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Windows and window joins (include/weir/keyed.h): one operator, op_window,
 * that assigns the records of a keyed stream to windows, keeps per (key,
 * window) state in a kvtab of state/, fires windows from timers, and hands
 * each firing to one of five window functions: the built-in aggregate
 * (count, sum, min, max), a user aggregate, a reduce, a full window
 * function over the buffered rows, or a join of two inputs.
 *
 * Assigners (ts = the record's event time, or wall_ms() at arrival for
 * WEIR_PROCESSING_TIME windows; all divisions are floor divisions, so
 * negative times work):
 *   tumbling  [s, s + size), s = floor((ts - offset) / size) * size + offset
 *   sliding   every [s, s + size) with s = k * slide + offset, s <= ts <
 *             s + size (slide > size leaves gaps: a record in a gap belongs
 *             to no window and is dropped, as in Flink)
 *   session   a proto-window [ts, ts + gap), merged with the key's windows
 *             that STRICTLY overlap it (a.start < b.end && b.start <
 *             a.end).  Windows that only touch do not merge: a record
 *             exactly `gap` ms after the previous one starts a new session.
 *   count     per key, every `size` records (tumbling), or with slide S
 *             every S records over the last `size` records (so the first
 *             firings see fewer records, as Flink's countWindow(size, S)).
 *             Count windows fire by count only: at end of input a partly
 *             filled count window is dropped (as in Flink), which is
 *             logged at close.  window_start/window_end of a count window
 *             are the least event time of its records and the greatest + 1.
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
 * Triggers.  Besides the above: trigger_count > 0 fires a window (without
 * purging) each time its record count reaches a multiple of trigger_count;
 * early_fire_ms > 0 fires the windows that changed since their last firing
 * at most early_fire_ms of processing time after their first change (a
 * dirty list, so a tick never scans the table; the tick is only armed
 * while something is dirty).
 *
 * Output event time is the window end - 1.  Window joins emit, at each
 * firing, every pair of the window's a-rows and b-rows; a re-firing (late
 * record within the allowed lateness, count trigger, early firing) emits
 * all pairs again, like a Flink join over a re-fired window.
 *
 * State.  Per subtask: a kdict of keys, the window table `wins`
 * ((key, ns) -> window value, ns = the window start for time windows, the
 * window's ordinal for count windows), and for sessions an index table
 * ((key, 0) -> the key's open sessions, sorted by start), and for sliding
 * count windows a table of per-key record counts (never freed: one entry
 * per key).  One tsvc (event or processing time, without dedup) holds the
 * timers.  A tumbling or sliding window registers its two timers (firing
 * and cleanup; one when L = 0) once, when it is created; on a pop, the
 * window must still exist (sliding windows kept as slices differ: see
 * Slices below).  A session's end moves as it grows and merges,
 * so a session has one live timer at a time ("armed"), kept next to the
 * time it must act at ("due"); see session_timer().  Timers whose window
 * merged away find no window and are ignored.  A window value:
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
 * Slices.  The built-in aggregate over event-time sliding windows whose
 * size is a multiple of the slide (and without allowed lateness, count or
 * early triggers) keeps one accumulator per key and slide-sized slice
 * [a, a + slide) instead of one per window, so a record updates one value
 * instead of size / slide of them: (key, ns = a) -> [n | fired | payload].
 * A window [E - size, E) fires for a key by folding the key's slices in it
 * (merge_value), then frees the slice [E - size, E - size + slide), which
 * no later window holds.  Timers: a new slice registers one, at the end of
 * the first window holding it that has not fired (its own end, unless it
 * is behind the watermark); a window that fires continues the chain by
 * registering the next window's timer when some remaining slice is in it
 * and slice [E, E + slide), which registered that timer when it opened, is
 * absent.  A slice opened after its key's chain registered the same timer
 * makes a duplicate; both pop at the same watermark, and the second finds
 * `fired` = E in the window's slices (set by the first firing, not logged:
 * it only matters within one pop_timers) and does nothing.  A record is
 * late if the last window holding its slice has fired; otherwise it only
 * counts for windows that fire after it, as in the window-per-window path.
 *
 * The built-in aggregate over tumbling windows is the fast path: a batch
 * is processed in chunks, keys and window starts for the whole chunk
 * first, then the accumulators are updated in place, each entry
 * prefetched (kv_prefetch) a few rows ahead; firing pops timers in groups
 * and prefetches their windows.  Nothing is allocated per record, except
 * that the row-buffering functions (process, join, reduce) grow their
 * lists and the tables and timer heap grow (amortised).
 *
 * Threading: everything in win_state belongs to the subtask's reactor
 * thread; open/close run on the thread that runs the job.
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
	weir_window_agg_fns agg;
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
	bool sliced;            /* slices (see the top of the file) */
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

/* The row iterator handed to window process functions. */
struct weir_rows {
	const blist *l;
	uint32_t i, n;
	const weir_schema *s;
};

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

/* ---- test hook ------------------------------------------------------------------ */

/* Not in any header: tests declare it.  The largest number of windows one
 * subtask held at once, over the window tasks closed since the last call;
 * the call resets it. */
uint64_t window_take_peak_states(void);
static uint64_t peak_states;

uint64_t window_take_peak_states(void)
{
	return __atomic_exchange_n(&peak_states, 0, __ATOMIC_RELAXED);
}

/* ---- window values ------------------------------------------------------------ */

static void free_list1(void *v)
{
	blist_free(PTR(v, 0));
}

static void free_list2(void *v)
{
	blist_free(PTR(v, 0));
	blist_free(PTR(v, 1));
}

static void sidx_free(void *v)
{
	free(((sess_idx *)v)->heap);
}

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

static bool oom(task *t)
{
	task_fail(t, "window '%s': out of memory for window state", t->node->name);
	return false;
}

static bool scratch_room(task *t, win_state *s, size_t n)
{
	if (n <= s->scratch_cap)
		return true;
	size_t cap = s->scratch_cap ? s->scratch_cap : 256;
	while (cap < n)
		cap *= 2;
	char *p = realloc(s->scratch, cap);
	if (!p)
		return oom(t);
	s->scratch = p;
	s->scratch_cap = cap;
	return true;
}

/* Store the n bytes at src (not in *ap) as the accumulator *ap. */
static bool racc_store(task *t, obuf **ap, const char *src, size_t n)
{
	return obuf_set(ap, src, n) == 0 || oom(t);
}

/* acc = reduce(acc, in) with both as cells; re-encode into *ap. */
static bool reduce_into(task *t, win_state *s, obuf **ap, const weir_value *in)
{
	const win_conf *c = s->c;
	const weir_schema *sc = c->in[0];
	int64_t ts;
	row_decode(sc, (*ap)->data, s->cells, &ts);
	c->reduce(c->arg, s->cells, in, sc);
	size_t n = cells_size(sc, s->cells);
	/* The cells may point into *ap: encode aside, then store. */
	if (!scratch_room(t, s, n))
		return false;
	cells_encode(sc, s->cells, ts, s->scratch);
	return racc_store(t, ap, s->scratch, n);
}

/* Records in window value v. */
static inline int64_t win_n(const win_state *s, const void *v)
{
	if (!s->lists)
		return I64(v, s->o_n);
	return (int64_t)blist_len(PTR(v, 0)) +
	       (s->nptr > 1 ? (int64_t)blist_len(PTR(v, 1)) : 0);
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

/* Append the elements of list o to *l. */
static bool list_append(task *t, blist **l, blist **o)
{
	if (!*l) { /* take it over */
		*l = *o;
		*o = NULL;
		return true;
	}
	uint32_t n = blist_len(*o), len;
	for (uint32_t i = 0; i < n; i++) {
		const void *p = blist_get(*o, i, &len);
		if (blist_add(l, p, len) < 0)
			return oom(t);
	}
	return true;
}

/* Fold session window value o into v (v keeps its end). */
static bool merge_value(task *t, win_state *s, void *v, void *o)
{
	const win_conf *c = s->c;
	int64_t nv = win_n(s, v), no = win_n(s, o);

	if (nv == 0) {
		/* v is new: it becomes o (which gives up its memory). */
		int64_t end = s->o_end ? I64(v, s->o_end) : 0;
		memcpy(v, o, s->vsize);
		if (s->o_end)
			I64(v, s->o_end) = end; /* the caller sets it and the timer */
		/* v is not on the dirty list (o's entry there goes stale) */
		if (s->o_flags)
			I64(v, s->o_flags) = 0;
		for (uint32_t i = 0; i < s->nptr; i++)
			PTR(o, i) = NULL;
		return true;
	}
	if (!s->lists)
		I64(v, s->o_n) = nv + no;
	switch (c->fn) {
	case WF_BUILTIN:
		if (c->col < 0 || no == 0)
			break;
		if (c->col_type == WEIR_F64) {
			double *p = (double *)((char *)v + s->o_pay);
			const double *q = (const double *)((char *)o + s->o_pay);
			p[0] += q[0];
			if (q[1] < p[1])
				p[1] = q[1];
			if (q[2] > p[2])
				p[2] = q[2];
		} else {
			int64_t *p = (int64_t *)((char *)v + s->o_pay);
			const int64_t *q = (const int64_t *)((char *)o + s->o_pay);
			p[0] = (int64_t)((uint64_t)p[0] + (uint64_t)q[0]);
			if (q[1] < p[1])
				p[1] = q[1];
			if (q[2] > p[2])
				p[2] = q[2];
		}
		break;
	case WF_AGG:
		c->agg.merge(c->agg.arg, (char *)v + s->o_pay, (char *)o + s->o_pay);
		break;
	case WF_REDUCE: {
		obuf *oa = PTR(o, 0);
		int64_t ts;
		if (!oa)
			break;
		if (!PTR(v, 0)) {
			PTR(v, 0) = oa;
			PTR(o, 0) = NULL;
			break;
		}
		/* o's cells point into oa, which stays alive until o is
		 * deleted, after this returns. */
		row_decode(c->in[0], oa->data, s->cells2, &ts);
		return reduce_into(t, s, (obuf **)&PTR(v, 0), s->cells2);
	}
	case WF_PROCESS:
		return list_append(t, (blist **)&PTR(v, 0), (blist **)&PTR(o, 0));
	case WF_JOIN:
		return list_append(t, (blist **)&PTR(v, 0), (blist **)&PTR(o, 0)) &&
		       list_append(t, (blist **)&PTR(v, 1), (blist **)&PTR(o, 1));
	}
	return true;
}

/* ---- firing ---------------------------------------------------------------- */

static void out_key(weir_out *o, int c, weir_type kt, weir_value k)
{
	switch (kt) {
	case WEIR_STR:
		weir_out_str(o, c, k.str.ptr, k.str.len);
		break;
	case WEIR_F64:
		weir_out_f64(o, c, k.f64);
		break;
	case WEIR_BOOL:
		weir_out_bool(o, c, k.b);
		break;
	default:
		weir_out_i64(o, c, k.i64);
	}
}

static int fire_join(task *t, win_state *s, const void *v, int64_t end)
{
	const win_conf *c = s->c;
	const weir_schema *os = t->node->schema[0];
	weir_out *o = task_out(t, 0);
	const blist *la = PTR(v, 0), *lb = PTR(v, 1);
	uint32_t na = blist_len(la), nb = blist_len(lb), len;
	weir_value *ca = s->cells, *cb = s->cells + c->in[0]->ncols;
	int64_t tsa, tsb;

	for (uint32_t i = 0; i < na; i++) {
		row_decode(c->in[0], blist_get(la, i, &len), ca, &tsa);
		for (uint32_t j = 0; j < nb; j++) {
			row_decode(c->in[1], blist_get(lb, j, &len), cb, &tsb);
			weir_out_ts(o, end - 1);
			if (c->join) {
				int rc = c->join(c->arg, ca, tsa, cb, tsb, o);
				if (rc < 0)
					return rc;
			} else {
				/* s->cells holds a's cells then b's: the output row */
				row_stage(o, os, s->cells, end - 1);
				weir_out_emit(o);
			}
		}
	}
	return 0;
}

/* Emit the result of window (k, ns) with value v; it stays in the table. */
static void fire_window(task *t, win_state *s, skey k, int64_t ns, void *v)
{
	const win_conf *c = s->c;
	weir_out *o = task_out(t, 0);
	weir_value key = key_value(s->kt, k);
	int64_t start, end, ts;
	int rc = 0;

	if (s->kind == WEIR_WIN_COUNT && s->o_ts) {
		start = I64(v, s->o_ts);
		end = sat_add(I64(v, s->o_ts + 8), 1);
	} else if (s->kind == WEIR_WIN_COUNT) {
		/* a process function's rows: each encoding starts with its ts */
		const blist *l = PTR(v, 0);
		uint32_t len;
		start = INT64_MAX;
		end = INT64_MIN;
		for (uint32_t i = 0; i < blist_len(l); i++) {
			memcpy(&ts, blist_get(l, i, &len), 8);
			if (ts < start)
				start = ts;
			if (ts > end)
				end = ts;
		}
		end = sat_add(end, 1);
	} else {
		start = ns;
		end = win_end(s, ns, v);
	}
	if (s->o_flags)
		I64(v, s->o_flags) = 0; /* clean: not a state change to log */
	weir_out_ts(o, end - 1);
	switch (c->fn) {
	case WF_BUILTIN:
		out_key(o, 0, s->kt, key);
		weir_out_i64(o, 1, start);
		weir_out_i64(o, 2, end);
		weir_out_i64(o, 3, I64(v, s->o_n));
		if (c->col >= 0) {
			const int64_t *p = (const int64_t *)((char *)v + s->o_pay);
			for (int i = 0; i < 3; i++)
				weir_out_i64(o, 4 + i, p[i]); /* f64: the same bits */
		}
		weir_out_emit(o);
		break;
	case WF_AGG:
		rc = c->agg.result(c->agg.arg, (char *)v + s->o_pay, key, start, end, o);
		break;
	case WF_REDUCE: {
		const obuf *a = PTR(v, 0);
		if (!a)
			break;
		row_decode(c->in[0], a->data, s->cells, &ts);
		row_stage(o, c->in[0], s->cells, end - 1);
		weir_out_emit(o);
		break;
	}
	case WF_PROCESS: {
		weir_rows rows = { .l = PTR(v, 0), .i = 0, .n = blist_len(PTR(v, 0)),
				   .s = c->in[0] };
		rc = c->process(c->arg, key, start, end, &rows, o);
		break;
	}
	case WF_JOIN:
		rc = fire_join(t, s, v, end);
		break;
	}
	if (rc < 0)
		task_fail(t, "window '%s': the window function failed: %s", t->node->name,
			  strerror(-rc));
}

/* Remove start ns from the key's session index. */
static void sidx_remove(win_state *s, skey k, int64_t ns)
{
	sess_idx *x = kv_get(s->sidx, k, 0);
	if (!x)
		return;
	int64_t (*w)[2] = x->cap ? x->heap : x->in;
	for (uint32_t i = 0; i < x->n; i++) {
		if (w[i][0] != ns)
			continue;
		memmove(&w[i], &w[i + 1], (x->n - i - 1) * sizeof(w[0]));
		x->n--;
		if (x->n == 0)
			kv_delete(s->sidx, k, 0);
		else
			kv_written(s->sidx, x);
		return;
	}
}

static void free_window(win_state *s, skey k, int64_t ns)
{
	if (!kv_delete(s->wins, k, ns))
		return;
	s->live--;
	if (s->kind == WEIR_WIN_SESSION)
		sidx_remove(s, k, ns);
}

static void new_window(win_state *s)
{
	if (++s->live > s->peak)
		s->peak = s->live;
}

/* Timers of a tumbling, sliding or processing-time window (k, ns) ending
 * at end, registered once when it opens: its firing (unless the watermark
 * is past it already: a window opened by a late record fires at once) and
 * its cleanup.  Their times never change, so no timer goes stale. */
static bool add_timers(task *t, win_state *s, skey k, int64_t ns, int64_t end)
{
	int64_t fire = fire_time(s, end), clean = clean_time(s, end);
	if ((s->proc || fire > t->watermark) && tsvc_add(s->tm, fire, k, ns) < 0)
		return oom(t);
	if (clean != fire && tsvc_add(s->tm, clean, k, ns) < 0)
		return oom(t);
	return true;
}

/*
 * A session's end moves with (nearly) every record and with merges, and an
 * old cleanup time may equal a new firing time.  So a session keeps the
 * time it should act at (o_due: its firing, or once fired or opened behind
 * the watermark, its cleanup) apart from the time of its one live timer
 * (o_armed, INT64_MAX: none).  A timer is added only when the session
 * must act earlier than its armed timer; an armed timer that pops before
 * o_due re-arms at o_due; any other popped timer of the session is stale.
 * So a session that keeps growing costs one timer per `gap`, not one per
 * record.
 */
static bool session_arm(task *t, win_state *s, skey k, int64_t ns, void *v,
			int64_t at)
{
	I64(v, s->o_armed) = at;
	if (tsvc_add(s->tm, at, k, ns) < 0)
		return oom(t);
	return true;
}

static bool session_timer(task *t, win_state *s, skey k, int64_t ns, void *v,
			  int64_t end)
{
	int64_t fire = fire_time(s, end);
	int64_t due = s->proc || fire > t->watermark ? fire : clean_time(s, end);
	I64(v, s->o_due) = due;
	return I64(v, s->o_armed) <= due || session_arm(t, s, k, ns, v, due);
}

/* A session's timer popped: see session_timer. */
static void session_on_timer(task *t, win_state *s, const timer *tm, void *v)
{
	int64_t end = I64(v, s->o_end), due = I64(v, s->o_due);
	int64_t fire = fire_time(s, end), clean = clean_time(s, end);

	if (tm->ts != I64(v, s->o_armed))
		return; /* stale */
	I64(v, s->o_armed) = INT64_MAX;
	if (tm->ts < due) {
		session_arm(t, s, tm->key, tm->ns, v, due);
		kv_written(s->wins, v);
		return;
	}
	if (due == fire)
		fire_window(t, s, tm->key, tm->ns, v);
	if (due == clean) {
		free_window(s, tm->key, tm->ns);
		return;
	}
	I64(v, s->o_due) = clean;
	session_arm(t, s, tm->key, tm->ns, v, clean);
	kv_written(s->wins, v);
}

/* ---- processing-time deadlines ------------------------------------------------ */

static void schedule(task *t, win_state *s)
{
	int64_t next = s->early_due;
	if (s->proc && tsvc_next(s->tm) < next)
		next = tsvc_next(s->tm);
	if (next == INT64_MAX) {
		if (s->sched_ms != INT64_MAX) {
			task_set_timer(t, 0);
			s->sched_ms = INT64_MAX;
		}
		return;
	}
	if (next >= s->sched_ms)
		return;
	s->sched_ms = next;
	int64_t delta = next - wall_ms();
	if (delta < 0)
		delta = 0;
	if (delta > INT64_MAX / 2000000)
		delta = INT64_MAX / 2000000;
	task_set_timer(t, now_ns() + (uint64_t)delta * 1000000u);
}

static void mark_dirty(task *t, win_state *s, skey k, int64_t ns, void *v)
{
	if (I64(v, s->o_flags))
		return;
	if (s->ndirty == s->cap_dirty) {
		uint32_t cap = s->cap_dirty ? s->cap_dirty * 2 : 64;
		dirty_ent *d = realloc(s->dirty, cap * sizeof(*d));
		if (!d) {
			oom(t);
			return;
		}
		s->dirty = d;
		s->cap_dirty = cap;
	}
	I64(v, s->o_flags) = 1;
	key_retain(s->kt, k);
	s->dirty[s->ndirty++] = (dirty_ent){ .k = k, .ns = ns };
	if (s->early_due == INT64_MAX) {
		s->early_due = sat_add(wall_ms(), s->early_ms);
		schedule(t, s);
	}
}

/* Fire the windows that changed since they last fired; empty the list. */
static void fire_dirty(task *t, win_state *s, bool fire)
{
	for (uint32_t i = 0; i < s->ndirty; i++) {
		dirty_ent *e = &s->dirty[i];
		void *v = fire ? kv_get(s->wins, e->k, e->ns) : NULL;
		if (v && I64(v, s->o_flags))
			fire_window(t, s, e->k, e->ns, v);
		key_release(s->d, s->kt, e->k);
	}
	s->ndirty = 0;
	s->early_due = INT64_MAX;
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

/* A popped timer: fire and/or free its window if it is still current. */
static void sliced_on_timer(task *t, win_state *s, const timer *tm);

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

/* ---- late records ------------------------------------------------------------- */

static void late_record(task *t, win_state *s, const weir_batch *b, uint32_t r)
{
	if (!s->late_port) {
		metric_add(&t->m.dead_letters, 1);
		s->late_dropped++;
		return;
	}
	weir_out *o = task_out(t, 1);
	for (int c = 0; c < b->schema->ncols; c++)
		s->cells2[c] = cell_value(b, c, r);
	row_stage(o, b->schema, s->cells2, b->ts[r]);
	weir_out_emit(o);
}

/* ---- tumbling and sliding windows ----------------------------------------------- */

/* Add row r to the window (k, start) ending at end, which is not late for
 * it.  False after failing the job. */
static inline bool win_add(task *t, win_state *s, int input, skey k, int64_t ns,
			   int64_t end, const weir_batch *b, uint32_t r)
{
	bool created;
	void *v = kv_upsert(s->wins, k, ns, &created);
	if (!v)
		return oom(t);
	if (created) {
		new_window(s);
		if (!add_timers(t, s, k, ns, end))
			return false;
	}
	int64_t n0 = win_n(s, v);
	if (!add_row(t, s, v, input, b, r))
		return false;
	row_logged(s, v, input);
	after_add(t, s, k, ns, v, n0, end);
	return true;
}

#define CHUNK 64
#define PREFETCH_AHEAD 12 /* rows; 4 was slower, 64 no faster */

static void process_time(task *t, win_state *s, int input, const weir_batch *b)
{
	const int kc = s->c->key_col[input];
	const bool tumbling = s->kind == WEIR_WIN_TUMBLING;
	const int64_t wm = t->watermark, step = tumbling ? s->size : s->slide;
	const int64_t now = s->proc ? wall_ms() : 0;
	skey keys[CHUNK];
	int64_t st[CHUNK];

	for (uint32_t base = 0; base < b->rows; base += CHUNK) {
		uint32_t m = b->rows - base < CHUNK ? b->rows - base : CHUNK;
		/* keys and (latest) window starts of the chunk, then the
		 * updates, each entry prefetched PREFETCH_AHEAD rows early */
		for (uint32_t i = 0; i < m; i++) {
			int64_t ts = s->proc ? now : b->ts[base + i];
			keys[i] = key_of(s->d, s->kt, b, kc, base + i);
			key_retain(s->kt, keys[i]);
			st[i] = align_start(ts, step, s->off);
		}
		for (uint32_t i = 0; i < m && i < PREFETCH_AHEAD; i++)
			kv_prefetch(s->wins, keys[i], st[i]);
		for (uint32_t i = 0; i < m; i++) {
			uint32_t r = base + i;
			if (i + PREFETCH_AHEAD < m)
				kv_prefetch(s->wins, keys[i + PREFETCH_AHEAD], st[i + PREFETCH_AHEAD]);
			int64_t ts = s->proc ? now : b->ts[r];
			int nwin = 0, taken = 0;
			for (int64_t ws = st[i];;) {
				int64_t end = sat_add(ws, s->size);
				if (end <= ts)
					break;
				nwin++;
				if (s->proc || sat_add(end - 1, s->lateness) > wm) {
					taken++;
					if (!win_add(t, s, input, keys[i], ws, end, b, r)) {
						for (uint32_t j = 0; j < m; j++)
							key_release(s->d, s->kt, keys[j]);
						return;
					}
				}
				if (tumbling || __builtin_sub_overflow(ws, s->slide, &ws))
					break;
			}
			if (nwin > 0 && taken == 0)
				late_record(t, s, b, r);
		}
		for (uint32_t i = 0; i < m; i++)
			key_release(s->d, s->kt, keys[i]);
	}
}

/* ---- sliding windows as slices --------------------------------------------------- */

#define SLICES_MAX 63 /* slices per window, so a window and its next slice fit a u64 */

/*
 * Window [E - size, E) of the timer's key, E = tm->ts + 1, and then, while
 * the watermark being acted on (s->upto) has passed them and no slice of
 * their own registered their timers, its next windows, from the same
 * slices (see Slices at the top of the file).  The key's slices in
 * [E - size, E] are read once, into `val`: nothing else changes them
 * during the call.  Every slice still held at the end is marked with the
 * last window fired, which is how a duplicate timer of any window fired
 * here knows it.
 */
static void sliced_on_timer(task *t, win_state *s, const timer *tm)
{
	const int64_t g = s->slide, n = s->size / g; /* n <= SLICES_MAX */
	int64_t end = sat_add(tm->ts, 1), start = sat_add(end, -s->size);
	uint64_t val[SLICES_MAX + 1][5]; /* slice values, vsize <= 40 */
	uint64_t acc[5], have = 0;       /* bit i: slice start + i * g */
	int64_t fired = INT64_MIN;
	void *v;

	for (int64_t i = 0; i <= n; i++) {
		if (!(v = kv_get(s->wins, tm->key, sat_add(start, i * g))))
			continue;
		if (i < n && I64(v, s->o_fired) >= end)
			return; /* a duplicate timer: this window fired */
		memcpy(val[i], v, s->vsize);
		have |= 1ull << i;
	}
	for (;;) {
		/* window [start, end): bits 0 .. n - 1 of `have`; bit n is
		 * the slice after it */
		uint64_t in = have & ((1ull << n) - 1);
		if (!in)
			break;
		memset(acc, 0, sizeof(acc));
		for (uint64_t m = in; m; m &= m - 1)
			merge_value(t, s, acc, val[__builtin_ctzll(m)]);
		fire_window(t, s, tm->key, start, acc);
		fired = end;
		if (have & 1)
			free_window(s, tm->key, start); /* its last window */
		if (end == INT64_MAX) {
			have = 0; /* no window after it */
			break;
		}
		/* the next window */
		have >>= 1;
		memmove(val[0], val[1], (size_t)n * sizeof(val[0]));
		start = sat_add(start, g);
		end = sat_add(end, g);
		if (!have || (have >> (n - 1)) & 1)
			break; /* nothing left, or its last slice's timer is due */
		if (end - 1 > s->upto) {
			if (tsvc_add(s->tm, end - 1, tm->key, start) < 0)
				oom(t);
			break;
		}
		if ((v = kv_get(s->wins, tm->key, end))) {
			memcpy(val[n], v, s->vsize);
			have |= 1ull << n;
		}
	}
	if (fired == INT64_MIN)
		return;
	for (int64_t i = 0; i < n; i++)
		if ((have >> i) & 1 && (v = kv_get(s->wins, tm->key, sat_add(start, i * g))))
			I64(v, s->o_fired) = fired;
}

/* Row r for key k, at time ts, into its slice a. */
/* The slice the last row of a batch went to: within one batch nothing is
 * deleted, and a slice moves only when an insert grows the table, so the
 * value of the latest kv_upsert stays valid (a hot key's rows often come
 * one after another). */
typedef struct slice_hit {
	skey k;
	int64_t a;
	void *v; /* NULL: none */
} slice_hit;

static inline bool sliced_add(task *t, win_state *s, int input, skey k, int64_t a,
			      const weir_batch *b, uint32_t r, slice_hit *h)
{
	const int64_t g = s->slide, wm = t->watermark;
	bool created = false;
	void *v;

	if (sat_add(a, s->size) - 1 <= wm) {
		late_record(t, s, b, r); /* every window of the slice fired */
		return true;
	}
	if (h->v && key_eq(k, h->k) && a == h->a) {
		v = h->v;
	} else {
		v = kv_upsert(s->wins, k, a, &created);
		*h = (slice_hit){ .k = k, .a = a, .v = v };
	}
	if (!v)
		return oom(t);
	if (created) {
		/* the first window of the slice that has not fired */
		int64_t e = sat_add(a, g);
		if (e - 1 <= wm)
			e = a + ((wm - a + 1) / g + 1) * g; /* <= a + size */
		new_window(s);
		if (tsvc_add(s->tm, e - 1, k, e - s->size) < 0)
			return oom(t);
	}
	if (!add_row(t, s, v, input, b, r))
		return false;
	kv_written(s->wins, v);
	return true;
}

static void process_sliced(task *t, win_state *s, int input, const weir_batch *b)
{
	const int kc = s->c->key_col[input];
	skey keys[CHUNK];
	int64_t st[CHUNK];
	slice_hit h = { .v = NULL };

	for (uint32_t base = 0; base < b->rows; base += CHUNK) {
		uint32_t m = b->rows - base < CHUNK ? b->rows - base : CHUNK;
		for (uint32_t i = 0; i < m; i++) {
			keys[i] = key_of(s->d, s->kt, b, kc, base + i);
			key_retain(s->kt, keys[i]);
			st[i] = align_start(b->ts[base + i], s->slide, s->off);
		}
		for (uint32_t i = 0; i < m && i < PREFETCH_AHEAD; i++)
			kv_prefetch(s->wins, keys[i], st[i]);
		for (uint32_t i = 0; i < m; i++) {
			if (i + PREFETCH_AHEAD < m)
				kv_prefetch(s->wins, keys[i + PREFETCH_AHEAD], st[i + PREFETCH_AHEAD]);
			if (!sliced_add(t, s, input, keys[i], st[i], b, base + i, &h)) {
				for (uint32_t j = 0; j < m; j++)
					key_release(s->d, s->kt, keys[j]);
				return;
			}
		}
		for (uint32_t i = 0; i < m; i++)
			key_release(s->d, s->kt, keys[i]);
	}
}

/* ---- session windows ------------------------------------------------------------ */

/* Replace sessions [i, j) of the key's index (j == i: insert at i) by
 * [ms, me).  x may be NULL (no index yet). */
static bool sidx_replace(task *t, win_state *s, skey k, uint32_t i, uint32_t j,
			 int64_t ms, int64_t me)
{
	bool created;
	sess_idx *x = kv_upsert(s->sidx, k, 0, &created);
	if (!x)
		return oom(t);
	uint32_t cap = x->cap ? x->cap : SIDX_INLINE;
	if (j == i && x->n == cap) {
		uint32_t ncap = cap * 4;
		int64_t (*h)[2] = malloc(ncap * sizeof(h[0]));
		if (!h)
			return oom(t);
		memcpy(h, x->cap ? x->heap : x->in, x->n * sizeof(h[0]));
		free(x->heap);
		x->heap = h;
		x->cap = ncap;
	}
	int64_t (*w)[2] = x->cap ? x->heap : x->in;
	if (j == i) {
		memmove(&w[i + 1], &w[i], (x->n - i) * sizeof(w[0]));
		x->n++;
	} else if (j > i + 1) {
		memmove(&w[i + 1], &w[j], (x->n - j) * sizeof(w[0]));
		x->n -= j - i - 1;
	}
	w[i][0] = ms;
	w[i][1] = me;
	kv_written(s->sidx, x);
	return true;
}

/* The index entry and window of the last record's session: valid until a
 * table of the operator is changed by more than kv_written, which only
 * the merge path below does within a batch (a hot key's records often
 * come one after another). */
typedef struct sess_hit {
	skey k;
	sess_idx *x; /* NULL: none */
	int64_t ms;
	void *v;
} sess_hit;

/* Row r, at time ts, for key k: merge its proto-window into the key's
 * sessions and add it.  False after failing the job. */
static bool session_add(task *t, win_state *s, int input, skey k, int64_t ts,
			const weir_batch *b, uint32_t r, sess_hit *h)
{
	int64_t ms = ts, me = sat_add(ts, s->gap);
	const int64_t ps = ms, pe = me;
	const bool hit = h->x && key_eq(k, h->k);
	sess_idx *x = hit ? h->x : kv_get(s->sidx, k, 0);
	int64_t (*w)[2] = NULL;
	uint32_t i = 0, j = 0;
	bool created;
	void *v;

	if (x) {
		w = x->cap ? x->heap : x->in;
		while (i < x->n && w[i][1] <= ps)
			i++;
		for (j = i; j < x->n && w[j][0] < pe; j++) {
			if (w[j][0] < ms)
				ms = w[j][0];
			if (w[j][1] > me)
				me = w[j][1];
		}
	}
	/* Lateness after merging (only a window that merged with nothing
	 * can be late: open windows are not). */
	if (!s->proc && sat_add(me - 1, s->lateness) <= t->watermark) {
		late_record(t, s, b, r);
		return true;
	}
	if (j == i + 1 && w[i][0] == ms) {
		/* Inside one open session, or extending it (in-order input:
		 * nearly every record): its start and entries stay, its end
		 * may move, and its timer only if it must act earlier (never:
		 * the end grew), so x stays valid after the window's. */
		v = hit && h->ms == ms ? h->v : kv_get(s->wins, k, ms);
		if (!v) {
			task_fail(t, "window '%s': session index out of step", t->node->name);
			return false;
		}
		*h = (sess_hit){ .k = k, .x = x, .ms = ms, .v = v };
		int64_t n0 = win_n(s, v);
		if (!add_row(t, s, v, input, b, r))
			return false;
		if (w[i][1] == me) {
			row_logged(s, v, input);
		} else {
			I64(v, s->o_end) = me;
			if (!session_timer(t, s, k, ms, v, me))
				return false;
			kv_written(s->wins, v); /* whole: its end changed too */
			w[i][1] = me;
			kv_written(s->sidx, x);
		}
		after_add(t, s, k, ms, v, n0, me);
		return true;
	}
	h->x = NULL; /* tables change below */
	/* A new window, or the merge of sessions [i, j) (and the record)
	 * into [ms, me), kept at ns = ms: the entry of the first merged
	 * session if it starts there, else a new one. */
	v = kv_upsert(s->wins, k, ms, &created);
	if (!v)
		return oom(t);
	if (created)
		new_window(s);
	for (uint32_t q = i; q < j; q++) {
		int64_t os = w[q][0];
		if (os == ms)
			continue;
		void *o = kv_get(s->wins, k, os);
		if (o && !merge_value(t, s, v, o))
			return false;
		/* v is logged whole below, once everything changed */
		if (kv_delete(s->wins, k, os))
			s->live--;
		v = kv_get(s->wins, k, ms); /* the delete may have moved it */
	}
	I64(v, s->o_end) = me;
	if (created)
		I64(v, s->o_armed) = INT64_MAX; /* no timer of its own yet */
	int64_t n0 = win_n(s, v);
	if (!add_row(t, s, v, input, b, r))
		return false;
	bool armed = session_timer(t, s, k, ms, v, me);
	/* whole: its end and timer changed too (lists included: merges and
	 * new sessions are rarer than records inside a session) */
	kv_written(s->wins, v);
	if (!armed)
		return false;
	/* the index (its own table: w stayed valid so far) */
	if (!sidx_replace(t, s, k, i, j, ms, me))
		return false;
	after_add(t, s, k, ms, v, n0, me);
	return true;
}

/* Start loading what session_add will touch for key k at time ts: its
 * index entry (already prefetched), then the window it will most likely
 * update. */
static void session_prefetch(win_state *s, skey k, int64_t ts)
{
	sess_idx *x = kv_get(s->sidx, k, 0);
	int64_t ns = ts;
	if (x) {
		int64_t (*w)[2] = x->cap ? x->heap : x->in;
		uint32_t i = 0;
		while (i < x->n && w[i][1] <= ts)
			i++;
		if (i < x->n && w[i][0] < sat_add(ts, s->gap))
			ns = w[i][0];
	}
	kv_prefetch(s->wins, k, ns);
}

#define SESSION_AHEAD 8
#define KEY_RING 32 /* a power of two > 2 * SESSION_AHEAD */

/* Per row: its key's index entry is prefetched 2 * SESSION_AHEAD rows
 * ahead, and the window it will most likely update SESSION_AHEAD rows
 * ahead, rolling over the whole batch (per chunk of rows, the first rows
 * of each chunk had no lead).  Keys are made, and retained, when their
 * index entry is prefetched, in a ring. */
static void process_session(task *t, win_state *s, int input, const weir_batch *b)
{
	const int kc = s->c->key_col[input];
	const int64_t now = s->proc ? wall_ms() : 0;
	const uint32_t n = b->rows;
	skey ring[KEY_RING];
	sess_hit h = { .x = NULL };
	uint32_t q;

	for (q = 0; q < n && q < 2 * SESSION_AHEAD; q++) {
		ring[q] = key_of(s->d, s->kt, b, kc, q);
		key_retain(s->kt, ring[q]);
		kv_prefetch(s->sidx, ring[q], 0);
	}
	for (q = 0; q < n && q < SESSION_AHEAD; q++)
		session_prefetch(s, ring[q], s->proc ? now : b->ts[q]);
	for (uint32_t r = 0; r < n; r++) {
		if ((q = r + 2 * SESSION_AHEAD) < n) {
			skey *k = &ring[q % KEY_RING];
			*k = key_of(s->d, s->kt, b, kc, q);
			key_retain(s->kt, *k);
			kv_prefetch(s->sidx, *k, 0);
		}
		/* (a key repeated from the row before needs none) */
		if ((q = r + SESSION_AHEAD) < n &&
		    !key_eq(ring[q % KEY_RING], ring[(q - 1) % KEY_RING]))
			session_prefetch(s, ring[q % KEY_RING], s->proc ? now : b->ts[q]);
		bool ok = session_add(t, s, input, ring[r % KEY_RING],
				      s->proc ? now : b->ts[r], b, r, &h);
		key_release(s->d, s->kt, ring[r % KEY_RING]);
		if (!ok) {
			for (q = r + 1; q < n && q <= r + 2 * SESSION_AHEAD; q++)
				key_release(s->d, s->kt, ring[q % KEY_RING]);
			return;
		}
	}
}

/* ---- count windows ------------------------------------------------------------ */

/* Row r for key k.  False after failing the job. */
static bool count_add(task *t, win_state *s, int input, skey k,
		      const weir_batch *b, uint32_t r)
{
	const int64_t N = s->size, S = s->slide;
	bool created;
	void *v;

	if (S == N) {
		/* tumbling: one window per key at a time, ns 0 */
		v = kv_upsert(s->wins, k, 0, &created);
		if (!v)
			return oom(t);
		if (created)
			new_window(s);
		if (!add_row(t, s, v, input, b, r))
			return false;
		row_logged(s, v, input);
		if (win_n(s, v) == N) {
			fire_window(t, s, k, 0, v);
			free_window(s, k, 0);
		}
		return true;
	}
	/* Record j (1-based) of the key is in the windows kk with
	 * kk * S - N < j <= kk * S; window kk fires at record kk * S. */
	int64_t *cnt = kv_upsert(s->kcnt, k, 0, &created);
	if (!cnt)
		return oom(t);
	int64_t j = ++*cnt;
	kv_written(s->kcnt, cnt);
	for (int64_t kk = (j + S - 1) / S; kk <= (j - 1 + N) / S; kk++) {
		v = kv_upsert(s->wins, k, kk, &created);
		if (!v)
			return oom(t);
		if (created)
			new_window(s);
		if (!add_row(t, s, v, input, b, r))
			return false;
		row_logged(s, v, input);
	}
	if (j % S == 0 && (v = kv_get(s->wins, k, j / S))) {
		fire_window(t, s, k, j / S, v);
		free_window(s, k, j / S);
	}
	return true;
}

static void process_count(task *t, win_state *s, int input, const weir_batch *b)
{
	const int kc = s->c->key_col[input];

	for (uint32_t r = 0; r < b->rows; r++) {
		skey k = key_of(s->d, s->kt, b, kc, r);
		key_retain(s->kt, k);
		bool ok = count_add(t, s, input, k, b, r);
		key_release(s->d, s->kt, k);
		if (!ok)
			return;
	}
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
	schedule(t, s);
}

/* ---- the operator ------------------------------------------------------------ */

static void win_process(task *t, int input, weir_batch *b)
{
	win_state *s = t->st;

	if (unlikely(!s->started))
		win_start(t, s);
	switch (s->kind) {
	case WEIR_WIN_SESSION:
		process_session(t, s, input, b);
		break;
	case WEIR_WIN_COUNT:
		process_count(t, s, input, b);
		break;
	default:
		if (s->sliced)
			process_sliced(t, s, input, b);
		else
			process_time(t, s, input, b);
	}
	batch_release(b);
	if (s->proc)
		schedule(t, s);
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
		schedule(t, s);
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
	schedule(t, s);
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

/* The session index's codec: [u32 n > 0][n x (i64 start, i64 end)], the
 * sessions sorted and not overlapping. */
static size_t sidx_encoded_size(const void *v)
{
	return 4 + 16 * (size_t)((const sess_idx *)v)->n;
}

static void sidx_encode(const void *v, void *out)
{
	const sess_idx *x = v;
	memcpy(out, &x->n, 4);
	memcpy((char *)out + 4, x->cap ? x->heap : x->in, 16 * (size_t)x->n);
}

static int sidx_decode(void *v, const void *in, size_t len)
{
	sess_idx *x = v;
	const char *p = (const char *)in + 4;
	int64_t prev_end = INT64_MIN, w[2];
	uint32_t n;

	if (len < 4)
		return -EINVAL;
	memcpy(&n, in, 4);
	if (n == 0 || (len - 4) % 16 || (len - 4) / 16 != n)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		memcpy(w, p + 16 * (size_t)i, 16);
		if (w[0] >= w[1] || w[0] < prev_end)
			return -EINVAL;
		prev_end = w[1];
	}
	if (n > SIDX_INLINE) {
		x->heap = malloc(16 * (size_t)n);
		if (!x->heap)
			return -ENOMEM;
		x->cap = n;
	}
	memcpy(x->cap ? x->heap : x->in, p, 16 * (size_t)n);
	x->n = n;
	return 0;
}

/* Everything in win_state that the spec and function decide: parameters
 * and the value layout (see the top of the file). */
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

/* The table registered as `name` (top of the file); -ENOENT if none. */
static int win_table(const win_state *s, const char *name, kvtab_conf *kc)
{
	*kc = (kvtab_conf){ .key_type = s->kt };
	if (!strcmp(name, "windows")) {
		kc->vsize = s->vsize;
		if (s->c->fn == WF_REDUCE)
			return obuf_table_conf(kc);
		if (s->lists) {
			kc->nlists = (uint8_t)s->nptr;
			kc->free_value = s->nptr == 2 ? free_list2 : free_list1;
		}
		return 0;
	}
	if (!strcmp(name, "session-index") && s->kind == WEIR_WIN_SESSION) {
		kc->vsize = sizeof(sess_idx);
		kc->free_value = sidx_free;
		kc->encoded_size = sidx_encoded_size;
		kc->encode = sidx_encode;
		kc->decode = sidx_decode;
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

/* ---- rows of a window ----------------------------------------------------------- */

size_t weir_rows_count(const weir_rows *r)
{
	return r ? r->n : 0;
}

bool weir_rows_next(weir_rows *r, weir_value *cells, int64_t *ts)
{
	uint32_t len;
	if (!r || r->i >= r->n)
		return false;
	row_decode(r->s, blist_get(r->l, r->i++, &len), cells, ts);
	return true;
}

/* ---- building --------------------------------------------------------------------- */

/* A strictly parsed decimal integer > 0 ending at ':' or the end. */
static const char *parse_pos(const char *p, int64_t *out)
{
	int64_t v = 0;
	if (*p < '0' || *p > '9')
		return NULL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (INT64_MAX - (*p - '0')) / 10)
			return NULL;
		v = v * 10 + (*p - '0');
	}
	if ((*p && *p != ':') || v <= 0)
		return NULL;
	*out = v;
	return p;
}

int weir_window_parse(const char *text, weir_window_spec *w)
{
	static const struct { const char *name; weir_window_kind kind; int min, max; } kinds[] = {
		{ "tumbling", WEIR_WIN_TUMBLING, 1, 1 },
		{ "sliding", WEIR_WIN_SLIDING, 2, 2 },
		{ "session", WEIR_WIN_SESSION, 1, 1 },
		{ "count", WEIR_WIN_COUNT, 1, 2 },
	};
	weir_window_spec ws;
	int64_t n[2] = { 0, 0 };
	int k, nn = 0;

	if (!text || !w)
		return -EINVAL;
	const char *p = strchr(text, ':');
	if (!p)
		return -EINVAL;
	for (k = 0; k < (int)ARRAY_SIZE(kinds); k++)
		if (strlen(kinds[k].name) == (size_t)(p - text) &&
		    !strncmp(text, kinds[k].name, (size_t)(p - text)))
			break;
	if (k == (int)ARRAY_SIZE(kinds))
		return -EINVAL;
	while (*p == ':') {
		if (nn == kinds[k].max || !(p = parse_pos(p + 1, &n[nn])))
			return -EINVAL;
		nn++;
	}
	if (*p || nn < kinds[k].min)
		return -EINVAL;
	memset(&ws, 0, sizeof(ws));
	ws.kind = kinds[k].kind;
	if (ws.kind == WEIR_WIN_SESSION) {
		ws.gap = n[0];
	} else {
		ws.size = n[0];
		ws.slide = n[1];
	}
	*w = ws;
	return 0;
}

/* Check a spec; false after recording an env error. */
static bool spec_check(weir_env *env, const char *nm, const weir_window_spec *w)
{
	const int64_t max_per_record = 1 << 16;

	if (!w) {
		env_error(env, "window '%s': no window spec", nm);
		return false;
	}
	if (w->time != WEIR_EVENT_TIME && w->time != WEIR_PROCESSING_TIME) {
		env_error(env, "window '%s': unknown time domain %d", nm, (int)w->time);
		return false;
	}
	if (w->allowed_lateness < 0 || w->trigger_count < 0 || w->early_fire_ms < 0) {
		env_error(env, "window '%s': allowed_lateness, trigger_count and "
			  "early_fire_ms must be >= 0", nm);
		return false;
	}
	switch (w->kind) {
	case WEIR_WIN_TUMBLING:
		if (w->size <= 0) {
			env_error(env, "window '%s': tumbling window size must be > 0 ms (got %lld)",
				  nm, (long long)w->size);
			return false;
		}
		return true;
	case WEIR_WIN_SLIDING:
		if (w->size <= 0 || w->slide <= 0) {
			env_error(env, "window '%s': sliding window size and slide must be > 0 ms "
				  "(got %lld and %lld)", nm, (long long)w->size, (long long)w->slide);
			return false;
		}
		if (w->size / w->slide >= max_per_record) {
			env_error(env, "window '%s': sliding window size %lld / slide %lld puts a "
				  "record in too many windows (at most %lld)", nm,
				  (long long)w->size, (long long)w->slide,
				  (long long)max_per_record);
			return false;
		}
		return true;
	case WEIR_WIN_SESSION:
		if (w->gap <= 0) {
			env_error(env, "window '%s': session gap must be > 0 ms (got %lld)", nm,
				  (long long)w->gap);
			return false;
		}
		return true;
	case WEIR_WIN_COUNT:
		if (w->size <= 0 || w->slide < 0) {
			env_error(env, "window '%s': count window size must be > 0 and slide >= 0 "
				  "(got %lld and %lld)", nm, (long long)w->size, (long long)w->slide);
			return false;
		}
		if (w->slide && (w->size - 1) / w->slide + 1 >= max_per_record) {
			env_error(env, "window '%s': count window size %lld / slide %lld puts a "
				  "record in too many windows", nm, (long long)w->size,
				  (long long)w->slide);
			return false;
		}
		if (w->trigger_count || w->early_fire_ms || w->allowed_lateness) {
			env_error(env, "window '%s': count windows fire by count only "
				  "(trigger_count, early_fire_ms and allowed_lateness must be 0)", nm);
			return false;
		}
		return true;
	default:
		env_error(env, "window '%s': unknown window kind %d", nm, (int)w->kind);
		return false;
	}
}

/* The common part of every window builder: a new conf, or NULL after an
 * env error. */
static win_conf *win_begin(weir_stream *keyed, const char *nm,
			   const weir_window_spec *w)
{
	weir_env *env;
	win_conf *c;
	int kc;

	if (!keyed)
		return NULL;
	env = stream_env(keyed);
	kc = stream_key_col(keyed);
	if (kc < 0) {
		env_error(env, "window '%s': the input is not keyed (call weir_key_by first)", nm);
		return NULL;
	}
	if (!spec_check(env, nm, w))
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c) {
		env_error(env, "out of memory");
		return NULL;
	}
	c->w = *w;
	c->nin = 1;
	c->key_col[0] = kc;
	c->in[0] = weir_stream_schema(keyed);
	c->key_type = c->in[0]->fields[kc].type;
	c->col = -1;
	return c;
}

static const char *op_name(const char *name, const char *dflt)
{
	return name && *name ? name : dflt;
}

weir_stream *weir_window_aggregate(weir_stream *keyed, const char *name,
				   const weir_window_spec *w, const char *column)
{
	static const char *fixed[] = { "window_start", "window_end", "count", "sum",
				       "min", "max" };
	const char *nm = op_name(name, "window-aggregate");
	win_conf *c = win_begin(keyed, nm, w);
	weir_env *env;
	weir_schema *os;

	if (!c)
		return NULL;
	env = stream_env(keyed);
	if (column) {
		c->col = weir_schema_find(c->in[0], column);
		if (c->col < 0) {
			env_error(env, "window '%s': no column '%s'", nm, column);
			goto fail;
		}
		c->col_type = c->in[0]->fields[c->col].type;
		if (c->col_type != WEIR_I64 && c->col_type != WEIR_F64) {
			env_error(env, "window '%s': column '%s' is %s, not i64 or f64", nm,
				  column, type_name(c->col_type));
			goto fail;
		}
		if (c->col == c->key_col[0]) {
			env_error(env, "window '%s': column '%s' is the key", nm, column);
			goto fail;
		}
	}
	c->fn = WF_BUILTIN;
	if (!(os = env_alloc_schema(env)))
		goto fail;
	os->fields[0] = c->in[0]->fields[c->key_col[0]];
	for (int i = 0; i < (c->col >= 0 ? 6 : 3); i++) {
		snprintf(os->fields[1 + i].name, WEIR_MAX_NAME, "%s", fixed[i]);
		os->fields[1 + i].type = i < 2 ? WEIR_TS : i == 2 ? WEIR_I64 : c->col_type;
		if (!strcmp(os->fields[0].name, fixed[i]))
			snprintf(os->fields[0].name, WEIR_MAX_NAME, "key");
	}
	os->ncols = c->col >= 0 ? 7 : 4;
	return stream_add_op(&keyed, 1, name, "window-aggregate", &op_window, os, c, NULL);
fail:
	free(c);
	return NULL;
}

weir_stream *weir_window_agg(weir_stream *keyed, const char *name,
			     const weir_window_spec *w,
			     const weir_schema *out_schema,
			     const weir_window_agg_fns *fns)
{
	const char *nm = op_name(name, "window-agg");
	win_conf *c = win_begin(keyed, nm, w);

	if (!c)
		return NULL;
	if (!out_schema || !fns || !fns->add || !fns->result) {
		env_error(stream_env(keyed), "window '%s': an aggregate needs an output "
			  "schema and add and result functions", nm);
		goto fail;
	}
	if (w->kind == WEIR_WIN_SESSION && !fns->merge) {
		env_error(stream_env(keyed), "window '%s': session windows need a merge "
			  "function", nm);
		goto fail;
	}
	if (fns->acc_size > (1u << 20)) {
		env_error(stream_env(keyed), "window '%s': accumulator of %u bytes is too "
			  "large (at most 1 MiB)", nm, fns->acc_size);
		goto fail;
	}
	c->fn = WF_AGG;
	c->agg = *fns;
	return stream_add_op(&keyed, 1, name, "window-agg", &op_window, out_schema, c, NULL);
fail:
	free(c);
	return NULL;
}

weir_stream *weir_window_reduce(weir_stream *keyed, const char *name,
				const weir_window_spec *w, weir_reduce_fn fn,
				void *arg)
{
	const char *nm = op_name(name, "window-reduce");
	win_conf *c = win_begin(keyed, nm, w);

	if (!c)
		return NULL;
	if (!fn) {
		env_error(stream_env(keyed), "window '%s': no reduce function", nm);
		free(c);
		return NULL;
	}
	c->fn = WF_REDUCE;
	c->reduce = fn;
	c->arg = arg;
	return stream_add_op(&keyed, 1, name, "window-reduce", &op_window, c->in[0], c, NULL);
}

weir_stream *weir_window_process(weir_stream *keyed, const char *name,
				 const weir_window_spec *w,
				 const weir_schema *out_schema,
				 weir_window_process_fn fn, void *arg)
{
	const char *nm = op_name(name, "window-process");
	win_conf *c = win_begin(keyed, nm, w);

	if (!c)
		return NULL;
	if (!fn || !out_schema) {
		env_error(stream_env(keyed), "window '%s': a window process function needs "
			  "a function and an output schema", nm);
		free(c);
		return NULL;
	}
	c->fn = WF_PROCESS;
	c->process = fn;
	c->arg = arg;
	return stream_add_op(&keyed, 1, name, "window-process", &op_window, out_schema,
			     c, NULL);
}

/* a's columns then b's, a clashing name of b prefixed "b_". */
static const weir_schema *join_schema(weir_env *env, const char *nm,
				      const weir_schema *a, const weir_schema *b)
{
	weir_schema *os;

	if (a->ncols + b->ncols > WEIR_MAX_COLS) {
		env_error(env, "window join '%s': %d + %d columns are more than %d", nm,
			  a->ncols, b->ncols, WEIR_MAX_COLS);
		return NULL;
	}
	if (!(os = env_alloc_schema(env)))
		return NULL;
	*os = *a;
	for (int i = 0; i < b->ncols; i++) {
		weir_field f = b->fields[i];
		if (weir_schema_find(a, f.name) >= 0) {
			if (strlen(f.name) + 2 >= WEIR_MAX_NAME) {
				env_error(env, "window join '%s': column '%s' of both inputs: "
					  "'b_%s' is too long a name", nm, f.name, f.name);
				return NULL;
			}
			size_t len = strlen(b->fields[i].name);
			memcpy(f.name, "b_", 2);
			memcpy(f.name + 2, b->fields[i].name, len + 1);
		}
		if (weir_schema_find(os, f.name) >= 0) {
			env_error(env, "window join '%s': two output columns would be called "
				  "'%s'; give a join function and an output schema", nm, f.name);
			return NULL;
		}
		os->fields[os->ncols++] = f;
	}
	return os;
}

weir_stream *weir_window_join(weir_stream *a_keyed, weir_stream *b_keyed,
			      const char *name, const weir_window_spec *w,
			      const weir_schema *out_schema, weir_join_fn fn,
			      void *arg)
{
	const char *nm = op_name(name, "window-join");
	weir_env *env;
	win_conf *c;
	int kb;

	if (!a_keyed || !b_keyed)
		return NULL;
	env = stream_env(a_keyed);
	if (stream_env(b_keyed) != env) {
		env_error(env, "window join '%s': inputs from different environments", nm);
		return NULL;
	}
	kb = stream_key_col(b_keyed);
	if (kb < 0) {
		env_error(env, "window '%s': the second input is not keyed (call weir_key_by "
			  "first)", nm);
		return NULL;
	}
	if (w && w->kind == WEIR_WIN_COUNT) {
		env_error(env, "window join '%s': count windows cannot join (use tumbling, "
			  "sliding or session windows)", nm);
		return NULL;
	}
	if (!(c = win_begin(a_keyed, nm, w)))
		return NULL;
	c->nin = 2;
	c->in[1] = weir_stream_schema(b_keyed);
	c->key_col[1] = kb;
	if (c->in[1]->fields[kb].type != c->key_type) {
		env_error(env, "window join '%s': key columns '%s' (%s) and '%s' (%s) differ "
			  "in type", nm, c->in[0]->fields[c->key_col[0]].name,
			  type_name(c->key_type), c->in[1]->fields[kb].name,
			  type_name(c->in[1]->fields[kb].type));
		goto fail;
	}
	if (!fn != !out_schema) {
		env_error(env, "window join '%s': give both a join function and an output "
			  "schema, or neither (for a's columns then b's)", nm);
		goto fail;
	}
	if (!out_schema && !(out_schema = join_schema(env, nm, c->in[0], c->in[1])))
		goto fail;
	c->fn = WF_JOIN;
	c->join = fn;
	c->arg = arg;
	weir_stream *in[2] = { a_keyed, b_keyed };
	return stream_add_op(in, 2, name, "window-join", &op_window, out_schema, c, NULL);
fail:
	free(c);
	return NULL;
}

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
