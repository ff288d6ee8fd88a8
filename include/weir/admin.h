/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The operating interface of libweir: what the `weir` command uses to run
 * a job's surroundings -- the log level, reaching the job this process
 * runs (cancel, savepoint), a cluster's coordinator and workers, and the
 * clients that submit to and act on a cluster.  A job does not include
 * this header (weir/weir.h does not); a tool that operates jobs does, as
 * the REST server will.
 *
 * Why a header of its own and not internal prototypes: libweir exports
 * only what include/weir/ declares (weir/api.h), so the command reaches
 * the runtime the way any other tool would, and the library's symbol
 * table is exactly its documented surface.
 *
 * Threads: every function here may be called from any thread unless it
 * says otherwise; the ones marked async-signal-safe may be called from a
 * signal handler.
 */
#ifndef WEIR_ADMIN_H
#define WEIR_ADMIN_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <weir/datastream.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- logging ------------------------------------------------------------ */

/* Log only messages at `name` ("error", "warn", "info" or "debug",
 * any case) and above, on stderr.  0, or -EINVAL for another name. */
WEIR_API int weir_log_set_level(const char *name);

/* ---- the job this process runs ------------------------------------------ */

/* Cancel every job this process runs: sources stop, the job ends with
 * -ECANCELED and takes no final checkpoint.  Async-signal-safe. */
WEIR_API void weir_cancel_all(void);

/*
 * Take a savepoint of the job this process runs into `dir` (NULL: the
 * job's default savepoint directory), and with `stop` end the job after
 * it.  Blocks until the savepoint completed or failed.  0 with the
 * savepoint's path in msg, or -errno with the reason in msg.  Not from the
 * job's own threads.
 */
WEIR_API int weir_savepoint(const char *dir, bool stop, char *msg, size_t len);

/* Ask for a savepoint into the default directory, taken at the
 * coordinator's next turn; nobody waits for it.  Async-signal-safe. */
WEIR_API void weir_savepoint_async(void);

/*
 * Plan env's job as weir_env_execute would (chains, exchanges, cores) and
 * describe it in buf without running it.  0, or -errno with the reason in
 * buf.  Graph-building thread.
 */
WEIR_API int weir_env_describe_plan(weir_env *env, char *buf, size_t len);

/* ---- clusters: coordinator and workers ---------------------------------- */

/* The most bytes of a shared secret (--secret-file). */
#define WEIR_SECRET_MAX 4096

/*
 * Read a shared secret from `path` (its bytes, a trailing newline
 * dropped) into key (room for WEIR_SECRET_MAX bytes).  0, or -errno with
 * the reason in err: unreadable, empty, or too long.
 */
WEIR_API int weir_cluster_read_secret(const char *path, uint8_t *key, size_t *keylen,
				      char *err, size_t errlen);

typedef struct weir_coordinator_opts {
	const char *listen;          /* "IP:PORT" */
	const uint8_t *key;          /* shared secret (keylen 0: none) */
	size_t keylen;
	int heartbeat_timeout_ms;    /* a worker silent this long is dead */
	/* Merge the workers' parts of a checkpoint's manifest and write it
	 * as dir/name: weir_manifest_merge_write (the manifest's format is
	 * the state layer's, which the network layer does not know). */
	int (*manifest_write)(const char *dir, const char *name,
			      const char *const *parts, int nparts, char *err,
			      size_t errlen);
} weir_coordinator_opts;

/* The workers' parts of checkpoint manifest merged into one, written
 * atomically as dir/name (written, synced, renamed).  0, or -errno with
 * the reason in err (a part that does not parse is named). */
WEIR_API int weir_manifest_merge_write(const char *dir, const char *name,
				       const char *const *parts, int nparts, char *err,
				       size_t errlen);

/* Serve as a cluster's coordinator until weir_cluster_stop().  0, or
 * -errno (printed).  Its own thread; the options are read at the call. */
WEIR_API int weir_coordinator_main(const weir_coordinator_opts *o);

/* This worker's share of a deployed job (opaque): which cores, and the
 * data plane and checkpoint calls that tie it to the others. */
