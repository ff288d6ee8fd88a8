/* SPDX-License-Identifier: Apache-2.0 */
/*
 * State logs over io_uring (the format and the contract are drawn in
 * statelog.h): the per-core writer, its segment files and sync tickets, the
 * reader used at recovery, and CRC32C.
 *
 * Writer.  `nbufs` page-aligned buffers, registered with the ring when the
 * memlock limit allows (else plain writes of the same buffers), are filled
 * one at a time; slog_reserve() hands out room in the current buffer's open
 * frame.  A buffer is submitted when an entry does not fit, at slog_sync()
 * and at a segment boundary; its last page is completed with a padding frame
 * first, so every write covers whole pages at a page-aligned offset, the
 * next buffer starts on the next page, and a page written once is never
 * written again.  Buffers are reused oldest first; the writer waits for the
 * disk only when all of them are in flight.
 *
 *   buffer:  [frame][frame]...[open frame: hdr | entry entry ...]    free
 *            ^cur                                          ^wp      ^cur+lim
 *
 * A new segment starts when the file offset of the next buffer passes
 * seg_size; its 4096-byte header is the first page of that buffer (so it
 * costs no extra write), except for the first segment, whose header is
 * written synchronously by slog_open() to probe O_DIRECT.  The old segment's
 * fd is fdatasynced with the next ticket and closed when that completes.
 *
 * Tickets.  slog_sync() queues fdatasyncs (segment, old segments, fds of
 * slog_add_fd_sync) and an fsync of the directory when a segment was
 * created.  The first of them carries IOSQE_IO_DRAIN: it starts only once
 * every write submitted before it completed, and io_uring starts no later
 * request before it completes, so the others are ordered after the writes
 * too and run in parallel.  A ticket is durable when its operations
 * completed and every earlier ticket is durable; a ring of TICKETS pending
 * tickets counts the operations left.
 *
 * Reader.  Read-ahead through an io_uring of its own: a segment is read in
 * chunks of up to 4 MiB, five slots of one region (on huge pages where the
 * kernel gives them), four reads in flight while the caller holds the
 * frame in the fifth; O_DIRECT when the file system takes it and the read
 * is large (1 MiB or more), so the disk streams at its sequential
 * bandwidth while the caller applies what was read.  A frame inside one
 * chunk, or in two side by side in the region, is returned in place; one
 * wrapping around the region or longer than it is copied into a scratch
 * buffer, which the frame's checked length bounds by the file's size.
 * Reads never go past the file's size nor past the end position's page;
 * when the range goes on in the next segment, that file is opened and its
 * first chunks read while the last ones of the current segment are used.
 * A zero frame header or the end of the file ends a segment; when the end
 * position lies in a later segment, reading goes on at offset 4096 of the
 * next one.  (So bytes lost at the tail of a segment that is not the last
 * one are not noticed: the format has no end-of-segment record.)
 *
 * Not done: the O_DIRECT fallback happens at open (the first write is
 * synchronous); a file system that takes O_DIRECT for that page but
 * refuses later writes sets the sticky error instead.  Likewise the reader
 * probes O_DIRECT reads with the first segment's header: a later file
 * whose O_DIRECT reads fail is reported as a failed read (-EIO).  Where
 * io_uring is not allowed, the reader reads its chunks synchronously
 * (correct, without read-ahead).
 *
 * Threads: a slog is touched only by the core that owns it (or the main
 * thread once the reactors stopped); a reader by the thread that opened it.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <liburing.h>

#include "core.h"
#include "statelog.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "state log headers are written in host order: little-endian only"
#endif

#define FRAME_HDR 8u
#define DEF_BUF (1u << 20)
#define DEF_NBUFS 4
#define DEF_SEG (64ull << 20)
#define MAX_BUF (1u << 30)
#define MAX_NBUFS 256
/* Frame lengths are 31 bits (bit 31 flags padding). */
#define MAX_ENTRY ((size_t)0x7fffffffu - 2 * SLOG_PAGE)
#define TICKETS 64u /* pending tickets; slog_sync() waits when full */
/* Reader: RD_SLOTS chunks of RD_CHUNK bytes, in a region aligned for
 * transparent huge pages: 4 reads of 4 MiB in flight while the caller
 * holds a fifth reach the disk's sequential bandwidth with O_DIRECT (see
 * perf/bench_statelog). */
#define RD_CHUNK (4u << 20)
#define RD_SLOTS 5
#define RD_ALIGN (2u << 20)
#define RD_DIRECT_MIN (1u << 20) /* O_DIRECT for reads of this much or more */

#define ALIGN8(x) (((x) + 7) & ~(size_t)7)
#define ALIGN_PAGE(x) (((x) + SLOG_PAGE - 1) & ~(uint64_t)(SLOG_PAGE - 1))


/* ---- the writer ------------------------------------------------------------ */

/* user_data of a request: kind in bits 0-1, buffer / big write / ticket slot
 * index in bits 2-31, fd + 1 to close once done in bits 32-63 (0: none). */
enum { OP_WRITE = 0, OP_BIG = 1, OP_FSYNC = 2 };
#define UD(kind, idx, fd1) \
	((uint64_t)(kind) | (uint64_t)(idx) << 2 | (uint64_t)(uint32_t)(fd1) << 32)

typedef struct sbuf {
	char *mem;
	size_t len; /* bytes in flight; 0 = free */
} sbuf;

typedef struct big_io { /* a temporary buffer of one oversized entry */
	char *mem;  /* NULL = free slot */
	size_t len;
} big_io;

typedef struct fdvec {
	int *v;
	int n, cap;
} fdvec;

/* Owned by the core that owns the log (see the file comment). */
struct slog {
	/* The reserve fast path: room is (bytes left in the open frame's
	 * buffer) + 1, or 0 when no frame is open or after an error, so that
	 * one comparison decides. */
	size_t room;
	char *wp;          /* where the next entry goes */
	char *cur;         /* buffer being filled; NULL = none taken yet */
	size_t lim;        /* frames may use cur[0, lim) */
	char *frame;       /* header of the open frame, NULL = none */
	int cur_idx;       /* index in bufs, -1 = a big temporary buffer */
	uint64_t cur_base; /* file offset of cur[0] */
	int err;           /* sticky: first failed write, sync or submit */

