/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sources: text file lines, standard input lines, CSV with a declared schema,
 * and the deterministic generator.
 *
 * File sources read through a private buffer (1 MiB, grown only for a line
 * longer than it) with read(2) on the reactor thread: page-cache reads are
 * short; io_uring reads arrive with the state logs.  A text file is split
 * across subtasks by byte range: a line belongs to the subtask whose range
 * holds its first byte, so every line is read exactly once at any
 * parallelism.  Standard input, pipes and other files that are not regular
 * are read by one subtask with read(2) after a non-blocking poll, so a
 * quiet pipe never stalls the reactor: the source then asks to be woken
 * when the descriptor is readable (task_wait) and the reactor sleeps.
 * Each produce() call handles at most one batch worth of records (valid,
 * malformed or blank) and stops early under backpressure.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ops.h"

#define READ_BUF (1u << 20)
/* Longest line or CSV record accepted; longer input is reported, not
 * buffered without bound. */
#define MAX_RECORD (64u << 20)

typedef struct file_state {
	const file_source_conf *c;
	int fd;
	bool own_fd, eof, done, skip_first;
	bool stream;      /* not a regular file: poll + read(2), no pread */
	off_t end;        /* first byte not ours (lines starting before it are) */
	off_t buf_off;    /* file offset of buf[0] */
	char *buf;
	size_t cap, rpos, rlen;
	/* CSV */
	char *scratch;
	csv_field *fields;
	uint64_t line;    /* 1-based number of the next line */
	uint64_t dead;
	bool header_done;
} file_state;

static int file_open(task *t)
{
	const file_source_conf *c = t->node->conf;
	file_state *s = calloc(1, sizeof(*s));
	struct stat st;

	if (!s)
		return -ENOMEM;
	t->st = s;
	s->c = c;
	s->cap = READ_BUF;
	s->buf = malloc(s->cap);
	s->line = 1;
	if (!s->buf)
		return -ENOMEM;
	if (c->kind == SRC_STDIN) {
		s->fd = STDIN_FILENO;
		s->end = INT64_MAX;
		s->stream = true;
		return 0;
	}
	s->fd = open(c->path, O_RDONLY | O_CLOEXEC);
	if (s->fd < 0) {
		int e = errno;
		task_fail(t, "%s source '%s': cannot open '%s': %s",
			  c->kind == SRC_CSV ? "csv" : "text", t->node->name, c->path,
			  strerror(e));
		return -e;
	}
	s->own_fd = true;
	if (fstat(s->fd, &st) < 0 || S_ISDIR(st.st_mode)) {
		task_fail(t, "source '%s': '%s' is not a readable file", t->node->name,
			  c->path);
		return -EISDIR;
	}
	s->stream = !S_ISREG(st.st_mode);
	if (c->kind == SRC_CSV || s->stream) {
		s->end = INT64_MAX;
		if (t->subtask > 0)
			s->done = true;
		return 0;
	}
	off_t size = st.st_size;
	off_t start = (off_t)((__int128)size * t->subtask / t->parallelism);
	s->end = (off_t)((__int128)size * (t->subtask + 1) / t->parallelism);
	if (start > 0) {
		/* The line that starts before our range is the previous
		 * subtask's: read from start - 1 and drop through its '\n'. */
		s->buf_off = start - 1;
		s->skip_first = true;
	}
	if (start >= s->end)
		s->done = true;
	posix_fadvise(s->fd, start, s->end - start, POSIX_FADV_SEQUENTIAL);
	return 0;
}

static void file_close(task *t)
{
	file_state *s = t->st;
	if (!s)
		return;
	if (s->own_fd && s->fd >= 0)
		close(s->fd);
	free(s->buf);
	free(s->scratch);
	free(s->fields);
	free(s);
}

/* Read more input after the unread bytes.  Returns > 0 bytes read, 0 at
 * end of file, -EAGAIN when standard input has nothing now, < 0 on error. */
