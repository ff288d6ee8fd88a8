/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Stateless transformations: map, filter, flat_map, project, union.
 * Each works a whole batch at a time; none allocates per record.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

/* ---- map -------------------------------------------------------------------- */

#define MAP_MAX_HEAP (1u << 30)

static void map_batch(task *t, weir_batch *in);

/* Run the map on two halves of `in` (a string did not fit). */
static void map_split(task *t, weir_batch *in)
{
	uint32_t half = in->rows / 2;
	weir_batch *a = batch_slice_copy(in, 0, half);
	weir_batch *b = batch_slice_copy(in, half, in->rows - half);
	batch_release(in);
	map_batch(t, a);
	map_batch(t, b);
}

static void map_batch(task *t, weir_batch *in)
{
	const fn_conf *c = t->node->conf;
	weir_map_fn fn = (weir_map_fn)c->fn;
	size_t heap = in->heap_used;
	weir_batch *out;
	int rc;

	for (;;) {
		out = batch_alloc(t->node->schema[0], heap);
		if (out->capacity < in->rows) {
			batch_release(out);
			map_split(t, in);
			return;
		}
		out->rows = in->rows;
		memcpy(out->ts, in->ts, (size_t)in->rows * sizeof(int64_t));
		rc = fn(c->arg, in, out);
		if (rc == 0) {
			batch_release(in);
			task_emit(t, 0, out);
			return;
		}
		batch_release(out);
		if (rc != -ENOSPC) {
			task_fail(t, "map '%s' failed: %s", t->node->name, strerror(-rc));
			batch_release(in);
			return;
		}
		if (in->rows > 1) {
			map_split(t, in);
			return;
		}
		/* One row whose output does not fit: give it a larger heap, up
		 * to 1 GiB (heap offsets are 32-bit). */
		if (heap >= MAP_MAX_HEAP) {
			task_fail(t, "map '%s': an output row needs more than %u MiB "
				  "(or the function returns -ENOSPC regardless)",
				  t->node->name, MAP_MAX_HEAP >> 20);
			batch_release(in);
			return;
		}
		heap = heap * 4 + 65536;
		if (heap > MAP_MAX_HEAP)
			heap = MAP_MAX_HEAP;
	}
}

static void map_process(task *t, int input, weir_batch *in)
{
	(void)input;
	map_batch(t, in);
}

const op_ops op_map = { .kind = "map", .process = map_process };

/* ---- filter ---------------------------------------------------------------------- */

typedef struct filter_state {
	uint8_t *keep;
	uint32_t cap;
} filter_state;

static int filter_open(task *t)
{
	filter_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cap = t->cfg->batch_rows;
	s->keep = malloc(s->cap);
	if (!s->keep) {
		free(s);
		return -ENOMEM;
	}
	t->st = s;
	return 0;
}

static void filter_close(task *t)
{
	filter_state *s = t->st;
	if (s)
		free(s->keep);
	free(s);
}

static void filter_process(task *t, int input, weir_batch *in)
{
	const fn_conf *c = t->node->conf;
	filter_state *s = t->st;
	uint32_t kept = 0;
	(void)input;

	if (unlikely(in->rows > s->cap)) {
		/* A batch larger than configured (custom source): grow once. */
		uint8_t *k = realloc(s->keep, in->rows);
		if (!k) {
			task_fail(t, "filter '%s': out of memory", t->node->name);
			batch_release(in);
			return;
		}
		s->keep = k;
		s->cap = in->rows;
	}
	memset(s->keep, 0, in->rows);
	((weir_filter_fn)c->fn)(c->arg, in, s->keep);
	for (uint32_t i = 0; i < in->rows; i++)
		kept += s->keep[i] != 0;
	if (kept == in->rows) {
		task_emit(t, 0, in);
		return;
	}
	if (kept == 0) {
		batch_release(in);
		return;
	}
	if (batch_exclusive(in)) {
		batch_compact(in, s->keep);
		task_emit(t, 0, in);
		return;
	}
	/* Shared with another consumer (fan-out): copy the kept rows. */
	weir_batch *out = batch_alloc(in->schema, in->heap_used);
	for (uint32_t i = 0; i < in->rows; i++)
		if (s->keep[i])
			batch_append_row(out, in, i);
	batch_release(in);
	task_emit(t, 0, out);
}

const op_ops op_filter = {
	.kind = "filter", .open = filter_open, .process = filter_process,
	.close = filter_close,
};

/* ---- flat_map ------------------------------------------------------------------------ */

static void flat_map_process(task *t, int input, weir_batch *in)
{
	const fn_conf *c = t->node->conf;
	int rc = ((weir_flat_map_fn)c->fn)(c->arg, in, task_out(t, 0));
	(void)input;

	if (rc < 0)
		task_fail(t, "flat_map '%s' failed: %s", t->node->name, strerror(-rc));
	batch_release(in);
}

const op_ops op_flat_map = { .kind = "flat_map", .process = flat_map_process };

/* ---- project --------------------------------------------------------------------------- */

static void project_process(task *t, int input, weir_batch *in)
{
	const fn_conf *c = t->node->conf;
	const weir_schema *os = t->node->schema[0];
	bool strs = false;
	(void)input;
	for (int i = 0; i < os->ncols; i++)
		strs |= os->fields[i].type == WEIR_STR;
	weir_batch *out = batch_alloc(os, strs ? in->heap_used : 0);

	if (unlikely(out->capacity < in->rows)) {
		/* Only when the input batch is larger than the configured
		 * batch size: copy in pieces. */
		batch_release(out);
		uint32_t half = in->rows / 2;
		weir_batch *a = batch_slice_copy(in, 0, half);
		weir_batch *b = batch_slice_copy(in, half, in->rows - half);
		batch_release(in);
		project_process(t, 0, a);
		project_process(t, 0, b);
		return;
	}
	out->rows = in->rows;
	memcpy(out->ts, in->ts, (size_t)in->rows * 8);
	/* The whole heap moves at once: string offsets stay valid.  A
	 * projection without strings (a key and numbers ahead of an
	 * exchange) copies none. */
	if (strs) {
		memcpy(out->heap, in->heap, in->heap_used);
		out->heap_used = in->heap_used;
	}
	for (int i = 0; i < os->ncols; i++)
		memcpy(out->cols[i], in->cols[c->cols[i]],
		       (size_t)in->rows * type_width(os->fields[i].type));
	batch_release(in);
	task_emit(t, 0, out);
}

const op_ops op_project = { .kind = "project", .process = project_process };

/* ---- union ------------------------------------------------------------------------------ */

static void union_process(task *t, int input, weir_batch *in)
{
	(void)input;
	task_emit(t, 0, in);
}

const op_ops op_union = { .kind = "union", .process = union_process };
