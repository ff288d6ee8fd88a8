/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The cluster's control protocol: small versioned messages over TCP
 * between the coordinator, its workers and clients (`weir run --cluster`,
 * `weir list --cluster`, ...).
 *
 * Every message:
 *
 *   0       2       3       4               8
 *   +-------+-------+-------+---------------+---------------------------+
 *   | magic | vers  | type  | len u32       | payload[len]              |
 *   | 'W''C'| 1     | u8    | little-endian | fields in the type's order|
 *   +-------+-------+-------+---------------+---------------------------+
 *
 * Payload fields are little-endian integers (u8, u32, i32, u64), strings
 * (u32 length + bytes, no NUL, bounded per field, no NUL inside), byte
 * strings (u32 length + bytes) and lists of strings (u32 count + strings).
 * Which fields a type carries, in which order, is the table ctl_fields in
 * control.c.  A message whose magic, version or type is unknown, whose
 * length is over the type's bound, or whose payload does not decode to
 * exactly its fields is refused: the receiver logs it and closes the
 * connection.
 *
 * Authentication: a connection starts with the server's CHALLENGE (32
 * random bytes); the peer answers AUTH with its role and
 * HMAC-SHA256(secret, nonce || role) (libsodium); the server answers
 * AUTH_OK or closes.  Without a secret both sides use the empty key: that
 * authenticates nobody, and the coordinator says so when it starts.
 */
#ifndef WEIR_NET_CONTROL_H
#define WEIR_NET_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <weir/admin.h>

#define CTL_MAGIC 0x4357u /* "WC" */
#define CTL_VERSION 1
#define CTL_HDR 8u
#define CTL_MAX_SMALL (1u << 20)   /* bound of most messages */
#define CTL_MAX_LARGE (256u << 20) /* jobs' shared objects, manifest parts */
#define CTL_MAX_ARGS 256

enum ctl_type {
	CTL_CHALLENGE = 1, /* S->*: digest = nonce */
	CTL_AUTH,          /* *->S: role, digest = mac */
	CTL_AUTH_OK,       /* S->*: index (a worker's id) */
	CTL_REGISTER,      /* W->S: cores, host, transport */
	CTL_HEARTBEAT,     /* W->S */
	CTL_SUBMIT,        /* client->S: name, blob = job .so, digest = its
			    * sha256, list = run arguments, dir = checkpoint
			    * dir, interval, timeout, retained */
	CTL_DEPLOY,        /* S->W: job, attempt, index, nworkers, first,
			    * ncores, run, name, blob, digest, list, dir */
	CTL_DEPLOYED,      /* W->S: job, attempt, rc, addr, blob = plan or
			    * error text */
	CTL_START,         /* S->W: job, attempt, list = data addresses */
	CTL_TRIGGER,       /* S->W: job, attempt, id, stop, dir (savepoint) */
	CTL_ACK,           /* W->S: job, attempt, id, rc, blob = manifest part
			    * or error text */
	CTL_COMMIT,        /* S->W: job, attempt, id */
	CTL_LOCAL_DONE,    /* W->S: job, attempt */
	CTL_JOB_OVER,      /* S->W: job, attempt */
	CTL_CANCEL,        /* S->W: job, attempt */
	CTL_FINISHED,      /* W->S: job, attempt, rc, blob = message */
	CTL_LIST,          /* client->S */
	CTL_CANCEL_JOB,    /* client->S: job */
	CTL_SAVEPOINT,     /* client->S: job, stop, dir */
	CTL_REPLY,         /* S->client: rc (1: progress, 0 done, < 0 error),
			    * blob = text */
	CTL_TYPE_MAX = CTL_REPLY,
};

enum ctl_role { CTL_ROLE_WORKER = 1, CTL_ROLE_CLIENT = 2 };

typedef struct ctl_msg {
	uint8_t type;
	uint8_t role, stop;
	uint32_t job, attempt, index, nworkers, first, ncores, cores, retained;
	int32_t rc;
	uint64_t id, run, interval_ms, timeout_ms;
	char name[256], host[256], transport[16], dir[4096], addr[128];
	uint8_t digest[32];
	/* Points into the received payload (decode) or the caller's memory
	 * (encode). */
	const uint8_t *blob;
	size_t blob_len;
	/* A list of strings: nlist NUL-terminated strings back to back. */
	int nlist;
	const char *list;
	size_t list_len;
} ctl_msg;

/* Human name of a type ("DEPLOY"), "?" if unknown. */
const char *ctl_type_name(int type);

/*
 * Check a message header (CTL_HDR bytes): 0 with *type and *len set, or
 * -EBADMSG (magic, version, type) / -EMSGSIZE (len over the type's bound).
 */
int ctl_check_header(const uint8_t *hdr, uint8_t *type, uint32_t *len);

/*
 * Decode payload p[0..n) of a message of type into m (blob and list point
 * into p).  0, or -EBADMSG with the field at fault in err.
 */
int ctl_decode(uint8_t type, const uint8_t *p, size_t n, ctl_msg *m,
	       char *err, size_t errlen);

/* Encoded size (header included) of m, and the encoding into out. */
size_t ctl_encoded_size(const ctl_msg *m);
void ctl_encode(const ctl_msg *m, uint8_t *out);

/* ---- connections (blocking sockets, used off the data path) ------------ */

typedef struct ctl_conn {
	int fd;
	/* receive side: the message being read */
	uint8_t hdr[CTL_HDR];
	uint32_t got;         /* bytes of header + payload read so far */
	uint8_t type;
	uint32_t len;
	uint8_t *payload;     /* malloc'd, len bytes */
	char peer[64];        /* "IP:PORT" for messages */
} ctl_conn;

/* Send m on fd, whole (blocking).  0 or -errno. */
int ctl_send(int fd, const ctl_msg *m);
/*
 * Read what fd has (non-blocking fd: never waits; blocking: waits for at
 * least one byte).  Returns 1 with a whole message decoded into m (valid
 * until the next call), 0 when more bytes are needed, -errno when the
 * connection failed or closed (-ECONNRESET for EOF), or -EBADMSG /
 * -EMSGSIZE for a malformed message (err says what).
 */
int ctl_recv(ctl_conn *c, ctl_msg *m, char *err, size_t errlen);
void ctl_conn_reset(ctl_conn *c);

/*
 * Authentication.  ctl_mac(): HMAC-SHA256 of nonce || role with the secret
 * (key may be empty).  The secret is read with weir_cluster_read_secret
 * (weir/admin.h).
 */
void ctl_mac(const uint8_t *key, size_t keylen, const uint8_t nonce[32], uint8_t role,
	     uint8_t out[32]);
/* Client side of the handshake on a connected blocking fd: 0 (with the
 * server's AUTH_OK index in *index) or -errno with err. */
int ctl_client_auth(int fd, const uint8_t *key, size_t keylen, uint8_t role,
		    uint32_t *index, char *err, size_t errlen);
/* Connect to "HOST:PORT" (blocking, timeout); fd or -errno with err. */
int ctl_dial(const char *addr, int timeout_ms, char *err, size_t errlen);
/* Listen on "IP:PORT"; fd or -errno with err. */
int ctl_listen(const char *addr, char *err, size_t errlen);

#endif
