/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The io_uring TCP transport (net/xport_tcp.c) between two processes,
 * one role per process; perf/bench_net.sh puts them in two network
 * namespaces joined by a veth pair and compares with iperf3 and with plain
 * blocking sockets.  Prints JSON lines; never pass/fail.
 *
 *   bench_net serve BIND                      receive until the sender's BYE
 *   bench_net send BIND PEER BYTES SECS ZC    send frames with BYTES of payload
 *                                             for SECS seconds (ZC 1: zero-copy),
 *                                             then finish(); MB/s and frames/s
 *                                             count until finish() returned 1
 *   bench_net pong BIND                       echo frames; then echo on a plain
 *                                             TCP socket on BIND's port + 1
 *   bench_net ping BIND PEER N                N round trips of a 64-byte frame
 *                                             through the transport (busy poll),
 *                                             then N over plain blocking TCP
 *                                             (TCP_NODELAY): p50/p99/p99.9, ratio
 *
 * Payloads are referenced (a cookie per buffer from a pool of 64), as the
 * data plane sends batches; the receiver checks every frame's checksum.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core.h"
#include "xport.h"

#define POOL 64
#define SMALL 64

static xport *start(int self, const char *me, const char *peer, bool zc)
{
	char addr[64], err[256];
	xport *x;
	xport_conf c = { .bind = me, .core = -1, .zerocopy = zc, .self = self, .attempt = 1 };
	if (xport_tcp_ops.open(&c, &x, addr, sizeof(addr), err, sizeof(err))) {
		fprintf(stderr, "bench_net: %s\n", err);
		exit(1);
	}
	const char *addrs[2] = { self == 0 ? addr : peer, self == 1 ? addr : peer };
	if (xport_tcp_ops.connect(x, 2, addrs, 10000, err, sizeof(err))) {
		fprintf(stderr, "bench_net: %s\n", err);
		exit(1);
	}
	return x;
}

static void lost(void *ctx, int peer, int err, const char *why)
{
	(void)ctx;
	fprintf(stderr, "bench_net: peer %d lost: %s (%s)\n", peer, why, strerror(-err));
	exit(1);
}

static void finish(xport *x, const xport_events *ev)
{
	int rc;
	while ((rc = xport_tcp_ops.finish(x, ev)) == 0)
		;
	if (rc < 0) {
		fprintf(stderr, "bench_net: finish: %s\n", strerror(-rc));
		exit(1);
	}
}

/* ---- throughput ----------------------------------------------------------- */

typedef struct counts {
	uint64_t frames, bytes;
	int free_top;
	int free_slots[POOL];
	bool done;
} counts;

static void on_frame_count(void *ctx, int peer, const xf_hdr *h, const void *payload)
{
	(void)peer, (void)payload;
	counts *c = ctx;
	c->frames++;
	c->bytes += h->len + XF_HDR;
}

static void on_sent(void *ctx, void *cookie)
{
	counts *c = ctx;
	c->free_slots[c->free_top++] = (int)(intptr_t)cookie - 1;
}

static int serve(const char *me)
{
	counts c = { 0 };
	xport *x = start(1, me, "0.0.0.0:0", false);
	xport_events ev = { &c, on_frame_count, on_sent, lost };
	finish(x, &ev);
	xport_tcp_ops.close(x);
	return 0;
}

