/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `weir` command's cluster side: `weir coordinator`, `weir worker`, and
 * the clients `weir run --cluster` and `weir list|cancel|savepoint|stop
 * --cluster`.  Options and messages live here; the cluster itself (control
 * protocol, deployment, checkpoints) is libweir's, reached through
 * weir/admin.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <weir/admin.h>

#include "cli.h"

static void on_stop(int sig)
{
	(void)sig;
	weir_cluster_stop();
}

static void catch_signals(void)
{
	struct sigaction sa = { .sa_handler = on_stop };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static int load_secret(const char *path, uint8_t *key, size_t *keylen)
{
	char err[512];
	*keylen = 0;
	if (!path)
		return 0;
	if (weir_cluster_read_secret(path, key, keylen, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return -1;
	}
	return 0;
}

/* ---- weir coordinator ------------------------------------------------------- */

int cmd_coordinator(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "secret-file", required_argument, NULL, 's' },
		{ "heartbeat-timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *listen = NULL, *secret = NULL;
	long hb = 1000;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'l': listen = optarg; break;
		case 's': secret = optarg; break;
		case 't':
			if (parse_int("coordinator", "--heartbeat-timeout", optarg, 100, 600000,
				      &hb))
				return 2;
			break;
		case 'h':
			printf("usage: %s coordinator --listen ADDR:PORT [--secret-file F]\n"
			       "                        [--heartbeat-timeout MS]\n\n"
			       "Run a cluster's coordinator: workers register with it ('%s worker'),\n"
			       "clients submit jobs to it ('%s run --cluster ADDR:PORT JOB.so').\n"
			       "It deploys each job over the workers' cores, drives its checkpoints\n"
			       "(written to the job's --checkpoint-dir, which every node must reach)\n"
			       "and restarts it from the newest checkpoint when a worker dies\n"
			       "(no heartbeat for MS ms, default 1000, or its connection drops).\n"
			       "--secret-file: workers and clients must prove they hold the same\n"
			       "secret (HMAC-SHA256 challenge); without it anyone who reaches the\n"
			       "port can run code on the workers.\n", prog, prog, prog);
			return 0;
		default:
			fprintf(stderr, "Try '%s coordinator --help'.\n", prog);
			return 2;
		}
	}
	if (!listen || optind < argc) {
		fprintf(stderr, "%s coordinator: %s\nTry '%s coordinator --help'.\n", prog,
			listen ? "too many arguments" : "--listen ADDR:PORT is required", prog);
		return 2;
	}
	uint8_t key[WEIR_SECRET_MAX];
	size_t keylen;
	if (load_secret(secret, key, &keylen) < 0)
		return 1;
	catch_signals();
	weir_coordinator_opts o = { .listen = listen, .key = key, .keylen = keylen,
				    .heartbeat_timeout_ms = (int)hb,
				    .manifest_write = weir_manifest_merge_write };
	return weir_coordinator_main(&o) < 0 ? 1 : 0;
}

/* ---- weir worker ------------------------------------------------------------------ */

static int job_load(const char *so_path, int argc, char **argv, int ncores, void **job,
		    char *plan, size_t planlen, char *err, size_t errlen)
{
	loaded_job *L = calloc(1, sizeof(*L));
	(void)so_path;
	if (!L)
		return -ENOMEM;
	int rc = run_prepare(argc, argv, L);
	if (rc) {
		snprintf(err, errlen, "the job does not build here (see the worker's log; "
			 "status %d)", rc);
		loaded_free(L);
		free(L);
		return -EINVAL;
	}
	weir_env_config(L->env)->cores = ncores;
	weir_env_config(L->env)->pin = false; /* several workers may share a host */
	if (weir_env_describe_plan(L->env, plan, planlen) < 0) {
		snprintf(err, errlen, "%s", plan);
		loaded_free(L);
		free(L);
		return -EINVAL;
	}
	*job = L;
	return 0;
}

