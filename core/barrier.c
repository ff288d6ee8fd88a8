/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint barrier protocol, on the reactor threads (asynchronous
 * barrier snapshotting, as in Flink).  The coordinator on the job thread
 * (checkpoint_coordinator.c) publishes checkpoint n in rt->ck_trigger;
 * here, every source actor injects barrier n at its next turn (its
 * snapshot records its position); the barrier flows with the data, is
 * aligned at multi-input actors (held back on each input that delivered
 * it until every open input did), and each task it passes snapshots its
 * operator state (op_ops.snapshot) and has the store mark its state-log
 * position.  A core whose tasks all passed n (or ended) asks the store to
 * make its log durable, and acknowledges n (ck_acked) once it is.  When the
 * coordinator publishes ck_completed = n, each core calls op_ops.commit on
 * its tasks (sinks' second phase).  The alignment of a newer barrier
 * cancels that of an older, abandoned one.
 *
 * Unaligned checkpoints (below) let a barrier overtake the data in the
 * channels and log that data instead; before a restored job runs, the
 * store puts that data back (runtime_restore_element, at the end).  Sinks
 * pre-commit at a barrier through task_sync_fd.  Storage (logs,
 * manifests, recovery) is the store's (state/checkpoint.c); this file
 * knows no file format.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "barrier.h"
#include "core.h"
#include "emit.h"
#include "reactor.h"

/* ---- barriers at tasks -------------------------------------------------------------- */

/* Barrier id reached task t (before it is forwarded): snapshot it. */
static void ckpt_task_barrier(task *t, int64_t id)
{
	struct runtime *rt = t->rt;
	int rc;

	snap_buf *snap = &t->final_snap;
	if (id != CKPT_FINAL) {
		if (id <= t->ck_id)
			return;
		t->ck_id = id;
		t->ck_watermark = t->watermark;
		snap = &t->snap;
	} else {
		t->final_watermark = t->watermark;
	}
	snap->len = 0;
	if (t->ops->snapshot && (rc = t->ops->snapshot(t, id, snap)) < 0) {
		task_fail(t, "%s: snapshot for checkpoint %lld: %s", t->node->name,
			  (long long)id, strerror(-rc));
		return;
	}
	if (rt && rt->store && (rc = rt->sops->task_barrier(rt->store, t, id)) < 0)
		task_fail(t, "%s: checkpoint %lld: state log: %s", t->node->name,
			  (long long)id, strerror(-rc));
	if (t->actor)
		t->actor->r->ck_dirty = true;
}

/* Is barrier id of an unaligned checkpoint? */
static inline bool ckpt_unaligned(struct runtime *rt, int64_t id)
{
	return id == atomic_load_explicit(&rt->ck_unaligned, memory_order_relaxed);
}

/* ---- forwarding a barrier; unaligned checkpoints -----------------------------------
 *
 * An unaligned barrier does not travel through the ring: the producer
 * logs what its queue holds for the channel (elements it emitted before
 * the barrier that have not entered the ring), then announces the barrier
 * on the channel with the number of elements it pushed before it
 * (ckpt_announce).  The consumer, at its first announcement of checkpoint
 * n, takes its snapshot at once and forwards the barrier the same way
 * (ua_begin): whatever its inputs hold is not waited for.  Instead, for
 * each input channel it logs the elements it had not processed yet that
 * precede that channel's barrier -- by peeking into the ring once the
 * channel's announcement is visible, and by logging what it pops before
 * then (ckpt_capture_popped) -- plus the channel's watermark and
 * idleness.  The core acknowledges n once every task passed it and every
 * actor has captured its inputs; a restore puts the logged elements back
 * into their channels (state/inflight.c), so every element is processed
 * exactly once: before the snapshot, or after the restore.
 */

static bool capturable(uint32_t kind)
{
	return kind == ELEM_DATA || kind == ELEM_WATERMARK || kind == ELEM_IDLE;
}

static void log_inflight(task *t, int core, int64_t id, const channel *c,
			 uint64_t key, const elem *e)
{
	struct runtime *rt = t->rt;
	int rc = rt->sops->channel_state(rt->store, core, id, c, key, e);
	if (rc < 0)
		task_fail(t, "%s: checkpoint %lld: logging in-flight data: %s", t->node->name,
			  (long long)id, strerror(-rc));
}

/* Task t forwards unaligned barrier id on channel c: log what c's producer
 * queue holds ahead of it, and announce it to the consumer. */
static void ckpt_announce(task *t, channel *c, int64_t id)
{
	if (!t->rt->store)
		return;
	for (uint32_t k = 0; k < c->pend_len; k++) {
		const elem *e = &c->pend[(c->pend_head + k) % c->pend_cap];
		if (capturable(e->kind))
			log_inflight(t, task_core(t), id, c, 2 * (c->pushed + k) + 1, e);
	}
	atomic_store_explicit(&c->ann_seq, c->pushed, memory_order_relaxed);
	/* Pairs with the consumer's acquire in ua_poll/ckpt_capture_popped:
	 * elements [0, ann_seq) are in the ring by then. */
	atomic_store_explicit(&c->ann_id, id, memory_order_release);
	reactor_notify(c->consumer);
}

/* Forwarding barrier id through outlet o of t: when id is unaligned, the
 * barrier overtakes what the channels hold (task_forward_control). */
static bool overtake_unaligned(task *t, outlet *o, int64_t id)
{
	if (!ckpt_unaligned(t->rt, id))
		return false;
	for (int c = 0; c < o->nch; c++)
		ckpt_announce(t, o->ch[c], id);
	return true;
}

static void task_barrier(task *t, int64_t id)
{
	ckpt_task_barrier(t, id);
	task_forward_control(t, ELEM_BARRIER, id, task_barrier, overtake_unaligned);
}

void task_emit_barrier(task *t, int64_t id)
{
	task_barrier(t, id);
}

void ckpt_actor_ended(actor *a)
{
	if (!a->r->rt->store)
		return;
	for (int i = 0; i < a->ntasks; i++) {
		task *t = a->tasks[i];
		t->ck_final = true;
		ckpt_task_barrier(t, CKPT_FINAL);
	}
	a->r->ck_dirty = true;
}

/* ---- alignment ------------------------------------------------------------------------ */

void ckpt_check_alignment(actor *a)
{
	if (!a->aligned || a->aligned < a->open_inputs)
		return;
	for (int i = 0; i < a->nin; i++)
		a->in[i]->aligned = 0;
	a->aligned = 0;
	task_barrier(a->head, a->barrier);
}

void ckpt_align(actor *a, channel *c, int64_t id)
{
	if (id < a->barrier)
		return; /* of an abandoned checkpoint: a newer one is aligning */
	if (id > a->barrier && a->aligned) {
		/* A newer barrier cancels the older alignment (that
		 * checkpoint was abandoned): release its channels. */
		for (int i = 0; i < a->nin; i++)
			a->in[i]->aligned = 0;
		a->aligned = 0;
	}
	c->aligned = 1;
	a->aligned++;
	a->barrier = id;
	ckpt_check_alignment(a);
}

/* ---- unaligned checkpoints: the consumer's side ------------------------------------- */

/* c's announcement of c->cap_id is visible: log the ring's elements up to
 * it (they stay in the ring, to be processed as usual). */
static void capture_rest(actor *a, channel *c)
{
	uint64_t end = atomic_load_explicit(&c->ann_seq, memory_order_relaxed);
	c->cap_end = end;
	for (uint64_t seq = c->popped; seq < end; seq++) {
		elem e;
		if (!channel_peek(c, seq - c->popped, &e))
			break; /* cannot happen: announced elements are in the ring */
		if (capturable(e.kind))
			log_inflight(a->head, a->r->id, c->cap_id, c, 2 * seq + 1, &e);
	}
	c->cap_done = true;
}

void ckpt_capture_popped(actor *a, channel *c, const elem *e)
{
	uint64_t seq = c->popped - 1;
	struct runtime *rt = a->r->rt;
	if (c->cap_id < atomic_load_explicit(&rt->ck_trigger, memory_order_relaxed)) {
		c->cap_done = true; /* that checkpoint was abandoned */
		return;
	}
	if (atomic_load_explicit(&c->ann_id, memory_order_acquire) == c->cap_id) {
		uint64_t end = atomic_load_explicit(&c->ann_seq, memory_order_relaxed);
		if (seq < end && capturable(e->kind))
			log_inflight(a->head, a->r->id, c->cap_id, c, 2 * seq + 1, e);
		capture_rest(a, c);
		return;
	}
	if (e->kind == ELEM_EOI) {
		c->cap_done = true;
		return;
	}
	if (capturable(e->kind))
		log_inflight(a->head, a->r->id, c->cap_id, c, 2 * seq + 1, e);
}

/* The first announcement of unaligned checkpoint id reached actor a. */
static void ua_begin(actor *a, int64_t id)
{
	if (a->aligned) { /* an older aligned checkpoint: abandoned */
		for (int i = 0; i < a->nin; i++)
			a->in[i]->aligned = 0;
		a->aligned = 0;
	}
	a->barrier = id;
	a->ua_id = id;
	for (int i = 0; i < a->nin; i++) {
		channel *c = a->in[i];
		c->cap_id = id;
		c->cap_end = UINT64_MAX;
		c->cap_done = c->ended != 0;
		if (c->ended)
			continue;
		/* The channel's own state, restored ahead of its elements. */
		if (c->watermark != INT64_MIN)
			log_inflight(a->head, a->r->id, id, c, 2 * c->popped,
				     &(elem){ .kind = ELEM_WATERMARK, .value = c->watermark });
		if (c->idle)
			log_inflight(a->head, a->r->id, id, c, 2 * c->popped,
				     &(elem){ .kind = ELEM_IDLE, .value = 1 });
	}
	task_emit_barrier(a->head, id); /* snapshot the chain, forward */
}

void ckpt_announced(actor *a, channel *c)
{
	int64_t id = atomic_load_explicit(&c->ann_id, memory_order_acquire);
	if (id > a->barrier && ckpt_unaligned(a->r->rt, id) && !a->ended)
		ua_begin(a, id);
}

/* Unaligned checkpoint id is in flight: start it at actors that got its
 * first announcement, capture what announced channels hold. */
static bool ua_poll(reactor *r, int64_t id)
{
	bool did = false;
	for (int i = 0; i < r->nactors; i++) {
		actor *a = r->actors[i];
		if (a->is_source || a->ended)
			continue;
		if (a->barrier < id)
			for (int k = 0; k < a->nin; k++)
				if (atomic_load_explicit(&a->in[k]->ann_id, memory_order_acquire) == id) {
					ua_begin(a, id);
					did = true;
					break;
				}
		if (a->ua_id != id)
			continue;
		bool all = true;
		for (int k = 0; k < a->nin; k++) {
			channel *c = a->in[k];
			if (c->cap_done)
				continue;
			if (c->ended) {
				c->cap_done = true;
			} else if (atomic_load_explicit(&c->ann_id, memory_order_acquire) == id) {
				capture_rest(a, c);
				did = true;
			} else {
				all = false;
			}
		}
		a->ua_capturing = !all;
	}
	return did;
}

/* ---- the reactors' checkpoint poll ------------------------------------------------ */

bool ckpt_reactor_poll(reactor *r)
{
	struct runtime *rt = r->rt;
	bool did = false;

	if (!rt->store)
		return false;
	int64_t trig = atomic_load_explicit(&rt->ck_trigger, memory_order_acquire);
	if (trig > r->ck_synced) {
		if (ckpt_unaligned(rt, trig))
			did |= ua_poll(r, trig);
		for (int i = 0; i < r->nactors; i++) {
			actor *a = r->actors[i];
			if (a->is_source && !a->ended && a->ck_injected < trig) {
				/* The source's snapshot (its position) is taken
				 * as the barrier passes it. */
				a->ck_injected = trig;
				task_emit_barrier(a->head, trig);
				did = true;
			}
		}
		bool all = true;
		for (int i = 0; i < r->nactors && all; i++) {
			if (r->actors[i]->ua_id == trig && r->actors[i]->ua_capturing &&
			    !r->actors[i]->ended)
				all = false;
			for (int k = 0; k < r->actors[i]->ntasks; k++) {
				task *t = r->actors[i]->tasks[k];
				if (t->ck_id < trig && !t->ck_final) {
					all = false;
					break;
				}
			}
		}
		if (all) {
			rt->sops->core_sync(rt->store, r->id, trig);
			r->ck_synced = trig;
		}
	}
	int64_t d = rt->sops->core_poll(rt->store, r->id);
	if (rt->sops->core_busy && rt->sops->core_busy(rt->store, r->id))
		did = true; /* a snapshot is being logged: do not park */
	if (d < 0) {
		if (r->nactors)
			task_fail(r->actors[0]->head, "checkpoint: state log on core %d: %s",
				  r->id, strerror((int)-d));
		else
			wlog(LOG_ERROR, "checkpoint: state log on core %d: %s", r->id,
			     strerror((int)-d));
	} else if (d > atomic_load_explicit(&r->ck_acked, memory_order_relaxed)) {
		/* Pairs with the coordinator's acquire: the tasks' snapshots
		 * and log positions written above are visible to it. */
		atomic_store_explicit(&r->ck_acked, d, memory_order_release);
	}
	int64_t comp = atomic_load_explicit(&rt->ck_completed, memory_order_acquire);
	if (comp > r->ck_notified) {
		r->ck_notified = comp;
		for (int i = 0; i < r->nactors; i++)
			for (int k = 0; k < r->actors[i]->ntasks; k++) {
				task *t = r->actors[i]->tasks[k];
				if (t->ops->commit)
					t->ops->commit(t, comp);
			}
		did = true;
	}
	r->ck_dirty = false;
	return did;
}

/* ---- sinks' pre-commit ------------------------------------------------------------- */

int task_sync_fd(task *t, int fd)
{
	struct runtime *rt = t->rt;
	if (rt && rt->store && t->actor)
		return rt->sops->core_sync_fd(rt->store, task_core(t), fd);
	return fdatasync(fd) ? -errno : 0;
}

bool task_checkpointing(const task *t)
{
	return t->cfg->checkpoint_dir && t->cfg->checkpoint_dir[0];
}

/* ---- restoring in-flight data (main thread, before the job runs) --------------------- */

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
