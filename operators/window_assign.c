/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The window assigners of the window operator (window.h): which windows a
 * record belongs to, and the state each kind keeps for that -- tumbling
 * and sliding windows (window per window, or sliding windows as slices),
 * sessions with their merging, per-key index and timers, and count
 * windows.  Each adds a record to its windows' values through window.h's
 * inline per-record steps; the operator (window.c) fires them, except
 * that count windows fire by count here and sessions and slices act on
 * their own timers here.
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
 * prefetched (kv_prefetch) a few rows ahead.  Nothing is allocated per
 * record, except that the row-buffering functions (process, join, reduce)
 * grow their lists and the tables and timer heap grow (amortised).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "state.h"
#include "window.h"

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
void sliced_on_timer(task *t, win_state *s, const timer *tm)
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

static void sidx_free(void *v)
{
	free(((sess_idx *)v)->heap);
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
void session_on_timer(task *t, win_state *s, const timer *tm, void *v)
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

void free_window(win_state *s, skey k, int64_t ns)
{
	if (!kv_delete(s->wins, k, ns))
		return;
	s->live--;
	if (s->kind == WEIR_WIN_SESSION)
		sidx_remove(s, k, ns);
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

void sidx_table_conf(kvtab_conf *kc)
{
	kc->vsize = sizeof(sess_idx);
	kc->free_value = sidx_free;
	kc->encoded_size = sidx_encoded_size;
	kc->encode = sidx_encode;
	kc->decode = sidx_decode;
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

/* ---- by kind ------------------------------------------------------------------- */

void assign_batch(task *t, win_state *s, int input, const weir_batch *b)
{
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
}
