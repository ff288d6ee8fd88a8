/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The DPDK transport (xport.h): one DPDK port per xport -- a NIC bound to
 * vfio-pci, or a virtual device (net_af_packet / net_tap on a veth,
 * net_memif) -- with one RX and one TX queue, and rdp.c for reliability.
 * Built only when meson finds libdpdk (WEIR_HAVE_DPDK).
 *
 * On the wire every rdp datagram travels in Ethernet + IPv4 + UDP:
 *
 *   | Ethernet 14 (type 0x0800) | IPv4 20 (DF, proto 17, ttl 64) |
 *   | UDP 8 (ports XD_UDP_PORT both, checksum 0: rdp has its crc32c) |
 *   | rdp datagram (rdp.h): 52-byte header + payload |
 *
 * IPv4/UDP rather than a private EtherType so that the datagrams cross
 * ordinary switches, VLANs and ECMP hashing unchanged; peers are reached by
 * MAC (no ARP: the address each worker publishes is "MAC/IP", and the
 * coordinator hands every worker all of them).  The kernel on a veth end
 * also sees these packets: give the interface no address in that subnet
 * (or none at all) and it drops them silently.
 *
 * Zero copy: a frame sent with a cookie is not copied.  Its header mbuf
 * (Ethernet/IP/UDP/rdp headers, from the pool) is chained to mbufs attached
 * (rte_pktmbuf_attach_extbuf) to the batch memory; all of a frame's
 * attachments share one rte_mbuf_ext_shared_info whose refcount also holds
 * one reference for rdp, so sent(cookie) is reported only when rdp has the
 * frame acknowledged AND the driver freed every mbuf pointing into it.
 * What that buys depends on the driver: a NIC DMAs from the batch memory
 * (which must then be DMA-mapped: rte_extmem_register + rte_dev_dma_map,
 * NOT done yet -- so zero copy is used only in IOVA-as-VA mode, see
 * xd_open), while net_af_packet copies every segment into the kernel's
 * TX ring inside rte_eth_tx_burst() and frees the mbufs at once; there the
 * attachment only saves our own copy.
 *
 * Threads: open() on any thread; everything else on the thread that polls the data plane (a reactor)
 * that owns the xport.  rte_eal_init() runs once per process (the first
 * open()); later opens hot-plug their device with rte_dev_probe().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_bus_vdev.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_log.h>
#include <rte_mbuf.h>
#include <rte_udp.h>

#include "core.h"
#include "rdp.h"
#include "xport.h"

#define XD_UDP_PORT 7419
#define XD_L234 (RTE_ETHER_HDR_LEN + sizeof(struct rte_ipv4_hdr) + sizeof(struct rte_udp_hdr))
#define XD_BURST 32
#define XD_TXB 128
#define XD_NB_DESC 1024
#define XD_COPY_BELOW 512  /* payloads this small are copied, not attached */
#define XD_TXQ 256         /* frames queued per peer (rdp txq) */

typedef struct xd_rec {        /* a frame sent with a cookie, in flight */
	struct rte_mbuf_ext_shared_info shinfo;
	void *cookie;
	struct xport *x;
	struct xd_rec *next;
} xd_rec;

typedef struct xd_stash {      /* a frame that arrived during connect() */
	struct xd_stash *next;
	int peer;
	size_t len;
	uint8_t b[];
} xd_stash;

/* Owned by the thread that polls the data plane (open() hands it over). */
struct xport {
	rdp *r;
	uint16_t port;
	struct rte_mempool *pool, *extpool;
	struct rte_ether_addr mac;
	uint32_t ip;               /* network order */
	int self, npeers;
	uint32_t attempt;
	bool zerocopy;
	struct rte_ether_addr *pmac;
	uint32_t *pip;
	bool *hello, *bye, *gone;
	bool connecting, bye_sent;
	uint64_t linger_until;
	xd_rec *recs, *free_recs, *done;
	struct rte_mbuf *txb[XD_TXB];
	int ntx;
	xd_stash *stash, **stash_tail;
	const xport_events *ev;
	uint64_t rx_foreign;       /* packets not for us (other protocols, MACs) */
	uint16_t ip_id;
	uint32_t drop_ppm;         /* test hook: drop this share of datagrams */
	uint64_t drop_rng;
};

static pthread_mutex_t eal_lock = PTHREAD_MUTEX_INITIALIZER;
static int eal_state; /* 0 not started, 1 up, < 0 failed with this error */
static unsigned xd_count;

