/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The window join (weir_window_join, include/weir/keyed.h): the window
 * operator (window.h) over two keyed inputs with keys of one type, whose
 * window value keeps the window's a-rows and b-rows as two lists.  It
 * assigns and fires as every window does; what it emits is this file's:
 * at each firing, every pair of the window's a-rows and b-rows; a
 * re-firing (late record within the allowed lateness, count trigger,
 * early firing) emits all pairs again, like a Flink join over a re-fired
 * window.  A pair is the join function's output, or a's columns then
 * b's (a name of b that a has too gets "b_" before it), at event time
 * end - 1.  Count windows cannot join.
 *
 * Its builder and default output schema are in window_build.c, the
 * schema built there rather than by the two-input core's
 * join_concat_schema (two_input.h), whose naming rules and messages
 * differ in the corner cases (a "b_" name that is too long or taken).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "state.h"
#include "window.h"

int fire_join(task *t, win_state *s, const void *v, int64_t end)
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