	uint64_t seg;      /* current segment */
	int fd;            /* its file */
	int dirfd;
	bool direct;       /* files are O_DIRECT */
	bool fixed;        /* buffers are registered */
	bool written;      /* writes submitted since the last sync */
	bool dir_dirty;    /* a segment was created since the last sync */
	bool ring_dead;    /* submit failed: requests may never complete */
	uint64_t next_off; /* file offset of the next buffer */
	uint64_t seg_size;
	size_t buf_size;
	int nbufs, next_buf;
	sbuf *bufs;
	big_io *bigs;
	int nbigs;
	int inflight;      /* requests submitted and not reaped */
	fdvec fds;         /* slog_add_fd_sync() since the last sync */
	fdvec old;         /* earlier segments: fdatasync, then close */
	uint32_t left[TICKETS]; /* operations left of ticket t, at t % TICKETS */
	uint64_t last_ticket, durable;
	uint64_t bytes;
	uint64_t run;
	uint32_t core;
	char *name;        /* scratch for segment file names */
	size_t namecap;
	char *prefix;
	struct io_uring ring;
};

static void fail(slog *l, int rc)
{
	if (!l->err)
		l->err = rc < 0 ? rc : -EIO;
	l->room = 0;
}

static int fdvec_push(fdvec *v, int fd)
{
	if (v->n == v->cap) {
		int cap = v->cap ? 2 * v->cap : 8;
		int *p = realloc(v->v, (size_t)cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		v->v = p;
		v->cap = cap;
	}
	v->v[v->n++] = fd;
	return 0;
}

static const char *seg_name(char *buf, size_t cap, const char *prefix, uint64_t seg)
{
	int k = snprintf(buf, cap, "%s-%08llu.seg", prefix, (unsigned long long)seg);
	return k < 0 || (size_t)k >= cap ? NULL : buf;
}

static void seg_header(char *page, uint32_t core, uint64_t seg, uint64_t run)
{
	uint32_t version = SLOG_VERSION;
	memset(page, 0, SLOG_PAGE);
	memcpy(page, SLOG_MAGIC, 8);
	memcpy(page + 8, &version, 4);
	memcpy(page + 12, &core, 4);
	memcpy(page + 16, &seg, 8);
	memcpy(page + 24, &run, 8);
	uint32_t crc = crc32c(0, page, 32);
	memcpy(page + 32, &crc, 4);
}

/* Create (or truncate) segment `seg`; the fd or -errno.  Falls back to
 * buffered I/O for good when the file system refuses O_DIRECT. */
static int seg_create(slog *l, uint64_t seg)
{
	const int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
	const char *name = seg_name(l->name, l->namecap, l->prefix, seg);
	int fd = -1;

	if (!name)
		return -ENAMETOOLONG;
	if (l->direct) {
		fd = openat(l->dirfd, name, flags | O_DIRECT, 0644);
		if (fd < 0 && errno != EINVAL)
			return -errno;
		if (fd < 0)
			l->direct = false;
	}
	if (fd < 0 && (fd = openat(l->dirfd, name, flags, 0644)) < 0)
		return -errno;
	return fd;
}

static struct io_uring_sqe *get_sqe(slog *l);

static void ring_submit(slog *l)
{
	int rc;
	while ((rc = io_uring_submit(&l->ring)) < 0) {
		if (rc == -EINTR)
			continue;
		l->ring_dead = true;
		fail(l, rc);
		return;
	}
}

static struct io_uring_sqe *get_sqe(slog *l)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);
	if (!sqe) {
		ring_submit(l); /* the SQ is full: hand it to the kernel */
		sqe = io_uring_get_sqe(&l->ring);
		if (!sqe)
			fail(l, -EBUSY);
	}
	return sqe;
}

/* Durable tickets advance in order, and never past a failed write: a
 * later fsync succeeds even when the data it should cover was lost. */
static void advance(slog *l)
{
	while (!l->err && l->durable < l->last_ticket &&
	       !l->left[(l->durable + 1) % TICKETS])
		l->durable++;
}

static void complete(slog *l, uint64_t ud, int res)
{
	uint32_t idx = (uint32_t)(ud >> 2) & 0x3fffffffu;
	int fd = (int)(ud >> 32) - 1;

	l->inflight--;
	switch (ud & 3) {
	case OP_WRITE:
		if (res < 0 || (size_t)res != l->bufs[idx].len)
			fail(l, res < 0 ? res : -EIO); /* short write: -EIO */
		l->bufs[idx].len = 0;
		break;
	case OP_BIG:
		if (res < 0 || (size_t)res != l->bigs[idx].len)
			fail(l, res < 0 ? res : -EIO);
		free(l->bigs[idx].mem);
		l->bigs[idx].mem = NULL;
		break;
	default:
		if (res < 0)
			fail(l, res);
		if (fd >= 0)
			close(fd);
		l->left[idx % TICKETS]--;
	}
}

/* Reap what completed; with `block`, wait for at least one completion
 * (callers make sure one is outstanding).  0 or -errno of the wait. */
static int reap(slog *l, bool block)
{
	struct io_uring_cqe *cqe;
	int rc;

	if (block) {
		while ((rc = io_uring_wait_cqe(&l->ring, &cqe)) == -EINTR)
			;
		if (rc < 0) {
			l->ring_dead = true;
			fail(l, rc);
			return rc;
		}
	}
	while (io_uring_peek_cqe(&l->ring, &cqe) == 0) {
		complete(l, io_uring_cqe_get_data64(cqe), cqe->res);
		io_uring_cqe_seen(&l->ring, cqe);
	}
	advance(l);
	return 0;
}

static void frame_close(slog *l)
{
	char *h = l->frame;
	size_t len = (size_t)(l->wp - h) - FRAME_HDR;
	uint32_t hdr[2] = { (uint32_t)len, crc32c(0, h + FRAME_HDR, len) };
	char *end = l->cur + ALIGN8((size_t)(l->wp - l->cur));

	memcpy(h, hdr, FRAME_HDR);
	memset(l->wp, 0, (size_t)(end - l->wp));
	l->wp = end;
	l->frame = NULL;
	l->room = 0;
}

/* Complete the last page of cur with a padding frame (its payload zeros). */
static void pad_page(slog *l)
{
	size_t pos = (size_t)(l->wp - l->cur);
	size_t r = (size_t)(ALIGN_PAGE(pos) - pos); /* 0 or >= 8: pos is 8-aligned */
	if (!r)
		return;
	memset(l->wp + FRAME_HDR, 0, r - FRAME_HDR);
	uint32_t hdr[2] = { (uint32_t)(r - FRAME_HDR) | SLOG_PAD_FLAG,
			    crc32c(0, l->wp + FRAME_HDR, r - FRAME_HDR) };
	memcpy(l->wp, hdr, FRAME_HDR);
	l->wp += r;
}

static int big_slot(slog *l)
{
	for (int i = 0; i < l->nbigs; i++)
		if (!l->bigs[i].mem)
			return i;
	int old = l->nbigs, n = old ? 2 * old : 4;
	big_io *b = realloc(l->bigs, (size_t)n * sizeof(*b));
	if (!b)
		return -ENOMEM;
	memset(b + old, 0, (size_t)(n - old) * sizeof(*b));
	l->bigs = b;
	l->nbigs = n;
	return old;
}

