/* SPDX-License-Identifier: Apache-2.0 */
/*
 * State logs (state/statelog.c) beside this machine's disk, measured in the
 * same run, on one core:
 *
 *   limit_disk_write   sequential write bandwidth through io_uring: N MiB in
 *                      1 MiB O_DIRECT writes, 4 in flight, then fdatasync
 *   statelog_append    48-byte entries appended (reserve + copy) while the
 *                      log's buffers are written: entries/s and MB/s
 *   statelog_durable   N MiB of those entries appended, then slog_sync() and
 *                      slog_wait(): seconds, and the ratio to the raw time
 *                      for the same bytes (target: within 1.5x)
 *   limit_disk_read    sequential read bandwidth through io_uring: the
 *                      segment files of a log of N MiB read in 4 MiB
 *                      O_DIRECT reads, 4 in flight, evicted from the page
 *                      cache first (posix_fadvise DONTNEED), into buffers
 *                      on transparent huge pages where the kernel gives
 *                      them (a 4 MiB read into 4 KiB pages has 1024
 *                      segments and is split by the device's segment limit:
 *                      half the bandwidth on a virtio disk)
 *   statelog_read      the same log (N MiB of those entries, written by the
 *                      log's writer) read back with slog_reader_open() and
 *                      slog_next(): bytes of the files per second, the
 *                      reading thread's CPU time (what the caller could
 *                      not spend on the entries), and the ratio to
 *                      limit_disk_read
 *
 * Each figure is the best of `reps` runs, raw and slog alternating (the
 * reads in either order: a virtual disk's host may cache what was read
 * last).  Files
 * go to a temporary directory under --dir, else $TMPDIR, else the current
 * directory, removed at the end.  Prints one JSON line per figure.
 *
 *   bench_statelog [--quick] [--dir D] [MiB]     (default 512 MiB; quick 64)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "disk_read.h"
#include "statelog.h"

#define BUF (1u << 20)
#define INFLIGHT 4
#define ENTRY 48
#define RBUF DISK_RBUF
#define RINFLIGHT DISK_RINFLIGHT

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of this thread: the owning core's share of the work (the
 * kernel's io workers write the buffers on other threads). */
static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench_statelog: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
	exit(1);
}

/* The limit: `mib` MiB of 1 MiB writes, INFLIGHT at a time, fdatasync. */
static double raw_write(const char *dir, uint64_t mib, bool *direct)
{
	char path[4200];
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	struct iovec iov[INFLIGHT];
	bool fixed;
	int rc, fd;

	snprintf(path, sizeof(path), "%s/raw.dat", dir);
	*direct = true;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0644);
	if (fd < 0 && errno == EINVAL) {
		*direct = false;
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	}
	if (fd < 0)
		die(path, errno);
	for (int i = 0; i < INFLIGHT; i++) {
		if (posix_memalign(&iov[i].iov_base, 4096, BUF))
			die("posix_memalign", ENOMEM);
		iov[i].iov_len = BUF;
		memset(iov[i].iov_base, 'a' + i, BUF);
	}
	if ((rc = io_uring_queue_init(64, &ring, 0)) < 0)
		die("io_uring_queue_init", rc);
	fixed = io_uring_register_buffers(&ring, iov, INFLIGHT) == 0;

	double t0 = now();
	uint64_t next = 0, done = 0;
	int inflight = 0;
	while (done < mib) {
		while (inflight < INFLIGHT && next < mib) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			int b = (int)(next % INFLIGHT);
			if (fixed)
				io_uring_prep_write_fixed(sqe, fd, iov[b].iov_base, BUF,
							  next * BUF, b);
			else
				io_uring_prep_write(sqe, fd, iov[b].iov_base, BUF, next * BUF);
			next++;
			inflight++;
		}
		io_uring_submit(&ring);
		if ((rc = io_uring_wait_cqe(&ring, &cqe)) < 0)
			die("io_uring_wait_cqe", rc);
		if (cqe->res != (int)BUF)
			die("write", cqe->res < 0 ? cqe->res : EIO);
		io_uring_cqe_seen(&ring, cqe);
		inflight--;
		done++;
	}
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
	io_uring_submit(&ring);
	if ((rc = io_uring_wait_cqe(&ring, &cqe)) < 0 || cqe->res < 0)
		die("fdatasync", rc < 0 ? rc : cqe->res);
	io_uring_cqe_seen(&ring, cqe);
	double dt = now() - t0;

	io_uring_queue_exit(&ring);
	close(fd);
	unlink(path);
	for (int i = 0; i < INFLIGHT; i++)
		free(iov[i].iov_base);
	return dt;
}

/* `mib` MiB of 48-byte entries through a log of default configuration:
 * *append = the appending alone, return = until durable. */
