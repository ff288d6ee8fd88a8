/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The runtime's lifecycle: running a job from start to end.
 *
 * runtime_run plans the graph (plan.c), makes the per-core pools, opens
 * every local task on the calling thread, starts the checkpoint store
 * (restoring from the newest checkpoint or a savepoint) and, in a
 * cluster, the data plane; then starts one reactor thread per local core
 * (reactor.c).  While they run, the calling thread is the job thread: it
 * drives the checkpoint coordinator (checkpoint_coordinator.c) and prints
 * progress (metrics.c), until every reactor exited -- the bounded streams
 * ended, or the job failed, was cancelled or stopped with a savepoint
 * (job_status.c).  Then it releases what the reactors still held, takes
 * the final checkpoint, closes the tasks and frees the runtime.
 *
 * This file is the top of core/'s call graph: it calls down into planning,
 * the reactors, the coordinator and the metrics, and nothing calls up into
 * it.  It also wires the lower layers' wake-up hooks (pool_set.wake) to
 * the reactors' doorbells.
 */

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint_coordinator.h"
#include "core.h"
#include "job_status.h"
#include "metrics.h"
#include "plan.h"
#include "reactor.h"

static void pool_wake(void *ctx, int core)
{
	struct runtime *rt = ctx;
	reactor_notify(&rt->reactors[core]);
}

static void runtime_free(struct runtime *rt)
{
	plan_free(rt);
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
	atomic_store(&runtime_cancel_requested, 0);
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
	} else if (atomic_load(&runtime_cancel_requested)) {
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