/* Close the frame, pad the last page and write the current buffer (it
 * must hold something). */
static void submit_cur(slog *l)
{
	struct io_uring_sqe *sqe;
	size_t len;
	int k = 0;

	if (l->frame)
		frame_close(l);
	pad_page(l);
	len = (size_t)(l->wp - l->cur);
	if (l->cur_idx < 0 && (k = big_slot(l)) < 0) {
		fail(l, k);
		goto drop;
	}
	if (!(sqe = get_sqe(l)))
		goto drop;
	if (l->cur_idx >= 0) {
		l->bufs[l->cur_idx].len = len;
		if (l->fixed)
			io_uring_prep_write_fixed(sqe, l->fd, l->cur, (unsigned)len,
						  l->cur_base, l->cur_idx);
		else
			io_uring_prep_write(sqe, l->fd, l->cur, (unsigned)len, l->cur_base);
		io_uring_sqe_set_data64(sqe, UD(OP_WRITE, l->cur_idx, 0));
	} else {
		l->bigs[k] = (big_io){ l->cur, len }; /* freed at its completion */
		io_uring_prep_write(sqe, l->fd, l->cur, (unsigned)len, l->cur_base);
		io_uring_sqe_set_data64(sqe, UD(OP_BIG, k, 0));
	}
	l->inflight++;
	l->written = true;
	l->bytes += len;
	l->next_off = l->cur_base + len;
	l->cur = l->wp = NULL;
	l->lim = 0;
	ring_submit(l);
	return;
drop:
	if (l->cur_idx < 0)
		free(l->cur);
	l->cur = l->wp = NULL;
	l->lim = 0;
}

/* Take a free buffer, the oldest first (waiting while all are in
 * flight); start a new segment in it when the current one is full.  0 or
 * -errno (sticky). */
static int acquire(slog *l)
{
	int i = -1;

	while (!l->err) {
		for (int k = 0; k < l->nbufs && i < 0; k++)
			if (!l->bufs[(l->next_buf + k) % l->nbufs].len)
				i = (l->next_buf + k) % l->nbufs;
		if (i >= 0)
			break;
		reap(l, true);
	}
	if (l->err)
		return l->err;
	if (l->next_off >= l->seg_size) {
		int fd = seg_create(l, l->seg + 1), rc;
		if (fd < 0) {
			fail(l, fd);
			return fd;
		}
		if ((rc = fdvec_push(&l->old, l->fd)) < 0) {
			close(fd);
			fail(l, rc);
			return rc;
		}
		l->fd = fd;
		l->seg++;
		l->dir_dirty = true;
		l->next_off = 0;
	}
	l->next_buf = (i + 1) % l->nbufs;
	l->cur_idx = i;
	l->cur = l->wp = l->bufs[i].mem;
	l->lim = l->buf_size;
	l->cur_base = l->next_off;
	if (l->next_off == 0) {
		seg_header(l->cur, l->core, l->seg, l->run);
		l->wp += SLOG_PAGE;
	}
	return 0;
}

static void *frame_open(slog *l, size_t n)
{
	l->frame = l->wp;
	l->wp += FRAME_HDR + n;
	l->room = l->lim - (size_t)(l->wp - l->cur) + 1;
	return l->frame + FRAME_HDR;
}

/* An entry larger than a fresh buffer: a frame of its own in a temporary
 * buffer that replaces the fresh one (whose header page, if any, it
 * copies) and is written at the next reserve, mark or sync. */
static void *reserve_big(slog *l, size_t n)
{
	size_t pos = (size_t)(l->wp - l->cur);
	size_t cap = ALIGN_PAGE(pos + FRAME_HDR + n);
	void *m;

	if (posix_memalign(&m, SLOG_PAGE, cap))
		return NULL; /* ENOMEM, not sticky: the fresh buffer stays */
	memcpy(m, l->cur, pos);
	l->next_buf = l->cur_idx; /* give the fresh buffer back */
	l->cur_idx = -1;
	l->cur = m;
	l->wp = l->cur + pos;
	l->lim = pos + FRAME_HDR + n;
	return frame_open(l, n);
}

/* Out of line: the fast path in slog_reserve() then needs no stack frame. */
__attribute__((noinline)) static void *reserve_slow(slog *l, size_t n)
{
	if (l->err || n > MAX_ENTRY)
		return NULL;
	if (l->cur) {
		/* a big buffer takes one frame; lim - pos could underflow there */
		if (!l->frame && l->cur_idx >= 0 &&
		    FRAME_HDR + n <= l->lim - (size_t)(l->wp - l->cur))
			return frame_open(l, n);
		submit_cur(l);
		if (l->err)
			return NULL;
	}
	if (acquire(l) < 0)
		return NULL;
	if (FRAME_HDR + n <= l->lim - (size_t)(l->wp - l->cur))
		return frame_open(l, n);
	return reserve_big(l, n);
}

void *slog_reserve(slog *l, size_t n)
{
	if (__builtin_expect(n < l->room, 1)) {
		char *p = l->wp;
		l->wp = p + n;
		l->room -= n;
		return p;
	}
	return reserve_slow(l, n);
}

bool slog_has_room(slog *l, size_t n)
{
	if (l->err)
		return true; /* reserve fails at once */
	if (l->cur && l->cur_idx >= 0 && (size_t)(l->wp - l->cur) + FRAME_HDR + n <= l->lim)
		return true;
	reap(l, false);
	for (int k = 0; k < l->nbufs; k++)
		if (!l->bufs[k].len && k != l->cur_idx)
			return true;
	return false;
}

slog_pos slog_mark(slog *l)
{
	if (l->frame)
		frame_close(l);
	if (!l->cur)
		return (slog_pos){ l->seg, l->next_off };
	return (slog_pos){ l->seg, l->cur_base + (uint64_t)(l->wp - l->cur) };
}

int slog_add_fd_sync(slog *l, int fd)
{
	if (fd < 0)
		return -EBADF;
	return fdvec_push(&l->fds, fd);
}

/* Queue an fdatasync (or fsync) of fd for ticket t; the first one of a
 * ticket drains the writes before it.  Closes fd afterwards if `own`. */
static void sync_op(slog *l, int fd, uint64_t t, bool datasync, bool own,
		    bool *first)
{
	struct io_uring_sqe *sqe = get_sqe(l);
	if (!sqe) {
		if (own)
			close(fd);
		return;
	}
	io_uring_prep_fsync(sqe, fd, datasync ? IORING_FSYNC_DATASYNC : 0);
	if (*first)
		io_uring_sqe_set_flags(sqe, IOSQE_IO_DRAIN);
	*first = false;
	io_uring_sqe_set_data64(sqe, UD(OP_FSYNC, t % TICKETS, own ? fd + 1 : 0));
	l->left[t % TICKETS]++;
	l->inflight++;
}