static double slog_run(const char *dir, uint64_t mib, double *append, double *cpu,
		       uint64_t *entries, uint64_t *written)
{
	slog_conf c = { .dir = dir, .prefix = "bench", .eventfd = -1 };
	slog *l;
	int rc;
	char rec[ENTRY];
	uint64_t n = (mib << 20) / ENTRY;

	for (int i = 0; i < ENTRY; i++)
		rec[i] = (char)('A' + i % 26);
	if ((rc = slog_open(&c, &l)) < 0)
		die("slog_open", rc);
	double t0 = now(), c0 = cpu_now();
	for (uint64_t i = 0; i < n; i++) {
		char *p = slog_reserve(l, ENTRY);
		if (!p)
			die("slog_reserve", slog_error(l) ? slog_error(l) : -ENOMEM);
		memcpy(rec, &i, 8); /* entries differ, as they would */
		memcpy(p, rec, ENTRY);
	}
	double t1 = now();
	*cpu = cpu_now() - c0;
	if ((rc = slog_wait(l, slog_sync(l))) < 0)
		die("slog_wait", rc);
	double t2 = now();
	*written = slog_bytes_written(l);
	if ((rc = slog_close(l)) < 0)
		die("slog_close", rc);
	if ((rc = slog_truncate_before(dir, "bench", UINT64_MAX)) < 0)
		die("slog_truncate_before", rc);
	*append = t1 - t0;
	*entries = n;
	return t2 - t0;
}

/* Write `mib` MiB of 48-byte entries through a log of default
 * configuration and keep it: *to = its end, *nseg = its segment files. */
static void write_log(const char *dir, uint64_t mib, slog_pos *to, int *nseg)
{
	slog_conf c = { .dir = dir, .prefix = "rd", .eventfd = -1 };
	uint64_t n = (mib << 20) / ENTRY;
	char rec[ENTRY];
	slog *l;
	int rc;

	for (int i = 0; i < ENTRY; i++)
		rec[i] = (char)('a' + i % 26);
	if ((rc = slog_open(&c, &l)) < 0)
		die("slog_open", rc);
	for (uint64_t i = 0; i < n; i++) {
		char *p = slog_reserve(l, ENTRY);
		if (!p)
			die("slog_reserve", slog_error(l) ? slog_error(l) : -ENOMEM);
		memcpy(rec, &i, 8);
		memcpy(p, rec, ENTRY);
	}
	*to = slog_mark(l);
	if ((rc = slog_close(l)) < 0)
		die("slog_close", rc);
	*nseg = (int)to->seg + 1;
}

static void seg_file(char *buf, size_t cap, const char *dir, int seg)
{
	snprintf(buf, cap, "%s/rd-%08d.seg", dir, seg);
}

/* The log's segment file names (free with free_paths). */
static char **seg_paths(const char *dir, int nseg)
{
	char **paths = calloc((size_t)nseg + 1, sizeof(*paths));
	if (!paths)
		die("calloc", ENOMEM);
	for (int s = 0; s < nseg; s++) {
		if (!(paths[s] = malloc(4200)))
			die("malloc", ENOMEM);
		seg_file(paths[s], 4200, dir, s);
	}
	return paths;
}

static void free_paths(char **paths, int n)
{
	for (int s = 0; s < n; s++)
		free(paths[s]);
	free(paths);
}

static void evict(const char *dir, int nseg)
{
	char **paths = seg_paths(dir, nseg);
	disk_evict(paths, nseg);
	free_paths(paths, nseg);
}

/* The limit, on the log's segment files (disk_read.h). */
static double raw_read(const char *dir, int nseg, uint64_t *bytes, bool *direct)
{
	char **paths = seg_paths(dir, nseg);
	double dt = disk_read_files(paths, nseg, bytes, direct);
	free_paths(paths, nseg);
	return dt;
}

/* The log read back with the reader, every frame checked (the reader's
 * CRC) and its entries counted.  Seconds; *payload = frame bytes. */
static double slog_read(const char *dir, int nseg, slog_pos to, uint64_t mib,
			uint64_t *payload, double *cpu)
{
	char err[512];
	slog_reader *r;
	const void *p;
	size_t n;
	uint64_t bytes = 0, entries = 0;
	int rc;

	evict(dir, nseg);
	double t0 = now(), c0 = cpu_now();
	if ((rc = slog_reader_open(dir, "rd", (slog_pos){ 0, SLOG_PAGE }, to, &r, err,
				   sizeof(err))) < 0) {
		fprintf(stderr, "bench_statelog: %s\n", err);
		exit(1);
	}
	while ((rc = slog_next(r, &p, &n, err, sizeof(err))) > 0) {
		bytes += n;
		entries += n / ENTRY;
	}
	if (rc < 0) {
		fprintf(stderr, "bench_statelog: %s\n", err);
		exit(1);
	}
	slog_reader_close(r);
	double dt = now() - t0;
	*cpu = cpu_now() - c0;
	if (entries != (mib << 20) / ENTRY)
		die("read back fewer entries than written", EIO);
	*payload = bytes;
	return dt;
}

