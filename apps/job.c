/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A job as the `weir` command loads it: `weir run`'s options parsed into
 * the job's weir_config, JOB.so opened and its weir_job() entry point
 * called to build the dataflow.  Used by the local run (weir.c) and by a
 * worker building its part of a cluster job (cluster_cmds.c).
 */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <link.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weir/admin.h>
#include <weir/weir.h>

#include "cli.h"

/* Messages name paths; one cut short is still a useful message. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

const char *const prog = "weir";

void usage_run(FILE *f)
{
	fprintf(f,
		"usage: %s run [options] JOB.so [job arguments...]\n"
		"\n"
		"Load JOB.so, let its weir_job() entry point build the dataflow from\n"
		"the job arguments, and run it locally until its bounded inputs end\n"
		"(or until Ctrl-C for unbounded ones).\n"
		"\n"
		"options:\n"
		"  -p, --parallelism N     default parallelism of operators (1)\n"
		"      --cores N           reactor threads, one pinned per core\n"
		"                          (default: min(CPUs, largest parallelism))\n"
		"      --mode MODE         auto, streaming or batch (auto: batch when\n"
		"                          every source is bounded)\n"
		"      --idle-policy P     park (default) or busy-poll\n"
		"      --batch-size N      rows per batch (1024)\n"
		"      --buffer-timeout MS flush partial batches after MS milliseconds\n"
		"                          (default 1; 0 flushes after every input\n"
		"                          element, and a source after each batch)\n"
		"      --credits N         batches in flight per channel (16; 4x that\n"
		"                          on a cluster's channels between workers)\n"
		"      --max-parallelism N key groups (128)\n"
		"      --no-chaining       do not fuse forward edges\n"
		"      --no-pin            do not pin reactor threads to CPUs\n"
		"      --progress[=MS]     print progress every MS ms (default 1000;\n"
		"                          on by default when stderr is a terminal)\n"
		"      --no-progress       no progress lines\n"
		"      --metrics           print per-operator and per-core metrics\n"
		"      --plan              print the execution plan\n"
		"      --log-level L       error, warn (default), info or debug\n"
		"\n"
		"fault tolerance (docs/checkpoints.md):\n"
		"      --checkpoint-dir DIR       log state and keep checkpoints in DIR; a\n"
		"                                 run with the same DIR resumes from its\n"
		"                                 newest complete checkpoint\n"
		"      --checkpoint-interval MS   take a checkpoint every MS ms (default 0,\n"
		"                                 as in Flink: no periodic checkpoints, only\n"
		"                                 savepoints and the final checkpoint at the\n"
		"                                 end of bounded input; sinks commit and a\n"
		"                                 rerun resumes only at those)\n"
		"      --checkpoint-timeout MS    abandon a checkpoint after MS ms (60000)\n"
		"      --checkpoint-min-pause MS  at least MS ms between checkpoints (0)\n"
		"      --checkpoints-retained N   complete checkpoints kept (2)\n"
		"      --unaligned-checkpoints    barriers overtake queued data, which\n"
		"                                 joins the checkpoint: checkpoints\n"
		"                                 complete under backpressure (restore\n"
		"                                 at the same -p; savepoints stay aligned)\n"
		"      --savepoint-dir DIR        where savepoints go by default\n"
		"                                 (DIR/savepoint-<id>; default\n"
		"                                 <checkpoint-dir>/savepoints; with\n"
		"                                 neither, as in Flink, a savepoint needs\n"
		"                                 its directory: 'weir savepoint DIR')\n"
		"      --from-savepoint PATH      start from a savepoint, at any -p (or\n"
		"                                 from a retained checkpoint's manifest)\n"
		"      --allow-non-restored-state skip savepoint state no operator claims\n"
		"\n"
		"cluster (docs/cluster.md):\n"
		"      --cluster ADDR:PORT        submit to a coordinator instead of running\n"
		"                                 here; its workers run the job, the\n"
		"                                 --checkpoint-dir must be shared by all\n"
		"      --secret-file F            the cluster's shared secret\n"
		"  -h, --help              this help\n"
		"\n"
		"Everything after JOB.so goes to the job; '%s run JOB.so --help' shows\n"
		"the job's own options.\n",
		prog, prog);
}

int parse_int(const char *cmd, const char *opt, const char *v, long lo, long hi,
	      long *out)
{
	char *end;
	errno = 0;
	long x = strtol(v, &end, 10);
	if (errno || *end || !*v || x < lo || x > hi) {
		fprintf(stderr, "%s %s: %s: '%s' is not a number in [%ld, %ld]\n", prog,
			cmd, opt, v, lo, hi);
		return -1;
	}
	*out = x;
	return 0;
}

enum {
	OPT_CORES = 256, OPT_MODE, OPT_IDLE, OPT_BATCH, OPT_TIMEOUT, OPT_CREDITS,
	OPT_MAXP, OPT_NOCHAIN, OPT_NOPIN, OPT_PROGRESS, OPT_NOPROGRESS,
	OPT_METRICS, OPT_PLAN, OPT_LOG, OPT_CKDIR, OPT_CKINT, OPT_CKTIMEOUT,
	OPT_CKPAUSE, OPT_CKRETAIN, OPT_SPDIR, OPT_FROMSP, OPT_ALLOWNR, OPT_UNALIGNED,
	OPT_CLUSTER, OPT_SECRET,
};

/* STT_FUNC, STT_OBJECT, ... of a symbol table entry (ElfW: this process's
 * ELF class). */
