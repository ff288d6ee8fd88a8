/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The local runtime: planning (logical graph -> subtasks, chains, channels,
 * placement), the reactor run loop, element delivery, outlets and the row
 * emitter.
 *
 * Planning
 *   - parallelism per operator: its own, else the environment's; operators
 *     limited to one subtask (stdin, single-file sinks) get 1;
 *   - an edge is FORWARD when both sides have the same parallelism and no
 *     partitioning was asked for, else REBALANCE; key_by asks for HASH;
 *   - a FORWARD edge into a single-input operator is chained: both run in
 *     one actor and the edge is a direct call (no ring, no copy);
 *   - chains' subtasks are dealt round-robin over the reactors, except that
 *     a chain fed by an unchained forward edge runs subtask i on the core
 *     of its producer's subtask i, so a forward edge stays on one core.
 *
 * Delivery: an actor reads its input channels round-robin, at most a few
 * elements per turn.  A watermark advances to the minimum over the inputs
 * that have not ended; a barrier holds back its channel until every open
 * input delivered it (alignment), then is forwarded; end of input is
 * forwarded once every input ended, after end_input() of each task.
 * Before any control element leaves a task, its partial batches are flushed,
 * so elements stay in order on every channel.
 */

#include <errno.h>
#include <poll.h>
#include <sys/prctl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core.h"
#include "keyhash.h"
#include "reactor.h"

static _Atomic int cancel_requested;

void weir_cancel_all(void)
{
	atomic_store_explicit(&cancel_requested, 1, memory_order_relaxed);
}

static bool rt_stopping(const struct runtime *rt)
{
	return atomic_load_explicit(&cancel_requested, memory_order_relaxed) ||
	       atomic_load_explicit(&rt->failed, memory_order_acquire) ||
	       atomic_load_explicit(&rt->stop_now, memory_order_acquire);
}

int runtime_ntasks(const runtime *rt) { return rt->ntasks; }
task *runtime_task(const runtime *rt, int i) { return rt->tasks[i]; }
int runtime_ncores(const runtime *rt) { return rt->nreactors; }
const run_cluster *runtime_cluster(const runtime *rt) { return rt->cl; }
bool runtime_core_local(const runtime *rt, int core) { return core >= rt->lo && core < rt->hi; }
struct reactor *runtime_net_reactor(const runtime *rt)
{
	return rt->cl ? &rt->reactors[rt->nreactors] : NULL;
}

int channel_remote(const runtime *rt, const channel *c)
{
	const reactor *net = runtime_net_reactor(rt);
	if (!net)
		return 0;
	return (c->consumer == net ? 1 : 0) | (c->producer == net ? 2 : 0);
}

static void fail_v(struct runtime *rt, const char *fmt, va_list ap);

void runtime_fail(runtime *rt, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fail_v(rt, fmt, ap);
	va_end(ap);
	for (int i = rt->lo; i < rt->hi; i++)
		reactor_wake(&rt->reactors[i]);
}
const graph *runtime_graph(const runtime *rt) { return rt->g; }
const char *runtime_job(const runtime *rt) { return rt->job; }
int task_core(const task *t) { return t->actor->r->id; }
int runtime_core_efd(const runtime *rt, int core) { return rt->reactors[core].efd; }
int runtime_nchannels(const runtime *rt) { return rt->nchannels; }
channel *runtime_channel(const runtime *rt, int i) { return rt->channels[i]; }

void runtime_restore_element(runtime *rt, channel *c, elem e)
{
	(void)rt;
	if (!channel_push(c, e))
		c->src_actor->blocked = true;
}

void runtime_bind_pool(runtime *rt, const channel *c)
{
	pool_bind_thread(c ? rt->pools : NULL, c ? c->producer->id : 0);
}

bool task_blocked(const task *t)
{
	return t->actor->blocked;
}

void task_wait(task *t, uint64_t until_ns, int fd)
{
	t->wait_until = until_ns;
	t->wait_fd = fd;
}

static void fail_v(struct runtime *rt, const char *fmt, va_list ap)
{
	int expected = 0;
	if (!atomic_compare_exchange_strong(&rt->failed, &expected, 2))
		return;
	vsnprintf(rt->error, sizeof(rt->error), fmt, ap);
	/* Publish the message before the flag others act on. */
	atomic_store_explicit(&rt->failed, 1, memory_order_release);
}

void task_fail(task *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fail_v(t->rt, fmt, ap);
	va_end(ap);
}

/* ---- growable arrays (setup only) ---------------------------------------- */

#define PUSH(arr, n, cap, v)                                                   \
	do {                                                                   \
		if ((n) == (cap)) {                                            \
			int c_ = (cap) ? (cap) * 2 : 8;                        \
			void *p_ = realloc((arr), (size_t)c_ * sizeof(*(arr))); \
			if (!p_)                                               \
				abort();                                       \
			(arr) = p_;                                            \
			(cap) = c_;                                            \
		}                                                              \
		(arr)[(n)++] = (v);                                            \
	} while (0)

/* ---- reactor wake-ups ------------------------------------------------------ */

void reactor_wake(reactor *r)
{
	uint64_t one = 1;
	if (r->efd < 0)
		return;
	ssize_t w = write(r->efd, &one, sizeof(one));
	(void)w;
}

static void pool_wake(void *ctx, int core)
{
	struct runtime *rt = ctx;
	reactor_notify(&rt->reactors[core]);
}

/* ---- element delivery ---------------------------------------------------------- */

static void task_process(task *t, int input, weir_batch *b)
{
	metric_add(&t->m.rec_in, b->rows);
	metric_add(&t->m.batch_in, 1);
	t->ops->process(t, input, b);
}

static void channel_send(task *t, channel *c, elem e)
{
	if (!channel_push(c, e))
		t->actor->blocked = true;
}

static void outlet_flush_builder(outlet *o, int i)
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

/* Send a control element through every outlet of t, after flushing. */
typedef void (*chain_fn)(task *t, int64_t v);

static void task_forward_control(task *t, uint32_t kind, int64_t v,
				 chain_fn next_fn)
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
			if (kind == ELEM_BARRIER && ckpt_unaligned(t->rt, v)) {
				/* The barrier overtakes what the channel holds. */
				for (int c = 0; c < o->nch; c++)
					ckpt_announce(t, o->ch[c], v);
				continue;
			}
			for (int c = 0; c < o->nch; c++)
				channel_send(t, o->ch[c],
					     (elem){ .kind = kind, .value = v });
		}
}

static void task_watermark(task *t, int64_t wm);

