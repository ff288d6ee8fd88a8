/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Manifests (manifest.h): the text a checkpoint or savepoint is written as
 * (mf_text, from the store's tasks and cores), its parser and checksum,
 * the atomic write (write, fsync, rename, fsync the directory), the merge
 * of a cluster's workers' parts by the coordinator, and the manifests of a
 * checkpoint directory (listed newest first, loaded, described to a
 * person).  It reads the store's structs (store_internal.h) but calls
 * nothing of the store: checkpoint.c calls this.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store_internal.h"

/* Messages name paths; one cut short is still a useful message. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

/* ---- names and text -------------------------------------------------------------- */

static void enc_name(const char *in, char *out, size_t cap)
{
	size_t o = 0;
	for (; *in && o + 4 < cap; in++) {
		unsigned char ch = (unsigned char)*in;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.' ||
		    ch == '#')
			out[o++] = (char)ch;
		else
			o += (size_t)snprintf(out + o, cap - o, "%%%02X", ch);
	}
	out[o] = 0;
}

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

static bool dec_name(const char *in, char *out, size_t cap)
{
	size_t o = 0;
	for (; *in; in++) {
		if (o + 1 >= cap)
			return false;
		if (*in == '%') {
			int a = hexval(in[1]), b = a < 0 ? -1 : hexval(in[2]);
			if (a < 0 || b < 0)
				return false;
			out[o++] = (char)(a * 16 + b);
			in += 2;
		} else {
			out[o++] = *in;
		}
	}
	out[o] = 0;
	return true;
}

void sb_printf(sbuf *b, const char *fmt, ...)
{
	va_list ap;
	for (;;) {
		size_t room = b->cap - b->len;
		va_start(ap, fmt);
		int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap * 2 : 4096;
		while (cap < b->len + (size_t)n + 1)
			cap *= 2;
		char *q = realloc(b->p, cap);
		if (!q) {
			b->oom = true;
			return;
		}
		b->p = q;
		b->cap = cap;
	}
}

/* ---- writing --------------------------------------------------------------------- */

int mf_text(ckpt_store *s, int64_t id, bool savepoint, sbuf *b)
{
	runtime *rt = s->rt;
	const graph *g = runtime_graph(rt);
	char name[512];

	sb_printf(b, "weir-manifest 1\nkind %s\nid %" PRId64 "\n",
		  savepoint ? "savepoint" : "checkpoint", id);
	enc_name(s->job, name, sizeof(name));
	sb_printf(b, "job %s\ncreated %" PRId64 "\nrun %" PRIu64 "\n", name, wall_ms(), s->run);
	sb_printf(b, "max-parallelism %d\ncores %d\n", s->cfg->max_parallelism, s->ncores);
	for (int n = 0; n < g->nnodes; n++) {
		/* Table names from the operator's first subtask: every
		 * subtask registers the same ones. */
		st_task *k = NULL;
		int par = 0;
		for (int i = 0; i < runtime_ntasks(rt); i++) {
			task *t = runtime_task(rt, i);
			if (t->node->id != n)
				continue;
			par = t->parallelism;
			if (!k && is_local(t))
				k = t->keyed;
		}
		enc_name(s->uids[n], name, sizeof(name));
		sb_printf(b, "op %d %d %s %d", n, par, name, k ? k->n : 0);
		for (int i = 0; k && i < k->n; i++) {
			enc_name(k->regs[i].name, name, sizeof(name));
			sb_printf(b, " %s", name);
		}
		sb_printf(b, "\n");
		if (g->nodes[n]->not_replayable)
			sb_printf(b, "at-least-once %d\n", n);
	}
	for (int i = 0; i < runtime_ntasks(rt); i++) {
		task *t = runtime_task(rt, i);
		st_task *k = t->keyed;
		if (!is_local(t))
			continue; /* in another worker's part */
		/* The task passed barrier id, or ended before it did: then its
		 * final snapshot.  (Not ck_final first: the task may be ending
		 * right now, after it passed id.) */
		bool at_id = t->ck_id == id;
		const snap_buf *snap = at_id ? &t->snap : &t->final_snap;
		slog_pos f = savepoint ? k->sp_from : k->from;
		slog_pos to = savepoint ? k->sp_to : at_id ? k->to : k->final_to;
		if (!savepoint && !s->dir[0])
			f = to = (slog_pos){ 0, 0 };
		sb_printf(b, "task %d %d %d %d %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
			  " %" PRId64 " %zu ", t->node->id, t->subtask, k->core,
			  at_id ? 0 : 1, f.seg, f.off, to.seg, to.off,
			  at_id ? t->ck_watermark : t->final_watermark, snap->len);
		if (!snap->len)
			sb_printf(b, "-");
		for (size_t j = 0; j < snap->len; j++)
			sb_printf(b, "%02x", snap->p[j]);
		sb_printf(b, "\n");
		if (!savepoint && at_id && s->dir[0] && slog_pos_cmp(k->tail, to) > 0)
			sb_printf(b, "tail %d %d %" PRIu64 " %" PRIu64 "\n", t->node->id,
				  t->subtask, k->tail.seg, k->tail.off);
		for (int j = 0; !savepoint && s->dir[0] && j < k->nbase; j++) {
			const mf_range *r = &k->base[j];
			sb_printf(b, "base %d %d %" PRIu64 " %d %" PRIu64 " %" PRIu64 " %" PRIu64
				  " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", t->node->id, t->subtask,
				  r->run, r->core, r->from_seg, r->from_off, r->to_seg, r->to_off,
				  r->tail_seg, r->tail_off);
		}
	}
	for (int c = 0; !savepoint && s->dir[0] && c < s->ncores; c++) {
		core_st *cs = &s->cores[c];
		if (cs->inf_id == id && cs->inf_to.off)
			sb_printf(b, "inflight %d %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
				  c, cs->inf_from.seg, cs->inf_from.off, cs->inf_to.seg,
				  cs->inf_to.off);
	}
	if (b->oom)
		return -ENOMEM;
	sb_printf(b, "crc %08x\n", crc32c(0, b->p, b->len));
	return b->oom ? -ENOMEM : 0;
}