int main(int argc, char **argv)
{
	uint64_t mib = 512;
	int reps = 3;
	const char *base = NULL;
	bool quick = false;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			quick = true;
		else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			base = argv[++i];
		else if (atoll(argv[i]) > 0)
			mib = (uint64_t)atoll(argv[i]);
		else {
			fprintf(stderr, "usage: bench_statelog [--quick] [--dir D] [MiB]\n");
			return 2;
		}
	}
	if (quick) {
		mib = mib == 512 ? 64 : mib;
		reps = 2;
	}
	if (!base)
		base = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : ".";
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/weir-bench-slog.XXXXXX", base);
	if (!mkdtemp(dir))
		die(dir, errno);

	double raw = 1e30, dur = 1e30, app = 1e30, cpu = 1e30;
	uint64_t entries = 0, written = 0;
	bool direct = false;
	for (int r = 0; r < reps; r++) {
		double a, c, d, w = raw_write(dir, mib, &direct);
		raw = w < raw ? w : raw;
		d = slog_run(dir, mib, &a, &c, &entries, &written);
		dur = d < dur ? d : dur;
		app = a < app ? a : app;
		cpu = c < cpu ? c : cpu;
	}

	double rraw = 1e30, rlog = 1e30, rcpu = 1e30;
	uint64_t rbytes = 0, payload = 0;
	bool rdirect = false;
	slog_pos to;
	int nseg;
	write_log(dir, mib, &to, &nseg);
	for (int r = 0; r < 2 * reps; r++) {
		double a, b, c;
		if (r % 2) {
			b = slog_read(dir, nseg, to, mib, &payload, &c);
			a = raw_read(dir, nseg, &rbytes, &rdirect);
		} else {
			a = raw_read(dir, nseg, &rbytes, &rdirect);
			b = slog_read(dir, nseg, to, mib, &payload, &c);
		}
		rraw = a < rraw ? a : rraw;
		rlog = b < rlog ? b : rlog;
		rcpu = c < rcpu ? c : rcpu;
	}
	if (slog_truncate_before(dir, "rd", UINT64_MAX) < 0)
		die("slog_truncate_before", errno);
	rmdir(dir);

	double bytes = (double)(mib << 20);
	printf("{\"bench\":\"limit_disk_write\",\"mib\":%llu,\"o_direct\":%s,\"buf_bytes\":%u,"
	       "\"in_flight\":%d,\"seconds\":%.3f,\"bytes_per_s\":%.0f}\n",
	       (unsigned long long)mib, direct ? "true" : "false", BUF, INFLIGHT, raw,
	       bytes / raw);
	printf("{\"bench\":\"statelog_append\",\"entry_bytes\":%d,\"entries\":%llu,"
	       "\"seconds\":%.3f,\"entries_per_s\":%.0f,\"mb_per_s\":%.1f,"
	       "\"ns_per_entry\":%.2f,\"cpu_ns_per_entry\":%.2f,\"ratio_to_disk_limit\":%.3f}\n",
	       ENTRY, (unsigned long long)entries, app, (double)entries / app,
	       bytes / app / 1e6, app * 1e9 / (double)entries, cpu * 1e9 / (double)entries,
	       (bytes / app) / (bytes / raw));
	printf("{\"bench\":\"statelog_durable\",\"mib\":%llu,\"bytes_written\":%llu,"
	       "\"seconds\":%.3f,\"raw_seconds\":%.3f,\"ratio_to_raw\":%.3f,"
	       "\"target_ratio_to_raw\":1.5}\n",
	       (unsigned long long)mib, (unsigned long long)written, dur, raw, dur / raw);
	printf("{\"bench\":\"limit_disk_read\",\"mib\":%llu,\"bytes\":%llu,\"o_direct\":%s,"
	       "\"buf_bytes\":%u,\"in_flight\":%d,\"seconds\":%.3f,\"bytes_per_s\":%.0f}\n",
	       (unsigned long long)mib, (unsigned long long)rbytes, rdirect ? "true" : "false",
	       RBUF, RINFLIGHT, rraw, (double)rbytes / rraw);
	printf("{\"bench\":\"statelog_read\",\"mib\":%llu,\"bytes\":%llu,\"segments\":%d,"
	       "\"payload_bytes\":%llu,\"seconds\":%.3f,\"bytes_per_s\":%.0f,"
	       "\"cpu_seconds\":%.3f,\"ratio_to_disk_limit\":%.3f}\n",
	       (unsigned long long)mib, (unsigned long long)rbytes, nseg,
	       (unsigned long long)payload, rlog, (double)rbytes / rlog, rcpu, rraw / rlog);
	return 0;
}
