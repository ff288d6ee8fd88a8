/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The runtime's delivery contract, with custom operators on the real
 * reactors: elements arrive in order per channel; a two-input operator's
 * watermark is the minimum over its inputs and only advances; a barrier is
 * aligned (no data from an input that already delivered it until every
 * input has) and passes once; end of input comes last, after all data;
 * partial batches are flushed by the buffer timeout.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "core.h"

static weir_schema schema;

static void init_schema(void)
{
	char err[64];
	schema_parse("v:i64", &schema, err, sizeof(err));
}

/* ---- two sources into a collector -------------------------------------- */

typedef struct src_conf {
	int batches;      /* to emit */
	int64_t wm_step;  /* watermark after batch k: (k + 1) * wm_step */
	int barrier_after;/* emit barrier 1 after this many batches */
} src_conf;

typedef struct src_state {
	int k;
} src_state;

static int src_open(task *t)
{
	t->st = calloc(1, sizeof(src_state));
	return t->st ? 0 : -1;
}

static void st_free(task *t)
{
	free(t->st);
}

static int src_produce(task *t)
{
	const src_conf *c = t->node->conf;
	src_state *s = t->st;
	if (s->k == c->batches)
		return -1;
	weir_batch *b = batch_alloc(&schema, 0);
	int64_t wm = (s->k + 1) * c->wm_step;
	weir_col_i64(b, 0)[0] = s->k;
	b->ts[0] = wm;
	b->rows = 1;
	task_emit(t, 0, b);
	task_emit_watermark(t, wm);
	s->k++;
	if (s->k == c->barrier_after)
		task_emit_barrier(t, 1);
	return 1;
}

static const op_ops src_ops = {
	.kind = "test-src", .open = src_open, .produce = src_produce, .close = st_free,
};

typedef struct coll_state {
	int data[2];            /* batches seen per input */
	int64_t max_ts[2];      /* largest event time seen per input */
	int64_t last_wm;
	int barriers, eois;
	int after_barrier_early[2]; /* data past the barrier point before it */
	int errors;
	char why[256];
} coll_state;

static coll_state result;

static int coll_open(task *t)
{
	memset(&result, 0, sizeof(result));
	result.max_ts[0] = result.max_ts[1] = INT64_MIN;
	result.last_wm = INT64_MIN;
	t->st = &result;
	return 0;
}

static void coll_fail(coll_state *s, const char *why)
{
	if (!s->errors++)
		snprintf(s->why, sizeof(s->why), "%s", why);
}

static void coll_process(task *t, int input, weir_batch *b)
{
	coll_state *s = t->st;
	const src_conf *c = t->node->conf; /* the two sources' confs */
	int64_t k = weir_col_i64(b, 0)[0];
	if (s->eois)
		coll_fail(s, "data after end of input");
	if (k != s->data[input])
		coll_fail(s, "data out of order");
	if (!s->barriers && k >= c[input].barrier_after)
		s->after_barrier_early[input]++;
	s->data[input]++;
	if (b->ts[0] > s->max_ts[input])
		s->max_ts[input] = b->ts[0];
	batch_release(b);
}

static void coll_watermark(task *t, int64_t wm)
{
	coll_state *s = t->st;
	if (wm <= s->last_wm)
		coll_fail(s, "watermark did not advance");
	if (wm != INT64_MAX) {
		/* An input that delivered everything may have ended and no
		 * longer holds event time back. */
		const src_conf *c = t->node->conf;
		int64_t lim = INT64_MAX;
		for (int i = 0; i < 2; i++)
			if (s->data[i] < c[i].batches && s->max_ts[i] < lim)
				lim = s->max_ts[i];
		if (wm > lim)
			coll_fail(s, "watermark ahead of an input");
	}
	s->last_wm = wm;
}

static int coll_barrier(task *t, int64_t id, snap_buf *out)
{
	coll_state *s = t->st;
	(void)out;
	if (id == CKPT_FINAL)
		return 0;
	if (id != 1)
		coll_fail(s, "wrong barrier id");
	s->barriers++;
	return 0;
}

static void coll_end(task *t)
{
	coll_state *s = t->st;
	s->eois++;
}

static const op_ops coll_ops = {
	.kind = "collector", .open = coll_open, .process = coll_process,
	.watermark = coll_watermark, .snapshot = coll_barrier, .end_input = coll_end,
};

static weir_config test_config(void)
{
	return (weir_config){
		.parallelism = 1, .cores = 2, .idle = WEIR_IDLE_PARK, .batch_rows = 64,
		.block_size = 16 * 1024, .channel_credits = 1, .buffer_timeout_us = 1000,
		.max_parallelism = 128, .chaining = true, .pin = false,
	};
}

