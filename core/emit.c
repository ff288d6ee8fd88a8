/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What a task sends downstream: element delivery through its outlets, the
 * forwarding of control elements, and the row emitter.
 *
 * An outlet is one edge of an output port (emit.h): a direct call into the
 * next task of the chain (OUT_CHAIN: no ring, no copy) or channels to other
 * actors (OUT_CHANNELS), partitioned forward, by key hash (rows copied into
 * one builder batch per channel, flushed when full or at the buffer
 * timeout), broadcast (one batch, more references) or round-robin.  A
 * batch a channel cannot take waits in its pending queue and blocks the
 * producing actor (backpressure, channel.c).
 *
 * Before any control element -- watermark, idleness, barrier, end of input
 * -- leaves a task, its partial batches are flushed, so elements stay in
 * order on every channel (task_forward_control).  Watermarks are monotone
 * per task; end of input is also the end of event time.  What a barrier
 * does at each task (snapshot, overtaking for unaligned checkpoints) is
 * barrier.c's.
 *
 * The row emitter (weir_out) builds a batch row by row for an operator and
 * hands it to task_emit when the batch is full, before a control element,
 * or when the buffer timeout passes (actor_flush_due, reactor.c).
 *
 * Everything here runs on the task's reactor thread.
 */

#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "emit.h"
#include "job_status.h"
#include "keyhash.h"
#include "reactor.h"

/* ---- element delivery ---------------------------------------------------------- */

static void channel_send(task *t, channel *c, elem e)
{
	if (!channel_push(c, e))
		t->actor->blocked = true;
}

void outlet_flush_builder(outlet *o, int i)
{
	weir_batch *b = o->build[i];
	if (!b)
		return;
	o->build[i] = NULL;
	metric_add(&o->owner->m.chan_out, 1);
	channel_send(o->owner, o->ch[i], (elem){ .kind = ELEM_DATA, .batch = b });
}

static void outlet_flush(outlet *o)
{
	if (o->kind == OUT_CHANNELS && o->part == PART_HASH)
		for (int i = 0; i < o->nch; i++)
			outlet_flush_builder(o, i);
}

static void outlet_hash(outlet *o, weir_batch *b)
{
	uint32_t n = b->rows;
	uint16_t *tgt = o->scratch;
	uint64_t now = 0;

	if (unlikely(n > o->scratch_cap)) {
		/* Only batches larger than the configured size (a custom source)
		 * get here; grow once. */
		free(o->scratch);
		o->scratch = malloc(n * sizeof(uint16_t));
		if (!o->scratch)
			abort();
		o->scratch_cap = n;
		tgt = o->scratch;
	}
	if (o->nch == 1) {
		/* Every row goes to the one channel: pass the batch on (after
		 * the rows built before it, to keep their order) instead of
		 * copying it row by row, strings included. */
		outlet_flush_builder(o, 0);
		metric_add(&o->owner->m.chan_out, 1);
		channel_send(o->owner, o->ch[0], (elem){ .kind = ELEM_DATA, .batch = b });
		return;
	}
	for (uint32_t r = 0; r < n; r++)
		tgt[r] = o->kg_target[key_group(key_hash(b, o->key_col, r),
						(uint32_t)o->max_parallelism)];
	for (uint32_t r = 0; r < n; r++) {
		int i = tgt[r];
		weir_batch *d = o->build[i];
		if (unlikely(!d || !batch_append_row(d, b, r))) {
			if (d)
				outlet_flush_builder(o, i);
			d = batch_alloc(b->schema, batch_row_heap(b, r));
			o->build[i] = d;
			if (!now)
				now = now_ns();
			o->build_since[i] = now;
			batch_append_row(d, b, r);
		}
	}
	batch_release(b);
}

static void outlet_emit(outlet *o, weir_batch *b)
{
	if (o->kind == OUT_CHAIN) {
		task_process(o->next, o->next_input, b);
		return;
	}
	switch (o->part) {
	case PART_HASH:
		outlet_hash(o, b);
		return;
	case PART_BROADCAST:
		if (o->nch > 1)
			batch_retain(b, (uint32_t)o->nch - 1);
		for (int i = 0; i < o->nch; i++) {
			metric_add(&o->owner->m.chan_out, 1);
			channel_send(o->owner, o->ch[i],
				     (elem){ .kind = ELEM_DATA, .batch = b });
		}
		return;
	case PART_REBALANCE: {
		int i = (int)(o->rr++ % (uint32_t)o->nch);
		metric_add(&o->owner->m.chan_out, 1);
		channel_send(o->owner, o->ch[i], (elem){ .kind = ELEM_DATA, .batch = b });
		return;
	}
	default:
		metric_add(&o->owner->m.chan_out, 1);
		channel_send(o->owner, o->ch[0], (elem){ .kind = ELEM_DATA, .batch = b });
		return;
	}
}

void task_emit(task *t, int port, weir_batch *b)
{
	int n = t->nout[port];

	if (unlikely(b->rows == 0 || n == 0)) {
		batch_release(b);
		return;
	}
	metric_add(&t->m.rec_out, b->rows);
	metric_add(&t->m.batch_out, 1);
	if (n > 1)
		batch_retain(b, (uint32_t)n - 1);
	for (int i = 0; i < n; i++)
		outlet_emit(&t->out[port][i], b);
}

