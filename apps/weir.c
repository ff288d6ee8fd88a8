/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `weir` command.  `weir run` loads a job shared object and runs it on
 * the embedded local runtime (one reactor per core in this process), as
 * `flink run job.jar` does on a mini cluster.  A running local job listens
 * on a control socket, "<run dir>/<pid>.sock" (run dir: $WEIR_RUN_DIR, else
 * /tmp/weir-<uid>), through which `weir list`, `weir savepoint` and `weir
 * stop` reach it.  The protocol is one request line, one answer line:
 *
 *   info                 -> "job <name> pid <pid> checkpoint-dir <dir|->"
 *   savepoint [DIR]      -> "ok <savepoint path>" | "error <why>"
 *   stop [DIR]           -> the same, then the job stops
 *   cancel               -> "ok cancelled"
 *
 * SIGUSR1 is the fallback: a savepoint into the default directory.  Cluster
 * commands (coordinator, worker) arrive with the cluster.
 *
 * Exit status: 0 success, 1 the job failed or could not start, 2 bad usage.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <weir/weir.h>

#include "weir.h"

/* Messages name paths; one cut short is still a useful message. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

/* From core/: logging level and cancellation (exported by libweir). */
int log_parse_level(const char *s);
void log_set_level(int level);
void runtime_cancel_all(void);
int runtime_savepoint(const char *dir, bool stop, char *msg, size_t len);
void runtime_savepoint_async(void);

const char *prog = "weir";

static void usage_main(FILE *f)
{
	fprintf(f,
		"usage: %s <command> [options]\n"
		"\n"
		"Weir " WEIR_VERSION ": a stream processor.\n"
		"\n"
		"commands:\n"
		"  run       run a job shared object on the embedded local runtime\n"
		"  list      list the jobs running on this machine\n"
		"  savepoint take a savepoint of a running job\n"
		"  stop      stop a running job, with --savepoint after a savepoint\n"
		"  cancel    cancel a running job\n"
		"  coordinator  run a cluster's coordinator\n"
		"  worker    run a cluster worker\n"
		"(list, savepoint, stop and cancel take --cluster ADDR:PORT [--job N]\n"
		" [--secret-file F] to act on a cluster's job; run --cluster submits one)\n"
		"  nexmark   Nexmark benchmark tools: 'nexmark gen' dumps events as CSV\n"
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

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		runtime_savepoint_async();
	else
		runtime_cancel_all();
}

/* ---- the control socket ------------------------------------------------------ */

static void run_dir(char *out, size_t len)
{
	const char *d = getenv("WEIR_RUN_DIR");
	if (d && *d)
		snprintf(out, len, "%s", d);
	else
		snprintf(out, len, "/tmp/weir-%u", (unsigned)getuid());
}

static struct {
	int fd;
	char path[108];
	char job[256];
	const char *ckpt_dir;
	pthread_t thread;
} ctl = { .fd = -1 };

static void ctl_reply(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ctl_reply(int fd, const char *fmt, ...)
{
	char buf[4608];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	ssize_t w = write(fd, buf, (size_t)n);
	(void)w;
}

static void *ctl_main(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(ctl.fd, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL; /* closed at exit */
		}
		char line[4096];
		size_t n = 0;
		struct timeval tv = { .tv_sec = 5 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		while (n < sizeof(line) - 1) {
			ssize_t r = read(fd, line + n, 1);
			if (r <= 0 || line[n] == '\n')
				break;
			n++;
		}
		line[n] = 0;
		char msg[4400];
		bool stop = !strncmp(line, "stop", 4) && (line[4] == 0 || line[4] == ' ');
		if (!strcmp(line, "info")) {
			ctl_reply(fd, "job %s pid %d checkpoint-dir %s", ctl.job, (int)getpid(),
				  ctl.ckpt_dir ? ctl.ckpt_dir : "-");
		} else if (stop || (!strncmp(line, "savepoint", 9) &&
				    (line[9] == 0 || line[9] == ' '))) {
			const char *dir = line + (stop ? 4 : 9);
			while (*dir == ' ')
				dir++;
			int rc = runtime_savepoint(*dir ? dir : NULL, stop, msg, sizeof(msg));
			char cwd[2048];
			/* A path relative to this job's directory means nothing to
			 * the client: answer with an absolute one. */
			if (rc == 0 && msg[0] != '/' && getcwd(cwd, sizeof(cwd)))
				ctl_reply(fd, "ok %s/%s", cwd, msg);
			else if (rc == 0)
				ctl_reply(fd, "ok %s", msg);
			else
				ctl_reply(fd, "error %s", msg);
		} else if (!strcmp(line, "cancel")) {
			runtime_cancel_all();
			ctl_reply(fd, "ok cancelled");
		} else {
			ctl_reply(fd, "error unknown request '%.200s' (info, savepoint [DIR], "
				  "stop [DIR], cancel)", line);
		}
		close(fd);
	}
}

/* Listen on <run dir>/<pid>.sock; a job runs without it if this fails. */
static void ctl_start(const char *job, const char *ckpt_dir)
{
	char dir[4096];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	run_dir(dir, sizeof(dir));
	if (mkdir(dir, 0700) && errno != EEXIST)
		return;
	int n = snprintf(ctl.path, sizeof(ctl.path), "%s/%d.sock", dir, (int)getpid());
	if (n < 0 || n >= (int)sizeof(ctl.path))
		return;
	snprintf(ctl.job, sizeof(ctl.job), "%s", job);
	ctl.ckpt_dir = ckpt_dir;
	unlink(ctl.path);
	memcpy(sa.sun_path, ctl.path, strlen(ctl.path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 8)) {
		close(fd);
		return;
	}
	ctl.fd = fd;
	if (pthread_create(&ctl.thread, NULL, ctl_main, NULL)) {
		close(fd);
		ctl.fd = -1;
		unlink(ctl.path);
	}
}

static void ctl_stop(void)
{
	if (ctl.fd < 0)
		return;
	unlink(ctl.path);
	/* accept() then fails and the thread returns (a client mid-request
	 * holds it at most its 5 s receive timeout). */
	shutdown(ctl.fd, SHUT_RDWR);
	pthread_join(ctl.thread, NULL);
	close(ctl.fd);
	ctl.fd = -1;
}

/* Send one request to the job listening at `path`; its answer into out. */
static int ctl_call(const char *path, const char *req, char *out, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int e = errno;
		close(fd);
		return -e;
	}
	ssize_t w = write(fd, req, strlen(req));
	w += write(fd, "\n", 1);
	(void)w;
	size_t n = 0;
	while (n < len - 1) {
		ssize_t r = read(fd, out + n, len - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	while (n && (out[n - 1] == '\n'))
		n--;
	out[n] = 0;
	return n ? 0 : -EPROTO;
}

/* The sockets of running jobs; stale ones (no listener) are removed. */
static int find_jobs(char paths[][300], int max)
{
	char dir[4096];
	int n = 0;
	run_dir(dir, sizeof(dir));
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d)) && n < max) {
		int pid;
		char tail[8];
		if (sscanf(e->d_name, "%d.soc%1s", &pid, tail) != 2 || strcmp(tail, "k"))
			continue;
		snprintf(paths[n], 300, "%.200s/%.90s", dir, e->d_name);
		char info[512];
		if (ctl_call(paths[n], "info", info, sizeof(info)) == -ECONNREFUSED) {
			unlink(paths[n]);
			continue;
		}
		n++;
	}
	if (d)
		closedir(d);
	return n;
}

