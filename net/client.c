/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The cluster's clients (weir/admin.h): submit a job to a coordinator and
 * follow it to its end, or ask the coordinator to list, cancel or
 * savepoint a job.  Each is one authenticated control connection
 * (control.h): one request, then REPLY messages -- progress lines (rc 1)
 * and one final answer (rc 0 done, < 0 error) -- handed to the caller's
 * reply function.  What to print and how to exit is the caller's (the
 * `weir` command's) business.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>
#include <weir/admin.h>

#include "cluster.h"
#include "control.h"

/* Messages name addresses; one cut short is still a useful message. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

/*
 * Read REPLY messages on fd until the final one: 0 (success) or 1
 * (error answer), or -errno when the connection failed.  With
 * `interrupted`, a cancel of `job` is sent once the flag is set.
 */
static int await_reply(int fd, volatile sig_atomic_t *interrupted, uint32_t job,
		       weir_reply_fn fn, void *arg, char *err, size_t errlen)
{
	ctl_conn c = { .fd = fd };
	ctl_msg m;
	bool cancelled = false;
	for (;;) {
		if (interrupted && *interrupted && !cancelled) {
			ctl_msg cm = { .type = CTL_CANCEL_JOB, .job = job };
			ctl_send(fd, &cm);
			cancelled = true;
			static const char note[] = "cancelling the job";
			fn(arg, false, true, note, sizeof(note) - 1);
		}
		char why[512] = "";
		int rc = ctl_recv(&c, &m, why, sizeof(why));
		if (rc == 0 || rc == -EINTR)
			continue;
		if (rc < 0) {
			snprintf(err, errlen, "the coordinator%s%s", rc == -ECONNRESET ? " " : ": ",
				 rc == -ECONNRESET ? "closed the connection"
				 : why[0] ? why : strerror(-rc));
			ctl_conn_reset(&c);
			return rc;
		}
		if (m.type != CTL_REPLY)
			continue;
		bool final = m.rc != 1;
		fn(arg, final, m.rc == 0, (const char *)m.blob, m.blob_len);
		if (final) {
			int st = m.rc == 0 ? 0 : 1;
			ctl_conn_reset(&c);
			return st;
		}
	}
}

/* Connect, authenticate, send m and follow the replies. */
static int request(const char *addr, const uint8_t *key, size_t keylen, const ctl_msg *m,
		   volatile sig_atomic_t *interrupted, weir_reply_fn fn, void *arg, char *err,
		   size_t errlen)
{
	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium did not initialize");
		return -EIO;
	}
	int fd = cluster_client_connect(addr, key, keylen, err, errlen);
	if (fd < 0)
		return fd;
	int rc = ctl_send(fd, m);
	if (rc < 0)
		snprintf(err, errlen, "sending to the coordinator: %s", strerror(-rc));
	else
		rc = await_reply(fd, interrupted, m->job, fn, arg, err, errlen);
	close(fd);
	return rc;
}

int weir_cluster_submit(const char *addr, const uint8_t *key, size_t keylen,
			const weir_cluster_job *job, volatile sig_atomic_t *interrupted,
			weir_reply_fn fn, void *arg, char *err, size_t errlen)
{
	const weir_config *cfg = job->cfg;
	if (job->so_len > CTL_MAX_LARGE - 65536) {
		snprintf(err, errlen, "the job's shared object is too large to ship "
			 "(%zu bytes)", job->so_len);
		return -EFBIG;
	}
	if (job->nargs < 0 || job->nargs > CTL_MAX_ARGS) {
		snprintf(err, errlen, "%d job arguments (at most %d)", job->nargs,
			 CTL_MAX_ARGS);
		return -E2BIG;
	}
	/* The arguments as the protocol's list: NUL-terminated, back to back. */
	size_t len = 0;
	for (int i = 0; i < job->nargs; i++)
		len += strlen(job->args[i]) + 1;
	char *list = malloc(len + 1);
	if (!list) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	size_t at = 0;
	for (int i = 0; i < job->nargs; i++) {
		size_t n = strlen(job->args[i]) + 1;
		memcpy(list + at, job->args[i], n);
		at += n;
	}
	ctl_msg m = { .type = CTL_SUBMIT, .blob = job->so, .blob_len = job->so_len,
		      .nlist = job->nargs, .list = list, .list_len = len,
		      .interval_ms = (uint64_t)cfg->checkpoint_interval_ms,
		      .timeout_ms = (uint64_t)cfg->checkpoint_timeout_ms,
		      .min_pause_ms = (uint64_t)(cfg->checkpoint_min_pause_ms > 0
						 ? cfg->checkpoint_min_pause_ms : 0),
		      .retained = (uint32_t)cfg->checkpoints_retained };
	snprintf(m.name, sizeof(m.name), "%s", job->name);
	snprintf(m.dir, sizeof(m.dir), "%s", cfg->checkpoint_dir ? cfg->checkpoint_dir : "");
	int rc = -EIO;
	if (sodium_init() >= 0) {
		crypto_hash_sha256(m.digest, job->so, job->so_len);
		rc = request(addr, key, keylen, &m, interrupted, fn, arg, err, errlen);
	} else {
		snprintf(err, errlen, "libsodium did not initialize");
	}
	free(list);
	return rc;
}

int weir_cluster_request(const char *addr, const uint8_t *key, size_t keylen,
			 weir_cluster_action action, uint32_t job, const char *dir,
			 weir_reply_fn fn, void *arg, char *err, size_t errlen)
{
	ctl_msg m = { .job = job };
	switch (action) {
	case WEIR_CLUSTER_LIST:
		m.type = CTL_LIST;
		break;
	case WEIR_CLUSTER_CANCEL:
		m.type = CTL_CANCEL_JOB;
		break;
	case WEIR_CLUSTER_SAVEPOINT:
	case WEIR_CLUSTER_STOP:
		m.type = CTL_SAVEPOINT;
		m.stop = action == WEIR_CLUSTER_STOP;
		if (dir && dir[0] != '/') {
			snprintf(err, errlen, "the savepoint directory must be an absolute "
				 "path every worker reaches");
			return -EINVAL;
		}
		snprintf(m.dir, sizeof(m.dir), "%s", dir ? dir : "");
		break;
	default:
		snprintf(err, errlen, "unknown cluster action %d", (int)action);
		return -EINVAL;
	}
	return request(addr, key, keylen, &m, NULL, fn, arg, err, errlen);
}
