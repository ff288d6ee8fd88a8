/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The job's status: failure and cancellation, the two ways a job ends
 * before its streams do.  Any thread may fail the job (task_fail,
 * runtime_fail): the first message wins and is kept in rt->error; the
 * reactors see rt->failed at their next turn and stop, and runtime_run
 * reports the message.  Cancellation is a process-wide flag that a signal
 * handler may set.  Everything else in core/ reads these (rt_stopping in
 * job_status.h); this file calls nothing of the runtime but the reactors'
 * doorbells.
 */

#include <stdarg.h>
#include <stdio.h>

#include "core.h"
#include "job_status.h"
#include "reactor.h"

_Atomic int runtime_cancel_requested;

void weir_cancel_all(void)
{
	atomic_store_explicit(&runtime_cancel_requested, 1, memory_order_relaxed);
}

static void fail_v(struct runtime *rt, const char *fmt, va_list ap)
{
	int expected = 0;
	if (!atomic_compare_exchange_strong(&rt->failed, &expected, 2))
		return;
	vsnprintf(rt->error, sizeof(rt->error), fmt, ap);
	/* Publish the message before the flag others act on. */
	atomic_store_explicit(&rt->failed, 1, memory_order_release);
}

void runtime_fail(runtime *rt, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fail_v(rt, fmt, ap);
	va_end(ap);
	for (int i = rt->lo; i < rt->hi; i++)
		reactor_wake(&rt->reactors[i]);
}

void task_fail(task *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fail_v(t->rt, fmt, ap);
	va_end(ap);
}
