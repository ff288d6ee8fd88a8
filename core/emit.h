/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What a task sends downstream (private to core/): outlets, the row
 * emitter and the forwarding of control elements, defined in emit.c.
 * task_process() is here, inline, because both the chain (emit.c) and the
 * reactor's input loop (reactor.c) call it for every batch.  Outlets and
 * row emitters are made by the planner on the main thread; once the job
 * runs, only their task's reactor thread touches them.
 */
#ifndef WEIR_EMIT_H
#define WEIR_EMIT_H

#include "core.h"

/* An outlet: where one output port of a task sends its batches. */
enum outlet_kind { OUT_CHAIN = 1, OUT_CHANNELS = 2 };

struct outlet {
	enum outlet_kind kind;
	task *owner;
	/* OUT_CHAIN */
	task *next;
	int next_input;
	/* OUT_CHANNELS */
	enum part_kind part;
	int key_col;
	int nch;
	channel **ch;
	weir_batch **build;     /* PART_HASH: row builders per channel */
	uint64_t *build_since;  /* when each builder got its first row */
	uint16_t *scratch;      /* PART_HASH: target of each row */
	uint16_t *kg_target;    /* PART_HASH: channel of each key group */
	uint32_t scratch_cap;
	uint32_t rr;
	int max_parallelism;
};

struct weir_out {
	task *t;
	int port;
	const weir_schema *schema;
	weir_batch *cur;
	uint64_t since;
	int64_t ts;
	uint32_t str_bytes;
	int64_t v[WEIR_MAX_COLS];
	const char *sp[WEIR_MAX_COLS];
	uint32_t sl[WEIR_MAX_COLS];
};

/* Give batch b to task t's operator on `input` (takes ownership of b). */
static inline void task_process(task *t, int input, weir_batch *b)
{
	metric_add(&t->m.rec_in, b->rows);
	metric_add(&t->m.batch_in, 1);
	t->ops->process(t, input, b);
}

/*
 * Send control element (kind, v) through every outlet of t, after
 * flushing t's partial batches and each outlet's row builders, so that
 * elements stay in order on every channel.  A chained successor gets
 * next_fn(successor, v); channels get the element -- unless `overtake`
 * is given and returns true for the outlet, having sent it its own way
 * (an unaligned barrier announced ahead of the channels' contents,
 * barrier.c).
 */
typedef void (*chain_fn)(task *t, int64_t v);
typedef bool (*overtake_fn)(task *t, outlet *o, int64_t v);
void task_forward_control(task *t, uint32_t kind, int64_t v, chain_fn next_fn,
			  overtake_fn overtake);
/* The input watermark of t advanced to wm. */
void task_watermark(task *t, int64_t wm);
/* t's input stream went idle (1) or active (0). */
void task_idle_in(task *t, int64_t idle);
/* Every input of t ended: end_input(), end of event time, forward EOI. */
void task_end_input(task *t, int64_t unused);
/* Hand the row emitter's partial batch (if any) to task_emit. */
void emitter_flush(weir_out *o);
/* Send the rows built for channel i of a hash outlet (if any). */
void outlet_flush_builder(outlet *o, int i);

#endif
