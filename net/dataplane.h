/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The data plane of a cluster worker (dataplane.c): one thread carrying
 * the channels that cross workers over a transport.
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
 * Connect x to every peer (addrs[i]: worker i's address; on the data
 * plane's own thread, which the transport requires) and carry rt's
 * crossing channels over it:
 * worker_of_core[c] is the worker that runs global core c, self is ours.
 * Takes over x (dataplane_stop closes it).  0 or -errno with err.
 */
int dataplane_start(runtime *rt, const xport_ops *ops, xport *x, int self,
		    const int *worker_of_core, int npeers, const char *const *addrs,
		    dataplane **out, char *err, size_t errlen);
/* The local reactors exited: with flush, deliver what they sent and say
 * goodbye to the peers; without, tear down.  Non-zero once done. */
int dataplane_done(dataplane *dp, bool flush);
/* Join the thread (it closed the transport), free; figures into st (may
 * be NULL).  After dataplane_done() returned non-zero: until then the
 * thread uses the runtime. */
void dataplane_stop(dataplane *dp, dataplane_stats *st);

#endif
