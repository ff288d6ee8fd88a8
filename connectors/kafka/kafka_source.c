/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kafka source (weir_source_kafka): messages of one or more topics as
 * rows, exactly once through checkpoints.
 *
 * Partitions.  The source splits them itself, as Flink's KafkaSource does
 * (no consumer-group rebalancing in the data path): partition p of the
 * k-th topic belongs to subtask (k + p) % parallelism, assigned with
 * rd_kafka_assign() at an explicit offset.  open() (main thread) asks the
 * cluster for the topics' partitions -- a broker that does not answer
 * within 10 s, or a topic that does not exist, fails the job with its name
 * -- and resolves where each partition starts: earliest, latest, the
 * group's committed offset or the first at a timestamp, always as a
 * concrete offset, so a checkpoint taken before the first message records
 * where reading began.  A bounded source also records each partition's
 * high watermark then as its end: it stops there, so a topic can be a
 * batch input.  Partitions added to a topic while the job runs are not
 * discovered yet (restart the job to read them; a restore starts them at
 * their earliest offset).
 *
 * Reading.  produce() takes what librdkafka has fetched with
 * rd_kafka_consume_batch_queue() without waiting; when there is nothing it
 * asks to be woken by a pipe that librdkafka writes when the queue becomes
 * non-empty (rd_kafka_queue_io_event_enable) or after 100 ms (idleness).
 * Messages are read with isolation.level=read_committed.  A CSV value is
 * one record (a trailing newline is allowed); a value that does not decode
 * goes to the dead-letter port with its topic, partition and offset.  No
 * malloc per record here: librdkafka allocates its messages itself.
 *
 * Event time: a column, or the message's timestamp.  With per-partition
 * watermarks each partition keeps max(ts) - lag; the subtask's watermark
 * is the minimum over partitions that are neither idle (silent for the
 * idle timeout) nor finished; with every partition idle the output is
 * marked idle.
 *
 * Snapshot blob (little-endian):
 *
 *   [u8 version = 1][u32 n] n x { [u32 len][topic bytes][i32 partition]
 *                                 [i64 next offset][i64 end offset] }
 *
 * end is INT64_MAX for an unbounded source.  A restore, at any
 * parallelism, scans the blobs of all old subtasks and takes the
 * partitions it now owns; the group's offsets are committed from the
 * snapshot of a checkpoint when it completes (monitoring only).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka.h"

#define BLOB_VERSION 1
#define CONSUME_MAX 512
#define CONNECT_WAIT_MS 10000
#define POLL_IDLE_NS (100ull * 1000000)

typedef struct kpart {
	int topic;          /* index into conf->topics */
	int32_t partition;
	int64_t next;       /* offset of the next message to emit */
	int64_t end;        /* bounded: stop before it; INT64_MAX: never */
	int64_t max_ts;     /* per-partition watermarks */
	uint64_t last_ns;   /* last message (idleness) */
	bool idle, done;
} kpart;

typedef struct ksrc {
	const kafka_source_conf *c;
	rd_kafka_t *rk;
	rd_kafka_queue_t *q;
	int wake[2];
	kpart *parts;
	int nparts;
	kpart *last;        /* part_find's last answer */
	bool assigned;
	bool all_done;
	char *scratch;
	size_t scratch_cap;
	csv_field fields[WEIR_MAX_COLS + 1];
	rate_gate gate;     /* weir_source_set_rate */
	int64_t wm_sent;
	bool idle_sent;
	uint64_t dead;
	uint64_t errors_logged;
	/* the group's offsets as of the last snapshot, committed with it */
	rd_kafka_topic_partition_list_t *ck_offsets;
	int64_t ck_id;
} ksrc;

static kpart *part_find(ksrc *s, const char *topic, int32_t partition)
{
	/* messages come in runs of one partition: try the last one first */
	kpart *l = s->last;
	if (l && l->partition == partition && !strcmp(s->c->topics[l->topic], topic))
		return l;
	for (int i = 0; i < s->nparts; i++) {
		kpart *p = &s->parts[i];
		if (p->partition == partition && !strcmp(s->c->topics[p->topic], topic))
			return s->last = p;
	}
	return NULL;
}

/* ---- open: partitions and where they start ----------------------------------------- */

