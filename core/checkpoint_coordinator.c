/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint coordinator, on the thread that runs the job: it decides
 * when to take checkpoint n (checkpoint_policy.h: interval, minimum pause,
 * timeout, one in flight), has the store begin it, and triggers it by
 * publishing n in rt->ck_trigger; the reactors carry the barrier through
 * the job and acknowledge n once their logs are durable (barrier.c).  When
 * every core acknowledged, the coordinator has the store write the
 * manifest and publishes ck_completed = n, on which the tasks commit.  One
 * checkpoint is in flight at a time; one that is not acknowledged within
 * the timeout is abandoned, and the job goes on.
 *
 * Savepoints are checkpoints a person asks for (weir_savepoint, from
 * the control socket or a signal) whose state the store also writes into
 * a savepoint directory; stop-with-savepoint makes sources stop producing
 * at its barrier, so the pipeline drains up to it, and ends the job when
 * it is complete.  When a bounded job ends, the coordinator takes a final
 * checkpoint of the ended tasks and commits it, so nothing written at end
 * of input is committed without a checkpoint behind it.
 *
 * In a cluster worker the cluster's coordinator triggers and completes
 * checkpoints instead (coordinate_worker).  Storage (logs, manifests,
 * recovery) is the store's (state/checkpoint.c); this file knows no file
 * format.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint_coordinator.h"
#include "checkpoint_policy.h"
#include "core.h"
#include "reactor.h"

/* Messages name paths; one cut short is still a useful message. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

/* ---- savepoint requests (any thread -> the coordinator) --------------------------- */

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct runtime *rt;     /* the running job that can savepoint */
	bool pending, taken, done;
	bool stop;
	char dir[3072];         /* "" = default */
	int rc;
	char msg[4352];
} spr = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static _Atomic int sp_async;   /* set by a signal handler */
static _Atomic int sp_waiting; /* a request is pending: lets the
				* coordinator skip the lock when none is */

void weir_savepoint_async(void)
{
	atomic_store_explicit(&sp_async, 1, memory_order_relaxed);
}

int weir_savepoint(const char *dir, bool stop, char *msg, size_t len)
{
	int rc;
	pthread_mutex_lock(&spr.mu);
	if (!spr.rt) {
		pthread_mutex_unlock(&spr.mu);
		snprintf(msg, len, "no job that can take savepoints is running");
		return -ENOENT;
	}
	if (spr.pending) {
		pthread_mutex_unlock(&spr.mu);
		snprintf(msg, len, "a savepoint is already being taken");
		return -EBUSY;
	}
	spr.pending = true;
	atomic_store_explicit(&sp_waiting, 1, memory_order_release);
	spr.taken = spr.done = false;
	spr.stop = stop;
	snprintf(spr.dir, sizeof(spr.dir), "%s", dir ? dir : "");
	while (!spr.done)
		pthread_cond_wait(&spr.cv, &spr.mu);
	rc = spr.rc;
	snprintf(msg, len, "%s", spr.msg);
	spr.pending = false;
	pthread_mutex_unlock(&spr.mu);
	return rc;
}

static void sp_reply(int rc, const char *msg)
{
	pthread_mutex_lock(&spr.mu);
	if (spr.pending && spr.taken && !spr.done) {
		spr.rc = rc;
		snprintf(spr.msg, sizeof(spr.msg), "%s", msg);
		spr.done = true;
		pthread_cond_broadcast(&spr.cv);
	}
	pthread_mutex_unlock(&spr.mu);
}

/* ---- the coordinator (main thread) ------------------------------------------------ */

typedef struct ckpt_coord {
	int64_t next_id;
	int64_t inflight;        /* 0 = none */
	bool inflight_request;   /* a savepoint somebody waits for */
	bool inflight_stop;
	ckpt_policy policy;      /* when to trigger (checkpoint_policy.h) */
	ckpt_schedule sched;     /* what was triggered when */
	int64_t last_completed;
	bool acked;              /* worker: its part of inflight was sent */
	char sp_path[4096];
} ckpt_coord;