uint64_t slog_sync(slog *l)
{
	bool first = true;
	uint64_t t;

	if (!l->err && l->cur && l->wp != l->cur)
		submit_cur(l);
	while (!l->err && l->last_ticket - l->durable >= TICKETS)
		reap(l, true); /* a full ring of pending tickets: backpressure */
	t = ++l->last_ticket;
	if (l->err)
		return t; /* never durable; slog_wait() says why */
	l->left[t % TICKETS] = 0;
	if (l->written)
		sync_op(l, l->fd, t, true, false, &first);
	for (int i = 0; i < l->old.n; i++)
		sync_op(l, l->old.v[i], t, true, true, &first);
	/* fdatasync of a directory need not commit its new entries. */
	if (l->dir_dirty)
		sync_op(l, l->dirfd, t, false, false, &first);
	for (int i = 0; i < l->fds.n; i++)
		sync_op(l, l->fds.v[i], t, true, false, &first);
	l->old.n = l->fds.n = 0;
	l->written = l->dir_dirty = false;
	if (!first)
		ring_submit(l);
	advance(l);
	return t;
}

uint64_t slog_poll(slog *l)
{
	reap(l, false);
	return l->durable;
}

int slog_wait(slog *l, uint64_t ticket)
{
	if (ticket > l->last_ticket)
		return -EINVAL;
	reap(l, false);
	while (l->durable < ticket) {
		if (l->err)
			return l->err;
		if (!l->inflight)
			return -EIO; /* nothing can make it durable (a bug) */
		reap(l, true);
	}
	return 0;
}

int slog_error(const slog *l)
{
	return l->err;
}

uint64_t slog_bytes_written(const slog *l)
{
	return l->bytes;
}

static void slog_free(slog *l)
{
	if (l->cur && l->cur_idx < 0)
		free(l->cur);
	for (int i = 0; i < l->nbigs; i++)
		free(l->bigs[i].mem);
	free(l->bigs);
	if (l->bufs)
		for (int i = 0; i < l->nbufs; i++)
			free(l->bufs[i].mem);
	free(l->bufs);
	free(l->fds.v);
	free(l->old.v);
	free(l->name);
	free(l->prefix);
	free(l);
}

int slog_close(slog *l)
{
	int rc;

	if (!l)
		return 0;
	if (!l->err)
		slog_wait(l, slog_sync(l));
	/* The kernel may still read the buffers: reap everything first. */
	while (l->inflight > 0 && !l->ring_dead)
		reap(l, true);
	rc = l->err;
	io_uring_queue_exit(&l->ring);
	for (int i = 0; i < l->old.n; i++)
		close(l->old.v[i]);
	if (l->fd >= 0)
		close(l->fd);
	close(l->dirfd);
	slog_free(l);
	return rc;
}

int slog_open(const slog_conf *c, slog **out)
{
	struct io_uring_params p;
	struct iovec *iov = NULL;
	slog *l;
	int rc;
	bool ring = false;

	*out = NULL;
	if (!c->dir || !c->prefix || (c->buf_size && (c->buf_size % SLOG_PAGE ||
	    c->buf_size < 2 * SLOG_PAGE || c->buf_size > MAX_BUF)) ||
	    c->nbufs < 0 || c->nbufs > MAX_NBUFS)
		return -EINVAL;
	if (!(l = calloc(1, sizeof(*l))))
		return -ENOMEM;
	l->fd = l->dirfd = -1;
	l->buf_size = c->buf_size ? c->buf_size : DEF_BUF;
	l->nbufs = c->nbufs ? c->nbufs : DEF_NBUFS;
	l->seg_size = c->seg_size ? c->seg_size : DEF_SEG;
	l->seg = c->first_seg;
	l->core = c->core;
	l->run = c->run;
	l->direct = !c->no_direct;
	l->namecap = strlen(c->prefix) + 32;
	rc = -ENOMEM;
	if (!(l->prefix = strdup(c->prefix)) || !(l->name = malloc(l->namecap)) ||
	    !(l->bufs = calloc((size_t)l->nbufs, sizeof(*l->bufs))) ||
	    !(iov = calloc((size_t)l->nbufs, sizeof(*iov))))
		goto fail;
	for (int i = 0; i < l->nbufs; i++) {
		void *m;
		if (posix_memalign(&m, SLOG_PAGE, l->buf_size))
			goto fail;
		l->bufs[i].mem = m;
		iov[i] = (struct iovec){ m, l->buf_size };
	}
	if ((l->dirfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		rc = -errno;
		goto fail;
	}

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_CQSIZE;
	unsigned depth = 64;
	while (depth < 4u * (unsigned)l->nbufs)
		depth *= 2;
	p.cq_entries = 8 * depth;
	if ((rc = io_uring_queue_init_params(depth, &l->ring, &p)) < 0)
		goto fail;
	ring = true;
	/* Registered buffers count against RLIMIT_MEMLOCK (8 MiB by default,
	 * not enough for a log per core): plain writes when refused. */
	l->fixed = io_uring_register_buffers(&l->ring, iov, (unsigned)l->nbufs) == 0;
	if (c->eventfd >= 0 && (rc = io_uring_register_eventfd(&l->ring, c->eventfd)) < 0)
		goto fail;

	/* The first segment, its header written now: the first write tells
	 * whether the file system takes O_DIRECT. */
	seg_header(l->bufs[0].mem, l->core, l->seg, l->run);
	for (;;) {
		ssize_t w;
		if ((rc = l->fd = seg_create(l, l->seg)) < 0)
			goto fail;
		while ((w = pwrite(l->fd, l->bufs[0].mem, SLOG_PAGE, 0)) < 0 && errno == EINTR)
			;
		if (w == SLOG_PAGE)
			break;
		rc = w < 0 ? -errno : -EIO;
		close(l->fd);
		l->fd = -1;
		if (rc != -EINVAL || !l->direct)
			goto fail;
		l->direct = false;
	}
	l->bytes = SLOG_PAGE;
	l->next_off = SLOG_PAGE;
	l->dir_dirty = true;
	free(iov);
	*out = l;
	return 0;
fail:
	if (ring)
		io_uring_queue_exit(&l->ring);
	if (l->fd >= 0)
		close(l->fd);
	if (l->dirfd >= 0)
		close(l->dirfd);
	free(iov);
	slog_free(l);
	return rc;
}

int slog_truncate_before(const char *dir, const char *prefix, uint64_t seg)
{
	size_t pl = strlen(prefix);
	struct dirent *e;
	int n = 0, rc = 0;
	DIR *d = opendir(dir);

	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		const char *s = e->d_name, *q;
		uint64_t v = 0;
		if (strncmp(s, prefix, pl) || s[pl] != '-')
			continue;
		for (q = s + pl + 1; *q >= '0' && *q <= '9' && v < UINT64_MAX / 10; q++)
			v = v * 10 + (uint64_t)(*q - '0');
		if (q - (s + pl + 1) < 8 || strcmp(q, ".seg") || v >= seg)
			continue;
		if (unlinkat(dirfd(d), s, 0) < 0) {
			if (!rc && errno != ENOENT)
				rc = -errno;
			continue;
		}
		n++;
	}
	closedir(d);
	return rc ? rc : n;
}