/* Send watermark wm downstream of t (monotone per task). */
static void task_output_watermark(task *t, int64_t wm)
{
	if (wm <= t->out_watermark)
		return;
	t->out_watermark = wm;
	task_forward_control(t, ELEM_WATERMARK, wm, task_watermark);
}

/* The input watermark of t advanced to wm. */
static void task_watermark(task *t, int64_t wm)
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

static void task_idle_in(task *t, int64_t idle);

static void task_idle_out(task *t, bool idle)
{
	if (t->idle == idle)
		return;
	t->idle = idle;
	task_forward_control(t, ELEM_IDLE, idle, task_idle_in);
}

/* t's input stream went idle (1) or active (0). */
static void task_idle_in(task *t, int64_t idle)
{
	if (!t->ops->own_watermarks)
		task_idle_out(t, idle != 0);
}

void task_emit_idle(task *t, bool idle)
{
	task_idle_out(t, idle);
}

void task_set_timer(task *t, uint64_t at_ns)
{
	t->timer_at = at_ns;
	if (at_ns && (!t->actor->timer_at || at_ns < t->actor->timer_at))
		t->actor->timer_at = at_ns;
}

/* Call the timer() of every task of a whose deadline passed. */
static bool actor_fire_timers(actor *a, uint64_t now)
{
	bool did = false;
	uint64_t next = 0;

	if (!a->timer_at || now < a->timer_at || a->ended || a->blocked)
		return false;
	for (int i = 0; i < a->ntasks; i++) {
		task *t = a->tasks[i];
		if (t->timer_at && t->timer_at <= now) {
			t->timer_at = 0;
			t->ops->timer(t);
			did = true;
		}
	}
	for (int i = 0; i < a->ntasks; i++) {
		uint64_t at = a->tasks[i]->timer_at;
		if (at && (!next || at < next))
			next = at;
	}
	a->timer_at = next;
	return did;
}

static void task_barrier(task *t, int64_t id)
{
	ckpt_task_barrier(t, id);
	task_forward_control(t, ELEM_BARRIER, id, task_barrier);
}

void task_emit_barrier(task *t, int64_t id)
{
	task_barrier(t, id);
}

static void task_end_input(task *t, int64_t unused)
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
	task_forward_control(t, ELEM_EOI, 0, task_end_input);
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

static void out_flush(weir_out *o)
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
		out_flush(o);
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
			out_flush(t->emit[p]);
}

/* Flush everything that has waited longer than the buffer timeout. */
static void actor_flush_due(actor *a, uint64_t now, uint64_t timeout_ns)
{
	for (int i = 0; i < a->ntasks; i++) {
		task *t = a->tasks[i];
		for (int p = 0; p < t->nports; p++) {
			weir_out *o = t->emit[p];
			if (o && o->cur && now - o->since >= timeout_ns)
				out_flush(o);
		}
	}
	for (int i = 0; i < a->nhash; i++) {
		outlet *o = a->hash_outlets[i];
		for (int c = 0; c < o->nch; c++)
			if (o->build[c] && now - o->build_since[c] >= timeout_ns)
				outlet_flush_builder(o, c);
	}
}

/* ---- actors ------------------------------------------------------------------------ */

static int64_t inputs_watermark(const actor *a)
{
	int64_t wm = INT64_MAX;
	for (int i = 0; i < a->nin; i++)
		if (!a->in[i]->ended && !a->in[i]->idle && a->in[i]->watermark < wm)
			wm = a->in[i]->watermark;
	return wm;
}

/* After an input's watermark, idleness or end changed: advance the
 * actor's watermark to the minimum over its open, active inputs, and mark
 * the actor idle when all of them are idle. */
static void actor_inputs_changed(actor *a)
{
	bool any_open = false, all_idle = true;
	for (int i = 0; i < a->nin; i++)
		if (!a->in[i]->ended) {
			any_open = true;
			all_idle &= a->in[i]->idle != 0;
		}
	bool idle = any_open && all_idle;
	if (!idle && a->inputs_idle) {
		a->inputs_idle = false;
		task_idle_in(a->head, 0);
	}
	int64_t wm = inputs_watermark(a);
	if (wm > a->wm && wm != INT64_MAX) {
		a->wm = wm;
		task_watermark(a->head, wm);
	}
	if (idle && !a->inputs_idle) {
		a->inputs_idle = true;
		task_idle_in(a->head, 1);
	}
}

static void actor_end(actor *a)
{
	a->ended = true;
	task_end_input(a->head, 0);
	ckpt_actor_ended(a);
}

static void actor_check_alignment(actor *a)
{
	if (!a->aligned || a->aligned < a->open_inputs)
		return;
	for (int i = 0; i < a->nin; i++)
		a->in[i]->aligned = 0;
	a->aligned = 0;
	task_barrier(a->head, a->barrier);
}

static void actor_on_elem(actor *a, channel *c, elem *e)
{
	switch (e->kind) {
	case ELEM_DATA:
		task_process(a->head, c->dst_input, e->batch);
		channel_consumed(c);
		break;
	case ELEM_WATERMARK:
		if (e->value > c->watermark)
			c->watermark = e->value;
		actor_inputs_changed(a);
		break;
	case ELEM_IDLE:
		c->idle = e->value != 0;
		actor_inputs_changed(a);
		break;
	case ELEM_BARRIER:
		if (e->value < a->barrier)
			break; /* of an abandoned checkpoint: a newer one is aligning */
		if (e->value > a->barrier && a->aligned) {
			/* A newer barrier cancels the older alignment (that
			 * checkpoint was abandoned): release its channels. */
			for (int i = 0; i < a->nin; i++)
				a->in[i]->aligned = 0;
			a->aligned = 0;
		}
		c->aligned = 1;
		a->aligned++;
		a->barrier = e->value;
		actor_check_alignment(a);
		break;
	case ELEM_EOI:
		c->ended = 1;
		if (c->aligned) {
			c->aligned = 0;
			a->aligned--;
		}
		a->open_inputs--;
		if (a->open_inputs == 0) {
			actor_end(a);
		} else {
			actor_inputs_changed(a);
			actor_check_alignment(a);
		}
		break;
	}
}

/* Push queued output; true when the actor may take input again. */
static bool actor_unblock(actor *a)
{
	bool clear = true;
	for (int i = 0; i < a->noutch; i++)
		if (a->outch[i]->pend_len && !channel_flush_pending(a->outch[i]))
			clear = false;
	a->blocked = !clear;
	return clear;
}

