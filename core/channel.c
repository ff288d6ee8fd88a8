/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Channels: SPSC element rings between two subtasks (ck_ring) with
 * credit-based flow control.  See the contract in core.h.
 *
 * Memory ordering:
 *   - element hand-off: ck_ring_enqueue_spsc's store fence before publishing
 *     p_tail pairs with ck_ring_dequeue_spsc's load fence after reading it,
 *     so the batch contents written by the producer are visible to the
 *     consumer (declared to TSan with tsan_release/tsan_acquire);
 *   - credits: the consumer publishes `consumed` with a release store after
 *     it finished with a batch; the producer reads it with acquire.
 *
 * A channel wakes the reactor at its other end through the hook the
 * planner set (c->notify: reactor_notify, whose fence orders the hand-off
 * before the test of the reactor's parked flag); channels know nothing of
 * reactors.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "tsan.h"

CK_RING_PROTOTYPE(elem, elem)

/* Tell the reactor at end r (c->producer or c->consumer) that c has
 * something for it. */
static inline void notify(const channel *c, struct reactor *r)
{
	if (c->notify)
		c->notify(r);
}

channel *channel_new(uint32_t credits, struct reactor *producer,
		     struct reactor *consumer)
{
	channel *c = aligned_alloc(CACHELINE, sizeof(channel));
	uint32_t size = 16;

	if (!c)
		return NULL;
	memset(c, 0, sizeof(*c));
	/* Room for every credited batch plus control elements between them. */
	while (size < credits * 2 + 8)
		size <<= 1;
	c->slots = calloc(size, sizeof(elem));
	if (!c->slots) {
		free(c);
		return NULL;
	}
	ck_ring_init(&c->ring, size);
	c->credits = credits;
	c->producer = producer;
	c->consumer = consumer;
	c->watermark = INT64_MIN;
	return c;
}

void channel_free(channel *c)
{
	if (!c)
		return;
	free(c->slots);
	free(c->pend);
	free(c);
}

static bool try_push(channel *c, const elem *e)
{
	if (e->kind == ELEM_DATA) {
		uint64_t consumed = __atomic_load_n(&c->consumed, __ATOMIC_ACQUIRE);
		if (c->sent - consumed >= c->credits)
			return false;
	}
	tsan_release(c);
	if (!ck_ring_enqueue_spsc_elem(&c->ring, c->slots, (elem *)e))
		return false;
	c->pushed++;
	if (e->kind == ELEM_DATA)
		c->sent++;
	notify(c, c->consumer);
	return true;
}

static void pend_append(channel *c, elem e)
{
	if (c->pend_len == c->pend_cap) {
		/* Grows only when one input element fans out into more output
		 * batches than the queue holds: bounded by that expansion. */
		uint32_t cap = c->pend_cap ? c->pend_cap * 2 : 16;
		elem *n = malloc(cap * sizeof(elem));
		if (!n) {
			wlog(LOG_ERROR, "out of memory queueing on a channel");
			abort();
		}
		for (uint32_t i = 0; i < c->pend_len; i++)
			n[i] = c->pend[(c->pend_head + i) % c->pend_cap];
		free(c->pend);
		c->pend = n;
		c->pend_cap = cap;
		c->pend_head = 0;
	}
	c->pend[(c->pend_head + c->pend_len) % c->pend_cap] = e;
	c->pend_len++;
}

bool channel_push(channel *c, elem e)
{
	if (likely(c->pend_len == 0) && try_push(c, &e))
		return true;
	pend_append(c, e);
	return false;
}

bool channel_flush_pending(channel *c)
{
	while (c->pend_len) {
		if (!try_push(c, &c->pend[c->pend_head]))
			return false;
		c->pend_head = (c->pend_head + 1) % c->pend_cap;
		c->pend_len--;
	}
	return true;
}

bool channel_pop(channel *c, elem *e)
{
	if (!ck_ring_dequeue_spsc_elem(&c->ring, c->slots, e))
		return false;
	tsan_acquire(c);
	c->popped++;
	/* A control element frees ring space but returns no credit: tell a
	 * producer that may be parked behind a full ring.  (Data elements
	 * notify in channel_consumed, once processed.) */
	if (e->kind != ELEM_DATA)
		notify(c, c->producer);
	return true;
}

bool channel_peek(channel *c, uint64_t k, elem *e)
{
	/* As ck_ring's single-consumer dequeue, without moving c_head: the
	 * load fence after reading p_tail pairs with the producer's store
	 * fence before publishing it (ck_ring_enqueue_spsc). */
	unsigned int head = c->ring.c_head;
	unsigned int tail = ck_pr_load_uint(&c->ring.p_tail);
	if ((uint64_t)(tail - head) <= k)
		return false;
	ck_pr_fence_load();
	tsan_acquire(c);
	*e = c->slots[(head + (unsigned int)k) & c->ring.mask];
	return true;
}

void channel_consumed(channel *c)
{
	c->consumed_local++;
	/* Pairs with the acquire load in try_push. */
	__atomic_store_n(&c->consumed, c->consumed_local, __ATOMIC_RELEASE);
	notify(c, c->producer);
}
