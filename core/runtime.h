/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The runtime object (private to core/): one running (or planned) job.
 * runtime.c creates and frees it; plan.c fills in the execution graph
 * (reactors, actors, tasks, channels); job_status.c keeps whether the job
 * goes on; the checkpoint fields belong to barrier.c (reactor threads) and
 * checkpoint_coordinator.c (the job thread).  A field written while the
 * reactors run says by whom; the rest is read-only by then.
 */
#ifndef WEIR_RUNTIME_H
#define WEIR_RUNTIME_H

#include <stdatomic.h>

#include "core.h"

struct reactor;
struct actor;
struct ckpt_coord;

struct runtime
{
	const weir_config *cfg;
	graph *g;
	pool_set *pools;
	int nreactors;
	struct reactor *reactors;
	struct actor **actors;
	int nactors, cap_actors;
	task **tasks;
	int ntasks, cap_tasks;
	channel **channels;
	int nchannels, cap_channels;
	int *node_par;
	_Atomic int failed;         /* job_status.c: 2 while the message is
				     * written, then 1 (release) */
	char error[512];
	/* checkpointing (barrier.c on the reactors, checkpoint_coordinator.c
	 * on the job thread) */
	const ckpt_store_ops *sops;
	ckpt_store *store;          /* NULL: no checkpoints or savepoints */
	_Atomic int64_t ck_trigger; /* main (release) -> reactors (acquire):
				     * the barrier sources inject next */
	_Atomic int64_t ck_completed; /* main (release) -> reactors: commit */
	_Atomic int64_t ck_stop_id;   /* sources stop after injecting this */
	_Atomic int64_t ck_unaligned; /* = ck_trigger when that checkpoint is
				       * unaligned, else 0 (ordered by the
				       * trigger's release) */
	_Atomic int stop_now;       /* main: the job stopped (savepoint) */
	_Atomic int reactors_idle;  /* reactors with every actor finished */
	_Atomic int reactors_exited;
	/* Cluster: this process runs reactors [lo, hi); the other reactors
	 * are placeholders for other workers' cores (no thread).
	 * reactors[nreactors] is the data plane's stand-in (cluster only). */
	int lo, hi;
	const run_cluster *cl;
	_Atomic int reactors_quiet; /* local reactors with every actor finished */
	struct ckpt_coord *coord;   /* main thread only */
	weir_checkpoint_stats *stats; /* main thread only; may be NULL */
	const char *job;
};

#endif
