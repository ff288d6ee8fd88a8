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

#include <weir/admin.h>
#include <weir/nexmark.h>
#include <weir/weir.h>

#include "cli.h"

/* Messages name paths; one cut short is still a useful message. */
#pragma GCC diagnostic ignored "-Wformat-truncation"


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

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		weir_savepoint_async();
	else
		weir_cancel_all();
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
			int rc = weir_savepoint(*dir ? dir : NULL, stop, msg, sizeof(msg));
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
			weir_cancel_all();
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
