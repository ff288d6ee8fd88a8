/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control protocol's codec, connections and authentication (format in
 * control.h).  Every message type is a list of fields (ctl_fields); one
 * encoder and one decoder walk that list, so a type's layout is written
 * once and the decoder checks every field's bounds.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "control.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

/*
 * Field codes: j job, a attempt, i index, w nworkers, f first, c ncores,
 * k cores, n retained (u32); r role, s stop (u8); e rc (i32); d id, u run,
 * v interval, t timeout (u64); N name, H host, X transport, D dir, A addr
 * (strings); B blob; G digest (32 bytes); L list of strings.
 */
static const char *const ctl_fields[CTL_TYPE_MAX + 1] = {
	[CTL_CHALLENGE] = "G",
	[CTL_AUTH] = "rG",
	[CTL_AUTH_OK] = "i",
	[CTL_REGISTER] = "kHX",
	[CTL_HEARTBEAT] = "",
	[CTL_SUBMIT] = "NBGLDvtn",
	[CTL_DEPLOY] = "jaiwfcuNBGLD",
	[CTL_DEPLOYED] = "jaeAB",
	[CTL_START] = "jaL",
	[CTL_TRIGGER] = "jadsD",
	[CTL_ACK] = "jadeB",
	[CTL_COMMIT] = "jad",
	[CTL_LOCAL_DONE] = "ja",
	[CTL_JOB_OVER] = "ja",
	[CTL_CANCEL] = "ja",
	[CTL_FINISHED] = "jaeB",
	[CTL_LIST] = "",
	[CTL_CANCEL_JOB] = "j",
	[CTL_SAVEPOINT] = "jsD",
	[CTL_REPLY] = "eB",
};

static const char *const ctl_names[CTL_TYPE_MAX + 1] = {
	[CTL_CHALLENGE] = "CHALLENGE", [CTL_AUTH] = "AUTH", [CTL_AUTH_OK] = "AUTH_OK",
	[CTL_REGISTER] = "REGISTER", [CTL_HEARTBEAT] = "HEARTBEAT",
	[CTL_SUBMIT] = "SUBMIT", [CTL_DEPLOY] = "DEPLOY", [CTL_DEPLOYED] = "DEPLOYED",
	[CTL_START] = "START", [CTL_TRIGGER] = "TRIGGER", [CTL_ACK] = "ACK",
	[CTL_COMMIT] = "COMMIT", [CTL_LOCAL_DONE] = "LOCAL_DONE",
	[CTL_JOB_OVER] = "JOB_OVER", [CTL_CANCEL] = "CANCEL",
	[CTL_FINISHED] = "FINISHED", [CTL_LIST] = "LIST",
	[CTL_CANCEL_JOB] = "CANCEL_JOB", [CTL_SAVEPOINT] = "SAVEPOINT",
	[CTL_REPLY] = "REPLY",
};

const char *ctl_type_name(int type)
{
	return type >= 1 && type <= CTL_TYPE_MAX ? ctl_names[type] : "?";
}

static uint32_t max_len(uint8_t type)
{
	switch (type) {
	case CTL_SUBMIT:
	case CTL_DEPLOY:
	case CTL_ACK:
		return CTL_MAX_LARGE;
	default:
		return CTL_MAX_SMALL;
	}
}

int ctl_check_header(const uint8_t *h, uint8_t *type, uint32_t *len)
{
	uint16_t magic = (uint16_t)(h[0] | h[1] << 8);
	uint32_t n;
	memcpy(&n, h + 4, 4);
	if (magic != CTL_MAGIC || h[2] != CTL_VERSION || h[3] < 1 || h[3] > CTL_TYPE_MAX)
		return -EBADMSG;
	if (n > max_len(h[3]))
		return -EMSGSIZE;
	*type = h[3];
	*len = n;
	return 0;
}

/* ---- encoding ------------------------------------------------------------ */

typedef struct wr {
	uint8_t *p; /* NULL: only count */
	size_t n;
} wr;

