/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kafka sink (weir_sink_kafka): rows as Kafka messages, with none,
 * at-least-once or exactly-once delivery.
 *
 * A row becomes one message: its CSV line (no newline) or, format RAW, its
 * one column's bytes; the key is the CSV form of the key columns; the
 * record timestamp is the row's event time (0: the producer's clock).
 * librdkafka copies each message into memory of its own (RD_KAFKA_MSG_F_COPY:
 * its allocation, the only one per record on this path); the row is
 * formatted into the sink's own buffer.  When librdkafka's queue is full
 * the sink polls until there is room: the reactor waits, which
 * backpressures the job.
 *
 * At-least-once: at every barrier the sink flushes (rd_kafka_flush, the
 * reactor waits for the broker's acknowledgements, as Flink's sink does)
 * and a delivery error fails the job, which then restarts from the last
 * completed checkpoint.
 *
 * Exactly-once: a Kafka transaction per subtask and checkpoint.
 *
 *   open:     producers for transactional ids "<prefix>-<subtask>-<k>",
 *             k < TXN_POOL (a bounded pool, reused: not one id per
 *             checkpoint); init_transactions() on each fences an earlier
 *             attempt's producer and aborts what it left open; the first
 *             begins a transaction
 *   barrier n: flush (pre-commit); the transaction is pending for n; the
 *             next free producer begins the next transaction
 *   commit c: every pending transaction of a checkpoint <= c commits
 *
 * Each message carries headers "weir-subtask", "weir-checkpoint" and
 * "weir-attempt" (the process id of the run that wrote it), so an audit
 * can tell which transactions completed checkpoints cover: the
 * transaction of attempt A tagged K holds the rows after barrier K - 1
 * and is committed by the first checkpoint >= K that completes in A.  transaction.timeout.ms
 * must exceed the checkpoint interval plus the checkpoint timeout (checked
 * at open), or the broker would abort a pending transaction before its
 * checkpoint completes.
 *
 * Known gap (librdkafka 2.0): a transaction pending at a crash cannot be
 * committed by the restarted job -- librdkafka has no call that resumes
 * another producer's transaction (Flink's Java sink does it by
 * reflection; KIP-939 adds it to Kafka 3.8+ clients), and
 * init_transactions() aborts it.  Its rows are lost from Kafka when the
 * crash falls after the checkpoint's manifest was written and before the
 * commit reached the broker (a window of one broker round trip per
 * checkpoint).  The restored sink says so on stderr when the checkpoint
 * it restores had such a transaction.  A checkpoint that did not complete
 * loses nothing: its rows are produced again by the replay.
 *
 * Snapshot blob (exactly-once only, little-endian):
 *
 *   [u8 version = 1][u32 n] n x [i64 checkpoint of a pending transaction]
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka.h"

#define BLOB_VERSION 1
#define TXN_POOL 4
#define FLUSH_MS 60000
#define TXN_CALL_MS 60000
#define CONNECT_WAIT_MS 10000
#define MAX_HEADERS 16 /* the user's, at most 13, and ours */

typedef struct kprod {
	rd_kafka_t *rk;
	int64_t pending;    /* checkpoint of its pre-committed transaction; 0: none */
	bool open;          /* a transaction is open on it */
} kprod;

typedef struct ksink {
	const kafka_sink_conf *c;
	bool eos;           /* exactly-once in effect (needs checkpoints) */
	kprod prod[TXN_POOL];
	int nprod, cur;
	int npartitions;    /* round robin */
	uint32_t rr;
	char *buf;
	size_t cap;
	/* user headers, then weir-subtask and weir-checkpoint */
	char hname[MAX_HEADERS][128], hval[MAX_HEADERS][256];
	int nheaders;
	char sub_str[16], ck_str[24], attempt_str[16];
	/* first delivery error since the last barrier (delivery reports run
	 * inside rd_kafka_poll/flush on the reactor thread) */
	rd_kafka_resp_err_t dr_err;
	char dr_what[256];
	int64_t last_id;    /* last barrier passed */
	uint64_t sent;
} ksink;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	ksink *s = opaque;
	(void)rk;
	if (m->err && !s->dr_err) {
		s->dr_err = m->err;
		snprintf(s->dr_what, sizeof(s->dr_what), "%s", rd_kafka_err2str(m->err));
	}
}