static void emsg(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void emsg(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (err && errlen)
		vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* The CPUs this thread may run on, as an EAL cpuset "(0,1,...)": lcore 0
 * floats over them instead of pinning the caller to one. */
static void cpuset_str(char *out, size_t n)
{
	cpu_set_t set;
	size_t k = (size_t)snprintf(out, n, "(");
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		for (int c = 0; c < CPU_SETSIZE && k + 8 < n; c++)
			if (CPU_ISSET(c, &set))
				k += (size_t)snprintf(out + k, n - k, "%s%d", k > 1 ? "," : "", c);
	if (k == 1)
		k += (size_t)snprintf(out + k, n - k, "0");
	snprintf(out + k, n - k, ")");
}

static int eal_start(const xport_conf *conf, char *err, size_t errlen)
{
	static char a_lcores[600], a_prefix[64], a_vdev[512];
	static char *argv[16];
	int argc = 0;
	pthread_mutex_lock(&eal_lock);
	if (eal_state) {
		int rc = eal_state < 0 ? eal_state : 0;
		pthread_mutex_unlock(&eal_lock);
		if (rc)
			emsg(err, errlen, "DPDK failed to start earlier in this process");
		return rc == 0 ? 1 : rc;
	}
	argv[argc++] = "weir";
	if (conf->core >= 0) {
		snprintf(a_lcores, sizeof(a_lcores), "--lcores=0@%d", conf->core);
	} else {
		char set[512];
		cpuset_str(set, sizeof(set));
		snprintf(a_lcores, sizeof(a_lcores), "--lcores=0@%s", set);
	}
	argv[argc++] = a_lcores;
	argv[argc++] = "--no-huge";
	argv[argc++] = "-m";
	argv[argc++] = "128";
	argv[argc++] = "--no-pci";
	argv[argc++] = "--no-shconf"; /* --in-memory is refused with --no-huge */
	argv[argc++] = "--no-telemetry";
	snprintf(a_prefix, sizeof(a_prefix), "--file-prefix=weir%d", (int)getpid());
	argv[argc++] = a_prefix;
	argv[argc++] = "--log-level=4"; /* warnings and errors only */
	if (conf->device) {
		snprintf(a_vdev, sizeof(a_vdev), "--vdev=%s", conf->device);
		argv[argc++] = a_vdev;
	}
	argv[argc] = NULL;
	int rc = rte_eal_init(argc, argv);
	if (rc < 0) {
		eal_state = -(rte_errno ? rte_errno : EIO);
		emsg(err, errlen, "rte_eal_init: %s", rte_strerror(rte_errno));
	} else {
		eal_state = 1;
	}
	rc = eal_state;
	pthread_mutex_unlock(&eal_lock);
	return rc < 0 ? rc : 0;
}

static int find_port(const xport_conf *conf, bool probed, uint16_t *port, char *err, size_t errlen)
{
	if (!conf->device) {
		uint16_t p;
		RTE_ETH_FOREACH_DEV(p) {
			*port = p;
			return 0;
		}
		emsg(err, errlen, "no DPDK port (bind a NIC, or give a virtual device)");
		return -ENODEV;
	}
	char name[RTE_DEV_NAME_MAX_LEN];
	snprintf(name, sizeof(name), "%s", conf->device);
	char *comma = strchr(name, ',');
	if (comma)
		*comma = 0;
	if (rte_eth_dev_get_port_by_name(name, port) == 0)
		return 0;
	if (probed) {
		int rc = rte_dev_probe(conf->device);
		if (rc == 0 && rte_eth_dev_get_port_by_name(name, port) == 0)
			return 0;
	}
	emsg(err, errlen, "DPDK device %s did not come up", conf->device);
	return -ENODEV;
}

static int parse_addr(const char *s, struct rte_ether_addr *mac, uint32_t *ip)
{
	char m[64];
	const char *slash = strchr(s, '/');
	if (!slash || (size_t)(slash - s) >= sizeof(m))
		return -EINVAL;
	memcpy(m, s, (size_t)(slash - s));
	m[slash - s] = 0;
	if (rte_ether_unformat_addr(m, mac) < 0)
		return -EINVAL;
	struct in_addr a;
	if (inet_pton(AF_INET, slash + 1, &a) != 1)
		return -EINVAL;
	*ip = a.s_addr;
	return 0;
}

/* ---- rdp callbacks --------------------------------------------------------- */

static void xd_deliver(void *ctx, int peer, const void *frame, size_t len)
{
	struct xport *x = ctx;
	/* The frame may sit at any offset of a datagram: read its header
	 * through an aligned copy. */
	xf_hdr hc;
	const xf_hdr *h = &hc;
	if (len >= XF_HDR)
		memcpy(&hc, frame, XF_HDR);
	if (len < XF_HDR || xf_check_header(h) || h->len != len - XF_HDR ||
	    xf_check_payload(h, (const uint8_t *)frame + XF_HDR)) {
		rdp_abort_peer(x->r, peer, -EBADMSG, "malformed frame");
		return;
	}
	if (h->kind == XF_HELLO) {
		if (h->value != (uint64_t)peer || h->edge != x->attempt)
			rdp_abort_peer(x->r, peer, -EPROTO, "HELLO from the wrong worker");
		else
			x->hello[peer] = true;
		return;
	}
	if (h->kind == XF_BYE) {
		x->bye[peer] = true;
		return;
	}
	if (x->connecting || !x->ev) {
		/* Before the data plane polls: keep it for the first poll(). */
		xd_stash *s = malloc(sizeof(*s) + len);
		if (!s) {
			rdp_abort_peer(x->r, peer, -ENOMEM, "no memory for an early frame");
			return;
		}
		s->next = NULL;
		s->peer = peer;
		s->len = len;
		memcpy(s->b, frame, len);
		*x->stash_tail = s;
		x->stash_tail = &s->next;
		return;
	}
	x->ev->frame(x->ev->ctx, peer, h, (const uint8_t *)frame + XF_HDR);
}

static void rec_done(struct xport *x, xd_rec *t)
{
	t->next = x->done;
	x->done = t;
}

/* The driver freed the last mbuf attached to the frame's memory (after rdp
 * dropped its own reference). */
static void xd_ext_free(void *addr, void *opaque)
{
	(void)addr;
	xd_rec *t = opaque;
	rec_done(t->x, t);
}

static void xd_sent(void *ctx, void *cookie)
{
	struct xport *x = ctx;
	xd_rec *t = cookie;
	/* rdp's reference; mbufs may still point into the frame. */
	if (rte_mbuf_ext_refcnt_update(&t->shinfo, -1) == 0)
		rec_done(x, t);
}

static void xd_lost(void *ctx, int peer, int err, const char *why)
{
	struct xport *x = ctx;
	x->gone[peer] = true;
	if (x->ev && x->ev->lost)
		x->ev->lost(x->ev->ctx, peer, err, why);
}

/* ---- transmit ---------------------------------------------------------------- */

static void tx_flush(struct xport *x)
{
	if (!x->ntx)
		return;
	uint16_t n = rte_eth_tx_burst(x->port, 0, x->txb, (uint16_t)x->ntx);
	if (n < x->ntx)
		memmove(x->txb, x->txb + n, sizeof(x->txb[0]) * (size_t)(x->ntx - n));
	x->ntx -= n;
}

static int xd_emit(void *ctx, int peer, const struct iovec *iov, int iovcnt, void *cookie)
{
	struct xport *x = ctx;
	if (x->ntx == XD_TXB) {
		tx_flush(x);
		if (x->ntx == XD_TXB)
			return -EAGAIN;
	}
	size_t plen = 0;
	for (int i = 1; i < iovcnt; i++)
		plen += iov[i].iov_len;
	bool attach = cookie && x->zerocopy && plen >= XD_COPY_BELOW;
	struct rte_mbuf *m = rte_pktmbuf_alloc(x->pool);
	if (!m)
		return -EAGAIN;
	size_t dlen = iov[0].iov_len + plen;
	size_t inl = XD_L234 + iov[0].iov_len + (attach ? 0 : plen);
	uint8_t *p = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)inl);
	if (!p) {
		rte_pktmbuf_free(m);
		return -EAGAIN;
	}
	struct rte_ether_hdr *eh = (void *)p;
	rte_ether_addr_copy(&x->pmac[peer], &eh->dst_addr);
	rte_ether_addr_copy(&x->mac, &eh->src_addr);
	eh->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	struct rte_ipv4_hdr *ih = (void *)(eh + 1);
	memset(ih, 0, sizeof(*ih));
	ih->version_ihl = RTE_IPV4_VHL_DEF;
	ih->total_length = rte_cpu_to_be_16((uint16_t)(sizeof(*ih) + sizeof(struct rte_udp_hdr) + dlen));
	ih->packet_id = rte_cpu_to_be_16(x->ip_id++);
	ih->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
	ih->time_to_live = 64;
	ih->next_proto_id = IPPROTO_UDP;
	ih->src_addr = x->ip;
	ih->dst_addr = x->pip[peer];
	ih->hdr_checksum = rte_ipv4_cksum(ih);
	struct rte_udp_hdr *uh = (void *)(ih + 1);
	uh->src_port = uh->dst_port = rte_cpu_to_be_16(XD_UDP_PORT);
	uh->dgram_len = rte_cpu_to_be_16((uint16_t)(sizeof(*uh) + dlen));
	uh->dgram_cksum = 0;
	uint8_t *d = (uint8_t *)(uh + 1);
	memcpy(d, iov[0].iov_base, iov[0].iov_len);
	d += iov[0].iov_len;
	if (!attach) {
		for (int i = 1; i < iovcnt; i++) {
			memcpy(d, iov[i].iov_base, iov[i].iov_len);
			d += iov[i].iov_len;
		}
	} else {
		xd_rec *t = cookie;
		for (int i = 1; i < iovcnt; i++) {
			struct rte_mbuf *s = rte_pktmbuf_alloc(x->extpool);
			if (!s) {
				rte_pktmbuf_free(m);
				return -EAGAIN;
			}
			rte_mbuf_ext_refcnt_update(&t->shinfo, 1);
			rte_pktmbuf_attach_extbuf(s, iov[i].iov_base,
						  (rte_iova_t)(uintptr_t)iov[i].iov_base,
						  (uint16_t)iov[i].iov_len, &t->shinfo);
			s->data_len = (uint16_t)iov[i].iov_len;
			s->pkt_len = s->data_len;
			if (rte_pktmbuf_chain(m, s)) {
				rte_pktmbuf_free(s);
				rte_pktmbuf_free(m);
				return -EAGAIN;
			}
		}
	}
	x->txb[x->ntx++] = m;
	return 0;
}

