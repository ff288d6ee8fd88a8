/* SPDX-License-Identifier: Apache-2.0 */
/*
 * State logs (state/statelog.c): CRC32C, round trips of many entries across
 * buffers and segments read back between marks, sync tickets, O_DIRECT and
 * buffered files, the reader's errors on damaged logs (torn write, zeroed
 * tail, flipped bytes, missing segment), truncation of old segments and
 * syncing foreign fds; the reader's read-ahead (frames straddling its
 * chunks, ranges ending mid-segment and at a segment's end, a file
 * shrinking under it, O_DIRECT and the buffered fallback).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "statelog.h"
#include "testenv.h"

/* ---- helpers -------------------------------------------------------------- */

typedef struct bytes {
	char *p;
	size_t n, cap;
} bytes;

static void bytes_put(bytes *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2;
		b->p = realloc(b->p, b->cap);
		cr_assert_not_null(b->p);
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static slog *open_log(const char *prefix, size_t buf, uint64_t seg_size, bool no_direct)
{
	slog_conf c = { .dir = testenv_dir, .prefix = prefix, .run = 42, .core = 3,
			.buf_size = buf, .seg_size = seg_size, .no_direct = no_direct,
			.eventfd = -1 };
	slog *l = (slog *)1;
	int rc = slog_open(&c, &l);
	cr_assert_eq(rc, 0, "slog_open: %s", strerror(-rc));
	cr_assert_not_null(l);
	return l;
}

static const char *seg_path(const char *prefix, uint64_t seg)
{
	char name[64];
	snprintf(name, sizeof(name), "%s-%08llu.seg", prefix, (unsigned long long)seg);
	return path(name);
}

static long file_size(const char *p)
{
	struct stat st;
	return stat(p, &st) < 0 ? -1 : (long)st.st_size;
}

/* Append an entry [u32 len][len bytes of pattern] and record it in exp. */
static void put_entry(slog *l, bytes *exp, size_t len)
{
	char *p = slog_reserve(l, 4 + len);
	cr_assert_not_null(p, "reserve %zu: error %d", len, slog_error(l));
	uint32_t n32 = (uint32_t)len;
	uint64_t seed = rnd();
	memcpy(p, &n32, 4);
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = seed + i * 0x9e3779b97f4a7c15ull;
		memcpy(p + 4 + i, &v, len - i < 8 ? len - i : 8);
	}
	bytes_put(exp, p, 4 + len);
}

/* Read [a, b) into out; with `whole`, check that every frame holds whole
 * entries of put_entry().  0 or the reader's error, message in err. */
static int read_frames(const char *prefix, slog_pos a, slog_pos b, bytes *out,
		       char *err, size_t errlen, bool whole)
{
	slog_reader *r = NULL;
	int rc = slog_reader_open(testenv_dir, prefix, a, b, &r, err, errlen);
	if (rc < 0) {
		cr_assert_null(r);
		return rc;
	}
	const void *p;
	size_t n;
	while ((rc = slog_next(r, &p, &n, err, errlen)) > 0) {
		const char *q = p, *end = q + n;
		cr_assert_gt(n, 0);
		while (whole && q < end) {
			uint32_t len;
			cr_assert_geq(end - q, 4, "entry header split by a frame end");
			memcpy(&len, q, 4);
			cr_assert_leq(len, (size_t)(end - q) - 4, "entry split by a frame end");
			q += 4 + len;
		}
		bytes_put(out, p, n);
	}
	slog_reader_close(r);
	return rc;
}

static int read_range(const char *prefix, slog_pos a, slog_pos b, bytes *out,
		      char *err, size_t errlen)
{
	return read_frames(prefix, a, b, out, err, errlen, true);
}

static void check_range(const char *prefix, slog_pos a, slog_pos b, const bytes *exp,
			size_t ea, size_t eb)
{
	char err[512] = "";
	bytes got = { 0 };
	int rc = read_range(prefix, a, b, &got, err, sizeof(err));
	cr_assert_eq(rc, 0, "read %llu:%llu..%llu:%llu: %d %s", (unsigned long long)a.seg,
		     (unsigned long long)a.off, (unsigned long long)b.seg,
		     (unsigned long long)b.off, rc, err);
	cr_assert_eq(got.n, eb - ea, "read %zu bytes, wrote %zu", got.n, eb - ea);
	cr_assert(got.n == 0 || !memcmp(got.p, exp->p + ea, got.n), "bytes differ");
	free(got.p);
}

static int count_segments(const char *prefix)
{
	int n = 0;
	for (uint64_t s = 0; s < 100000; s++) {
		if (file_size(seg_path(prefix, s)) < 0)
			break;
		n++;
	}
	return n;
}

/* ---- CRC32C --------------------------------------------------------------- */

static uint32_t crc_bitwise(uint32_t crc, const void *p, size_t n)
{
	const unsigned char *s = p;
	crc = ~crc;
	while (n--) {
		crc ^= *s++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
	}
	return ~crc;
}