/* ---- the reader ------------------------------------------------------------ */

/* One chunk of read-ahead: file bytes [off, off + want) of a segment, read
 * into its slot of the reader's region. */
typedef struct rchunk {
	uint64_t off; /* file offset of the slot's first byte */
	size_t want;  /* bytes up to the limit of reading that segment */
	size_t got;   /* bytes read so far (short: the file ended) */
	int fd;       /* the segment's */
	int err;      /* -errno of a failed read, 0 */
	bool direct;  /* fd is O_DIRECT */
	bool busy;    /* a read of it is in flight */
} rchunk;

/* A segment being read: its file and how far reading it goes. */
typedef struct rseg {
	int fd;         /* -1 = none */
	bool direct;    /* fd is O_DIRECT */
	uint64_t fsize; /* the file's size when opened */
	uint64_t lim;   /* reads stop here: fsize, or `to` in its segment */
} rseg;

/*
 * Owned by the thread that opened it: a reader runs on that one thread
 * (its ring is not shared; debug builds assert the owner).
 *
 * Chunks are numbered on from the first read, across segments; chunk j
 * lives in slot j % nslots of `mem`.  Those of the current segment are
 * [first, end), chunk j at file offset base + (j - first) * csize; when
 * the range goes on in the next segment and the last of them is in
 * flight, that segment is opened (`pf`) and its chunks [end, pf_end) follow
 * from its offset 0.  Chunks [head, next) are read or in flight; the frame
 * slog_next() returned last lies in them, from chunk head on, so slots
 * before head are free and refill() hands them the next chunks.
 */
struct slog_reader {
	int dirfd;
	rseg cs;          /* the current segment */
	rseg pf;          /* the next one, opened early to read ahead */
	bool pf_tried;    /* pf was tried (opened or not) for this segment */
	bool direct;      /* the file system may take O_DIRECT */
	bool ring_dead;   /* a submit or wait failed: requests may be lost */
	slog_pos cur, to;
	slog_pos frame;   /* where the frame slog_next returned last starts */

	uint64_t base, first, end, pf_end;
	uint64_t head, next;
	size_t csize;     /* bytes per chunk, a multiple of SLOG_PAGE */
	int nslots;       /* slots in use, <= RD_SLOTS */
	int inflight;     /* reads submitted and not reaped */
	rchunk slot[RD_SLOTS];
	char *mem;        /* the slots side by side, RD_ALIGN-aligned when large */
	size_t memsize;
	char *scratch;    /* a frame whose chunks are not side by side in mem */
	size_t scap;
	char *page;       /* page-aligned: the first segment's header */
	struct io_uring ring;
	bool ring_ok;     /* set up (when a segment needs more than a chunk) */
	bool ring_failed; /* could not be: chunks are read synchronously */
#ifndef NDEBUG
	pthread_t owner;
#endif
	char *prefix;
	char dir[PATH_MAX];
	char path[PATH_MAX]; /* of the current segment, for messages */
};

__attribute__((format(printf, 4, 5)))
static int rfail(int rc, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* Submit, or give up on the ring for good: every read in flight fails
 * with rc (the caller sees -EIO naming the offset). */
static void rsubmit(slog_reader *r)
{
	int rc;
	while ((rc = io_uring_submit(&r->ring)) == -EINTR)
		;
	if (rc >= 0)
		return;
	r->ring_dead = true;
	for (int s = 0; s < r->nslots; s++)
		if (r->slot[s].busy) {
			r->slot[s].busy = false;
			r->slot[s].err = rc;
		}
}

/* Take in a read of chunk c that returned res (bytes or -errno); true
 * when the rest of the chunk is to be read.  Short reads go on after what
 * they read, except an O_DIRECT read ending inside a page (only the end
 * of the file does that); 0 bytes is the end of the file. */
static bool rresult(rchunk *c, long res)
{
	if (res == -EAGAIN || res == -EINTR)
		return true;
	if (res <= 0) {
		c->err = (int)res;
		c->busy = false;
		return false;
	}
	c->got += (size_t)res;
	if (c->got < c->want && (!c->direct || c->got % SLOG_PAGE == 0))
		return true;
	c->busy = false;
	return false;
}

/* Read the rest of slot s's chunk: queue it on the ring (the caller
 * submits), or read it now without one.  With O_DIRECT the length is
 * rounded up to a page: the read stops at the end of the file, and never
 * goes past the page of the segment's limit. */
static void rqueue(slog_reader *r, int s)
{
	rchunk *c = &r->slot[s];
	struct io_uring_sqe *sqe;

	c->busy = true;
	for (;;) {
		char *dst = r->mem + (size_t)s * r->csize + c->got;
		size_t len = (c->direct ? (size_t)ALIGN_PAGE(c->want) : c->want) - c->got;
		if (r->ring_ok) {
			if (r->ring_dead || !(sqe = io_uring_get_sqe(&r->ring))) {
				/* none free with at most RD_SLOTS reads in a
				 * ring of 2 * RD_SLOTS: a bug, reported as a
				 * failed read */
				c->busy = false;
				c->err = r->ring_dead ? -EIO : -EBUSY;
				return;
			}
			io_uring_prep_read(sqe, c->fd, dst, (unsigned)len, c->off + c->got);
			io_uring_sqe_set_data64(sqe, (uint64_t)s);
			r->inflight++;
			return;
		}
		ssize_t k = pread(c->fd, dst, len, (off_t)(c->off + c->got));
		if (!rresult(c, k < 0 ? -errno : (long)k))
			return;
	}
}

static void rreap(slog_reader *r);

/* Open the segment after the current one into r->pf to read ahead into
 * it, when the range goes on there and the region is at its full size
 * (so its chunks fit the slots as they are).  Anything wrong with that
 * file is left for rseg_open() to find and report when reading gets
 * there.  Whether r->pf is open. */
static bool rprefetch(slog_reader *r)
{
	char name[PATH_MAX];
	struct stat st;
	uint64_t seg = r->cur.seg + 1;
	int fd;

	if (r->pf.fd >= 0)
		return true;
	if (r->pf_tried || !r->ring_ok || r->cur.seg >= r->to.seg ||
	    r->nslots != RD_SLOTS || r->csize != RD_CHUNK)
		return false;
	r->pf_tried = true;
	if (!seg_name(name, sizeof(name), r->prefix, seg) ||
	    (fd = openat(r->dirfd, name, O_RDONLY | O_CLOEXEC)) < 0)
		return false;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < SLOG_PAGE) {
		close(fd);
		return false;
	}
	r->pf = (rseg){ .fd = fd, .fsize = (uint64_t)st.st_size };
	r->pf.lim = seg == r->to.seg && r->to.off < r->pf.fsize ? r->to.off : r->pf.fsize;
	if (r->direct && r->pf.lim >= RD_DIRECT_MIN) {
		if (fcntl(fd, F_SETFL, O_DIRECT) == 0)
			r->pf.direct = true;
		else if (errno == EINVAL)
			r->direct = false; /* the file system refuses it */
	}
	r->pf_end = r->end + (r->pf.lim + r->csize - 1) / r->csize;
	return true;
}