static int job_run(void *job, const weir_cluster_part *part, char *err, size_t errlen)
{
	loaded_job *L = job;
	int rc = weir_env_execute_part(L->env, L->name, 0, part);
	if (rc < 0)
		snprintf(err, errlen, "%s", rc == -ECANCELED ? "cancelled" : strerror(-rc));
	return rc;
}

static void job_free(void *job)
{
	loaded_free(job);
	free(job);
}

int cmd_worker(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "coordinator", required_argument, NULL, 'c' },
		{ "cores", required_argument, NULL, 'n' },
		{ "transport", required_argument, NULL, 't' },
		{ "data-addr", required_argument, NULL, 'a' },
		{ "dpdk-device", required_argument, NULL, 'd' },
		{ "no-zerocopy", no_argument, NULL, 'z' },
		{ "secret-file", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	weir_worker_opts o = { .cores = 1, .transport = "tcp", .job_load = job_load,
			  .job_run = job_run, .job_free = job_free };
	const char *secret = NULL;
	long v;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': o.coordinator = optarg; break;
		case 'n':
			if (parse_int("worker", "--cores", optarg, 1, 1024, &v))
				return 2;
			o.cores = (int)v;
			break;
		case 't':
			if (strcmp(optarg, "tcp") && strcmp(optarg, "dpdk")) {
				fprintf(stderr, "%s worker: --transport: '%s' is not tcp or dpdk\n",
					prog, optarg);
				return 2;
			}
			o.transport = optarg;
			break;
		case 'a': o.data_addr = optarg; break;
		case 'd': o.device = optarg; break;
		case 'z': o.no_zerocopy = true; break;
		case 's': secret = optarg; break;
		case 'h':
			printf("usage: %s worker --coordinator ADDR:PORT --cores N\n"
			       "                   [--transport tcp|dpdk] [--data-addr IP]\n"
			       "                   [--dpdk-device DEV] [--no-zerocopy] [--secret-file F]\n\n"
			       "Run a worker: register N cores with the coordinator and run the\n"
			       "parts of jobs it deploys here.  Edges between workers go over\n"
			       "io_uring TCP (default) or DPDK (--dpdk-device names the port, e.g.\n"
			       "net_af_packet0,iface=eth1; see docs/network.md).  The data plane\n"
			       "listens on --data-addr (default: the address this worker reaches\n"
			       "the coordinator from).  The TCP transport sends frames of 16 KiB\n"
			       "and more zero-copy (SEND_ZC) unless --no-zerocopy: on a NIC that\n"
			       "saves a copy; between namespaces on one host it costs more.\n", prog);
			return 0;
		default:
			fprintf(stderr, "Try '%s worker --help'.\n", prog);
			return 2;
		}
	}
	if (!o.coordinator || optind < argc) {
		fprintf(stderr, "%s worker: %s\nTry '%s worker --help'.\n", prog,
			o.coordinator ? "too many arguments" : "--coordinator ADDR:PORT is required",
			prog);
		return 2;
	}
	uint8_t key[WEIR_SECRET_MAX];
	if (load_secret(secret, key, &o.keylen) < 0)
		return 1;
	o.key = key;
	catch_signals();
	return weir_worker_main(&o) < 0 ? 1 : 0;
}

/* ---- clients ------------------------------------------------------------------------- */

static volatile sig_atomic_t client_interrupted;

static void on_client_signal(int sig)
{
	(void)sig;
	client_interrupted = 1;
}

/* The coordinator's replies: progress on stderr, the answer on stdout
 * (an error on stderr). */
static void print_reply(void *arg, bool final, bool ok, const char *text, size_t len)
{
	(void)arg;
	if (!final)
		fprintf(stderr, "%.*s\n", (int)len, text);
	else
		fprintf(ok ? stdout : stderr, "%s%.*s\n", ok ? "" : "error: ", (int)len, text);
}

