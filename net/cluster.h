/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cluster execution: the coordinator (coordinator.c), which accepts workers
 * and clients, deploys jobs over the workers' cores, drives checkpoints and
 * restarts a job from its newest checkpoint when a worker dies; and the
 * worker (worker.c), which runs its part of each deployed job (run_cluster
 * in core.h) with the data plane carrying the edges that cross workers.
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

#include "core.h"

typedef struct coord_opts {
	const char *listen;          /* "IP:PORT" */
	const uint8_t *key;          /* shared secret (may be empty) */
	size_t keylen;
	int heartbeat_timeout_ms;    /* a worker silent this long is dead */
	/* state/: merge the workers' manifest parts and write dir/name */
	int (*manifest_write)(const char *dir, const char *name,
			      const char *const *parts, int nparts, char *err,
			      size_t errlen);
} coord_opts;

/* Serve until SIGINT/SIGTERM (runtime_cancel_all's flag is not used: the
 * caller's signal handler calls cluster_stop()).  0 or -errno. */
int coordinator_main(const coord_opts *o);
/* Signal-safe: make coordinator_main / worker_main return. */
void cluster_stop(void);

typedef struct worker_opts {
	const char *coordinator;     /* "HOST:PORT" */
	int cores;
	const char *transport;       /* "tcp" or "dpdk" */
	const char *data_addr;       /* IP for the data plane (NULL: the
				      * control connection's local address) */
	const char *device;          /* dpdk: EAL device */
	bool no_zerocopy;            /* tcp: plain sends (SEND_ZC is slower on veth) */
	const uint8_t *key;
	size_t keylen;
	/*
	 * apps/: load the job shared object at so_path and build it with the
	 * `weir run` arguments argv (JOB.so's place holds so_path), planned
	 * over ncores cores; *plan gets the plan's description.  0 or an
	 * error with a message in err.
	 */
	int (*job_load)(const char *so_path, int argc, char **argv, int ncores,
			void **job, char *plan, size_t planlen, char *err, size_t errlen);
	/* apps/: run it (on the job thread) as this worker's part. */
	int (*job_run)(void *job, const run_cluster *cl, char *err, size_t errlen);
	void (*job_free)(void *job);
} worker_opts;

/* Register with the coordinator and serve jobs until cluster_stop() or
 * the coordinator goes away.  0 or -errno (message printed). */
int worker_main(const worker_opts *o);

/* ---- clients (`weir run|list|cancel|savepoint|stop --cluster`) ---------- */

/* Connect and authenticate as a client: fd or -errno with err. */
int cluster_client_connect(const char *addr, const uint8_t *key, size_t keylen,
			   char *err, size_t errlen);

#endif
