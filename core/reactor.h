/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reactors and actors (private to core/).
 *
 * A reactor is one thread pinned to one CPU.  It owns a set of actors; an
 * actor is a chain of fused operator subtasks (tasks) whose head reads the
 * actor's input channels or, for a source, produces data.  Everything in
 * these structs is touched only by the owning reactor's thread, except the
 * fields marked otherwise.
 */
#ifndef WEIR_REACTOR_H
#define WEIR_REACTOR_H

#include <pthread.h>
#include <stdatomic.h>

#include "core.h"

typedef struct reactor_metrics {
	uint64_t busy_ns, idle_ns, backpressured_ns, parks;
} reactor_metrics;

typedef struct reactor {
	int id, cpu;
	pthread_t thread;
	struct runtime *rt;
	struct actor **actors;
	int nactors, cap_actors;
	int efd;             /* eventfd a parked reactor sleeps on */
	/* written by the owner, read by producers/consumers on other cores */
	_Alignas(CACHELINE) int parked;
	char pad_[CACHELINE - sizeof(int)];
	/* owner writes (relaxed stores), the progress printer reads */
	_Alignas(CACHELINE) reactor_metrics m;
	/* checkpointing: owner only */
	int64_t ck_synced;    /* last id handed to store core_sync */
	int64_t ck_notified;  /* last completed id given to tasks' commit */
	bool ck_dirty;        /* a barrier passed or an actor ended */
	bool all_finished;    /* every actor finished (counted in reactors_idle) */
	bool quiet;           /* ... counted in reactors_quiet */
	/* cluster: the first local reactor polls the data plane */
	bool net_attached, net_live;
	/* written by the owner (release), read by the coordinator (acquire) */
	_Alignas(CACHELINE) _Atomic int64_t ck_acked;
} reactor;

void reactor_wake(reactor *r);

/*
 * Wake r if it is parked.  Called after publishing work for r (an element
 * pushed, a credit returned, a block given back).  The seq_cst fence orders
 * that publication before the load of `parked`; it pairs with the fence in
 * park() between storing parked = 1 and re-checking for work, so either the
 * sleeper sees the work or we see it parked (no lost wake-up).
 */
static inline void reactor_notify(reactor *r)
{
	if (!r)
		return;
	atomic_thread_fence(memory_order_seq_cst);
	if (__atomic_load_n(&r->parked, __ATOMIC_RELAXED))
		reactor_wake(r);
}

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

typedef struct actor {
	reactor *r;
	task *head;
	task **tasks;
	int ntasks, cap_tasks;
	channel **in;
	int nin, cap_in;
	int open_inputs;
	int rr;
	channel **outch;
	int noutch, cap_outch;
	outlet **hash_outlets;  /* outlets with row builders to flush */
	int nhash, cap_hash;
	bool is_source;
	bool idle;        /* source: last produce() made nothing */
	bool blocked;
	bool ended;       /* EOI handled and forwarded */
	bool finished;    /* ended and every queued element delivered */
	int64_t wm;
	bool inputs_idle; /* every open input is marked idle */
	uint64_t timer_at;/* earliest task timer (may be stale-early); 0 = none */
	int aligned;      /* channels holding back for a barrier */
	int64_t barrier;
	int64_t ck_injected; /* source: last barrier it injected */
	int64_t ua_id;       /* unaligned checkpoint it took its snapshot for */
	bool ua_capturing;   /* ... and still captures in-flight inputs */
	bool stopped;     /* source: stopped by stop-with-savepoint */
} actor;

struct runtime
{
	const weir_config *cfg;
	graph *g;
	pool_set *pools;
	int nreactors;
	reactor *reactors;
	actor **actors;
	int nactors, cap_actors;
	task **tasks;
	int ntasks, cap_tasks;
	channel **channels;
	int nchannels, cap_channels;
	int *node_par;
	_Atomic int failed;
	char error[512];
	/* checkpointing (core/checkpoint.c) */
	const ckpt_store_ops *sops;
	ckpt_store *store;          /* NULL: no checkpoints or savepoints */
	_Atomic int64_t ck_trigger; /* main (release) -> reactors (acquire):
				     * the barrier sources inject next */
	_Atomic int64_t ck_completed; /* main (release) -> reactors: commit */
	_Atomic int64_t ck_stop_id;   /* sources stop after injecting this */
	_Atomic int64_t ck_unaligned; /* = ck_trigger when that checkpoint is
				       * unaligned, else 0 (ordered by the
				       * trigger's release) */
	_Atomic int stop_now;       /* main: the job stopped (savepoint) */
	_Atomic int reactors_idle;  /* reactors with every actor finished */
	_Atomic int reactors_exited;
	/* Cluster: this process runs reactors [lo, hi); the other reactors
	 * are placeholders for other workers' cores (no thread).
	 * reactors[nreactors] is the data plane's stand-in (cluster only). */
	int lo, hi;
	const run_cluster *cl;
	_Atomic int reactors_quiet; /* local reactors with every actor finished */
	struct ckpt_coord *coord;   /* main thread only */
	weir_checkpoint_stats *stats; /* main thread only; may be NULL */
	const char *job;
};

/* ---- core/checkpoint.c ---------------------------------------------------- */

/* Barrier id reached task t (before it is forwarded): snapshot it. */
void ckpt_task_barrier(task *t, int64_t id);
/* Actor a ended: take its tasks' final snapshots. */
void ckpt_actor_ended(actor *a);
/* Is barrier id of an unaligned checkpoint?  Reactor threads. */
static inline bool ckpt_unaligned(struct runtime *rt, int64_t id)
{
	return id == atomic_load_explicit(&rt->ck_unaligned, memory_order_relaxed);
}
/* Task t forwards unaligned barrier id on channel c: log what c's producer
 * queue holds ahead of it, and announce it to the consumer. */
void ckpt_announce(task *t, channel *c, int64_t id);
/* Before actor a pops from c: c's producer announced an unaligned barrier
 * a has not seen (c->ann_id > a->barrier): start that checkpoint at a now,
 * before a takes an element that follows the barrier. */
void ckpt_announced(actor *a, channel *c);
/* Actor a popped e from c while c captures in-flight data (c->cap_id set,
 * !c->cap_done): log it if it precedes the barrier. */
void ckpt_capture_popped(actor *a, channel *c, const elem *e);
/* Reactor loop: inject barriers, acknowledge, deliver commits.  True if
 * it did work. */
bool ckpt_reactor_poll(reactor *r);
/* Main thread: set up the store (restore), before the reactors start.
 * 0, 1 when it restored a finished run (nothing to run), or -errno. */
int ckpt_start(struct runtime *rt);
/* Main thread while the reactors run: trigger, complete, time out,
 * answer savepoint requests.  Returns ms until it wants to run again. */
int ckpt_coordinate(struct runtime *rt);
/* Main thread after the reactors stopped: the final checkpoint (if the job
 * ended), commits, close. */
void ckpt_finish(struct runtime *rt, bool job_ended);

#endif