/* Resolve the start offset (and, bounded, the end) of every partition. */
static int resolve_offsets(task *t, ksrc *s)
{
	const kafka_source_conf *c = s->c;
	char err[512];

	for (int i = 0; i < s->nparts; i++) {
		kpart *p = &s->parts[i];
		const char *topic = c->topics[p->topic];
		int64_t lo = 0, hi = 0;
		rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(s->rk, topic, p->partition,
									 &lo, &hi, CONNECT_WAIT_MS);
		if (e) {
			snprintf(err, sizeof(err), "%s", rd_kafka_err2str(e));
			task_fail(t, "kafka source '%s': offsets of %s [%d] at %s: %s",
				  t->node->name, topic, p->partition, c->brokers, err);
			return -EIO;
		}
		p->end = c->bounded ? hi : INT64_MAX;
		p->next = c->start == WEIR_KAFKA_LATEST ? hi : lo;
	}
	if (c->start == WEIR_KAFKA_GROUP || c->start == WEIR_KAFKA_TIMESTAMP) {
		rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(s->nparts);
		for (int i = 0; i < s->nparts; i++) {
			rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(
				l, c->topics[s->parts[i].topic], s->parts[i].partition);
			tp->offset = c->start_ts_ms;
		}
		rd_kafka_resp_err_t e = c->start == WEIR_KAFKA_GROUP
					? rd_kafka_committed(s->rk, l, CONNECT_WAIT_MS)
					: rd_kafka_offsets_for_times(s->rk, l, CONNECT_WAIT_MS);
		for (int i = 0; !e && i < l->cnt; i++) {
			kpart *p = part_find(s, l->elems[i].topic, l->elems[i].partition);
			/* no committed offset, or no message at/after the time:
			 * earliest and the end respectively */
			if (p && l->elems[i].offset >= 0)
				p->next = l->elems[i].offset;
			else if (p && c->start == WEIR_KAFKA_TIMESTAMP)
				p->next = p->end != INT64_MAX ? p->end : p->next;
		}
		rd_kafka_topic_partition_list_destroy(l);
		if (e) {
			task_fail(t, "kafka source '%s': %s offsets at %s: %s", t->node->name,
				  c->start == WEIR_KAFKA_GROUP ? "the group's" : "timestamp",
				  c->brokers, rd_kafka_err2str(e));
			return -EIO;
		}
	}
	return 0;
}

static int ksrc_open(task *t)
{
	const kafka_source_conf *c = t->node->conf;
	char err[512], group[300];
	ksrc *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	t->st = s;
	s->c = c;
	s->wake[0] = s->wake[1] = -1;
	s->wm_sent = INT64_MIN;
	rate_gate_init(&s->gate, t->node->rate, t->parallelism);
	if (pipe2(s->wake, O_NONBLOCK | O_CLOEXEC) < 0)
		return -errno;
	snprintf(group, sizeof(group), "%s", c->group[0] ? c->group : "weir-kafka-source");
	const char *const mine[][2] = {
		{ "group.id", group }, { "enable.auto.commit", "false" },
		{ "enable.auto.offset.store", "false" }, { "enable.partition.eof", "true" },
		{ "isolation.level", "read_committed" }, { "auto.offset.reset", "earliest" },
		{ "allow.auto.create.topics", "false" },
	};
	rd_kafka_conf_t *kc = kafka_conf_new(c->brokers, mine, (int)(sizeof(mine) / sizeof(mine[0])),
					     c->properties, err, sizeof(err));
	if (!kc) {
		task_fail(t, "kafka source '%s': %s", t->node->name, err);
		return -EINVAL;
	}
	s->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err));
	if (!s->rk) {
		task_fail(t, "kafka source '%s': %s", t->node->name, err);
		return -EINVAL;
	}
	rd_kafka_poll_set_consumer(s->rk);
	s->q = rd_kafka_queue_get_consumer(s->rk);
	for (int k = 0; k < c->ntopics; k++) {
		int n = 0;
		int rc = kafka_topic_partitions(s->rk, c->topics[k], false, CONNECT_WAIT_MS, &n, err,
						sizeof(err));
		if (rc < 0) {
			task_fail(t, "kafka source '%s': brokers %s: %s", t->node->name, c->brokers,
				  err);
			return rc;
		}
		for (int p = 0; p < n; p++) {
			if ((k + p) % t->parallelism != t->subtask)
				continue;
			kpart *np = realloc(s->parts, (size_t)(s->nparts + 1) * sizeof(*np));
			if (!np)
				return -ENOMEM;
			s->parts = np;
			s->parts[s->nparts++] = (kpart){ .topic = k, .partition = p,
							 .max_ts = INT64_MIN };
		}
	}
	return resolve_offsets(t, s);
}

/* ---- checkpoints -------------------------------------------------------------------- */

