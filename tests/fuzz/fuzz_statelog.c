/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for the state-log reader (state/statelog.c): the input
 * becomes segment 0 of a log in a temporary directory, read from {0, 4096}
 * to a far position (and on into a missing segment 1).  The reader must
 * return frames that lie inside the file, or one of its documented errors
 * with a message; never crash, loop or allocate beyond the file size.
 *
 * The first input byte picks how the file is built, so mutations reach
 * past the checksums:
 *   0  bytes [1, 41) are the header's first 40 bytes (zeros to 4096 follow),
 *      the rest are frames
 *   1  a valid header, then the rest of the input
 *   2  as 1, with every frame checksum the walk finds made right
 *   3  the rest of the input is the whole file
 * Built as a libFuzzer target with clang (-Dfuzz=enabled), and always as a
 * replay driver (fuzz_driver.c) that the test suite runs over a seeded
 * corpus plus deterministic random mutations.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "statelog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[256];

static void cleanup(void)
{
	char p[300];
	snprintf(p, sizeof(p), "%s/f-00000000.seg", dir);
	unlink(p);
	rmdir(dir);
}

static void make_dir(void)
{
	const char *t = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/weir-fuzz-slog.XXXXXX", t && *t ? t : "/tmp");
	if (!mkdtemp(dir))
		abort();
	atexit(cleanup);
}

static void header(uint8_t *p)
{
	uint32_t v = SLOG_VERSION, core = 0;
	uint64_t seg = 0, run = 1;
	memset(p, 0, SLOG_PAGE);
	memcpy(p, SLOG_MAGIC, 8);
	memcpy(p + 8, &v, 4);
	memcpy(p + 12, &core, 4);
	memcpy(p + 16, &seg, 8);
	memcpy(p + 24, &run, 8);
	uint32_t crc = crc32c(0, p, 32);
	memcpy(p + 32, &crc, 4);
}

/* Walk the frames from 4096 and make their checksums right. */
static void fix_crcs(uint8_t *f, size_t n)
{
	size_t off = SLOG_PAGE;
	while (off + 8 <= n) {
		uint32_t len, crc;
		memcpy(&len, f + off, 4);
		if (!len)
			break;
		len &= ~SLOG_PAD_FLAG;
		if (len > n - off - 8)
			break;
		crc = crc32c(0, f + off + 8, len);
		memcpy(f + off + 4, &crc, 4);
		off += 8 + (((size_t)len + 7) & ~(size_t)7);
	}
}

static void read_log(size_t fsize, slog_pos to)
{
	char err[512];
	slog_reader *r = (slog_reader *)1;
	const void *p;
	size_t n, total = 0;
	int rc;

	err[0] = 0;
	rc = slog_reader_open(dir, "f", (slog_pos){ 0, SLOG_PAGE }, to, &r, err, sizeof(err));
	if (rc < 0) {
		if (r || !err[0] ||
		    (rc != -EBADMSG && rc != -ENODATA && rc != -EIO && rc != -ENOENT))
			abort();
		return;
	}
	while ((rc = slog_next(r, &p, &n, err, sizeof(err))) > 0) {
		if (n > fsize || (n && !p))
			abort();
		total += n;
		if (total > fsize)
			abort(); /* frames never overlap */
		if (n)
			(void)*(volatile const char *)p, (void)*((volatile const char *)p + n - 1);
	}
	if (rc < 0 && (!err[0] || (rc != -EBADMSG && rc != -ENODATA && rc != -EIO &&
				  rc != -ENOENT)))
		abort();
	slog_reader_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char p[300];
	uint8_t *f;
	size_t n;
	int mode = size ? data[0] & 3 : 3;

	if (!dir[0])
		make_dir();
	if (size)
		data++, size--;
	if (!(f = calloc(1, SLOG_PAGE + size + 1)))
		return 0;
	if (mode == 3) {
		memcpy(f, data, size);
		n = size;
	} else {
		size_t h = mode == 0 ? (size < 40 ? size : 40) : 0;
		if (mode == 0)
			memcpy(f, data, h);
		else
			header(f);
		memcpy(f + SLOG_PAGE, data + h, size - h);
		n = SLOG_PAGE + size - h;
		if (mode == 2)
			fix_crcs(f, n);
	}
	snprintf(p, sizeof(p), "%s/f-00000000.seg", dir);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, f, n) != (ssize_t)n)
		abort();
	close(fd);
	read_log(n, (slog_pos){ 0, UINT64_MAX >> 1 });
	read_log(n, (slog_pos){ 1, SLOG_PAGE }); /* on into a missing segment */
	free(f);
	return 0;
}