Test(crc32c, known_vector_and_chaining)
{
	const char *v = "123456789";
	cr_assert_eq(crc32c(0, v, 9), 0xE3069283u);
	cr_assert_eq(crc32c(0, v, 0), 0);
	for (size_t k = 0; k <= 9; k++)
		cr_assert_eq(crc32c(crc32c(0, v, k), v + k, 9 - k), 0xE3069283u, "split %zu", k);
	/* Against a bitwise reference at every alignment and length. */
	static unsigned char buf[4096 + 16];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)rnd();
	for (int t = 0; t < 2000; t++) {
		size_t off = rnd() % 16, n = rnd() % 4097, cut = n ? rnd() % n : 0;
		uint32_t want = crc_bitwise(0, buf + off, n);
		cr_assert_eq(crc32c(0, buf + off, n), want, "off %zu n %zu", off, n);
		cr_assert_eq(crc32c(crc32c(0, buf + off, cut), buf + off + cut, n - cut), want);
	}
	/* Long inputs (the hardware path runs three streams of 8 KiB). */
	size_t big = 200000;
	unsigned char *b = malloc(big + 16);
	for (size_t i = 0; i < big + 16; i++)
		b[i] = (unsigned char)rnd();
	for (int t = 0; t < 40; t++) {
		size_t off = rnd() % 16, n = t < 8 ? 24576 * (size_t)(t / 2 + 1) + (size_t)t % 2
						  : rnd() % big;
		size_t cut = rnd() % (n + 1);
		uint32_t want = crc_bitwise(0x12345678, b + off, n);
		cr_assert_eq(crc32c(0x12345678, b + off, n), want, "off %zu n %zu", off, n);
		cr_assert_eq(crc32c(crc32c(0x12345678, b + off, cut), b + off + cut, n - cut), want);
	}
	free(b);
}

/* ---- round trips ---------------------------------------------------------- */

/* ~200k entries of 1..300 bytes (each behind its u32 length) plus a few of
 * 3 MiB, 1 MiB buffers and segments, marks every so often, a sync now and
 * then; every range between marks reads back exactly. */
static void round_trip(bool no_direct)
{
	enum { N = 200000, MAXMARKS = 4096 };
	static slog_pos marks[MAXMARKS];
	static size_t at[MAXMARKS];
	int nm = 0;
	bytes exp = { 0 };
	slog *l = open_log("rt", 0, 1 << 20, no_direct);

	marks[nm] = slog_mark(l);
	at[nm++] = 0;
	cr_assert_eq(marks[0].seg, 0);
	cr_assert_eq(marks[0].off, SLOG_PAGE);
	uint64_t next_mark = 1 + rnd() % 3000;
	for (int i = 0; i < N; i++) {
		size_t len = 1 + rnd() % 300;
		if (i == 1000 || i == 77777 || i == 150001)
			len = 3u << 20; /* larger than a buffer */
		put_entry(l, &exp, len);
		if ((uint64_t)i == next_mark && nm < MAXMARKS - 1) {
			marks[nm] = slog_mark(l);
			cr_assert_gt(slog_pos_cmp(marks[nm], marks[nm - 1]), 0);
			at[nm++] = exp.n;
			next_mark += 1 + rnd() % 3000;
		}
		if (i % 50000 == 49999) { /* pads the page: positions still hold */
			uint64_t t = slog_sync(l);
			if (i % 100000 == 99999)
				cr_assert_eq(slog_wait(l, t), 0);
		}
	}
	marks[nm] = slog_mark(l);
	at[nm++] = exp.n;
	cr_assert_eq(slog_wait(l, slog_sync(l)), 0);
	uint64_t written = slog_bytes_written(l);
	cr_assert_eq(slog_close(l), 0);

	int nseg = count_segments("rt");
	cr_assert_gt(nseg, 30, "%d segments", nseg);
	uint64_t total = 0;
	for (int s = 0; s < nseg; s++) {
		long sz = file_size(seg_path("rt", (uint64_t)s));
		cr_assert_eq(sz % SLOG_PAGE, 0, "segment %d: %ld bytes", s, sz);
		total += (uint64_t)sz;
	}
	cr_assert_eq(total, written, "files %llu bytes, slog says %llu",
		     (unsigned long long)total, (unsigned long long)written);
	for (int k = 0; k + 1 < nm; k++)
		check_range("rt", marks[k], marks[k + 1], &exp, at[k], at[k + 1]);
	check_range("rt", marks[0], marks[nm - 1], &exp, 0, exp.n);
	for (int t = 0; t < 20; t++) {
		int a = (int)(rnd() % (uint64_t)nm), b = (int)(rnd() % (uint64_t)nm);
		if (a > b) {
			int x = a;
			a = b;
			b = x;
		}
		check_range("rt", marks[a], marks[b], &exp, at[a], at[b]);
	}
	free(exp.p);
}

/* Whether the file system of the test directory takes O_DIRECT. */
static bool direct_works(void)
{
	int fd = open(path("probe"), O_WRONLY | O_CREAT | O_DIRECT, 0644);
	if (fd < 0)
		return false;
	close(fd);
	unlink(path("probe"));
	return true;
}

