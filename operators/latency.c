/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The latency harness's source and sinks (latency.h): a source on a fixed
 * schedule whose records carry their intended emission time, and sinks
 * that record the delay from that time to arrival into a histogram owned
 * by the sink subtask.
 *
 * Schedule.  With integer rate R, record i is due at start + floor(i *
 * 10^9 / R) ns.  A subtask walks its records i = s, s + p, s + 2p, ...
 * keeping floor(i * 10^9 / R) as a quotient and remainder, so the next
 * due time costs an add and a compare, not a 128-bit division per record.
 *
 * Window latency.  A window [start, end) (ms) fires when the watermark
 * reaches end - 1 (window.c).  The source's watermark after a batch is
 * its last record's event time - 1, and event time is the intended time
 * in ms, so the watermark reaches end - 1 with the first record whose
 * intended time is at or past end * 10^6 ns.  That record is due at
 * exactly end * 10^6 when R is a multiple of 1000 per second and start a
 * whole millisecond (the default start is; the benchmark's is): then a
 * record is due on every millisecond boundary (i = k * R / 1000).  So the
 * window sink measures from end * 10^6: the moment the watermark passed
 * the window's end, had the pipeline been infinitely fast.  What it
 * records is the source's own lateness in emitting that record, the trip
 * of the record and watermark to the window operator, the firing, and
 * the result's trip to the sink.  At other rates the due time of that
 * record is up to 1/R after end * 10^6 and the figure includes that gap
 * (at most 1/R; the bench uses multiples of 1000).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "latency.h"
#include "ops.h"
#include "splitmix.h"

/* ---- source ---------------------------------------------------------------------- */

enum { COL_SEQ = 0, COL_KEY = 1, COL_VALUE = 2, COL_INTENDED = 3 };

/* A source subtask's state: its reactor's thread only (open and close: the
 * thread that runs the job, before and after the reactors). */
typedef struct lsrc_state {
	const latency_source_conf *c;
	uint64_t start;    /* record 0's intended time */
	uint64_t next;     /* global index of the subtask's next record */
	uint64_t end;      /* no record at or past this index */
	uint64_t q, r;     /* floor(next * 1e9 / rate) and the remainder */
	uint64_t step_q, step_r; /* the same for stride * 1e9 */
	uint64_t stride;
	uint64_t keys;
	int64_t wm;
	latency_source_stats st;
} lsrc_state;

static int lsrc_open(task *t)
{
	const latency_source_conf *c = t->node->conf;
	lsrc_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	t->st = s;
	s->c = c;
	s->start = c->start_ns;
	if (!s->start)
		s->start = (now_ns() / 1000000 + 2) * 1000000;
	s->stride = (uint64_t)t->parallelism;
	s->next = (uint64_t)t->subtask;
	s->end = c->count ? c->count : UINT64_MAX;
	s->keys = (uint64_t)(c->keys > 0 ? c->keys : 100);
	unsigned __int128 x = (unsigned __int128)s->next * 1000000000u;
	s->q = (uint64_t)(x / c->rate);
	s->r = (uint64_t)(x % c->rate);
	s->step_q = s->stride * 1000000000u / c->rate;
	s->step_r = s->stride * 1000000000u % c->rate;
	s->wm = INT64_MIN;
	s->st.start_ns = s->start;
	return 0;
}

static inline void lsrc_advance(lsrc_state *s)
{
	s->next += s->stride;
	s->q += s->step_q;
	s->r += s->step_r;
	if (s->r >= s->c->rate) {
		s->r -= s->c->rate;
		s->q++;
	}
}

static int lsrc_produce(task *t)
{
	lsrc_state *s = t->st;
	const latency_source_conf *c = s->c;

	if (s->next >= s->end)
		return -1;
	uint64_t now = now_ns();
	if (s->start + s->q > now) {
		task_wait(t, s->start + s->q, -1);
		return 0;
	}
	weir_batch *b = batch_alloc(t->node->schema[0], 0);
	int64_t *seq = weir_col_i64(b, COL_SEQ), *key = weir_col_i64(b, COL_KEY),
		*val = weir_col_i64(b, COL_VALUE), *due = weir_col_i64(b, COL_INTENDED);
	uint32_t n = 0;
	/* Everything due by now, up to a batch: behind schedule, that is
	 * more than one record per call, and a full batch makes the reactor
	 * call again at once. */
	while (n < b->capacity && s->next < s->end && s->start + s->q <= now) {
		uint64_t i = s->next, at = s->start + s->q;
		uint64_t r = splitmix64(c->seed ^ (i * 0xd1b54a32d192ed03ULL));
		seq[n] = (int64_t)i;
		key[n] = (int64_t)(((r >> 32) * s->keys) >> 32);
		val[n] = (int64_t)(((r & 0xffffffffu) * 1000) >> 32);
		due[n] = (int64_t)at;
		b->ts[n] = (int64_t)(at / 1000000);
		n++;
		lsrc_advance(s);
	}
	b->rows = n;
	uint64_t behind = now - (uint64_t)due[0];
	int64_t wm = b->ts[n - 1] - 1;
	if (!s->st.records)
		s->st.first_ns = now;
	s->st.last_ns = now;
	s->st.records += n;
	if (behind > s->st.max_behind_ns)
		s->st.max_behind_ns = behind;
	if (n > s->st.max_batch)
		s->st.max_batch = n;
	task_emit(t, 0, b);
	if (wm > s->wm) {
		s->wm = wm;
		task_emit_watermark(t, wm);
	}
	return 1;
}

static void lsrc_close(task *t)
{
	lsrc_state *s = t->st;
	latency_source_stats *o;
	if (!s)
		return;
	/* close() runs on the thread that ran the job, one task after the
	 * other, after the reactors stopped: merging needs no lock. */
	if ((o = s->c->stats)) {
		if (!o->records || (s->st.records && s->st.first_ns < o->first_ns))
			o->first_ns = s->st.first_ns;
		if (s->st.last_ns > o->last_ns)
			o->last_ns = s->st.last_ns;
		if (!o->start_ns || s->st.start_ns < o->start_ns)
			o->start_ns = s->st.start_ns;
		if (s->st.max_behind_ns > o->max_behind_ns)
			o->max_behind_ns = s->st.max_behind_ns;
		if (s->st.max_batch > o->max_batch)
			o->max_batch = s->st.max_batch;
		o->records += s->st.records;
	}
	free(s);
}

static const op_ops op_latency_source = {
	.kind = "latency_source", .open = lsrc_open, .produce = lsrc_produce,
	.close = lsrc_close,
};

weir_stream *latency_source(weir_env *env, const char *name,
			    const latency_source_conf *conf)
{
	const char *nm = name && *name ? name : "latency-source";
	if (!env)
		return NULL;
	if (!conf || !conf->rate) {
		env_error(env, "latency source '%s': no rate", nm);
		return NULL;
	}
	if (conf->keys < 0) {
		env_error(env, "latency source '%s': negative key count", nm);
		return NULL;
	}
	const weir_schema *schema =
		weir_schema_parse(env, "seq:i64,key:i64,value:i64,intended_ns:i64");
	latency_source_conf *c = malloc(sizeof(*c));
	if (!schema || !c) {
		free(c);
		if (schema)
			env_error(env, "out of memory");
		return NULL;
	}
	*c = *conf;
	weir_stream *s = stream_add_source(env, name, "latency-source",
					   &op_latency_source, schema, c, conf->count > 0);
	if (s) {
		/* Its schedule starts anew in every run: nothing to replay. */
		stream_node(s)->not_replayable = true;
	}
	return s;
}

/* ---- sinks ------------------------------------------------------------------------- */

typedef struct lsink_conf {
	int col;
	bool window;       /* col holds ms (window_end), else ns */
	uint64_t from, to; /* to = UINT64_MAX: no bound */
	latency_result *res;
} lsink_conf;

/* A sink subtask's histogram and counts: written by its reactor's thread
 * only; merged into the shared result by close(), after the run. */
typedef struct lsink_state {
	hist h;
	uint64_t rows, first, last;
} lsink_state;

void latency_result_init(latency_result *r)
{
	hist_init(&r->h);
	r->rows = r->first_ns = r->last_ns = 0;
}

static int lsink_open(task *t)
{
	lsink_state *s = malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	hist_init(&s->h);
	s->rows = s->first = s->last = 0;
	t->st = s;
	return 0;
}

static void lsink_process(task *t, int input, weir_batch *b)
{
	const lsink_conf *c = t->node->conf;
	lsink_state *s = t->st;
	const int64_t *v = weir_col_i64(b, c->col);
	int64_t now = (int64_t)now_ns();
	uint32_t measured = 0;

	(void)input;
	for (uint32_t r = 0; r < b->rows; r++) {
		int64_t at = v[r];
		if (c->window) {
			if (at < 0 || at > INT64_MAX / 1000000)
				continue; /* no window end of this clock */
			at *= 1000000;
		}
		if ((uint64_t)at < c->from || (uint64_t)at >= c->to)
			continue;
		hist_record(&s->h, now - at);
		measured++;
	}
	if (measured) {
		if (!s->first)
			s->first = (uint64_t)now;
		s->last = (uint64_t)now;
	}
	s->rows += b->rows;
	batch_release(b);
}

static void lsink_close(task *t)
{
	const lsink_conf *c = t->node->conf;
	lsink_state *s = t->st;
	latency_result *r = c->res;
	if (!s)
		return;
	/* Main thread, after the run, one task at a time (see lsrc_close). */
	hist_merge(&r->h, &s->h);
	r->rows += s->rows;
	if (s->first && (!r->first_ns || s->first < r->first_ns))
		r->first_ns = s->first;
	if (s->last > r->last_ns)
		r->last_ns = s->last;
	free(s);
}

static const op_ops op_latency_sink = {
	.kind = "latency_sink", .open = lsink_open, .process = lsink_process,
	.close = lsink_close,
};

static int add_sink(weir_stream *in, const char *name, const latency_sink_conf *conf,
		    bool window)
{
	const char *dflt = window ? "latency-window-sink" : "latency-sink";
	const char *nm = name && *name ? name : dflt;
	if (!in)
		return -EINVAL;
	weir_env *env = stream_env(in);
	const weir_schema *s = weir_stream_schema(in);
	const char *col = conf && conf->column ? conf->column
			  : window ? "window_end" : "intended_ns";
	if (!conf || !conf->result) {
		env_error(env, "latency sink '%s': no result to record into", nm);
		return -EINVAL;
	}
	int k = -1;
	for (int i = 0; i < s->ncols; i++)
		if (!strcmp(s->fields[i].name, col))
			k = i;
	if (k < 0 || !(s->fields[k].type == WEIR_I64 ||
		       (window && s->fields[k].type == WEIR_TS))) {
		env_error(env, "latency sink '%s': no %s column '%s'", nm,
			  window ? "i64/ts" : "i64", col);
		return -EINVAL;
	}
	lsink_conf *c = malloc(sizeof(*c));
	if (!c) {
		env_error(env, "out of memory");
		return -ENOMEM;
	}
	*c = (lsink_conf){ .col = k, .window = window, .from = conf->from_ns,
			   .to = conf->to_ns ? conf->to_ns : UINT64_MAX,
			   .res = conf->result };
	return stream_add_op(&in, 1, name, dflt, &op_latency_sink, s, c, NULL) ? 0
										 : -EINVAL;
}

int latency_sink(weir_stream *in, const char *name, const latency_sink_conf *conf)
{
	return add_sink(in, name, conf, false);
}

int latency_window_sink(weir_stream *in, const char *name,
			const latency_sink_conf *conf)
{
	return add_sink(in, name, conf, true);
}
