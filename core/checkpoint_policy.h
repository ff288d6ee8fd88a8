/* SPDX-License-Identifier: Apache-2.0 */
/*
 * When to take a checkpoint: the one schedule that both checkpoint
 * coordinators follow -- the local runtime's (core/checkpoint_coordinator.c, on the
 * job thread) and the cluster coordinator's (net/, on its poll loop) -- so
 * an option means the same thing wherever the job runs.
 *
 * A policy is read from the job's weir_config once; a schedule is the
 * coordinator's own record of what it did.  Periodic checkpoint n+1 is due
 * when both hold:
 *
 *   now >= last_trigger + interval      (the interval is trigger to trigger)
 *   now >= last_end + min_pause         (the pause is end to next trigger)
 *
 * and no checkpoint is in flight (one at a time, as Flink's default
 * maxConcurrentCheckpoints = 1: a second would only queue behind the
 * first's barrier alignment).  A checkpoint in flight longer than the
 * timeout is abandoned; the job goes on.  Savepoints that a person asks
 * for are not scheduled: they are taken as soon as none is in flight.
 *
 * Owner: one coordinator thread per schedule; nothing here is shared.
 * Clock: any monotonic milliseconds or nanoseconds, the same for all
 * calls on one schedule (the policy's fields are in that unit too, set by
 * ckpt_policy_init's `unit` argument).
 */
#ifndef WEIR_CORE_CHECKPOINT_POLICY_H
#define WEIR_CORE_CHECKPOINT_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include <weir/datastream.h>

/* Defaults, applied where weir_config leaves a field at 0. */
#define CKPT_DEFAULT_TIMEOUT_MS 60000
#define CKPT_DEFAULT_RETAINED 2

typedef struct ckpt_policy {
	uint64_t interval;      /* 0: no periodic checkpoints */
	uint64_t min_pause;     /* end of one checkpoint to the next trigger */
	uint64_t timeout;       /* abandon a checkpoint in flight after this */
	int max_concurrent;     /* checkpoints in flight at once (always 1) */
	int retained;           /* complete checkpoints kept */
} ckpt_policy;

typedef struct ckpt_schedule {
	uint64_t last_trigger;  /* when the newest checkpoint was triggered */
	uint64_t last_end;      /* when the newest one completed or failed */
	uint64_t started;       /* when the one in flight was triggered */
	bool inflight;
} ckpt_schedule;

/*
 * Read the policy from the values of weir_config (milliseconds; 0 or
 * negative: the default, or off for the interval).  `unit` is the number
 * of the schedule's clock ticks per millisecond (1 for a millisecond
 * clock, 1000000 for now_ns()).
 */
void ckpt_policy_init(ckpt_policy *p, int64_t interval_ms, int64_t min_pause_ms,
		      int64_t timeout_ms, int retained, uint64_t unit);
/* The same from a job's configuration. */
void ckpt_policy_from_config(ckpt_policy *p, const weir_config *cfg, uint64_t unit);

/* A schedule that starts now: the first periodic checkpoint is due one
 * interval (and one minimum pause) after now. */
void ckpt_schedule_start(ckpt_schedule *s, uint64_t now);

/*
 * How long until a periodic checkpoint is due: 0 when it is due now,
 * UINT64_MAX when none will be (no interval, or one in flight).
 */
uint64_t ckpt_schedule_due_in(const ckpt_policy *p, const ckpt_schedule *s, uint64_t now);

/* May a checkpoint (periodic or a savepoint) be triggered now?  False
 * while max_concurrent are in flight. */
bool ckpt_schedule_may_trigger(const ckpt_policy *p, const ckpt_schedule *s);

/* Has the checkpoint in flight outlived the timeout? */
bool ckpt_schedule_expired(const ckpt_policy *p, const ckpt_schedule *s, uint64_t now);

/* Record a trigger, and the end (completed, failed or abandoned) of the
 * checkpoint in flight; a trigger that failed before any barrier left
 * records both. */
void ckpt_schedule_triggered(ckpt_schedule *s, uint64_t now);
void ckpt_schedule_ended(ckpt_schedule *s, uint64_t now);

#endif