/* The open flags of the segment file a log holds, from /proc/self/fdinfo. */
static long seg_fd_flags(const char *seg)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long flags = -1;
	cr_assert_not_null(d);
	while ((e = readdir(d))) {
		char link[300], target[512] = "";
		snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
		ssize_t n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0 || strcmp(target, seg))
			continue;
		char info[300], line[128];
		snprintf(info, sizeof(info), "/proc/self/fdinfo/%s", e->d_name);
		FILE *f = fopen(info, "r");
		cr_assert_not_null(f);
		while (fgets(line, sizeof(line), f))
			if (!strncmp(line, "flags:", 6))
				flags = strtol(line + 6, NULL, 8);
		fclose(f);
	}
	closedir(d);
	return flags;
}

Test(statelog, round_trip_o_direct, .init = testenv_mkdir, .fini = testenv_rmdir,
     .timeout = 240)
{
	if (!direct_works())
		cr_skip_test("%s does not take O_DIRECT", testenv_dir);
	slog *l = open_log("fl", 0, 0, false);
	long fl = seg_fd_flags(seg_path("fl", 0));
	cr_assert_geq(fl, 0, "segment fd not found");
	cr_assert(fl & O_DIRECT, "O_DIRECT not in use (flags %lo)", fl);
	cr_assert_eq(slog_close(l), 0);
	round_trip(false);
}

Test(statelog, round_trip_buffered, .init = testenv_mkdir, .fini = testenv_rmdir,
     .timeout = 240)
{
	slog *l = open_log("fl", 0, 0, true);
	long fl = seg_fd_flags(seg_path("fl", 0));
	cr_assert_geq(fl, 0, "segment fd not found");
	cr_assert(!(fl & O_DIRECT), "O_DIRECT in use with no_direct (flags %lo)", fl);
	cr_assert_eq(slog_close(l), 0);
	round_trip(true);
}

/* Entries right at the edges of a buffer, in segments of one buffer (so
 * every buffer but the first starts with a segment header). */
Test(statelog, entries_at_buffer_edges, .init = testenv_mkdir, .fini = testenv_rmdir)
{
	const size_t B = 16384;
	const size_t sizes[] = { B - 8 - SLOG_PAGE - 4, B - 8 - 4, B - 8 - 3, B - 4, B,
				 3 * B, 1, B - 8 - SLOG_PAGE - 4, 5, B - 12 };
	bytes exp = { 0 };
	slog_pos m[16];
	size_t at[16];
	int nm = 0;
	slog *l = open_log("edge", B, B, false);

	m[nm] = slog_mark(l);
	at[nm++] = 0;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		put_entry(l, &exp, sizes[i]);
		m[nm] = slog_mark(l);
		at[nm++] = exp.n;
	}
	cr_assert_eq(slog_close(l), 0);
	for (int k = 0; k + 1 < nm; k++)
		check_range("edge", m[k], m[k + 1], &exp, at[k], at[k + 1]);
	check_range("edge", m[0], m[nm - 1], &exp, 0, exp.n);
	cr_assert_gt(count_segments("edge"), 5);
	free(exp.p);
}

/* ---- positions and tickets ------------------------------------------------ */

Test(statelog, marks_and_first_segment, .init = testenv_mkdir, .fini = testenv_rmdir)
{
	slog_conf c = { .dir = testenv_dir, .prefix = "m", .first_seg = 5, .eventfd = -1 };
	slog *l;
	cr_assert_eq(slog_open(&c, &l), 0);
	cr_assert_eq(file_size(seg_path("m", 5)), SLOG_PAGE, "header written at open");
	slog_pos a = slog_mark(l), b = slog_mark(l);
	cr_assert(a.seg == 5 && a.off == SLOG_PAGE);
	cr_assert_eq(slog_pos_cmp(a, b), 0, "an empty frame is not written");
	memset(slog_reserve(l, 10), 'x', 10);
	cr_assert_not_null(slog_reserve(l, 0));
	b = slog_mark(l);
	cr_assert(b.seg == 5 && b.off == SLOG_PAGE + 8 + 16, "%llu",
		  (unsigned long long)b.off);
	cr_assert_eq(slog_close(l), 0);

	char err[256];
	bytes got = { 0 };
	cr_assert_eq(read_frames("m", a, b, &got, err, sizeof(err), false), 0, "%s", err);
	cr_assert(got.n == 10 && !memcmp(got.p, "xxxxxxxxxx", 10));
	free(got.p);
	slog_reader *r = NULL;
	const void *p;
	size_t n;
	cr_assert_eq(slog_reader_open(testenv_dir, "m", b, b, &r, err, sizeof(err)), 0);
	cr_assert_eq(slog_next(r, &p, &n, err, sizeof(err)), 0, "from == to: nothing");
	slog_reader_close(r);
	cr_assert_eq(slog_reader_open(testenv_dir, "m", b, a, &r, err, sizeof(err)), -EINVAL);
	cr_assert_null(r);
	/* a missing directory */
	c.dir = "/nonexistent/weir";
	l = (slog *)1;
	cr_assert_eq(slog_open(&c, &l), -ENOENT);
	cr_assert_null(l);
}