static int cmd_list(int argc, char **argv)
{
	char paths[64][300];
	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: %s list\n\nList the jobs running on this machine (their "
		       "control sockets are in $WEIR_RUN_DIR, else /tmp/weir-<uid>).\n", prog);
		return 0;
	}
	int n = find_jobs(paths, 64);
	if (!n) {
		printf("no running jobs\n");
		return 0;
	}
	for (int i = 0; i < n; i++) {
		char info[512];
		if (ctl_call(paths[i], "info", info, sizeof(info)) == 0)
			printf("%s\n", info);
	}
	return 0;
}

/*
 * weir savepoint [--pid PID] [DIR], weir stop [--pid PID] [--savepoint] [DIR]
 * and weir cancel [--pid PID]: `name` is the command, for its messages.
 */
static int cmd_savepoint(int argc, char **argv, const char *name)
{
	static const struct option opts[] = {
		{ "pid", required_argument, NULL, 'P' },
		{ "savepoint", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool cancel = !strcmp(name, "cancel");
	bool stop = cancel || !strcmp(name, "stop");
	long pid = 0;
	bool with_sp = !stop;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'P':
			if (parse_int(name, "--pid", optarg, 1, 1L << 30, &pid))
				return 2;
			break;
		case 'S':
			if (cancel) {
				fprintf(stderr, "%s cancel: --savepoint: a cancelled job takes no "
					"savepoint; use '%s stop --savepoint'\n", prog, prog);
				return 2;
			}
			with_sp = true;
			break;
		case 'h':
			if (cancel)
				printf("usage: %s cancel [--pid PID]\n"
				       "       %s cancel --cluster ADDR:PORT [--job N] [--secret-file F]\n\n"
				       "Cancel a running job: no savepoint, sinks keep only what the last\n"
				       "checkpoint committed.\n", prog, prog);
			else if (stop)
				printf("usage: %s stop --savepoint [--pid PID] [DIR]\n\n"
				       "Stop a running local job after a savepoint: its sources stop\n"
				       "at the savepoint's barrier, what is in flight drains through\n"
				       "the pipeline into the savepoint, sinks commit, the job ends.\n"
				       "The savepoint goes to DIR/savepoint-<id> (default: the job's\n"
				       "--savepoint-dir, else <checkpoint-dir>/savepoints; a job with\n"
				       "neither needs DIR).  Without --savepoint the job is cancelled.\n"
				       "--pid picks the job when several run (see '%s list').\n",
				       prog, prog);
			else
				printf("usage: %s savepoint [--pid PID] [DIR]\n\n"
				       "Take a savepoint of a running local job, into\n"
				       "DIR/savepoint-<id> (default: the job's --savepoint-dir, else\n"
				       "<checkpoint-dir>/savepoints; a job with neither needs DIR),\n"
				       "and print its absolute path.  The job goes on.  Restore it with\n"
				       "'%s run --from-savepoint PATH [-p N] JOB.so ...'.  Fallback\n"
				       "without the control socket: kill -USR1 <pid> (default DIR).\n"
				       "--pid picks the job when several run (see '%s list').\n",
				       prog, prog, prog);
			return 0;
		default:
			fprintf(stderr, "Try '%s %s --help'.\n", prog, name);
			return 2;
		}
	}
	if (argc - optind > (cancel ? 0 : 1)) {
		if (cancel)
			fprintf(stderr, "%s cancel: unexpected argument '%s'\n", prog,
				argv[optind]);
		else
			fprintf(stderr, "%s %s: too many arguments\n", prog, name);
		fprintf(stderr, "Try '%s %s --help'.\n", prog, name);
		return 2;
	}
	const char *dir = optind < argc ? argv[optind] : NULL;
	char path[300];
	if (pid) {
		char rd[4096];
		run_dir(rd, sizeof(rd));
		snprintf(path, sizeof(path), "%.280s/%ld.sock", rd, pid);
	} else {
		char paths[64][300];
		int n = find_jobs(paths, 64);
		if (n != 1) {
			fprintf(stderr, "%s %s: %s; name one with --pid (see '%s list')\n", prog,
				name, n ? "several jobs are running" : "no running job found",
				prog);
			return 1;
		}
		snprintf(path, sizeof(path), "%s", paths[0]);
	}
	char req[4200], out[4600];
	char absdir[4096];
	if (dir && dir[0] != '/' && getcwd(absdir, sizeof(absdir))) {
		size_t l = strlen(absdir);
		snprintf(absdir + l, sizeof(absdir) - l, "/%s", dir);
		dir = absdir;
	}
	if (stop && !with_sp)
		snprintf(req, sizeof(req), "cancel");
	else
		snprintf(req, sizeof(req), "%s%s%s", stop ? "stop" : "savepoint",
			 dir ? " " : "", dir ? dir : "");
	int rc = ctl_call(path, req, out, sizeof(out));
	if (pid && (rc == -ENOENT || rc == -ECONNREFUSED)) {
		fprintf(stderr, "%s %s: no running job with pid %ld (see '%s list')\n", prog,
			name, pid, prog);
		return 1;
	}
	if (rc < 0) {
		fprintf(stderr, "%s %s: %s: %s\n", prog, name, path, strerror(-rc));
		return 1;
	}
	if (strncmp(out, "ok ", 3)) {
		fprintf(stderr, "%s %s: %s\n", prog, name,
			!strncmp(out, "error ", 6) ? out + 6 : out);
		return 1;
	}
	printf("%s\n", out + 3);
	return 0;
}