static void put(wr *w, const void *p, size_t n)
{
	if (w->p && n)
		memcpy(w->p + w->n, p, n);
	w->n += n;
}

static void put_u32(wr *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(wr *w, uint64_t v) { put(w, &v, 8); }
static void put_str(wr *w, const char *s)
{
	uint32_t n = (uint32_t)strlen(s);
	put_u32(w, n);
	put(w, s, n);
}

static void encode_fields(const ctl_msg *m, wr *w)
{
	for (const char *f = ctl_fields[m->type]; *f; f++) {
		switch (*f) {
		case 'j': put_u32(w, m->job); break;
		case 'a': put_u32(w, m->attempt); break;
		case 'i': put_u32(w, m->index); break;
		case 'w': put_u32(w, m->nworkers); break;
		case 'f': put_u32(w, m->first); break;
		case 'c': put_u32(w, m->ncores); break;
		case 'k': put_u32(w, m->cores); break;
		case 'n': put_u32(w, m->retained); break;
		case 'r': put(w, &m->role, 1); break;
		case 's': put(w, &m->stop, 1); break;
		case 'e': put_u32(w, (uint32_t)m->rc); break;
		case 'd': put_u64(w, m->id); break;
		case 'u': put_u64(w, m->run); break;
		case 'v': put_u64(w, m->interval_ms); break;
		case 't': put_u64(w, m->timeout_ms); break;
		case 'N': put_str(w, m->name); break;
		case 'H': put_str(w, m->host); break;
		case 'X': put_str(w, m->transport); break;
		case 'D': put_str(w, m->dir); break;
		case 'A': put_str(w, m->addr); break;
		case 'B':
			put_u32(w, (uint32_t)m->blob_len);
			put(w, m->blob, m->blob_len);
			break;
		case 'G': put(w, m->digest, 32); break;
		case 'L': {
			const char *s = m->list;
			put_u32(w, (uint32_t)m->nlist);
			for (int i = 0; i < m->nlist; i++) {
				put_str(w, s);
				s += strlen(s) + 1;
			}
			break;
		}
		}
	}
}

size_t ctl_encoded_size(const ctl_msg *m)
{
	wr w = { NULL, CTL_HDR };
	encode_fields(m, &w);
	return w.n;
}

void ctl_encode(const ctl_msg *m, uint8_t *out)
{
	wr w = { out, CTL_HDR };
	encode_fields(m, &w);
	uint32_t len = (uint32_t)(w.n - CTL_HDR);
	out[0] = CTL_MAGIC & 0xff;
	out[1] = CTL_MAGIC >> 8;
	out[2] = CTL_VERSION;
	out[3] = m->type;
	memcpy(out + 4, &len, 4);
}

/* ---- decoding ------------------------------------------------------------- */

typedef struct rd {
	const uint8_t *p;
	size_t n, off;
} rd;

static const uint8_t *take(rd *r, size_t n)
{
	if (n > r->n - r->off)
		return NULL;
	const uint8_t *p = r->p + r->off;
	r->off += n;
	return p;
}

static bool get_u32(rd *r, uint32_t *v)
{
	const uint8_t *p = take(r, 4);
	if (p)
		memcpy(v, p, 4);
	return p != NULL;
}

static bool get_u64(rd *r, uint64_t *v)
{
	const uint8_t *p = take(r, 8);
	if (p)
		memcpy(v, p, 8);
	return p != NULL;
}

/* A string of at most cap - 1 bytes without NUL, copied into buf. */
static bool get_str(rd *r, char *buf, size_t cap)
{
	uint32_t n;
	const uint8_t *p;
	if (!get_u32(r, &n) || n >= cap || !(p = take(r, n)) || memchr(p, 0, n))
		return false;
	memcpy(buf, p, n);
	buf[n] = 0;
	return true;
}

int ctl_decode(uint8_t type, const uint8_t *p, size_t n, ctl_msg *m, char *err,
	       size_t errlen)
{
	rd r = { p, n, 0 };
	const char *what = NULL;

	memset(m, 0, sizeof(*m));
	if (type < 1 || type > CTL_TYPE_MAX) {
		snprintf(err, errlen, "unknown message type %u", type);
		return -EBADMSG;
	}
	m->type = type;
	for (const char *f = ctl_fields[type]; *f && !what; f++) {
		uint32_t v32 = 0;
		const uint8_t *q;
		switch (*f) {
		case 'j': if (!get_u32(&r, &m->job)) what = "job"; break;
		case 'a': if (!get_u32(&r, &m->attempt)) what = "attempt"; break;
		case 'i': if (!get_u32(&r, &m->index)) what = "index"; break;
		case 'w':
			if (!get_u32(&r, &m->nworkers) || m->nworkers < 1 || m->nworkers > 1024)
				what = "nworkers";
			break;
		case 'f': if (!get_u32(&r, &m->first) || m->first > 65536) what = "first"; break;
		case 'c':
			if (!get_u32(&r, &m->ncores) || m->ncores < 1 || m->ncores > 65536)
				what = "ncores";
			break;
		case 'k':
			if (!get_u32(&r, &m->cores) || m->cores < 1 || m->cores > 1024)
				what = "cores";
			break;
		case 'n': if (!get_u32(&r, &m->retained) || m->retained > 1000) what = "retained"; break;
		case 'r':
			if (!(q = take(&r, 1)) || (*q != CTL_ROLE_WORKER && *q != CTL_ROLE_CLIENT))
				what = "role";
			else
				m->role = *q;
			break;
		case 's':
			if (!(q = take(&r, 1)) || *q > 1)
				what = "stop";
			else
				m->stop = *q;
			break;
		case 'e':
			if (!get_u32(&r, &v32))
				what = "rc";
			m->rc = (int32_t)v32;
			break;
		case 'd': if (!get_u64(&r, &m->id) || m->id > INT64_MAX) what = "id"; break;
		case 'u': if (!get_u64(&r, &m->run) || m->run > 999999) what = "run"; break;
		case 'v': if (!get_u64(&r, &m->interval_ms)) what = "interval"; break;
		case 't': if (!get_u64(&r, &m->timeout_ms)) what = "timeout"; break;
		case 'N': if (!get_str(&r, m->name, sizeof(m->name))) what = "name"; break;
		case 'H': if (!get_str(&r, m->host, sizeof(m->host))) what = "host"; break;
		case 'X': if (!get_str(&r, m->transport, sizeof(m->transport))) what = "transport"; break;
		case 'D': if (!get_str(&r, m->dir, sizeof(m->dir))) what = "dir"; break;
		case 'A': if (!get_str(&r, m->addr, sizeof(m->addr))) what = "addr"; break;
		case 'B':
			if (!get_u32(&r, &v32) || !(m->blob = take(&r, v32)))
				what = "blob";
			m->blob_len = v32;
			break;
		case 'G':
			if (!(q = take(&r, 32)))
				what = "digest";
			else
				memcpy(m->digest, q, 32);
			break;
		case 'L': {
			/* Strings are checked here and copied NUL-separated
			 * into a list the caller frees with the message: to
			 * avoid an allocation, they are rewritten in place
			 * over their length prefixes by ctl_recv's caller
			 * (see below). */
			uint32_t cnt;
			if (!get_u32(&r, &cnt) || cnt > CTL_MAX_ARGS) {
				what = "list count";
				break;
			}
			size_t start = r.off;
			for (uint32_t i = 0; i < cnt && !what; i++) {
				uint32_t len;
				if (!get_u32(&r, &len) || len > 4095 || !(q = take(&r, len)) ||
				    memchr(q, 0, len))
					what = "list item";
			}
			m->nlist = (int)cnt;
			m->list = (const char *)p + start;
			m->list_len = r.off - start;
			break;
		}
		}
	}
	if (!what && r.off != n)
		what = "trailing bytes";
	if (what) {
		snprintf(err, errlen, "malformed %s message: bad %s", ctl_type_name(type), what);
		return -EBADMSG;
	}
	return 0;
}

/*
 * A decoded list is still length-prefixed in the payload; make it
 * NUL-separated in place (each u32 prefix becomes the previous string's
 * terminator, the first prefix is dropped by moving the start).
 */
static void list_in_place(ctl_msg *m)
{
	if (!m->nlist)
		return;
	uint8_t *p = (uint8_t *)m->list;
	size_t off = 0, w = 0;
	for (int i = 0; i < m->nlist; i++) {
		uint32_t len;
		memcpy(&len, p + off, 4);
		memmove(p + w, p + off + 4, len);
		w += len;
		p[w++] = 0;
		off += 4 + len;
	}
	m->list_len = w;
}

/* ---- connections ----------------------------------------------------------------- */

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd pfd = { .fd = fd, .events = POLLOUT };
				if (poll(&pfd, 1, 10000) <= 0)
					return -ETIMEDOUT;
				continue;
			}
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int ctl_send(int fd, const ctl_msg *m)
{
	size_t n = ctl_encoded_size(m);
	uint8_t *buf = malloc(n);
	if (!buf)
		return -ENOMEM;
	ctl_encode(m, buf);
	int rc = write_all(fd, buf, n);
	free(buf);
	return rc;
}