/* Run one turn of an actor; returns true if it did work. */
static bool actor_run(actor *a, const weir_config *cfg)
{
	bool did = false;

	if (a->blocked && !actor_unblock(a))
		return false;
	if (a->ended) {
		a->finished = true;
		return true;
	}
	if (a->is_source) {
		if (!pool_has_room(pool_current()))
			return false;
		int64_t stop = atomic_load_explicit(&a->r->rt->ck_stop_id, memory_order_relaxed);
		if (stop && a->ck_injected >= stop) {
			a->idle = true; /* stopped for a savepoint */
			a->head->wait_until = 0;
			a->head->wait_fd = -1;
			return false;
		}
		task *h = a->head;
		h->wait_until = 0;
		h->wait_fd = -1;
		int r = h->ops->produce(h);
		if (r < 0) {
			actor_end(a);
			did = true;
		} else {
			did = r > 0;
		}
		a->idle = r == 0;
	} else {
		/* Up to 16 elements per turn, channels round-robin. */
		for (int k = 0; k < 16 && !a->blocked && !a->ended; k++) {
			bool got = false;
			for (int j = 0; j < a->nin; j++) {
				int i = (a->rr + j) % a->nin;
				channel *c = a->in[i];
				elem e;
				if (c->aligned || c->ended)
					continue;
				/* An unaligned barrier announced on c is taken
				 * before anything that follows it.  (Pairs with
				 * the release in ckpt_announce.) */
				if (unlikely(cfg->checkpoint_unaligned) &&
				    atomic_load_explicit(&c->ann_id, memory_order_acquire) >
					    a->barrier)
					ckpt_announced(a, c);
				if (channel_pop(c, &e)) {
					a->rr = i + 1;
					if (unlikely(c->cap_id && !c->cap_done))
						ckpt_capture_popped(a, c, &e);
					actor_on_elem(a, c, &e);
					if (cfg->buffer_timeout_us == 0)
						actor_flush_due(a, UINT64_MAX, 0);
					got = true;
					break;
				}
			}
			if (!got)
				break;
			did = true;
		}
	}
	if (did && cfg->buffer_timeout_us == 0)
		actor_flush_due(a, UINT64_MAX, 0);
	if (a->blocked)
		actor_unblock(a);
	return did;
}

/* Could any actor of r make progress?  Used before parking. */
static bool reactor_has_work(reactor *r)
{
	struct runtime *rt = r->rt;
	if (rt->store) {
		int64_t trig = atomic_load_explicit(&rt->ck_trigger, memory_order_acquire);
		if (trig > r->ck_synced ||
		    atomic_load_explicit(&rt->ck_completed, memory_order_acquire) > r->ck_notified)
			return true;
	}
	for (int i = 0; i < r->nactors; i++) {
		actor *a = r->actors[i];
		if (a->finished)
			continue;
		if (a->blocked) {
			for (int j = 0; j < a->noutch; j++) {
				channel *c = a->outch[j];
				if (!c->pend_len)
					continue;
				elem *e = &c->pend[c->pend_head];
				uint64_t consumed = __atomic_load_n(&c->consumed, __ATOMIC_ACQUIRE);
				bool space = ck_ring_size(&c->ring) + 1 < ck_ring_capacity(&c->ring);
				if (space && (e->kind != ELEM_DATA || c->sent - consumed < c->credits))
					return true;
			}
			continue;
		}
		if (a->ended)
			return true;
		if (a->timer_at && now_ns() >= a->timer_at)
			return true;
		if (a->is_source) {
			/* An idle source waits for its time or fd (see park()); a
			 * source short of pool blocks waits for a block to return. */
			if (pool_has_room(pool_current()) &&
			    (!a->idle || (a->head->wait_until && now_ns() >= a->head->wait_until)))
				return true;
			continue;
		}
		for (int j = 0; j < a->nin; j++)
			if (!a->in[j]->aligned && !a->in[j]->ended &&
			    ck_ring_size(&a->in[j]->ring) > 0)
				return true;
	}
	return false;
}

static uint64_t next_deadline(reactor *r, uint64_t timeout_ns)
{
	uint64_t d = UINT64_MAX;
	for (int i = 0; i < r->nactors; i++) {
		actor *a = r->actors[i];
		for (int k = 0; k < a->ntasks; k++)
			for (int p = 0; p < a->tasks[k]->nports; p++) {
				weir_out *o = a->tasks[k]->emit[p];
				if (o && o->cur && o->since + timeout_ns < d)
					d = o->since + timeout_ns;
			}
		for (int k = 0; k < a->nhash; k++)
			for (int c = 0; c < a->hash_outlets[k]->nch; c++)
				if (a->hash_outlets[k]->build[c] &&
				    a->hash_outlets[k]->build_since[c] + timeout_ns < d)
					d = a->hash_outlets[k]->build_since[c] + timeout_ns;
	}
	return d;
}

static void park(reactor *r, uint64_t timeout_ns)
{
	uint64_t now = now_ns(), deadline = next_deadline(r, timeout_ns);
	uint64_t wait_ns = 10000000; /* safety net; wake-ups are explicit */
	struct pollfd pfd[9] = { { .fd = r->efd, .events = POLLIN } };
	int npfd = 1;

	/* Idle sources: wake at their retry time or when their fd is ready. */
	for (int i = 0; i < r->nactors; i++) {
		actor *a = r->actors[i];
		if (!a->finished && !a->ended && a->timer_at && a->timer_at < deadline)
			deadline = a->timer_at;
		if (a->finished || !a->is_source || !a->idle)
			continue;
		if (a->head->wait_until && a->head->wait_until < deadline)
			deadline = a->head->wait_until;
		if (a->head->wait_fd >= 0 && npfd < (int)ARRAY_SIZE(pfd))
			pfd[npfd++] = (struct pollfd){ .fd = a->head->wait_fd, .events = POLLIN };
	}
	/* To the nanosecond, not poll()'s milliseconds: a source at 100 k
	 * records/s is due again in 10 us, and rounding its wake-up up to a
	 * millisecond would delay every record by up to that. */
	if (deadline != UINT64_MAX) {
		if (deadline <= now)
			return;
		if (deadline - now < wait_ns)
			wait_ns = deadline - now;
	}
	struct timespec ts = { .tv_sec = (time_t)(wait_ns / 1000000000),
			       .tv_nsec = (long)(wait_ns % 1000000000) };
	const run_cluster *cl = r->rt->cl;
	/* The first local reactor of a worker polls its data plane. */
	reactor *net = r->net_live ? &r->rt->reactors[r->rt->nreactors] : NULL;
	__atomic_store_n(&r->parked, 1, __ATOMIC_RELAXED);
	if (net) /* its channels' notifications wake us (same eventfd) */
		__atomic_store_n(&net->parked, 1, __ATOMIC_RELAXED);
	/* Pairs with the fence in reactor_notify (Dekker): see reactor.h. */
	atomic_thread_fence(memory_order_seq_cst);
	if (!reactor_has_work(r) && !rt_stopping(r->rt) &&
	    !(net && cl->net_has_work(cl->ctx))) {
		if (net) {
			/* The transport's wait watches our eventfd too.  (An idle
			 * source's fd on this core is then polled every 1 ms.) */
			if (npfd > 1 && wait_ns > 1000000)
				wait_ns = 1000000;
			cl->net_wait(cl->ctx, r->efd, wait_ns);
			uint64_t v;
			ssize_t n = read(r->efd, &v, sizeof(v));
			(void)n;
		} else if (ppoll(pfd, (nfds_t)npfd, &ts, NULL) > 0 && (pfd[0].revents & POLLIN)) {
			uint64_t v;
			ssize_t n = read(r->efd, &v, sizeof(v));
			(void)n;
		}
		metric_add(&r->m.parks, 1);
	}
	if (net)
		__atomic_store_n(&net->parked, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&r->parked, 0, __ATOMIC_RELAXED);
}

