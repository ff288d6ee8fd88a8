/* SPDX-License-Identifier: Apache-2.0 */
/*
 * In-flight data of unaligned checkpoints (store_internal.h).  An
 * unaligned checkpoint lets a barrier overtake the elements queued ahead
 * of it; core/barrier.c hands each overtaken element here
 * (ckpt_store_ops.channel_state), which logs it as a CHAN entry (drawn in
 * log_write.h) in the consumer core's log, and the manifest records the
 * range of each core's log that holds them ("inflight" lines).  A restore
 * reads them back and checks all of them before any operator restores
 * its state (inflight_load), then, as nothing can fail any more, puts
 * them back into their channels in order, ahead of anything new
 * (inflight_inject).  An aligned checkpoint has none.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

/* Messages name paths; one cut short is still a useful message. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

/* ---- writing, at the barrier (core's reactor) ------------------------------------ */

int st_channel_state(ckpt_store *s, int core, int64_t id, const channel *ch,
		     uint64_t key, const elem *e)
{
	core_st *c = core_of(s, core);
	if (!c->log)
		return 0; /* no checkpoint directory: nothing to restore from */
	if (c->inf_id != id) {
		c->inf_id = id;
		c->inf_from = slog_mark(c->log);
		c->inf_to = (slog_pos){ 0, 0 };
	}
	size_t vlen = 1 + (e->kind == ELEM_DATA ? batch_encoded_size(e->batch) : 8);
	char *p = slog_reserve(c->log, ST_ENTRY_HDR + 8 + vlen);
	if (!p)
		return slog_error(c->log) ? slog_error(c->log) : -ENOMEM;
	uint16_t node = (uint16_t)ch->dst_node, sub = (uint16_t)ch->dst_sub;
	uint16_t src = (uint16_t)ch->src_sub;
	uint32_t kl = 8, vl = (uint32_t)vlen;
	uint64_t from = (uint64_t)ch->src_node | (uint64_t)ch->src_port << 16;
	p[0] = ST_CHAN;
	p[1] = (char)ch->dst_input;
	memcpy(p + 2, &node, 2);
	memcpy(p + 4, &sub, 2);
	memcpy(p + 6, &src, 2);
	memcpy(p + 8, &kl, 4);
	memcpy(p + 12, &vl, 4);
	memcpy(p + 16, &from, 8);
	memcpy(p + 24, &id, 8);
	memcpy(p + 32, &key, 8);
	p[40] = (char)e->kind;
	if (e->kind == ELEM_DATA)
		batch_encode(e->batch, p + 41);
	else
		memcpy(p + 41, &e->value, 8);
	c->inflight_bytes += ST_ENTRY_HDR + 8 + vlen;
	return 0;
}

/* ---- reading back, at a restore (main, before the job runs) ---------------------- */

typedef struct inflight_el {
	int ch;             /* runtime channel index */
	uint64_t key;       /* order within the channel */
	uint64_t ord;       /* order in the log: ties */
	uint32_t kind;
	int64_t value;
	weir_batch *batch;  /* ELEM_DATA: decoded, owned */
} inflight_el;

static int el_cmp(const void *a, const void *b)
{
	const inflight_el *x = a, *y = b;
	if (x->ch != y->ch)
		return x->ch < y->ch ? -1 : 1;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return x->ord < y->ord ? -1 : x->ord > y->ord;
}

static int find_channel(runtime *rt, int gsrc, int ssub, int port, int gdst, int dsub,
			int input)
{
	for (int i = 0; i < runtime_nchannels(rt); i++) {
		const channel *ch = runtime_channel(rt, i);
		if (ch->src_node == gsrc && ch->src_sub == ssub && ch->src_port == port &&
		    ch->dst_node == gdst && ch->dst_sub == dsub && ch->dst_input == input)
			return i;
	}
	return -1;
}

void inflight_free(runtime *rt, inflight_el *els, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (els[i].batch) {
			runtime_bind_pool(rt, runtime_channel(rt, els[i].ch));
			batch_release(els[i].batch);
		}
	runtime_bind_pool(rt, NULL);
	free(els);
}

/*
 * The in-flight data of unaligned checkpoint m, to be put back into the
 * channels it was in, in order, ahead of anything new: read every CHAN
 * entry of m's id in its inflight ranges and check it all (the edge
 * exists, at the same parallelism; batches decode) into c->els, sorted.
 * 0 or -errno (err).
 */