void ctl_conn_reset(ctl_conn *c)
{
	free(c->payload);
	c->payload = NULL;
	c->got = 0;
	c->len = 0;
}

int ctl_recv(ctl_conn *c, ctl_msg *m, char *err, size_t errlen)
{
	for (;;) {
		if (c->got == CTL_HDR + c->len && c->got >= CTL_HDR && c->payload) {
			/* the previous message was handed out: start anew */
			ctl_conn_reset(c);
		}
		if (c->got < CTL_HDR) {
			ssize_t r = recv(c->fd, c->hdr + c->got, CTL_HDR - c->got, 0);
			if (r == 0 && c->got) {
				snprintf(err, errlen, "connection closed in the middle of a message");
				return -EPIPE;
			}
			if (r == 0)
				return -ECONNRESET;
			if (r < 0)
				return errno == EAGAIN || errno == EINTR ? 0 : -errno;
			c->got += (uint32_t)r;
			if (c->got < CTL_HDR)
				continue;
			int rc = ctl_check_header(c->hdr, &c->type, &c->len);
			if (rc < 0) {
				uint32_t n;
				memcpy(&n, c->hdr + 4, 4);
				if (rc == -EMSGSIZE)
					snprintf(err, errlen, "%s message of %u bytes is over "
						 "its bound", ctl_type_name(c->hdr[3]), n);
				else
					snprintf(err, errlen, "not a Weir control message "
						 "(magic %02x%02x, version %u, type %u)",
						 c->hdr[0], c->hdr[1], c->hdr[2], c->hdr[3]);
				return rc;
			}
			c->payload = malloc(c->len ? c->len : 1);
			if (!c->payload)
				return -ENOMEM;
		}
		uint32_t have = c->got - CTL_HDR;
		if (have < c->len) {
			ssize_t r = recv(c->fd, c->payload + have, c->len - have, 0);
			if (r == 0) {
				snprintf(err, errlen, "connection closed in the middle of a %s "
					 "message", ctl_type_name(c->type));
				return -EPIPE;
			}
			if (r < 0)
				return errno == EAGAIN || errno == EINTR ? 0 : -errno;
			c->got += (uint32_t)r;
			if (c->got - CTL_HDR < c->len)
				continue;
		}
		int rc = ctl_decode(c->type, c->payload, c->len, m, err, errlen);
		if (rc < 0)
			return rc;
		list_in_place(m);
		return 1;
	}
}

