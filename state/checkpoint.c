/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checkpoint store (checkpoint.h): the storage side of checkpoints and
 * savepoints that core/checkpoint_coordinator.c drives through checkpoint_store_ops.
 * It owns each core's state log for the run (core_st), decides at a
 * barrier whether a core's tasks materialize or only flush their deferred
 * PUTs (log_write.c) before it marks each task's position, writes a
 * savepoint's state into its own files, makes the logs durable and polls
 * them (acknowledgements), writes the manifest when every core is durable
 * (manifest.c), and deletes what no retained manifest needs.  At start it
 * locks the checkpoint directory and restores the job (recovery.c) from
 * the savepoint asked for or the newest usable checkpoint, falling back
 * to older ones.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint_policy.h" /* CKPT_DEFAULT_RETAINED */
#include "store_internal.h"

/* Messages name paths; one cut short is still a useful message. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

static int mkdir_p(const char *path)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			if (mkdir(buf, 0777) && errno != EEXIST)
				return -errno;
			*p = '/';
		}
	if (mkdir(buf, 0777) && errno != EEXIST)
		return -errno;
	return 0;
}

/* ---- barriers, syncing, polling (core's reactor) --------------------------------- */

/* Savepoint id: task k's whole state into the savepoint's file (once).
 * 0 or -errno. */
static int sp_materialize(ckpt_store *s, st_task *k, core_st *c, int64_t id)
{
	int rc;
	int64_t spid = atomic_load_explicit(&s->sp_id, memory_order_relaxed);
	if (id != CKPT_FINAL && id == spid && k->sp_id != id) {
		if (c->sp && c->sp_for != id) { /* of an abandoned savepoint */
			slog_close(c->sp);
			c->sp = NULL;
		}
		if (!c->sp) {
			char prefix[32];
			snprintf(prefix, sizeof(prefix), "core-%d", k->core);
			slog_conf sc = { .dir = s->sp_path, .prefix = prefix, .run = s->run,
					 .core = (uint32_t)k->core, .seg_size = UINT64_MAX / 2,
					 .eventfd = runtime_core_efd(s->rt, k->core) };
			if ((rc = slog_open(&sc, &c->sp)) < 0)
				return rc;
			c->sp_for = id;
		}
		uint64_t spb = 0;
		if ((rc = st_materialize(k, c->sp, &k->sp_from, &k->sp_to, &spb)) < 0)
			return rc;
		k->sp_id = id;
	}
	return 0;
}