static int sender(const char *me, const char *peer, size_t bytes, double secs, bool zc)
{
	counts c = { 0 };
	xport *x = start(0, me, peer, zc);
	xport_events ev = { &c, on_frame_count, on_sent, lost };
	static uint8_t *buf[POOL];
	static uint32_t crc[POOL];
	for (int i = 0; i < POOL; i++) {
		buf[i] = malloc(bytes);
		for (size_t k = 0; k < bytes; k++)
			buf[i][k] = (uint8_t)(k * 31 + (size_t)i);
		crc[i] = crc32c(0, buf[i], bytes);
		c.free_slots[c.free_top++] = i;
	}
	uint64_t eagain = 0, t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9);
	while (now_ns() < end) {
		for (int burst = 0; burst < 16 && c.free_top; burst++) {
			int i = c.free_slots[--c.free_top];
			xf_hdr h = { .magic = XF_MAGIC, .version = XF_VERSION, .kind = XF_DATA,
				     .edge = 1, .len = (uint32_t)bytes, .crc = crc[i] };
			struct iovec v[2] = { { &h, XF_HDR }, { buf[i], bytes } };
			int rc = xport_tcp_ops.send(x, 1, v, 2, (void *)(intptr_t)(i + 1));
			if (rc) {
				c.free_slots[c.free_top++] = i;
				if (rc != -EAGAIN) {
					fprintf(stderr, "bench_net: send: %s\n", strerror(-rc));
					return 1;
				}
				eagain++;
				break;
			}
			c.frames++;
			c.bytes += bytes + XF_HDR;
		}
		xport_tcp_ops.poll(x, &ev);
	}
	finish(x, &ev); /* every frame delivered: the receiver's BYE came after them */
	double dt = (double)(now_ns() - t0) / 1e9;
	printf("{\"bench\":\"net_tcp_throughput\",\"payload\":%zu,\"zerocopy\":%s,"
	       "\"seconds\":%.3f,\"frames\":%llu,\"mb_per_s\":%.1f,\"frames_per_s\":%.0f,"
	       "\"eagain\":%llu}\n",
	       bytes, zc ? "true" : "false", dt, (unsigned long long)c.frames,
	       (double)c.bytes / dt / 1e6, (double)c.frames / dt, (unsigned long long)eagain);
	xport_tcp_ops.close(x);
	return 0;
}

/* ---- round trips ------------------------------------------------------------ */

typedef struct pp {
	xport *x;
	uint64_t got;
	bool eoi;
} pp;

static void on_frame_echo(void *ctx, int peer, const xf_hdr *h, const void *payload)
{
	pp *p = ctx;
	if (h->kind == XF_EOI) {
		p->eoi = true;
		return;
	}
	struct iovec v[2] = { { (void *)h, XF_HDR }, { (void *)payload, h->len } };
	if (xport_tcp_ops.send(p->x, peer, v, 2, NULL)) /* copied now */
		lost(NULL, peer, -EIO, "echo send failed");
}

static void on_frame_got(void *ctx, int peer, const xf_hdr *h, const void *payload)
{
	(void)peer, (void)h, (void)payload;
	((pp *)ctx)->got++;
}

static int port_of(const char *addr, char *ip, size_t iplen)
{
	const char *colon = strrchr(addr, ':');
	snprintf(ip, iplen, "%.*s", (int)(colon - addr), addr);
	return atoi(colon + 1);
}

static int pong(const char *me)
{
	pp p = { 0 };
	p.x = start(1, me, "0.0.0.0:0", false);
	xport_events ev = { &p, on_frame_echo, NULL, lost };
	while (!p.eoi)
		xport_tcp_ops.poll(p.x, &ev);
	finish(p.x, &ev);
	xport_tcp_ops.close(p.x);

	/* the baseline: plain blocking TCP on port + 1 */
	char ip[64];
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_port = htons((uint16_t)(port_of(me, ip, sizeof(ip)) + 1));
	inet_pton(AF_INET, ip, &a.sin_addr);
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1)) {
		perror("bench_net: pong listen");
		return 1;
	}
	int fd = accept(l, NULL, NULL);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	char b[XF_HDR + SMALL];
	for (;;) {
		size_t have = 0;
		while (have < sizeof(b)) {
			ssize_t k = read(fd, b + have, sizeof(b) - have);
			if (k <= 0)
				goto out;
			have += (size_t)k;
		}
		if (write(fd, b, sizeof(b)) != (ssize_t)sizeof(b))
			break;
	}
out:
	close(fd);
	close(l);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void pct(uint64_t *v, int n, double out[3])
{
	qsort(v, (size_t)n, sizeof(*v), cmp_u64);
	out[0] = (double)v[n / 2] / 1e3;
	out[1] = (double)v[(int)(n * 0.99)] / 1e3;
	out[2] = (double)v[(int)(n * 0.999)] / 1e3;
}

