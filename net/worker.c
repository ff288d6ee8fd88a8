/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A cluster worker (weir_worker_main in cluster.h; the coordinator's side in
 * coordinator.c, messages in control.h).  It registers its cores with the
 * coordinator and then serves one attempt of one job at a time:
 *
 *   DEPLOY   check the .so's sha256, write it to /tmp, load and plan the
 *            job over the whole cluster (apps' job_load), open the data
 *            endpoint of the chosen transport; answer DEPLOYED
 *   START    learn every worker's cores and data address; run this
 *            worker's part on a job thread (apps' job_run with the
 *            run_cluster callbacks below: the data plane, dataplane.c,
 *            polled by the first local reactor; checkpoint triggers,
 *            acknowledgements and commits relayed to and from the
 *            coordinator)
 *   TRIGGER, COMMIT, JOB_OVER, CANCEL   handed to the job thread
 *   FINISHED when the job thread ends
 *
 * Threads: the control thread (weir_worker_main) reads the coordinator's
 * messages and owns the attempt; the job thread runs it; a heartbeat
 * thread sends HEARTBEAT every 200 ms so that a slow deploy does not look
 * like a dead worker.  wk.mu guards what the job thread and the control
 * thread share, wk.send_mu the connection's sends.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "cluster.h"
#include "cluster_internal.h"
#include "control.h"
#include "dataplane.h"
#include "xport.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

typedef struct wk {
	const weir_worker_opts *o;
	int fd;
	pthread_mutex_t send_mu;     /* the control connection's sends */
	pthread_mutex_t mu;          /* what follows */
	uint32_t job, attempt;
	int index, nworkers, first, ncores;
	uint64_t run;
	void *handle;                /* apps' loaded job */
	char *args;                  /* its arguments (the job keeps pointers
				      * into them: they live as long as it) */
	char so_path[512];
	xport *x;
	const xport_ops *xops;
	int *worker_of_core;
	char **peers;
	dataplane *dp;
	run_cluster cl;
	pthread_t thread;
	bool running;                /* job thread started, not joined */
	bool thread_done;
	int64_t trig_id, trig_taken, committed;
	char trig_dir[4096];
	bool trig_stop;
	bool over, cancelled, local_done_sent;
	/* Heartbeats come from their own thread: deploying (loading a job,
	 * starting DPDK) may keep the control thread busy for seconds. */
	pthread_t hb_thread;
	_Atomic int hb_stop;
} wk;

/* Send m as is (any thread). */
static void wk_send_raw(wk *k, const ctl_msg *m)
{
	pthread_mutex_lock(&k->send_mu);
	int rc = ctl_send(k->fd, m);
	pthread_mutex_unlock(&k->send_mu);
	if (rc < 0)
		wlog(LOG_WARN, "worker: sending %s: %s", ctl_type_name(m->type), strerror(-rc));
}

/* Send m about the current attempt: the control thread, or the job thread
 * (which the control thread joins before it changes the attempt). */
static void wk_send(wk *k, ctl_msg *m)
{
	m->job = k->job;
	m->attempt = k->attempt;
	pthread_mutex_lock(&k->send_mu);
	int rc = ctl_send(k->fd, m);
	pthread_mutex_unlock(&k->send_mu);
	if (rc < 0)
		wlog(LOG_WARN, "worker: sending %s: %s", ctl_type_name(m->type), strerror(-rc));
}

/* ---- run_cluster callbacks (job thread) ---------------------------------- */

static int cb_net_start(void *ctx, runtime *rt, char *err, size_t errlen)
{
	wk *k = ctx;
	const char *addrs[CLUSTER_MAX_WORKERS];
	for (int i = 0; i < k->nworkers; i++)
		addrs[i] = k->peers[i];
	xport *x = k->x;
	k->x = NULL; /* the data plane owns it now */
	return dataplane_start(rt, k->xops, x, k->index, k->worker_of_core, k->nworkers,
			       addrs, &k->dp, err, errlen);
}

