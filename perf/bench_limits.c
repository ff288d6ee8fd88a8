/* SPDX-License-Identifier: Apache-2.0 */
/*
 * This machine's limits, measured in the same run as the benchmarks so
 * their figures can be read as a fraction of what the hardware does:
 *
 *   limit_memcpy        memory copy bandwidth (one core, 64 MiB buffers,
 *                       out of cache), best of 5
 *   limit_tcp_loopback  TCP over 127.0.0.1 between two threads: bytes/s of
 *                       1 MiB writes for `secs` seconds, and the round trip
 *                       of a 64-byte ping-pong (p50, p99 over 20 000 trips),
 *                       for the network work of issue 6 to be judged by
 *
 * The raw ck_ring hand-off is bench_ring's, the disk's io_uring write and
 * read bandwidth bench_statelog's.
 *
 *   bench_limits [secs]      (default 1)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void memcpy_limit(void)
{
	size_t n = 64u << 20;
	char *a = malloc(n), *b = malloc(n);
	double best = 0;
	memset(a, 1, n);
	memset(b, 2, n);
	for (int rep = 0; rep < 5; rep++) {
		double t0 = now();
		memcpy(b, a, n);
		double dt = now() - t0;
		if (n / dt > best)
			best = n / dt;
		a[rep] = b[rep + 1]; /* keep the copies observable */
	}
	printf("{\"bench\":\"limit_memcpy\",\"bytes_per_s\":%.0f,\"check\":%d}\n", best,
	       a[0] + b[n - 1]);
	free(a);
	free(b);
}

/* ---- TCP over loopback ------------------------------------------------------------ */

#define TCP_BUF (1u << 20)
#define PINGS 20000

static int listen_any(uint16_t *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 1) ||
	    getsockname(s, (struct sockaddr *)&a, &len))
		return -1;
	*port = ntohs(a.sin_port);
	return s;
}

static int connect_to(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)))
		return -1;
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return s;
}

static int full(int fd, char *p, size_t n, bool rd)
{
	while (n) {
		ssize_t k = rd ? read(fd, p, n) : write(fd, p, n);
		if (k <= 0) {
			if (k < 0 && errno == EINTR)
				continue;
			return -1;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

typedef struct peer {
	int lfd;
	double secs;
	uint64_t bytes;
} peer;

/* The receiving side of the bandwidth test: read until the sender closes. */
static void *sink_main(void *arg)
{
	peer *p = arg;
	int fd = accept(p->lfd, NULL, NULL);
	char *buf = malloc(TCP_BUF);
	ssize_t k;
	while (fd >= 0 && buf && (k = read(fd, buf, TCP_BUF)) != 0) {
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			break;
		p->bytes += (uint64_t)k;
	}
	free(buf);
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* The echoing side of the ping-pong. */
static void *echo_main(void *arg)
{
	peer *p = arg;
	int fd = accept(p->lfd, NULL, NULL);
	int one = 1;
	char m[64];
	if (fd < 0)
		return NULL;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (int i = 0; i < PINGS; i++)
		if (full(fd, m, sizeof(m), true) || full(fd, m, sizeof(m), false))
			break;
	close(fd);
	return NULL;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void tcp_limit(double secs)
{
	uint16_t port;
	pthread_t th;
	peer p = { .secs = secs };

	/* bandwidth */
	if ((p.lfd = listen_any(&port)) < 0 || pthread_create(&th, NULL, sink_main, &p)) {
		fprintf(stderr, "bench_limits: loopback TCP: %s\n", strerror(errno));
		return;
	}
	int fd = connect_to(port);
	char *buf = calloc(1, TCP_BUF);
	double t0 = now(), dt = 0;
	uint64_t sent = 0;
	while (fd >= 0 && buf && (dt = now() - t0) < secs) {
		if (full(fd, buf, TCP_BUF, false))
			break;
		sent += TCP_BUF;
	}
	if (fd >= 0)
		close(fd);
	pthread_join(th, NULL);
	close(p.lfd);
	free(buf);

	/* round trips */
	double *rtt = malloc(PINGS * sizeof(double));
	int n = 0;
	if (rtt && (p.lfd = listen_any(&port)) >= 0 &&
	    !pthread_create(&th, NULL, echo_main, &p)) {
		fd = connect_to(port);
		char m[64] = { 0 };
		for (; fd >= 0 && n < PINGS; n++) {
			double a = now();
			if (full(fd, m, sizeof(m), false) || full(fd, m, sizeof(m), true))
				break;
			rtt[n] = now() - a;
		}
		if (fd >= 0)
			close(fd);
		pthread_join(th, NULL);
		close(p.lfd);
	}
	if (n)
		qsort(rtt, (size_t)n, sizeof(double), cmp_d);
	printf("{\"bench\":\"limit_tcp_loopback\",\"seconds\":%.3f,\"bytes\":%llu,"
	       "\"bytes_per_s\":%.0f,\"write_bytes\":%u,\"round_trips\":%d,"
	       "\"rtt_p50_us\":%.1f,\"rtt_p99_us\":%.1f}\n",
	       dt, (unsigned long long)p.bytes, dt > 0 ? (double)p.bytes / dt : 0, TCP_BUF, n,
	       n ? rtt[n / 2] * 1e6 : 0, n ? rtt[n * 99 / 100] * 1e6 : 0);
	free(rtt);
	(void)sent;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1;
	memcpy_limit();
	fflush(stdout);
	tcp_limit(secs > 0 ? secs : 1);
	return 0;
}