Test(statelog, sync_tickets_become_durable, .init = testenv_mkdir, .fini = testenv_rmdir)
{
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	cr_assert_geq(efd, 0);
	slog_conf c = { .dir = testenv_dir, .prefix = "t", .eventfd = efd,
			.buf_size = 8192, .seg_size = 64 << 10 };
	slog *l;
	bytes exp = { 0 }, snap = { 0 };
	cr_assert_eq(slog_open(&c, &l), 0);
	cr_assert_eq(slog_poll(l), 0);

	slog_pos a = slog_mark(l);
	put_entry(l, &exp, 100);
	uint64_t t1 = slog_sync(l);
	uint64_t t2 = slog_sync(l); /* nothing new: durable with t1 */
	cr_assert(t1 > 0 && t2 > t1);
	cr_assert_eq(slog_wait(l, t2), 0);
	cr_assert_geq(slog_poll(l), t2);
	uint64_t ev = 0;
	cr_assert_eq(read(efd, &ev, 8), 8, "completions signal the eventfd");
	cr_assert_gt(ev, 0);
	cr_assert_eq(slog_wait(l, t2 + 1), -EINVAL, "a ticket not handed out");

	/* Synced bytes are durable and readable while the log is open, the
	 * file is whole pages, and a synced page is never rewritten. */
	slog_pos b = slog_mark(l);
	check_range("t", a, b, &exp, 0, exp.n);
	uint64_t last = 0, snap_seg = 0;
	for (int i = 0; i < 300; i++) { /* more than the pending-ticket ring */
		put_entry(l, &exp, 1 + rnd() % 5000);
		last = slog_sync(l);
		if (i % 10 == 0) {
			cr_assert_eq(slog_wait(l, last), 0);
			uint64_t seg = slog_mark(l).seg;
			const char *f = seg_path("t", seg);
			cr_assert_eq(file_size(f) % SLOG_PAGE, 0);
			if (seg != snap_seg)
				snap.n = 0;
			bytes now = { 0 };
			FILE *fp = fopen(f, "rb");
			char buf[4096];
			size_t k;
			while ((k = fread(buf, 1, sizeof(buf), fp)) > 0)
				bytes_put(&now, buf, k);
			fclose(fp);
			cr_assert_geq(now.n, snap.n);
			cr_assert(!snap.n || !memcmp(now.p, snap.p, snap.n),
				  "a synced page of segment %llu was rewritten",
				  (unsigned long long)seg);
			free(snap.p);
			snap = now;
			snap_seg = seg;
		}
	}
	cr_assert_eq(slog_wait(l, last), 0);
	cr_assert_eq(slog_poll(l), last);
	cr_assert_gt(slog_mark(l).seg, 0, "segments rolled over");
	b = slog_mark(l);
	check_range("t", a, b, &exp, 0, exp.n);
	cr_assert_eq(slog_error(l), 0);
	cr_assert_eq(slog_close(l), 0);
	close(efd);
	free(exp.p);
	free(snap.p);
}

Test(statelog, add_fd_sync, .init = testenv_mkdir, .fini = testenv_rmdir)
{
	slog *l = open_log("fd", 0, 0, false);
	int fd = open(path("sink.out"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "hello\n", 6), 6);
	cr_assert_eq(slog_add_fd_sync(l, -1), -EBADF);
	cr_assert_eq(slog_add_fd_sync(l, fd), 0);
	memset(slog_reserve(l, 4), 0, 4);
	cr_assert_eq(slog_wait(l, slog_sync(l)), 0);
	/* only the fd: no log bytes since the last sync */
	cr_assert_eq(slog_add_fd_sync(l, fd), 0);
	cr_assert_eq(slog_wait(l, slog_sync(l)), 0);
	cr_assert_eq(slog_error(l), 0);
	cr_assert_eq(slog_close(l), 0);
	close(fd);
}

/* A failed fdatasync (of a pipe) is sticky: no later ticket is durable,
 * reserve fails, close reports it. */
Test(statelog, failed_sync_is_sticky, .init = testenv_mkdir, .fini = testenv_rmdir)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	slog *l = open_log("err", 0, 0, false);
	memset(slog_reserve(l, 8), 1, 8);
	cr_assert_eq(slog_add_fd_sync(l, p[1]), 0);
	uint64_t t = slog_sync(l);
	int rc = slog_wait(l, t);
	cr_assert_lt(rc, 0, "fdatasync of a pipe succeeded?");
	cr_assert_eq(slog_error(l), rc);
	cr_assert_lt(slog_poll(l), t);
	cr_assert_null(slog_reserve(l, 8));
	cr_assert_eq(slog_wait(l, slog_sync(l)), rc);
	cr_assert_eq(slog_close(l), rc);
	close(p[0]);
	close(p[1]);
}