static int st_task_barrier(ckpt_store *s, task *t, int64_t id)
{
	st_task *k = st_of(t);
	int rc;

	if (!k)
		return -ENOMEM;
	core_st *c = core_of(s, k->core);
	if (k->err)
		return k->err;
	if ((rc = sp_materialize(s, k, c, id)) < 0)
		return rc;
	if (!c->log)
		return 0;
	if (id != CKPT_FINAL && c->mat_decided < id) {
		/* Materialize this core's tasks when the log since the last
		 * materialization outgrew max(64 MiB, 2 x its size), so
		 * recovery replays a bounded log. */
		c->mat_decided = id;
		uint64_t since = slog_bytes_written(c->log) - c->bytes_at_mat;
		uint64_t lim = 2 * c->mat_size > (64u << 20) ? 2 * c->mat_size : (64u << 20);
		if (since > lim) {
			c->mat_round = id;
			c->mat_size = 0;
			c->bytes_at_mat = slog_bytes_written(c->log);
		}
	}
	if (id != CKPT_FINAL) {
		/* Asynchronous: mark where the snapshot stands, go on; the
		 * entries follow between reactor turns (st_core_poll). */
		uint64_t t0 = now_ns();
		bool mat = !k->has_mat || c->mat_round == id;
		slog_pos from;
		if ((rc = st_snapshot_begin(k, c->log, mat, &from)) < 0)
			return rc;
		if (mat) {
			k->from = from;
			k->has_mat = true;
			free(k->base); /* the materialization holds it all */
			k->base = NULL;
			k->nbase = 0;
			c->mats++;
			if (!c->mat_open) {
				c->mat_open = true;
				c->mat_start = slog_bytes_written(c->log);
			}
		}
		k->to = k->tail = slog_mark(c->log);
		if (!c->snapping)
			wlog(LOG_DEBUG, "core %d: checkpoint %lld: logging its snapshot", k->core,
			     (long long)id);
		c->snapping = true;
		c->snap_id = id;
		uint64_t dt = now_ns() - t0;
		/* A core's pause at barrier id: all its tasks. */
		if (c->flush_acc_id != id) {
			c->flush_acc_id = id;
			c->flush_acc_ns = 0;
		}
		c->flush_acc_ns += dt;
		if (mat && c->flush_acc_ns > c->mat_max_ns)
			c->mat_max_ns = c->flush_acc_ns;
		if (!mat && c->flush_acc_ns > c->flush_max_ns)
			c->flush_max_ns = c->flush_acc_ns;
		return k->err;
	}
	/* The final barrier (nothing changes after it): the snapshot in
	 * progress ends now, then the deferred PUTs, or a materialization if
	 * the task never had one. */
	if (k->snapping) {
		st_snapshot_step(k, SIZE_MAX);
		k->tail = slog_mark(c->log);
	}
	if (!k->has_mat) {
		slog_pos to;
		uint64_t t0 = now_ns(), mb = 0;
		/* Every entry is written below: nothing deferred is needed
		 * (the interval's PUTs would fall before k->from anyway). */
		st_forget_dirty(k);
		if ((rc = st_materialize(k, c->log, &k->from, &to, &mb)) < 0)
			return rc;
		k->has_mat = true;
		/* A core's pause to materialize at barrier id: all its tasks. */
		if (c->mat_acc_id != id) {
			c->mat_acc_id = id;
			c->mat_acc_ns = 0;
		}
		c->mat_acc_ns += now_ns() - t0;
		if (c->mat_acc_ns > c->mat_max_ns)
			c->mat_max_ns = c->mat_acc_ns;
		c->mats++;
		c->mat_bytes += mb;
		c->mat_size += mb; /* this round's, over the core's tasks */
	} else {
		/* Before the mark: the range up to it must hold them (the
		 * final barrier, CKPT_FINAL, too: nothing changes after it). */
		uint64_t t0 = now_ns();
		st_flush_dirty(k);
		/* A core's pause at barrier id: all its tasks. */
		if (c->flush_acc_id != id) {
			c->flush_acc_id = id;
			c->flush_acc_ns = 0;
		}
		c->flush_acc_ns += now_ns() - t0;
		if (c->flush_acc_ns > c->flush_max_ns)
			c->flush_max_ns = c->flush_acc_ns;
	}
	k->final_to = slog_mark(c->log);
	return k->err;
}

/* The longest a reactor spends on checkpoints in one go, and the
 * histogram of such pauses (weir_checkpoint_stats). */
static void pause_add(core_st *c, uint64_t ns)
{
	uint64_t us = ns / 1000;
	int b = us < 2 ? 0 : 63 - __builtin_clzll(us);
	c->pause_hist[b < WEIR_PAUSE_BUCKETS ? b : WEIR_PAUSE_BUCKETS - 1]++;
	if (ns > c->pause_max_ns)
		c->pause_max_ns = ns;
}

/* Log the snapshots in progress on core c for about SNAP_SLICE_NS (at
 * least one table word), then, when none is left, set the tasks' tail
 * marks and sync what waited for them.  Core's reactor (or main, once the
 * reactors stopped). */
#define SNAP_SLICE_NS 250000
#define SNAP_STEP 512
/* What a step may log, about: SNAP_STEP entries of plain values. */
#define SNAP_STEP_BYTES (SNAP_STEP * 128)

