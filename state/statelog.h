/* SPDX-License-Identifier: Apache-2.0 */
/*
 * State logs: append-only files of checksummed frames, written through
 * io_uring.  Each core has one log per run of a job (its state mutations,
 * materializations and barrier marks, see log_write.h); a savepoint is
 * written with the same writer into a file per core.  Only the core that
 * owns a log touches it (the main thread may, once the reactors stopped).
 *
 * A log is a sequence of segment files "<prefix>-<segno:08>.seg" in one
 * directory, segno counting from 0:
 *
 *   offset 0      +-------------------------------------------------------+
 *                 | segment header (4096 bytes)                           |
 *                 |   char magic[8] = "WEIRSEG1"  u32 version = 1         |
 *                 |   u32 core   u64 segno   u64 run                      |
 *                 |   u32 crc32c of bytes [0, 32)   zeros to 4096         |
 *   offset 4096   +-------------------------------------------------------+
 *                 | frame: u32 len | u32 crc32c(payload) | payload[len]   |
 *                 |        | zero padding to a multiple of 8              |
 *                 | frame ...                                             |
 *                 | u32 0 | u32 0  (never-written bytes: the end)         |
 *                 +-------------------------------------------------------+
 *
 * All integers little-endian.  len has bit 31 set on a padding frame (its
 * payload is zeros and is skipped): the writer pads to a 4096-byte page
 * before every synced write, so a page once synced is never rewritten and a
 * torn write can only damage frames that were never acknowledged.  A frame
 * never spans segments.  Positions are (segno, byte offset in that file)
 * and always fall on frame boundaries: slog_mark() ends the current frame.
 *
 * Writing: entries are reserved in one of `nbufs` registered buffers; a full
 * buffer is submitted (IORING_OP_WRITE_FIXED, O_DIRECT when the file system
 * takes it) and the next one filled meanwhile, so the owning reactor never
 * waits for the disk unless every buffer is in flight (then the disk is the
 * bottleneck and waiting is backpressure).  slog_sync() submits what is
 * buffered plus an fdatasync ordered after it (IOSQE_IO_DRAIN) and returns a
 * ticket; slog_poll() reaps completions and says which tickets are
 * durable.
 */
#ifndef WEIR_STATELOG_H
#define WEIR_STATELOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h" /* crc32c */

#define SLOG_MAGIC "WEIRSEG1"
#define SLOG_VERSION 1
#define SLOG_PAGE 4096u
#define SLOG_PAD_FLAG 0x80000000u

typedef struct slog_pos {
	uint64_t seg; /* segment number */
	uint64_t off; /* byte offset in the segment file (>= SLOG_PAGE) */
} slog_pos;

static inline int slog_pos_cmp(slog_pos a, slog_pos b)
{
	if (a.seg != b.seg)
		return a.seg < b.seg ? -1 : 1;
	return a.off < b.off ? -1 : a.off > b.off;
}


typedef struct slog slog;

typedef struct slog_conf {
	const char *dir;      /* existing directory */
	const char *prefix;   /* file names: "<prefix>-<segno:08>.seg" */
	uint64_t run;         /* recorded in segment headers */
	uint32_t core;
	uint64_t first_seg;   /* number of the first segment (usually 0) */
	size_t buf_size;      /* per buffer, multiple of 4096; 0 = 1 MiB */
	int nbufs;            /* 0 = 4 */
	uint64_t seg_size;    /* start a new segment past this; 0 = 64 MiB */
	bool no_direct;       /* never O_DIRECT (tests of the fallback) */
	int eventfd;          /* registered with the ring: completions wake
			       * whoever sleeps on it; -1 = none */
} slog_conf;

/* Create the first segment and the io_uring.  0 or -errno; *out NULL on
 * error. */
int slog_open(const slog_conf *c, slog **out);

/*
 * Room for an entry of n bytes in the current frame; the caller writes
 * exactly n bytes there before the next call.  Entries are not aligned.
 * Waits for the disk only when every buffer is in flight.  An entry larger
 * than a buffer gets a frame of its own in a temporary buffer (rare:
 * materializing one huge value).  NULL on ENOMEM or after an I/O error
 * (slog_error() says which).
 */
void *slog_reserve(slog *l, size_t n);

/* Would reserving n bytes (n <= a buffer) proceed without waiting for the
 * disk: room in the current buffer, or a free one?  Work that can wait
 * (logging a snapshot) asks first and yields instead of blocking. */
bool slog_has_room(slog *l, size_t n);

/* End the current frame and return the position after it: everything
 * appended so far lies before it. */
slog_pos slog_mark(slog *l);

/* Make fd durable with the next slog_sync() ticket (an fdatasync through
 * the same ring, e.g. a sink's in-progress file).  0 or -errno. */
int slog_add_fd_sync(slog *l, int fd);

/* Submit everything appended so far, then an fdatasync of the segment (and
 * of the directory when a segment was created, and of fds given to
 * slog_add_fd_sync).  Returns a ticket, > 0, increasing. */
uint64_t slog_sync(slog *l);

/* Reap completions without blocking; return the highest ticket whose data
 * is durable (0 = none yet). */
uint64_t slog_poll(slog *l);

/* Block until `ticket` is durable.  0 or -errno. */
int slog_wait(slog *l, uint64_t ticket);

/* Sticky error of a failed write or sync: 0 or -errno. */
int slog_error(const slog *l);

/* Bytes submitted to the files so far (frames and padding). */
uint64_t slog_bytes_written(const slog *l);

/* Sync and wait for everything, close the files and the ring, free l.
 * 0 or the first error. */
int slog_close(slog *l);

/* Delete the segments of `prefix` in dir numbered below `seg` (checkpoints
 * no longer need them).  Returns how many were deleted, or -errno. */
int slog_truncate_before(const char *dir, const char *prefix, uint64_t seg);

/* ---- reading -------------------------------------------------------------- */

typedef struct slog_reader slog_reader;

/*
 * Read the frames of log `prefix` in dir from position `from` up to `to`
 * (both frame boundaries, as returned by slog_mark()).  0 or -errno with a
 * message in err naming the file and what is wrong.  The reader reads
 * ahead (O_DIRECT where the file system takes it) through an io_uring of
 * its own, into up to 20 MiB that it holds until slog_reader_close(); it
 * is used and closed on the thread that opened it, and by no other.
 */
int slog_reader_open(const char *dir, const char *prefix, slog_pos from,
		     slog_pos to, slog_reader **out, char *err, size_t errlen);
/*
 * The payload of the next frame (padding is skipped): 1 with *p, *n set
 * (valid until the next call), 0 when `to` is reached, or a negative code
 * with a message in err:
 *   -ENOENT   a segment file is missing
 *   -EBADMSG  a checksum does not match (header or frame)
 *   -ENODATA  the log ends (truncated or never written) before `to`
 *   -EIO      a read failed
 */
int slog_next(slog_reader *r, const void **p, size_t *n, char *err,
	      size_t errlen);
/* Where the frame slog_next() returned last starts (positions from
 * slog_mark() are frame starts, so this says which marks enclose it). */
slog_pos slog_reader_frame_pos(const slog_reader *r);
void slog_reader_close(slog_reader *r);

#endif