int inflight_load(rctx *c)
{
	const manifest *m = c->m;
	runtime *rt = c->rt;
	inflight_el *els = NULL;
	size_t n = 0, cap = 0;
	uint64_t ord = 0;
	int rc = 0;

	for (int i = 0; i < m->ninflight && rc == 0; i++) {
		const mf_inflight *f = &m->inflight[i];
		char prefix[32];
		slog_reader *rd = NULL;
		snprintf(prefix, sizeof(prefix), "core-%d", f->core);
		rc = slog_reader_open(c->logdir, prefix, (slog_pos){ f->from_seg, f->from_off },
				      (slog_pos){ f->to_seg, f->to_off }, &rd, c->err, c->errlen);
		const void *fp;
		size_t fn;
		while (rc == 0 && (rc = slog_next(rd, &fp, &fn, c->err, c->errlen)) > 0) {
			rc = 0;
			const char *p = fp, *end = p + fn;
			while (p < end && rc == 0) {
				st_entry e;
				const char *next = entry_parse(p, end, &e);
				if (!next)
					goto bad;
				p = next;
				uint8_t kind = e.kind, input = e.tab;
				uint16_t node = e.node, sub = e.sub, ssub = e.spare;
				uint32_t klen = e.klen, vlen = e.vlen;
				uint64_t from = e.khash, key;
				int64_t id = e.ns;
				const char *kp = e.kp, *vp = e.vp;
				if (kind != ST_CHAN || id != m->id)
					continue;
				int snode = (int)(from & 0xffff), port = (int)(from >> 16 & 0xffff);
				if (klen != 8 || vlen < 9 || node >= m->nops || snode >= m->nops ||
				    sub >= m->ops[node].parallelism ||
				    ssub >= m->ops[snode].parallelism || port >= NODE_MAX_PORTS ||
				    (from >> 32) != 0)
					goto bad;
				uint8_t ek = (uint8_t)vp[0];
				if (ek != ELEM_DATA && ek != ELEM_WATERMARK && ek != ELEM_IDLE)
					goto bad;
				if (ek != ELEM_DATA && vlen != 9)
					goto bad;
				memcpy(&key, kp, 8);
				int gd = c->op_map[node], gs = c->op_map[snode];
				if (gd < 0 || gs < 0) {
					if (c->s->cfg->allow_non_restored_state)
						continue;
					snprintf(c->err, c->errlen,
						 "it holds in-flight data between operators '%s' and '%s', "
						 "which the job does not have (pass "
						 "--allow-non-restored-state to drop it)",
						 m->ops[snode].uid, m->ops[node].uid);
					rc = -EINVAL;
					break;
				}
				if (c->node_par[gd] != m->ops[node].parallelism ||
				    c->node_par[gs] != m->ops[snode].parallelism) {
					snprintf(c->err, c->errlen,
						 "it is an unaligned checkpoint holding in-flight data "
						 "between '%s' (parallelism %d) and '%s' (%d), which "
						 "the job runs at %d and %d: restore it at the same "
						 "parallelism, or rescale from a savepoint (always "
						 "aligned)", m->ops[snode].uid, m->ops[snode].parallelism,
						 m->ops[node].uid, m->ops[node].parallelism,
						 c->node_par[gs], c->node_par[gd]);
					rc = -EINVAL;
					break;
				}
				int ch = find_channel(rt, gs, ssub, port, gd, sub, input);
				if (ch < 0) {
					snprintf(c->err, c->errlen,
						 "it holds in-flight data of an edge from '%s' to '%s' "
						 "that the job does not have", m->ops[snode].uid,
						 m->ops[node].uid);
					rc = -EINVAL;
					break;
				}
				if (n == cap) {
					size_t nc = cap ? cap * 2 : 64;
					inflight_el *ne = realloc(els, nc * sizeof(*ne));
					if (!ne) {
						rc = -ENOMEM;
						break;
					}
					els = ne;
					cap = nc;
				}
				inflight_el *el = &els[n];
				*el = (inflight_el){ .ch = ch, .key = key, .ord = ord++, .kind = ek };
				if (ek == ELEM_DATA) {
					const channel *chan = runtime_channel(rt, ch);
					const weir_schema *schema = runtime_graph(rt)->nodes[gs]->schema[port];
					runtime_bind_pool(rt, chan);
					int d = schema ? batch_decode(schema, vp + 1, vlen - 1, &el->batch)
						       : -EBADMSG;
					runtime_bind_pool(rt, NULL);
					if (d < 0) {
						snprintf(c->err, c->errlen,
							 "%s/%s: in-flight batch from '%s' to '%s' does not "
							 "decode: %s", c->logdir, prefix,
							 m->ops[snode].uid, m->ops[node].uid,
							 d == -EBADMSG ? "malformed" : strerror(-d));
						rc = d;
						break;
					}
				} else {
					memcpy(&el->value, vp + 1, 8);
				}
				n++;
			}
			continue;
bad:
			snprintf(c->err, c->errlen, "%s/%s: malformed in-flight entry", c->logdir,
				 prefix);
			rc = -EBADMSG;
		}
		slog_reader_close(rd);
	}
	if (rc < 0) {
		inflight_free(rt, els, n);
		return rc;
	}
	if (n)
		qsort(els, n, sizeof(*els), el_cmp);
	c->els = els;
	c->nels = n;
	return 0;
}

void inflight_inject(rctx *c)
{
	for (size_t i = 0; i < c->nels; i++) {
		inflight_el *el = &c->els[i];
		elem e = { .kind = el->kind };
		if (el->kind == ELEM_DATA)
			e.batch = el->batch; /* taken over */
		else
			e.value = el->value;
		el->batch = NULL;
		runtime_restore_element(c->rt, runtime_channel(c->rt, el->ch), e);
	}
}