static int fail_txn(task *t, const char *what, rd_kafka_error_t *e)
{
	task_fail(t, "kafka sink '%s': %s: %s", t->node->name, what, rd_kafka_error_string(e));
	rd_kafka_error_destroy(e);
	return -EIO;
}

static int new_producer(task *t, ksink *s, const char *txn_id, rd_kafka_t **out)
{
	const kafka_sink_conf *c = s->c;
	char err[512], timeout[32];
	snprintf(timeout, sizeof(timeout), "%" PRId64, c->txn_timeout_ms);
	const char *const eos[][2] = {
		{ "enable.idempotence", "true" }, { "partitioner", "murmur2_random" },
		{ "transactional.id", txn_id }, { "transaction.timeout.ms", timeout },
	};
	int ndef = txn_id ? 4 : 2;
	rd_kafka_conf_t *kc = kafka_conf_new(c->brokers, eos, ndef, c->properties, err,
					     sizeof(err));
	if (!kc) {
		task_fail(t, "kafka sink '%s': %s", t->node->name, err);
		return -EINVAL;
	}
	rd_kafka_conf_set_dr_msg_cb(kc, on_delivery);
	rd_kafka_conf_set_opaque(kc, s);
	*out = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
	if (!*out) {
		task_fail(t, "kafka sink '%s': %s", t->node->name, err);
		return -EINVAL;
	}
	return 0;
}

/* Fence transactional id `id` and abort what an earlier attempt left open
 * on it; keep the producer in *keep (or destroy it when keep is NULL). */
static int fence(task *t, ksink *s, const char *id, rd_kafka_t **keep)
{
	rd_kafka_t *rk = NULL;
	int rc = new_producer(t, s, id, &rk);
	if (rc < 0)
		return rc;
	rd_kafka_error_t *e = rd_kafka_init_transactions(rk, TXN_CALL_MS);
	if (e) {
		char what[1500];
		snprintf(what, sizeof(what), "brokers %s: initializing transactional id %s",
			 s->c->brokers, id);
		rd_kafka_destroy(rk);
		return fail_txn(t, what, e);
	}
	if (keep)
		*keep = rk;
	else
		rd_kafka_destroy(rk);
	return 0;
}

static void txn_id(const ksink *s, int subtask, int k, char *out, size_t cap)
{
	snprintf(out, cap, "%s-%d-%d", s->c->txn_prefix, subtask, k);
}

static int begin(task *t, ksink *s, int k)
{
	rd_kafka_error_t *e = rd_kafka_begin_transaction(s->prod[k].rk);
	if (e)
		return fail_txn(t, "beginning a transaction", e);
	s->prod[k].open = true;
	s->cur = k;
	return 0;
}

static int ksink_open(task *t)
{
	const kafka_sink_conf *c = t->node->conf;
	char err[512];
	ksink *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	t->st = s;
	s->c = c;
	s->cap = 64 << 10;
	s->buf = malloc(s->cap);
	if (!s->buf)
		return -ENOMEM;
	snprintf(s->sub_str, sizeof(s->sub_str), "%d", t->subtask);
	snprintf(s->attempt_str, sizeof(s->attempt_str), "%d", (int)getpid());
	snprintf(s->ck_str, sizeof(s->ck_str), "1");
	for (const char *p = c->headers; *p && s->nheaders < MAX_HEADERS - 3;) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', n);
		if (!eq) {
			task_fail(t, "kafka sink '%s': header '%.*s' is not name=value",
				  t->node->name, (int)n, p);
			return -EINVAL;
		}
		snprintf(s->hname[s->nheaders], sizeof(s->hname[0]), "%.*s", (int)(eq - p), p);
		snprintf(s->hval[s->nheaders], sizeof(s->hval[0]), "%.*s",
			 (int)(n - (size_t)(eq - p) - 1), eq + 1);
		s->nheaders++;
		p = end ? end + 1 : p + n;
	}
	s->eos = c->guarantee == WEIR_DELIVERY_EXACTLY_ONCE;
	if (s->eos && !task_checkpointing(t)) {
		/* Transactions commit at completed checkpoints: without any
		 * there is nothing to commit them at. */
		if (t->subtask == 0)
			wlog(LOG_WARN, "kafka sink '%s': exactly-once needs checkpoints "
			     "(weir run --checkpoint-dir); this run delivers at least once",
			     t->node->name);
		s->eos = false;
	}
	if (s->eos) {
		int64_t need = t->cfg->checkpoint_interval_ms +
			       (t->cfg->checkpoint_timeout_ms ? t->cfg->checkpoint_timeout_ms : 60000);
		if (c->txn_timeout_ms <= need) {
			task_fail(t, "kafka sink '%s': transaction.timeout.ms %" PRId64 " must exceed "
				  "the checkpoint interval plus the checkpoint timeout (%" PRId64
				  " ms), or the broker aborts transactions before their "
				  "checkpoint completes", t->node->name, c->txn_timeout_ms, need);
			return -EINVAL;
		}
		for (int k = 0; k < TXN_POOL; k++) {
			char id[400];
			txn_id(s, t->subtask, k, id, sizeof(id));
			int rc = fence(t, s, id, &s->prod[k].rk);
			if (rc < 0)
				return rc;
			s->nprod++;
		}
		if (begin(t, s, 0) < 0)
			return -EIO;
	} else {
		int rc = new_producer(t, s, NULL, &s->prod[0].rk);
		if (rc < 0)
			return rc;
		s->nprod = 1;
	}
	/* The cluster answers and the topic exists (or is created). */
	int rc = kafka_topic_partitions(s->prod[0].rk, c->topic, true, CONNECT_WAIT_MS, &s->npartitions,
					err, sizeof(err));
	if (rc < 0) {
		task_fail(t, "kafka sink '%s': brokers %s: %s", t->node->name, c->brokers, err);
		return rc;
	}
	if (c->partitioner == WEIR_KAFKA_PART_FIXED && c->fixed_partition >= s->npartitions) {
		task_fail(t, "kafka sink '%s': partition %d of topic '%s' does not exist (it has %d)",
			  t->node->name, c->fixed_partition, c->topic, s->npartitions);
		return -EINVAL;
	}
	return 0;
}

