/* SPDX-License-Identifier: Apache-2.0 */
/*
 * When windows fire (window.h): the timers a window registers when it
 * opens, the records that come too late for every window they belong to,
 * and the triggers besides the watermark and the clock -- a count trigger
 * and early firing, with the processing-time deadline the operator asks
 * the runtime for.  The rules of event time, processing time and allowed
 * lateness are at the top of window.c.
 *
 * Triggers.  Besides the watermark (or the clock): trigger_count > 0 fires
 * a window (without purging) each time its record count reaches a multiple
 * of trigger_count; early_fire_ms > 0 fires the windows that changed since
 * their last firing at most early_fire_ms of processing time after their
 * first change (a dirty list, so a tick never scans the table; the tick is
 * only armed while something is dirty).
 */
#include <limits.h>
#include <stdlib.h>

#include "ops.h"
#include "state.h"
#include "window.h"

/* ---- timers of a window -------------------------------------------------------- */

/* Timers of a tumbling, sliding or processing-time window (k, ns) ending
 * at end, registered once when it opens: its firing (unless the watermark
 * is past it already: a window opened by a late record fires at once) and
 * its cleanup.  Their times never change, so no timer goes stale. */
bool add_timers(task *t, win_state *s, skey k, int64_t ns, int64_t end)
{
	int64_t fire = fire_time(s, end), clean = clean_time(s, end);
	if ((s->proc || fire > t->watermark) && tsvc_add(s->tm, fire, k, ns) < 0)
		return oom(t);
	if (clean != fire && tsvc_add(s->tm, clean, k, ns) < 0)
		return oom(t);
	return true;
}

/* ---- processing-time deadlines ------------------------------------------------ */

void win_schedule(task *t, win_state *s)
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

void mark_dirty(task *t, win_state *s, skey k, int64_t ns, void *v)
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
		win_schedule(t, s);
	}
}

/* Fire the windows that changed since they last fired; empty the list. */
void fire_dirty(task *t, win_state *s, bool fire)
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

/* ---- late records ------------------------------------------------------------- */

void late_record(task *t, win_state *s, const weir_batch *b, uint32_t r)
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