int submit_cluster(int argc, char **argv, loaded_job *L)
{
	uint8_t key[WEIR_SECRET_MAX];
	size_t keylen;
	char err[1024];

	if (load_secret(L->secret, key, &keylen) < 0)
		return 1;
	/* The job's shared object, shipped to every worker. */
	const char *path = argv[L->job_arg];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "%s run: %s: %s\n", prog, path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return 1;
	}
	uint8_t *so = malloc((size_t)st.st_size + 1);
	ssize_t got = so ? read(fd, so, (size_t)st.st_size) : -1;
	close(fd);
	/* The run arguments without the cluster's own; JOB.so's place marked. */
	const char **args = calloc((size_t)argc + 1, sizeof(*args));
	if (got != st.st_size || !args) {
		fprintf(stderr, "%s run: cannot read %s\n", prog, path);
		free(so);
		free(args);
		return 1;
	}
	int n = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (i < L->job_arg) {
			if (!strcmp(a, "--cluster") || !strcmp(a, "--secret-file")) {
				i++;
				continue;
			}
			if (!strncmp(a, "--cluster=", 10) || !strncmp(a, "--secret-file=", 14))
				continue;
		}
		args[n++] = i == L->job_arg ? "@JOB" : a;
	}
	weir_cluster_job job = { .name = L->name, .so = so, .so_len = (size_t)st.st_size,
				 .args = args, .nargs = n, .cfg = weir_env_config(L->env) };
	struct sigaction sa = { .sa_handler = on_client_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	err[0] = 0;
	int rc = weir_cluster_submit(L->cluster, key, keylen, &job, &client_interrupted,
				     print_reply, NULL, err, sizeof(err));
	free(so);
	free(args);
	if (rc < 0) {
		fprintf(stderr, "%s run: %s\n", prog, err);
		return 1;
	}
	return rc;
}

/* weir list|cancel|savepoint|stop --cluster ADDR [--secret-file F] ... */
int cluster_client_cmd(const char *cmd, int argc, char **argv)
{
	const char *addr = NULL, *secret = NULL, *dir = NULL;
	bool with_sp = false;
	long job = 0;
	int pos = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--cluster") && i + 1 < argc)
			addr = argv[++i];
		else if (!strncmp(a, "--cluster=", 10))
			addr = a + 10;
		else if (!strcmp(a, "--secret-file") && i + 1 < argc)
			secret = argv[++i];
		else if (!strncmp(a, "--secret-file=", 14))
			secret = a + 14;
		else if (!strcmp(a, "--savepoint"))
			with_sp = true;
		else if (!strcmp(a, "--job") && i + 1 < argc) {
			if (parse_int(cmd, "--job", argv[++i], 1, 1L << 31, &job))
				return 2;
		} else if (a[0] != '-' && pos == 0) {
			dir = a;
			pos++;
		} else {
			return -1; /* not ours: the local command reports it */
		}
	}
	if (!addr)
		return -1;
	weir_cluster_action action;
	if (!strcmp(cmd, "list"))
		action = WEIR_CLUSTER_LIST;
	else if (!strcmp(cmd, "cancel") || (!strcmp(cmd, "stop") && !with_sp))
		action = WEIR_CLUSTER_CANCEL;
	else
		action = !strcmp(cmd, "stop") ? WEIR_CLUSTER_STOP : WEIR_CLUSTER_SAVEPOINT;
	if ((action == WEIR_CLUSTER_SAVEPOINT || action == WEIR_CLUSTER_STOP) && dir &&
	    dir[0] != '/') {
		fprintf(stderr, "%s %s: the savepoint directory must be an absolute path "
			"every worker reaches\n", prog, cmd);
		return 2;
	}
	uint8_t key[WEIR_SECRET_MAX];
	size_t keylen;
	char err[1024];
	if (load_secret(secret, key, &keylen) < 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	err[0] = 0;
	int rc = weir_cluster_request(addr, key, keylen, action, (uint32_t)job, dir,
				      print_reply, NULL, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "%s %s: %s\n", prog, cmd, err);
		return 1;
	}
	return rc;
}
