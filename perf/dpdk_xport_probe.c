/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dpdk_xport_probe: one of two processes talking through xport_dpdk (one
 * per network namespace, each on its end of a veth pair), for
 * tests/e2e/dpdk_veth*.sh and perf/bench_dpdk.sh.
 *
 *   dpdk_xport_probe MODE --self 0|1 --device DEV --bind IP
 *                    --me FILE --peer FILE [--frames N] [--seed S]
 *
 * The two processes swap addresses through files (--me is written, --peer
 * waited for).  Modes:
 *   verify  both send N frames of random sizes (0 B .. 4 MB, deterministic
 *           from the seed and sender) and check every frame received:
 *           order, length, header, content; prints "verify ok ..."
 *   bw      worker 0 sends N frames of 25 KiB (a 1024-row batch), worker 1
 *           receives; prints throughput as a JSON line
 *   lat     worker 0 sends a 64-byte frame, worker 1 echoes it, N times;
 *           prints round-trip p50/p99/p99.9 as a JSON line
 * Exit 0 on success, 1 on a failure, 77 when DPDK cannot start here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "xport.h"

#ifndef WEIR_HAVE_DPDK
int main(void)
{
	fprintf(stderr, "skip: built without DPDK\n");
	return 77;
}
#else

static int self;
static const char *mode;
static uint32_t nframes = 1000;
static uint64_t seed = 1;
static uint32_t next_in, bad, outstanding, lost;
static uint64_t first_ns, last_ns, bytes_in;
static uint64_t *rtts;
static uint32_t nrtt;
static bool echo_due;
static uint8_t echo_buf[64];

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint32_t vsize(int sender, uint32_t i)
{
	uint64_t x = mix(seed * 1000003 + (uint64_t)sender * 7919 + i);
	if (i % 500 == 7)
		return 2000000 + (uint32_t)(x % 2000000); /* multi-MB */
	switch (x % 8) {
	case 0: return 0;
	case 1: case 2: case 3: return (uint32_t)(x >> 8) % 2000;
	case 4: case 5: return (uint32_t)(x >> 8) % 30000;
	default: return (uint32_t)(x >> 8) % 70000;
	}
}

static void vfill(int sender, uint32_t i, uint8_t *b, uint32_t n)
{
	uint64_t x = mix(seed ^ ((uint64_t)sender << 40) ^ i);
	for (uint32_t k = 0; k < n; k++) {
		if ((k & 7) == 0)
			x = mix(x);
		b[k] = (uint8_t)(x >> ((k & 7) * 8));
	}
}

static void on_frame(void *ctx, int peer, const xf_hdr *h, const void *payload)
{
	(void)ctx;
	uint64_t now = now_ns();
	if (!first_ns)
		first_ns = now;
	last_ns = now;
	bytes_in += XF_HDR + h->len;
	if (!strcmp(mode, "verify")) {
		uint32_t i = next_in++;
		uint32_t want = vsize(peer, i);
		if (h->kind != XF_DATA || h->edge != i || h->len != want) {
			if (bad++ < 5)
				fprintf(stderr, "frame %u: kind %u edge %u len %u, want %u bytes\n", i,
					h->kind, h->edge, h->len, want);
			return;
		}
		uint8_t *b = malloc(want ? want : 1);
		vfill(peer, i, b, want);
		if (memcmp(b, payload, want) && bad++ < 5)
			fprintf(stderr, "frame %u: content differs\n", i);
		free(b);
	} else if (!strcmp(mode, "lat")) {
		if (self == 1) {
			memcpy(echo_buf, payload, h->len < 64 ? h->len : 64);
			echo_due = true;
		} else {
			uint64_t t0;
			memcpy(&t0, payload, 8);
			rtts[nrtt++] = now - t0;
		}
		next_in++;
	} else {
		next_in++;
	}
}

static void on_sent(void *ctx, void *cookie)
{
	(void)ctx;
	outstanding--;
	if (cookie != (void *)1)
		free(cookie);
}