/* Start reads of the chunks from `next` on into the free slots. */
static void refill(slog_reader *r)
{
	bool queued = false;

	while (r->next < r->head + (uint64_t)r->nslots) {
		const rseg *g;
		uint64_t off;
		if (r->next < r->end) {
			g = &r->cs;
			off = r->base + (r->next - r->first) * r->csize;
		} else if (rprefetch(r) && r->next < r->pf_end) {
			g = &r->pf;
			off = (r->next - r->end) * r->csize;
		} else {
			break;
		}
		int s = (int)(r->next % (uint64_t)r->nslots);
		rchunk *c = &r->slot[s];
		while (c->busy) /* its chunk is before head, so done with */
			rreap(r);
		*c = (rchunk){ .off = off, .fd = g->fd, .direct = g->direct,
			       .want = (size_t)(g->lim - off < r->csize ? g->lim - off : r->csize) };
		rqueue(r, s);
		r->next++;
		queued = true;
	}
	if (queued && r->ring_ok && !r->ring_dead)
		rsubmit(r);
}

static void rcomplete(slog_reader *r, int s, int res)
{
	r->inflight--;
	if (rresult(&r->slot[s], res))
		rqueue(r, s);
}

/* Wait for at least one completion and take in all that are there. */
static void rreap(slog_reader *r)
{
	struct io_uring_cqe *cqe;
	bool again = false;
	int rc;

	while ((rc = io_uring_wait_cqe(&r->ring, &cqe)) == -EINTR)
		;
	if (rc < 0) {
		r->ring_dead = true;
		for (int s = 0; s < r->nslots; s++)
			if (r->slot[s].busy) {
				r->slot[s].busy = false;
				r->slot[s].err = rc;
			}
		return;
	}
	do {
		int s = (int)io_uring_cqe_get_data64(cqe);
		int before = r->inflight;
		rcomplete(r, s, cqe->res);
		again |= r->inflight == before; /* queued again */
		io_uring_cqe_seen(&r->ring, cqe);
	} while (io_uring_peek_cqe(&r->ring, &cqe) == 0);
	if (again && !r->ring_dead)
		rsubmit(r);
}

/* Wait until no read is in flight (their slots are reused, or freed). */
static void rdrain(slog_reader *r)
{
	while (r->inflight > 0 && !r->ring_dead)
		rreap(r);
}

/* Wait for chunk j and check that it holds file bytes up to `end`; `off`
 * is the start of what the caller asked for, for the message.  0 or
 * -EIO. */
static int rchunk_ready(slog_reader *r, uint64_t j, uint64_t end, uint64_t off,
			char *err, size_t errlen)
{
	rchunk *c = &r->slot[j % (uint64_t)r->nslots];

	assert(j >= r->head && j < r->next && c->off == r->base + (j - r->first) * r->csize);
	while (c->busy)
		rreap(r);
	if (c->err < 0 || c->off + c->got < end)
		return rfail(-EIO, err, errlen, "%s: offset %llu: read failed: %s", r->path,
			     (unsigned long long)off,
			     c->err < 0 ? strerror(-c->err) : "file shrank");
	return 0;
}

/* Make file bytes [off, off + n) of the current segment readable at *p
 * (valid until the next call); the caller checked base <= off and
 * off + n <= lim.  Bytes before off are done with: their slots take the
 * next chunks.  0, -EIO or -ENOMEM. */
static int rget(slog_reader *r, uint64_t off, size_t n, const char **p, char *err,
		size_t errlen)
{
	uint64_t j0, j1, ns = (uint64_t)r->nslots;
	int rc;

	if (!n) {
		*p = "";
		return 0;
	}
	assert(off >= r->base && off + n <= r->cs.lim);
	j0 = r->first + (off - r->base) / r->csize;
	j1 = r->first + (off + n - 1 - r->base) / r->csize;
	if (j0 > r->head)
		r->head = j0;
	refill(r);
	if (j1 - j0 < ns && j0 % ns <= j1 % ns) { /* side by side in mem */
		for (uint64_t j = j0; j <= j1; j++) {
			uint64_t ce = r->base + (j + 1 - r->first) * r->csize;
			if ((rc = rchunk_ready(r, j, off + n < ce ? off + n : ce, off, err,
					       errlen)) < 0)
				return rc;
		}
		*p = r->mem + (size_t)(j0 % ns) * r->csize +
		     (size_t)(off - r->base - (j0 - r->first) * r->csize);
		return 0;
	}
	/* Wrapping around mem, or larger than it: copy chunk by chunk, each
	 * slot taking the next chunk as soon as it is copied.  n is at most
	 * the file's size (the caller checked the frame's length). */
	if (n > r->scap) {
		char *b = realloc(r->scratch, n);
		if (!b)
			return rfail(-ENOMEM, err, errlen, "%s: no memory for a %zu-byte frame",
				     r->path, n);
		r->scratch = b;
		r->scap = n;
	}
	for (uint64_t j = j0; j <= j1; j++) {
		uint64_t cs = r->base + (j - r->first) * r->csize, ce = cs + r->csize;
		uint64_t a = off > cs ? off : cs, b = off + n < ce ? off + n : ce;
		if ((rc = rchunk_ready(r, j, b, off, err, errlen)) < 0)
			return rc;
		memcpy(r->scratch + (a - off), r->mem + (size_t)(j % ns) * r->csize + (a - cs),
		       (size_t)(b - a));
		if (j < j1) {
			r->head = j + 1;
			refill(r);
		}
	}
	*p = r->scratch;
	return 0;
}

