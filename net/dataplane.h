/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The data plane of a cluster worker (dataplane.c): carries the channels
 * that cross workers over a transport, polled by the worker's first
 * reactor.
 */
#ifndef WEIR_NET_DATAPLANE_H
#define WEIR_NET_DATAPLANE_H

#include "core.h"
#include "xport.h"

typedef struct dataplane dataplane;

typedef struct dataplane_stats {
	uint64_t frames_out, frames_in, bytes_out, bytes_in;
} dataplane_stats;

/*
 * Prepare to carry rt's crossing channels over x: worker_of_core[c] is the
 * worker that runs global core c, self is ours, addrs[i] worker i's data
 * address (copied).  Takes over x.  No thread: a reactor of rt polls the
 * data plane (the runtime's run_cluster net_* hooks): attach, then step
 * each turn, then detach.  0 or -errno with err.
 */
int dataplane_start(runtime *rt, const xport_ops *ops, xport *x, int self,
		    const int *worker_of_core, int npeers, const char *const *addrs,
		    dataplane **out, char *err, size_t errlen);
/* On the polling reactor's thread, before its first step: connect to every
 * peer (the transport's ring is that thread's).  0 or -errno with err. */
int dataplane_attach(dataplane *dp, char *err, size_t errlen);
/* One turn: move what the crossing rings hold onto the wire, return
 * credits, deliver what arrived; with flush (every local actor finished),
 * once the rings are empty, finish.  1 did work, 0 nothing to do, -1 done
 * (finished, or failed: the job was failed with the reason). */
int dataplane_step(dataplane *dp, bool flush);
/* Anything to do right now (the reactor's last check before it parks)? */
bool dataplane_has_work(dataplane *dp);
/* Park until transport activity, fd (the reactor's eventfd) readable, or
 * timeout_ns. */
void dataplane_wait(dataplane *dp, int fd, uint64_t timeout_ns);
/* On the polling reactor's thread as it stops: close the transport,
 * release what it held; dataplane_done() says so afterwards. */
void dataplane_detach(dataplane *dp);
/* Any thread: has the polling reactor detached? */
int dataplane_done(const dataplane *dp);
/* After dataplane_done() (or if never attached): free; figures into st
 * (may be NULL). */
void dataplane_stop(dataplane *dp, dataplane_stats *st);

#endif
