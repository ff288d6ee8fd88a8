/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Timestamp assignment and watermark generation (weir_assign_watermarks),
 * chained to a source so that each source subtask has its own generator.
 *
 * Per record, in input order, the generator keeps the watermark W that the
 * records so far imply: BOUNDED max(ts) - out_of_orderness - 1, MONOTONIC
 * max(ts) - 1, PUNCTUATED the largest punctuation cell seen.  It sends W
 *
 *   - after every input batch (so at least once per batch), and
 *   - just before a record with ts <= W, if W has not been sent yet.
 *
 * The second rule is what makes event-time results independent of batch
 * size, parallelism and speed: a record that is late with respect to the
 * records before it meets, at every downstream operator, exactly the
 * watermark that preceded it in the input, as if watermarks were sent after
 * every record.  Records with ts > W cannot be late for any window or timer
 * at or below W, so for them a watermark that lags behind W within the
 * batch changes nothing.  (Splitting the batch there costs a copy; it only
 * happens at late records.)
 *
 * Idleness: with idle_timeout_ms > 0, a processing-time timer marks the
 * output idle after that long without records; the next record marks it
 * active again before it is sent.  Watermarks from upstream are not
 * forwarded: this operator is the origin of event time.
 *
 * Checkpoints.  The generator's clock is operator state (snapshot):
 *
 *   [u8 version = 1][i64 max_ts][i64 W][i64 last watermark sent]
 *
 * Restored at the same parallelism, a subtask takes its own blob, so it
 * continues exactly where it was: the records replayed after the
 * checkpoint meet the same W, the same watermarks are sent before the same
 * late records, and the same records are late as in an uninterrupted run.
 * The last watermark sent is sent again before the first record after the
 * restore (the uninterrupted run had sent it before all of them), so
 * downstream event time resumes from where it was at the barrier.
 *
 * Rescaled, a subtask cannot know which old subtasks' records it will see
 * (after a source's splits move, or behind a rebalance), so it takes the
 * MINIMUM of every field over all old subtasks.  That is conservative: no
 * restored generator is ahead of any old one, so none sends, before a
 * record, a watermark above the one that record met in the uninterrupted
 * run -- a record accepted then is not made late by the restore.  The
 * maximum would be wrong: a subtask taking over a slow subtask's split
 * would judge that split's records by the fast one's clock.  The price is
 * that records the uninterrupted run judged late at the generator may be
 * accepted (its watermark restarts lower); operators downstream still
 * judge them against their own restored event time.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

typedef struct wm_conf {
	weir_watermark_kind kind;
	int ts_col;       /* -1: keep b->ts */
	int punct_col;    /* PUNCTUATED */
	int64_t ooo;      /* out-of-orderness + 1 (the watermark lag) */
	int64_t idle_ms;
} wm_conf;

typedef struct wm_state {
	int64_t max_ts;
	int64_t wm;       /* implied by the records so far */
	uint64_t last_record_ns;
	int64_t resume_wm; /* restored: send before the first record */
} wm_state;

static int wm_open(task *t)
{
	wm_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->max_ts = INT64_MIN;
	s->wm = INT64_MIN;
	s->resume_wm = INT64_MIN;
	t->st = s;
	return 0;
}

static void wm_close(task *t)
{
	free(t->st);
	t->st = NULL;
}

/* Send rows [from, to) of b; b itself when that is all of it. */
static void emit_range(task *t, weir_batch *b, uint32_t from, uint32_t to)
{
	if (from == 0 && to == b->rows) {
		task_emit(t, 0, b); /* takes ownership of b */
		return;
	}
	if (to > from)
		task_emit(t, 0, batch_slice_copy(b, from, to - from));
}

static void wm_process(task *t, int input, weir_batch *b)
{
	const wm_conf *c = t->node->conf;
	wm_state *s = t->st;
	uint32_t n = b->rows, from = 0;
	(void)input;

	if (c->idle_ms > 0) {
		s->last_record_ns = now_ns();
		if (!t->timer_at)
			task_set_timer(t, s->last_record_ns + (uint64_t)c->idle_ms * 1000000u);
	}
	if (t->idle)
		task_emit_idle(t, false);
	if (unlikely(s->resume_wm > INT64_MIN)) {
		task_emit_watermark(t, s->resume_wm);
		s->resume_wm = INT64_MIN;
	}
	if (c->ts_col >= 0) {
		if (!batch_exclusive(b)) {
			weir_batch *copy = batch_slice_copy(b, 0, n);
			batch_release(b);
			b = copy;
		}
		memcpy(b->ts, b->cols[c->ts_col], n * sizeof(int64_t));
	}
	const int64_t *ts = b->ts;
	const int64_t *punct = c->punct_col >= 0 ? weir_col_i64(b, c->punct_col) : NULL;
	for (uint32_t r = 0; r < n; r++) {
		if (unlikely(ts[r] <= s->wm && t->out_watermark < s->wm)) {
			emit_range(t, b, from, r);
			task_emit_watermark(t, s->wm);
			from = r;
		}
		if (punct) {
			if (punct[r] > s->wm)
				s->wm = punct[r];
		} else if (ts[r] > s->max_ts) {
			s->max_ts = ts[r];
			/* saturating: ts near INT64_MIN must not wrap */
			s->wm = s->max_ts < INT64_MIN + c->ooo ? INT64_MIN : s->max_ts - c->ooo;
		}
	}
	if (from == 0)
		emit_range(t, b, 0, n);
	else {
		emit_range(t, b, from, n);
		batch_release(b);
	}
	if (s->wm > t->out_watermark)
		task_emit_watermark(t, s->wm);
}

static void wm_timer(task *t)
{
	const wm_conf *c = t->node->conf;
	wm_state *s = t->st;
	uint64_t now = now_ns(), idle_at = s->last_record_ns + (uint64_t)c->idle_ms * 1000000u;

	if (now >= idle_at)
		task_emit_idle(t, true);
	else
		task_set_timer(t, idle_at);
}

static int wm_source_open(task *t)
{
	int r = wm_open(t);
	const wm_conf *c = t->node->conf;
	/* A subtask that never sees a record still goes idle. */
	if (r == 0 && c->idle_ms > 0) {
		wm_state *s = t->st;
		s->last_record_ns = now_ns();
		task_set_timer(t, s->last_record_ns + (uint64_t)c->idle_ms * 1000000u);
	}
	return r;
}

#define WM_SNAP_VERSION 1

static int wm_snapshot(task *t, int64_t id, snap_buf *out)
{
	const wm_state *s = t->st;
	uint8_t version = WM_SNAP_VERSION;
	/* a restored clock not yet resumed is still the last one sent */
	int64_t sent = s->resume_wm > t->out_watermark ? s->resume_wm : t->out_watermark;
	int rc = snap_put(out, &version, 1);
	(void)id;
	if (!rc)
		rc = snap_put_u64(out, (uint64_t)s->max_ts);
	if (!rc)
		rc = snap_put_u64(out, (uint64_t)s->wm);
	if (!rc)
		rc = snap_put_u64(out, (uint64_t)sent);
	return rc;
}

/* Same parallelism: the subtask's own clock; rescaled: the minimum over
 * all old subtasks (see Checkpoints at the top). */
static int wm_restore(task *t, const op_restore *r)
{
	wm_state *s = t->st;
	bool rescaled = r->old_parallelism != t->parallelism, any = false;
	int64_t v[3] = { INT64_MAX, INT64_MAX, INT64_MAX };

	for (int i = 0; i < r->n; i++) {
		const op_blob *b = &r->blobs[i];
		snap_rd rd = { .p = b->p, .len = b->len };
		int64_t x[3];
		if ((!rescaled && b->subtask != t->subtask) || !b->len)
			continue; /* not ours, or written without this state */
		const uint8_t *version = snap_get(&rd, 1);
		for (int k = 0; k < 3; k++)
			x[k] = (int64_t)snap_get_u64(&rd);
		if (rd.err || *version != WM_SNAP_VERSION || rd.off != rd.len)
			return -EINVAL;
		for (int k = 0; k < 3; k++)
			if (x[k] < v[k])
				v[k] = x[k];
		any = true;
	}
	if (any) {
		s->max_ts = v[0];
		s->wm = v[1];
		s->resume_wm = v[2];
	}
	return 0;
}

const op_ops op_watermarks = {
	.kind = "watermarks", .own_watermarks = true, .open = wm_source_open,
	.process = wm_process, .timer = wm_timer, .snapshot = wm_snapshot,
	.restore = wm_restore, .close = wm_close,
};

static int time_col(weir_env *env, const weir_schema *s, const char *col,
		    const char *what)
{
	int k = weir_schema_find(s, col);
	if (k < 0) {
		env_error(env, "assign_watermarks: no %s column '%s'", what, col);
		return -1;
	}
	if (s->fields[k].type != WEIR_I64 && s->fields[k].type != WEIR_TS) {
		env_error(env, "assign_watermarks: %s column '%s' is %s, not i64 or ts",
			  what, col, type_name(s->fields[k].type));
		return -1;
	}
	return k;
}

weir_stream *weir_assign_watermarks(weir_stream *in, const char *name,
				    const weir_watermark_strategy *ws)
{
	wm_conf *c;
	weir_env *env;
	const weir_schema *s;

	if (!in)
		return NULL;
	env = stream_env(in);
	s = weir_stream_schema(in);
	if (!ws) {
		env_error(env, "assign_watermarks: no strategy");
		return NULL;
	}
	if (ws->kind != WEIR_WM_BOUNDED && ws->kind != WEIR_WM_MONOTONIC &&
	    ws->kind != WEIR_WM_PUNCTUATED) {
		env_error(env, "assign_watermarks: unknown strategy kind %d", (int)ws->kind);
		return NULL;
	}
	if (ws->out_of_orderness_ms < 0 || ws->out_of_orderness_ms > INT64_MAX / 4 ||
	    ws->idle_timeout_ms < 0 || ws->idle_timeout_ms > INT64_MAX / 2000000) {
		env_error(env, "assign_watermarks: out-of-orderness and idle timeout must be "
			  ">= 0 ms (got %lld and %lld)", (long long)ws->out_of_orderness_ms,
			  (long long)ws->idle_timeout_ms);
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		env_error(env, "out of memory");
		return NULL;
	}
	c->kind = ws->kind;
	c->ts_col = -1;
	c->punct_col = -1;
	c->ooo = (ws->kind == WEIR_WM_BOUNDED ? ws->out_of_orderness_ms : 0) + 1;
	c->idle_ms = ws->idle_timeout_ms;
	if (ws->ts_column && (c->ts_col = time_col(env, s, ws->ts_column, "time")) < 0) {
		free(c);
		return NULL;
	}
	/* A source with splits of its own (Kafka partitions) makes the
	 * watermarks per split, as Flink's sources do. */
	lnode *origin = stream_node(in);
	if (ws->kind != WEIR_WM_PUNCTUATED && stream_port_of(in) == 0 &&
	    origin->ops->adopt_watermarks &&
	    origin->ops->adopt_watermarks(origin, c->ts_col, c->ooo, c->idle_ms) == 0) {
		free(c);
		return in;
	}
	if (ws->kind == WEIR_WM_PUNCTUATED) {
		if (!ws->punctuation_column) {
			env_error(env, "assign_watermarks: punctuated strategy without a "
				  "punctuation column");
			free(c);
			return NULL;
		}
		if ((c->punct_col = time_col(env, s, ws->punctuation_column,
					     "punctuation")) < 0) {
			free(c);
			return NULL;
		}
	}
	/* One generator per input subtask: same parallelism, so it chains. */
	weir_stream *out = stream_add_op(&in, 1, name, "watermarks", &op_watermarks,
					 s, c, NULL);
	if (out) {
		lnode *n = stream_node(out);
		n->parallelism = origin->parallelism;
		n->max_parallelism_1 = origin->max_parallelism_1;
	}
	return out;
}