static void snap_work(ckpt_store *s, core_st *c)
{
	if (!c->snapping)
		return;
	uint64_t t0 = now_ns(), t;
	bool left;
	size_t step = s->test_slow_us ? 1 : SNAP_STEP;
	do {
		left = false;
		for (int i = 0; i < c->ntasks; i++) {
			st_task *k = c->tasks[i]->keyed;
			if (!k || !k->snapping)
				continue;
			if (!slog_has_room(c->log, SNAP_STEP_BYTES)) {
				/* Every buffer is in flight: the disk is behind.
				 * Yield rather than wait for it. */
				left = true;
				goto out;
			}
			st_snapshot_step(k, step);
			if (k->snapping)
				left = true;
			else
				k->tail = slog_mark(c->log);
		}
		t = now_ns();
	} while (left && t - t0 < SNAP_SLICE_NS && !s->test_slow_us);
out:
	t = now_ns();
	pause_add(c, t - t0);
	if (s->test_slow_us)
		usleep(s->test_slow_us); /* tests: a snapshot that takes long */
	if (left)
		return;
	c->snapping = false;
	wlog(LOG_DEBUG, "core %d: checkpoint %lld: its snapshot is logged", (int)(c - s->cores),
	     (long long)c->snap_id);
	if (c->mat_open) {
		/* This round's materializations, over the core's tasks (and
		 * what else the core logged meanwhile). */
		c->mat_size = slog_bytes_written(c->log) - c->mat_start;
		c->mat_bytes += c->mat_size;
		c->mat_open = false;
	}
	for (int i = 0; i < c->npend; i++)
		if (c->pend[i].lt == SYNC_AFTER_SNAPSHOT)
			c->pend[i].lt = slog_sync(c->log);
	c->bytes_at_sync = slog_bytes_written(c->log);
}

static void st_core_sync(ckpt_store *s, int core, int64_t id)
{
	core_st *c = core_of(s, core);
	if (c->log && c->inf_id == id)
		c->inf_to = slog_mark(c->log);
	/* Tasks that ended before the savepoint's barrier reached them:
	 * their final state goes into the savepoint now. */
	int64_t spid = atomic_load_explicit(&s->sp_id, memory_order_relaxed);
	if (id == spid)
		for (int i = 0; i < c->ntasks; i++) {
			task *t = c->tasks[i];
			st_task *k = t->keyed;
			int e;
			if (t->ck_final && k->sp_id != id && (e = sp_materialize(s, k, c, id)) < 0)
				c->err = e;
		}
	if (c->npend == MAX_PEND) { /* cannot happen: one in flight */
		c->err = -EOVERFLOW;
		return;
	}
	c->pend[c->npend].id = id;
	/* The acknowledgement waits for the snapshot's entries. */
	c->pend[c->npend].lt = !c->log ? 0 : c->snapping ? SYNC_AFTER_SNAPSHOT
							 : slog_sync(c->log);
	if (c->flush_acc_id == id)
		pause_add(c, c->flush_acc_ns);
	c->pend[c->npend].st = c->sp && id == spid ? slog_sync(c->sp) : 0;
	c->npend++;
	if (c->log)
		c->bytes_at_sync = slog_bytes_written(c->log);
}

static int st_core_sync_fd(ckpt_store *s, int core, int fd)
{
	core_st *c = core_of(s, core);
	if (c->log)
		return slog_add_fd_sync(c->log, fd);
	return fdatasync(fd) ? -errno : 0;
}

static bool st_core_busy(ckpt_store *s, int core)
{
	return core_of(s, core)->snapping;
}

static int64_t st_core_poll(ckpt_store *s, int core)
{
	core_st *c = core_of(s, core);
	if (c->err)
		return c->err;
	snap_work(s, c);
	if (!c->npend)
		return c->durable;
	int e = c->log ? slog_error(c->log) : 0;
	if (!e && c->sp)
		e = slog_error(c->sp);
	if (e)
		return e;
	uint64_t dl = c->log ? slog_poll(c->log) : 0;
	uint64_t ds = c->sp ? slog_poll(c->sp) : 0;
	while (c->npend && c->pend[0].lt <= dl && c->pend[0].st <= ds) {
		if (c->pend[0].st) {
			/* The savepoint's file is durable: hand it over. */
			c->sp_done = c->sp;
			c->sp = NULL;
		}
		c->durable = c->pend[0].id;
		memmove(c->pend, c->pend + 1, (size_t)--c->npend * sizeof(c->pend[0]));
	}
	return c->durable;
}

/*
 * io_uring runs a request that had to wait (a drained fsync, a write
 * punted to a worker) in the context of the thread that submitted it, and
 * cancels it if that thread has exited: the final checkpoint, synced from
 * the main thread, would find the core's last writes failed (-ECANCELED,
 * -EFAULT).  So a reactor leaves only once its log's I/O completed.
 */