static ssize_t refill(task *t, file_state *s)
{
	ssize_t n;

	if (s->rpos) {
		memmove(s->buf, s->buf + s->rpos, s->rlen - s->rpos);
		s->buf_off += (off_t)s->rpos;
		s->rlen -= s->rpos;
		s->rpos = 0;
	}
	if (s->rlen == s->cap) {
		/* A line longer than the buffer: grow (rare, not per record). */
		char *nb = realloc(s->buf, s->cap * 2);
		if (!nb) {
			task_fail(t, "source '%s': out of memory for a %zu-byte line",
				  t->node->name, s->cap);
			return -ENOMEM;
		}
		s->buf = nb;
		s->cap *= 2;
		if (s->scratch) { /* CSV: unquoted fields need as much room */
			char *ns = realloc(s->scratch, s->cap);
			if (!ns) {
				task_fail(t, "source '%s': out of memory for a %zu-byte "
					  "record", t->node->name, s->cap);
				return -ENOMEM;
			}
			s->scratch = ns;
		}
	}
	if (s->stream) {
		struct pollfd p = { .fd = s->fd, .events = POLLIN };
		if (poll(&p, 1, 0) == 0) {
			task_wait(t, 0, s->fd);
			return -EAGAIN;
		}
		n = read(s->fd, s->buf + s->rlen, s->cap - s->rlen);
	} else {
		n = pread(s->fd, s->buf + s->rlen, s->cap - s->rlen,
			  s->buf_off + (off_t)s->rlen);
	}
	if (n < 0) {
		int e = errno;
		if (e == EINTR || e == EAGAIN)
			return -EAGAIN;
		task_fail(t, "source '%s': read error: %s", t->node->name, strerror(e));
		return -e;
	}
	if (n == 0)
		s->eof = true;
	s->rlen += (size_t)n;
	return n;
}

static int text_produce(task *t)
{
	file_state *s = t->st;
	const weir_schema *schema = t->node->schema[0];
	weir_batch *b = NULL;

	if (s->done)
		return -1;
	for (;;) {
		char *p = s->buf + s->rpos;
		size_t avail = s->rlen - s->rpos;
		char *nl = avail ? memchr(p, '\n', avail) : NULL;

		if (!nl && !(s->eof && avail)) {
			if (s->eof) {
				s->done = true;
				break;
			}
			if (b && b->rows == b->capacity)
				break;
			if (avail >= MAX_RECORD) {
				task_fail(t, "text source '%s': a line at byte %lld is longer "
					  "than %u MiB", t->node->name,
					  (long long)(s->buf_off + (off_t)s->rpos), MAX_RECORD >> 20);
				s->done = true;
				break;
			}
			ssize_t n = refill(t, s);
			if (n == -EAGAIN)
				break;
			if (n < 0) {
				s->done = true;
				break;
			}
			continue;
		}
		size_t len = nl ? (size_t)(nl - p) : avail;
		size_t used = nl ? len + 1 : len;
		if (s->skip_first) {
			s->skip_first = false;
			s->rpos += used;
			continue;
		}
		if (s->buf_off + (off_t)s->rpos >= s->end) {
			s->done = true;
			break;
		}
		if (len && p[len - 1] == '\r')
			len--;
		if (!b)
			b = batch_alloc(schema, len);
		if (b->rows == b->capacity || len > b->heap_cap - b->heap_used)
			break;
		weir_str *col = weir_col_str(b, 0);
		memcpy(b->heap + b->heap_used, p, len);
		col[b->rows] = (weir_str){ b->heap_used, (uint32_t)len };
		b->ts[b->rows] = 0;
		b->heap_used += (uint32_t)len;
		b->rows++;
		s->rpos += used;
	}
	if (b && b->rows) {
		task_emit(t, 0, b);
		return 1;
	}
	if (b)
		batch_release(b);
	return s->done ? -1 : 0;
}

/* ---- CSV ------------------------------------------------------------------------ */

static void dead_letter(task *t, file_state *s, uint64_t line, const char *why,
			const char *raw, size_t rawlen)
{
	size_t n = rawlen;
	while (n && (raw[n - 1] == '\n' || raw[n - 1] == '\r'))
		n--;
	s->dead++;
	metric_add(&t->m.dead_letters, 1);
	if (t->nout[1] == 0) {
		/* Nobody consumes the dead letters: say so on stderr, briefly. */
		if (s->dead <= 10)
			wlog(LOG_WARN, "csv source '%s': %s line %llu: %s: %.*s",
			     t->node->name, s->c->path, (unsigned long long)line, why,
			     (int)(n > 200 ? 200 : n), raw);
		else if (s->dead == 11)
			wlog(LOG_WARN, "csv source '%s': more malformed rows; counting "
			     "them in the metrics only", t->node->name);
		return;
	}
	weir_out *o = task_out(t, 1);
	weir_out_i64(o, 0, (int64_t)line);
	weir_out_str(o, 1, why, strlen(why));
	weir_out_str(o, 2, raw, n);
	weir_out_emit(o);
}

