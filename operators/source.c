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
 *
 * Replay (checkpoints).  A source's work is a list of splits [pos, end)
 * (ops.h): byte ranges of a file, id ranges of the generator.  A split's
 * pos moves forward as batches go out, always to where the next batch
 * starts, so every record emitted so far lies before it; snapshot() writes
 * the remaining splits, restore() takes those of the old subtasks this
 * subtask inherits (s % parallelism == subtask) and reads them in order.
 * A text split is entered by reading from pos - 1 and dropping everything
 * through the first '\n': at a range start that skips the line the
 * previous subtask owns, and at a line start (every pos once reading
 * began) it drops only the '\n' before it, so one rule serves both.
 * Standard input and pipes cannot seek back: their snapshot holds no
 * splits and restore() goes on reading (at-least-once, said by the
 * runtime).
 *
 * Rate cap (weir_source_set_rate, the generator's own rate): a token
 * bucket per subtask, refilled from one clock read per produce() call.
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
#include "splitmix.h"

#define READ_BUF (1u << 20)
/* Longest line or CSV record accepted; longer input is reported, not
 * buffered without bound. */
#define MAX_RECORD (64u << 20)

/* ---- splits and their snapshots ---------------------------------------------------- */

void src_split_range(uint64_t total, int subtask, int parallelism,
		     uint64_t *start, uint64_t *end)
{
	*start = (uint64_t)((unsigned __int128)total * (unsigned)subtask /
			    (unsigned)parallelism);
	*end = (uint64_t)((unsigned __int128)total * (unsigned)(subtask + 1) /
			  (unsigned)parallelism);
}

int src_splits_write(snap_buf *out, enum src_blob_kind kind,
		     const src_split *sp, int n)
{
	uint8_t hdr[2] = { SRC_BLOB_VERSION, (uint8_t)kind };
	uint32_t n32 = (uint32_t)n;
	int rc = snap_put(out, hdr, 2);
	if (!rc)
		rc = snap_put(out, &n32, 4);
	for (int i = 0; i < n && !rc; i++) {
		uint64_t v[5] = { sp[i].pos, sp[i].end, sp[i].line, sp[i].block_rows,
				  sp[i].stride };
		rc = snap_put(out, v, sizeof(v));
	}
	return rc;
}

int src_splits_take(const op_restore *r, enum src_blob_kind kind, int subtask,
		    int parallelism, src_split **out, int *n, bool *stream)
{
	src_split *sp = NULL;
	int count = 0, cap = 0;

	*out = NULL;
	*n = 0;
	*stream = false;
	for (int b = 0; b < r->n; b++) {
		const op_blob *blob = &r->blobs[b];
		snap_rd rd = { .p = blob->p, .len = blob->len };
		const uint8_t *hdr = snap_get(&rd, 2);
		uint32_t cnt = 0;
		const void *pc = snap_get(&rd, 4);

		if (!hdr || !pc || hdr[0] != SRC_BLOB_VERSION ||
		    (hdr[1] != kind && hdr[1] != SRC_BLOB_STREAM))
			goto bad;
		memcpy(&cnt, pc, 4);
		if (cnt > (rd.len - rd.off) / 40)
			goto bad;
		if (hdr[1] == SRC_BLOB_STREAM)
			*stream = true;
		if (blob->subtask < 0 || blob->subtask % parallelism != subtask)
			continue;
		for (uint32_t i = 0; i < cnt; i++) {
			src_split x;
			x.pos = snap_get_u64(&rd);
			x.end = snap_get_u64(&rd);
			x.line = snap_get_u64(&rd);
			x.block_rows = snap_get_u64(&rd);
			x.stride = snap_get_u64(&rd);
			if (rd.err || (x.block_rows && !x.stride))
				goto bad;
			if (x.pos >= x.end)
				continue; /* nothing left of it */
			if (count == cap) {
				int nc = cap ? cap * 2 : 4;
				src_split *ns = realloc(sp, (size_t)nc * sizeof(*sp));
				if (!ns) {
					free(sp);
					return -ENOMEM;
				}
				sp = ns;
				cap = nc;
			}
			sp[count++] = x;
		}
	}
	*out = sp;
	*n = count;
	return 0;
bad:
	free(sp);
	return -EINVAL;
}

/* ---- rate cap ------------------------------------------------------------------------ */

void rate_gate_init(rate_gate *g, double total, int parallelism)
{
	*g = (rate_gate){ 0 };
	if (total <= 0 || parallelism < 1)
		return;
	g->rate = total / parallelism;
	g->depth = g->rate / 100; /* 10 ms worth */
	if (g->depth < 1)
		g->depth = 1;
}

uint32_t rate_gate_allow(rate_gate *g, uint64_t now, uint64_t *wake_ns)
{
	if (g->rate <= 0)
		return UINT32_MAX;
	if (g->last && now > g->last) {
		g->tokens += (double)(now - g->last) * 1e-9 * g->rate;
		if (g->tokens > g->depth)
			g->tokens = g->depth;
	}
	if (!g->last || now > g->last)
		g->last = now;
	if (g->tokens < 1) {
		*wake_ns = now + (uint64_t)((1 - g->tokens) / g->rate * 1e9) + 1;
		return 0;
	}
	return g->tokens >= (double)UINT32_MAX ? UINT32_MAX : (uint32_t)g->tokens;
}

/* How many records this produce() call may emit: >= 1, or 0 after asking
 * to be woken when the next is due.  One clock read, only with a cap. */
uint32_t gate_allow(task *t, rate_gate *g)
{
	uint64_t wake;
	if (g->rate <= 0)
		return UINT32_MAX;
	uint32_t n = rate_gate_allow(g, now_ns(), &wake);
	if (!n)
		task_wait(t, wake, -1);
	return n;
}

/* ---- files ----------------------------------------------------------------------------- */

typedef struct file_state {
	const file_source_conf *c;
	int fd;
	bool own_fd, eof, done, skip_first;
	bool stream;      /* not a regular file: poll + read(2), no pread */
	off_t end;        /* first byte not ours (lines starting before it are) */
	off_t buf_off;    /* file offset of buf[0] */
	char *buf;
	size_t cap, rpos, rlen;
	/* Work left: splits[cur] is being read (its pos is stale while it is:
	 * the position is buf_off + rpos), the ones after it wait. */
	src_split *splits;
	int nsplits, cur;
	rate_gate gate;
	/* CSV */
	char *scratch;
	csv_field *fields;
	uint64_t line;    /* 1-based number of the next line */
	uint64_t dead;
	bool header_done;
} file_state;

/* Start reading splits[cur], or end the source when none is left. */
static void begin_split(file_state *s)
{
	s->rpos = s->rlen = 0;
	s->eof = false;
	if (s->cur >= s->nsplits) {
		s->done = true;
		return;
	}
	const src_split *sp = &s->splits[s->cur];
	s->end = sp->end > (uint64_t)INT64_MAX ? INT64_MAX : (off_t)sp->end;
	s->line = sp->line ? sp->line : 1;
	s->header_done = sp->pos > 0;
	s->skip_first = false;
	s->buf_off = (off_t)sp->pos;
	if (s->c->kind == SRC_TEXT && sp->pos > 0) {
		/* The one rule for range starts and line starts (file comment). */
		s->buf_off = (off_t)sp->pos - 1;
		s->skip_first = true;
	}
	if (!s->stream)
		posix_fadvise(s->fd, s->buf_off, s->end == INT64_MAX ? 0 : s->end - s->buf_off,
			      POSIX_FADV_SEQUENTIAL);
}

/* The current split is finished: go to the next.  True if there is one. */
static bool next_split(file_state *s)
{
	s->cur++;
	begin_split(s);
	return !s->done;
}

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
	s->fd = -1;
	rate_gate_init(&s->gate, t->node->rate, t->parallelism);
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
	if (s->stream) {
		s->end = INT64_MAX;
		if (t->subtask > 0)
			s->done = true;
		return 0;
	}
	s->splits = calloc(1, sizeof(*s->splits));
	if (!s->splits)
		return -ENOMEM;
	if (c->kind == SRC_CSV) {
		/* Parallelism 1: quoted fields may hold newlines. */
		if (t->subtask == 0)
			s->splits[s->nsplits++] = (src_split){ .pos = 0, .end = UINT64_MAX,
							       .line = 1 };
	} else {
		src_split sp = { 0 };
		src_split_range((uint64_t)st.st_size, t->subtask, t->parallelism, &sp.pos,
				&sp.end);
		if (sp.pos < sp.end)
			s->splits[s->nsplits++] = sp;
	}
	begin_split(s);
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
	free(s->splits);
	free(s);
}