static void on_lost(void *ctx, int peer, int err, const char *why)
{
	(void)ctx;
	fprintf(stderr, "worker %d: peer %d lost (%s): %s\n", self, peer, strerror(-err), why);
	lost++;
}

static const xport_events ev = { .frame = on_frame, .sent = on_sent, .lost = on_lost };

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int swap_addrs(const char *me, const char *peerf, const char *addr, char *paddr, size_t n)
{
	char tmp[512];
	snprintf(tmp, sizeof(tmp), "%s.tmp", me);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -1;
	fprintf(f, "%s\n", addr);
	fclose(f);
	rename(tmp, me);
	for (int k = 0; k < 3000; k++) {
		f = fopen(peerf, "r");
		if (f) {
			bool ok = fgets(paddr, (int)n, f) != NULL;
			fclose(f);
			if (ok) {
				paddr[strcspn(paddr, "\n")] = 0;
				return 0;
			}
		}
		usleep(10000);
	}
	return -1;
}

static xf_hdr bw_hdrs[1024]; /* bw: one header per frame in flight, one shared payload */

static int send_data(xport *x, const xport_ops *ops, uint32_t i, uint32_t len, uint8_t *payload,
		     void *cookie)
{
	/* the header sits just before the payload, except in bw mode */
	xf_hdr *h = cookie == (void *)1 ? &bw_hdrs[i % 1024] : (xf_hdr *)payload - 1;
	*h = (xf_hdr){ .magic = XF_MAGIC, .version = XF_VERSION, .kind = XF_DATA, .edge = i,
		       .len = len, .crc = crc32c(0, payload, len) };
	struct iovec iov[2] = { { h, XF_HDR }, { payload, len } };
	int rc = ops->send(x, 1 - self, iov, 2, cookie);
	if (rc == 0)
		outstanding++;
	return rc;
}

