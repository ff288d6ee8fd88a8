/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Whether the job goes on (private to core/): the internal side of
 * job_status.c.  A job stops early when it failed (task_fail and
 * runtime_fail in core.h: the first error wins), when somebody cancelled
 * it (weir_cancel_all: every job of the process, signal-safe), or when
 * a stop-with-savepoint completed (rt->stop_now, set by the checkpoint
 * coordinator).  Every reactor tests all three each turn, so the test is
 * inline here.
 */
#ifndef WEIR_JOB_STATUS_H
#define WEIR_JOB_STATUS_H

#include <stdatomic.h>
#include <stdbool.h>

#include "runtime.h"

/* Set by weir_cancel_all (any thread, signal handlers), cleared by
 * runtime_run as a job starts.  Relaxed: a flag that publishes nothing. */
extern _Atomic int runtime_cancel_requested;

/* Should the job's threads stop (cancelled, failed, or stopped)? */
static inline bool rt_stopping(const struct runtime *rt)
{
	return atomic_load_explicit(&runtime_cancel_requested, memory_order_relaxed) ||
	       atomic_load_explicit(&rt->failed, memory_order_acquire) ||
	       atomic_load_explicit(&rt->stop_now, memory_order_acquire);
}

#endif
