/* SPDX-License-Identifier: Apache-2.0 */
/*
 * This machine's sequential read bandwidth, for the benchmarks that read
 * state logs back (bench_statelog, bench_checkpoint): files read in order in
 * DISK_RBUF-byte reads, DISK_RINFLIGHT in flight through io_uring (across
 * file boundaries), O_DIRECT when the file system takes it, into 2 MiB
 * aligned buffers advised as huge pages (on a virtio disk a 4 MiB read into
 * 4 KiB pages is split by the device's segment limit and halves the
 * bandwidth).  The files are evicted from the page cache first.
 */
#ifndef WEIR_PERF_DISK_READ_H
#define WEIR_PERF_DISK_READ_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#define DISK_RBUF (4u << 20)
#define DISK_RINFLIGHT 4

static inline double disk_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void disk_die(const char *what, int rc)
{
	fprintf(stderr, "disk_read: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
	exit(1);
}

/* Drop the files' pages from the page cache (none are there when they
 * were written with O_DIRECT, but a buffered fallback leaves them). */
static inline void disk_evict(char *const *paths, int n)
{
	for (int s = 0; s < n; s++) {
		int fd = open(paths[s], O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			disk_die(paths[s], errno);
		fdatasync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
}

/* Read files paths[0..n) in order; seconds, *bytes = bytes read, *direct =
 * whether O_DIRECT was used. */
static inline double disk_read_files(char *const *paths, int n, uint64_t *bytes,
				     bool *direct)
{
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	void *buf[DISK_RINFLIGHT];
	bool busy[DISK_RINFLIGHT] = { false };
	int *fd = calloc((size_t)n + 1, sizeof(*fd));
	uint64_t *size = calloc((size_t)n + 1, sizeof(*size));
	int rc;

	if (!fd || !size)
		disk_die("calloc", ENOMEM);
	disk_evict(paths, n);
	*direct = true;
	for (int s = 0; s < n; s++) {
		fd[s] = open(paths[s], O_RDONLY | O_DIRECT | O_CLOEXEC);
		if (fd[s] < 0 && errno == EINVAL) {
			*direct = false;
			fd[s] = open(paths[s], O_RDONLY | O_CLOEXEC);
		}
		if (fd[s] < 0)
			disk_die(paths[s], errno);
		size[s] = (uint64_t)lseek(fd[s], 0, SEEK_END);
	}
	for (int i = 0; i < DISK_RINFLIGHT; i++) {
		if (posix_memalign(&buf[i], 2u << 20, DISK_RBUF))
			disk_die("posix_memalign", ENOMEM);
		madvise(buf[i], DISK_RBUF, MADV_HUGEPAGE); /* best effort */
	}
	if ((rc = io_uring_queue_init(64, &ring, 0)) < 0)
		disk_die("io_uring_queue_init", rc);

	double t0 = disk_now();
	uint64_t off = 0, got = 0;
	int s = 0, inflight = 0;
	for (;;) {
		while (inflight < DISK_RINFLIGHT && s < n) {
			if (off >= size[s]) {
				s++;
				off = 0;
				continue;
			}
			int b = 0;
			while (busy[b])
				b++;
			busy[b] = true;
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			io_uring_prep_read(sqe, fd[s], buf[b], DISK_RBUF, off);
			io_uring_sqe_set_data64(sqe, (uint64_t)b);
			off += DISK_RBUF;
			inflight++;
		}
		if (!inflight)
			break;
		io_uring_submit(&ring);
		if ((rc = io_uring_wait_cqe(&ring, &cqe)) < 0)
			disk_die("io_uring_wait_cqe", rc);
		if (cqe->res <= 0)
			disk_die("read", cqe->res < 0 ? cqe->res : EIO);
		got += (uint64_t)cqe->res;
		busy[io_uring_cqe_get_data64(cqe)] = false;
		io_uring_cqe_seen(&ring, cqe);
		inflight--;
	}
	double dt = disk_now() - t0;

	io_uring_queue_exit(&ring);
	for (int i = 0; i < DISK_RINFLIGHT; i++)
		free(buf[i]);
	for (int k = 0; k < n; k++)
		close(fd[k]);
	free(fd);
	free(size);
	*bytes = got;
	return dt;
}

#endif