static int csv_produce(task *t)
{
	file_state *s = t->st;
	const weir_schema *schema = t->node->schema[0];
	const file_source_conf *c = s->c;
	weir_batch *b = NULL;
	int produced = 0;

	if (s->done)
		return -1;
	if (!s->fields) {
		s->fields = calloc(WEIR_MAX_COLS + 1, sizeof(csv_field));
		s->scratch = malloc(s->cap);
		if (!s->fields || !s->scratch) {
			task_fail(t, "csv source '%s': out of memory", t->node->name);
			return -1;
		}
	}
	uint32_t seen;
	for (seen = 0;; seen++) {
		const char *p = s->buf + s->rpos;
		size_t avail = s->rlen - s->rpos;
		const char *why = NULL;
		int nf = 0;
		/* One batch worth of records per call, whatever they turn out to
		 * be, and none while dead letters are backpressured. */
		if (seen >= t->cfg->batch_rows || task_blocked(t))
			break;
		long used = avail ? csv_split(p, avail, s->eof, s->scratch, s->fields,
					      WEIR_MAX_COLS + 1, &nf, &why) : 0;
		/* A malformed record that the buffer cuts short: read the rest
		 * of its line first, so the whole line becomes the dead letter. */
		if (used < 0 && !s->eof && avail < MAX_RECORD && !memchr(p, '\n', avail))
			used = 0;
		if (used == 0 && avail >= MAX_RECORD) {
			/* An open quote that never closes: report one line, go on. */
			size_t skip = csv_skip_line(p, avail);
			uint64_t line = s->line;
			s->line++;
			s->rpos += skip;
			dead_letter(t, s, line, "record longer than 64 MiB (unterminated quote?)",
				    p, skip > 200 ? 200 : skip);
			continue;
		}
		if (used == 0) {
			if (s->eof) {
				s->done = true;
				break;
			}
			if (b && b->rows == b->capacity)
				break;
			ssize_t n = refill(t, s);
			if (n == -EAGAIN)
				break;
			if (n < 0) {
				s->done = true;
				break;
			}
			continue;
		}
		uint64_t line = s->line;
		size_t rec_len = used > 0 ? (size_t)used : csv_skip_line(p, avail);
		for (size_t i = 0; i < rec_len; i++)
			s->line += p[i] == '\n';
		s->rpos += rec_len;
		if (c->header && !s->header_done) {
			s->header_done = true;
			continue;
		}
		/* A blank line is not a record. */
		if (used > 0 && nf == 1 && s->fields[0].len == 0 &&
		    (p[0] == '\n' || p[0] == '\r'))
			continue;
		if (used < 0) {
			dead_letter(t, s, line, why, p, rec_len);
			continue;
		}
		if (nf != schema->ncols) {
			char msg[96];
			snprintf(msg, sizeof(msg), "expected %d fields, found %d",
				 schema->ncols, nf);
			dead_letter(t, s, line, msg, p, rec_len);
			continue;
		}
		/* Parse every field before touching the batch. */
		int64_t vals[WEIR_MAX_COLS];
		size_t str_bytes = 0;
		int bad = -1;
		for (int k = 0; k < nf; k++) {
			weir_type ty = schema->fields[k].type;
			if (ty == WEIR_STR) {
				str_bytes += s->fields[k].len;
				continue;
			}
			if (csv_parse_value(s->scratch + s->fields[k].off, s->fields[k].len,
					    ty, &vals[k]) < 0) {
				bad = k;
				break;
			}
		}
		if (bad >= 0) {
			char msg[160];
			snprintf(msg, sizeof(msg), "column %d (%s): '%.*s' is not a valid %s",
				 bad + 1, schema->fields[bad].name,
				 (int)(s->fields[bad].len > 40 ? 40 : s->fields[bad].len),
				 s->scratch + s->fields[bad].off,
				 type_name(schema->fields[bad].type));
			dead_letter(t, s, line, msg, p, rec_len);
			continue;
		}
		if (b && (b->rows == b->capacity || str_bytes > b->heap_cap - b->heap_used)) {
			task_emit(t, 0, b);
			produced = 1;
			b = NULL;
			/* Let downstream run before the next batch. */
			s->rpos -= rec_len;
			s->line = line;
			break;
		}
		if (!b)
			b = batch_alloc(schema, str_bytes);
		uint32_t r = b->rows;
		for (int k = 0; k < nf; k++) {
			weir_type ty = schema->fields[k].type;
			if (ty == WEIR_STR)
				weir_batch_set_str(b, k, r, s->scratch + s->fields[k].off,
						   s->fields[k].len);
			else if (ty == WEIR_BOOL)
				weir_col_bool(b, k)[r] = (uint8_t)vals[k];
			else
				weir_col_i64(b, k)[r] = vals[k];
		}
		b->ts[r] = c->ts_col >= 0 ? vals[c->ts_col] : 0;
		b->rows = r + 1;
	}
	if (b && b->rows) {
		task_emit(t, 0, b);
		produced = 1;
	} else if (b) {
		batch_release(b);
	}
	/* Consuming input is work even when every record was malformed or
	 * blank: only a turn that read nothing is idle. */
	if (produced || seen > 0)
		return 1;
	return s->done ? -1 : 0;
}