static void st_core_quiesce(ckpt_store *s, int core)
{
	core_st *c = core_of(s, core);
	if (c->log)
		slog_wait(c->log, slog_sync(c->log));
	if (c->sp)
		slog_wait(c->sp, slog_sync(c->sp));
}

/* ---- the store's life (main) ----------------------------------------------------- */

static int st_start(runtime *rt, const weir_config *cfg, ckpt_store **out,
		    int64_t *next_id, char *err, size_t errlen)
{
	ckpt_store *s = calloc(1, sizeof(*s));
	const graph *g = runtime_graph(rt);
	/* Fault tests: every slice of a snapshot logs a few entries and then
	 * sleeps this long, so that a kill lands while one is half logged. */
	const char *slow = getenv("WEIR_TEST_SNAPSHOT_SLOW_US");
	int rc = -ENOMEM;
	int64_t maxid = 0;
	bool finished = false;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->rt = rt;
	s->cfg = cfg;
	s->lock_fd = -1;
	s->test_slow_us = slow ? (unsigned)strtoul(slow, NULL, 10) % 1000000 : 0;
	s->ncores = runtime_ncores(rt);
	snprintf(s->job, sizeof(s->job), "%s", runtime_job(rt) ? runtime_job(rt) : "job");
	s->cores = calloc((size_t)s->ncores, sizeof(core_st));
	s->uids = calloc((size_t)g->nnodes + 1, sizeof(*s->uids));
	if (!s->cores || !s->uids)
		goto fail;
	/* Operator identity: its name, "#k" for its k-th repetition. */
	for (int n = 0; n < g->nnodes; n++) {
		int dup = 0;
		for (int p = 0; p < n; p++)
			dup += !strcmp(g->nodes[p]->name, g->nodes[n]->name);
		if (dup)
			snprintf(s->uids[n], sizeof(s->uids[n]), "%.140s#%d", g->nodes[n]->name, dup + 1);
		else
			snprintf(s->uids[n], sizeof(s->uids[n]), "%.150s", g->nodes[n]->name);
	}
	for (int i = 0; i < runtime_ntasks(rt); i++) {
		task *t = runtime_task(rt, i);
		st_task *k = st_of(t);
		if (!k)
			goto fail;
		k->node = (uint16_t)t->node->id;
		k->core = task_core(t);
		core_st *c = &s->cores[k->core];
		task **nt = realloc(c->tasks, (size_t)(c->ntasks + 1) * sizeof(*nt));
		if (!nt)
			goto fail;
		c->tasks = nt;
		c->tasks[c->ntasks++] = t;
	}
	if (cfg->checkpoint_dir && cfg->checkpoint_dir[0]) {
		snprintf(s->dir, sizeof(s->dir), "%s", cfg->checkpoint_dir);
		if ((rc = mkdir_p(s->dir)) < 0) {
			snprintf(err, errlen, "checkpoint directory %s: %s", s->dir, strerror(-rc));
			goto fail;
		}
		/* One run per directory: two would interleave their runs and
		 * delete each other's logs.  The lock goes with the process,
		 * however it ends (SIGKILL included). */
		char lock[2200];
		snprintf(lock, sizeof(lock), "%s/.lock", s->dir);
		/* (In a cluster the coordinator holds it: one job per
		 * directory; the workers share it.) */
		if (runtime_cluster(rt))
			;
		else if ((s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0 ||
			 flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
			rc = -errno;
			snprintf(err, errlen, "checkpoint directory %s%s%s", s->dir,
				 rc == -EWOULDBLOCK ? " " : ": ",
				 rc == -EWOULDBLOCK ? "is in use by another running job"
						    : strerror(-rc));
			goto fail;
		}
	}
	/* Recovery. */
	if (cfg->restore_savepoint) {
		manifest m;
		char path[4200], why[2048];
		struct stat st;
		snprintf(path, sizeof(path), "%s", cfg->restore_savepoint);
		if (!stat(path, &st) && S_ISDIR(st.st_mode))
			snprintf(path, sizeof(path), "%s/_metadata", cfg->restore_savepoint);
		rc = mf_load(path, &m, why, sizeof(why));
		if (rc == 0) {
			char dir[4200];
			snprintf(dir, sizeof(dir), "%s", path);
			char *slash = strrchr(dir, '/');
			if (slash)
				*slash = 0;
			else
				snprintf(dir, sizeof(dir), ".");
			/* A retained checkpoint's manifest works too (as Flink's
			 * "run -s <checkpoint>"): its logs are in its run folder. */
			char logdir[4300];
			if (m.savepoint)
				snprintf(logdir, sizeof(logdir), "%s", dir);
			else
				snprintf(logdir, sizeof(logdir), "%s/run-%06llu", dir,
					 (unsigned long long)m.run);
			rc = st_restore_from(s, &m, logdir, false, why, sizeof(why));
			if (rc == 0) {
				char d[512];
				mf_describe(&m, dir, d, sizeof(d));
				fprintf(stderr, "weir: restored from %s\n", d);
				maxid = m.id;
				s->restored_id = m.id;
			}
		}
		manifest_free(&m);
		if (rc < 0) {
			snprintf(err, errlen, "cannot restore savepoint %s: %s",
				 cfg->restore_savepoint, why);
			goto fail;
		}
	} else if (s->dir[0]) {
		int n;
		int64_t *ids = mf_list(s->dir, &n);
		char reasons[2048] = "";
		size_t rl = 0;
		bool done = false;
		for (int i = 0; i < n && !done; i++) {
			char path[4200], why[1024];
			manifest m;
			if (ids[i] > maxid)
				maxid = ids[i];
			snprintf(path, sizeof(path), "%s/chk-%010lld.manifest", s->dir, (long long)ids[i]);
			rc = mf_load(path, &m, why, sizeof(why));
			if (rc == 0) {
				char logdir[4200];
				snprintf(logdir, sizeof(logdir), "%s/run-%06llu", s->dir,
					 (unsigned long long)m.run);
				/* Its logs stay in use (the tasks' bases) but
				 * for a cluster's, whose coordinator deletes
				 * runs without reading bases. */
				rc = st_restore_from(s, &m, logdir, !runtime_cluster(rt), why,
						     sizeof(why));
				if (rc == 0) {
					char d[512];
					mf_describe(&m, s->dir, d, sizeof(d));
					/* Every task ended (a bounded job's final
					 * checkpoint): nothing left to run. */
					finished = m.ntasks > 0 && !runtime_cluster(rt);
					for (int t = 0; t < m.ntasks; t++)
						finished = finished && m.tasks[t].final;
					if (finished)
						fprintf(stderr, "weir: checkpoint directory %s holds a "
							"finished run of this job (checkpoint %lld, "
							"final): nothing to do; use a new directory "
							"or remove it to run the job again\n", s->dir,
							(long long)m.id);
					else
						fprintf(stderr, "weir: resuming from %s\n", d);
					done = true;
					s->restored_id = m.id;
				} else if (rc == -EINVAL && strstr(why, "the job")) {
					manifest_free(&m);
					free(ids);
					snprintf(err, errlen, "cannot resume from %s: %s", path, why);
					goto fail;
				}
			}
			manifest_free(&m);
			if (!done) {
				fprintf(stderr, "weir: checkpoint %lld is not usable: %s\n",
					(long long)ids[i], why);
				rl += (size_t)snprintf(reasons + rl, rl < sizeof(reasons) ? sizeof(reasons) - rl : 0,
						       "%s checkpoint %lld: %s", rl ? ";" : "",
						       (long long)ids[i], why);
				if (rl >= sizeof(reasons))
					rl = sizeof(reasons) - 1;
			}
		}
		free(ids);
		if (n > 0 && !done) {
			snprintf(err, errlen, "no checkpoint in %s can be restored (%s); "
				 "refusing to start over silently: move the directory away "
				 "to start from scratch", s->dir, reasons);
			rc = -EBADMSG;
			goto fail;
		}
		if (!n)
			fprintf(stderr, "weir: no checkpoint in %s yet: starting from the "
				"beginning\n", s->dir);
	}
	if (finished) {
		*next_id = maxid + 1;
		*out = s;
		return 1;
	}
	/* Logging for this run. */
	if (s->dir[0]) {
		s->run = runtime_cluster(rt) ? runtime_cluster(rt)->run : mf_max_run(s->dir) + 1;
		snprintf(s->run_dir, sizeof(s->run_dir), "%s/run-%06llu", s->dir,
			 (unsigned long long)s->run);
		if ((rc = mkdir_p(s->run_dir)) < 0 || (rc = st_fsync_dir(s->dir)) < 0) {
			snprintf(err, errlen, "%s: %s", s->run_dir, strerror(-rc));
			goto fail;
		}
		for (int c = 0; c < s->ncores; c++) {
			char prefix[32];
			if (!runtime_core_local(rt, c))
				continue; /* another worker logs it */
			snprintf(prefix, sizeof(prefix), "core-%d", c);
			slog_conf sc = { .dir = s->run_dir, .prefix = prefix, .run = s->run,
					 .core = (uint32_t)c, .eventfd = runtime_core_efd(rt, c) };
			if ((rc = slog_open(&sc, &s->cores[c].log)) < 0) {
				snprintf(err, errlen, "state log %s/%s: %s", s->run_dir, prefix,
					 strerror(-rc));
				goto fail;
			}
		}
		for (int i = 0; i < runtime_ntasks(rt); i++) {
			task *t = runtime_task(rt, i);
			st_task *k = t->keyed;
			if (!is_local(t))
				continue;
			if ((rc = state_bind_log(t, s->cores[k->core].log)) < 0) {
				snprintf(err, errlen, "state log: %s", strerror(-rc));
				goto fail;
			}
			if (k->nbase) {
				/* Restored from ranges that stay in use: its
				 * state is them plus this run's log from here. */
				core_st *c = &s->cores[k->core];
				k->has_mat = true;
				k->from = slog_mark(c->log);
				/* Materialize once this run's log outgrew what a
				 * restore reads already (about the core's share). */
				c->mat_size = s->restore_bytes / (uint64_t)s->ncores;
				c->bytes_at_mat = (uint64_t)0 - c->mat_size;
			}
		}
		for (int n = 0; n < g->nnodes; n++)
			if (g->nodes[n]->not_replayable)
				fprintf(stderr, "weir: source '%s' cannot replay its input: "
					"the job is at-least-once for it, not exactly-once\n",
					g->nodes[n]->name);
		int n;
		int64_t *ids = mf_list(s->dir, &n);
		if (n && ids[0] > maxid)
			maxid = ids[0];
		free(ids);
	}
	*next_id = maxid + 1;
	*out = s;
	return 0;
fail:
	checkpoint_store_ops.stop(s);
	return rc < 0 ? rc : -ENOMEM;
}

static int st_begin(ckpt_store *s, int64_t id, const char *sp_dir, char *err,
		    size_t errlen)
{
	s->begin_ns = now_ns();
	if (!sp_dir)
		return 0;
	struct stat st;
	char meta[3400];
	snprintf(meta, sizeof(meta), "%s/_metadata", sp_dir);
	if (!stat(meta, &st)) {
		snprintf(err, errlen, "%s already holds a savepoint", sp_dir);
		return -EEXIST;
	}
	int rc = mkdir_p(sp_dir);
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", sp_dir, strerror(-rc));
		return rc;
	}
	snprintf(s->sp_path, sizeof(s->sp_path), "%s", sp_dir);
	atomic_store_explicit(&s->sp_id, id, memory_order_relaxed);
	return 0;
}