static int ksrc_snapshot(task *t, int64_t id, snap_buf *out)
{
	ksrc *s = t->st;
	uint8_t v = BLOB_VERSION;
	uint32_t n = (uint32_t)s->nparts;
	int rc = snap_put(out, &v, 1);
	if (!rc)
		rc = snap_put(out, &n, 4);
	for (int i = 0; i < s->nparts && !rc; i++) {
		const kpart *p = &s->parts[i];
		int32_t part = p->partition;
		rc = snap_put_str(out, s->c->topics[p->topic]);
		if (!rc)
			rc = snap_put(out, &part, 4);
		if (!rc)
			rc = snap_put_u64(out, (uint64_t)p->next);
		if (!rc)
			rc = snap_put_u64(out, (uint64_t)p->end);
	}
	if (rc || !s->c->group[0] || id == CKPT_FINAL)
		return rc;
	/* what the group gets when this checkpoint completes */
	if (s->ck_offsets)
		rd_kafka_topic_partition_list_destroy(s->ck_offsets);
	s->ck_offsets = rd_kafka_topic_partition_list_new(s->nparts);
	for (int i = 0; i < s->nparts; i++)
		rd_kafka_topic_partition_list_add(s->ck_offsets, s->c->topics[s->parts[i].topic],
						  s->parts[i].partition)->offset = s->parts[i].next;
	s->ck_id = id;
	return 0;
}

static void ksrc_commit(task *t, int64_t id)
{
	ksrc *s = t->st;
	if (!s->ck_offsets || s->ck_id > id)
		return;
	/* asynchronous: the result is only logged by librdkafka */
	rd_kafka_commit(s->rk, s->ck_offsets, 1);
	rd_kafka_topic_partition_list_destroy(s->ck_offsets);
	s->ck_offsets = NULL;
}

static int ksrc_restore(task *t, const op_restore *r)
{
	ksrc *s = t->st;
	/* A partition in no blob is new since the checkpoint: from its
	 * earliest offset, as Flink does. */
	bool *seen = calloc((size_t)s->nparts + 1, 1);
	if (!seen)
		return -ENOMEM;
	for (int b = 0; b < r->n; b++) {
		snap_rd rd = { .p = r->blobs[b].p, .len = r->blobs[b].len };
		const uint8_t *v = snap_get(&rd, 1);
		const void *pn = snap_get(&rd, 4);
		uint32_t n = 0;
		if (!v || !pn || *v != BLOB_VERSION)
			goto bad;
		memcpy(&n, pn, 4);
		for (uint32_t i = 0; i < n; i++) {
			char topic[KAFKA_TOPIC_MAX + 1];
			int32_t part;
			if (!snap_get_str(&rd, topic, sizeof(topic)))
				goto bad;
			const void *pp = snap_get(&rd, 4);
			if (!pp)
				goto bad;
			memcpy(&part, pp, 4);
			int64_t next = (int64_t)snap_get_u64(&rd), end = (int64_t)snap_get_u64(&rd);
			if (rd.err || next < 0)
				goto bad;
			kpart *p = part_find(s, topic, part);
			if (!p)
				continue; /* another subtask's, or a topic no longer read */
			p->next = next;
			p->end = s->c->bounded ? end : INT64_MAX;
			seen[p - s->parts] = true;
		}
		if (rd.err)
			goto bad;
	}
	for (int i = 0; i < s->nparts; i++) {
		if (seen[i])
			continue;
		int64_t lo = 0, hi = 0;
		kpart *p = &s->parts[i];
		if (!rd_kafka_query_watermark_offsets(s->rk, s->c->topics[p->topic], p->partition,
						      &lo, &hi, CONNECT_WAIT_MS))
			p->next = lo;
	}
	free(seen);
	return 0;
bad:
	free(seen);
	task_fail(t, "kafka source '%s': the checkpoint's offsets are malformed", t->node->name);
	return -EINVAL;
}

/* ---- reading ------------------------------------------------------------------------- */

static int assign(task *t, ksrc *s)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(s->nparts + 1);
	for (int i = 0; i < s->nparts; i++) {
		kpart *p = &s->parts[i];
		p->last_ns = now_ns();
		if (p->next >= p->end) {
			p->done = true;
			continue;
		}
		rd_kafka_topic_partition_list_add(l, s->c->topics[p->topic], p->partition)->offset =
			p->next;
	}
	rd_kafka_resp_err_t e = rd_kafka_assign(s->rk, l);
	rd_kafka_topic_partition_list_destroy(l);
	if (e) {
		task_fail(t, "kafka source '%s': assigning partitions: %s", t->node->name,
			  rd_kafka_err2str(e));
		return -EIO;
	}
	rd_kafka_queue_io_event_enable(s->q, s->wake[1], "1", 1);
	s->assigned = true;
	return 0;
}