int st_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) ? -errno : 0;
	close(fd);
	return rc;
}

int mf_write_atomic(const char *dir, const char *name, const void *p,
		    size_t n, char *err, size_t errlen)
{
	char tmp[4200], path[4200];
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", tmp, strerror(e));
		return -e;
	}
	const char *q = p;
	size_t left = n;
	while (left) {
		ssize_t w = write(fd, q, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = w < 0 ? errno : EIO;
			close(fd);
			unlink(tmp);
			snprintf(err, errlen, "%s: %s", tmp, strerror(e));
			return -e;
		}
		q += w;
		left -= (size_t)w;
	}
	if (fsync(fd)) {
		int e = errno;
		close(fd);
		unlink(tmp);
		snprintf(err, errlen, "fsync %s: %s", tmp, strerror(e));
		return -e;
	}
	close(fd);
	if (rename(tmp, path)) {
		int e = errno;
		unlink(tmp);
		snprintf(err, errlen, "rename %s: %s", path, strerror(e));
		return -e;
	}
	return st_fsync_dir(dir);
}

/* ---- parsing --------------------------------------------------------------------- */

static void mf_free_ops(manifest *m)
{
	free(m->ops);
	free(m->at_least_once);
	for (int i = 0; i < m->ntasks; i++) {
		free(m->tasks[i].blob);
		free(m->tasks[i].base);
	}
	free(m->tasks);
	free(m->inflight);
}

void manifest_free(manifest *m)
{
	mf_free_ops(m);
	memset(m, 0, sizeof(*m));
}

/* Split line into space-separated words (in place); returns the count. */
static int words(char *line, char **w, int max)
{
	int n = 0;
	char *save = NULL;
	for (char *t = strtok_r(line, " ", &save); t && n < max; t = strtok_r(NULL, " ", &save))
		w[n++] = t;
	return n;
}