/* Delete manifests beyond the retained count, then the log segments and
 * runs that no retained manifest needs. */
static void retain(ckpt_store *s)
{
	int n, keep = s->cfg->checkpoints_retained > 0 ? s->cfg->checkpoints_retained
						      : CKPT_DEFAULT_RETAINED;
	int64_t *ids = mf_list(s->dir, &n);
	uint64_t *minseg = calloc((size_t)s->ncores, sizeof(uint64_t));
	uint64_t *runs = NULL;
	int nruns = 0, cap = 0;
	if (!minseg)
		goto out;
	for (int c = 0; c < s->ncores; c++)
		minseg[c] = UINT64_MAX;
	for (int i = 0; i < n; i++) {
		char path[4200], why[256];
		snprintf(path, sizeof(path), "%s/chk-%010lld.manifest", s->dir, (long long)ids[i]);
		if (i >= keep) {
			unlink(path);
			continue;
		}
		manifest m;
		if (mf_load(path, &m, why, sizeof(why)) == 0) {
			/* its run, and the earlier runs its tasks' bases read */
			for (int t = -1; nruns >= 0 && t < m.ntasks; t++)
				for (int b = t < 0 ? -1 : 0; nruns >= 0 && b < (t < 0 ? 0 : m.tasks[t].nbase);
				     b++) {
					if (nruns == cap) {
						cap = cap ? 2 * cap : 16;
						uint64_t *nr = realloc(runs, (size_t)cap * sizeof(*nr));
						if (!nr) {
							nruns = -1; /* keep everything */
							break;
						}
						runs = nr;
					}
					runs[nruns++] = t < 0 ? m.run : m.tasks[t].base[b].run;
				}
			if (m.run == s->run)
				for (int t = 0; t < m.ntasks; t++)
					if (m.tasks[t].core < s->ncores &&
					    (m.tasks[t].from_off || m.tasks[t].to_off) &&
					    m.tasks[t].from_seg < minseg[m.tasks[t].core])
						minseg[m.tasks[t].core] = m.tasks[t].from_seg;
		} else {
			/* keep what an unreadable retained manifest may need */
			nruns = -1;
		}
		manifest_free(&m);
	}
	if (nruns < 0)
		goto out;
	for (int c = 0; c < s->ncores; c++)
		if (minseg[c] != UINT64_MAX) {
			char prefix[32];
			snprintf(prefix, sizeof(prefix), "core-%d", c);
			slog_truncate_before(s->run_dir, prefix, minseg[c]);
		}
	/* Runs of earlier attempts no retained manifest points at. */
	DIR *d = opendir(s->dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		unsigned long long r;
		if (sscanf(e->d_name, "run-%llu", &r) != 1 || r == s->run)
			continue;
		bool used = false;
		for (int i = 0; i < nruns; i++)
			used |= runs[i] == r;
		if (used)
			continue;
		char rd[4200];
		snprintf(rd, sizeof(rd), "%s/%s", s->dir, e->d_name);
		DIR *dd = opendir(rd);
		struct dirent *f;
		while (dd && (f = readdir(dd))) {
			char fp[4500];
			if (f->d_name[0] == '.')
				continue;
			snprintf(fp, sizeof(fp), "%s/%s", rd, f->d_name);
			unlink(fp);
		}
		if (dd)
			closedir(dd);
		rmdir(rd);
	}
	if (d)
		closedir(d);
out:
	free(ids);
	free(minseg);
	free(runs);
}