/* ---- receive ------------------------------------------------------------------ */

static int rx_burst(struct xport *x, uint64_t now)
{
	struct rte_mbuf *b[XD_BURST];
	uint16_t n = rte_eth_rx_burst(x->port, 0, b, XD_BURST);
	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = b[i];
		if (m->nb_segs != 1 || m->data_len < XD_L234 + RDP_HDR)
			goto foreign;
		const uint8_t *p = rte_pktmbuf_mtod(m, const uint8_t *);
		const struct rte_ether_hdr *eh = (const void *)p;
		const struct rte_ipv4_hdr *ih = (const void *)(eh + 1);
		const struct rte_udp_hdr *uh = (const void *)(ih + 1);
		if (eh->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) ||
		    !rte_is_same_ether_addr(&eh->dst_addr, &x->mac) ||
		    ih->version_ihl != RTE_IPV4_VHL_DEF || ih->next_proto_id != IPPROTO_UDP ||
		    ih->dst_addr != x->ip || uh->dst_port != rte_cpu_to_be_16(XD_UDP_PORT))
			goto foreign;
		size_t ulen = rte_be_to_cpu_16(uh->dgram_len);
		if (ulen < sizeof(*uh) || ulen > m->data_len - RTE_ETHER_HDR_LEN - sizeof(*ih) ||
		    rte_be_to_cpu_16(ih->total_length) != ulen + sizeof(*ih))
			goto foreign;
		/* The sender must be who the rdp header says it is. */
		const uint8_t *dg = (const uint8_t *)(uh + 1);
		uint16_t src;
		memcpy(&src, dg + 4, 2);
		if (src >= x->npeers || !rte_is_same_ether_addr(&eh->src_addr, &x->pmac[src]) ||
		    ih->src_addr != x->pip[src])
			goto foreign;
		if (unlikely(x->drop_ppm)) {
			x->drop_rng = x->drop_rng * 6364136223846793005ull + 1442695040888963407ull;
			if ((x->drop_rng >> 33) % 1000000 < x->drop_ppm)
				goto foreign;
		}
		rdp_input(x->r, dg, ulen - sizeof(*uh), now);
		rte_pktmbuf_free(m);
		continue;