static bool num(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || !*s || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

static bool unum(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	if (*s == '-' || !*s)
		return false;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

int manifest_parse(const char *text, size_t len, manifest *m, char *err,
		   size_t errlen)
{
	memset(m, 0, sizeof(*m));
	/* The last line is the checksum of everything before it. */
	if (len < 2 || text[len - 1] != '\n') {
		snprintf(err, errlen, "truncated (no final line)");
		return -EINVAL;
	}
	size_t last = len - 1;
	while (last > 0 && text[last - 1] != '\n')
		last--;
	char crcline[64];
	size_t cl = len - last;
	if (cl >= sizeof(crcline) || cl < 5 || strncmp(text + last, "crc ", 4)) {
		snprintf(err, errlen, "truncated: the last line is not the checksum");
		return -EINVAL;
	}
	memcpy(crcline, text + last, cl);
	crcline[cl - 1] = 0;
	char *end;
	unsigned long want = strtoul(crcline + 4, &end, 16);
	if (*end || strlen(crcline + 4) != 8) {
		snprintf(err, errlen, "malformed checksum line");
		return -EINVAL;
	}
	uint32_t got = crc32c(0, text, last);
	if (got != (uint32_t)want) {
		snprintf(err, errlen, "checksum mismatch (file says %08lx, content is %08x)",
			 want, got);
		return -EINVAL;
	}
	char *copy = malloc(last + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, text, last);
	copy[last] = 0;
	int lineno = 0, rc = -EINVAL, cap_tasks = 0;
	char *save = NULL;
	m->version = -1;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *w[8 + ST_MAX_TABLES] = { "" };
		int64_t v[12];
		uint64_t u[4];
		lineno++;
		int n = words(line, w, (int)ARRAY_SIZE(w));
		if (n == 0)
			goto bad;
		if (lineno == 1) {
			if (n != 2 || strcmp(w[0], "weir-manifest") || !num(w[1], 1, 1, v)) {
				snprintf(err, errlen, "line 1: not a weir manifest of version 1");
				goto out;
			}
			m->version = 1;
		} else if (!strcmp(w[0], "kind") && n == 2) {
			if (!strcmp(w[1], "savepoint"))
				m->savepoint = true;
			else if (strcmp(w[1], "checkpoint"))
				goto bad;
		} else if (!strcmp(w[0], "id") && n == 2) {
			if (!num(w[1], 1, INT64_MAX - 1, &m->id))
				goto bad;
		} else if (!strcmp(w[0], "job") && n == 2) {
			if (!dec_name(w[1], m->job, sizeof(m->job)))
				goto bad;
		} else if (!strcmp(w[0], "created") && n == 2) {
			if (!num(w[1], 0, INT64_MAX, &m->created_ms))
				goto bad;
		} else if (!strcmp(w[0], "run") && n == 2) {
			if (!unum(w[1], &m->run))
				goto bad;
		} else if (!strcmp(w[0], "max-parallelism") && n == 2) {
			if (!num(w[1], 1, 32768, v))
				goto bad;
			m->max_parallelism = (int)v[0];
		} else if (!strcmp(w[0], "cores") && n == 2) {
			if (!num(w[1], 1, 4096, v))
				goto bad;
			m->ncores = (int)v[0];
		} else if (!strcmp(w[0], "op") && n >= 5) {
			if (!num(w[1], m->nops, m->nops, v) || !num(w[2], 0, 32768, v + 1) ||
			    !num(w[4], 0, ST_MAX_TABLES, v + 2) || n != 5 + v[2] || m->nops >= 65535)
				goto bad;
			mf_op *ops = realloc(m->ops, (size_t)(m->nops + 1) * sizeof(*ops));
			bool *al = realloc(m->at_least_once, (size_t)(m->nops + 1));
			if (ops)
				m->ops = ops;
			if (al)
				m->at_least_once = al;
			if (!ops || !al) {
				rc = -ENOMEM;
				goto out;
			}
			mf_op *o = &m->ops[m->nops];
			memset(o, 0, sizeof(*o));
			m->at_least_once[m->nops] = false;
			o->parallelism = (int)v[1];
			o->ntables = (int)v[2];
			if (!dec_name(w[3], o->uid, sizeof(o->uid)))
				goto bad;
			for (int i = 0; i < o->ntables; i++)
				if (!dec_name(w[5 + i], o->tables[i], sizeof(o->tables[i])))
					goto bad;
			m->nops++;
		} else if (!strcmp(w[0], "at-least-once") && n == 2) {
			if (!num(w[1], 0, m->nops - 1, v))
				goto bad;
			m->at_least_once[v[0]] = true;
		} else if (!strcmp(w[0], "inflight") && n == 6) {
			mf_inflight f;
			if (!num(w[1], 0, 4095, v) || !unum(w[2], u) || !unum(w[3], u + 1) ||
			    !unum(w[4], u + 2) || !unum(w[5], u + 3) || u[1] < SLOG_PAGE ||
			    u[3] < SLOG_PAGE)
				goto bad;
			f = (mf_inflight){ (int)v[0], u[0], u[1], u[2], u[3] };
			mf_inflight *ni = realloc(m->inflight, (size_t)(m->ninflight + 1) * sizeof(*ni));
			if (!ni) {
				rc = -ENOMEM;
				goto out;
			}
			m->inflight = ni;
			m->inflight[m->ninflight++] = f;
		} else if (!strcmp(w[0], "tail") && n == 5) {
			/* the task line before it: where its SNAP entries end */
			mf_task *tk = m->ntasks ? &m->tasks[m->ntasks - 1] : NULL;
			if (!tk || !num(w[1], 0, m->nops - 1, v) || !num(w[2], 0, 32767, v + 1) ||
			    !unum(w[3], u) || !unum(w[4], u + 1) || v[0] != tk->op ||
			    v[1] != tk->sub || tk->tail_off ||
			    slog_pos_cmp((slog_pos){ u[0], u[1] },
					 (slog_pos){ tk->to_seg, tk->to_off }) <= 0)
				goto bad;
			tk->tail_seg = u[0];
			tk->tail_off = u[1];
		} else if (!strcmp(w[0], "base") && n == 11) {
			/* the task line before it: a range of an earlier run */
			mf_task *tk = m->ntasks ? &m->tasks[m->ntasks - 1] : NULL;
			uint64_t b[7];
			bool okb = tk && num(w[1], 0, m->nops - 1, v) && num(w[2], 0, 32767, v + 1) &&
				   v[0] == tk->op && v[1] == tk->sub && tk->nbase < 1024 &&
				   num(w[4], 0, 4095, v + 2);
			for (int i = 0; okb && i < 7; i++)
				okb = unum(w[i ? 4 + i : 3], b + i);
			/* runs strictly older than this one's, oldest first; a
			 * range that ends after it starts */
			okb = okb && b[0] >= 1 && b[0] < m->run &&
			      (!tk->nbase || b[0] > tk->base[tk->nbase - 1].run) &&
			      slog_pos_cmp((slog_pos){ b[3], b[4] }, (slog_pos){ b[1], b[2] }) >= 0 &&
			      (!b[6] || slog_pos_cmp((slog_pos){ b[5], b[6] }, (slog_pos){ b[3], b[4] }) > 0);
			if (!okb)
				goto bad;
			mf_range *nb = realloc(tk->base, (size_t)(tk->nbase + 1) * sizeof(*nb));
			if (!nb) {
				rc = -ENOMEM;
				goto out;
			}
			tk->base = nb;
			tk->base[tk->nbase++] = (mf_range){ b[0], (int)v[2], b[1], b[2], b[3], b[4],
							    b[5], b[6] };
		} else if (!strcmp(w[0], "task") && n == 12) {
			mf_task tk = { 0 };
			if (!num(w[1], 0, m->nops - 1, v) || !num(w[2], 0, 32767, v + 1) ||
			    !num(w[3], 0, 4095, v + 2) || !num(w[4], 0, 1, v + 3) ||
			    !unum(w[5], u) || !unum(w[6], u + 1) || !unum(w[7], u + 2) ||
			    !unum(w[8], u + 3) || !num(w[9], INT64_MIN, INT64_MAX, v + 4) ||
			    !num(w[10], 0, 1 << 30, v + 5))
				goto bad;
			tk.op = (int)v[0];
			tk.sub = (int)v[1];
			tk.core = (int)v[2];
			tk.final = v[3] != 0;
			tk.from_seg = u[0];
			tk.from_off = u[1];
			tk.to_seg = u[2];
			tk.to_off = u[3];
			tk.watermark = v[4];
			tk.blob_len = (size_t)v[5];
			if (tk.sub >= m->ops[tk.op].parallelism)
				goto bad;
			if (tk.blob_len) {
				if (strlen(w[11]) != 2 * tk.blob_len)
					goto bad;
				tk.blob = malloc(tk.blob_len);
				if (!tk.blob) {
					rc = -ENOMEM;
					goto out;
				}
				for (size_t i = 0; i < tk.blob_len; i++) {
					int a = hexval(w[11][2 * i]), b = hexval(w[11][2 * i + 1]);
					if (a < 0 || b < 0) {
						free(tk.blob);
						goto bad;
					}
					tk.blob[i] = (uint8_t)(a * 16 + b);
				}
			} else if (strcmp(w[11], "-")) {
				goto bad;
			}
			if (m->ntasks == cap_tasks) {
				cap_tasks = cap_tasks ? cap_tasks * 2 : 16;
				mf_task *nt = realloc(m->tasks, (size_t)cap_tasks * sizeof(*nt));
				if (!nt) {
					free(tk.blob);
					rc = -ENOMEM;
					goto out;
				}
				m->tasks = nt;
			}
			m->tasks[m->ntasks++] = tk;
		} else {
			goto bad;
		}
		continue;
bad:
		snprintf(err, errlen, "line %d: malformed '%s' record", lineno, w[0]);
		goto out;
	}
	if (m->version != 1 || !m->id || !m->max_parallelism || !m->ncores) {
		snprintf(err, errlen, "incomplete (missing version, id, max-parallelism or cores)");
		goto out;
	}
	for (int i = 0; i < m->ntasks; i++)
		if (m->tasks[i].core >= m->ncores || (m->savepoint && m->tasks[i].nbase)) {
			snprintf(err, errlen, m->tasks[i].nbase && m->savepoint
				 ? "a savepoint with base ranges (it must be self-contained)"
				 : "task on core %d of %d", m->tasks[i].core, m->ncores);
			goto out;
		}
	for (int i = 0; i < m->ninflight; i++)
		if (m->inflight[i].core >= m->ncores || m->savepoint) {
			snprintf(err, errlen, "in-flight data on core %d of %d%s",
				 m->inflight[i].core, m->ncores,
				 m->savepoint ? " in a savepoint" : "");
			goto out;
		}
	rc = 0;
out:
	free(copy);
	return rc;
}

static int read_file(const char *path, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) || st.st_size > (64 << 20)) {
		close(fd);
		return -EFBIG;
	}
	char *p = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (p && got < (size_t)st.st_size) {
		ssize_t r = read(fd, p + got, (size_t)st.st_size - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (!p)
		return -ENOMEM;
	p[got] = 0;
	*out = p;
	*len = got;
	return 0;
}

/* ---- a cluster's parts ----------------------------------------------------------- */

/* Line i of a text as [*p, *p + *n); false past the end. */
static bool next_line(const char **cur, const char *end, const char **p, size_t *n)
{
	if (*cur >= end)
		return false;
	const char *nl = memchr(*cur, '\n', (size_t)(end - *cur));
	*p = *cur;
	*n = (size_t)((nl ? nl : end) - *cur);
	*cur = nl ? nl + 1 : end;
	return true;
}

static bool starts(const char *p, size_t n, const char *w)
{
	size_t k = strlen(w);
	return n >= k && !memcmp(p, w, k);
}

int weir_manifest_merge_write(const char *dir, const char *name, const char *const *parts,
			 int nparts, char *err, size_t errlen)
{
	sbuf b = { 0 };
	int nops = 0, rc;
	/* per op index: the line with the most table names (a worker that
	 * runs no subtask of an operator names none of its tables) */
	const char **opl = NULL;
	size_t *opn = NULL;
	int *opt = NULL;

	if (nparts < 1) {
		snprintf(err, errlen, "no parts");
		return -EINVAL;
	}
	for (int k = 0; k < nparts; k++) {
		const char *cur = parts[k], *end = cur + strlen(cur), *p;
		size_t n;
		while (next_line(&cur, end, &p, &n)) {
			int idx, par, nt;
			char uid[512];
			if (!starts(p, n, "op ") || n > 4000)
				continue;
			char line[4096];
			memcpy(line, p, n);
			line[n] = 0;
			if (sscanf(line, "op %d %d %511s %d", &idx, &par, uid, &nt) != 4 ||
			    idx < 0 || idx > 65535)
				continue;
			if (idx >= nops) {
				int nn = idx + 1;
				const char **a = realloc(opl, (size_t)nn * sizeof(*a));
				size_t *bn = a ? realloc(opn, (size_t)nn * sizeof(*bn)) : NULL;
				int *c = bn ? realloc(opt, (size_t)nn * sizeof(*c)) : NULL;
				if (a)
					opl = a;
				if (bn)
					opn = bn;
				if (!c) {
					rc = -ENOMEM;
					goto out;
				}
				opt = c;
				for (int i = nops; i < nn; i++) {
					opl[i] = NULL;
					opn[i] = 0;
					opt[i] = -1;
				}
				nops = nn;
			}
			if (nt > opt[idx]) {
				opl[idx] = p;
				opn[idx] = n;
				opt[idx] = nt;
			}
		}
	}
	/* Header from the first part, then the operators, then every part's
	 * other lines (tasks, at-least-once, in-flight ranges). */
	const char *cur = parts[0], *end = cur + strlen(cur), *p;
	size_t n;
	while (next_line(&cur, end, &p, &n) && !starts(p, n, "op "))
		sb_printf(&b, "%.*s\n", (int)n, p);
	for (int i = 0; i < nops; i++)
		if (opl[i])
			sb_printf(&b, "%.*s\n", (int)opn[i], opl[i]);
	for (int k = 0; k < nparts; k++) {
		bool header = true;
		cur = parts[k];
		end = cur + strlen(cur);
		while (next_line(&cur, end, &p, &n)) {
			if (starts(p, n, "op "))
				header = false;
			if (header || starts(p, n, "op ") || starts(p, n, "crc ") || !n)
				continue;
			sb_printf(&b, "%.*s\n", (int)n, p);
		}
	}
	if (b.oom) {
		rc = -ENOMEM;
		goto out;
	}
	sb_printf(&b, "crc %08x\n", crc32c(0, b.p, b.len));
	if (b.oom) {
		rc = -ENOMEM;
		goto out;
	}
	/* What we write must read back. */
	manifest m;
	rc = manifest_parse(b.p, b.len, &m, err, errlen);
	manifest_free(&m);
	if (rc == 0)
		rc = mf_write_atomic(dir, name, b.p, b.len, err, errlen);
out:
	free(b.p);
	free(opl);
	free(opn);
	free(opt);
	return rc;
}

/* ---- the manifests of a checkpoint directory ------------------------------------- */

static int cmp_desc(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x > y ? -1 : x < y;
}

int64_t *mf_list(const char *dir, int *n)
{
	DIR *d = opendir(dir);
	int64_t *ids = NULL;
	int cap = 0;
	*n = 0;
	if (!d)
		return NULL;
	struct dirent *e;
	while ((e = readdir(d))) {
		long long id;
		char tail[16];
		if (sscanf(e->d_name, "chk-%lld.manifes%1s", &id, tail) != 2 ||
		    strcmp(tail, "t") || id <= 0)
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			int64_t *q = realloc(ids, (size_t)cap * sizeof(*q));
			if (!q)
				break;
			ids = q;
		}
		ids[(*n)++] = id;
	}
	closedir(d);
	if (ids)
		qsort(ids, (size_t)*n, sizeof(*ids), cmp_desc);
	return ids;
}