static int cb_net_attach(void *ctx, char *err, size_t errlen)
{
	wk *k = ctx;
	return dataplane_attach(k->dp, err, errlen);
}

static int cb_net_step(void *ctx, bool flush)
{
	wk *k = ctx;
	return dataplane_step(k->dp, flush);
}

static bool cb_net_has_work(void *ctx)
{
	wk *k = ctx;
	return dataplane_has_work(k->dp);
}

static void cb_net_wait(void *ctx, int fd, uint64_t timeout_ns)
{
	wk *k = ctx;
	dataplane_wait(k->dp, fd, timeout_ns);
}

static void cb_net_detach(void *ctx)
{
	wk *k = ctx;
	dataplane_detach(k->dp);
}

static int64_t cb_ck_trigger(void *ctx, char *dir, size_t len, bool *stop)
{
	wk *k = ctx;
	int64_t id = 0;
	pthread_mutex_lock(&k->mu);
	if (k->trig_id > k->trig_taken) {
		id = k->trig_taken = k->trig_id;
		snprintf(dir, len, "%s", k->trig_dir);
		*stop = k->trig_stop;
	}
	pthread_mutex_unlock(&k->mu);
	return id;
}

static void cb_ck_ack(void *ctx, int64_t id, int rc, const char *text)
{
	wk *k = ctx;
	ctl_msg m = { .type = CTL_ACK, .id = (uint64_t)id, .rc = rc,
		      .blob = (const uint8_t *)text, .blob_len = text ? strlen(text) : 0 };
	wk_send(k, &m);
}

static int64_t cb_ck_committed(void *ctx)
{
	wk *k = ctx;
	pthread_mutex_lock(&k->mu);
	int64_t c = k->committed;
	pthread_mutex_unlock(&k->mu);
	return c;
}

static bool cb_job_over(void *ctx, bool local_done)
{
	wk *k = ctx;
	bool send = false, over;
	pthread_mutex_lock(&k->mu);
	if (local_done && !k->local_done_sent)
		send = k->local_done_sent = true;
	over = k->over || k->cancelled;
	pthread_mutex_unlock(&k->mu);
	if (send) {
		ctl_msg m = { .type = CTL_LOCAL_DONE };
		wk_send(k, &m);
	}
	return over;
}

static void *job_thread(void *arg)
{
	wk *k = arg;
	char err[1024] = "";
	int rc = k->o->job_run(k->handle, &k->cl, err, sizeof(err));
	dataplane_stats st = { 0 };
	if (k->dp) {
		dataplane_stop(k->dp, &st);
		k->dp = NULL;
	}
	fprintf(stderr, "worker: job %u attempt %u %s%s%s (frames out %llu in %llu, "
		"%.1f MB out %.1f MB in)\n", k->job, k->attempt, rc == 0 ? "done" : "failed",
		err[0] ? ": " : "", err, (unsigned long long)st.frames_out,
		(unsigned long long)st.frames_in, st.bytes_out / 1e6, st.bytes_in / 1e6);
	ctl_msg m = { .type = CTL_FINISHED, .rc = rc < 0 ? rc : rc ? -EIO : 0,
		      .blob = (const uint8_t *)err, .blob_len = strlen(err) };
	wk_send(k, &m);
	pthread_mutex_lock(&k->mu);
	k->thread_done = true;
	pthread_mutex_unlock(&k->mu);
	return NULL;
}