static int ping(const char *me, const char *peer, int n)
{
	pp p = { 0 };
	p.x = start(0, me, peer, false);
	xport_events ev = { &p, on_frame_got, NULL, lost };
	uint64_t *lat = malloc(sizeof(uint64_t) * (size_t)n);
	uint8_t payload[SMALL];
	memset(payload, 0xab, sizeof(payload));
	xf_hdr h = { .magic = XF_MAGIC, .version = XF_VERSION, .kind = XF_DATA, .edge = 1,
		     .len = SMALL, .crc = crc32c(0, payload, SMALL) };
	struct iovec v[2] = { { &h, XF_HDR }, { payload, SMALL } };
	int warm = n / 10;
	for (int i = -warm; i < n; i++) {
		uint64_t t0 = now_ns(), want = p.got + 1;
		h.value = (uint64_t)i;
		if (xport_tcp_ops.send(p.x, 1, v, 2, NULL))
			lost(NULL, 1, -EIO, "send failed");
		while (p.got < want)
			xport_tcp_ops.poll(p.x, &ev);
		if (i >= 0)
			lat[i] = now_ns() - t0;
	}
	xf_hdr eoi = { .magic = XF_MAGIC, .version = XF_VERSION, .kind = XF_EOI,
		       .crc = crc32c(0, "", 0) };
	struct iovec ve = { &eoi, XF_HDR };
	xport_tcp_ops.send(p.x, 1, &ve, 1, NULL);
	finish(p.x, &ev);
	xport_tcp_ops.close(p.x);
	double ours[3], base[3];
	pct(lat, n, ours);

	char ip[64];
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_port = htons((uint16_t)(port_of(peer, ip, sizeof(ip)) + 1));
	inet_pton(AF_INET, ip, &a.sin_addr);
	int fd = -1, one = 1;
	for (int tries = 0; tries < 200; tries++) { /* pong listens once it finished */
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			break;
		close(fd);
		fd = -1;
		usleep(10000);
	}
	if (fd < 0) {
		perror("bench_net: ping connect");
		return 1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	char b[XF_HDR + SMALL];
	memset(b, 1, sizeof(b));
	for (int i = -warm; i < n; i++) {
		uint64_t t0 = now_ns();
		if (write(fd, b, sizeof(b)) != (ssize_t)sizeof(b))
			return 1;
		size_t have = 0;
		while (have < sizeof(b)) {
			ssize_t k = read(fd, b + have, sizeof(b) - have);
			if (k <= 0)
				return 1;
			have += (size_t)k;
		}
		if (i >= 0)
			lat[i] = now_ns() - t0;
	}
	close(fd);
	pct(lat, n, base);
	printf("{\"bench\":\"net_tcp_rtt\",\"trips\":%d,\"frame\":%u,"
	       "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
	       "\"plain_p50_us\":%.1f,\"plain_p99_us\":%.1f,\"plain_p999_us\":%.1f,"
	       "\"ratio_p50\":%.2f,\"ratio_p99\":%.2f}\n",
	       n, XF_HDR + SMALL, ours[0], ours[1], ours[2], base[0], base[1], base[2],
	       ours[0] / base[0], ours[1] / base[1]);
	free(lat);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "serve"))
		return serve(argv[2]);
	if (argc == 7 && !strcmp(argv[1], "send"))
		return sender(argv[2], argv[3], (size_t)atol(argv[4]), atof(argv[5]),
			      atoi(argv[6]) != 0);
	if (argc == 3 && !strcmp(argv[1], "pong"))
		return pong(argv[2]);
	if (argc == 5 && !strcmp(argv[1], "ping"))
		return ping(argv[2], argv[3], atoi(argv[4]));
	fprintf(stderr, "usage: bench_net serve BIND | send BIND PEER BYTES SECS ZC |"
			" pong BIND | ping BIND PEER N\n");
	return 2;
}
