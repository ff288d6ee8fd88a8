/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The reactor: one pinned thread per core running its actors in a loop --
 * take input, produce (sources), fire timers, flush what waited for the
 * buffer timeout, poll the checkpoint protocol, and park when nothing can
 * move.
 *
 * Delivery: an actor reads its input channels round-robin, at most a few
 * elements per turn.  A watermark advances to the minimum over the inputs
 * that have not ended (and are not idle); a barrier holds back its channel
 * until every open input delivered it (alignment, barrier.c), then is
 * forwarded; end of input is forwarded once every input ended, after
 * end_input() of each task.  An actor whose output a channel cannot take
 * (backpressure) takes no input until its pending queues drained.
 *
 * Parking: a reactor with nothing to do raises its `parked` flag, checks
 * once more for work, and sleeps on its eventfd until the next deadline (a
 * timer, a buffer timeout, a waiting source's retry time or fd); whoever
 * hands it work rings it (reactor_notify, reactor.h).  A cluster worker's
 * first reactor also polls the data plane and sleeps in its wait.
 */

#include <errno.h>
#include <poll.h>
#include <sys/prctl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "barrier.h"
#include "core.h"
#include "emit.h"
#include "job_status.h"
#include "reactor.h"

/* ---- what a task asks of its actor -------------------------------------------------- */

bool task_blocked(const task *t)
{
	return t->actor->blocked;
}

void task_wait(task *t, uint64_t until_ns, int fd)
{
	t->wait_until = until_ns;
	t->wait_fd = fd;
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

/* ---- the buffer timeout ------------------------------------------------------------- */

/* Flush everything that has waited longer than the buffer timeout. */
static void actor_flush_due(actor *a, uint64_t now, uint64_t timeout_ns)
{
	for (int i = 0; i < a->ntasks; i++) {
		task *t = a->tasks[i];
		for (int p = 0; p < t->nports; p++) {
			weir_out *o = t->emit[p];
			if (o && o->cur && now - o->since >= timeout_ns)
				emitter_flush(o);
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
		ckpt_align(a, c, e->value);
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
			ckpt_check_alignment(a);
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

/* ---- the loop ------------------------------------------------------------------- */


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

void *reactor_main(void *arg)
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
