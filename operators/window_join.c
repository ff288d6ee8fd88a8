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
 * Its output schema is built here rather than by the two-input core's
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
	return win_add_op(in, 2, name, "window-join", out_schema, c);
fail:
	free(c);
	return NULL;
}
