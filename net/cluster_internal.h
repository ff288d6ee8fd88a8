/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the coordinator (coordinator.c) and the worker (worker.c) share
 * besides the control protocol (control.h): the request to stop that
 * weir_cluster_stop() makes (both in cluster.c), and the size of a cluster.
 */
#ifndef WEIR_NET_CLUSTER_INTERNAL_H
#define WEIR_NET_CLUSTER_INTERNAL_H

#include <stdbool.h>

/* Workers one coordinator accepts, and so the workers one job spans. */
#define CLUSTER_MAX_WORKERS 64

/* Has weir_cluster_stop() been called?  Any thread; the main loops of
 * weir_coordinator_main and weir_worker_main and the worker's heartbeat thread poll
 * it and return. */
bool cluster_stopping(void);

#endif
