/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint schedule (core/checkpoint_policy.h) driven with made-up
 * times: the interval counts trigger to trigger, the minimum pause end to
 * next trigger, one checkpoint is in flight at a time, and the defaults
 * apply where the configuration leaves a field at 0.
 */
#include <criterion/criterion.h>

#include "checkpoint_policy.h"

Test(checkpoint_policy, interval_is_trigger_to_trigger)
{
	ckpt_policy p;
	ckpt_schedule s;
	ckpt_policy_init(&p, 100, 0, 0, 0, 1);
	ckpt_schedule_start(&s, 1000);
	cr_assert_eq(ckpt_schedule_due_in(&p, &s, 1000), 100);
	cr_assert_eq(ckpt_schedule_due_in(&p, &s, 1099), 1);
	cr_assert_eq(ckpt_schedule_due_in(&p, &s, 1100), 0);
	ckpt_schedule_triggered(&s, 1100);
	cr_assert_eq(ckpt_schedule_due_in(&p, &s, 1300), UINT64_MAX, "one in flight");
	cr_assert(!ckpt_schedule_may_trigger(&p, &s));
	ckpt_schedule_ended(&s, 1180);
	/* No pause: the next is due an interval after the previous trigger. */
	cr_assert_eq(ckpt_schedule_due_in(&p, &s, 1180), 20);
	/* A checkpoint longer than the interval: the next is due at once. */
	ckpt_schedule_triggered(&s, 1200);
	ckpt_schedule_ended(&s, 1450);
	cr_assert_eq(ckpt_schedule_due_in(&p, &s, 1450), 0);
}

Test(checkpoint_policy, min_pause_counts_from_the_end)
{
	ckpt_policy p;
	ckpt_schedule s;
	ckpt_policy_init(&p, 100, 300, 0, 0, 1);
	ckpt_schedule_start(&s, 0);
	cr_assert_eq(ckpt_schedule_due_in(&p, &s, 0), 300, "the pause holds from the start");
	ckpt_schedule_triggered(&s, 300);
	ckpt_schedule_ended(&s, 350);
	cr_assert_eq(ckpt_schedule_due_in(&p, &s, 400), 250);
	cr_assert_eq(ckpt_schedule_due_in(&p, &s, 650), 0);
}

Test(checkpoint_policy, timeout_and_defaults)
{
	ckpt_policy p;
	ckpt_schedule s;
	ckpt_policy_init(&p, 0, -5, 0, 0, 1000000);
	cr_assert_eq(p.timeout, (uint64_t)CKPT_DEFAULT_TIMEOUT_MS * 1000000);
	cr_assert_eq(p.retained, CKPT_DEFAULT_RETAINED);
	cr_assert_eq(p.min_pause, 0);
	cr_assert_eq(p.max_concurrent, 1);
	ckpt_schedule_start(&s, 0);
	cr_assert_eq(ckpt_schedule_due_in(&p, &s, 1), UINT64_MAX, "no interval: never due");
	ckpt_schedule_triggered(&s, 10);
	cr_assert(!ckpt_schedule_expired(&p, &s, 10 + p.timeout));
	cr_assert(ckpt_schedule_expired(&p, &s, 11 + p.timeout));
	ckpt_schedule_ended(&s, 20 + p.timeout);
	cr_assert(!ckpt_schedule_expired(&p, &s, 30 + p.timeout));
}

Test(checkpoint_policy, no_directory_means_no_periodic_checkpoints)
{
	weir_config cfg = { .checkpoint_interval_ms = 100, .checkpoint_min_pause_ms = 40,
			    .checkpoints_retained = 5 };
	ckpt_policy p;
	ckpt_policy_from_config(&p, &cfg, 1);
	cr_assert_eq(p.interval, 0);
	cfg.checkpoint_dir = "ck";
	ckpt_policy_from_config(&p, &cfg, 1);
	cr_assert_eq(p.interval, 100);
	cr_assert_eq(p.min_pause, 40);
	cr_assert_eq(p.retained, 5);
}