/* ---- damaged logs --------------------------------------------------------- */

typedef struct small_log {
	slog_pos m[64];
	size_t at[64];
	int nm;
	bytes exp;
} small_log;

/* Three or more segments of 16 KiB buffers and segments, a mark after each
 * entry. */
static void write_small(const char *prefix, small_log *s)
{
	slog *l = open_log(prefix, 16384, 16384, false);
	memset(s, 0, sizeof(*s));
	s->m[s->nm] = slog_mark(l);
	s->at[s->nm++] = 0;
	for (int i = 0; i < 40; i++) {
		put_entry(l, &s->exp, 200 + rnd() % 2000);
		s->m[s->nm] = slog_mark(l);
		s->at[s->nm++] = s->exp.n;
	}
	cr_assert_eq(slog_close(l), 0);
	cr_assert_geq(s->m[s->nm - 1].seg, 2);
}

/* Where the frame that ends at mark k starts (a frame never spans
 * segments: the first of a segment starts after the header). */
static slog_pos frame_start(const small_log *s, int k)
{
	if (s->m[k - 1].seg == s->m[k].seg)
		return s->m[k - 1];
	return (slog_pos){ s->m[k].seg, SLOG_PAGE };
}

static void poke(const char *file, uint64_t off, const void *p, size_t n)
{
	int fd = open(file, O_WRONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, p, n, (off_t)off), (ssize_t)n);
	close(fd);
}

static int read_all(const char *prefix, const small_log *s, char *err, size_t errlen,
		    size_t *good)
{
	bytes got = { 0 };
	int rc = read_range(prefix, s->m[0], s->m[s->nm - 1], &got, err, errlen);
	cr_assert(got.n == 0 || !memcmp(got.p, s->exp.p, got.n), "bytes before the damage differ");
	*good = got.n;
	free(got.p);
	return rc;
}

Test(statelog, torn_write, .init = testenv_mkdir, .fini = testenv_rmdir)
{
	small_log s;
	char err[512] = "";
	size_t good;
	write_small("torn", &s);
	slog_pos last = s.m[s.nm - 1], start = frame_start(&s, s.nm - 1);
	const char *f = seg_path("torn", last.seg);
	cr_assert_eq(truncate(f, (off_t)(start.off + (last.off - start.off) / 2)), 0);
	cr_assert_eq(read_all("torn", &s, err, sizeof(err), &good), -ENODATA, "%s", err);
	cr_assert_eq(good, s.at[s.nm - 2], "every frame before the torn one");
	cr_assert_not_null(strstr(err, f), "%s", err);
	cr_assert_not_null(strstr(err, "torn"), "%s", err);
	free(s.exp.p);
}

Test(statelog, zeroed_tail, .init = testenv_mkdir, .fini = testenv_rmdir)
{
	small_log s;
	char err[512] = "";
	size_t good;
	static char zeros[1 << 20];
	write_small("zero", &s);
	slog_pos cut = frame_start(&s, s.nm - 1);
	const char *f = seg_path("zero", cut.seg);
	long sz = file_size(f);
	/* from a frame boundary: the log just ends there */
	poke(f, cut.off, zeros, (size_t)sz - cut.off);
	cr_assert_eq(file_size(f), sz);
	cr_assert_eq(read_all("zero", &s, err, sizeof(err), &good), -ENODATA, "%s", err);
	cr_assert_eq(good, s.at[s.nm - 2]);
	cr_assert_not_null(strstr(err, f), "%s", err);
	cr_assert_not_null(strstr(err, "zero frame header"), "%s", err);
	free(s.exp.p);
	/* from inside a frame: its checksum no longer matches */
	write_small("zero2", &s);
	cut = frame_start(&s, s.nm - 1);
	f = seg_path("zero2", cut.seg);
	poke(f, cut.off + 30, zeros, (size_t)file_size(f) - (cut.off + 30));
	cr_assert_eq(read_all("zero2", &s, err, sizeof(err), &good), -EBADMSG, "%s", err);
	cr_assert_eq(good, s.at[s.nm - 2]);
	free(s.exp.p);
}

Test(statelog, flipped_frame_byte, .init = testenv_mkdir, .fini = testenv_rmdir)
{
	small_log s;
	char err[512] = "", want[64];
	size_t good;
	write_small("flip", &s);
	slog_pos m = frame_start(&s, 18); /* the frame of entry 18 */
	const char *f = seg_path("flip", m.seg);
	char c;
	int fd = open(f, O_RDWR);
	cr_assert_eq(pread(fd, &c, 1, (off_t)m.off + 8 + 33), 1);
	c ^= 0x10;
	cr_assert_eq(pwrite(fd, &c, 1, (off_t)m.off + 8 + 33), 1);
	close(fd);
	cr_assert_eq(read_all("flip", &s, err, sizeof(err), &good), -EBADMSG, "%s", err);
	cr_assert_eq(good, s.at[17]);
	cr_assert_not_null(strstr(err, f), "%s", err);
	snprintf(want, sizeof(want), "offset %llu:", (unsigned long long)m.off);
	cr_assert_not_null(strstr(err, want), "%s", err);
	/* reading only before the damage is fine */
	check_range("flip", s.m[0], s.m[17], &s.exp, 0, s.at[17]);
	free(s.exp.p);
}