foreign:
		x->rx_foreign++;
		rte_pktmbuf_free(m);
	}
	return n;
}

static void report_done(struct xport *x, const xport_events *ev)
{
	while (x->done) {
		xd_rec *t = x->done;
		x->done = t->next;
		void *cookie = t->cookie;
		t->next = x->free_recs;
		x->free_recs = t;
		if (ev && ev->sent)
			ev->sent(ev->ctx, cookie);
	}
}

static int xd_poll(xport *x, const xport_events *ev)
{
	int work = 0;
	x->ev = ev;
	while (x->stash && !x->connecting) {
		xd_stash *s = x->stash;
		x->stash = s->next;
		if (!x->stash)
			x->stash_tail = &x->stash;
		const xf_hdr *h = (const void *)s->b;
		if (!x->gone[s->peer])
			ev->frame(ev->ctx, s->peer, h, s->b + XF_HDR);
		free(s);
		work++;
	}
	uint64_t now = now_ns();
	for (int k = 0; k < 8; k++) {
		int n = rx_burst(x, now);
		work += n;
		if (n < XD_BURST)
			break;
	}
	tx_flush(x);
	work += rdp_poll(x->r, now, xd_emit, x);
	tx_flush(x);
	if (x->done) {
		work++;
		report_done(x, ev);
	}
	return work;
}