int ckpt_start(struct runtime *rt)
{
	char err[1024] = "";
	int64_t next = 1;
	int rc;

	if (!rt->sops)
		return 0;
	rt->coord = calloc(1, sizeof(*rt->coord));
	if (!rt->coord)
		return -ENOMEM;
	uint64_t t0 = now_ns();
	rc = rt->sops->start(rt, rt->cfg, &rt->store, &next, err, sizeof(err));
	if (rt->stats)
		rt->stats->restore_ms = (double)(now_ns() - t0) / 1e6;
	if (rc < 0) {
		snprintf(rt->error, sizeof(rt->error), "%s", err[0] ? err : strerror(-rc));
		rt->store = NULL;
		return rc;
	}
	/* The store restored each task's input watermark: start its actor's
	 * inputs there, so a record late before the crash is late after it. */
	for (int i = 0; i < rt->nactors; i++) {
		actor *a = rt->actors[i];
		task *h = a->head;
		if (a->is_source || h->watermark == INT64_MIN)
			continue;
		a->wm = h->watermark;
		for (int k = 0; k < a->nin; k++)
			a->in[k]->watermark = h->watermark;
	}
	for (int i = 0; i < rt->ntasks; i++) {
		task *t = rt->tasks[i];
		if (!t->ops->own_watermarks && t->watermark > t->out_watermark)
			t->out_watermark = t->watermark;
	}
	rt->coord->next_id = next;
	ckpt_policy_from_config(&rt->coord->policy, rt->cfg, 1000000);
	ckpt_schedule_start(&rt->coord->sched, now_ns());
	for (int i = 0; i < rt->nreactors; i++) {
		rt->reactors[i].ck_synced = next - 1;
		rt->reactors[i].ck_notified = next - 1;
		atomic_store(&rt->reactors[i].ck_acked, next - 1);
	}
	for (int i = 0; i < rt->nactors; i++)
		rt->actors[i]->ck_injected = next - 1;
	for (int i = 0; i < rt->ntasks; i++)
		rt->tasks[i]->ck_id = next - 1;
	atomic_store(&rt->ck_trigger, next - 1);
	atomic_store(&rt->ck_completed, next - 1);
	rt->coord->last_completed = next - 1;
	pthread_mutex_lock(&spr.mu);
	spr.rt = rt;
	pthread_mutex_unlock(&spr.mu);
	return rc; /* 1: a finished run, nothing to run */
}

static void wake_all(struct runtime *rt)
{
	for (int i = rt->lo; i < rt->hi; i++)
		reactor_wake(&rt->reactors[i]);
}

static void trigger(struct runtime *rt, int64_t id, bool stop, bool savepoint)
{
	ckpt_coord *c = rt->coord;
	c->inflight = id;
	c->inflight_stop = stop;
	ckpt_schedule_triggered(&c->sched, now_ns());
	if (stop)
		atomic_store_explicit(&rt->ck_stop_id, id, memory_order_relaxed);
	/* Savepoints are always aligned (portable, rescalable: no in-flight
	 * data), as in Flink. */
	atomic_store_explicit(&rt->ck_unaligned,
			      rt->cfg->checkpoint_unaligned && !savepoint ? id : 0,
			      memory_order_relaxed);
	/* Pairs with the reactors' acquire in ckpt_reactor_poll. */
	atomic_store_explicit(&rt->ck_trigger, id, memory_order_release);
	wake_all(rt);
}

static void count_completed(struct runtime *rt, uint64_t started_ns)
{
	weir_checkpoint_stats *st = rt->stats;
	if (!st)
		return;
	double ms = (double)(now_ns() - started_ns) / 1e6;
	st->completed++;
	st->total_ms += ms;
	if (ms > st->max_ms)
		st->max_ms = ms;
}