static unsigned sym_type(const ElfW(Sym) *se)
{
#if __ELF_NATIVE_CLASS == 64
	return ELF64_ST_TYPE(se->st_info);
#else
	return ELF32_ST_TYPE(se->st_info);
#endif
}

void loaded_free(loaded_job *L)
{
	weir_env_free(L->env);
	if (L->dl)
		dlclose(L->dl);
	L->env = NULL;
	L->dl = NULL;
}

/*
 * Parse `weir run` options, load JOB.so and build the job.  0 ready; 1
 * failed (printed); 2 bad usage (printed); 3 help printed.  L is freed
 * with loaded_free in every case.
 */
int run_prepare(int argc, char **argv, loaded_job *L)
{
	static const struct option opts[] = {
		{ "parallelism", required_argument, NULL, 'p' },
		{ "cores", required_argument, NULL, OPT_CORES },
		{ "mode", required_argument, NULL, OPT_MODE },
		{ "idle-policy", required_argument, NULL, OPT_IDLE },
		{ "batch-size", required_argument, NULL, OPT_BATCH },
		{ "buffer-timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "credits", required_argument, NULL, OPT_CREDITS },
		{ "max-parallelism", required_argument, NULL, OPT_MAXP },
		{ "no-chaining", no_argument, NULL, OPT_NOCHAIN },
		{ "no-pin", no_argument, NULL, OPT_NOPIN },
		{ "progress", optional_argument, NULL, OPT_PROGRESS },
		{ "no-progress", no_argument, NULL, OPT_NOPROGRESS },
		{ "metrics", no_argument, NULL, OPT_METRICS },
		{ "plan", no_argument, NULL, OPT_PLAN },
		{ "log-level", required_argument, NULL, OPT_LOG },
		{ "checkpoint-dir", required_argument, NULL, OPT_CKDIR },
		{ "checkpoint-interval", required_argument, NULL, OPT_CKINT },
		{ "checkpoint-timeout", required_argument, NULL, OPT_CKTIMEOUT },
		{ "checkpoint-min-pause", required_argument, NULL, OPT_CKPAUSE },
		{ "checkpoints-retained", required_argument, NULL, OPT_CKRETAIN },
		{ "savepoint-dir", required_argument, NULL, OPT_SPDIR },
		{ "from-savepoint", required_argument, NULL, OPT_FROMSP },
		{ "allow-non-restored-state", no_argument, NULL, OPT_ALLOWNR },
		{ "unaligned-checkpoints", no_argument, NULL, OPT_UNALIGNED },
		{ "cluster", required_argument, NULL, OPT_CLUSTER },
		{ "secret-file", required_argument, NULL, OPT_SECRET },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	weir_env *env = weir_env_new();
	weir_config *cfg;
	int progress = isatty(STDERR_FILENO) ? 1000 : 0;
	int c, rc = 1;
	long v;
	void *dl = NULL;

	memset(L, 0, sizeof(*L));
	L->env = env;

	if (!env) {
		fprintf(stderr, "%s: out of memory\n", prog);
		return 1;
	}
	cfg = weir_env_config(env);
	optind = 0; /* full re-initialisation: a worker parses after its own options */
	/* '+': stop at JOB.so; what follows belongs to the job. */
	while ((c = getopt_long(argc, argv, "+p:h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (parse_int("run", "--parallelism", optarg, 1, 4096, &v))
				goto usage;
			cfg->parallelism = (int)v;
			break;
		case OPT_CORES:
			if (parse_int("run", "--cores", optarg, 1, 1024, &v))
				goto usage;
			cfg->cores = (int)v;
			break;
		case OPT_MODE:
			if (!strcmp(optarg, "auto"))
				cfg->mode = WEIR_MODE_AUTOMATIC;
			else if (!strcmp(optarg, "streaming"))
				cfg->mode = WEIR_MODE_STREAMING;
			else if (!strcmp(optarg, "batch"))
				cfg->mode = WEIR_MODE_BATCH;
			else {
				fprintf(stderr, "%s run: --mode: '%s' is not auto, streaming or batch\n",
					prog, optarg);
				goto usage;
			}
			break;
		case OPT_IDLE:
			if (!strcmp(optarg, "park"))
				cfg->idle = WEIR_IDLE_PARK;
			else if (!strcmp(optarg, "busy-poll"))
				cfg->idle = WEIR_IDLE_BUSY_POLL;
			else {
				fprintf(stderr, "%s run: --idle-policy: '%s' is not park or busy-poll\n",
					prog, optarg);
				goto usage;
			}
			break;
		case OPT_BATCH:
			if (parse_int("run", "--batch-size", optarg, 1, 65535, &v))
				goto usage;
			cfg->batch_rows = (uint32_t)v;
			break;
		case OPT_TIMEOUT: {
			char *end;
			double ms = strtod(optarg, &end);
			if (*end || !*optarg || !(ms >= 0 && ms <= 3600e3)) { /* NaN too */
				fprintf(stderr, "%s run: --buffer-timeout: '%s' is not a number of "
					"milliseconds\n", prog, optarg);
				goto usage;
			}
			cfg->buffer_timeout_us = (int64_t)(ms * 1000);
			break;
		}
		case OPT_CREDITS:
			if (parse_int("run", "--credits", optarg, 1, 65536, &v))
				goto usage;
			cfg->channel_credits = (uint32_t)v;
			break;
		case OPT_MAXP:
			if (parse_int("run", "--max-parallelism", optarg, 1, 32768, &v))
				goto usage;
			cfg->max_parallelism = (int)v;
			break;
		case OPT_NOCHAIN:
			cfg->chaining = false;
			break;
		case OPT_NOPIN:
			cfg->pin = false;
			break;
		case OPT_PROGRESS:
			progress = 1000;
			if (optarg) {
				if (parse_int("run", "--progress", optarg, 1, 3600000, &v))
					goto usage;
				progress = (int)v;
			}
			break;
		case OPT_NOPROGRESS:
			progress = 0;
			break;
		case OPT_METRICS:
			cfg->print_metrics = true;
			break;
		case OPT_PLAN:
			cfg->print_plan = true;
			break;
		case OPT_LOG:
			if (weir_log_set_level(optarg) < 0) {
				fprintf(stderr, "%s run: --log-level: '%s' is not error, warn, "
					"info or debug\n", prog, optarg);
				goto usage;
			}
			break;
		case OPT_CKDIR:
			cfg->checkpoint_dir = optarg;
			break;
		case OPT_CKINT:
			if (parse_int("run", "--checkpoint-interval", optarg, 0, 86400000, &v))
				goto usage;
			cfg->checkpoint_interval_ms = v;
			break;
		case OPT_CKTIMEOUT:
			if (parse_int("run", "--checkpoint-timeout", optarg, 1, 86400000, &v))
				goto usage;
			cfg->checkpoint_timeout_ms = v;
			break;
		case OPT_CKPAUSE:
			if (parse_int("run", "--checkpoint-min-pause", optarg, 0, 86400000, &v))
				goto usage;
			cfg->checkpoint_min_pause_ms = v;
			break;
		case OPT_CKRETAIN:
			if (parse_int("run", "--checkpoints-retained", optarg, 1, 1000, &v))
				goto usage;
			cfg->checkpoints_retained = (int)v;
			break;
		case OPT_SPDIR:
			cfg->savepoint_dir = optarg;
			break;
		case OPT_FROMSP:
			cfg->restore_savepoint = optarg;
			break;
		case OPT_ALLOWNR:
			cfg->allow_non_restored_state = true;
			break;
		case OPT_UNALIGNED:
			cfg->checkpoint_unaligned = true;
			break;
		case OPT_CLUSTER:
			L->cluster = optarg;
			break;
		case OPT_SECRET:
			L->secret = optarg;
			break;
		case 'h':
			usage_run(stdout);
			return 3;
		default:
			goto usage;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "%s run: no job given (a JOB.so file)\n", prog);
		goto usage;
	}
	if (cfg->checkpoint_interval_ms && !cfg->checkpoint_dir) {
		fprintf(stderr, "%s run: --checkpoint-interval needs --checkpoint-dir\n", prog);
		goto usage;
	}

	if (L->cluster && cfg->checkpoint_unaligned) {
		fprintf(stderr, "%s run: --unaligned-checkpoints is not available on a "
			"cluster yet (barriers cannot overtake data on the network)\n", prog);
		goto usage;
	}
	if (L->cluster && cfg->checkpoint_dir && cfg->checkpoint_dir[0] != '/') {
		fprintf(stderr, "%s run: --checkpoint-dir must be an absolute path that every "
			"worker reaches (a shared directory) on a cluster\n", prog);
		goto usage;
	}
	L->job_arg = optind;
	const char *job = argv[optind];
	char path[4096];
	/* dlopen searches the library path for a bare name: make it a path. */
	snprintf(path, sizeof(path), "%s%s", strchr(job, '/') ? "" : "./", job);
	if (access(path, R_OK) != 0) {
		fprintf(stderr, "%s run: cannot read job '%s': %s\n", prog, job,
			strerror(errno));
		goto out;
	}
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		fprintf(stderr, "%s run: cannot load job '%s': %s\n", prog, job, dlerror());
		goto out;
	}
	void *sym = dlsym(dl, WEIR_JOB_SYMBOL);
	if (!sym) {
		fprintf(stderr, "%s run: '%s' is not a Weir job: it exports no '%s' "
			"function\n", prog, job, WEIR_JOB_SYMBOL);
		goto out;
	}
	/* Calling a data object would jump into it: check the symbol's type. */
	Dl_info info;
	const ElfW(Sym) *se = NULL;
	if (!dladdr1(sym, &info, (void **)&se, RTLD_DL_SYMENT) || !se ||
	    sym_type(se) != STT_FUNC) {
		fprintf(stderr, "%s run: '%s' is not a Weir job: its '%s' is %s, not "
			"a function (int %s(weir_env *env, int argc, char **argv))\n", prog,
			job, WEIR_JOB_SYMBOL, !se ? "of unknown type"
			: sym_type(se) == STT_OBJECT ? "a data object"
			: "not a function symbol", WEIR_JOB_SYMBOL);
		goto out;
	}
	weir_job_fn fn = (weir_job_fn)sym;
	int jargc = argc - optind;
	char **jargv = argv + optind;
	optind = 0; /* full getopt re-initialisation for the job's parser */
	int jr = fn(env, jargc, jargv);
	if (jr != 0) {
		rc = jr == 2 || jr < 0 ? 2 : jr;
		if (weir_env_error(env))
			fprintf(stderr, "%s: job '%s': %s\n", prog, job, weir_env_error(env));
		goto out;
	}
	if (weir_env_error(env)) {
		fprintf(stderr, "%s: job '%s': %s\n", prog, job, weir_env_error(env));
		goto out;
	}

	const char *base = strrchr(job, '/');
	snprintf(L->name, sizeof(L->name), "%s", base ? base + 1 : job);
	L->dl = dl;
	L->progress = progress;
	return 0;
out:
	L->dl = dl;
	return rc;
usage:
	fprintf(stderr, "Try '%s run --help'.\n", prog);
	L->dl = dl;
	return 2;
}