/* ---- the interface -------------------------------------------------------------- */

static void xd_close(xport *x)
{
	if (!x)
		return;
	for (int i = 0; i < x->ntx; i++)
		rte_pktmbuf_free(x->txb[i]);
	if (x->port != UINT16_MAX) {
		/* Unplug the device too: the next attempt's open() probes it
		 * again (a closed port's device stays probed, and probing it
		 * twice fails). */
		struct rte_eth_dev_info info;
		struct rte_device *dev = NULL;
		if (rte_eth_dev_info_get(x->port, &info) == 0)
			dev = info.device;
		rte_eth_dev_stop(x->port);
		rte_eth_dev_close(x->port);
		if (dev)
			rte_dev_remove(dev);
	}
	rdp_free(x->r);
	while (x->stash) {
		xd_stash *s = x->stash;
		x->stash = s->next;
		free(s);
	}
	rte_mempool_free(x->pool);
	rte_mempool_free(x->extpool);
	free(x->recs);
	free(x->pmac);
	free(x->pip);
	free(x->hello);
	free(x->bye);
	free(x->gone);
	free(x);
}

static int xd_open(const xport_conf *conf, xport **out, char *addr, size_t addrlen,
		   char *err, size_t errlen)
{
	*out = NULL;
	int rc = eal_start(conf, err, errlen);
	if (rc < 0)
		return rc;
	bool was_up = rc == 1;
	struct xport *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->port = UINT16_MAX;
	x->self = conf->self;
	x->stash_tail = &x->stash;
	struct in_addr a;
	if (!conf->bind || inet_pton(AF_INET, conf->bind, &a) != 1) {
		emsg(err, errlen, "dpdk: bind must be the local IPv4 address (got %s)",
		     conf->bind ? conf->bind : "nothing");
		rc = -EINVAL;
		goto fail;
	}
	x->ip = a.s_addr;
	uint16_t port;
	rc = find_port(conf, was_up, &port, err, errlen);
	if (rc < 0)
		goto fail;
	char name[64];
	unsigned id = __atomic_fetch_add(&xd_count, 1, __ATOMIC_RELAXED);
	snprintf(name, sizeof(name), "xd%u", id);
	int socket = rte_eth_dev_socket_id(port);
	if (socket < 0)
		socket = 0;
	x->pool = rte_pktmbuf_pool_create(name, 8191, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
	snprintf(name, sizeof(name), "xd%ux", id);
	x->extpool = rte_pktmbuf_pool_create(name, 8191, 256, 0, 0, socket);
	if (!x->pool || !x->extpool) {
		emsg(err, errlen, "dpdk: mbuf pools: %s", rte_strerror(rte_errno));
		rc = -ENOMEM;
		goto fail;
	}
	struct rte_eth_conf pc;
	memset(&pc, 0, sizeof(pc));
	struct rte_eth_dev_info info;
	if ((rc = rte_eth_dev_info_get(port, &info)) < 0 ||
	    (rc = rte_eth_dev_configure(port, 1, 1, &pc)) < 0) {
		emsg(err, errlen, "dpdk: configure port %u: %s", port, rte_strerror(-rc));
		goto fail;
	}
	if (!(info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MULTI_SEGS))
		wlog(LOG_DEBUG, "dpdk: port %u does not claim multi-segment TX", port);
	uint16_t nrx = XD_NB_DESC, ntx = XD_NB_DESC;
	rte_eth_dev_adjust_nb_rx_tx_desc(port, &nrx, &ntx);
	if ((rc = rte_eth_rx_queue_setup(port, 0, nrx, (unsigned)socket, NULL, x->pool)) < 0 ||
	    (rc = rte_eth_tx_queue_setup(port, 0, ntx, (unsigned)socket, NULL)) < 0 ||
	    (rc = rte_eth_dev_start(port)) < 0) {
		emsg(err, errlen, "dpdk: start port %u: %s", port, rte_strerror(-rc));
		goto fail;
	}
	x->port = port;
	rte_eth_macaddr_get(port, &x->mac);
	/* Attach batch memory only where its virtual address is what the
	 * device uses (IOVA as VA: virtual devices, --no-huge); with physical
	 * addressing the memory would have to be registered first. */
	x->zerocopy = rte_eal_iova_mode() == RTE_IOVA_VA;
	char mac[RTE_ETHER_ADDR_FMT_SIZE];
	rte_ether_format_addr(mac, sizeof(mac), &x->mac);
	snprintf(addr, addrlen, "%s/%s", mac, conf->bind);
	/* rdp_new() waits for connect(), which knows the number of peers. */
	x->attempt = conf->attempt;
	/* Fault injection for tests where tc netem is missing: drop received
	 * datagrams at random, WEIR_DPDK_RX_DROP_PPM per million. */
	const char *d = getenv("WEIR_DPDK_RX_DROP_PPM");
	x->drop_ppm = d ? (uint32_t)strtoul(d, NULL, 0) : 0;
	x->drop_rng = (uint64_t)getpid();
	x->ip_id = (uint16_t)getpid();
	x->connecting = true;
	*out = x;
	return 0;
fail:
	xd_close(x);
	return rc;
}

static int send_ctl(struct xport *x, int peer, uint8_t kind, uint32_t edge, uint64_t value)
{
	xf_hdr h = { .magic = XF_MAGIC, .version = XF_VERSION, .kind = kind,
		     .edge = edge, .len = 0, .crc = crc32c(0, NULL, 0), .value = value };
	struct iovec iov = { &h, sizeof(h) };
	return rdp_send_frame(x->r, peer, &iov, 1, NULL); /* copied now */
}

static int xd_connect(xport *x, int npeers, const char *const *addrs, int timeout_ms,
		      char *err, size_t errlen)
{
	if (x->r || npeers < 1 || x->self >= npeers) {
		emsg(err, errlen, "dpdk: connect called twice or with %d peers", npeers);
		return -EINVAL;
	}
	x->npeers = npeers;
	x->pmac = calloc((size_t)npeers, sizeof(*x->pmac));
	x->pip = calloc((size_t)npeers, sizeof(*x->pip));
	x->hello = calloc((size_t)npeers, 1);
	x->bye = calloc((size_t)npeers, 1);
	x->gone = calloc((size_t)npeers, 1);
	size_t nrecs = (size_t)npeers * XD_TXQ;
	x->recs = calloc(nrecs, sizeof(xd_rec));
	if (!x->pmac || !x->pip || !x->hello || !x->bye || !x->gone || !x->recs)
		return -ENOMEM;
	for (size_t i = 0; i < nrecs; i++) {
		x->recs[i].x = x;
		x->recs[i].next = x->free_recs;
		x->free_recs = &x->recs[i];
	}
	for (int i = 0; i < npeers; i++) {
		if (i == x->self)
			continue;
		if (parse_addr(addrs[i], &x->pmac[i], &x->pip[i]) < 0) {
			emsg(err, errlen, "dpdk: worker %d address '%s' is not MAC/IP", i, addrs[i]);
			return -EINVAL;
		}
	}
	const char *g = getenv("WEIR_DPDK_GIVE_UP_MS");
	rdp_conf rc = { .self = x->self, .npeers = npeers, .attempt = x->attempt,
			.txq = XD_TXQ,
			.give_up_ns = g ? strtoull(g, NULL, 0) * 1000000ull : 0 };
	rdp_cb cb = { .ctx = x, .deliver = xd_deliver, .sent = xd_sent, .lost = xd_lost };
	int e = rdp_new(&rc, &cb, &x->r);
	if (e < 0) {
		emsg(err, errlen, "dpdk: rdp: %s", strerror(-e));
		return e;
	}
	/* HELLO to every peer, retransmitted by rdp until acknowledged. */
	for (int i = 0; i < npeers; i++)
		if (i != x->self && (e = send_ctl(x, i, XF_HELLO, x->attempt, (uint64_t)x->self)) < 0)
			return e;
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
	static const xport_events none;
	for (;;) {
		bool all = true;
		for (int i = 0; i < npeers; i++) {
			if (i == x->self)
				continue;
			if (x->gone[i]) {
				emsg(err, errlen, "dpdk: worker %d lost while connecting", i);
				return -ECONNREFUSED;
			}
			if (!x->hello[i] || rdp_pending(x->r, i))
				all = false;
		}
		if (all)
			break;
		if (now_ns() > deadline) {
			for (int i = 0; i < npeers; i++)
				if (i != x->self && !x->hello[i])
					emsg(err, errlen, "dpdk: no HELLO from worker %d (%s) in %d ms",
					     i, addrs[i], timeout_ms);
			return -ETIMEDOUT;
		}
		if (!xd_poll(x, &none))
			usleep(50);
	}
	x->connecting = false;
	x->ev = NULL;
	return 0;
}

static int xd_send(xport *x, int peer, const struct iovec *iov, int iovcnt, void *cookie)
{
	if (peer < 0 || peer >= x->npeers || peer == x->self)
		return -EINVAL;
	if (x->gone[peer])
		return -EPIPE;
	if (!cookie)
		return rdp_send_frame(x->r, peer, iov, iovcnt, NULL);
	xd_rec *t = x->free_recs;
	if (!t)
		return -EAGAIN;
	t->cookie = cookie;
	t->shinfo.free_cb = xd_ext_free;
	t->shinfo.fcb_opaque = t;
	rte_mbuf_ext_refcnt_set(&t->shinfo, 1); /* rdp's reference */
	int rc = rdp_send_frame(x->r, peer, iov, iovcnt, t);
	if (rc == 0)
		x->free_recs = t->next;
	return rc;
}

static void xd_wait(xport *x, int fd, uint64_t timeout_ns)
{
	(void)x;
	/* No RX interrupt on the virtual devices: nap briefly (a NIC's
	 * rte_eth_dev_rx_intr_enable() + epoll would go here). */
	int us = timeout_ns < 100000 ? (int)(timeout_ns / 1000) : 100;
	if (fd >= 0) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		struct timespec ts = { 0, (long)us * 1000 };
		ppoll(&p, 1, &ts, NULL);
	} else if (us) {
		usleep((useconds_t)us);
	}
}