static int file_snapshot(task *t, int64_t id, snap_buf *out)
{
	file_state *s = t->st;
	(void)id;
	if (s->stream)
		return src_splits_write(out, SRC_BLOB_STREAM, NULL, 0);
	if (!s->done && s->cur < s->nsplits) {
		/* Bring the split being read up to date (see file_state). */
		src_split *sp = &s->splits[s->cur];
		if (!s->skip_first)
			sp->pos = (uint64_t)(s->buf_off + (off_t)s->rpos);
		sp->line = s->c->kind == SRC_CSV ? s->line : 0;
	}
	int left = s->done ? 0 : s->nsplits - s->cur;
	return src_splits_write(out, s->c->kind == SRC_CSV ? SRC_BLOB_CSV : SRC_BLOB_TEXT,
				left ? &s->splits[s->cur] : NULL, left);
}

static int file_restore(task *t, const op_restore *r)
{
	file_state *s = t->st;
	src_split *sp;
	int n;
	bool stream;

	if (s->stream || r->n == 0)
		return 0; /* nothing to seek: go on reading (stdin, pipes) */
	int rc = src_splits_take(r, s->c->kind == SRC_CSV ? SRC_BLOB_CSV : SRC_BLOB_TEXT,
				 t->subtask, t->parallelism, &sp, &n, &stream);
	if (rc < 0) {
		wlog(LOG_ERROR, "source '%s': the saved position is not one of a %s source",
		     t->node->name, s->c->kind == SRC_CSV ? "csv" : "text");
		return rc;
	}
	if (stream) {
		/* The earlier run read a pipe: it saved no position. */
		wlog(LOG_WARN, "source '%s': the saved state is of a source that cannot "
		     "replay; reading '%s' from the start", t->node->name, s->c->path);
		free(sp);
		return 0;
	}
	free(s->splits);
	s->splits = sp;
	s->nsplits = n;
	s->cur = 0;
	s->done = false;
	begin_split(s);
	return 0;
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
	uint32_t allow = gate_allow(t, &s->gate);
	if (!allow)
		return 0;
	for (;;) {
		char *p = s->buf + s->rpos;
		size_t avail = s->rlen - s->rpos;
		char *nl = avail ? memchr(p, '\n', avail) : NULL;

		if (!nl && !(s->eof && avail)) {
			if (s->eof) {
				if (next_split(s))
					continue;
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
			if (next_split(s))
				continue;
			break;
		}
		if (b && b->rows >= allow)
			break;
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
		rate_gate_take(&s->gate, b->rows);
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
	uint32_t allow = gate_allow(t, &s->gate), recs = 0;
	if (!allow)
		return 0;
	uint32_t seen;
	for (seen = 0;; seen++) {
		const char *p = s->buf + s->rpos;
		size_t avail = s->rlen - s->rpos;
		const char *why = NULL;
		int nf = 0;
		/* One batch worth of records per call, whatever they turn out to
		 * be, and none while dead letters are backpressured; rows and
		 * dead letters count against the rate cap. */
		if (seen >= t->cfg->batch_rows || recs >= allow || task_blocked(t))
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
			recs++;
			dead_letter(t, s, line, "record longer than 64 MiB (unterminated quote?)",
				    p, skip > 200 ? 200 : skip);
			continue;
		}
		if (used == 0) {
			if (s->eof) {
				if (next_split(s))
					continue;
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
		recs++;
		if (used < 0) {
			dead_letter(t, s, line, why, p, rec_len);
			continue;
		}
		/* Parse every field before touching the batch. */
		int64_t vals[WEIR_MAX_COLS];
		size_t str_bytes = 0;
		char msg[160];
		if (csv_parse_fields(schema, s->scratch, s->fields, nf, vals, &str_bytes, msg,
				     sizeof(msg)) < 0) {
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
			recs--;
			break;
		}
		if (!b)
			b = batch_alloc(schema, str_bytes);
		uint32_t r = b->rows;
		csv_store_row(b, r, s->scratch, s->fields, vals);
		b->ts[r] = c->ts_col >= 0 ? vals[c->ts_col] : 0;
		b->rows = r + 1;
	}
	if (b && b->rows) {
		task_emit(t, 0, b);
		produced = 1;
	} else if (b) {
		batch_release(b);
	}
	rate_gate_take(&s->gate, recs);
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
	.snapshot = file_snapshot, .restore = file_restore, .close = file_close,
};

/* ---- generator ------------------------------------------------------------------------ */

typedef struct gen_state {
	const weir_generator_conf *c;
	src_split *splits;     /* work left, in no particular order */
	int nsplits;
	rate_gate gate;
	int64_t wm;
} gen_state;

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
	t->st = s;
	s->c = c;
	s->wm = INT64_MIN;
	/* The two caps (the generator's own, weir_source_set_rate): the
	 * tighter one holds. */
	rate_gate_init(&s->gate, rate_min(c->rate, t->node->rate), t->parallelism);
	s->splits = calloc(1, sizeof(*s->splits));
	if (!s->splits)
		return -ENOMEM;
	src_split sp = { 0 };
	if (c->count) {
		src_split_range(c->count, t->subtask, t->parallelism, &sp.pos, &sp.end);
	} else {
		/* Unbounded: blocks of batch_rows ids, dealt round-robin. */
		sp.block_rows = t->cfg->batch_rows;
		sp.stride = (uint64_t)t->parallelism;
		sp.pos = (uint64_t)t->subtask * sp.block_rows;
		sp.end = UINT64_MAX;
	}
	if (sp.pos < sp.end)
		s->splits[s->nsplits++] = sp;
	return 0;
}

static void gen_close(task *t)
{
	gen_state *s = t->st;
	if (!s)
		return;
	free(s->splits);
	free(s);
}

static int gen_snapshot(task *t, int64_t id, snap_buf *out)
{
	gen_state *s = t->st;
	(void)id;
	return src_splits_write(out, SRC_BLOB_GEN, s->splits, s->nsplits);
}

static int gen_restore(task *t, const op_restore *r)
{
	gen_state *s = t->st;
	src_split *sp;
	int n;
	bool stream;

	if (r->n == 0)
		return 0;
	int rc = src_splits_take(r, SRC_BLOB_GEN, t->subtask, t->parallelism, &sp, &n,
				 &stream);
	if (rc < 0 || stream) {
		wlog(LOG_ERROR, "generator '%s': the saved position is not one of a "
		     "generator", t->node->name);
		free(sp);
		return rc < 0 ? rc : -EINVAL;
	}
	free(s->splits);
	s->splits = sp;
	s->nsplits = n;
	return 0;
}

static int gen_produce(task *t)
{
	gen_state *s = t->st;
	const weir_generator_conf *c = s->c;
	const weir_schema *schema = t->node->schema[0];

	if (!s->nsplits)
		return -1;
	uint32_t allow = gate_allow(t, &s->gate);
	if (!allow)
		return 0;
	/* The split with the smallest next id: a restored subtask that took
	 * several reads them in order of id (bounded: one after the other;
	 * unbounded: merged block by block), so default rows keep increasing
	 * event time. */
	src_split *sp = &s->splits[0];
	for (int i = 1; i < s->nsplits; i++)
		if (s->splits[i].pos < sp->pos)
			sp = &s->splits[i];
	weir_batch *b = batch_alloc(schema, 0);
	uint64_t n = b->capacity;
	if (n > allow)
		n = allow;
	if (n > sp->end - sp->pos)
		n = sp->end - sp->pos;
	if (sp->block_rows && n > sp->block_rows - sp->pos % sp->block_rows)
		n = sp->block_rows - sp->pos % sp->block_rows;
	uint64_t first = sp->pos;
	if (c->fill)
		c->fill(c->arg, c->seed, first, (uint32_t)n, b);
	else
		gen_default_fill(c, first, (uint32_t)n, b);
	b->rows = (uint32_t)n;
	sp->pos += n;
	if (sp->block_rows && sp->pos % sp->block_rows == 0)
		sp->pos += (sp->stride - 1) * sp->block_rows; /* our next block */
	if (sp->pos >= sp->end)
		*sp = s->splits[--s->nsplits];
	rate_gate_take(&s->gate, (uint32_t)n);
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
	.snapshot = gen_snapshot, .restore = gen_restore, .close = gen_close,
};