/* ---- authentication ----------------------------------------------------------------- */

void ctl_mac(const uint8_t *key, size_t keylen, const uint8_t nonce[32], uint8_t role,
	     uint8_t out[32])
{
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, key, keylen);
	crypto_auth_hmacsha256_update(&st, nonce, 32);
	crypto_auth_hmacsha256_update(&st, &role, 1);
	crypto_auth_hmacsha256_final(&st, out);
}

int weir_cluster_read_secret(const char *path, uint8_t *key, size_t *keylen, char *err,
			     size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "--secret-file %s: %s", path, strerror(errno));
		return -errno;
	}
	uint8_t buf[WEIR_SECRET_MAX + 1]; /* one more byte tells "too long" */
	ssize_t n = read(fd, buf, sizeof(buf));
	int e = errno;
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "--secret-file %s: %s", path, strerror(e));
		return -e;
	}
	if (n > WEIR_SECRET_MAX) {
		snprintf(err, errlen, "--secret-file %s: longer than %d bytes", path,
			 WEIR_SECRET_MAX);
		return -EINVAL;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	memcpy(key, buf, (size_t)n);
	if (n == 0) {
		snprintf(err, errlen, "--secret-file %s is empty", path);
		return -EINVAL;
	}
	*keylen = (size_t)n;
	return 0;
}