Test(runtime, order_watermark_min_barrier_alignment_and_end, .init = init_schema)
{
	static src_conf confs[2] = {
		{ .batches = 300, .wm_step = 10, .barrier_after = 40 },
		{ .batches = 200, .wm_step = 7, .barrier_after = 150 },
	};
	for (int round = 0; round < 5; round++) {
		graph g;
		graph_init(&g);
		lnode *a = graph_add_node(&g, "a", &src_ops);
		lnode *b = graph_add_node(&g, "b", &src_ops);
		lnode *c = graph_add_node(&g, "coll", &coll_ops);
		a->schema[0] = b->schema[0] = c->schema[0] = &schema;
		a->conf = &confs[0];
		b->conf = &confs[1];
		c->conf = confs;
		a->bounded = b->bounded = true;
		graph_add_edge(&g, a->id, 0, c->id, PART_DEFAULT, -1);
		graph_add_edge(&g, b->id, 0, c->id, PART_DEFAULT, -1);
		weir_config cfg = test_config();
		cfg.idle = round & 1 ? WEIR_IDLE_BUSY_POLL : WEIR_IDLE_PARK;
		cr_assert_eq(runtime_run(&g, &cfg, "t", NULL), 0);
		graph_destroy(&g);

		cr_assert_eq(result.errors, 0, "%s", result.why);
		cr_assert_eq(result.data[0], 300);
		cr_assert_eq(result.data[1], 200);
		cr_assert_eq(result.barriers, 1, "barrier passed %d times", result.barriers);
		cr_assert_eq(result.after_barrier_early[0], 0, "alignment let data through");
		cr_assert_eq(result.after_barrier_early[1], 0, "alignment let data through");
		cr_assert_eq(result.eois, 1);
		cr_assert_eq(result.last_wm, INT64_MAX, "end of input ends event time");
	}
}

/* ---- buffer timeout flushes partial batches --------------------------------
 *
 * Whether rows are flushed by the deadline or wait for the end of input is
 * told by order, not by how long they took (a loaded machine may stall a
 * thread for longer than any bound): after its 80 rows the source does not
 * end until the consumer has them all, or until `linger` ns passed.  With a
 * short buffer timeout every row arrives before the end of input (however
 * long that takes, up to a deadline far beyond any stall); with a 60 s one
 * the rows of the last, partial batch do not, and the first row waits for
 * its batch to fill: 63 rows at least 4 ms apart, 252 ms at least.
 */

static _Atomic uint32_t ticks_seen;  /* rows the consumer got */
static uint32_t ticks_before_end;    /* ... when the source ended */
static uint64_t tick_linger;

typedef struct tick_state {
	int n;
	uint64_t next;
} tick_state;

static int tick_open(task *t)
{
	t->st = calloc(1, sizeof(tick_state));
	return 0;
}

/* One row every 4 ms through the row emitter (so batches stay partial). */
static int tick_produce(task *t)
{
	tick_state *s = t->st;
	uint64_t now = now_ns();
	if (s->n == 80) {
		uint32_t seen = atomic_load(&ticks_seen);
		if (seen < 80 && now < s->next + tick_linger)
			return 0;
		ticks_before_end = seen;
		return -1;
	}
	if (now < s->next)
		return 0;
	s->next = now + 4000000;
	weir_out *o = task_out(t, 0);
	weir_out_i64(o, 0, (int64_t)now);
	weir_out_emit(o);
	s->n++;
	return 1;
}

static const op_ops tick_ops = {
	.kind = "tick", .open = tick_open, .produce = tick_produce, .close = st_free,
};

static uint64_t max_delay;

static void delay_process(task *t, int input, weir_batch *b)
{
	(void)t;
	(void)input;
	uint64_t now = now_ns();
	for (uint32_t i = 0; i < b->rows; i++) {
		uint64_t d = now - (uint64_t)weir_col_i64(b, 0)[i];
		if (d > max_delay)
			max_delay = d;
	}
	atomic_fetch_add(&ticks_seen, b->rows);
	batch_release(b);
}

static const op_ops delay_ops = { .kind = "delay", .process = delay_process };

static uint64_t run_ticks(int64_t timeout_us, uint64_t linger_ns)
{
	graph g;
	graph_init(&g);
	lnode *s = graph_add_node(&g, "tick", &tick_ops);
	lnode *d = graph_add_node(&g, "delay", &delay_ops);
	s->schema[0] = d->schema[0] = &schema;
	s->bounded = true;
	graph_add_edge(&g, s->id, 0, d->id, PART_REBALANCE, -1);
	weir_config cfg = test_config();
	cfg.buffer_timeout_us = timeout_us;
	max_delay = 0;
	atomic_store(&ticks_seen, 0);
	ticks_before_end = 0;
	tick_linger = linger_ns;
	cr_assert_eq(runtime_run(&g, &cfg, "t", NULL), 0);
	graph_destroy(&g);
	return max_delay;
}

Test(runtime, buffer_timeout_flushes_partial_batches, .init = init_schema)
{
	const uint64_t deadline = 60000000000ull, short_linger = 50000000;
	uint64_t d1 = run_ticks(1000, deadline);
	uint32_t n1 = ticks_before_end;
	uint64_t d0 = run_ticks(0, deadline);
	uint32_t n0 = ticks_before_end;
	uint64_t dbig = run_ticks(60000000, short_linger);
	uint32_t nbig = ticks_before_end;
	/* 80 rows over ~320 ms: without deadline flushes they wait for the end. */
	cr_assert_eq(n1, 80, "1 ms timeout: %u of 80 rows flushed before the end of input "
		     "(a row waited up to %llu ns)", n1, (unsigned long long)d1);
	cr_assert_eq(n0, 80, "0 timeout: %u of 80 rows flushed before the end of input "
		     "(a row waited up to %llu ns)", n0, (unsigned long long)d0);
	/* (the first 64 fill a batch, which goes at once; the rest wait) */
	cr_assert_lt(nbig, 80, "60 s timeout: all rows flushed before the end of input");
	cr_assert_gt(dbig, 250000000, "60 s timeout: rows should wait for the end (%llu ns)",
		     (unsigned long long)dbig);
}
