/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the `weir` command's files share.  weir.c: main and the local
 * commands; cluster_cmds.c: coordinator, worker and the --cluster clients;
 * job.c: a job loaded from its shared object with `weir run`'s options.
 * Calls go weir.c -> cluster_cmds.c -> job.c (and weir.c -> job.c), never
 * back.  The library is reached through weir/weir.h and weir/admin.h only.
 */
#ifndef WEIR_APPS_CLI_H
#define WEIR_APPS_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include <weir/weir.h>

/* ---- job.c ------------------------------------------------------------------- */

/* The command's name in messages. */
extern const char *const prog;

/* Parse an integer option value in [lo, hi]; non-zero if not, printed as
 * "weir CMD: OPT: ..." (cmd: the command, "run", "worker", ...). */
int parse_int(const char *cmd, const char *opt, const char *v, long lo, long hi,
	      long *out);

/* `weir run --help`. */
void usage_run(FILE *f);

/* A job loaded from its shared object and built from its arguments. */
typedef struct loaded_job {
	weir_env *env;
	void *dl;
	int progress;
	char name[256];
	const char *cluster;   /* --cluster ADDR */
	const char *secret;    /* --secret-file F */
	int job_arg;           /* argv index of JOB.so */
} loaded_job;

/*
 * Parse `weir run` options (argv[0] is "run"), load JOB.so and build the
 * job.  0 ready; 1 failed (printed); 2 bad usage (printed); 3 help
 * printed.  Free L with loaded_free in every case.
 */
int run_prepare(int argc, char **argv, loaded_job *L);
void loaded_free(loaded_job *L);

/* ---- cluster_cmds.c ------------------------------------------------------------ */

/* `weir run --cluster ADDR ...`: submit the prepared job L. */
int submit_cluster(int argc, char **argv, loaded_job *L);
int cmd_coordinator(int argc, char **argv);
int cmd_worker(int argc, char **argv);
/* `weir list|cancel|savepoint|stop --cluster ADDR ...`: handled if argv
 * names a cluster (returns the exit status), else -1. */
int cluster_client_cmd(const char *cmd, int argc, char **argv);

#endif
