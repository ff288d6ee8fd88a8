/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The cluster's coordinator (weir_coordinator_main in cluster.h; messages in
 * control.h; the workers' side in worker.c).  It accepts workers and
 * clients on one poll loop, runs one job at a time over the live workers,
 * drives its checkpoints and restarts it when a worker dies.
 *
 * A job's life on the coordinator:
 *
 *   SUBMIT --> DEPLOY to every live worker (the job's .so, its sha256, the
 *   run arguments, the worker's index and cores) --> each worker loads it,
 *   plans it over all the cluster's cores, opens its data endpoint and
 *   answers DEPLOYED (address, plan) --> START (everyone's addresses):
 *   workers connect their data planes and run --> checkpoints: TRIGGER,
 *   each worker's ACK carries its part of the manifest; once all are in,
 *   the coordinator writes the manifest and sends COMMIT --> every worker
 *   says LOCAL_DONE --> a final checkpoint (when checkpointing) --> JOB_OVER
 *   --> FINISHED from each --> the client gets its answer.
 *
 * Checkpoints follow the same schedule as a local run's
 * (core/checkpoint_policy.h: interval, minimum pause, timeout, one in
 * flight, retention), read from SUBMIT; the schedule's clock is ms_now()
 * and it starts at each attempt's START.
 *
 * Placement: worker w runs global cores [first_w, first_w + cores_w), in
 * the order the workers registered; the planner (core/plan.c) deals
 * chains over the global cores round-robin and keeps forward edges on
 * their producer's core, so the placement is the same computation on
 * every worker and on the coordinator's printout.
 *
 * Failover: a worker whose connection drops, or that sends nothing for
 * heartbeat_timeout_ms (it sends HEARTBEAT every 200 ms), is dead.  The
 * coordinator cancels the attempt on the others, waits for them to stop
 * (at most 5 s), and deploys attempt n+1 on the live workers; each
 * restores from the newest complete checkpoint in the shared checkpoint
 * directory, and sinks roll back what that checkpoint did not commit.
 * Without a checkpoint directory the job fails instead.
 *
 * Everything here runs off the data path: blocking sockets, poll(), malloc;
 * one thread (weir_coordinator_main's) owns every structure below.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "checkpoint_policy.h"
#include "cluster.h"
#include "cluster_internal.h"
#include "control.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

static uint64_t ms_now(void)
{
	return now_ns() / 1000000;
}

#define MAX_CONNS 256
#define MAX_WORKERS CLUSTER_MAX_WORKERS

enum phase { PH_NONE = 0, PH_DEPLOYING, PH_RUNNING, PH_FINAL, PH_ENDING, PH_RESTARTING };

typedef struct conn {
	ctl_conn c;
	int role;              /* 0 until authenticated */
	uint8_t nonce[32];
	int worker;            /* workers[] index, -1 */
	uint64_t last_seen;
} conn;

typedef struct wrec {
	bool alive;
	int conn;              /* conns[] index */
	int cores;
	char host[256], transport[16], peer[64];
	/* the current attempt */
	bool in_job;
	int index, first;
	bool deployed, local_done, finished, acked;
	char data_addr[128];
	char *part;            /* manifest part of the checkpoint in flight */
} wrec;

typedef struct cjob {
	uint32_t id, attempt;
	enum phase phase;
	char name[256];
	uint8_t *so;
	size_t so_len;
	uint8_t sha[32];
	char *args;            /* NUL-separated */
	size_t args_len;
	int nargs;
	char ckdir[4096];
	/* When to checkpoint (core/checkpoint_policy.h, clock ms_now()):
	 * interval, minimum pause, timeout, retained; and what was
	 * triggered when.  One checkpoint or savepoint in flight at a time. */
	ckpt_policy policy;
	ckpt_schedule sched;
	int client;            /* conns[] index, -1 once gone */
	int nworkers, ncores;
	int lock_fd;
	char plan[8192];
	uint64_t run;
	int64_t next_ck, inflight, last_completed;
	bool inflight_final, inflight_stop, stopped;
	int sp_client;         /* conns[] index waiting for the savepoint, -1 */
	char sp_path[4096];    /* the savepoint in flight ("": none) */
	bool sp_queued;        /* one asked for while a checkpoint was in flight: */
	bool sp_stop;          /* ... taken when it ends, into sp_parent */
	char sp_parent[4096];
	uint64_t phase_since, lost_at;
	int restarts;
	int rc;                /* final status */
	char msg[1024];
} cjob;

typedef struct coord {
	const weir_coordinator_opts *o;
	int lfd;
	struct pollfd pfd[MAX_CONNS + 1];
	conn conns[MAX_CONNS];
	int nconns;
	wrec workers[MAX_WORKERS];
	int nworkers;
	cjob job;             /* one job at a time */
	uint32_t next_job;
} coord;

static void conn_close(coord *co, int i, const char *why)
{
	conn *c = &co->conns[i];
	if (c->c.fd < 0)
		return;
	if (why)
		fprintf(stderr, "coordinator: closing %s (%s): %s\n", c->c.peer,
			c->role == CTL_ROLE_WORKER ? "worker" :
			c->role == CTL_ROLE_CLIENT ? "client" : "unauthenticated", why);
	close(c->c.fd);
	ctl_conn_reset(&c->c);
	c->c.fd = -1;
	if (c->worker >= 0) {
		co->workers[c->worker].alive = false;
		co->workers[c->worker].conn = -1;
	}
	if (co->job.client == i)
		co->job.client = -1;
	if (co->job.sp_client == i)
		co->job.sp_client = -1;
	c->worker = -1;
	c->role = 0;
}

static void csend(coord *co, int i, const ctl_msg *m)
{
	if (i < 0 || co->conns[i].c.fd < 0)
		return;
	int rc = ctl_send(co->conns[i].c.fd, m);
	if (rc < 0)
		conn_close(co, i, strerror(-rc));
}

static void reply(coord *co, int i, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void reply(coord *co, int i, int rc, const char *fmt, ...)
{
	char text[16384];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	ctl_msg m = { .type = CTL_REPLY, .rc = rc, .blob = (const uint8_t *)text,
		      .blob_len = strlen(text) };
	csend(co, i, &m);
}

/* Tell the job's client (progress lines: rc 1). */
static void tell(coord *co, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tell(coord *co, const char *fmt, ...)
{
	char text[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	fprintf(stderr, "coordinator: %s\n", text);
	if (co->job.client >= 0)
		reply(co, co->job.client, 1, "%s", text);
}

static void wsend(coord *co, int w, ctl_msg *m)
{
	m->job = co->job.id;
	m->attempt = co->job.attempt;
	csend(co, co->workers[w].conn, m);
}

static void job_free(cjob *j)
{
	free(j->so);
	free(j->args);
	if (j->lock_fd >= 0)
		close(j->lock_fd);
	memset(j, 0, sizeof(*j));
	j->client = j->sp_client = -1;
	j->lock_fd = -1;
}

static void clear_parts(coord *co)
{
	for (int w = 0; w < co->nworkers; w++) {
		free(co->workers[w].part);
		co->workers[w].part = NULL;
		co->workers[w].acked = false;
	}
}

/* Highest "<prefix><n><suffix>" number in dir (0: none). */
static int64_t max_numbered(const char *dir, const char *fmt)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int64_t max = 0;
	while (d && (e = readdir(d))) {
		long long n;
		if (sscanf(e->d_name, fmt, &n) == 1 && n > max)
			max = n;
	}
	if (d)
		closedir(d);
	return max;
}

static void end_job(coord *co, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void end_job(coord *co, int rc, const char *fmt, ...)
{
	cjob *j = &co->job;
	char text[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	fprintf(stderr, "coordinator: job %u '%s' %s: %s\n", j->id, j->name,
		rc == 0 ? "finished" : "failed", text);
	if (j->client >= 0)
		reply(co, j->client, rc, "%s", text);
	if (j->sp_client >= 0)
		reply(co, j->sp_client, -ECANCELED, "the job ended before the savepoint completed");
	for (int w = 0; w < co->nworkers; w++)
		co->workers[w].in_job = false;
	clear_parts(co);
	job_free(j);
}

static void abandon(coord *co, int rc, const char *why);

/* Deploy the next attempt of the job on the live workers. */
static void deploy(coord *co)
{
	cjob *j = &co->job;
	int first = 0, n = 0;
	for (int w = 0; w < co->nworkers; w++) {
		wrec *r = &co->workers[w];
		r->in_job = r->alive;
		r->deployed = r->local_done = r->finished = r->acked = false;
		if (!r->alive)
			continue;
		r->index = n++;
		r->first = first;
		first += r->cores;
	}
	if (!n) {
		end_job(co, -EHOSTUNREACH, "no worker is registered");
		return;
	}
	if (j->inflight) /* a savepoint's client hears of it */
		abandon(co, -ECANCELED, "its attempt was cancelled (a worker died)");
	j->attempt++;
	j->nworkers = n;
	j->ncores = first;
	j->phase = PH_DEPLOYING;
	j->phase_since = ms_now();
	j->plan[0] = 0;
	clear_parts(co);
	if (j->ckdir[0]) {
		j->run = (uint64_t)max_numbered(j->ckdir, "run-%lld") + 1;
		int64_t last = max_numbered(j->ckdir, "chk-%lld.manifest");
		if (last >= j->next_ck)
			j->next_ck = last + 1;
	}
	tell(co, "job %u '%s': attempt %u on %d worker(s), %d core(s)", j->id, j->name,
	     j->attempt, n, first);
	for (int w = 0; w < co->nworkers; w++) {
		wrec *r = &co->workers[w];
		if (!r->in_job)
			continue;
		ctl_msg m = { .type = CTL_DEPLOY, .index = (uint32_t)r->index,
			      .nworkers = (uint32_t)n, .first = (uint32_t)r->first,
			      .ncores = (uint32_t)first, .run = j->run, .blob = j->so,
			      .blob_len = j->so_len, .nlist = j->nargs, .list = j->args,
			      .list_len = j->args_len };
		snprintf(m.name, sizeof(m.name), "%s", j->name);
		snprintf(m.dir, sizeof(m.dir), "%s", j->ckdir);
		memcpy(m.digest, j->sha, 32);
		wsend(co, w, &m);
	}
}

static void cancel_attempt(coord *co)
{
	for (int w = 0; w < co->nworkers; w++)
		if (co->workers[w].in_job && co->workers[w].alive && !co->workers[w].finished) {
			ctl_msg m = { .type = CTL_CANCEL };
			wsend(co, w, &m);
		}
}

static void worker_lost(coord *co, int w, const char *why)
{
	cjob *j = &co->job;
	wrec *r = &co->workers[w];
	fprintf(stderr, "coordinator: worker %d (%s) is dead: %s\n", w, r->peer, why);
	if (r->conn >= 0)
		conn_close(co, r->conn, NULL);
	r->alive = false;
	if (j->phase == PH_NONE || !r->in_job || r->finished)
		return;
	if (j->phase == PH_RESTARTING)
		return;
	j->lost_at = ms_now();
	if (!j->ckdir[0]) {
		cancel_attempt(co);
		end_job(co, -EHOSTDOWN, "worker %s died and the job has no --checkpoint-dir "
			"to restart from", r->peer);
		return;
	}
	tell(co, "worker %s lost (%s): cancelling attempt %u, restarting from the newest "
	     "checkpoint", r->peer, why, j->attempt);
	cancel_attempt(co);
	j->phase = PH_RESTARTING;
	j->phase_since = ms_now();
	j->restarts++;
}

static void trigger(coord *co, int64_t id, bool final, const char *sp, bool stop)
{
	cjob *j = &co->job;
	j->inflight = id;
	j->inflight_final = final;
	j->inflight_stop = stop;
	ckpt_schedule_triggered(&j->sched, ms_now());
	clear_parts(co);
	for (int w = 0; w < co->nworkers; w++)
		if (co->workers[w].in_job) {
			ctl_msg m = { .type = CTL_TRIGGER, .id = (uint64_t)id, .stop = stop };
			snprintf(m.dir, sizeof(m.dir), "%s", sp ? sp : "");
			wsend(co, w, &m);
		}
}

static void job_over(coord *co)
{
	co->job.phase = PH_ENDING;
	for (int w = 0; w < co->nworkers; w++)
		if (co->workers[w].in_job) {
			ctl_msg m = { .type = CTL_JOB_OVER };
			wsend(co, w, &m);
		}
}

/* The checkpoint in flight failed (rc, why): tell whoever waits for it and
 * forget it; a failed final checkpoint still ends the job (its output
 * stays uncommitted, as locally). */
static void abandon(coord *co, int rc, const char *why)
{
	cjob *j = &co->job;
	tell(co, "checkpoint %lld abandoned: %s", (long long)j->inflight, why);
	if (j->sp_path[0]) { /* it was the savepoint */
		if (j->sp_client >= 0)
			reply(co, j->sp_client, rc, "savepoint failed: %s", why);
		j->sp_client = -1;
		j->sp_path[0] = 0;
	}
	j->inflight = 0;
	ckpt_schedule_ended(&j->sched, ms_now());
	clear_parts(co);
	if (j->phase == PH_FINAL)
		job_over(co);
}

/* The "run <r>" line of a manifest file (0: unreadable). */
static uint64_t manifest_run(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[512];
	unsigned long long r = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "run %llu", &r) == 1)
			break;
	if (f)
		fclose(f);
	return r;
}

static int cmp_i64_desc(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

/*
 * Keep the newest j->retained manifests of the checkpoint directory and
 * delete the others, then the state logs of earlier attempts' runs that no
 * kept manifest reads (the current run's segments are not truncated: the
 * workers' stores know their positions, the coordinator does not).
 */
static void retain(coord *co)
{
	cjob *j = &co->job;
	int64_t ids[1024];
	int n = 0;
	DIR *d = opendir(j->ckdir);
	struct dirent *e;
	while (d && (e = readdir(d)) && n < (int)ARRAY_SIZE(ids)) {
		long long id;
		char tail[8];
		if (sscanf(e->d_name, "chk-%lld.manifes%1s", &id, tail) == 2)
			ids[n++] = id;
	}
	if (d)
		closedir(d);
	qsort(ids, (size_t)n, sizeof(ids[0]), cmp_i64_desc);
	uint64_t keep_from = j->run; /* the oldest run a kept manifest reads */
	char path[4400];
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/chk-%010lld.manifest", j->ckdir, (long long)ids[i]);
		if (i >= j->policy.retained) {
			unlink(path);
			continue;
		}
		uint64_t r = manifest_run(path);
		if (!r)
			return; /* keep everything an unreadable manifest may need */
		if (r < keep_from)
			keep_from = r;
	}
	d = opendir(j->ckdir);
	while (d && (e = readdir(d))) {
		unsigned long long r;
		if (sscanf(e->d_name, "run-%llu", &r) != 1 || r >= keep_from)
			continue;
		char rd[4400];
		snprintf(rd, sizeof(rd), "%s/%s", j->ckdir, e->d_name);
		DIR *dd = opendir(rd);
		struct dirent *f;
		while (dd && (f = readdir(dd))) {
			if (f->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", rd, f->d_name);
			unlink(path);
		}
		if (dd)
			closedir(dd);
		rmdir(rd);
	}
	if (d)
		closedir(d);
}

/* Every worker sent its part of the checkpoint in flight: write it. */
static void complete(coord *co)
{
	cjob *j = &co->job;
	const char *ck[MAX_WORKERS], *sp[MAX_WORKERS];
	char err[1024] = "", name[64];
	int n = 0, rc = 0;
	bool is_sp = j->sp_path[0] && !j->inflight_final;

	for (int w = 0; w < co->nworkers; w++) {
		wrec *r = &co->workers[w];
		if (!r->in_job)
			continue;
		char *mark = strstr(r->part, "--- savepoint\n");
		if (mark) {
			*mark = 0;
			sp[n] = mark + strlen("--- savepoint\n");
		} else {
			sp[n] = "";
		}
		ck[n++] = r->part;
	}
	snprintf(name, sizeof(name), "chk-%010lld.manifest", (long long)j->inflight);
	if (j->ckdir[0] && ck[0][0])
		rc = co->o->manifest_write(j->ckdir, name, ck, n, err, sizeof(err));
	if (rc == 0 && is_sp)
		rc = co->o->manifest_write(j->sp_path, "_metadata", sp, n, err, sizeof(err));
	if (rc < 0) {
		abandon(co, rc, err);
		return;
	}
	j->last_completed = j->inflight;
	if (j->ckdir[0] && ck[0][0])
		retain(co);
	fprintf(stderr, "coordinator: %s %lld complete in %llu ms%s%s\n",
		is_sp ? "savepoint" : "checkpoint", (long long)j->inflight,
		(unsigned long long)(ms_now() - j->sched.started), is_sp ? ": " : "",
		is_sp ? j->sp_path : "");
	for (int w = 0; w < co->nworkers; w++)
		if (co->workers[w].in_job) {
			ctl_msg m = { .type = CTL_COMMIT, .id = (uint64_t)j->inflight };
			wsend(co, w, &m);
		}
	if (is_sp) {
		if (j->sp_client >= 0)
			reply(co, j->sp_client, 0, "%s", j->sp_path);
		j->sp_client = -1;
		if (j->inflight_stop)
			j->stopped = true;
	}
	j->sp_path[0] = 0;
	j->inflight = 0;
	ckpt_schedule_ended(&j->sched, ms_now());
	clear_parts(co);
	if (j->phase == PH_FINAL)
		job_over(co);
}

static void all_local_done(coord *co)
{
	cjob *j = &co->job;
	j->phase = PH_FINAL;
	if (j->ckdir[0] && !j->stopped) {
		/* The final checkpoint: every task ended; it commits what was
		 * written at end of input. */
		if (j->inflight) {
			j->inflight = 0;
			ckpt_schedule_ended(&j->sched, ms_now());
			clear_parts(co);
		}
		trigger(co, j->next_ck++, true, NULL, false);
	} else {
		job_over(co);
	}
}

static void handle_worker_msg(coord *co, int ci, const ctl_msg *m)
{
	conn *c = &co->conns[ci];
	cjob *j = &co->job;
	int w = c->worker;

	if (m->type == CTL_REGISTER) {
		if (w >= 0 || co->nworkers == MAX_WORKERS) {
			conn_close(co, ci, w >= 0 ? "registered twice" : "too many workers");
			return;
		}
		w = co->nworkers++;
		wrec *r = &co->workers[w];
		memset(r, 0, sizeof(*r));
		r->alive = true;
		r->conn = ci;
		r->cores = (int)m->cores;
		snprintf(r->host, sizeof(r->host), "%s", m->host);
		snprintf(r->transport, sizeof(r->transport), "%s", m->transport);
		snprintf(r->peer, sizeof(r->peer), "%s", c->c.peer);
		c->worker = w;
		fprintf(stderr, "coordinator: worker %d registered from %s (%s): %d core(s), "
			"transport %s\n", w, r->peer, r->host, r->cores, r->transport);
		return;
	}
	if (w < 0) {
		conn_close(co, ci, "a worker message before REGISTER");
		return;
	}
	wrec *r = &co->workers[w];
	if (m->type == CTL_HEARTBEAT)
		return;
	if (j->phase == PH_NONE || m->job != j->id || m->attempt != j->attempt || !r->in_job)
		return; /* about an attempt that is over */
	switch (m->type) {
	case CTL_DEPLOYED:
		/* Only while deploying: once a worker died during the deploy
		 * (PH_RESTARTING) the others' DEPLOYED must not start the
		 * attempt, or the START would cross their CANCEL and the
		 * cancelled workers' FINISHED would read as a failure. */
		if (j->phase != PH_DEPLOYING)
			return;
		if (m->rc < 0) {
			cancel_attempt(co);
			end_job(co, m->rc, "worker %s cannot run the job: %.*s", r->peer,
				(int)m->blob_len, (const char *)m->blob);
			return;
		}
		r->deployed = true;
		snprintf(r->data_addr, sizeof(r->data_addr), "%s", m->addr);
		if (r->index == 0)
			snprintf(j->plan, sizeof(j->plan), "%.*s", (int)m->blob_len,
				 (const char *)m->blob);
		for (int k = 0; k < co->nworkers; k++)
			if (co->workers[k].in_job && !co->workers[k].deployed)
				return;
		{
			/* Everyone is ready: the placement, then START. */
			char text[12288];
			int len = snprintf(text, sizeof(text), "placement of job %u attempt %u:\n",
					   j->id, j->attempt);
			for (int k = 0; k < co->nworkers && len < (int)sizeof(text); k++)
				if (co->workers[k].in_job)
					len += snprintf(text + len, sizeof(text) - (size_t)len,
							"  worker %d %s: cores %d-%d, data %s\n",
							co->workers[k].index, co->workers[k].peer,
							co->workers[k].first,
							co->workers[k].first + co->workers[k].cores - 1,
							co->workers[k].data_addr);
			if (len < (int)sizeof(text))
				snprintf(text + len, sizeof(text) - (size_t)len, "%s", j->plan);
			tell(co, "%s", text);
			char addrs[MAX_WORKERS * 160];
			size_t al = 0;
			int na = 0;
			for (int idx = 0; idx < j->nworkers; idx++)
				for (int k = 0; k < co->nworkers; k++)
					if (co->workers[k].in_job && co->workers[k].index == idx) {
						al += (size_t)snprintf(addrs + al, sizeof(addrs) - al,
								       "%d %d %s", co->workers[k].first,
								       co->workers[k].cores,
								       co->workers[k].data_addr) + 1;
						na++;
					}
			for (int k = 0; k < co->nworkers; k++)
				if (co->workers[k].in_job) {
					ctl_msg s = { .type = CTL_START, .nlist = na, .list = addrs,
						      .list_len = al };
					wsend(co, k, &s);
				}
			j->phase = PH_RUNNING;
			j->phase_since = ms_now();
			/* The schedule starts with the attempt: its first
			 * checkpoint is one interval (and pause) after START. */
			ckpt_schedule_start(&j->sched, j->phase_since);
		}
		return;
	case CTL_ACK:
		if ((int64_t)m->id != j->inflight || r->acked)
			return;
		if (m->rc < 0) {
			char why[1200];
			snprintf(why, sizeof(why), "worker %s: %.*s", r->peer, (int)m->blob_len,
				 (const char *)m->blob);
			abandon(co, m->rc, why);
			return;
		}
		r->part = malloc(m->blob_len + 1);
		if (!r->part) {
			conn_close(co, ci, "out of memory");
			return;
		}
		memcpy(r->part, m->blob, m->blob_len);
		r->part[m->blob_len] = 0;
		r->acked = true;
		for (int k = 0; k < co->nworkers; k++)
			if (co->workers[k].in_job && !co->workers[k].acked)
				return;
		complete(co);
		return;
	case CTL_LOCAL_DONE:
		r->local_done = true;
		for (int k = 0; k < co->nworkers; k++)
			if (co->workers[k].in_job && !co->workers[k].local_done)
				return;
		if (j->phase == PH_RUNNING)
			all_local_done(co);
		return;
	case CTL_FINISHED:
		r->finished = true;
		if (m->rc < 0 && j->stopped) {
			/* Stopped with a savepoint: the workers tear down as they
			 * each learn that it is complete, and one that learns
			 * later may first see its peers go.  The savepoint is
			 * complete and committed; a sink that had not committed
			 * yet commits when the savepoint is restored. */
			fprintf(stderr, "coordinator: worker %s ended after the stop's savepoint: "
				"%.*s\n", r->peer, (int)m->blob_len, (const char *)m->blob);
		} else if (m->rc < 0 && j->phase != PH_RESTARTING && j->phase != PH_ENDING) {
			/* It failed by itself: the job fails (a bug or bad input
			 * does not go away by restarting). */
			snprintf(j->msg, sizeof(j->msg), "worker %s: %.*s", r->peer,
				 (int)m->blob_len, (const char *)m->blob);
			j->rc = m->rc;
			cancel_attempt(co);
			j->phase = PH_ENDING;
		}
		for (int k = 0; k < co->nworkers; k++)
			if (co->workers[k].in_job && co->workers[k].alive && !co->workers[k].finished)
				return;
		if (j->phase == PH_RESTARTING) {
			deploy(co);
		} else if (j->rc < 0) {
			end_job(co, j->rc, "%s", j->msg);
		} else {
			end_job(co, 0, "job %u '%s' finished%s (%d restart(s))", j->id, j->name,
				j->stopped ? " with a savepoint" : "", j->restarts);
		}
		return;
	default:
		conn_close(co, ci, "unexpected message from a worker");
	}
}

static void list_text(coord *co, char *out, size_t cap)
{
	cjob *j = &co->job;
	int len = snprintf(out, cap, "workers:\n");
	for (int w = 0; w < co->nworkers && len < (int)cap; w++) {
		wrec *r = &co->workers[w];
		len += snprintf(out + len, cap - (size_t)len, "  %d %s %s cores %d %s%s\n", w,
				r->peer, r->host, r->cores, r->transport,
				r->alive ? "" : " (dead)");
	}
	if (len >= (int)cap)
		return;
	if (j->phase == PH_NONE) {
		snprintf(out + len, cap - (size_t)len, "jobs: none\n");
		return;
	}
	static const char *const ph[] = { "none", "deploying", "running", "final checkpoint",
					  "ending", "restarting" };
	len += snprintf(out + len, cap - (size_t)len,
			"job %u %s %s attempt %u restarts %d checkpoint-dir %s last-checkpoint %lld\n",
			j->id, j->name, ph[j->phase], j->attempt, j->restarts,
			j->ckdir[0] ? j->ckdir : "-", (long long)j->last_completed);
	for (int w = 0; w < co->nworkers && len < (int)cap; w++)
		if (co->workers[w].in_job)
			len += snprintf(out + len, cap - (size_t)len,
					"  worker %d %s cores %d-%d\n", co->workers[w].index,
					co->workers[w].peer, co->workers[w].first,
					co->workers[w].first + co->workers[w].cores - 1);
	if (len < (int)cap)
		snprintf(out + len, cap - (size_t)len, "%s", j->plan);
}

/* A savepoint was asked for: trigger it unless a checkpoint is in flight. */
static void take_savepoint(coord *co)
{
	cjob *j = &co->job;
	if (!j->sp_queued || !ckpt_schedule_may_trigger(&j->policy, &j->sched) ||
	    j->phase != PH_RUNNING)
		return;
	int64_t id = j->next_ck++;
	snprintf(j->sp_path, sizeof(j->sp_path), "%s/savepoint-%06lld", j->sp_parent,
		 (long long)id);
	j->sp_queued = false;
	trigger(co, id, false, j->sp_path, j->sp_stop);
}

static void handle_client_msg(coord *co, int ci, const ctl_msg *m)
{
	cjob *j = &co->job;
	char text[16384];
	switch (m->type) {
	case CTL_LIST:
		list_text(co, text, sizeof(text));
		reply(co, ci, 0, "%s", text);
		return;
	case CTL_SUBMIT: {
		if (j->phase != PH_NONE) {
			reply(co, ci, -EBUSY, "job %u '%s' is running: this coordinator runs one "
			      "job at a time", j->id, j->name);
			return;
		}
		uint8_t sha[32];
		crypto_hash_sha256(sha, m->blob, m->blob_len);
		if (sodium_memcmp(sha, m->digest, 32) != 0) {
			reply(co, ci, -EBADMSG, "the job's shared object does not match its "
			      "checksum");
			return;
		}
		job_free(j);
		j->id = ++co->next_job;
		snprintf(j->name, sizeof(j->name), "%s", m->name);
		j->so = malloc(m->blob_len ? m->blob_len : 1);
		j->args = malloc(m->list_len ? m->list_len : 1);
		if (!j->so || !j->args) {
			reply(co, ci, -ENOMEM, "out of memory");
			job_free(j);
			return;
		}
		memcpy(j->so, m->blob, m->blob_len);
		j->so_len = m->blob_len;
		memcpy(j->sha, sha, 32);
		memcpy(j->args, m->list, m->list_len);
		j->args_len = m->list_len;
		j->nargs = m->nlist;
		snprintf(j->ckdir, sizeof(j->ckdir), "%s", m->dir);
		/* The client's weir_config values (0: the defaults); no
		 * periodic checkpoints without a directory, as locally. */
		ckpt_policy_init(&j->policy, j->ckdir[0] ? (int64_t)m->interval_ms : 0,
				 (int64_t)m->min_pause_ms, (int64_t)m->timeout_ms,
				 (int)m->retained, 1);
		j->client = ci;
		j->next_ck = 1;
		if (j->ckdir[0]) {
			char lock[4200];
			mkdir(j->ckdir, 0755);
			snprintf(lock, sizeof(lock), "%s/.lock", j->ckdir);
			j->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
			if (j->lock_fd < 0 || flock(j->lock_fd, LOCK_EX | LOCK_NB) < 0) {
				reply(co, ci, -EBUSY, "checkpoint directory %s: %s", j->ckdir,
				      j->lock_fd < 0 ? strerror(errno)
						     : "in use by another running job");
				job_free(j);
				return;
			}
		}
		fprintf(stderr, "coordinator: job %u '%s' submitted from %s (%zu bytes)\n",
			j->id, j->name, co->conns[ci].c.peer, j->so_len);
		deploy(co);
		return;
	}
	case CTL_CANCEL_JOB:
		if (j->phase == PH_NONE || (m->job && m->job != j->id)) {
			reply(co, ci, -ENOENT, "no such job");
			return;
		}
		cancel_attempt(co);
		j->rc = -ECANCELED;
		snprintf(j->msg, sizeof(j->msg), "job %u cancelled", j->id);
		j->phase = PH_ENDING;
		reply(co, ci, 0, "job %u cancelled", j->id);
		return;
	case CTL_SAVEPOINT: {
		if (j->phase != PH_RUNNING || (m->job && m->job != j->id)) {
			reply(co, ci, -ENOENT, "no running job%s", j->phase == PH_NONE ? "" :
			      " (it is not in its running phase)");
			return;
		}
		if (j->sp_queued || j->sp_path[0]) {
			reply(co, ci, -EBUSY, "a savepoint is being taken; try again when it "
			      "is done");
			return;
		}
		if (m->dir[0])
			snprintf(j->sp_parent, sizeof(j->sp_parent), "%s", m->dir);
		else if (j->ckdir[0])
			snprintf(j->sp_parent, sizeof(j->sp_parent), "%s/savepoints", j->ckdir);
		else {
			reply(co, ci, -EINVAL, "give a savepoint directory (the job has no "
			      "--checkpoint-dir)");
			return;
		}
		/* Taken at once, or when the checkpoint in flight ends (tick). */
		j->sp_client = ci;
		j->sp_queued = true;
		j->sp_stop = m->stop;
		take_savepoint(co);
		return;
	}
	default:
		conn_close(co, ci, "unexpected message from a client");
	}
}

static void handle(coord *co, int ci, const ctl_msg *m)
{
	conn *c = &co->conns[ci];
	c->last_seen = ms_now();
	if (!c->role) {
		uint8_t want[32];
		if (m->type != CTL_AUTH) {
			conn_close(co, ci, "did not authenticate");
			return;
		}
		ctl_mac(co->o->key, co->o->keylen, c->nonce, m->role, want);
		if (sodium_memcmp(want, m->digest, 32) != 0) {
			conn_close(co, ci, "wrong secret");
			return;
		}
		c->role = m->role;
		ctl_msg ok = { .type = CTL_AUTH_OK, .index = (uint32_t)ci };
		csend(co, ci, &ok);
		return;
	}
	if (c->role == CTL_ROLE_WORKER)
		handle_worker_msg(co, ci, m);
	else
		handle_client_msg(co, ci, m);
}

static void accept_one(coord *co)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd = accept4(co->lfd, (struct sockaddr *)&sa, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	int i;
	for (i = 0; i < MAX_CONNS && co->conns[i].c.fd >= 0; i++)
		;
	if (i == MAX_CONNS) {
		close(fd);
		return;
	}
	conn *c = &co->conns[i];
	memset(c, 0, sizeof(*c));
	c->c.fd = fd;
	c->worker = -1;
	c->last_seen = ms_now();
	char ip[64];
	inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip));
	snprintf(c->c.peer, sizeof(c->c.peer), "%s:%u", ip, ntohs(sa.sin_port));
	randombytes_buf(c->nonce, sizeof(c->nonce));
	ctl_msg ch = { .type = CTL_CHALLENGE };
	memcpy(ch.digest, c->nonce, 32);
	/* the fd is non-blocking; ctl_send waits on POLLOUT if it must */
	csend(co, i, &ch);
	if (i >= co->nconns)
		co->nconns = i + 1;
}

/* Timers: heartbeats, checkpoint interval and timeout, restarts. */
static void tick(coord *co)
{
	cjob *j = &co->job;
	uint64_t now = ms_now();
	for (int i = 0; i < co->nconns; i++) {
		conn *c = &co->conns[i];
		if (c->c.fd < 0)
			continue;
		if (!c->role && now - c->last_seen > 5000)
			conn_close(co, i, "no authentication within 5 s");
		else if (c->worker >= 0 && now - c->last_seen > (uint64_t)co->o->heartbeat_timeout_ms)
			worker_lost(co, c->worker, "missed heartbeats");
	}
	if (j->phase == PH_NONE)
		return;
	if (j->phase == PH_RESTARTING) {
		bool waiting = false;
		for (int w = 0; w < co->nworkers; w++)
			if (co->workers[w].in_job && co->workers[w].alive && !co->workers[w].finished)
				waiting = true;
		if (!waiting || now - j->phase_since > 5000) {
			if (waiting)
				fprintf(stderr, "coordinator: workers did not stop within 5 s; "
					"deploying anyway\n");
			deploy(co);
		}
		return;
	}
	if (j->phase == PH_DEPLOYING && now - j->phase_since > 60000) {
		cancel_attempt(co);
		end_job(co, -ETIMEDOUT, "workers did not deploy the job within 60 s");
		return;
	}
	if (j->inflight && ckpt_schedule_expired(&j->policy, &j->sched, now)) {
		char why[128];
		snprintf(why, sizeof(why), "it expired after %llu ms",
			 (unsigned long long)j->policy.timeout);
		abandon(co, -ETIMEDOUT, why);
	}
	take_savepoint(co);
	if (j->phase == PH_RUNNING &&
	    ckpt_schedule_due_in(&j->policy, &j->sched, now) == 0)
		trigger(co, j->next_ck++, false, NULL, false);
}

int weir_coordinator_main(const weir_coordinator_opts *o)
{
	coord *co = calloc(1, sizeof(*co));
	char err[512];
	int rc = 0;

	if (!co || sodium_init() < 0) {
		free(co);
		return -ENOMEM;
	}
	co->o = o;
	for (int i = 0; i < MAX_CONNS; i++)
		co->conns[i].c.fd = -1;
	job_free(&co->job);
	co->lfd = ctl_listen(o->listen, err, sizeof(err));
	if (co->lfd < 0) {
		fprintf(stderr, "weir coordinator: %s\n", err);
		rc = co->lfd;
		free(co);
		return rc;
	}
	fprintf(stderr, "coordinator: listening on %s%s\n", o->listen,
		o->keylen ? "" : " (no --secret-file: anyone who reaches this port may run "
		"code on the workers)");
	while (!cluster_stopping()) {
		int n = 0;
		co->pfd[n++] = (struct pollfd){ .fd = co->lfd, .events = POLLIN };
		for (int i = 0; i < co->nconns; i++)
			co->pfd[n++] = (struct pollfd){ .fd = co->conns[i].c.fd, .events = POLLIN };
		if (poll(co->pfd, (nfds_t)n, 50) < 0 && errno != EINTR) {
			rc = -errno;
			break;
		}
		if (co->pfd[0].revents & POLLIN)
			accept_one(co);
		for (int i = 0; i < co->nconns && i + 1 < n; i++) {
			if (!(co->pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR)) ||
			    co->conns[i].c.fd < 0)
				continue;
			ctl_msg m;
			char why[256] = "";
			int r;
			/* a bounded number of messages per connection per turn */
			for (int k = 0; k < 16; k++) {
				r = ctl_recv(&co->conns[i].c, &m, why, sizeof(why));
				if (r <= 0)
					break;
				handle(co, i, &m);
				if (co->conns[i].c.fd < 0)
					break;
			}
			if (r < 0 && co->conns[i].c.fd >= 0) {
				int w = co->conns[i].worker;
				if (r == -EBADMSG || r == -EMSGSIZE)
					fprintf(stderr, "coordinator: refusing %s: %s\n",
						co->conns[i].c.peer, why);
				conn_close(co, i, r == -ECONNRESET ? NULL : why[0] ? why : strerror(-r));
				if (w >= 0)
					worker_lost(co, w, r == -ECONNRESET ? "connection closed"
									   : "connection failed");
			}
		}
		tick(co);
	}
	if (co->job.phase != PH_NONE) {
		cancel_attempt(co);
		end_job(co, -ECANCELED, "the coordinator stopped");
	}
	for (int i = 0; i < co->nconns; i++)
		conn_close(co, i, NULL);
	for (int w = 0; w < co->nworkers; w++)
		free(co->workers[w].part);
	close(co->lfd);
	free(co);
	return rc;
}