static void *reactor_main(void *arg)
{
	reactor *r = arg;
	struct runtime *rt = r->rt;
	const weir_config *cfg = rt->cfg;
	uint64_t timeout_ns = (uint64_t)cfg->buffer_timeout_us * 1000;
	uint64_t last = now_ns();
	unsigned idle_spins = 0;

	if (cfg->pin) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(r->cpu, &set);
		if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set))
			wlog(LOG_DEBUG, "reactor %d: cannot pin to cpu %d", r->id, r->cpu);
	}
	/* Parked reactors wake when a deadline passes (park): with the
	 * default 50 us timer slack every such wake-up would be late by up
	 * to that, which is most of a latency run's median at 100 k/s. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	pool_bind_thread(rt->pools, r->id);
	if (rt->cl && r->id == rt->lo) {
		/* This worker's data plane is ours to poll. */
		char why[400] = "";
		int rc = rt->cl->net_attach(rt->cl->ctx, why, sizeof(why));
		if (rc < 0)
			runtime_fail(rt, "data plane: %s", why[0] ? why : strerror(-rc));
		else
			r->net_live = true;
		r->net_attached = true;
	}
	for (;;) {
		bool did = false, blocked = false;
		int alive = 0;

		if (rt_stopping(rt))
			break;
		for (int i = 0; i < r->nactors; i++) {
			actor *a = r->actors[i];
			if (a->finished)
				continue;
			alive++;
			if (actor_run(a, cfg))
				did = true;
			blocked |= a->blocked;
		}
		if (rt->store && ckpt_reactor_poll(r))
			did = true;
		if (!alive && !r->quiet) {
			r->quiet = true;
			atomic_fetch_add(&rt->reactors_quiet, 1);
		}
		if (r->net_live) {
			bool flush = atomic_load(&rt->reactors_quiet) == rt->hi - rt->lo;
			int st = rt->cl->net_step(rt->cl->ctx, flush);
			if (st > 0)
				did = true;
			else if (st < 0)
				r->net_live = false;
		}
		if (!alive && r->net_live) {
			/* Finishing the data plane (delivering what other local
			 * cores sent), or waiting for the others to finish. */
			if (!did)
				park(r, timeout_ns);
			continue;
		}
		if (!alive) {
			if (!rt->store)
				break;
			/* Checkpoints still need this core's acknowledgements
			 * until every core is done. */
			if (!r->all_finished) {
				r->all_finished = true;
				atomic_fetch_add(&rt->reactors_idle, 1);
			}
			if (atomic_load(&rt->reactors_idle) == rt->hi - rt->lo)
				break;
			if (!did)
				park(r, timeout_ns);
			continue;
		}
		uint64_t now = now_ns();
		for (int i = 0; i < r->nactors; i++)
			if (!r->actors[i]->finished && actor_fire_timers(r->actors[i], now))
				did = true;
		if (timeout_ns)
			for (int i = 0; i < r->nactors; i++)
				actor_flush_due(r->actors[i], now, timeout_ns);
		uint64_t dt = now - last;
		last = now;
		if (did) {
			metric_add(&r->m.busy_ns, dt);
			idle_spins = 0;
			continue;
		}
		if (blocked)
			metric_add(&r->m.backpressured_ns, dt);
		else
			metric_add(&r->m.idle_ns, dt);
		if (cfg->idle == WEIR_IDLE_BUSY_POLL || ++idle_spins < 64) {
			__builtin_ia32_pause();
			continue;
		}
		park(r, timeout_ns);
		idle_spins = 0;
	}
	if (r->net_attached)
		rt->cl->net_detach(rt->cl->ctx);
	if (rt->store)
		rt->sops->core_quiesce(rt->store, r->id);
	pool_reclaim(pool_current());
	pool_bind_thread(NULL, 0);
	atomic_fetch_add_explicit(&rt->reactors_exited, 1, memory_order_release);
	return NULL;
}

/* ---- planning -------------------------------------------------------------------------- */

