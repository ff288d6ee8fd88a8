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
} actor;

#endif