static void dead_letter(task *t, ksrc *s, const rd_kafka_message_t *m, const char *why)
{
	const char *topic = rd_kafka_topic_name(m->rkt);
	size_t n = m->len;
	const char *raw = m->payload ? m->payload : "";
	while (n && (raw[n - 1] == '\n' || raw[n - 1] == '\r'))
		n--;
	s->dead++;
	metric_add(&t->m.dead_letters, 1);
	if (t->nout[1] == 0) {
		if (s->dead <= 10)
			wlog(LOG_WARN, "kafka source '%s': %s [%d] offset %lld: %s: %.*s",
			     t->node->name, topic, m->partition, (long long)m->offset, why,
			     (int)(n > 200 ? 200 : n), raw);
		else if (s->dead == 11)
			wlog(LOG_WARN, "kafka source '%s': more values that do not decode; "
			     "counting them in the metrics only", t->node->name);
		return;
	}
	weir_out *o = task_out(t, 1);
	weir_out_i64(o, 0, m->offset);
	weir_out_str(o, 1, why, strlen(why));
	weir_out_str(o, 2, raw, n);
	weir_out_str(o, 3, topic, strlen(topic));
	weir_out_i64(o, 4, m->partition);
	weir_out_emit(o);
}

/* Decode a CSV value into vals (strings as offsets into s->scratch, see
 * fields).  NULL, or why it does not decode (into msg). */
static const char *decode_csv(ksrc *s, const weir_schema *sc, const char *p, size_t n,
			      int64_t *vals, size_t *str_bytes, char *msg, size_t cap)
{
	const char *why = NULL;
	int nf = 0;
	while (n && (p[n - 1] == '\n' || p[n - 1] == '\r'))
		n--;
	if (s->scratch_cap < n + 1) {
		/* grows to the largest value seen: not per record */
		char *ns = realloc(s->scratch, n + 1024);
		if (!ns)
			return "out of memory";
		s->scratch = ns;
		s->scratch_cap = n + 1024;
	}
	long used = csv_split(p, n, true, s->scratch, s->fields, WEIR_MAX_COLS + 1, &nf, &why);
	if (used < 0)
		return why;
	if ((size_t)used < n)
		return "more than one CSV record in the value";
	if (csv_parse_fields(sc, s->scratch, s->fields, nf, vals, str_bytes, msg, cap) < 0)
		return msg;
	return NULL;
}

/* The subtask's watermark from its partitions' (per-partition mode). */
static void advance_watermark(task *t, ksrc *s, uint64_t now)
{
	int64_t wm = INT64_MAX;
	bool any = false;
	for (int i = 0; i < s->nparts; i++) {
		kpart *p = &s->parts[i];
		if (p->done)
			continue;
		if (s->c->idle_ms > 0 && now - p->last_ns >= (uint64_t)s->c->idle_ms * 1000000)
			p->idle = true;
		if (p->idle)
			continue;
		any = true;
		int64_t w = p->max_ts == INT64_MIN ? INT64_MIN : sat_sub(p->max_ts, s->c->wm_lag);
		if (w < wm)
			wm = w;
	}
	if (!any) {
		/* every partition idle or finished: hold nobody back */
		if (!s->idle_sent && s->nparts) {
			task_emit_idle(t, true);
			s->idle_sent = true;
		}
		return;
	}
	if (s->idle_sent) {
		task_emit_idle(t, false);
		s->idle_sent = false;
	}
	if (wm != INT64_MIN && wm > s->wm_sent) {
		task_emit_watermark(t, wm);
		s->wm_sent = wm;
	}
}

static void on_error(task *t, ksrc *s, const rd_kafka_message_t *m)
{
	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
		kpart *p = m->rkt ? part_find(s, rd_kafka_topic_name(m->rkt), m->partition) : NULL;
		if (p && m->offset >= p->end)
			p->done = true;
		return;
	}
	if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
	    m->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
	    m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
		task_fail(t, "kafka source '%s': %s [%d]: %s", t->node->name,
			  m->rkt ? rd_kafka_topic_name(m->rkt) : "?", m->partition,
			  rd_kafka_err2str(m->err));
		return;
	}
	/* transient (a broker went away): librdkafka retries by itself */
	if (s->errors_logged++ < 10)
		wlog(LOG_WARN, "kafka source '%s': %s", t->node->name, rd_kafka_err2str(m->err));
}