int main(int argc, char **argv)
{
	const char *device = NULL, *bind = NULL, *mef = NULL, *peerf = NULL;
	if (argc < 2) {
		fprintf(stderr, "usage: dpdk_xport_probe verify|bw|lat --self N --device D --bind IP "
				"--me FILE --peer FILE [--frames N] [--seed S]\n");
		return 1;
	}
	mode = argv[1];
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--self")) self = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--device")) device = argv[i + 1];
		else if (!strcmp(argv[i], "--bind")) bind = argv[i + 1];
		else if (!strcmp(argv[i], "--me")) mef = argv[i + 1];
		else if (!strcmp(argv[i], "--peer")) peerf = argv[i + 1];
		else if (!strcmp(argv[i], "--frames")) nframes = (uint32_t)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--seed")) seed = strtoull(argv[i + 1], NULL, 0);
	}
	const xport_ops *ops = &xport_dpdk_ops;
	xport_conf conf = { .bind = bind, .device = device, .core = -1, .self = self, .attempt = 3 };
	xport *x;
	char addr[128], paddr[128], err[256];
	int rc = ops->open(&conf, &x, addr, sizeof(addr), err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "skip: DPDK cannot start here: %s\n", err);
		return 77;
	}
	if (swap_addrs(mef, peerf, addr, paddr, sizeof(paddr)) < 0) {
		fprintf(stderr, "no peer address in %s\n", peerf);
		return 1;
	}
	const char *addrs[2];
	addrs[self] = addr;
	addrs[1 - self] = paddr;
	if ((rc = ops->connect(x, 2, addrs, 10000, err, sizeof(err))) < 0) {
		fprintf(stderr, "worker %d: connect: %s\n", self, err);
		return 1;
	}
	fprintf(stderr, "worker %d at %s connected to %s\n", self, addr, paddr);

	uint64_t t0 = now_ns();
	uint32_t next_out = 0;
	uint32_t expect_in = 0; /* frames this worker should receive */
	uint8_t *bwbuf = NULL;
	if (!strcmp(mode, "verify")) {
		expect_in = nframes;
	} else if (!strcmp(mode, "bw")) {
		expect_in = self == 1 ? nframes : 0;
		bwbuf = calloc(1, XF_HDR + 25600);
	} else if (!strcmp(mode, "lat")) {
		expect_in = nframes;
		rtts = calloc(nframes + 1, sizeof(*rtts));
	} else {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 1;
	}
	uint64_t deadline = t0 + 600ull * 1000000000ull;
	bool lat_waiting = false;
	int fin = 0;
	while (now_ns() < deadline && !lost) {
		/* produce */
		if (!strcmp(mode, "verify")) {
			while (next_out < nframes && outstanding < 64) {
				uint32_t len = vsize(self, next_out);
				uint8_t *b = malloc(XF_HDR + len);
				vfill(self, next_out, b + XF_HDR, len);
				if (send_data(x, ops, next_out, len, b + XF_HDR, b) < 0) {
					free(b);
					break;
				}
				next_out++;
			}
		} else if (!strcmp(mode, "bw") && self == 0) {
			while (next_out < nframes &&
			       send_data(x, ops, next_out, 25600, bwbuf + XF_HDR, (void *)1) == 0)
				next_out++;
		} else if (!strcmp(mode, "lat")) {
			if (self == 0 && !lat_waiting && next_out < nframes) {
				uint8_t b[XF_HDR + 64] = { 0 };
				uint64_t t = now_ns();
				memcpy(b + XF_HDR, &t, 8);
				if (send_data(x, ops, next_out, 64, b + XF_HDR, NULL) == 0) {
					outstanding--; /* copied: no sent() */
					next_out++;
					lat_waiting = true;
				}
			}
			if (self == 1 && echo_due) {
				uint8_t b[XF_HDR + 64];
				memcpy(b + XF_HDR, echo_buf, 64);
				if (send_data(x, ops, next_out, 64, b + XF_HDR, NULL) == 0) {
					outstanding--;
					next_out++;
					echo_due = false;
				}
			}
			if (self == 0 && nrtt == next_out)
				lat_waiting = false;
		}
		bool sending_done = !strcmp(mode, "verify") ? next_out == nframes
				  : !strcmp(mode, "bw") ? (self == 1 || next_out == nframes)
				  : (self == 0 ? nrtt == nframes : next_out == nframes);
		if (sending_done && next_in >= expect_in) {
			fin = ops->finish(x, &ev);
			if (fin != 0)
				break;
			continue;
		}
		int w = ops->poll(x, &ev);
		if (!w && strcmp(mode, "lat"))
			ops->wait(x, -1, 1000000);
	}
	uint64_t t1 = now_ns();
	int status = 0;
	if (lost || fin < 0 || next_in < expect_in || bad) {
		fprintf(stderr, "worker %d: FAILED: received %u/%u frames, %u bad, lost %u, finish %d\n",
			self, next_in, expect_in, bad, lost, fin);
		status = 1;
	} else if (!strcmp(mode, "verify")) {
		printf("verify ok: worker %d sent %u and received %u frames (%.1f MB) intact in %.2f s\n",
		       self, nframes, next_in, bytes_in / 1e6, (t1 - t0) / 1e9);
	} else if (!strcmp(mode, "bw") && self == 1) {
		double s = (last_ns - first_ns) / 1e9;
		printf("{\"bench\":\"dpdk_bw\",\"frames\":%u,\"frame_bytes\":%u,\"seconds\":%.3f,"
		       "\"MBps\":%.1f,\"frames_per_s\":%.0f}\n",
		       nframes, XF_HDR + 25600, s, bytes_in / 1e6 / s, nframes / s);
	} else if (!strcmp(mode, "lat") && self == 0) {
		qsort(rtts, nrtt, sizeof(*rtts), cmp_u64);
		printf("{\"bench\":\"dpdk_rtt\",\"frames\":%u,\"frame_bytes\":%u,\"p50_us\":%.1f,"
		       "\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f}\n",
		       nrtt, XF_HDR + 64, rtts[nrtt / 2] / 1e3, rtts[nrtt * 99 / 100] / 1e3,
		       rtts[nrtt * 999 / 1000] / 1e3, rtts[nrtt - 1] / 1e3);
	}
	fflush(stdout);
	ops->close(x);
	free(bwbuf);
	free(rtts);
	return status;
}
#endif
