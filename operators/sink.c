/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sinks: CSV to a file or standard output, exactly-once CSV files in a
 * directory, and discard.  The CSV sinks format a batch into a private
 * 1 MiB buffer and write it with write(2) on the reactor thread (a
 * documented deviation: no io_uring writes yet) when it is full, at end of
 * input, and -- the CSV/stdout sink, whose output streams to whoever reads
 * it -- at the latest one buffer timeout (weir run --buffer-timeout) after
 * the first row it holds: a timer set at that row, so a busy sink still
 * writes per MiB (one syscall per MiB, not per record) and a quiet one
 * within the timeout (0: after every batch).  A cancelled or failed job
 * writes what the sink holds when the task closes.
 *
 * The file sink (weir_sink_files) commits in two phases.  Each subtask
 * writes rows into a hidden in-progress file, opened at the first row
 * after a pre-commit so an empty interval makes no file:
 *
 *   <dir>/.part-<subtask>-<seq>.inprogress   written, invisible
 *        | snapshot(id): flush, task_sync_fd, pending (tagged id)
 *        v
 *   <dir>/.part-<subtask>-<seq>.inprogress   durable, still invisible
 *        | commit(c), c >= id: rename, fsync(dir)
 *        v
 *   <dir>/part-<subtask>-<seq>               visible, final
 *
 * A pending file keeps its descriptor until commit: the sync submitted by
 * task_sync_fd may still be in flight (an io_uring fdatasync on a closed
 * descriptor number could sync some other file).  Recovery (restore)
 * commits the files the checkpoint lists as pending and deletes every
 * other hidden file, so the visible files hold exactly the output of an
 * uninterrupted run; a run that finds no checkpoint deletes the hidden
 * files of earlier attempts before it writes its first.  seq only grows, above every name of the subtask in
 * the directory, so names never collide, also with earlier runs.
 *
 * Snapshot blob (little-endian):
 *
 *   +------------+-------------+------------+------------------------------+
 *   | version u8 | next seq u64| npend u32  | npend x pending file         |
 *   |     = 1    |             |            |                              |
 *   +------------+-------------+------------+------------------------------+
 *   pending file: checkpoint id i64, length u64, name (u32 length + bytes:
 *                 the hidden file's name in dir, ".part-S-N.inprogress")
 *
 * A file pre-committed by the final snapshot (the task ended, id
 * CKPT_FINAL) is tagged with the barrier after the last one the task
 * passed: every checkpoint from that one on holds the task's final state,
 * and no earlier one does.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ops.h"

#define OUT_BUF (1u << 20)

typedef struct csv_sink {
	int fd;
	bool own_fd;
	char *buf;
	size_t len;
	const char *what;  /* the file, for messages */
	const char *label; /* "csv" or "file", for messages */
	uint64_t written;  /* bytes written through fd */
	bool timer_set;    /* a flush is due at the buffer timeout */
} csv_sink;

static int sink_open(task *t)
{
	const sink_conf *c = t->node->conf;
	csv_sink *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	t->st = s;
	s->buf = malloc(OUT_BUF);
	s->label = "csv";
	if (!s->buf)
		return -ENOMEM;
	if (!c->path[0]) {
		s->fd = STDOUT_FILENO;
		s->what = "standard output";
		return 0;
	}
	s->what = c->path;
	s->fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (s->fd < 0) {
		int e = errno;
		task_fail(t, "csv sink '%s': cannot create '%s': %s", t->node->name,
			  c->path, strerror(e));
		return -e;
	}
	s->own_fd = true;
	return 0;
}

static bool sink_write(task *t, csv_sink *s)
{
	size_t off = 0;
	while (off < s->len) {
		ssize_t n = write(s->fd, s->buf + off, s->len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			task_fail(t, "%s sink '%s': writing %s: %s", s->label,
				  t->node->name, s->what, strerror(errno));
			s->len = 0;
			return false;
		}
		off += (size_t)n;
	}
	s->written += s->len;
	s->len = 0;
	return true;
}

/* Format the rows of b as CSV into s's buffer, writing it out when full.
 * Does not take b. */
static void csv_format(task *t, csv_sink *s, const weir_batch *b)
{
	for (uint32_t r = 0; r < b->rows; r++) {
		size_t need = csv_row_bound(b, r);
		if (OUT_BUF - s->len < need) {
			if (!sink_write(t, s))
				break;
			if (need > OUT_BUF) {
				/* One enormous row: write it through a bigger buffer. */
				char *nb = realloc(s->buf, need);
				if (!nb) {
					task_fail(t, "%s sink '%s': out of memory", s->label,
						  t->node->name);
					break;
				}
				s->buf = nb;
			}
		}
		char *p = csv_format_row(s->buf + s->len, b, r);
		*p++ = '\n';
		s->len = (size_t)(p - s->buf);
		if (need > OUT_BUF)
			sink_write(t, s);
	}
}

static void sink_process(task *t, int input, weir_batch *b)
{
	csv_sink *s = t->st;
	(void)input;
	csv_format(t, s, b);
	batch_release(b);
	if (!s->len || s->timer_set)
		return;
	if (t->cfg->buffer_timeout_us <= 0) {
		sink_write(t, s);
		return;
	}
	task_set_timer(t, now_ns() + (uint64_t)t->cfg->buffer_timeout_us * 1000);
	s->timer_set = true;
}

/* The buffer timeout passed since the oldest row held: write it all. */
static void sink_timer(task *t)
{
	csv_sink *s = t->st;
	s->timer_set = false;
	sink_write(t, s);
}

static void sink_end_input(task *t)
{
	csv_sink *s = t->st;
	sink_write(t, s);
}

static void sink_close(task *t)
{
	csv_sink *s = t->st;
	if (!s)
		return;
	/* cancelled or failed: what was produced still goes out */
	if (s->len && s->fd >= 0)
		sink_write(t, s);
	if (s->own_fd && s->fd >= 0 && close(s->fd) < 0)
		wlog(LOG_ERROR, "csv sink '%s': closing %s: %s", t->node->name, s->what,
		     strerror(errno));
	free(s->buf);
	free(s);
}

const op_ops op_csv_sink = {
	.kind = "csv_sink", .open = sink_open, .process = sink_process,
	.timer = sink_timer, .end_input = sink_end_input, .close = sink_close,
};

static void discard_process(task *t, int input, weir_batch *b)
{
	(void)t;
	(void)input;
	batch_release(b);
}

const op_ops op_discard_sink = { .kind = "discard", .process = discard_process };

/* ---- user-defined sinks (weir_sink) ------------------------------------------------------ */

typedef struct user_sink {
	const weir_sink_fns *fns; /* the node's copy */
	void *state;
	bool opened;
} user_sink;

static int user_open(task *t)
{
	const weir_sink_fns *f = t->node->conf;
	user_sink *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->fns = f;
	s->state = f->arg;
	t->st = s;
	if (f->open) {
		int rc = f->open(f->arg, t->subtask, t->parallelism, &s->state);
		if (rc < 0)
			return rc;
	}
	s->opened = true;
	return 0;
}

static void user_process(task *t, int input, weir_batch *b)
{
	user_sink *s = t->st;
	(void)input;
	int rc = s->fns->invoke(s->state, b);
	batch_release(b);
	if (rc < 0)
		task_fail(t, "sink '%s': invoke returned %d", t->node->name, rc);
}

static void user_close(task *t)
{
	user_sink *s = t->st;
	if (!s)
		return;
	if (s->opened && s->fns->close)
		s->fns->close(s->state);
	free(s);
	t->st = NULL;
}

const op_ops op_user_sink = {
	.kind = "user_sink", .open = user_open, .process = user_process, .close = user_close,
};

/* ---- exactly-once files (two-phase commit, see the top of the file) --------------- */

#define NAME_MAX_PART 64 /* ".part-4095-18446744073709551615.inprogress" fits */

typedef struct pend_file {
	int64_t id;   /* committed by commit(c) with c >= id */
	uint64_t seq;
	uint64_t len; /* bytes it holds */
	int fd;       /* open until committed: its sync may be in flight */
} pend_file;

/* Reactor thread of the task while the job runs; main thread in open,
 * restore and close. */
typedef struct files_sink {
	csv_sink out;    /* formatter; out.fd is the open in-progress file or -1 */
	const char *dir;
	int dfd;         /* the directory: names are relative to it */
	uint64_t seq;    /* seq of the open file, else of the next one */
	uint64_t start;  /* out.written when the open file was opened */
	int64_t last_id; /* greatest barrier snapshot() saw */
	pend_file *pend; /* pre-committed, oldest first */
	int npend, cap;
	char what[4200]; /* "<dir>/<name>" of the open file, for messages */
	uint64_t first_seq; /* the first seq this run uses (at open) */
	bool settled;    /* earlier attempts' hidden files dealt with */
} files_sink;

static void part_name(char *buf, bool hidden, int subtask, uint64_t seq)
{
	snprintf(buf, NAME_MAX_PART, hidden ? ".part-%d-%" PRIu64 ".inprogress"
					    : "part-%d-%" PRIu64, subtask, seq);
}

/* Digits only, no sign, no overflow; *p moves past them. */
static bool parse_u64(const char **p, uint64_t *v)
{
	const char *s = *p;
	uint64_t x = 0;
	if (*s < '0' || *s > '9')
		return false;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (x > (UINT64_MAX - 9) / 10)
			return false;
		x = x * 10 + (uint64_t)(*s - '0');
	}
	*p = s;
	*v = x;
	return true;
}

