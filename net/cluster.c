/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The parts of cluster.h that belong to neither side: the request to stop
 * (weir_cluster_stop, set from a signal handler, read by the coordinator's and
 * the worker's loops through cluster_stopping in cluster_internal.h), and
 * a client's authenticated connection to the coordinator (`weir
 * run|list|cancel|savepoint|stop --cluster`).  The coordinator is in
 * coordinator.c, the worker in worker.c.
 */
#include <signal.h>
#include <unistd.h>

#include "cluster.h"
#include "cluster_internal.h"
#include "control.h"

static volatile sig_atomic_t stop_flag;

void weir_cluster_stop(void)
{
	stop_flag = 1;
}

bool cluster_stopping(void)
{
	return stop_flag != 0;
}

int cluster_client_connect(const char *addr, const uint8_t *key, size_t keylen,
			   char *err, size_t errlen)
{
	uint32_t id;
	int fd = ctl_dial(addr, 10000, err, errlen);
	if (fd < 0)
		return fd;
	int rc = ctl_client_auth(fd, key, keylen, CTL_ROLE_CLIENT, &id, err, errlen);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}
