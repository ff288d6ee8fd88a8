/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sinks: CSV to a file or standard output, and discard.  The CSV sink
 * formats a batch into a private 1 MiB buffer and writes it with write(2)
 * when full and at end of input (one syscall per MiB, not per record).
 * Exactly-once file output (two-phase commit) arrives with checkpoints.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ops.h"

#define OUT_BUF (1u << 20)

typedef struct csv_sink {
	int fd;
	bool own_fd;
	char *buf;
	size_t len;
	const char *what;
} csv_sink;

static int sink_open(task *t)
{
	const sink_conf *c = t->node->conf;
	csv_sink *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	t->st = s;
	s->buf = malloc(OUT_BUF);
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
			task_fail(t, "csv sink '%s': writing %s: %s", t->node->name,
				  s->what, strerror(errno));
			s->len = 0;
			return false;
		}
		off += (size_t)n;
	}
	s->len = 0;
	return true;
}

static char *fmt_i64(char *p, int64_t v)
{
	char tmp[24];
	int n = 0;
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*p++ = '-';
	while (n)
		*p++ = tmp[--n];
	return p;
}

static char *fmt_f64(char *p, double d)
{
	/* Shortest of %.15g / %.17g that reads back as the same double. */
	int n = snprintf(p, 32, "%.15g", d);
	if (strtod(p, NULL) != d)
		n = snprintf(p, 32, "%.17g", d);
	return p + n;
}

static void sink_process(task *t, int input, weir_batch *b)
{
	csv_sink *s = t->st;
	const weir_schema *sc = b->schema;
	(void)input;

	for (uint32_t r = 0; r < b->rows; r++) {
		/* Room for the row: numbers take < 32 bytes, strings 2n + 2. */
		size_t need = (size_t)sc->ncols * 32 + 2 + 2 * batch_row_heap(b, r);
		if (OUT_BUF - s->len < need) {
			if (!sink_write(t, s))
				break;
			if (need > OUT_BUF) {
				/* One enormous row: write it through a bigger buffer. */
				char *nb = realloc(s->buf, need);
				if (!nb) {
					task_fail(t, "csv sink '%s': out of memory", t->node->name);
					break;
				}
				s->buf = nb;
			}
		}
		char *p = s->buf + s->len;
		for (int c = 0; c < sc->ncols; c++) {
			if (c)
				*p++ = ',';
			switch (sc->fields[c].type) {
			case WEIR_I64: case WEIR_TS:
				p = fmt_i64(p, weir_col_i64(b, c)[r]);
				break;
			case WEIR_F64:
				p = fmt_f64(p, weir_col_f64(b, c)[r]);
				break;
			case WEIR_BOOL:
				if (weir_col_bool(b, c)[r]) {
					memcpy(p, "true", 4);
					p += 4;
				} else {
					memcpy(p, "false", 5);
					p += 5;
				}
				break;
			case WEIR_STR: {
				uint32_t n;
				const char *v = weir_batch_str(b, c, r, &n);
				p += csv_escape(v, n, p);
				break;
			}
			}
		}
		*p++ = '\n';
		s->len = (size_t)(p - s->buf);
		if (need > OUT_BUF)
			sink_write(t, s);
	}
	batch_release(b);
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
	if (s->own_fd && s->fd >= 0 && close(s->fd) < 0)
		wlog(LOG_ERROR, "csv sink '%s': closing %s: %s", t->node->name, s->what,
		     strerror(errno));
	free(s->buf);
	free(s);
}

const op_ops op_csv_sink = {
	.kind = "csv_sink", .open = sink_open, .process = sink_process,
	.end_input = sink_end_input, .close = sink_close,
};

static void discard_process(task *t, int input, weir_batch *b)
{
	(void)t;
	(void)input;
	batch_release(b);
}

const op_ops op_discard_sink = { .kind = "discard", .process = discard_process };