static void end_inflight(struct runtime *rt, int rc, const char *msg)
{
	ckpt_coord *c = rt->coord;
	if (rc && rt->stats)
		rt->stats->failed++;
	if (c->inflight_request)
		sp_reply(rc, rc ? msg : c->sp_path);
	if (rc && c->inflight_stop) /* sources resume */
		atomic_store_explicit(&rt->ck_stop_id, 0, memory_order_relaxed);
	c->inflight = 0;
	c->inflight_request = c->inflight_stop = false;
	ckpt_schedule_ended(&c->sched, now_ns());
}

/* Take a pending savepoint request (or the signal's); true if one. */
static bool take_request(struct runtime *rt, char *dir, size_t len, bool *stop)
{
	bool got = false;
	if (!atomic_load_explicit(&sp_waiting, memory_order_acquire))
		return false;
	pthread_mutex_lock(&spr.mu);
	if (spr.pending && !spr.taken) {
		spr.taken = true;
		atomic_store_explicit(&sp_waiting, 0, memory_order_relaxed);
		snprintf(dir, len, "%s", spr.dir);
		*stop = spr.stop;
		got = true;
	}
	pthread_mutex_unlock(&spr.mu);
	(void)rt;
	return got;
}

static void savepoint_parent(struct runtime *rt, char *out, size_t len)
{
	const weir_config *cfg = rt->cfg;
	if (cfg->savepoint_dir)
		snprintf(out, len, "%s", cfg->savepoint_dir);
	else if (cfg->checkpoint_dir)
		snprintf(out, len, "%s/savepoints", cfg->checkpoint_dir);
	else
		snprintf(out, len, "%s", ""); /* none: as Flink, refuse */
}

/* The local reactors exited (the job ended, or a worker's part of it):
 * make every local core's log durable up to id from this thread. */
static int sync_exited(struct runtime *rt, int64_t id)
{
	for (int i = rt->lo; i < rt->hi; i++) {
		rt->sops->core_sync(rt->store, i, id);
		int64_t d;
		while ((d = rt->sops->core_poll(rt->store, i)) >= 0 && d < id)
			usleep(200);
		if (d < 0)
			return (int)d;
	}
	return 0;
}

/*
 * A worker's side of the checkpoint protocol: the cluster's coordinator
 * triggers (and numbers) checkpoints and savepoints; this worker injects
 * the barriers at its sources, and once its cores made their logs durable
 * sends its part of the manifest; the coordinator writes the manifest when
 * every worker sent its part, and says so (ck_committed): then the tasks
 * commit.  A newer trigger replaces one in flight (the coordinator gave
 * it up).
 */
static int coordinate_worker(struct runtime *rt)
{
	ckpt_coord *c = rt->coord;
	const run_cluster *cl = rt->cl;
	char dir[3072] = "", err[1024];
	bool stop = false;
	bool exited = atomic_load_explicit(&rt->reactors_exited, memory_order_acquire) ==
		      rt->hi - rt->lo;

	int64_t comp = cl->ck_committed(cl->ctx);
	if (comp > c->last_completed) {
		c->last_completed = comp;
		if (c->inflight && comp >= c->inflight) {
			count_completed(rt, c->sched.started);
			bool st = c->inflight_stop;
			end_inflight(rt, 0, "");
			if (st)
				atomic_store_explicit(&rt->stop_now, 1, memory_order_release);
		}
		atomic_store_explicit(&rt->ck_completed, comp, memory_order_release);
		wake_all(rt);
	}
	int64_t id = cl->ck_trigger(cl->ctx, dir, sizeof(dir), &stop);
	if (id > 0 && id != c->inflight) {
		if (c->inflight && !c->acked) {
			rt->sops->abandon(rt->store, c->inflight);
			end_inflight(rt, -ECANCELED, "replaced by a newer checkpoint");
		}
		err[0] = 0;
		int rc = rt->sops->begin(rt->store, id, dir[0] ? dir : NULL, err, sizeof(err));
		if (rc < 0) {
			cl->ck_ack(cl->ctx, id, rc, err);
			return 1;
		}
		c->next_id = id + 1;
		c->acked = false;
		if (exited) {
			c->inflight = id;
			c->sched.started = now_ns();
		} else {
			trigger(rt, id, stop, dir[0] != 0);
		}
	}
	if (!c->inflight || c->acked)
		return 2;
	bool all = true;
	if (exited) {
		int rc = sync_exited(rt, c->inflight);
		if (rc < 0) {
			snprintf(err, sizeof(err), "state log: %s", strerror(-rc));
			cl->ck_ack(cl->ctx, c->inflight, rc, err);
			c->acked = true;
			return 1;
		}
	} else {
		for (int i = rt->lo; i < rt->hi && all; i++)
			all = atomic_load_explicit(&rt->reactors[i].ck_acked,
						   memory_order_acquire) >= c->inflight;
	}
	if (!all)
		return 1;
	char *text = NULL;
	int rc = rt->sops->part(rt->store, c->inflight, &text, err, sizeof(err));
	cl->ck_ack(cl->ctx, c->inflight, rc, rc < 0 ? err : text);
	free(text);
	c->acked = true;
	return 1;
}