static int file_produce(task *t)
{
	const file_source_conf *c = t->node->conf;
	return c->kind == SRC_CSV ? csv_produce(t) : text_produce(t);
}

const op_ops op_file_source = {
	.kind = "file_source", .open = file_open, .produce = file_produce,
	.close = file_close,
};

/* ---- generator ------------------------------------------------------------------------ */

typedef struct gen_state {
	const weir_generator_conf *c;
	uint64_t next, end;    /* bounded: our range of row ids */
	uint64_t block;        /* unbounded: next block index of ours */
	uint64_t made;
	uint64_t t0;
	double rate;           /* rows per second for this subtask */
	int64_t wm;
} gen_state;

static inline uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void gen_default_fill(const weir_generator_conf *c, uint64_t first,
			     uint32_t n, weir_batch *b)
{
	int64_t *seq = weir_col_i64(b, 0), *key = weir_col_i64(b, 1),
		*val = weir_col_i64(b, 2);
	uint64_t keys = (uint64_t)(c->keys > 0 ? c->keys : 1000);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t id = first + i;
		uint64_t r = splitmix64(c->seed ^ (id * 0xd1b54a32d192ed03ULL));
		seq[i] = (int64_t)id;
		/* Multiply-shift range reduction (Lemire): uniform, no divide. */
		key[i] = (int64_t)(((r >> 32) * keys) >> 32);
		val[i] = (int64_t)(((r & 0xffffffffu) * 1000) >> 32);
		b->ts[i] = (int64_t)id;
	}
}

static int gen_open(task *t)
{
	const weir_generator_conf *c = t->node->conf;
	gen_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->c = c;
	if (c->count) {
		s->next = (uint64_t)((__int128)c->count * t->subtask / t->parallelism);
		s->end = (uint64_t)((__int128)c->count * (t->subtask + 1) / t->parallelism);
	}
	s->block = (uint64_t)t->subtask;
	s->rate = c->rate > 0 ? c->rate / t->parallelism : 0;
	s->wm = INT64_MIN;
	t->st = s;
	return 0;
}

static void gen_close(task *t)
{
	free(t->st);
}

static int gen_produce(task *t)
{
	gen_state *s = t->st;
	const weir_generator_conf *c = s->c;
	const weir_schema *schema = t->node->schema[0];
	weir_batch *b = batch_alloc(schema, 0);
	uint32_t n = b->capacity;
	uint64_t first;

	if (c->count) {
		if (s->next >= s->end) {
			batch_release(b);
			return -1;
		}
		if (s->end - s->next < n)
			n = (uint32_t)(s->end - s->next);
	}
	if (s->rate > 0) {
		uint64_t now = now_ns();
		if (!s->t0)
			s->t0 = now;
		double due = (double)(now - s->t0) * 1e-9 * s->rate;
		if (due < (double)s->made + 1) {
			batch_release(b);
			/* Sleep until the next row is due. */
			task_wait(t, s->t0 + (uint64_t)(((double)s->made + 1) / s->rate * 1e9), -1);
			return 0;
		}
		if (due - (double)s->made < n)
			n = (uint32_t)(due - (double)s->made);
	}
	if (c->count) {
		first = s->next;
	} else {
		/* Unbounded: blocks of batch_rows ids, dealt round-robin. */
		uint32_t br = t->cfg->batch_rows;
		first = s->block * br + (s->made % br);
		if (n > br - (uint32_t)(s->made % br))
			n = br - (uint32_t)(s->made % br);
	}
	if (c->fill)
		c->fill(c->arg, c->seed, first, n, b);
	else
		gen_default_fill(c, first, n, b);
	b->rows = n;
	s->made += n;
	if (c->count)
		s->next += n;
	else if (s->made % t->cfg->batch_rows == 0)
		s->block += (uint64_t)t->parallelism;
	int64_t last = b->ts[n - 1];
	task_emit(t, 0, b);
	if (!c->fill && last > s->wm) {
		/* Default rows have increasing event time: a perfect watermark. */
		s->wm = last;
		task_emit_watermark(t, last);
	}
	return 1;
}

const op_ops op_generator = {
	.kind = "generator", .open = gen_open, .produce = gen_produce,
	.close = gen_close,
};
