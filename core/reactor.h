/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reactors and actors (private to core/): the structs reactor.c runs.
 *
 * A reactor is one thread pinned to one CPU.  It owns a set of actors; an
 * actor is a chain of fused operator subtasks (tasks) whose head reads the
 * actor's input channels or, for a source, produces data.  Everything in
 * these structs is touched only by the owning reactor's thread, except the
 * fields marked otherwise.
 *
 * A reactor's doorbell -- the `parked` flag and the eventfd it sleeps on --
 * is rung by whoever hands it work or news (reactor_notify, reactor_wake
 * below): the coordinator, a failing job, and the lower layers through
 * their hooks (channel.notify, pool_set.wake), which know nothing of
 * reactors.  park() in reactor.c is the sleeping side.
 */
#ifndef WEIR_REACTOR_H
#define WEIR_REACTOR_H

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "core.h"
#include "emit.h"
#include "runtime.h"

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

/* Wake r (it may be parked on its eventfd).  Any thread. */
static inline void reactor_wake(reactor *r)
{
	uint64_t one = 1;
	if (r->efd < 0)
		return;
	ssize_t w = write(r->efd, &one, sizeof(one));
	(void)w;
}

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

/* The loop of reactor r (a struct reactor *): the thread runtime_run
 * starts for each local core.  Returns when the job ended or stops. */
void *reactor_main(void *arg);

#endif