Test(statelog, flipped_header_byte, .init = testenv_mkdir, .fini = testenv_rmdir)
{
	small_log s;
	char err[512] = "";
	size_t good;
	write_small("hdr", &s);
	const char *f = seg_path("hdr", 1);
	char c = 0x7f;
	poke(f, 17, &c, 1); /* the segment number */
	cr_assert_eq(read_all("hdr", &s, err, sizeof(err), &good), -EBADMSG, "%s", err);
	cr_assert_not_null(strstr(err, f), "%s", err);
	cr_assert_not_null(strstr(err, "header"), "%s", err);
	/* the first segment's header: at reader_open */
	poke(seg_path("hdr", 0), 0, "X", 1);
	slog_reader *r = (slog_reader *)1;
	cr_assert_eq(slog_reader_open(testenv_dir, "hdr", s.m[0], s.m[1], &r, err,
				      sizeof(err)), -EBADMSG);
	cr_assert_null(r);
	cr_assert_not_null(strstr(err, seg_path("hdr", 0)), "%s", err);
	free(s.exp.p);
}

Test(statelog, missing_middle_segment, .init = testenv_mkdir, .fini = testenv_rmdir)
{
	small_log s;
	char err[512] = "";
	size_t good;
	write_small("gap", &s);
	const char *f = seg_path("gap", 1);
	cr_assert_eq(unlink(f), 0);
	cr_assert_eq(read_all("gap", &s, err, sizeof(err), &good), -ENOENT, "%s", err);
	cr_assert_not_null(strstr(err, f), "%s", err);
	free(s.exp.p);
}