/* Close the savepoint's log files of every core; the first error, or rc. */
static int close_sp_logs(ckpt_store *s, int rc)
{
	for (int c = 0; c < s->ncores; c++)
		if (s->cores[c].sp_done) {
			int e = slog_close(s->cores[c].sp_done);
			s->cores[c].sp_done = NULL;
			if (e < 0 && !rc)
				rc = e;
		}
	return rc;
}

static int st_complete(ckpt_store *s, int64_t id, char *msg, size_t msglen)
{
	bool sp = id == atomic_load_explicit(&s->sp_id, memory_order_relaxed);
	sbuf b = { 0 };
	char err[1024] = "", name[64];
	int rc = 0;
	uint64_t bytes = 0;

	for (int c = 0; c < s->ncores; c++)
		bytes += s->cores[c].bytes_at_sync;
	uint64_t delta = bytes - s->bytes_prev;
	if (s->dir[0]) {
		if ((rc = mf_text(s, id, false, &b)) < 0) {
			snprintf(msg, msglen, "manifest: %s", strerror(-rc));
			goto out;
		}
		snprintf(name, sizeof(name), "chk-%010lld.manifest", (long long)id);
		if ((rc = mf_write_atomic(s->dir, name, b.p, b.len, err, sizeof(err))) < 0) {
			snprintf(msg, msglen, "manifest: %s", err);
			goto out;
		}
		s->bytes_prev = bytes;
	}
	if (sp) {
		rc = close_sp_logs(s, rc);
		b.len = 0;
		if (!rc && (rc = mf_text(s, id, true, &b)) == 0)
			rc = mf_write_atomic(s->sp_path, "_metadata", b.p, b.len, err, sizeof(err));
		if (rc < 0) {
			snprintf(msg, msglen, "savepoint %s: %s", s->sp_path,
				 err[0] ? err : strerror(-rc));
			goto out;
		}
		snprintf(msg, msglen, "savepoint %lld complete: %s", (long long)id, s->sp_path);
	} else {
		double ms = (now_ns() - s->begin_ns) / 1e6;
		snprintf(msg, msglen, "checkpoint %lld complete in %.1f ms: %.2f MiB of "
			 "state log written since the previous one", (long long)id, ms,
			 delta / 1048576.0);
	}
	if (s->dir[0])
		retain(s);
out:
	free(b.p);
	return rc;
}