typedef struct weir_cluster_part weir_cluster_part;

/* Run env's job as this worker's part of a cluster deployment, as
 * weir_env_execute runs a whole job.  0 or -errno. */
WEIR_API int weir_env_execute_part(weir_env *env, const char *job_name, int progress_ms,
				   const weir_cluster_part *part);

typedef struct weir_worker_opts {
	const char *coordinator;     /* "HOST:PORT" */
	int cores;
	const char *transport;       /* "tcp" or "dpdk" */
	const char *data_addr;       /* IP for the data plane (NULL: the
				      * control connection's local address) */
	const char *device;          /* dpdk: EAL device */
	bool no_zerocopy;            /* tcp: plain sends */
	const uint8_t *key;          /* shared secret (keylen 0: none) */
	size_t keylen;
	/*
	 * What a job is -- a shared object built from arguments -- is the
	 * caller's business.  job_load: load the job at so_path and build it
	 * with the `weir run` arguments argv (JOB.so's place holds so_path),
	 * planned over ncores cores; *plan gets the plan's description.  0,
	 * or an error with a message in err.  job_run: run it as this
	 * worker's part (weir_env_execute_part), on the worker's job thread.
	 * job_free: release what job_load made.
	 */
	int (*job_load)(const char *so_path, int argc, char **argv, int ncores,
			void **job, char *plan, size_t planlen, char *err, size_t errlen);
	int (*job_run)(void *job, const weir_cluster_part *part, char *err, size_t errlen);
	void (*job_free)(void *job);
} weir_worker_opts;

/* Register with the coordinator and serve its jobs until
 * weir_cluster_stop() or the coordinator goes away.  0, or -errno
 * (printed). */
WEIR_API int weir_worker_main(const weir_worker_opts *o);

/* Make weir_coordinator_main / weir_worker_main return.
 * Async-signal-safe. */
WEIR_API void weir_cluster_stop(void);

/* ---- clusters: clients -------------------------------------------------- */

/*
 * What the coordinator answers: progress lines (final false), then one
 * final answer (final true; ok false for an error).  text is not
 * NUL-terminated.
 */
typedef void (*weir_reply_fn)(void *arg, bool final, bool ok, const char *text,
			      size_t len);

/* A job to submit: its shared object's bytes, the `weir run` arguments
 * without the cluster's own (the JOB.so argument written "@JOB"), and the
 * configuration its checkpoints follow. */
typedef struct weir_cluster_job {
	const char *name;
	const void *so;
	size_t so_len;
	const char *const *args;
	int nargs;
	const weir_config *cfg;
} weir_cluster_job;

/*
 * Submit a job to the coordinator at addr and follow it to its end,
 * passing the coordinator's replies to fn.  When *interrupted becomes
 * non-zero (a signal handler's flag; may be NULL), the job is cancelled
 * and followed to its end.  0 when the job succeeded, 1 when it failed,
 * or -errno when the coordinator could not be reached or went away (the
 * reason in err).
 */
WEIR_API int weir_cluster_submit(const char *addr, const uint8_t *key, size_t keylen,
				 const weir_cluster_job *job,
				 volatile sig_atomic_t *interrupted, weir_reply_fn fn,
				 void *arg, char *err, size_t errlen);

typedef enum weir_cluster_action {
	WEIR_CLUSTER_LIST = 1,       /* the jobs and their plans */
	WEIR_CLUSTER_CANCEL,         /* cancel a job */
	WEIR_CLUSTER_SAVEPOINT,      /* take a savepoint into dir */
	WEIR_CLUSTER_STOP,           /* take a savepoint, then stop the job */
} weir_cluster_action;

/*
 * Ask the coordinator at addr to act on job `job` (0: its only job); dir,
 * for savepoints, must be an absolute path every worker reaches (NULL:
 * the job's default).  0 when the coordinator did it, 1 when it answered
 * with an error, -errno when it could not be reached (reason in err).
 */
WEIR_API int weir_cluster_request(const char *addr, const uint8_t *key, size_t keylen,
				  weir_cluster_action action, uint32_t job, const char *dir,
				  weir_reply_fn fn, void *arg, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