Test(statelog, truncate_before, .init = testenv_mkdir, .fini = testenv_rmdir)
{
	small_log s;
	write_small("core-1", &s);
	int nseg = count_segments("core-1");
	cr_assert_geq(nseg, 3);
	/* look-alikes that must survive */
	const char *keep[] = { "core-10-00000000.seg", "core-1-0000000.seg",
			       "core-1-00000000.seg.tmp", "core-1-0000000x.seg" };
	for (size_t i = 0; i < 4; i++)
		close(open(path(keep[i]), O_WRONLY | O_CREAT, 0644));
	cr_assert_eq(slog_truncate_before(testenv_dir, "core-1", 2), 2);
	cr_assert_lt(file_size(seg_path("core-1", 0)), 0);
	cr_assert_lt(file_size(seg_path("core-1", 1)), 0);
	cr_assert_geq(file_size(seg_path("core-1", 2)), 0);
	for (size_t i = 0; i < 4; i++)
		cr_assert_geq(file_size(path(keep[i])), 0, "%s deleted", keep[i]);
	cr_assert_eq(slog_truncate_before(testenv_dir, "core-1", 2), 0);
	/* what is left still reads */
	slog_pos from = { 2, SLOG_PAGE };
	bytes got = { 0 };
	char err[256];
	cr_assert_eq(read_range("core-1", from, s.m[s.nm - 1], &got, err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(slog_truncate_before("/nonexistent/weir", "x", 1), -ENOENT);
	free(got.p);
	free(s.exp.p);
}

/* ---- the reader's read-ahead ---------------------------------------------- */

/* The reader reads 4 MiB chunks into 5 slots (RD_CHUNK, RD_SLOTS in
 * statelog.c): these logs are large enough that frames straddle chunk
 * boundaries, side by side in its region, wrapping around it, and longer
 * than all of it. */
#define CHUNK (4u << 20)

typedef struct mlog {
	slog_pos m[2048];
	size_t at[2048];
	int nm;
	bytes exp;
} mlog;

static void mlog_mark(mlog *g, slog *l)
{
	cr_assert_lt(g->nm, 2048);
	g->m[g->nm] = slog_mark(l);
	g->at[g->nm++] = g->exp.n;
}

/* ~55 MiB of entries of many sizes (0 B .. 300 KiB, one of 5 MiB: more
 * than a chunk, one of 23 MiB: more than all the slots), frames ended at
 * random marks. */
static void write_many_sizes(const char *prefix, uint64_t seg_size, bool no_direct, mlog *g)
{
	slog *l = open_log(prefix, 0, seg_size, no_direct);
	memset(g, 0, sizeof(*g));
	mlog_mark(g, l);
	for (int i = 0; i < 600; i++) {
		size_t len;
		switch (rnd() % 4) {
		case 0: len = rnd() % 64; break;
		case 1: len = rnd() % 4096; break;
		case 2: len = rnd() % 65536; break;
		default: len = rnd() % (300 << 10);
		}
		if (i == 100)
			len = 5u << 20;
		if (i == 400)
			len = 23u << 20;
		put_entry(l, &g->exp, len);
		if (rnd() % 3 == 0)
			mlog_mark(g, l);
	}
	mlog_mark(g, l);
	cr_assert_eq(slog_close(l), 0);
	cr_assert_gt(g->exp.n, 12 * CHUNK);
}

/* Every range between consecutive marks, the whole log, and random
 * ranges (starting anywhere in a chunk) read back exactly. */
static void check_many_sizes(const char *prefix, const mlog *g)
{
	for (int k = 0; k + 1 < g->nm; k++)
		check_range(prefix, g->m[k], g->m[k + 1], &g->exp, g->at[k], g->at[k + 1]);
	check_range(prefix, g->m[0], g->m[g->nm - 1], &g->exp, 0, g->exp.n);
	for (int t = 0; t < 30; t++) {
		int a = (int)(rnd() % (uint64_t)g->nm), b = (int)(rnd() % (uint64_t)g->nm);
		if (a > b) {
			int x = a;
			a = b;
			b = x;
		}
		check_range(prefix, g->m[a], g->m[b], &g->exp, g->at[a], g->at[b]);
	}
}

/* Open a reader on [from, to), take one frame, and return the open flags
 * of the segment file it reads. */
static long reader_fd_flags(const char *prefix, slog_pos from, slog_pos to)
{
	char err[512] = "";
	slog_reader *r = NULL;
	const void *p;
	size_t n;
	cr_assert_eq(slog_reader_open(testenv_dir, prefix, from, to, &r, err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(slog_next(r, &p, &n, err, sizeof(err)), 1, "%s", err);
	long fl = seg_fd_flags(seg_path(prefix, from.seg));
	slog_reader_close(r);
	cr_assert_geq(fl, 0, "the reader's segment fd not found");
	return fl;
}

Test(statelog_reader, frames_straddle_chunks_o_direct, .init = testenv_mkdir,
     .fini = testenv_rmdir, .timeout = 240)
{
	mlog *g = calloc(1, sizeof(*g));
	if (!direct_works())
		cr_skip_test("%s does not take O_DIRECT", testenv_dir);
	write_many_sizes("sd", 0, false, g); /* one segment of 64 MiB */
	cr_assert_eq(g->m[g->nm - 1].seg, 0);
	long fl = reader_fd_flags("sd", g->m[0], g->m[g->nm - 1]);
	cr_assert(fl & O_DIRECT, "the reader does not use O_DIRECT (flags %lo)", fl);
	check_many_sizes("sd", g);
	free(g->exp.p);
	free(g);
}

/* Segments of 20 MiB: ranges that end at a segment's exact end (the file's
 * size, a frame boundary) and go on from there read the log in two parts
 * that make it whole; reading up to the next segment's first frame is the
 * same as up to the segment's end. */
Test(statelog_reader, range_ends_at_segment_end, .init = testenv_mkdir,
     .fini = testenv_rmdir, .timeout = 240)
{
	mlog *g = calloc(1, sizeof(*g));
	char err[512] = "";
	write_many_sizes("se", 20u << 20, false, g);
	slog_pos first = g->m[0], last = g->m[g->nm - 1];
	cr_assert_geq(last.seg, 2);
	check_many_sizes("se", g);
	for (uint64_t s = 0; s < last.seg; s++) {
		long sz = file_size(seg_path("se", s));
		cr_assert_gt(sz, 20 << 20);
		slog_pos end = { s, (uint64_t)sz }, next = { s + 1, SLOG_PAGE };
		bytes a = { 0 }, b = { 0 }, c = { 0 };
		cr_assert_eq(read_range("se", first, end, &a, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(read_range("se", end, last, &b, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(read_range("se", first, next, &c, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(a.n + b.n, g->exp.n, "segment %llu: %zu + %zu bytes, wrote %zu",
			     (unsigned long long)s, a.n, b.n, g->exp.n);
		cr_assert(!memcmp(a.p, g->exp.p, a.n) && !memcmp(b.p, g->exp.p + a.n, b.n));
		cr_assert(c.n == a.n && !memcmp(c.p, a.p, a.n));
		free(a.p);
		free(b.p);
		free(c.p);
	}
	free(g->exp.p);
	free(g);
}

/* Bytes this process had fetched from block devices (O_DIRECT reads
 * count; page cache hits and tmpfs do not), or -1. */
static long long io_read_bytes(void)
{
	FILE *f = fopen("/proc/self/io", "r");
	char line[128];
	long long v = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "read_bytes:", 11))
			v = atoll(line + 11);
	fclose(f);
	return v;
}

/* A range that ends early in a large segment: read exactly, and with
 * O_DIRECT no further than its end's page (not a whole read-ahead). */
Test(statelog_reader, range_ends_mid_segment, .init = testenv_mkdir,
     .fini = testenv_rmdir, .timeout = 240)
{
	mlog *g = calloc(1, sizeof(*g));
	int k = 1;
	write_many_sizes("sm", 0, false, g);
	while (k < g->nm - 1 && g->m[k].off < 3 * CHUNK / 4)
		k++;
	slog_pos to = g->m[k];
	cr_assert(to.seg == 0 && to.off < 2 * CHUNK, "mark %d at %llu", k,
		  (unsigned long long)to.off);
	long long r0 = io_read_bytes();
	check_range("sm", g->m[0], to, &g->exp, 0, g->at[k]);
	long long r1 = io_read_bytes();
	if (r0 >= 0 && r1 >= 0 && direct_works()) {
		/* the header's page, then [4096, to's page) */
		long long want = (long long)((to.off + SLOG_PAGE - 1) / SLOG_PAGE * SLOG_PAGE);
		cr_assert_leq(r1 - r0, want + (256 << 10), "read %lld bytes for a range of %lld",
			      r1 - r0, want);
	}
	/* from inside the log to mid-segment */
	check_range("sm", g->m[k / 2], to, &g->exp, g->at[k / 2], g->at[k]);
	free(g->exp.p);
	free(g);
}

/* The file shrinks while the reader reads ahead: the frames it returns
 * are right, then -EIO naming the file, the offset and why. */
Test(statelog_reader, file_truncated_during_read_ahead, .init = testenv_mkdir,
     .fini = testenv_rmdir, .timeout = 240)
{
	mlog *g = calloc(1, sizeof(*g));
	char err[512] = "";
	bytes got = { 0 };
	slog_reader *r = NULL;
	const void *p;
	size_t n;
	int rc;
	write_many_sizes("tr", 0, false, g);
	const char *f = seg_path("tr", 0);
	cr_assert_gt(file_size(f), 40 << 20);
	cr_assert_eq(slog_reader_open(testenv_dir, "tr", g->m[0], g->m[g->nm - 1], &r, err,
				      sizeof(err)), 0, "%s", err);
	cr_assert_eq(slog_next(r, &p, &n, err, sizeof(err)), 1, "%s", err);
	bytes_put(&got, p, n);
	/* past the read-ahead in flight, inside a page */
	cr_assert_eq(truncate(f, (off_t)(5 * CHUNK + 100)), 0);
	while ((rc = slog_next(r, &p, &n, err, sizeof(err))) > 0)
		bytes_put(&got, p, n);
	slog_reader_close(r);
	cr_assert_eq(rc, -EIO, "%d %s", rc, err);
	cr_assert_not_null(strstr(err, f), "%s", err);
	cr_assert_not_null(strstr(err, "offset "), "%s", err);
	cr_assert_not_null(strstr(err, "file shrank"), "%s", err);
	cr_assert_leq(got.n, 5 * CHUNK + 100);
	cr_assert(!memcmp(got.p, g->exp.p, got.n), "bytes before the cut differ");
	free(got.p);
	free(g->exp.p);
	free(g);
}

/* Buffered reads where the file system refuses O_DIRECT (as tmpfs did
 * before Linux 6.6; ramfs still does): the test directory becomes a ramfs
 * mount in a mount namespace of this test process alone.  Needs
 * CAP_SYS_ADMIN: skipped without. */
Test(statelog_reader, buffered_fallback, .init = testenv_mkdir, .fini = testenv_rmdir,
     .timeout = 240)
{
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("weir-test", testenv_dir, "ramfs", 0, NULL) < 0)
		cr_skip_test("cannot mount a ramfs (needs CAP_SYS_ADMIN): %s", strerror(errno));
	cr_assert(!direct_works(), "ramfs takes O_DIRECT?");
	mlog *g = calloc(1, sizeof(*g));
	write_many_sizes("bf", 20u << 20, false, g); /* the writer falls back too */
	long fl = reader_fd_flags("bf", g->m[0], g->m[g->nm - 1]);
	cr_assert(!(fl & O_DIRECT), "O_DIRECT on ramfs? (flags %lo)", fl);
	check_many_sizes("bf", g);
	/* damage still reads as before: a flipped byte in segment 1 */
	slog_pos s1 = { 1, SLOG_PAGE };
	int k = 0;
	while (slog_pos_cmp(g->m[k], s1) < 0)
		k++;
	char c, err[512] = "";
	bytes got = { 0 };
	int fd = open(seg_path("bf", 1), O_RDWR);
	cr_assert_eq(pread(fd, &c, 1, (off_t)SLOG_PAGE + 20), 1);
	c ^= 1;
	cr_assert_eq(pwrite(fd, &c, 1, (off_t)SLOG_PAGE + 20), 1);
	close(fd);
	cr_assert_eq(read_range("bf", g->m[0], g->m[g->nm - 1], &got, err, sizeof(err)), -EBADMSG,
		     "%s", err);
	cr_assert_not_null(strstr(err, seg_path("bf", 1)), "%s", err);
	cr_assert_leq(got.n, g->at[k]);
	cr_assert(!memcmp(got.p, g->exp.p, got.n));
	free(got.p);
	free(g->exp.p);
	free(g);
	cr_assert_eq(umount2(testenv_dir, MNT_DETACH), 0);
}