/* Tear down the current attempt (cancelling it if it runs). */
static void wk_reset(wk *k)
{
	if (k->running) {
		pthread_mutex_lock(&k->mu);
		k->cancelled = true;
		pthread_mutex_unlock(&k->mu);
		weir_cancel_all();
		pthread_join(k->thread, NULL);
		k->running = false;
	}
	if (k->x) {
		k->xops->close(k->x);
		k->x = NULL;
	}
	if (k->handle) {
		k->o->job_free(k->handle);
		k->handle = NULL;
	}
	if (k->so_path[0]) {
		unlink(k->so_path);
		k->so_path[0] = 0;
	}
	free(k->args);
	k->args = NULL;
	for (int i = 0; k->peers && i < k->nworkers; i++)
		free(k->peers[i]);
	free(k->peers);
	k->peers = NULL;
	free(k->worker_of_core);
	k->worker_of_core = NULL;
	k->trig_id = k->trig_taken = k->committed = 0;
	k->over = k->cancelled = k->local_done_sent = k->thread_done = false;
}

static const xport_ops *transport_ops(const char *name)
{
	if (!strcmp(name, "tcp"))
		return &xport_tcp_ops;
#ifdef WEIR_HAVE_DPDK
	if (!strcmp(name, "dpdk"))
		return &xport_dpdk_ops;
#endif
	return NULL;
}