/* Read-ahead of the current segment from file offset `start` (rounded
 * down to a page) up to its limit, nothing being in flight: the region
 * grows to what that needs, at most RD_SLOTS chunks of RD_CHUNK bytes
 * (never more than the bytes to read, rounded up to pages).  Starts the
 * first reads.  0 or -ENOMEM. */
static int rstart(slog_reader *r, uint64_t start, char *err, size_t errlen)
{
	uint64_t span, n, lim = r->cs.lim;

	assert(!r->inflight);
	r->base = start & ~(uint64_t)(SLOG_PAGE - 1);
	r->head = r->next = r->first = r->end = 0;
	if (lim <= start)
		return 0; /* nothing to read here */
	span = lim - r->base;
	n = (span + RD_CHUNK - 1) / RD_CHUNK;
	r->nslots = n < RD_SLOTS ? (int)n : RD_SLOTS;
	r->csize = n > RD_SLOTS ? RD_CHUNK
				: (size_t)ALIGN_PAGE((span + (uint64_t)r->nslots - 1) /
						     (uint64_t)r->nslots);
	if ((size_t)r->nslots * r->csize > r->memsize) {
		size_t size = (size_t)r->nslots * r->csize;
		void *m;
		free(r->mem);
		r->mem = NULL;
		r->memsize = 0;
		if (posix_memalign(&m, size >= RD_ALIGN ? RD_ALIGN : SLOG_PAGE, size))
			return rfail(-ENOMEM, err, errlen, "%s: no memory for %zu bytes of read-ahead",
				     r->path, size);
		/* Huge pages: a 4 MiB read into 4 KiB pages has 1024
		 * segments, split by the device's segment limit. */
		if (size >= RD_ALIGN)
			madvise(m, size, MADV_HUGEPAGE);
		r->mem = m;
		r->memsize = size;
	}
	r->end = (span + r->csize - 1) / r->csize;
	/* Reads in flight: at most RD_SLOTS, each queued again at most once
	 * before it is reaped.  Without a ring (one chunk needs none; or
	 * io_uring is not allowed here) chunks are read synchronously. */
	if (r->end > 1 && !r->ring_ok && !r->ring_failed) {
		if (io_uring_queue_init(2 * RD_SLOTS, &r->ring, 0) == 0)
			r->ring_ok = true;
		else
			r->ring_failed = true;
	}
	refill(r);
	return 0;
}

/*
 * Make segment `seg` current and start reading it.  Its fd turns O_DIRECT
 * when there are RD_DIRECT_MIN bytes or more to read in it and the file
 * system takes it (else buffered for good, as the writer does): a smaller
 * read gains nothing from it, and the page cache may hold it (or hold it
 * dirty, which an O_DIRECT read would write back first).  The first
 * segment's header is read synchronously into an aligned page, which also
 * tells whether O_DIRECT reads work where O_DIRECT opens did; a later
 * segment's header comes with its first chunk of read-ahead, which is
 * already in flight when it was opened early (rprefetch()).
 */
static int rseg_open(slog_reader *r, uint64_t seg, char *err, size_t errlen)
{
	char name[PATH_MAX];
	const char *h;
	struct stat st;
	uint32_t version, crc;
	uint64_t hseg, start;
	bool first = r->cs.fd < 0;
	int rc;

	if (!seg_name(name, sizeof(name), r->prefix, seg) ||
	    snprintf(r->path, sizeof(r->path), "%s/%s", r->dir, name) >= (int)sizeof(r->path))
		return rfail(-ENAMETOOLONG, err, errlen, "%s/%s: name too long", r->dir,
			     r->prefix);
	if (r->cs.fd >= 0) {
		/* A read of it may be queued again (short): none may be
		 * left when its number can be reused.  Only when the
		 * segment ended before its size (zeros) are there any. */
		for (int s = 0; s < r->nslots; s++)
			while (r->slot[s].busy && r->slot[s].fd == r->cs.fd)
				rreap(r);
		close(r->cs.fd);
	}
	r->cs = (rseg){ .fd = -1 };
	r->cur = (slog_pos){ seg, r->cur.seg == seg ? r->cur.off : SLOG_PAGE };
	r->pf_tried = false;
	if (r->pf.fd >= 0) { /* opened early: its chunks follow the old ones */
		r->cs = r->pf;
		r->pf = (rseg){ .fd = -1 };
		r->base = 0;
		r->first = r->end;
		r->end = r->pf_end;
		if (r->head < r->first)
			r->head = r->first;
		refill(r);
		if ((rc = rget(r, 0, 40, &h, err, errlen)) < 0)
			return rc;
		goto check;
	}
	rdrain(r); /* reads of the previous segment: their slots are reused */
	if (r->ring_dead)
		return rfail(-EIO, err, errlen, "%s: read failed: io_uring broke down", r->path);
	if ((r->cs.fd = openat(r->dirfd, name, O_RDONLY | O_CLOEXEC)) < 0) {
		int e = errno;
		return rfail(-e, err, errlen, "%s: %s", r->path,
			     e == ENOENT ? "segment file missing" : strerror(e));
	}
	if (fstat(r->cs.fd, &st) < 0)
		return rfail(-EIO, err, errlen, "%s: %s", r->path, strerror(errno));
	r->cs.fsize = (uint64_t)st.st_size;
	if (r->cs.fsize < SLOG_PAGE)
		return rfail(-ENODATA, err, errlen,
			     "%s: %llu bytes, shorter than the %u-byte segment header", r->path,
			     (unsigned long long)r->cs.fsize, SLOG_PAGE);
	start = first ? r->cur.off : 0;
	r->cs.lim = seg == r->to.seg && r->to.off < r->cs.fsize ? r->to.off : r->cs.fsize;
	if (r->direct && r->cs.lim > start &&
	    r->cs.lim - (start & ~(uint64_t)(SLOG_PAGE - 1)) >= RD_DIRECT_MIN) {
		if (fcntl(r->cs.fd, F_SETFL, O_DIRECT) == 0)
			r->cs.direct = true;
		else if (errno == EINVAL)
			r->direct = false; /* the file system refuses it */
		else
			return rfail(-EIO, err, errlen, "%s: %s", r->path, strerror(errno));
	}
	if (first) {
		ssize_t got;
		for (;;) {
			while ((got = pread(r->cs.fd, r->page, SLOG_PAGE, 0)) < 0 && errno == EINTR)
				;
			if (got >= 0 || errno != EINVAL || !r->cs.direct)
				break;
			/* O_DIRECT taken by fcntl, refused at read */
			if (fcntl(r->cs.fd, F_SETFL, 0) < 0)
				return rfail(-EIO, err, errlen, "%s: %s", r->path, strerror(errno));
			r->cs.direct = r->direct = false;
		}
		if (got != (ssize_t)SLOG_PAGE)
			return rfail(-EIO, err, errlen, "%s: reading the header: %s", r->path,
				     got < 0 ? strerror(errno) : "short read");
		h = r->page;
		if ((rc = rstart(r, start, err, errlen)) < 0)
			return rc;
	} else {
		if ((rc = rstart(r, start, err, errlen)) < 0 ||
		    (rc = rget(r, 0, 40, &h, err, errlen)) < 0)
			return rc;
	}
check:
	memcpy(&crc, h + 32, 4);
	memcpy(&version, h + 8, 4);
	memcpy(&hseg, h + 16, 8);
	if (crc32c(0, h, 32) != crc)
		return rfail(-EBADMSG, err, errlen,
			     "%s: offset 0: segment header checksum mismatch", r->path);
	if (memcmp(h, SLOG_MAGIC, 8))
		return rfail(-EBADMSG, err, errlen, "%s: offset 0: not a state-log segment",
			     r->path);
	if (version != SLOG_VERSION)
		return rfail(-EBADMSG, err, errlen, "%s: offset 8: segment version %u, not %u",
			     r->path, version, SLOG_VERSION);
	if (hseg != seg)
		return rfail(-EBADMSG, err, errlen,
			     "%s: offset 16: header says segment %llu", r->path,
			     (unsigned long long)hseg);
	return 0;
}

