/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `weir` command.  Today: `weir run` loads a job shared object and runs
 * it on the embedded local runtime (one reactor per core in this process),
 * as `flink run job.jar` does on a mini cluster.  Cluster commands
 * (coordinator, worker, list, cancel, savepoint) arrive with the cluster.
 *
 * Exit status: 0 success, 1 the job failed or could not start, 2 bad usage.
 */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weir/weir.h>

/* From core/: logging level and cancellation (exported by libweir). */
int log_parse_level(const char *s);
void log_set_level(int level);
void runtime_cancel_all(void);

static const char *prog = "weir";

static void usage_main(FILE *f)
{
	fprintf(f,
		"usage: %s <command> [options]\n"
		"\n"
		"Weir " WEIR_VERSION ": a stream processor.\n"
		"\n"
		"commands:\n"
		"  run       run a job shared object on the embedded local runtime\n"
		"  version   print the version\n"
		"  help      show help for a command (weir help run)\n"
		"\n"
		"Run '%s <command> --help' for a command's options.\n",
		prog, prog);
}

static void usage_run(FILE *f)
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
		"      --credits N         batches in flight per channel (16)\n"
		"      --max-parallelism N key groups (128)\n"
		"      --no-chaining       do not fuse forward edges\n"
		"      --no-pin            do not pin reactor threads to CPUs\n"
		"      --progress[=MS]     print progress every MS ms (default 1000;\n"
		"                          on by default when stderr is a terminal)\n"
		"      --no-progress       no progress lines\n"
		"      --metrics           print per-operator and per-core metrics\n"
		"      --plan              print the execution plan\n"
		"      --log-level L       error, warn (default), info or debug\n"
		"  -h, --help              this help\n"
		"\n"
		"Everything after JOB.so goes to the job; '%s run JOB.so --help' shows\n"
		"the job's own options.\n",
		prog, prog);
}

static int parse_int(const char *opt, const char *v, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long x = strtol(v, &end, 10);
	if (errno || *end || !*v || x < lo || x > hi) {
		fprintf(stderr, "%s run: %s: '%s' is not a number in [%ld, %ld]\n", prog,
			opt, v, lo, hi);
		return -1;
	}
	*out = x;
	return 0;
}

static void on_signal(int sig)
{
	(void)sig;
	runtime_cancel_all();
}

enum {
	OPT_CORES = 256, OPT_MODE, OPT_IDLE, OPT_BATCH, OPT_TIMEOUT, OPT_CREDITS,
	OPT_MAXP, OPT_NOCHAIN, OPT_NOPIN, OPT_PROGRESS, OPT_NOPROGRESS,
	OPT_METRICS, OPT_PLAN, OPT_LOG,
};

static int cmd_run(int argc, char **argv)
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
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	weir_env *env = weir_env_new();
	weir_config *cfg;
	int progress = isatty(STDERR_FILENO) ? 1000 : 0;
	int c, rc = 1;
	long v;
	void *dl = NULL;

	if (!env) {
		fprintf(stderr, "%s: out of memory\n", prog);
		return 1;
	}
	cfg = weir_env_config(env);
	optind = 1;
	/* '+': stop at JOB.so; what follows belongs to the job. */
	while ((c = getopt_long(argc, argv, "+p:h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (parse_int("--parallelism", optarg, 1, 4096, &v))
				goto usage;
			cfg->parallelism = (int)v;
			break;
		case OPT_CORES:
			if (parse_int("--cores", optarg, 1, 1024, &v))
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
			if (parse_int("--batch-size", optarg, 1, 65535, &v))
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
			if (parse_int("--credits", optarg, 1, 65536, &v))
				goto usage;
			cfg->channel_credits = (uint32_t)v;
			break;
		case OPT_MAXP:
			if (parse_int("--max-parallelism", optarg, 1, 32768, &v))
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
				if (parse_int("--progress", optarg, 1, 3600000, &v))
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
		case OPT_LOG: {
			int l = log_parse_level(optarg);
			if (l < 0) {
				fprintf(stderr, "%s run: --log-level: '%s' is not error, warn, "
					"info or debug\n", prog, optarg);
				goto usage;
			}
			log_set_level(l);
			break;
		}
		case 'h':
			usage_run(stdout);
			weir_env_free(env);
			return 0;
		default:
			goto usage;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "%s run: no job given (a JOB.so file)\n", prog);
		goto usage;
	}

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
	weir_job_fn fn = (weir_job_fn)dlsym(dl, WEIR_JOB_SYMBOL);
	if (!fn) {
		fprintf(stderr, "%s run: '%s' is not a Weir job: it exports no '%s' "
			"function\n", prog, job, WEIR_JOB_SYMBOL);
		goto out;
	}
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

	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	const char *base = strrchr(job, '/');
	rc = weir_env_execute(env, base ? base + 1 : job, progress) == 0 ? 0 : 1;
out:
	weir_env_free(env);
	if (dl)
		dlclose(dl);
	return rc;
usage:
	fprintf(stderr, "Try '%s run --help'.\n", prog);
	weir_env_free(env);
	return 2;
}

int main(int argc, char **argv)
{
	const char *cmd;

	if (argc < 2) {
		usage_main(stderr);
		return 2;
	}
	cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
		usage_main(stdout);
		return 0;
	}
	if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
		if (argc > 2 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
			printf("usage: %s version\n\nPrint Weir's version.\n", prog);
			return 0;
		}
		printf("weir %s\n", WEIR_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "help")) {
		if (argc < 3 || !strcmp(argv[2], "--help") || !strcmp(argv[2], "-h") ||
		    !strcmp(argv[2], "help")) {
			usage_main(stdout);
			return 0;
		}
		if (!strcmp(argv[2], "run")) {
			usage_run(stdout);
			return 0;
		}
		if (!strcmp(argv[2], "version")) {
			printf("usage: %s version\n\nPrint Weir's version.\n", prog);
			return 0;
		}
		fprintf(stderr, "%s help: unknown command '%s'\n", prog, argv[2]);
		return 2;
	}
	if (!strcmp(cmd, "run"))
		return cmd_run(argc - 1, argv + 1);
	fprintf(stderr, "%s: unknown command '%s'\n\n", prog, cmd);
	usage_main(stderr);
	return 2;
}