void task_forward_control(task *t, uint32_t kind, int64_t v, chain_fn next_fn,
			  overtake_fn overtake)
{
	task_flush(t);
	for (int p = 0; p < t->nports; p++)
		for (int i = 0; i < t->nout[p]; i++) {
			outlet *o = &t->out[p][i];
			if (o->kind == OUT_CHAIN) {
				next_fn(o->next, v);
				continue;
			}
			outlet_flush(o);
			if (overtake && overtake(t, o, v))
				continue;
			for (int c = 0; c < o->nch; c++)
				channel_send(t, o->ch[c],
					     (elem){ .kind = kind, .value = v });
		}
}

/* Send watermark wm downstream of t (monotone per task). */
static void task_output_watermark(task *t, int64_t wm)
{
	if (wm <= t->out_watermark)
		return;
	t->out_watermark = wm;
	task_forward_control(t, ELEM_WATERMARK, wm, task_watermark, NULL);
}

/* The input watermark of t advanced to wm. */
void task_watermark(task *t, int64_t wm)
{
	if (wm <= t->watermark)
		return;
	t->watermark = wm;
	if (t->ops->watermark) {
		t->ops->watermark(t, wm);
		task_flush(t);
	}
	if (!t->ops->own_watermarks)
		task_output_watermark(t, wm);
}

void task_emit_watermark(task *t, int64_t wm)
{
	task_output_watermark(t, wm);
}

static void task_idle_out(task *t, bool idle)
{
	if (t->idle == idle)
		return;
	t->idle = idle;
	task_forward_control(t, ELEM_IDLE, idle, task_idle_in, NULL);
}

/* t's input stream went idle (1) or active (0). */
void task_idle_in(task *t, int64_t idle)
{
	if (!t->ops->own_watermarks)
		task_idle_out(t, idle != 0);
}

void task_emit_idle(task *t, bool idle)
{
	task_idle_out(t, idle);
}

void task_end_input(task *t, int64_t unused)
{
	(void)unused;
	if (t->ops->end_input)
		t->ops->end_input(t);
	/* End of input is also the end of event time. */
	if (t->watermark < INT64_MAX) {
		t->watermark = INT64_MAX;
		if (t->ops->watermark)
			t->ops->watermark(t, INT64_MAX);
	}
	t->out_watermark = INT64_MAX;
	task_forward_control(t, ELEM_EOI, 0, task_end_input, NULL);
}

/* ---- the row emitter --------------------------------------------------------------- */

weir_out *task_out(task *t, int port)
{
	return t->emit[port];
}

void weir_out_i64(weir_out *o, int c, int64_t v) { o->v[c] = v; }
void weir_out_f64(weir_out *o, int c, double v) { memcpy(&o->v[c], &v, 8); }
void weir_out_bool(weir_out *o, int c, bool v) { o->v[c] = v; }
void weir_out_ts(weir_out *o, int64_t ts) { o->ts = ts; }

void weir_out_str(weir_out *o, int c, const void *p, size_t len)
{
	o->str_bytes += (uint32_t)len - o->sl[c];
	o->sp[c] = p;
	o->sl[c] = (uint32_t)len;
}

void emitter_flush(weir_out *o)
{
	weir_batch *b = o->cur;
	if (!b)
		return;
	o->cur = NULL;
	task_emit(o->t, o->port, b);
}

void weir_out_emit(weir_out *o)
{
	weir_batch *b = o->cur;
	const weir_schema *s = o->schema;
	uint32_t r;

	if (unlikely(!b || b->rows == b->capacity ||
		     o->str_bytes > b->heap_cap - b->heap_used)) {
		emitter_flush(o);
		b = o->cur = batch_alloc(s, o->str_bytes);
		o->since = now_ns();
	}
	r = b->rows;
	b->ts[r] = o->ts;
	for (int c = 0; c < s->ncols; c++) {
		switch (s->fields[c].type) {
		case WEIR_BOOL:
			((uint8_t *)b->cols[c])[r] = (uint8_t)(o->v[c] != 0);
			break;
		case WEIR_STR: {
			weir_str *d = &((weir_str *)b->cols[c])[r];
			d->off = b->heap_used;
			d->len = o->sl[c];
			if (o->sl[c])
				memcpy(b->heap + b->heap_used, o->sp[c], o->sl[c]);
			b->heap_used += o->sl[c];
			o->sl[c] = 0;
			break;
		}
		default:
			((int64_t *)b->cols[c])[r] = o->v[c];
		}
		o->v[c] = 0;
	}
	o->str_bytes = 0;
	b->rows = r + 1;
}

weir_out *weir_out_side(weir_out *o, int tag)
{
	task *t = o->t;
	if (tag < 0 || tag >= t->nports) {
		task_fail(t, "operator '%s' emitted to undeclared side output %d",
			  t->node->name, tag);
		return o;
	}
	return t->emit[tag];
}

void task_flush(task *t)
{
	for (int p = 0; p < t->nports; p++)
		if (t->emit[p])
			emitter_flush(t->emit[p]);
}