static bool grow(task *t, ksink *s, size_t need)
{
	if (need <= s->cap)
		return true;
	char *nb = realloc(s->buf, need); /* a row larger than any before: rare */
	if (!nb) {
		task_fail(t, "kafka sink '%s': out of memory", t->node->name);
		return false;
	}
	s->buf = nb;
	s->cap = need;
	return true;
}

static void ksink_process(task *t, int input, weir_batch *b)
{
	ksink *s = t->st;
	const kafka_sink_conf *c = s->c;
	rd_kafka_t *rk = s->prod[s->cur].rk;
	rd_kafka_vu_t vu[8 + MAX_HEADERS];
	(void)input;

	for (uint32_t r = 0; r < b->rows; r++) {
		size_t need = csv_row_bound(b, r) * 2;
		if (!grow(t, s, need))
			break;
		char *v = s->buf, *ve, *k = NULL, *ke = NULL;
		if (c->format == WEIR_FORMAT_RAW) {
			uint32_t n;
			const char *p = b->schema->fields[0].type == WEIR_STR
					? weir_batch_str(b, 0, r, &n) : NULL;
			if (p) {
				memcpy(v, p, n);
				ve = v + n;
			} else {
				ve = csv_format_cell(v, b, 0, r);
			}
		} else {
			ve = csv_format_row(v, b, r);
		}
		if (c->nkeys) {
			k = ke = ve;
			for (int i = 0; i < c->nkeys; i++) {
				if (i)
					*ke++ = ',';
				ke = csv_format_cell(ke, b, c->key_cols[i], r);
			}
		}
		int32_t part = RD_KAFKA_PARTITION_UA;
		if (c->partitioner == WEIR_KAFKA_PART_FIXED)
			part = c->fixed_partition;
		else if (c->partitioner == WEIR_KAFKA_PART_ROUND_ROBIN || !c->nkeys)
			part = (int32_t)(s->rr++ % (uint32_t)s->npartitions);
		int nv = 0;
		vu[nv].vtype = RD_KAFKA_VTYPE_TOPIC;
		vu[nv++].u.cstr = c->topic;
		vu[nv].vtype = RD_KAFKA_VTYPE_PARTITION;
		vu[nv++].u.i32 = part;
		vu[nv].vtype = RD_KAFKA_VTYPE_VALUE;
		vu[nv].u.mem.ptr = v;
		vu[nv++].u.mem.size = (size_t)(ve - v);
		if (k) {
			vu[nv].vtype = RD_KAFKA_VTYPE_KEY;
			vu[nv].u.mem.ptr = k;
			vu[nv++].u.mem.size = (size_t)(ke - k);
		}
		vu[nv].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
		vu[nv++].u.i = RD_KAFKA_MSG_F_COPY;
		vu[nv].vtype = RD_KAFKA_VTYPE_TIMESTAMP;
		vu[nv++].u.i64 = b->ts[r] > 0 ? b->ts[r] : 0;
		for (int h = 0; h < s->nheaders; h++) {
			vu[nv].vtype = RD_KAFKA_VTYPE_HEADER;
			vu[nv].u.header.name = s->hname[h];
			vu[nv].u.header.val = s->hval[h];
			vu[nv++].u.header.size = (ssize_t)strlen(s->hval[h]);
		}
		if (s->eos) {
			vu[nv].vtype = RD_KAFKA_VTYPE_HEADER;
			vu[nv].u.header.name = "weir-subtask";
			vu[nv].u.header.val = s->sub_str;
			vu[nv++].u.header.size = (ssize_t)strlen(s->sub_str);
			vu[nv].vtype = RD_KAFKA_VTYPE_HEADER;
			vu[nv].u.header.name = "weir-checkpoint";
			vu[nv].u.header.val = s->ck_str;
			vu[nv++].u.header.size = (ssize_t)strlen(s->ck_str);
			vu[nv].vtype = RD_KAFKA_VTYPE_HEADER;
			vu[nv].u.header.name = "weir-attempt";
			vu[nv].u.header.val = s->attempt_str;
			vu[nv++].u.header.size = (ssize_t)strlen(s->attempt_str);
		}
		for (;;) {
			rd_kafka_error_t *e = rd_kafka_produceva(rk, vu, (size_t)nv);
			if (!e)
				break;
			rd_kafka_resp_err_t code = rd_kafka_error_code(e);
			if (code == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
				/* backpressure: wait for the broker to take some */
				rd_kafka_error_destroy(e);
				rd_kafka_poll(rk, 10);
				continue;
			}
			task_fail(t, "kafka sink '%s': producing to '%s': %s", t->node->name,
				  c->topic, rd_kafka_error_string(e));
			rd_kafka_error_destroy(e);
			batch_release(b);
			return;
		}
		s->sent++;
	}
	batch_release(b);
	rd_kafka_poll(rk, 0); /* delivery reports */
	if (s->dr_err && !s->eos && c->guarantee == WEIR_DELIVERY_NONE)
		s->dr_err = 0; /* fire and forget */
}

