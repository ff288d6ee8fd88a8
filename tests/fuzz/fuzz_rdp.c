/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target: arbitrary datagrams into rdp_input() (net/rdp.c), with polls
 * between them, to an endpoint with three peers.  Input: one flags byte,
 * then records of [u16 length, little-endian][datagram bytes].  Flag bit 0
 * recomputes each datagram's crc32c before feeding it, so that mutations
 * get past the checksum and reach the field checks, the reorder ring and
 * reassembly.  Nothing may crash, hang or leak; callbacks check that what
 * is delivered is within bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "rdp.h"

static void deliver(void *ctx, int peer, const void *frame, size_t len)
{
	(void)ctx;
	if (peer < 1 || peer > 2 || len > (1u << 20))
		abort();
	volatile uint8_t sink = 0;
	if (len)
		sink ^= ((const uint8_t *)frame)[len - 1];
	(void)sink;
}
static void sent(void *ctx, void *cookie) { (void)ctx; (void)cookie; }
static void lost(void *ctx, int peer, int err, const char *why) { (void)ctx; (void)peer; (void)err; (void)why; }
static int emit(void *ctx, int peer, const struct iovec *iov, int iovcnt, void *cookie)
{
	(void)ctx; (void)peer; (void)cookie;
	size_t n = 0;
	for (int i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	if (n > 1472)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	rdp_conf c = { .self = 0, .npeers = 3, .attempt = 1, .window = 64, .max_frame = 1u << 20 };
	rdp_cb cb = { .deliver = deliver, .sent = sent, .lost = lost };
	rdp *r;
	if (rdp_new(&c, &cb, &r))
		abort();
	uint8_t flags = data[0];
	size_t off = 1;
	uint64_t now = 1000000;
	uint8_t buf[2048];
	/* Something of ours in flight, so that acks have something to ack. */
	static const char msg[3000];
	struct iovec iov = { (void *)msg, sizeof(msg) };
	rdp_send_frame(r, 1, &iov, 1, NULL);
	rdp_poll(r, now, emit, NULL);
	while (off + 2 <= size) {
		size_t n = (size_t)data[off] | (size_t)data[off + 1] << 8;
		off += 2;
		if (n > size - off)
			n = size - off;
		if (n > sizeof(buf))
			n = sizeof(buf);
		memcpy(buf, data + off, n);
		off += n;
		if ((flags & 1) && n >= RDP_HDR) {
			rdp_hdr h;
			memcpy(&h, buf, RDP_HDR);
			h.crc = 0;
			memcpy(buf, &h, RDP_HDR);
			uint32_t crc = crc32c(crc32c(0, buf, RDP_HDR), buf + RDP_HDR, n - RDP_HDR);
			memcpy(buf + offsetof(rdp_hdr, crc), &crc, 4);
		}
		rdp_input(r, buf, n, now);
		now += 3000000;
		rdp_poll(r, now, emit, NULL);
	}
	rdp_free(r);
	return 0;
}
