/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint barrier protocol on the reactors (private to core/):
 * what reactor.c calls in barrier.c.  Reactor threads only.
 */
#ifndef WEIR_BARRIER_H
#define WEIR_BARRIER_H

#include "core.h"
#include "reactor.h"

/* Barrier id arrived on input c of actor a: hold c back until every open
 * input delivered it (alignment), then pass it through a's chain.  A
 * newer barrier cancels the alignment of an older (abandoned) one. */
void ckpt_align(actor *a, channel *c, int64_t id);
/* An input of a ended: the barrier it was aligning may now be complete. */
void ckpt_check_alignment(actor *a);
/* Actor a ended: take its tasks' final snapshots. */
void ckpt_actor_ended(actor *a);
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

#endif
