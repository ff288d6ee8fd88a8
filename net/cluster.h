/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cluster execution (cluster.c): the coordinator, which accepts workers and
 * clients, deploys jobs over the workers' cores, drives checkpoints and
 * restarts a job from its newest checkpoint when a worker dies; and the
 * worker, which runs its part of each deployed job (run_cluster in core.h)
 * with the data plane carrying the edges that cross workers.
 *
 * What a job is -- a shared object whose entry point builds a dataflow from
 * arguments -- is the `weir` command's business (apps/), reached through
 * the callbacks below, so net/ depends on core/ only.
 */
#ifndef WEIR_NET_CLUSTER_H
#define WEIR_NET_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <weir/admin.h>

#include "core.h"

/* The coordinator and the worker: weir_coordinator_main, weir_worker_main
 * and weir_cluster_stop, with their options, are declared in
 * weir/admin.h.  A worker hands a job's part (weir_cluster_part) to the
 * job_run callback as the run_cluster of core.h. */

/* ---- clients (`weir run|list|cancel|savepoint|stop --cluster`) ---------- */

/* Connect and authenticate as a client: fd or -errno with err. */
int cluster_client_connect(const char *addr, const uint8_t *key, size_t keylen,
			   char *err, size_t errlen);

#endif