int ckpt_coordinate(struct runtime *rt)
{
	ckpt_coord *c = rt->coord;
	uint64_t now = now_ns();
	char err[1024], msg[1024];

	if (!rt->store)
		return 50;
	if (rt->cl)
		return coordinate_worker(rt);
	if (c->inflight) {
		bool all = true;
		for (int i = 0; i < rt->nreactors && all; i++)
			all = atomic_load_explicit(&rt->reactors[i].ck_acked,
						   memory_order_acquire) >= c->inflight;
		if (all) {
			int64_t id = c->inflight;
			msg[0] = 0;
			int rc = rt->sops->complete(rt->store, id, msg, sizeof(msg));
			if (rc < 0) {
				wlog(LOG_WARN, "checkpoint %lld failed: %s", (long long)id, msg);
				rt->sops->abandon(rt->store, id);
				end_inflight(rt, rc, msg);
				return 1;
			}
			if (msg[0])
				wlog(LOG_INFO, "%s", msg);
			count_completed(rt, c->sched.started);
			c->last_completed = id;
			bool stop = c->inflight_stop;
			atomic_store_explicit(&rt->ck_completed, id, memory_order_release);
			end_inflight(rt, 0, msg);
			if (stop)
				atomic_store_explicit(&rt->stop_now, 1, memory_order_release);
			wake_all(rt);
			return 1;
		}
		if (ckpt_schedule_expired(&c->policy, &c->sched, now)) {
			snprintf(msg, sizeof(msg),
				 "checkpoint %lld expired after %llu ms before every core "
				 "acknowledged it; abandoned, the job goes on",
				 (long long)c->inflight,
				 (unsigned long long)(c->policy.timeout / 1000000));
			wlog(LOG_WARN, "%s", msg);
			rt->sops->abandon(rt->store, c->inflight);
			end_inflight(rt, -ETIMEDOUT, msg);
		}
		return 1;
	}
	char dir[3072];
	bool stop = false, req = take_request(rt, dir, sizeof(dir), &stop);
	if (!req && atomic_exchange_explicit(&sp_async, 0, memory_order_relaxed)) {
		dir[0] = 0;
		req = true;
		c->inflight_request = false;
	} else if (req) {
		c->inflight_request = true;
	}
	if (req) {
		int64_t id = c->next_id++;
		char parent[3072];
		if (dir[0])
			snprintf(parent, sizeof(parent), "%s", dir);
		else
			savepoint_parent(rt, parent, sizeof(parent));
		snprintf(c->sp_path, sizeof(c->sp_path), "%s/savepoint-%06lld", parent,
			 (long long)id);
		err[0] = 0;
		int rc = parent[0] ? rt->sops->begin(rt->store, id, c->sp_path, err, sizeof(err))
				   : -EDESTADDRREQ;
		if (rc < 0) {
			if (!parent[0])
				snprintf(err, sizeof(err), "no savepoint directory: give the "
					 "command one (DIR), or start the job with --savepoint-dir "
					 "DIR or --checkpoint-dir CK (savepoints then go to "
					 "CK/savepoints)");
			wlog(LOG_WARN, "savepoint: %s", err);
			c->inflight = id;
			end_inflight(rt, rc, err);
			return 1;
		}
		wlog(LOG_INFO, "savepoint %lld triggered into %s%s", (long long)id,
		     c->sp_path, stop ? " (then stop)" : "");
		trigger(rt, id, stop, true);
		return 1;
	}
	uint64_t wait = ckpt_schedule_due_in(&c->policy, &c->sched, now);
	if (wait) {
		uint64_t ms = wait / 1000000;
		return ms < 5 ? (int)ms + 1 : 5;
	}
	int64_t id = c->next_id++;
	err[0] = 0;
	if (rt->sops->begin(rt->store, id, NULL, err, sizeof(err)) < 0) {
		wlog(LOG_WARN, "checkpoint %lld: %s", (long long)id, err);
		ckpt_schedule_triggered(&c->sched, now);
		ckpt_schedule_ended(&c->sched, now);
		return 5;
	}
	trigger(rt, id, false, false);
	return 1;
}