static int xd_finish(xport *x, const xport_events *ev)
{
	if (!x->bye_sent) {
		for (int i = 0; i < x->npeers; i++) {
			if (i == x->self || x->gone[i])
				continue;
			int rc = send_ctl(x, i, XF_BYE, 0, 0);
			if (rc == -EAGAIN)
				goto later; /* queue full; the BYEs go in one pass */
		}
		x->bye_sent = true;
	}
later:
	xd_poll(x, ev);
	bool all = x->bye_sent;
	for (int i = 0; i < x->npeers; i++) {
		if (i == x->self)
			continue;
		if (x->gone[i])
			return -EPIPE;
		if (!x->bye[i] || rdp_pending(x->r, i))
			all = false;
	}
	if (!all)
		return 0;
	/* Like TCP's TIME_WAIT: stay a little so that our last ack, if lost,
	 * is sent again when the peer retransmits its BYE. */
	uint64_t now = now_ns();
	if (!x->linger_until) {
		uint64_t l = 0;
		for (int i = 0; i < x->npeers; i++)
			if (i != x->self && rdp_rto(x->r, i) > l)
				l = rdp_rto(x->r, i);
		l = 3 * l < 20000000ull ? 20000000ull : 3 * l > 600000000ull ? 600000000ull : 3 * l;
		x->linger_until = now + l;
	}
	return now >= x->linger_until ? 1 : 0;
}

const xport_ops xport_dpdk_ops = {
	.name = "dpdk",
	.open = xd_open,
	.connect = xd_connect,
	.send = xd_send,
	.poll = xd_poll,
	.wait = xd_wait,
	.finish = xd_finish,
	.close = xd_close,
};
