/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Planning (private to core/): the job graph becomes an execution graph
 * in a struct runtime (plan.c).  Main thread, before the reactors start.
 */
#ifndef WEIR_PLAN_H
#define WEIR_PLAN_H

#include <stdio.h>

#include "runtime.h"

/* Expand, chain and place rt->g under rt->cfg (and rt->cl): reactors,
 * actors, tasks, outlets, channels.  0, -ENOMEM, or -EINVAL with the
 * reason in rt->error.  What was built before a failure is freed by
 * plan_free. */
int plan(struct runtime *rt);
/* Free what plan() built (tasks with their snapshots and keyed state,
 * actors, channels, reactors and their eventfds); not rt itself, nor its
 * pools. */
void plan_free(struct runtime *rt);
/* Describe the plan: chains with their cores, exchanges. */
void print_plan(struct runtime *rt, FILE *f);

#endif