/* ---- weir nexmark ------------------------------------------------------------ */

static void usage_nexmark(FILE *f)
{
	fprintf(f,
		"usage: %s nexmark gen --events N --out DIR [options]\n"
		"\n"
		"Write the events of a bounded Nexmark run as CSV files in DIR (created\n"
		"if missing): person.csv, auction.csv and bid.csv, each with a header\n"
		"line and the columns of the benchmark's schema, timestamps as integer\n"
		"milliseconds, rows in emission order.  They hold exactly the events a\n"
		"Nexmark query job run with the same options sees.\n"
		"\n"
		"options:\n"
		"  --events N       events in all (required, > 0)\n"
		"  --event-rate R   events per second of event time (10000000)\n"
		"  --ooo-group G    emission order out of order in groups of G (1)\n"
		"  --seed S         random seed (0)\n"
		"  --out DIR        where the files go (required)\n"
		"  -h, --help       this help\n",
		prog);
}

static int cmd_nexmark(int argc, char **argv)
{
	weir_nexmark_conf nc = { 0 };
	const char *out = NULL;
	char err[4400];

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage_nexmark(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "gen")) {
		fprintf(stderr, "%s nexmark: unknown command '%s' (only 'gen')\n", prog, argv[1]);
		fprintf(stderr, "Try '%s nexmark --help'.\n", prog);
		return 2;
	}
	argc--;
	argv++;
	if (weir_nexmark_options(&argc, argv, &nc, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s nexmark gen: %s\n", prog, err);
		goto usage;
	}
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage_nexmark(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--out") && i + 1 < argc) {
			out = argv[++i];
		} else if (!strncmp(argv[i], "--out=", 6)) {
			out = argv[i] + 6;
		} else {
			fprintf(stderr, "%s nexmark gen: %s '%s'\n", prog,
				!strcmp(argv[i], "--out") ? "missing value for" : "unexpected argument",
				argv[i]);
			goto usage;
		}
	}
	if (nc.emit_rate > 0) {
		fprintf(stderr, "%s nexmark gen: --emit-rate does not apply to a dump\n", prog);
		goto usage;
	}
	if (!nc.events) {
		fprintf(stderr, "%s nexmark gen: --events N (N > 0) is required\n", prog);
		goto usage;
	}
	if (!out || !*out) {
		fprintf(stderr, "%s nexmark gen: --out DIR is required\n", prog);
		goto usage;
	}
	if (weir_nexmark_write_csv(&nc, out, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s nexmark gen: %s\n", prog, err);
		return 1;
	}
	return 0;
usage:
	fprintf(stderr, "Try '%s nexmark --help'.\n", prog);
	return 2;
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

static int cmd_run(int argc, char **argv)
{
	loaded_job L;
	int rc = run_prepare(argc, argv, &L);
	if (rc) {
		loaded_free(&L);
		return rc == 3 ? 0 : rc;
	}
	const weir_config *cfg = weir_env_config(L.env);
	if (cfg->checkpoint_dir && !cfg->checkpoint_interval_ms)
		fprintf(stderr, "%s run: --checkpoint-dir without --checkpoint-interval: no "
			"periodic checkpoints; only savepoints and the final checkpoint (at the "
			"end of bounded input) are taken, and sinks commit output only at them\n",
			prog);
	if (L.cluster) {
		rc = submit_cluster(argc, argv, &L);
		loaded_free(&L);
		return rc;
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	ctl_start(L.name, cfg->checkpoint_dir);
	rc = weir_env_execute(L.env, L.name, L.progress) == 0 ? 0 : 1;
	ctl_stop();
	loaded_free(&L);
	return rc;
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
		if (!strcmp(argv[2], "savepoint") || !strcmp(argv[2], "stop") ||
		    !strcmp(argv[2], "cancel")) {
			char help[] = "--help";
			char *hv[] = { argv[2], help, NULL };
			return cmd_savepoint(2, hv, argv[2]);
		}
		if (!strcmp(argv[2], "list")) {
			char help[] = "--help";
			char *hv[] = { argv[2], help, NULL };
			return cmd_list(2, hv);
		}
		if (!strcmp(argv[2], "version")) {
			printf("usage: %s version\n\nPrint Weir's version.\n", prog);
			return 0;
		}
		if (!strcmp(argv[2], "nexmark")) {
			usage_nexmark(stdout);
			return 0;
		}
		fprintf(stderr, "%s help: unknown command '%s'\n", prog, argv[2]);
		return 2;
	}
	if (!strcmp(cmd, "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(cmd, "coordinator"))
		return cmd_coordinator(argc - 1, argv + 1);
	if (!strcmp(cmd, "worker"))
		return cmd_worker(argc - 1, argv + 1);
	if (!strcmp(cmd, "list") || !strcmp(cmd, "savepoint") || !strcmp(cmd, "stop") ||
	    !strcmp(cmd, "cancel")) {
		int rc = cluster_client_cmd(cmd, argc - 1, argv + 1);
		if (rc >= 0)
			return rc;
	}
	if (!strcmp(cmd, "list"))
		return cmd_list(argc - 1, argv + 1);
	if (!strcmp(cmd, "savepoint"))
		return cmd_savepoint(argc - 1, argv + 1, "savepoint");
	if (!strcmp(cmd, "stop"))
		return cmd_savepoint(argc - 1, argv + 1, "stop");
	if (!strcmp(cmd, "cancel"))
		return cmd_savepoint(argc - 1, argv + 1, "cancel");
	if (!strcmp(cmd, "nexmark"))
		return cmd_nexmark(argc - 1, argv + 1);
	fprintf(stderr, "%s: unknown command '%s'\n\n", prog, cmd);
	usage_main(stderr);
	return 2;
}