/* Wait until everything produced on rk is acknowledged; -EIO after a
 * delivery error (the job fails and restarts from its last checkpoint). */
static int flush(task *t, ksink *s, rd_kafka_t *rk)
{
	rd_kafka_resp_err_t e = rd_kafka_flush(rk, FLUSH_MS);
	if (e) {
		task_fail(t, "kafka sink '%s': flushing to brokers %s: %s", t->node->name,
			  s->c->brokers, rd_kafka_err2str(e));
		return -EIO;
	}
	if (s->dr_err) {
		task_fail(t, "kafka sink '%s': a message was not delivered to '%s': %s",
			  t->node->name, s->c->topic, s->dr_what);
		s->dr_err = 0;
		return -EIO;
	}
	return 0;
}

static int ksink_snapshot(task *t, int64_t id, snap_buf *out)
{
	ksink *s = t->st;
	int rc;

	if (id != CKPT_FINAL && id > s->last_id)
		s->last_id = id;
	if (s->c->guarantee == WEIR_DELIVERY_NONE)
		return 0;
	if (!s->eos)
		return flush(t, s, s->prod[0].rk);
	/* pre-commit the open transaction for this barrier */
	kprod *p = &s->prod[s->cur];
	int64_t tag = id == CKPT_FINAL ? s->last_id + 1 : id;
	if (p->open) {
		if ((rc = flush(t, s, p->rk)) < 0)
			return rc;
		p->open = false;
		p->pending = tag;
	}
	if (id != CKPT_FINAL) {
		int next = -1;
		for (int k = 1; k <= s->nprod && next < 0; k++)
			if (!s->prod[(s->cur + k) % s->nprod].pending)
				next = (s->cur + k) % s->nprod;
		if (next < 0) {
			task_fail(t, "kafka sink '%s': %d transactions wait for their checkpoints "
				  "to complete; checkpoints complete more slowly than they start",
				  t->node->name, s->nprod);
			return -EBUSY;
		}
		snprintf(s->ck_str, sizeof(s->ck_str), "%" PRId64, id + 1);
		if ((rc = begin(t, s, next)) < 0)
			return rc;
	}
	uint8_t v = BLOB_VERSION;
	uint32_t n = 0;
	for (int k = 0; k < s->nprod; k++)
		n += s->prod[k].pending != 0;
	rc = snap_put(out, &v, 1);
	if (!rc)
		rc = snap_put(out, &n, 4);
	for (int k = 0; k < s->nprod && !rc; k++)
		if (s->prod[k].pending)
			rc = snap_put_u64(out, (uint64_t)s->prod[k].pending);
	return rc;
}