static int plan_fail(struct runtime *rt, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int plan_fail(struct runtime *rt, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rt->error, sizeof(rt->error), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static bool edge_chained(const struct runtime *rt, const ledge *e)
{
	const lnode *d = rt->g->nodes[e->dst];
	return e->part == PART_FORWARD && rt->cfg->chaining && !d->new_chain &&
	       d->ninputs == 1 && d->ops->produce == NULL;
}

static task *find_task(struct runtime *rt, int node, int subtask)
{
	for (int i = 0; i < rt->ntasks; i++)
		if (rt->tasks[i]->node->id == node && rt->tasks[i]->subtask == subtask)
			return rt->tasks[i];
	return NULL;
}

static task *new_task(struct runtime *rt, const lnode *n, int sub, actor *a)
{
	task *t = calloc(1, sizeof(*t));
	if (!t)
		abort();
	t->ops = n->ops;
	t->node = n;
	t->subtask = sub;
	t->parallelism = rt->node_par[n->id];
	t->actor = a;
	t->rt = rt;
	t->cfg = rt->cfg;
	t->nports = n->nports;
	t->watermark = INT64_MIN;
	t->out_watermark = INT64_MIN;
	t->wait_fd = -1;
	for (int p = 0; p < n->nports; p++) {
		weir_out *o = aligned_alloc(CACHELINE, (sizeof(weir_out) + 63) / 64 * 64);
		if (!o)
			abort();
		memset(o, 0, sizeof(*o));
		o->t = t;
		o->port = p;
		o->schema = n->schema[p];
		t->emit[p] = o;
	}
	PUSH(rt->tasks, rt->ntasks, rt->cap_tasks, t);
	PUSH(a->tasks, a->ntasks, a->cap_tasks, t);
	return t;
}

static void add_chain(struct runtime *rt, actor *a, task *t)
{
	/* Add the chained successors of t (DFS). */
	for (int e = 0; e < rt->g->nedges; e++) {
		const ledge *ed = &rt->g->edges[e];
		if (ed->src != t->node->id || !edge_chained(rt, ed))
			continue;
		task *n = new_task(rt, rt->g->nodes[ed->dst], t->subtask, a);
		add_chain(rt, a, n);
	}
}

static outlet *add_outlet(task *t, int port)
{
	int n = t->nout[port];
	outlet *o = realloc(t->out[port], (size_t)(n + 1) * sizeof(outlet));
	if (!o)
		abort();
	t->out[port] = o;
	memset(&o[n], 0, sizeof(outlet));
	o[n].owner = t;
	t->nout[port] = n + 1;
	return &o[n];
}

static int plan(struct runtime *rt)
{
	graph *g = rt->g;
	const weir_config *cfg = rt->cfg;
	int maxp = 1;

	rt->node_par = calloc((size_t)g->nnodes + 1, sizeof(int));
	if (!rt->node_par)
		return -ENOMEM;
	for (int i = 0; i < g->nnodes; i++) {
		lnode *n = g->nodes[i];
		int p = n->parallelism ? n->parallelism : cfg->parallelism;
		if (n->max_parallelism_1) {
			if (n->parallelism > 1)
				return plan_fail(rt, "operator '%s' runs with parallelism 1 only",
						 n->name);
			p = 1;
		}
		if (p < 1 || p > 4096)
			return plan_fail(rt, "operator '%s': parallelism %d out of range",
					 n->name, p);
		if (p > cfg->max_parallelism)
			return plan_fail(rt, "operator '%s': parallelism %d exceeds the max "
					 "parallelism %d (the number of key groups, default 128): "
					 "raise it with --max-parallelism N, N >= %d", n->name, p,
					 cfg->max_parallelism, p);
		rt->node_par[i] = p;
		if (p > maxp)
			maxp = p;
		if (!n->ops->produce && n->ninputs == 0)
			return plan_fail(rt, "operator '%s' has no input", n->name);
	}
	for (int e = 0; e < g->nedges; e++) {
		ledge *ed = &g->edges[e];
		int ps = rt->node_par[ed->src], pd = rt->node_par[ed->dst];
		if (ed->part == PART_DEFAULT)
			ed->part = ps == pd ? PART_FORWARD : PART_REBALANCE;
		if (ed->part == PART_FORWARD && ps != pd)
			return plan_fail(rt, "forward edge '%s' -> '%s' joins parallelism %d "
					 "to %d", g->nodes[ed->src]->name,
					 g->nodes[ed->dst]->name, ps, pd);
	}

	rt->nreactors = cfg->cores > 0 ? cfg->cores : maxp;
	if (rt->cl)
		rt->nreactors = rt->cl->ncores;
	else if (cfg->cores <= 0) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		if (ncpu > 0 && rt->nreactors > ncpu)
			rt->nreactors = (int)ncpu;
	}
	if (rt->nreactors > 1024)
		return plan_fail(rt, "--cores %d is too many", rt->nreactors);
	/* In a cluster, one more: the data plane's stand-in. */
	int nalloc = rt->nreactors + (rt->cl ? 1 : 0);
	rt->lo = rt->cl ? rt->cl->first : 0;
	rt->hi = rt->cl ? rt->cl->first + rt->cl->nlocal : rt->nreactors;
	if (rt->lo < 0 || rt->hi > rt->nreactors || rt->lo >= rt->hi)
		return plan_fail(rt, "cores [%d, %d) are not within the cluster's %d",
				 rt->lo, rt->hi, rt->nreactors);
	rt->reactors = aligned_alloc(CACHELINE, (size_t)nalloc * sizeof(reactor));
	if (!rt->reactors)
		return -ENOMEM;
	memset(rt->reactors, 0, (size_t)nalloc * sizeof(reactor));
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	for (int i = 0; i < nalloc; i++) {
		reactor *r = &rt->reactors[i];
		r->id = i;
		/* a worker's first core on CPU 0, as a local run's */
		r->cpu = i >= rt->lo ? (int)((i - rt->lo) % (ncpu > 0 ? ncpu : 1)) : 0;
		r->rt = rt;
		r->efd = -1;
		if (i < rt->lo || (i >= rt->hi && i < rt->nreactors))
			continue; /* another worker's core */
		if (i == rt->nreactors) /* the stand-in: notifications wake lo */
			continue;
		r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (r->efd < 0)
			return plan_fail(rt, "eventfd: %s", strerror(errno));
	}
	if (rt->cl)
		rt->reactors[rt->nreactors].efd = rt->reactors[rt->lo].efd;

	/* Actors: one per chain head and subtask, placed round-robin over
	 * the reactors; a chain fed by an unchained forward edge sits with
	 * its producer, subtask by subtask. */
	int next_core = 0;
	for (int i = 0; i < g->nnodes; i++) {
		lnode *n = g->nodes[i];
		bool head = true;
		const ledge *fwd = NULL;
		for (int e = 0; e < g->nedges; e++) {
			if (g->edges[e].dst != i)
				continue;
			if (edge_chained(rt, &g->edges[e]))
				head = false;
			else if (g->edges[e].part == PART_FORWARD && !fwd)
				fwd = &g->edges[e];
		}
		if (!head)
			continue;
		for (int s = 0; s < rt->node_par[i]; s++) {
			actor *a = calloc(1, sizeof(*a));
			task *up = fwd ? find_task(rt, fwd->src, s) : NULL;
			if (!a)
				return -ENOMEM;
			if (up) {
				a->r = up->actor->r;
			} else {
				a->r = &rt->reactors[next_core];
				next_core = (next_core + 1) % rt->nreactors;
			}
			a->is_source = n->ops->produce != NULL;
			a->wm = INT64_MIN;
			a->head = new_task(rt, n, s, a);
			add_chain(rt, a, a->head);
			PUSH(rt->actors, rt->nactors, rt->cap_actors, a);
			PUSH(a->r->actors, a->r->nactors, a->r->cap_actors, a);
		}
	}

	/* Outlets: chained calls and channels. */
	for (int e = 0; e < g->nedges; e++) {
		const ledge *ed = &g->edges[e];
		int ps = rt->node_par[ed->src], pd = rt->node_par[ed->dst];
		bool chained = edge_chained(rt, ed);
		for (int s = 0; s < ps; s++) {
			task *src = find_task(rt, ed->src, s);
			outlet *o = add_outlet(src, ed->src_port);
			if (chained) {
				o->kind = OUT_CHAIN;
				o->next = find_task(rt, ed->dst, s);
				o->next_input = ed->dst_input;
				continue;
			}
			o->kind = OUT_CHANNELS;
			o->part = ed->part;
			o->key_col = ed->key_col;
			o->max_parallelism = cfg->max_parallelism;
			int first = ed->part == PART_FORWARD ? s : 0;
			o->nch = ed->part == PART_FORWARD ? 1 : pd;
			o->ch = calloc((size_t)o->nch, sizeof(channel *));
			o->build = calloc((size_t)o->nch, sizeof(weir_batch *));
			o->build_since = calloc((size_t)o->nch, sizeof(uint64_t));
			if (!o->ch || !o->build || !o->build_since)
				return -ENOMEM;
			if (ed->part == PART_HASH) {
				o->scratch_cap = cfg->batch_rows;
				o->scratch = malloc(o->scratch_cap * sizeof(uint16_t));
				o->kg_target = malloc((size_t)cfg->max_parallelism *
						      sizeof(uint16_t));
				if (!o->scratch || !o->kg_target)
					return -ENOMEM;
				for (int kg = 0; kg < cfg->max_parallelism; kg++)
					o->kg_target[kg] = (uint16_t)((uint64_t)kg * (uint64_t)o->nch /
								      (uint64_t)cfg->max_parallelism);
			}
			o->rr = (uint32_t)s; /* spread rebalancing senders */
			for (int k = 0; k < o->nch; k++) {
				task *dst = find_task(rt, ed->dst, first + k);
				actor *da = dst->actor;
				/* An end on another worker is the data plane's. */
				reactor *pr = src->actor->r, *cr = da->r;
				if (rt->cl && !runtime_core_local(rt, pr->id))
					pr = &rt->reactors[rt->nreactors];
				if (rt->cl && !runtime_core_local(rt, cr->id))
					cr = &rt->reactors[rt->nreactors];
				/* A channel that crosses the network grants 4x the
				 * credits: its credit loop takes a network round trip
				 * and two thread wake-ups, not a cache miss (measured:
				 * 16 -> 64 credits, 21 -> 28 M rows/s across a veth). */
				uint32_t credits = cfg->channel_credits;
				if (pr != src->actor->r || cr != da->r)
					credits = credits > UINT32_MAX / 4 ? UINT32_MAX : credits * 4;
				channel *c = channel_new(credits, pr, cr);
				if (!c)
					return -ENOMEM;
				c->dst_input = ed->dst_input;
				c->src_node = ed->src;
				c->src_sub = s;
				c->src_port = ed->src_port;
				c->dst_node = ed->dst;
				c->dst_sub = first + k;
				c->src_actor = src->actor;
				o->ch[k] = c;
				PUSH(rt->channels, rt->nchannels, rt->cap_channels, c);
				PUSH(da->in, da->nin, da->cap_in, c);
				PUSH(src->actor->outch, src->actor->noutch, src->actor->cap_outch, c);
			}
		}
	}
	/* Register row builders only now: outlet arrays moved while growing. */
	for (int i = 0; i < rt->ntasks; i++) {
		task *t = rt->tasks[i];
		for (int p = 0; p < t->nports; p++)
			for (int k = 0; k < t->nout[p]; k++)
				if (t->out[p][k].kind == OUT_CHANNELS &&
				    t->out[p][k].part == PART_HASH)
					PUSH(t->actor->hash_outlets, t->actor->nhash,
					     t->actor->cap_hash, &t->out[p][k]);
	}
	for (int i = 0; i < rt->nactors; i++)
		rt->actors[i]->open_inputs = rt->actors[i]->nin;
	return 0;
}

static const char *part_name(enum part_kind p)
{
	switch (p) {
	case PART_FORWARD: return "forward";
	case PART_HASH: return "hash";
	case PART_REBALANCE: return "rebalance";
	case PART_BROADCAST: return "broadcast";
	default: return "default";
	}
}

static void print_plan(struct runtime *rt, FILE *f)
{
	graph *g = rt->g;
	fprintf(f, "plan: %d reactor(s)\n", rt->nreactors);
	for (int i = 0; i < rt->nactors; i++) {
		actor *a = rt->actors[i];
		if (a->head->subtask != 0)
			continue;
		fprintf(f, "  chain x%d:", a->head->parallelism);
		for (int k = 0; k < a->ntasks; k++)
			fprintf(f, "%s %s", k ? " ->" : "", a->tasks[k]->node->name);
		fprintf(f, "  (cores:");
		for (int s = 0; s < a->head->parallelism; s++)
			fprintf(f, " %d", find_task(rt, a->head->node->id, s)->actor->r->id);
		fprintf(f, ")\n");
	}
	for (int e = 0; e < g->nedges; e++)
		if (!edge_chained(rt, &g->edges[e]))
			fprintf(f, "  exchange: %s =%s=> %s\n",
				g->nodes[g->edges[e].src]->name,
				part_name(g->edges[e].part),
				g->nodes[g->edges[e].dst]->name);
}

/* ---- metrics ------------------------------------------------------------------------------ */

static void node_totals(struct runtime *rt, int node, task_metrics *m)
{
	memset(m, 0, sizeof(*m));
	for (int i = 0; i < rt->ntasks; i++) {
		task *t = rt->tasks[i];
		if (t->node->id != node)
			continue;
		m->rec_in += metric_read(&t->m.rec_in);
		m->rec_out += metric_read(&t->m.rec_out);
		m->batch_in += metric_read(&t->m.batch_in);
		m->batch_out += metric_read(&t->m.batch_out);
		m->dead_letters += metric_read(&t->m.dead_letters);
	}
}

static void print_progress(struct runtime *rt, double secs)
{
	char line[2048];
	int n = snprintf(line, sizeof(line), "[%6.1fs]", secs);
	for (int i = 0; i < rt->g->nnodes && n < (int)sizeof(line) - 100; i++) {
		task_metrics m;
		node_totals(rt, i, &m);
		uint64_t v = rt->g->nodes[i]->ops->produce ? m.rec_out : m.rec_in;
		n += snprintf(line + n, sizeof(line) - (size_t)n, " %s=%llu",
			      rt->g->nodes[i]->name, (unsigned long long)v);
	}
	fprintf(stderr, "%s\n", line);
}

static void print_metrics(struct runtime *rt, double secs)
{
	fprintf(stderr, "metrics: %.3f s\n", secs);
	fprintf(stderr, "  %-24s %3s %14s %14s %10s %10s %8s\n", "operator", "p",
		"records_in", "records_out", "batch_in", "batch_out", "dead");
	for (int i = 0; i < rt->g->nnodes; i++) {
		task_metrics m;
		node_totals(rt, i, &m);
		fprintf(stderr, "  %-24s %3d %14llu %14llu %10llu %10llu %8llu\n",
			rt->g->nodes[i]->name, rt->node_par[i],
			(unsigned long long)m.rec_in, (unsigned long long)m.rec_out,
			(unsigned long long)m.batch_in, (unsigned long long)m.batch_out,
			(unsigned long long)m.dead_letters);
	}
	for (int i = rt->lo; i < rt->hi; i++) {
		reactor_metrics *m = &rt->reactors[i].m;
		task_metrics c = { 0 };
		/* Records and batches that entered and left this core's actors
		 * (fused calls inside a chain are not counted twice). */
		for (int k = 0; k < rt->nactors; k++) {
			actor *a = rt->actors[k];
			if (a->r != &rt->reactors[i])
				continue;
			c.rec_in += metric_read(&a->head->m.rec_in);
			c.batch_in += metric_read(&a->head->m.batch_in);
			for (int j = 0; j < a->ntasks; j++) {
				task *t = a->tasks[j];
				bool leaves = false;
				for (int p = 0; p < t->nports; p++)
					for (int o = 0; o < t->nout[p]; o++)
						leaves |= t->out[p][o].kind == OUT_CHANNELS;
				c.batch_out += metric_read(&t->m.chan_out);
				if (leaves)
					c.rec_out += metric_read(&t->m.rec_out);
			}
		}
		fprintf(stderr, "  core %d (cpu %d): records in %llu out %llu, batches in %llu "
			"out %llu; busy %.1f ms, idle %.1f ms, backpressured %.1f ms; "
			"parks %llu, pool blocks %llu\n", i, rt->reactors[i].cpu,
			(unsigned long long)c.rec_in, (unsigned long long)c.rec_out,
			(unsigned long long)c.batch_in, (unsigned long long)c.batch_out,
			metric_read(&m->busy_ns) / 1e6, metric_read(&m->idle_ns) / 1e6,
			metric_read(&m->backpressured_ns) / 1e6,
			(unsigned long long)metric_read(&m->parks),
			(unsigned long long)pool_blocks_allocated(rt->pools->pools[i]));
	}
}

/* ---- run ---------------------------------------------------------------------------------- */

static void runtime_free(struct runtime *rt)
{
	for (int i = 0; i < rt->ntasks; i++) {
		task *t = rt->tasks[i];
		for (int p = 0; p < NODE_MAX_PORTS; p++) {
			for (int k = 0; k < t->nout[p]; k++) {
				outlet *o = &t->out[p][k];
				free(o->ch);
				free(o->build);
				free(o->build_since);
				free(o->scratch);
				free(o->kg_target);
			}
			free(t->out[p]);
			free(t->emit[p]);
		}
		snap_free(&t->snap);
		snap_free(&t->final_snap);
		if (t->keyed_free)
			t->keyed_free(t->keyed);
		free(t);
	}
	for (int i = 0; i < rt->nactors; i++) {
		actor *a = rt->actors[i];
		free(a->tasks);
		free(a->in);
		free(a->outch);
		free(a->hash_outlets);
		free(a);
	}
	for (int i = 0; i < rt->nchannels; i++)
		channel_free(rt->channels[i]);
	for (int i = 0; rt->reactors && i < rt->nreactors + (rt->cl ? 1 : 0); i++) {
		if (rt->reactors[i].efd > 0 && i < rt->nreactors)
			close(rt->reactors[i].efd);
		free(rt->reactors[i].actors);
	}
	free(rt->reactors);
	free(rt->tasks);
	free(rt->actors);
	free(rt->channels);
	free(rt->node_par);
	pool_set_free(rt->pools);
}

/* Release every batch still held after a cancelled run (reactors joined). */
static void drain_after_cancel(struct runtime *rt)
{
	for (int i = 0; i < rt->nactors; i++) {
		actor *a = rt->actors[i];
		pool_bind_thread(rt->pools, a->r->id);
		for (int k = 0; k < a->ntasks; k++) {
			task *t = a->tasks[k];
			for (int p = 0; p < t->nports; p++) {
				if (t->emit[p] && t->emit[p]->cur) {
					batch_release(t->emit[p]->cur);
					t->emit[p]->cur = NULL;
				}
				for (int o = 0; o < t->nout[p]; o++)
					for (int c = 0; t->out[p][o].build && c < t->out[p][o].nch; c++)
						if (t->out[p][o].build[c]) {
							batch_release(t->out[p][o].build[c]);
							t->out[p][o].build[c] = NULL;
						}
			}
		}
		for (int c = 0; c < a->noutch; c++) {
			channel *ch = a->outch[c];
			while (ch->pend_len) {
				elem *e = &ch->pend[ch->pend_head];
				if (e->kind == ELEM_DATA)
					batch_release(e->batch);
				ch->pend_head = (ch->pend_head + 1) % ch->pend_cap;
				ch->pend_len--;
			}
		}
	}
	for (int i = 0; i < rt->nchannels; i++) {
		channel *c = rt->channels[i];
		elem e;
		pool_bind_thread(rt->pools, c->consumer->id);
		while (channel_pop(c, &e))
			if (e.kind == ELEM_DATA)
				batch_release(e.batch);
	}
	pool_bind_thread(NULL, 0);
}

int runtime_describe_plan(graph *g, const weir_config *cfg, char *buf,
			  size_t len)
{
	struct runtime *rt = calloc(1, sizeof(*rt));
	FILE *f;
	int err;

	if (!rt)
		return -ENOMEM;
	rt->cfg = cfg;
	rt->g = g;
	err = plan(rt);
	if (err) {
		snprintf(buf, len, "error: %s", rt->error);
	} else if ((f = fmemopen(buf, len, "w"))) {
		fprintf(f, "actors %d channels %d\n", rt->nactors, rt->nchannels);
		print_plan(rt, f);
		fclose(f);
	}
	runtime_free(rt);
	free(rt);
	return err;
}

int runtime_run(graph *g, const weir_config *cfg, const char *job,
		const run_hooks *hooks)
{
	struct runtime *rt = calloc(1, sizeof(*rt));
	int err, opened = 0;
	uint64_t t0;

	if (!rt)
		return -ENOMEM;
	rt->cfg = cfg;
	rt->g = g;
	rt->job = job;
	rt->cl = hooks ? hooks->cluster : NULL;
	atomic_store(&cancel_requested, 0);
	err = plan(rt);
	if (err) {
		wlog(LOG_ERROR, "job '%s': %s", job, rt->error[0] ? rt->error : strerror(-err));
		goto out;
	}
	rt->pools = pool_set_new(rt->nreactors + (rt->cl ? 1 : 0), cfg->block_size,
				 cfg->batch_rows, 1024);
	if (!rt->pools) {
		err = -ENOMEM;
		goto out;
	}
	rt->pools->wake = pool_wake;
	rt->pools->wake_ctx = rt;
	if (hooks && hooks->print_plan)
		print_plan(rt, stderr);
	for (opened = 0; opened < rt->ntasks; opened++) {
		task *t = rt->tasks[opened];
		if (!runtime_core_local(rt, task_core(t)))
			continue; /* another worker runs it */
		if (t->ops->open && (err = t->ops->open(t)) < 0) {
			opened++; /* close() cleans up after a failed open() too */
			if (!atomic_load(&rt->failed))
				snprintf(rt->error, sizeof(rt->error), "%s: %s", t->node->name,
					 strerror(-err));
			wlog(LOG_ERROR, "job '%s': %s", job, rt->error);
			goto close;
		}
	}
	atomic_store(&rt->failed, 0);
	rt->sops = hooks ? hooks->store : NULL;
	rt->stats = hooks ? hooks->stats : NULL;
	if (rt->stats)
		*rt->stats = (weir_checkpoint_stats){ 0 };
	if ((err = ckpt_start(rt)) < 0) {
		wlog(LOG_ERROR, "job '%s': %s", job, rt->error);
		goto close;
	}
	if (err > 0) { /* restored a finished run: the store said so */
		err = 0;
		goto close;
	}

	if (rt->cl) {
		char why[512] = "";
		if ((err = rt->cl->net_start(rt->cl->ctx, rt, why, sizeof(why))) < 0) {
			snprintf(rt->error, sizeof(rt->error), "data plane: %.400s",
				 why[0] ? why : strerror(-err));
			wlog(LOG_ERROR, "job '%s': %s", job, rt->error);
			atomic_store(&rt->failed, 1);
			drain_after_cancel(rt);
			goto close;
		}
	}
	t0 = now_ns();
	for (int i = rt->lo; i < rt->hi; i++) {
		if (pthread_create(&rt->reactors[i].thread, NULL, reactor_main,
				   &rt->reactors[i])) {
			runtime_fail(rt, "cannot start reactor thread %d", i);
			/* (The first reactor detaches the data plane as it exits.) */
			for (int k = rt->lo; k < i; k++)
				pthread_join(rt->reactors[k].thread, NULL);
			drain_after_cancel(rt);
			err = -EAGAIN;
			goto close;
		}
	}
	if (rt->cl) {
		/* Main thread of a worker: checkpoints as the coordinator
		 * drives them, until the local reactors exited (the first one
		 * last, once the data plane delivered what they sent) and the
		 * coordinator says the job is over everywhere. */
		uint64_t next = t0 + (uint64_t)(hooks->progress_ms) * 1000000;
		bool local_done = false;
		for (;;) {
			int ms = rt->store ? ckpt_coordinate(rt) : 5;
			if (!local_done &&
			    atomic_load_explicit(&rt->reactors_exited, memory_order_acquire) ==
			    rt->hi - rt->lo) {
				for (int i = rt->lo; i < rt->hi; i++)
					pthread_join(rt->reactors[i].thread, NULL);
				local_done = true;
			}
			if (local_done &&
			    (rt->cl->job_over(rt->cl->ctx, true) || rt_stopping(rt)))
				break;
			if (!local_done && rt->cl->job_over(rt->cl->ctx, false))
				weir_cancel_all();
			if (hooks->progress_ms > 0 && now_ns() >= next) {
				print_progress(rt, (now_ns() - t0) / 1e9);
				next += (uint64_t)hooks->progress_ms * 1000000;
			}
			if (ms > 0)
				poll(NULL, 0, ms > 5 ? 5 : ms);
		}
	} else if (rt->store) {
		/* Main thread: the checkpoint coordinator and progress, until
		 * every reactor exited. */
		uint64_t next = t0 + (uint64_t)(hooks->progress_ms) * 1000000;
		while (atomic_load_explicit(&rt->reactors_exited, memory_order_acquire) <
		       rt->nreactors) {
			int ms = ckpt_coordinate(rt);
			if (hooks->progress_ms > 0 && now_ns() >= next) {
				print_progress(rt, (now_ns() - t0) / 1e9);
				next += (uint64_t)hooks->progress_ms * 1000000;
			}
			if (ms > 0)
				poll(NULL, 0, ms);
		}
		for (int i = 0; i < rt->nreactors; i++)
			pthread_join(rt->reactors[i].thread, NULL);
	} else {
		/* Main thread: progress, while reactors run.  A reactor that
		 * has finished its actors has exited; join them in order. */
		uint64_t next = t0 + (uint64_t)(hooks ? hooks->progress_ms : 0) * 1000000;
		for (int i = 0; i < rt->nreactors; i++) {
			if (hooks && hooks->progress_ms > 0) {
				for (;;) {
					struct timespec ts;
					clock_gettime(CLOCK_REALTIME, &ts);
					ts.tv_nsec += 50 * 1000000;
					if (ts.tv_nsec >= 1000000000) {
						ts.tv_sec++;
						ts.tv_nsec -= 1000000000;
					}
					if (pthread_timedjoin_np(rt->reactors[i].thread, NULL, &ts) == 0)
						break;
					if (now_ns() >= next) {
						print_progress(rt, (now_ns() - t0) / 1e9);
						next += (uint64_t)hooks->progress_ms * 1000000;
					}
				}
			} else {
				pthread_join(rt->reactors[i].thread, NULL);
			}
		}
	}
	if (hooks && hooks->progress_ms > 0)
		print_progress(rt, (now_ns() - t0) / 1e9);
	if (hooks && hooks->print_metrics)
		print_metrics(rt, (now_ns() - t0) / 1e9);
	if (atomic_load(&rt->failed)) {
		wlog(LOG_ERROR, "job '%s' failed: %s", job, rt->error);
		err = -EIO;
	} else if (atomic_load(&cancel_requested)) {
		wlog(LOG_WARN, "job '%s' cancelled", job);
		err = -ECANCELED;
	} else if (atomic_load(&rt->stop_now)) {
		wlog(LOG_WARN, "job '%s' stopped with a savepoint", job);
	}
	drain_after_cancel(rt);
	if (rt->coord)
		ckpt_finish(rt, err == 0 && !atomic_load(&rt->stop_now));
close:
	if (rt->coord)
		ckpt_finish(rt, false);
	for (int i = 0; i < opened; i++)
		if (rt->tasks[i]->ops->close && runtime_core_local(rt, task_core(rt->tasks[i])))
			rt->tasks[i]->ops->close(rt->tasks[i]);
out:
	runtime_free(rt);
	free(rt);
	return err;
}