/* A cluster worker's part of manifest id: its tasks' lines (the
 * coordinator merges the parts, weir_manifest_merge_write); for a savepoint,
 * then a line "--- savepoint" and its part of the savepoint's metadata. */
static int st_part(ckpt_store *s, int64_t id, char **text, char *err, size_t errlen)
{
	bool sp = id == atomic_load_explicit(&s->sp_id, memory_order_relaxed);
	sbuf b = { 0 };
	int rc = 0;

	*text = NULL;
	if (s->dir[0] && (rc = mf_text(s, id, false, &b)) < 0)
		goto out;
	if (sp) {
		rc = close_sp_logs(s, rc);
		sb_printf(&b, "--- savepoint\n");
		if (!rc)
			rc = mf_text(s, id, true, &b);
	}
	if (!rc && b.oom)
		rc = -ENOMEM;
out:
	if (rc < 0) {
		snprintf(err, errlen, "%s %lld: %s", sp ? "savepoint" : "checkpoint",
			 (long long)id, strerror(-rc));
		free(b.p);
		return rc;
	}
	*text = b.p;
	return 0;
}

static void st_abandon(ckpt_store *s, int64_t id)
{
	(void)s;
	(void)id;
	/* The log positions of an abandoned checkpoint are simply never
	 * referenced; a savepoint's partial files stay (its _metadata is
	 * never written, so it cannot be restored). */
}