uint64_t mf_max_run(const char *dir)
{
	DIR *d = opendir(dir);
	uint64_t r = 0;
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		unsigned long long x;
		if (sscanf(e->d_name, "run-%llu", &x) == 1 && x > r)
			r = x;
	}
	closedir(d);
	return r;
}

int mf_load(const char *path, manifest *m, char *err, size_t errlen)
{
	*m = (manifest){ 0 }; /* manifest_free works whatever happens */
	char *text = NULL;
	size_t len = 0;
	int rc = read_file(path, &text, &len);
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	char why[512];
	rc = manifest_parse(text, len, m, why, sizeof(why));
	free(text);
	if (rc < 0)
		snprintf(err, errlen, "%s: %s", path, why);
	return rc;
}

void mf_describe(const manifest *m, const char *where, char *out, size_t len)
{
	time_t secs = (time_t)(m->created_ms / 1000);
	struct tm tm;
	char when[64];
	localtime_r(&secs, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	int par = 0;
	for (int i = 0; i < m->nops; i++)
		if (m->ops[i].parallelism > par)
			par = m->ops[i].parallelism;
	snprintf(out, len, "%s %lld (%s, taken %s, parallelism of its operators up to %d)",
		 m->savepoint ? "savepoint" : "checkpoint", (long long)m->id, where, when,
		 par);
}