void ckpt_finish(struct runtime *rt, bool job_ended)
{
	ckpt_coord *c = rt->coord;
	char msg[1024] = "";

	pthread_mutex_lock(&spr.mu);
	if (spr.rt == rt)
		spr.rt = NULL;
	if (spr.pending && !spr.taken) { /* asked too late: answer */
		spr.taken = spr.done = true;
		spr.rc = -ENOENT;
		snprintf(spr.msg, sizeof(spr.msg), "the job ended");
		pthread_cond_broadcast(&spr.cv);
	}
	pthread_mutex_unlock(&spr.mu);
	if (!rt->store) {
		free(c);
		rt->coord = NULL;
		return;
	}
	if (c->inflight) {
		rt->sops->abandon(rt->store, c->inflight);
		end_inflight(rt, -ECANCELED, "the job ended before the savepoint completed");
	}
	if (rt->cl) {
		/* The coordinator took the final checkpoint; commit what it
		 * completed last. */
		int64_t comp = rt->cl->ck_committed(rt->cl->ctx);
		if (comp > c->last_completed)
			c->last_completed = comp;
		job_ended = false;
	}
	if (job_ended && rt->cfg->checkpoint_dir && rt->cfg->checkpoint_dir[0]) {
		/* Every task ended and took its final snapshot: the final
		 * checkpoint needs no barrier, only durable logs. */
		int64_t id = c->next_id++;
		uint64_t t0 = now_ns();
		int rc = rt->sops->begin(rt->store, id, NULL, msg, sizeof(msg));
		if (rc == 0)
			rc = sync_exited(rt, id);
		if (rc == 0)
			rc = rt->sops->complete(rt->store, id, msg, sizeof(msg));
		if (rc < 0) {
			wlog(LOG_ERROR, "final checkpoint %lld failed: %s; output written at "
			     "end of input stays uncommitted", (long long)id,
			     msg[0] ? msg : strerror(-rc));
		} else {
			wlog(LOG_INFO, "%s (final)", msg);
			count_completed(rt, t0);
			c->last_completed = id;
		}
	}
	/* Commit what the last complete checkpoint covers (reactors may not
	 * have seen it before they stopped; commit is idempotent). */
	if (c->last_completed > 0)
		for (int i = 0; i < rt->ntasks; i++) {
			task *t = rt->tasks[i];
			if (t->ops->commit && runtime_core_local(rt, task_core(t)))
				t->ops->commit(t, c->last_completed);
		}
	if (rt->stats)
		rt->sops->stats(rt->store, rt->stats);
	rt->sops->stop(rt->store);
	rt->store = NULL;
	free(c);
	rt->coord = NULL;
}