static void wk_deploy(wk *k, const ctl_msg *m, const char *local_ip)
{
	char err[1024] = "", plan[8192] = "", addr[128] = "";
	uint8_t sha[32];
	int rc;

	wk_reset(k);
	k->job = m->job;
	k->attempt = m->attempt;
	k->index = (int)m->index;
	k->nworkers = (int)m->nworkers;
	k->first = (int)m->first;
	k->ncores = (int)m->ncores;
	k->run = m->run;
	crypto_hash_sha256(sha, m->blob, m->blob_len);
	if (sodium_memcmp(sha, m->digest, 32) != 0) {
		snprintf(err, sizeof(err), "the job's shared object arrived damaged (sha256 "
			 "mismatch)");
		rc = -EBADMSG;
		goto out;
	}
	if (k->nworkers > CLUSTER_MAX_WORKERS) {
		snprintf(err, sizeof(err), "%d workers: a worker takes part in jobs of at "
			 "most %d", k->nworkers, CLUSTER_MAX_WORKERS);
		rc = -EINVAL;
		goto out;
	}
	if (k->first + k->o->cores > k->ncores || k->index >= k->nworkers) {
		snprintf(err, sizeof(err), "inconsistent placement");
		rc = -EINVAL;
		goto out;
	}
	snprintf(k->so_path, sizeof(k->so_path), "/tmp/weir-worker-%d-job%u-%u.so",
		 (int)getpid(), k->job, k->attempt);
	int fd = open(k->so_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0700);
	if (fd < 0 || write(fd, m->blob, m->blob_len) != (ssize_t)m->blob_len) {
		rc = -errno;
		snprintf(err, sizeof(err), "%s: %s", k->so_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	close(fd);
	/* The run arguments: JOB.so's place (the first non-option word the
	 * client left for us, marked "@JOB") gets our copy. */
	char **argv = calloc((size_t)m->nlist + 2, sizeof(char *));
	if (!argv) {
		rc = -ENOMEM;
		goto out;
	}
	/* The message's payload is gone at the next message: copy. */
	free(k->args);
	k->args = malloc(m->list_len + 1);
	if (!k->args) {
		free(argv);
		rc = -ENOMEM;
		goto out;
	}
	memcpy(k->args, m->list, m->list_len);
	const char *s = k->args;
	argv[0] = (char *)"run";
	for (int i = 0; i < m->nlist; i++) {
		argv[i + 1] = strcmp(s, "@JOB") ? (char *)s : k->so_path;
		s += strlen(s) + 1;
	}
	rc = k->o->job_load(k->so_path, m->nlist + 1, argv, k->ncores, &k->handle, plan,
			    sizeof(plan), err, sizeof(err));
	free(argv);
	if (rc < 0)
		goto out;
	k->xops = transport_ops(k->o->transport);
	if (!k->xops) {
		snprintf(err, sizeof(err), "transport '%s' is not built in", k->o->transport);
		rc = -ENOTSUP;
		goto out;
	}
	char bind[160];
	snprintf(bind, sizeof(bind), "%s:0", k->o->data_addr ? k->o->data_addr : local_ip);
	xport_conf xc = { .bind = k->o->data_addr ? k->o->data_addr : local_ip,
			  .device = k->o->device, .core = -1, .zerocopy = !k->o->no_zerocopy,
			  .self = k->index, .attempt = k->attempt };
	if (!strcmp(k->o->transport, "tcp"))
		xc.bind = bind;
	rc = k->xops->open(&xc, &k->x, addr, sizeof(addr), err, sizeof(err));
out:;
	ctl_msg r = { .type = CTL_DEPLOYED, .rc = rc < 0 ? rc : 0 };
	snprintf(r.addr, sizeof(r.addr), "%s", addr);
	const char *text = rc < 0 ? err : plan;
	r.blob = (const uint8_t *)text;
	r.blob_len = strlen(text);
	wk_send(k, &r);
	if (rc < 0)
		wlog(LOG_ERROR, "worker: cannot deploy job %u: %s", m->job, err);
}

static void wk_start(wk *k, const ctl_msg *m)
{
	if (!k->handle || !k->x || m->nlist != k->nworkers || k->running)
		return;
	k->peers = calloc((size_t)k->nworkers, sizeof(char *));
	k->worker_of_core = calloc((size_t)k->ncores + 1, sizeof(int));
	if (!k->peers || !k->worker_of_core)
		return;
	/* Each entry: "FIRST NCORES ADDR" of worker i. */
	const char *s = m->list;
	for (int i = 0; i < m->nlist; i++) {
		int first, n, off = 0;
		if (sscanf(s, "%d %d %n", &first, &n, &off) != 2 || !off || first < 0 ||
		    n < 1 || first + n > k->ncores) {
			wlog(LOG_ERROR, "worker: bad START entry '%s'", s);
			return;
		}
		for (int c = first; c < first + n; c++)
			k->worker_of_core[c] = i;
		k->peers[i] = strdup(s + off);
		if (!k->peers[i])
			return;
		s += strlen(s) + 1;
	}
	k->cl = (run_cluster){ .ncores = k->ncores, .first = k->first, .nlocal = k->o->cores,
			       .run = k->run, .ctx = k, .net_start = cb_net_start,
			       .net_attach = cb_net_attach, .net_step = cb_net_step,
			       .net_has_work = cb_net_has_work, .net_wait = cb_net_wait,
			       .net_detach = cb_net_detach, .ck_trigger = cb_ck_trigger,
			       .ck_ack = cb_ck_ack, .ck_committed = cb_ck_committed,
			       .job_over = cb_job_over };
	if (pthread_create(&k->thread, NULL, job_thread, k) == 0)
		k->running = true;
}

static void *heartbeat_main(void *arg)
{
	wk *k = arg;
	while (!atomic_load(&k->hb_stop) && !cluster_stopping()) {
		ctl_msg hb = { .type = CTL_HEARTBEAT };
		wk_send_raw(k, &hb);
		usleep(200 * 1000);
	}
	return NULL;
}

int weir_worker_main(const weir_worker_opts *o)
{
	wk *k = calloc(1, sizeof(*k));
	char err[1024] = "", local_ip[64] = "127.0.0.1";
	uint32_t id;
	int rc;

	if (!k || sodium_init() < 0) {
		free(k);
		return -ENOMEM;
	}
	k->o = o;
	pthread_mutex_init(&k->mu, NULL);
	pthread_mutex_init(&k->send_mu, NULL);
	k->fd = ctl_dial(o->coordinator, 10000, err, sizeof(err));
	if (k->fd < 0) {
		fprintf(stderr, "weir worker: %s\n", err);
		rc = k->fd;
		goto out;
	}
	if ((rc = ctl_client_auth(k->fd, o->key, o->keylen, CTL_ROLE_WORKER, &id, err,
				  sizeof(err))) < 0) {
		fprintf(stderr, "weir worker: %s\n", err);
		goto out;
	}
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	if (getsockname(k->fd, (struct sockaddr *)&sa, &sl) == 0)
		inet_ntop(AF_INET, &sa.sin_addr, local_ip, sizeof(local_ip));
	ctl_msg reg = { .type = CTL_REGISTER, .cores = (uint32_t)o->cores };
	gethostname(reg.host, sizeof(reg.host) - 1);
	snprintf(reg.transport, sizeof(reg.transport), "%s", o->transport);
	wk_send(k, &reg);
	fprintf(stderr, "worker: registered with %s: %d core(s), transport %s, data "
		"address %s\n", o->coordinator, o->cores, o->transport,
		o->data_addr ? o->data_addr : local_ip);
	ctl_conn c = { .fd = k->fd };
	snprintf(c.peer, sizeof(c.peer), "%s", o->coordinator);
	bool hb = pthread_create(&k->hb_thread, NULL, heartbeat_main, k) == 0;
	rc = 0;
	while (!cluster_stopping()) {
		struct pollfd pfd = { .fd = k->fd, .events = POLLIN };
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		ctl_msg m;
		int r = ctl_recv(&c, &m, err, sizeof(err));
		if (r == 0)
			continue;
		if (r < 0) {
			fprintf(stderr, "weir worker: the coordinator %s: %s\n",
				r == -ECONNRESET ? "went away" : "connection failed",
				r == -ECONNRESET ? "connection closed" : err[0] ? err : strerror(-r));
			rc = r == -ECONNRESET ? 0 : r;
			break;
		}
		if (m.type != CTL_DEPLOY && (m.job != k->job || m.attempt != k->attempt))
			continue; /* an older attempt's */
		switch (m.type) {
		case CTL_DEPLOY:
			wk_deploy(k, &m, local_ip);
			break;
		case CTL_START:
			wk_start(k, &m);
			break;
		case CTL_TRIGGER:
			pthread_mutex_lock(&k->mu);
			if ((int64_t)m.id > k->trig_id) {
				k->trig_id = (int64_t)m.id;
				snprintf(k->trig_dir, sizeof(k->trig_dir), "%s", m.dir);
				k->trig_stop = m.stop;
			}
			pthread_mutex_unlock(&k->mu);
			break;
		case CTL_COMMIT:
			pthread_mutex_lock(&k->mu);
			if ((int64_t)m.id > k->committed)
				k->committed = (int64_t)m.id;
			pthread_mutex_unlock(&k->mu);
			break;
		case CTL_JOB_OVER:
			pthread_mutex_lock(&k->mu);
			k->over = true;
			pthread_mutex_unlock(&k->mu);
			break;
		case CTL_CANCEL:
			pthread_mutex_lock(&k->mu);
			k->cancelled = true;
			pthread_mutex_unlock(&k->mu);
			if (k->running)
				weir_cancel_all();
			else {
				ctl_msg f = { .type = CTL_FINISHED, .rc = -ECANCELED };
				wk_send(k, &f);
			}
			break;
		default:
			fprintf(stderr, "weir worker: unexpected %s from the coordinator\n",
				ctl_type_name(m.type));
		}
		pthread_mutex_lock(&k->mu);
		bool done = k->thread_done;
		pthread_mutex_unlock(&k->mu);
		if (done && k->running) {
			pthread_join(k->thread, NULL);
			k->running = false;
		}
	}
	ctl_conn_reset(&c);
	if (hb) {
		atomic_store(&k->hb_stop, 1);
		pthread_join(k->hb_thread, NULL);
	}
	wk_reset(k);
out:
	if (k->fd >= 0)
		close(k->fd);
	pthread_mutex_destroy(&k->mu);
	pthread_mutex_destroy(&k->send_mu);
	free(k);
	return rc;
}