static void ksink_commit(task *t, int64_t id)
{
	ksink *s = t->st;
	if (!s->eos)
		return;
	/* oldest first, so Kafka sees the checkpoints' output in order */
	for (;;) {
		int k = -1;
		for (int i = 0; i < s->nprod; i++)
			if (s->prod[i].pending && s->prod[i].pending <= id &&
			    (k < 0 || s->prod[i].pending < s->prod[k].pending))
				k = i;
		if (k < 0)
			return;
		rd_kafka_error_t *e = rd_kafka_commit_transaction(s->prod[k].rk, TXN_CALL_MS);
		if (e) {
			char what[128];
			snprintf(what, sizeof(what), "committing the transaction of checkpoint %" PRId64,
				 s->prod[k].pending);
			fail_txn(t, what, e);
			return;
		}
		s->prod[k].pending = 0;
	}
}

static int ksink_restore(task *t, const op_restore *r)
{
	ksink *s = t->st;
	if (!s->eos)
		return 0;
	for (int b = 0; b < r->n; b++) {
		snap_rd rd = { .p = r->blobs[b].p, .len = r->blobs[b].len };
		const uint8_t *v = snap_get(&rd, 1);
		const void *pn = snap_get(&rd, 4);
		uint32_t n = 0;
		if (!v || !pn || *v != BLOB_VERSION) {
			task_fail(t, "kafka sink '%s': the checkpoint's state is malformed",
				  t->node->name);
			return -EINVAL;
		}
		memcpy(&n, pn, 4);
		for (uint32_t i = 0; i < n && !rd.err; i++) {
			int64_t ck = (int64_t)snap_get_u64(&rd);
			/* the restored checkpoint: its barrier closed the newest
			 * pending transaction, so this run's first holds the
			 * rows after it */
			if (!rd.err && ck > s->last_id) {
				s->last_id = ck;
				snprintf(s->ck_str, sizeof(s->ck_str), "%" PRId64, ck + 1);
			}
			if (r->blobs[b].subtask % t->parallelism == t->subtask && ck && !rd.err)
				wlog(LOG_INFO, "kafka sink '%s': subtask %d's transaction of checkpoint "
				     "%" PRId64 " was pending at the restored checkpoint; if the crash "
				     "came before its commit reached the broker it is aborted now "
				     "(librdkafka cannot resume it; see docs/connectors.md)",
				     t->node->name, r->blobs[b].subtask, ck);
		}
	}
	/* Fence the ids of old subtasks that no longer exist, whose
	 * lingering transactions no producer of this run would abort. */
	for (int old = t->parallelism + t->subtask; old < r->old_parallelism;
	     old += t->parallelism) {
		for (int k = 0; k < TXN_POOL; k++) {
			char id[400];
			txn_id(s, old, k, id, sizeof(id));
			int rc = fence(t, s, id, NULL);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

static void ksink_end_input(task *t)
{
	ksink *s = t->st;
	if (!s->eos && s->nprod)
		flush(t, s, s->prod[0].rk);
}

static void ksink_close(task *t)
{
	ksink *s = t->st;
	if (!s)
		return;
	for (int k = 0; k < s->nprod; k++) {
		if (!s->prod[k].rk)
			continue;
		if (!s->eos)
			rd_kafka_flush(s->prod[k].rk, FLUSH_MS);
		/* an open or uncommitted transaction is aborted by the broker
		 * (or fenced by the next run): never committed here */
		rd_kafka_destroy(s->prod[k].rk);
	}
	free(s->buf);
	free(s);
	t->st = NULL;
}

const op_ops op_kafka_sink = {
	.kind = "kafka-sink",
	.open = ksink_open,
	.process = ksink_process,
	.snapshot = ksink_snapshot,
	.commit = ksink_commit,
	.restore = ksink_restore,
	.end_input = ksink_end_input,
	.close = ksink_close,
};