int ctl_client_auth(int fd, const uint8_t *key, size_t keylen, uint8_t role,
		    uint32_t *index, char *err, size_t errlen)
{
	ctl_conn c = { .fd = fd };
	ctl_msg m;
	int rc;

	while ((rc = ctl_recv(&c, &m, err, errlen)) == 0)
		;
	if (rc < 0 || m.type != CTL_CHALLENGE) {
		if (rc >= 0 || !err[0])
			snprintf(err, errlen, "the coordinator did not send its challenge (%s)",
				 rc < 0 ? strerror(-rc) : ctl_type_name(m.type));
		ctl_conn_reset(&c);
		return rc < 0 ? rc : -EPROTO;
	}
	ctl_msg a = { .type = CTL_AUTH, .role = role };
	ctl_mac(key, keylen, m.digest, role, a.digest);
	ctl_conn_reset(&c);
	if ((rc = ctl_send(fd, &a)) < 0) {
		snprintf(err, errlen, "sending AUTH: %s", strerror(-rc));
		return rc;
	}
	while ((rc = ctl_recv(&c, &m, err, errlen)) == 0)
		;
	if (rc < 0 || m.type != CTL_AUTH_OK) {
		snprintf(err, errlen, "the coordinator refused us (wrong or missing "
			 "--secret-file?)");
		ctl_conn_reset(&c);
		return rc < 0 ? rc : -EACCES;
	}
	*index = m.index;
	ctl_conn_reset(&c);
	return 0;
}

/* ---- sockets -------------------------------------------------------------------------- */

static int parse_addr(const char *addr, struct sockaddr_in *sa, char *err, size_t errlen)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	char *end;
	if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof(host)) {
		snprintf(err, errlen, "'%s' is not HOST:PORT", addr);
		return -EINVAL;
	}
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = 0;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 0 || port > 65535 || end == colon + 1) {
		snprintf(err, errlen, "'%s': bad port", addr);
		return -EINVAL;
	}
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sa->sin_addr) == 1)
		return 0;
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res;
	if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) {
		snprintf(err, errlen, "'%s': unknown host", addr);
		return -EINVAL;
	}
	sa->sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
	freeaddrinfo(res);
	return 0;
}

int ctl_dial(const char *addr, int timeout_ms, char *err, size_t errlen)
{
	struct sockaddr_in sa;
	int rc = parse_addr(addr, &sa, err, errlen);
	if (rc < 0)
		return rc;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -errno;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
		rc = -errno;
		goto fail;
	}
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	if (poll(&pfd, 1, timeout_ms) <= 0) {
		rc = -ETIMEDOUT;
		goto fail;
	}
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
	if (soerr) {
		rc = -soerr;
		goto fail;
	}
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
fail:
	snprintf(err, errlen, "cannot connect to %s: %s", addr, strerror(-rc));
	close(fd);
	return rc;
}

int ctl_listen(const char *addr, char *err, size_t errlen)
{
	struct sockaddr_in sa;
	int rc = parse_addr(addr, &sa, err, errlen);
	if (rc < 0)
		return rc;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -errno;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
		close(fd);
		return rc;
	}
	return fd;
}
