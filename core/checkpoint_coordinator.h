/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint coordinator of a local job or of a cluster worker
 * (private to core/): checkpoint_coordinator.c.  Main thread (the one
 * that called runtime_run) only.
 */
#ifndef WEIR_CHECKPOINT_COORDINATOR_H
#define WEIR_CHECKPOINT_COORDINATOR_H

#include <stdbool.h>

#include "runtime.h"

/* Set up the store (restore), before the reactors start.  0 (also
 * without a store), 1 when it restored a finished run (nothing to run),
 * or -errno with the reason in rt->error. */
int ckpt_start(struct runtime *rt);
/* While the reactors run: trigger, complete, time out, answer savepoint
 * requests.  Returns ms until it wants to run again. */
int ckpt_coordinate(struct runtime *rt);
/* After the reactors stopped: the final checkpoint (if the job ended),
 * commits, close. */
void ckpt_finish(struct runtime *rt, bool job_ended);

#endif