/* "part-S-N" (1) or ".part-S-N.inprogress" (2), else 0. */
static int part_name_parse(const char *name, int *subtask, uint64_t *seq)
{
	bool hidden = name[0] == '.';
	const char *p = name + hidden;
	uint64_t sub;
	if (strncmp(p, "part-", 5))
		return 0;
	p += 5;
	if (!parse_u64(&p, &sub) || sub > 1u << 20 || *p++ != '-' || !parse_u64(&p, seq))
		return 0;
	if (hidden ? strcmp(p, ".inprogress") : *p != 0)
		return 0;
	*subtask = (int)sub;
	return hidden ? 2 : 1;
}

static int mkdir_p(const char *dir)
{
	char p[4096];
	size_t n = strlen(dir);
	if (n >= sizeof(p))
		return -ENAMETOOLONG;
	memcpy(p, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (p[i] != '/' && p[i] != 0)
			continue;
		char c = p[i];
		p[i] = 0;
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return -errno;
		p[i] = c;
	}
	return 0;
}

/* The next free seq of subtask: above every part-<subtask>-N and
 * .part-<subtask>-N.inprogress in the directory.  Or -errno. */
static int scan_next_seq(files_sink *s, int subtask, uint64_t *next)
{
	int fd = openat(s->dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	if (!d) {
		int err = -errno;
		if (fd >= 0)
			close(fd);
		return err;
	}
	while ((e = readdir(d))) {
		int sub;
		uint64_t seq;
		if (part_name_parse(e->d_name, &sub, &seq) && sub == subtask && seq >= *next)
			*next = seq + 1;
	}
	closedir(d);
	return 0;
}

static int files_open(task *t)
{
	const sink_conf *c = t->node->conf;
	files_sink *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	t->st = s;
	s->dfd = -1;
	s->out.fd = -1;
	s->out.label = "file";
	s->out.what = s->what;
	s->dir = c->path;
	s->out.buf = malloc(OUT_BUF);
	if (!s->out.buf)
		return -ENOMEM;
	if ((rc = mkdir_p(c->path)) < 0) {
		task_fail(t, "file sink '%s': cannot create directory '%s': %s",
			  t->node->name, c->path, strerror(-rc));
		return rc;
	}
	s->dfd = open(c->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dfd < 0 || (rc = scan_next_seq(s, t->subtask, &s->seq)) < 0) {
		rc = s->dfd < 0 ? -errno : rc;
		task_fail(t, "file sink '%s': cannot read directory '%s': %s",
			  t->node->name, c->path, strerror(-rc));
		return rc;
	}
	s->first_seq = s->seq;
	return 0;
}

/* Open the next in-progress file.  false after failing the job. */
/*
 * A run that restored nothing (no checkpoint yet) replays its input from
 * the start, so the hidden files of earlier attempts hold rows no
 * checkpoint committed and that are written again: delete them, as a
 * restore deletes the ones its checkpoint does not list.  Each subtask
 * deletes its own (seq below the first it uses); subtask 0 also those of
 * subtasks beyond the parallelism.  Before the first file is opened.
 */
static void forget_earlier_attempts(task *t, files_sink *s)
{
	int fd = openat(s->dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	s->settled = true;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((e = readdir(d))) {
		int sub;
		uint64_t seq;
		if (part_name_parse(e->d_name, &sub, &seq) != 2)
			continue;
		bool own = sub == t->subtask && seq < s->first_seq;
		bool orphan = t->subtask == 0 && sub >= t->parallelism;
		if ((own || orphan) && unlinkat(s->dfd, e->d_name, 0) < 0 && errno != ENOENT)
			wlog(LOG_WARN, "file sink '%s': deleting '%s/%s' of an earlier attempt: %s",
			     t->node->name, s->dir, e->d_name, strerror(errno));
	}
	closedir(d);
}

static bool open_part(task *t, files_sink *s)
{
	char name[NAME_MAX_PART];
	if (!s->settled)
		forget_earlier_attempts(t, s);
	part_name(name, true, t->subtask, s->seq);
	snprintf(s->what, sizeof(s->what), "%s/%s", s->dir, name);
	s->out.fd = openat(s->dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (s->out.fd < 0) {
		task_fail(t, "file sink '%s': cannot create '%s': %s", t->node->name,
			  s->what, strerror(errno));
		return false;
	}
	s->start = s->out.written;
	return true;
}

static void files_process(task *t, int input, weir_batch *b)
{
	files_sink *s = t->st;
	(void)input;
	if (b->rows && (s->out.fd >= 0 || open_part(t, s)))
		csv_format(t, &s->out, b);
	batch_release(b);
}

static int fsync_dir(task *t, files_sink *s)
{
	if (fsync(s->dfd) == 0)
		return 0;
	int e = errno;
	task_fail(t, "file sink '%s': syncing directory '%s': %s", t->node->name, s->dir,
		  strerror(e));
	return -e;
}

/* Close out the open file: flush, sync (with the checkpoint), and make it
 * pending, tagged id.  0 or -errno after failing the job. */
static int precommit(task *t, files_sink *s, int64_t id)
{
	int rc;
	if (!sink_write(t, &s->out))
		return -EIO;
	if (s->npend == s->cap) {
		int nc = s->cap ? s->cap * 2 : 4;
		pend_file *np = realloc(s->pend, (size_t)nc * sizeof(*np));
		if (!np) {
			task_fail(t, "file sink '%s': out of memory", t->node->name);
			return -ENOMEM;
		}
		s->pend = np;
		s->cap = nc;
	}
	if ((rc = task_sync_fd(t, s->out.fd)) < 0) {
		task_fail(t, "file sink '%s': syncing '%s': %s", t->node->name, s->what,
			  strerror(-rc));
		return rc;
	}
	s->pend[s->npend++] = (pend_file){ .id = id, .seq = s->seq,
					   .len = s->out.written - s->start,
					   .fd = s->out.fd };
	s->out.fd = -1;
	s->seq++;
	return 0;
}

/* Rename the hidden file `hidden` to `final`.  1 renamed, 0 already
 * committed, -errno (message in the job's error or the log by caller). */
static int rename_part(files_sink *s, const char *hidden, const char *final)
{
	if (renameat(s->dfd, hidden, s->dfd, final) == 0)
		return 1;
	int e = errno;
	if (e == ENOENT && faccessat(s->dfd, final, F_OK, 0) == 0)
		return 0;
	return -e;
}

static void files_commit(task *t, int64_t id)
{
	files_sink *s = t->st;
	char hidden[NAME_MAX_PART], final[NAME_MAX_PART];
	bool renamed = false;
	int k = 0;

	if (!s)
		return;
	for (int i = 0; i < s->npend; i++) {
		pend_file *p = &s->pend[i];
		if (p->id > id) {
			s->pend[k++] = *p;
			continue;
		}
		part_name(hidden, true, t->subtask, p->seq);
		part_name(final, false, t->subtask, p->seq);
		int rc = rename_part(s, hidden, final);
		if (rc < 0)
			task_fail(t, "file sink '%s': committing '%s/%s': %s", t->node->name,
				  s->dir, hidden, strerror(-rc));
		renamed |= rc > 0;
		if (p->fd >= 0)
			close(p->fd);
	}
	s->npend = k;
	if (renamed)
		fsync_dir(t, s);
}

static int files_snapshot(task *t, int64_t id, snap_buf *out)
{
	files_sink *s = t->st;
	uint8_t version = 1;
	uint32_t n;
	int rc;

	if (id != CKPT_FINAL && id > s->last_id)
		s->last_id = id;
	if (s->out.fd >= 0 &&
	    (rc = precommit(t, s, id == CKPT_FINAL ? s->last_id + 1 : id)) < 0)
		return rc;
	n = (uint32_t)s->npend;
	if ((rc = snap_put(out, &version, 1)) || (rc = snap_put_u64(out, s->seq)) ||
	    (rc = snap_put(out, &n, 4)))
		return rc;
	for (int i = 0; i < s->npend; i++) {
		char hidden[NAME_MAX_PART];
		part_name(hidden, true, t->subtask, s->pend[i].seq);
		if ((rc = snap_put_u64(out, (uint64_t)s->pend[i].id)) ||
		    (rc = snap_put_u64(out, s->pend[i].len)) ||
		    (rc = snap_put_str(out, hidden)))
			return rc;
	}
	return 0;
}

static void files_end_input(task *t)
{
	files_sink *s = t->st;
	if (!s->settled)
		forget_earlier_attempts(t, s);
	if (task_checkpointing(t)) {
		/* The final snapshot pre-commits it, the final checkpoint's
		 * commit makes it visible. */
		sink_write(t, &s->out);
		return;
	}
	if (s->out.fd >= 0 && precommit(t, s, 0) == 0)
		files_commit(t, INT64_MAX);
}

static void files_close(task *t)
{
	files_sink *s = t->st;
	if (!s)
		return;
	/* Pending files stay: a recovery may commit them. */
	if (s->out.fd >= 0)
		close(s->out.fd);
	for (int i = 0; i < s->npend; i++)
		if (s->pend[i].fd >= 0)
			close(s->pend[i].fd);
	if (s->dfd >= 0)
		close(s->dfd);
	free(s->pend);
	free(s->out.buf);
	free(s);
}

/* ---- recovery -------------------------------------------------------------------- */

typedef struct listed {
	char (*names)[NAME_MAX_PART];
	int n, cap;
} listed;

static bool listed_has(const listed *l, const char *name)
{
	for (int i = 0; i < l->n; i++)
		if (!strcmp(l->names[i], name))
			return true;
	return false;
}

/* Commit a pending file of the restored checkpoint: cut what the crashed
 * attempt wrote after the pre-commit, rename.  1 renamed, 0 nothing to do,
 * -errno (logged). */
static int commit_listed(task *t, files_sink *s, const char *hidden, uint64_t len)
{
	char final[NAME_MAX_PART];
	struct stat st;
	int sub;
	uint64_t seq;

	part_name_parse(hidden, &sub, &seq);
	part_name(final, false, sub, seq);
	if (fstatat(s->dfd, hidden, &st, 0) < 0) {
		if (errno == ENOENT && faccessat(s->dfd, final, F_OK, 0) == 0)
			return 0; /* committed before the crash */
		if (errno == ENOENT) {
			wlog(LOG_WARN, "file sink '%s': neither '%s/%s' nor '%s' exists: "
			     "taking it as committed and moved away", t->node->name, s->dir,
			     hidden, final);
			return 0;
		}
		int e = errno;
		wlog(LOG_ERROR, "file sink '%s': '%s/%s': %s", t->node->name, s->dir, hidden,
		     strerror(e));
		return -e;
	}
	if ((uint64_t)st.st_size < len) {
		wlog(LOG_ERROR, "file sink '%s': '%s/%s' holds %lld bytes, the checkpoint "
		     "pre-committed %" PRIu64 ": its output is lost", t->node->name, s->dir,
		     hidden, (long long)st.st_size, len);
		return -EIO;
	}
	if ((uint64_t)st.st_size > len) {
		int fd = openat(s->dfd, hidden, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || ftruncate(fd, (off_t)len) < 0 || fsync(fd) < 0) {
			int e = errno;
			wlog(LOG_ERROR, "file sink '%s': truncating '%s/%s': %s", t->node->name,
			     s->dir, hidden, strerror(e));
			if (fd >= 0)
				close(fd);
			return -e;
		}
		close(fd);
	}
	int rc = rename_part(s, hidden, final);
	if (rc < 0)
		wlog(LOG_ERROR, "file sink '%s': committing '%s/%s': %s", t->node->name,
		     s->dir, hidden, strerror(-rc));
	return rc;
}

/* Delete the hidden files no blob lists (subtask 0 only). */
static int delete_unlisted(task *t, files_sink *s, const listed *l)
{
	int fd = openat(s->dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	int rc = 0, sub;
	uint64_t seq;

	if (!d) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		return rc;
	}
	while ((e = readdir(d))) {
		if (part_name_parse(e->d_name, &sub, &seq) != 2 || listed_has(l, e->d_name))
			continue;
		if (unlinkat(s->dfd, e->d_name, 0) < 0 && errno != ENOENT) {
			rc = -errno;
			wlog(LOG_ERROR, "file sink '%s': deleting '%s/%s': %s", t->node->name,
			     s->dir, e->d_name, strerror(errno));
			break;
		}
	}
	closedir(d);
	return rc;
}

/*
 * Roll back: delete committed files "part-<sub>-<seq>" of old subtask sub
 * with seq >= next (the restored checkpoint's next sequence number).  Only
 * a checkpoint newer than the restored one can have committed them -- the
 * restore fell back past a corrupt checkpoint -- and the replay writes
 * their rows again, so keeping them would duplicate output.
 */
static void roll_back(task *t, files_sink *s, int sub, uint64_t next)
{
	DIR *d = opendir(s->dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		int fs;
		unsigned long long seq;
		char tail[4];
		if (sscanf(e->d_name, "part-%d-%llu%1s", &fs, &seq, tail) != 2 ||
		    fs != sub || seq < next)
			continue;
		if (unlinkat(s->dfd, e->d_name, 0) == 0)
			wlog(LOG_WARN, "file sink '%s': removed %s/%s: committed by a "
			     "checkpoint newer than the restored one, its rows are "
			     "written again", t->node->name, s->dir, e->d_name);
	}
	if (d)
		closedir(d);
}

static int files_restore(task *t, const op_restore *r)
{
	files_sink *s = t->st;
	listed l = { 0 };
	bool renamed = false;
	int rc = 0;

	for (int b = 0; b < r->n && rc == 0; b++) {
		const op_blob *blob = &r->blobs[b];
		snap_rd rd = { .p = blob->p, .len = blob->len };
		const uint8_t *version = snap_get(&rd, 1);
		uint64_t next = snap_get_u64(&rd);
		const void *pn = snap_get(&rd, 4);
		uint32_t n = 0;
		bool mine = blob->subtask >= 0 && blob->subtask % t->parallelism == t->subtask;

		if (!version || *version != 1 || !pn) {
			rc = -EINVAL;
			break;
		}
		memcpy(&n, pn, 4);
		if (blob->subtask == t->subtask && next > s->seq)
			s->seq = next;
		if (mine)
			roll_back(t, s, blob->subtask, next);
		for (uint32_t i = 0; i < n; i++) {
			char name[NAME_MAX_PART];
			int sub;
			uint64_t seq;
			snap_get_u64(&rd); /* id: the checkpoint is complete */
			uint64_t len = snap_get_u64(&rd);
			if (!snap_get_str(&rd, name, sizeof(name)) ||
			    part_name_parse(name, &sub, &seq) != 2) {
				rc = -EINVAL;
				break;
			}
			if (l.n == l.cap) {
				int nc = l.cap ? l.cap * 2 : 16;
				void *nl = realloc(l.names, (size_t)nc * sizeof(*l.names));
				if (!nl) {
					rc = -ENOMEM;
					break;
				}
				l.names = nl;
				l.cap = nc;
			}
			memcpy(l.names[l.n++], name, NAME_MAX_PART);
			if (mine) {
				int c = commit_listed(t, s, name, len);
				if (c < 0) {
					rc = c;
					break;
				}
				renamed |= c > 0;
			}
		}
	}
	if (rc == -EINVAL)
		wlog(LOG_ERROR, "file sink '%s': the saved state is not one of a file sink",
		     t->node->name);
	if (rc == 0 && renamed && fsync(s->dfd) < 0) {
		rc = -errno;
		wlog(LOG_ERROR, "file sink '%s': syncing directory '%s': %s", t->node->name,
		     s->dir, strerror(errno));
	}
	s->settled = true; /* the checkpoint says which hidden files count */
	if (rc == 0 && t->subtask == 0)
		rc = delete_unlisted(t, s, &l);
	if (rc == 0 && (rc = scan_next_seq(s, t->subtask, &s->seq)) < 0)
		wlog(LOG_ERROR, "file sink '%s': reading directory '%s': %s", t->node->name,
		     s->dir, strerror(-rc));
	free(l.names);
	return rc;
}

const op_ops op_files_sink = {
	.kind = "files_sink", .open = files_open, .process = files_process,
	.end_input = files_end_input, .snapshot = files_snapshot,
	.commit = files_commit, .restore = files_restore, .close = files_close,
};