int slog_reader_open(const char *dir, const char *prefix, slog_pos from,
		     slog_pos to, slog_reader **out, char *err, size_t errlen)
{
	slog_reader *r;
	void *page = NULL;
	int rc;

	*out = NULL;
	if (from.off < SLOG_PAGE || to.off < SLOG_PAGE || slog_pos_cmp(from, to) > 0)
		return rfail(-EINVAL, err, errlen,
			     "%s/%s: bad range %llu:%llu .. %llu:%llu", dir, prefix,
			     (unsigned long long)from.seg, (unsigned long long)from.off,
			     (unsigned long long)to.seg, (unsigned long long)to.off);
	if (!(r = calloc(1, sizeof(*r))) || !(r->prefix = strdup(prefix)) ||
	    posix_memalign(&page, SLOG_PAGE, SLOG_PAGE)) {
		if (r)
			free(r->prefix);
		free(r);
		return rfail(-ENOMEM, err, errlen, "%s/%s: no memory", dir, prefix);
	}
	r->page = page;
	r->dirfd = -1;
	r->cs.fd = r->pf.fd = -1;
	r->direct = true;
	r->cur = from;
	r->to = to;
#ifndef NDEBUG
	r->owner = pthread_self();
#endif
	snprintf(r->dir, sizeof(r->dir), "%s", dir);
	if ((r->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		rc = rfail(-errno, err, errlen, "%s: %s", dir, strerror(errno));
		goto fail;
	}
	if ((rc = rseg_open(r, from.seg, err, errlen)) < 0)
		goto fail;
	*out = r;
	return 0;
fail:
	slog_reader_close(r);
	return rc;
}

int slog_next(slog_reader *r, const void **p, size_t *n, char *err, size_t errlen)
{
	assert(pthread_equal(r->owner, pthread_self()));
	for (;;) {
		uint64_t off = r->cur.off;
		bool last = r->cur.seg == r->to.seg;
		uint32_t h[2] = { 0, 0 };
		const char *q;
		int rc;

		if (slog_pos_cmp(r->cur, r->to) >= 0)
			return 0;
		if (last && off + FRAME_HDR > r->to.off)
			return rfail(-EBADMSG, err, errlen,
				     "%s: offset %llu: end position %llu is not on a frame boundary",
				     r->path, (unsigned long long)off,
				     (unsigned long long)r->to.off);
		if (off + FRAME_HDR <= r->cs.fsize) {
			if ((rc = rget(r, off, FRAME_HDR, &q, err, errlen)) < 0)
				return rc;
			memcpy(h, q, FRAME_HDR);
		}
		if (!h[0] && !h[1]) { /* end of file, or never-written bytes */
			if (!last) {
				if ((rc = rseg_open(r, r->cur.seg + 1, err, errlen)) < 0)
					return rc;
				continue;
			}
			return rfail(-ENODATA, err, errlen,
				     "%s: offset %llu: the log ends (%s) before offset %llu",
				     r->path, (unsigned long long)off,
				     off + FRAME_HDR > r->cs.fsize ? "end of file" : "zero frame header",
				     (unsigned long long)r->to.off);
		}
		uint64_t len = h[0] & ~SLOG_PAD_FLAG;
		uint64_t end = off + FRAME_HDR + ALIGN8(len);
		if (len > r->cs.fsize - off - FRAME_HDR)
			return rfail(-ENODATA, err, errlen,
				     "%s: offset %llu: frame of %llu bytes runs past the end of "
				     "the file (%llu bytes): torn write",
				     r->path, (unsigned long long)off, (unsigned long long)len,
				     (unsigned long long)r->cs.fsize);
		if (last && end > r->to.off)
			return rfail(-EBADMSG, err, errlen,
				     "%s: offset %llu: frame of %llu bytes crosses the end "
				     "position %llu",
				     r->path, (unsigned long long)off, (unsigned long long)len,
				     (unsigned long long)r->to.off);
		if ((rc = rget(r, off + FRAME_HDR, (size_t)len, &q, err, errlen)) < 0)
			return rc;
		if (crc32c(0, q, (size_t)len) != h[1])
			return rfail(-EBADMSG, err, errlen,
				     "%s: offset %llu: checksum mismatch in a frame of %llu bytes",
				     r->path, (unsigned long long)off, (unsigned long long)len);
		r->frame = r->cur;
		r->cur.off = end;
		if (h[0] & SLOG_PAD_FLAG)
			continue;
		*p = q;
		*n = (size_t)len;
		return 1;
	}
}

slog_pos slog_reader_frame_pos(const slog_reader *r)
{
	return r->frame;
}

void slog_reader_close(slog_reader *r)
{
	if (!r)
		return;
	assert(pthread_equal(r->owner, pthread_self()));
	if (r->ring_ok) {
		rdrain(r); /* the kernel writes into mem until its reads are reaped */
		io_uring_queue_exit(&r->ring);
	}
	if (r->cs.fd >= 0)
		close(r->cs.fd);
	if (r->pf.fd >= 0)
		close(r->pf.fd);
	if (r->dirfd >= 0)
		close(r->dirfd);
	/* After a failed submit or wait, a read may still be in flight: mem
	 * is left to it (never seen in practice). */
	if (!r->ring_dead)
		free(r->mem);
	free(r->scratch);
	free(r->page);
	free(r->prefix);
	free(r);
}
