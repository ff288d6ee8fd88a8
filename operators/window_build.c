/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The window builders (include/weir/keyed.h): weir_window_stats (the
 * built-in count, sum, min and max of a column), weir_window_aggregate (a
 * user aggregate), weir_window_reduce, weir_window_process and
 * weir_window_join.  Each starts from a checked spec over a keyed input
 * (window_spec.c's win_begin), fills in its window function's part of the
 * configuration and adds the window operator (op_window, window.c) to the
 * graph.  Build time, on the thread that builds the job.
 *
 * This file sits on top of the window files: it names the operator and
 * the spec, and nothing in them calls back into it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "window.h"

/* Add the window operator with conf c (owned by it from now on, also on
 * failure) reading in[0..nin), output schema out. */
static weir_stream *win_add_op(weir_stream *const *in, int nin, const char *name,
			       const char *dflt, const weir_schema *out, win_conf *c)
{
	return stream_add_op(in, nin, name, dflt, &op_window, out, c, NULL);
}

/* ---- one input ------------------------------------------------------------------ */

weir_stream *weir_window_stats(weir_stream *keyed, const char *name,
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
	return win_add_op(&keyed, 1, name, "window-aggregate", os, c);
fail:
	free(c);
	return NULL;
}

weir_stream *weir_window_aggregate(weir_stream *keyed, const char *name,
			     const weir_window_spec *w,
			     const weir_schema *out_schema,
			     const weir_window_aggregate_fns *fns)
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
	return win_add_op(&keyed, 1, name, "window-agg", out_schema, c);
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
	return win_add_op(&keyed, 1, name, "window-reduce", c->in[0], c);
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
	return win_add_op(&keyed, 1, name, "window-process", out_schema, c);
}

/* ---- two inputs ----------------------------------------------------------------- */

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
