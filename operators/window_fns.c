/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The window functions of the window operator (window.h): what a window
 * value holds and what a firing emits for the built-in aggregate (count,
 * sum, min, max of a column), a user aggregate (weir_window_aggregate_fns), a
 * reduce (an accumulator row), and a window process function (the
 * buffered rows, read through weir_rows); how two values fold into one
 * when sessions merge; the "windows" table's codec.  Their builders are window_build.c.
 * Adding a record to a value is window.h's add_row (inline: per record);
 * the join of two inputs is window_join.c.
 *
 * A firing's output event time is the window end - 1.  The built-in
 * aggregate emits (key, window_start, window_end, count[, sum, min,
 * max]).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "rows.h"
#include "state.h"
#include "window.h"

/* The row iterator handed to window process functions. */
struct weir_rows {
	const blist *l;
	uint32_t i, n;
	const weir_schema *s;
};

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

int win_values_conf(const win_state *s, kvtab_conf *kc)
{
	kc->vsize = s->vsize;
	if (s->c->fn == WF_REDUCE)
		return obuf_table_conf(kc);
	if (s->lists) {
		kc->nlists = (uint8_t)s->nptr;
		kc->free_value = s->nptr == 2 ? free_list2 : free_list1;
	}
	return 0;
}

bool scratch_room(task *t, win_state *s, size_t n)
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

bool racc_store(task *t, obuf **ap, const char *src, size_t n)
{
	return obuf_set(ap, src, n) == 0 || oom(t);
}

bool reduce_into(task *t, win_state *s, obuf **ap, const weir_value *in)
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

bool merge_value(task *t, win_state *s, void *v, void *o)
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

void fire_window(task *t, win_state *s, skey k, int64_t ns, void *v)
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
