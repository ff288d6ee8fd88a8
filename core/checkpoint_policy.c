/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint schedule both coordinators follow (checkpoint_policy.h
 * says the rule).  Pure functions of the policy, the schedule and the
 * clock, so that the local and the cluster coordinator cannot drift apart
 * and a unit test can drive the schedule with made-up times.
 */
#include "checkpoint_policy.h"

void ckpt_policy_init(ckpt_policy *p, int64_t interval_ms, int64_t min_pause_ms,
		      int64_t timeout_ms, int retained, uint64_t unit)
{
	p->interval = interval_ms > 0 ? (uint64_t)interval_ms * unit : 0;
	p->min_pause = min_pause_ms > 0 ? (uint64_t)min_pause_ms * unit : 0;
	p->timeout = (uint64_t)(timeout_ms > 0 ? timeout_ms : CKPT_DEFAULT_TIMEOUT_MS) * unit;
	p->max_concurrent = 1;
	p->retained = retained > 0 ? retained : CKPT_DEFAULT_RETAINED;
}

void ckpt_policy_from_config(ckpt_policy *p, const weir_config *cfg, uint64_t unit)
{
	bool dir = cfg->checkpoint_dir && cfg->checkpoint_dir[0];
	ckpt_policy_init(p, dir ? cfg->checkpoint_interval_ms : 0, cfg->checkpoint_min_pause_ms,
			 cfg->checkpoint_timeout_ms, cfg->checkpoints_retained, unit);
}

void ckpt_schedule_start(ckpt_schedule *s, uint64_t now)
{
	*s = (ckpt_schedule){ .last_trigger = now, .last_end = now };
}

uint64_t ckpt_schedule_due_in(const ckpt_policy *p, const ckpt_schedule *s, uint64_t now)
{
	if (!p->interval || !ckpt_schedule_may_trigger(p, s))
		return UINT64_MAX;
	uint64_t due = s->last_trigger + p->interval;
	if (s->last_end + p->min_pause > due)
		due = s->last_end + p->min_pause;
	return now >= due ? 0 : due - now;
}

bool ckpt_schedule_may_trigger(const ckpt_policy *p, const ckpt_schedule *s)
{
	return (s->inflight ? 1 : 0) < p->max_concurrent;
}

bool ckpt_schedule_expired(const ckpt_policy *p, const ckpt_schedule *s, uint64_t now)
{
	return s->inflight && now - s->started > p->timeout;
}

void ckpt_schedule_triggered(ckpt_schedule *s, uint64_t now)
{
	s->inflight = true;
	s->started = s->last_trigger = now;
}

void ckpt_schedule_ended(ckpt_schedule *s, uint64_t now)
{
	s->inflight = false;
	s->last_end = now;
}