static int ksrc_produce(task *t)
{
	ksrc *s = t->st;
	const kafka_source_conf *c = s->c;
	const weir_schema *sc = t->node->schema[0];
	rd_kafka_message_t *msgs[CONSUME_MAX];
	weir_batch *b = NULL;
	char drain[64];

	if (s->all_done)
		return -1;
	if (!s->assigned && assign(t, s) < 0)
		return -1;
	if (task_blocked(t))
		return 0;
	while (read(s->wake[0], drain, sizeof(drain)) > 0)
		;
	uint32_t allow = gate_allow(t, &s->gate);
	if (!allow)
		return 0; /* gate_allow said when to come back */
	size_t want = t->cfg->batch_rows < CONSUME_MAX ? t->cfg->batch_rows : CONSUME_MAX;
	if (want > allow)
		want = allow;
	ssize_t n = rd_kafka_consume_batch_queue(s->q, 0, msgs, want);
	if (n > 0)
		rate_gate_take(&s->gate, (uint32_t)n);
	uint64_t now = now_ns();
	for (ssize_t i = 0; i < n; i++) {
		rd_kafka_message_t *m = msgs[i];
		kpart *p;
		if (m->err) {
			on_error(t, s, m);
			goto next;
		}
		p = part_find(s, rd_kafka_topic_name(m->rkt), m->partition);
		if (!p || p->done || m->offset < p->next)
			goto next; /* not ours, finished, or already emitted */
		if (m->offset >= p->end) {
			p->done = true;
			goto next;
		}
		p->next = m->offset + 1;
		p->last_ns = now;
		p->idle = false;
		if (p->next >= p->end)
			p->done = true;
		int64_t vals[WEIR_MAX_COLS];
		size_t str_bytes = 0;
		char msg[200];
		const char *why = NULL;
		if (c->format == WEIR_FORMAT_RAW)
			str_bytes = m->len;
		else
			why = decode_csv(s, sc, m->payload ? m->payload : "", m->len, vals,
					 &str_bytes, msg, sizeof(msg));
		if (why) {
			dead_letter(t, s, m, why);
			goto next;
		}
		if (b && (b->rows == b->capacity || str_bytes > b->heap_cap - b->heap_used)) {
			task_emit(t, 0, b);
			b = NULL;
		}
		if (!b)
			b = batch_alloc(sc, str_bytes);
		if (!b) {
			task_fail(t, "kafka source '%s': out of memory", t->node->name);
			goto next;
		}
		uint32_t r = b->rows;
		int64_t ts;
		if (c->format == WEIR_FORMAT_RAW) {
			weir_batch_set_str(b, 0, r, m->payload ? m->payload : "", (uint32_t)m->len);
			ts = rd_kafka_message_timestamp(m, NULL);
		} else {
			csv_store_row(b, r, s->scratch, s->fields, vals);
			ts = c->ts_col >= 0 ? vals[c->ts_col] : rd_kafka_message_timestamp(m, NULL);
		}
		if (ts < 0 && c->ts_col < 0)
			ts = 0; /* a message without a timestamp */
		b->ts[r] = ts;
		b->rows = r + 1;
		if (ts > p->max_ts)
			p->max_ts = ts;
next:
		rd_kafka_message_destroy(m);
	}
	if (b)
		task_emit(t, 0, b);
	if (c->pp_watermarks)
		advance_watermark(t, s, now);
	bool all = s->nparts > 0 || c->bounded;
	for (int i = 0; i < s->nparts && all; i++)
		all = s->parts[i].done;
	if (c->bounded && all) {
		s->all_done = true;
		return n > 0 ? 1 : -1;
	}
	if (n > 0)
		return 1;
	task_wait(t, now + POLL_IDLE_NS, s->wake[0]);
	return 0;
}

static void ksrc_close(task *t)
{
	ksrc *s = t->st;
	if (!s)
		return;
	if (s->ck_offsets)
		rd_kafka_topic_partition_list_destroy(s->ck_offsets);
	if (s->q) {
		rd_kafka_queue_io_event_enable(s->q, -1, NULL, 0);
		rd_kafka_queue_destroy(s->q);
	}
	if (s->rk) {
		rd_kafka_consumer_close(s->rk);
		rd_kafka_destroy(s->rk);
	}
	for (int i = 0; i < 2; i++)
		if (s->wake[i] >= 0)
			close(s->wake[i]);
	free(s->parts);
	free(s->scratch);
	free(s);
	t->st = NULL;
}

const op_ops op_kafka_source = {
	.kind = "kafka-source",
	.open = ksrc_open,
	.produce = ksrc_produce,
	.snapshot = ksrc_snapshot,
	.commit = ksrc_commit,
	.restore = ksrc_restore,
	.close = ksrc_close,
};