static void st_stats(ckpt_store *s, weir_checkpoint_stats *st)
{
	st->restored_id = s->restored_id;
	st->restore_bytes = s->restore_bytes;
	for (int c = 0; c < s->ncores; c++) {
		core_st *cs = &s->cores[c];
		if (cs->log)
			st->log_bytes += slog_bytes_written(cs->log);
		st->materializations += cs->mats;
		st->materialized_bytes += cs->mat_bytes;
		st->inflight_bytes += cs->inflight_bytes;
		if (cs->mat_max_ns / 1e6 > st->max_materialize_ms)
			st->max_materialize_ms = cs->mat_max_ns / 1e6;
		if (cs->flush_max_ns / 1e6 > st->max_flush_ms)
			st->max_flush_ms = cs->flush_max_ns / 1e6;
		if (cs->pause_max_ns / 1e6 > st->max_pause_ms)
			st->max_pause_ms = cs->pause_max_ns / 1e6;
		for (int b = 0; b < WEIR_PAUSE_BUCKETS; b++)
			st->pause_hist[b] += cs->pause_hist[b];
	}
}

static void st_stop(ckpt_store *s)
{
	if (!s)
		return;
	for (int i = 0; i < runtime_ntasks(s->rt); i++) {
		st_task *k = runtime_task(s->rt, i)->keyed;
		if (k)
			k->log = NULL;
	}
	for (int c = 0; s->cores && c < s->ncores; c++) {
		core_st *cs = &s->cores[c];
		if (cs->log)
			slog_close(cs->log);
		if (cs->sp)
			slog_close(cs->sp);
		if (cs->sp_done)
			slog_close(cs->sp_done);
		free(cs->tasks);
	}
	free(s->cores);
	free(s->uids);
	if (s->lock_fd >= 0)
		close(s->lock_fd); /* releases the flock */
	free(s);
}

const ckpt_store_ops checkpoint_store_ops = {
	.start = st_start,
	.begin = st_begin,
	.task_barrier = st_task_barrier,
	.core_sync = st_core_sync,
	.channel_state = st_channel_state,
	.core_sync_fd = st_core_sync_fd,
	.core_poll = st_core_poll,
	.core_busy = st_core_busy,
	.core_quiesce = st_core_quiesce,
	.complete = st_complete,
	.part = st_part,
	.abandon = st_abandon,
	.stats = st_stats,
	.stop = st_stop,
};
