/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Asynchronous snapshots (state/keyed.c "Asynchronous snapshots",
 * log_write.c st_snapshot_*): two tables of one task -- a plain one, and
 * one whose values are lists that take APPENDs -- bound to a real state
 * log take random upserts, writes through kv_get, deletes (backward shifts
 * move entries), appends, iterations and growth over four key ranges,
 * while snapshots begin at random barriers (a fifth of them
 * materializations, some while the previous one is still being logged:
 * an abandoned checkpoint's) and are logged a random slice at a time
 * between the operations.  Whenever a snapshot has been logged entirely,
 * the log read back as recovery reads it -- every entry from the latest
 * materialization to the barrier's mark, then only SNAP entries up to the
 * tail mark -- must give exactly the tables as they were at the barrier.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "statelog.h"
#include "testenv.h"

#define SN_MAX 16000  /* keys of the largest range */
#define SN_NS 2
#define SN_SLOTS (SN_MAX * SN_NS)

/* One table's contents: plain values, or a list's length and checksum. */
typedef struct sn_state {
	bool present[SN_SLOTS];
	int64_t val[SN_SLOTS];   /* plain: the value; list: sum of elements */
	int64_t len[SN_SLOTS];   /* list: elements */
} sn_state;

static uint64_t sn_rng = 0x9e3779b97f4a7c15ull;
static uint64_t sn_rnd(void)
{
	sn_rng ^= sn_rng << 13;
	sn_rng ^= sn_rng >> 7;
	sn_rng ^= sn_rng << 17;
	return sn_rng;
}

/* The list table's value: [blist *][i64 check]. */
typedef struct lval {
	blist *l;
	int64_t check;
} lval;

static void free_lval(void *v)
{
	blist_free(((lval *)v)->l);
}

static void decode_list(const char *p, uint32_t vlen, int64_t *len, int64_t *sum)
{
	uint32_t n, el;
	cr_assert_geq(vlen, 4u + 8u);
	memcpy(&n, p, 4);
	p += 4;
	*len = n;
	*sum = 0;
	for (uint32_t i = 0; i < n; i++) {
		int64_t x;
		memcpy(&el, p, 4);
		cr_assert_eq(el, 8u);
		memcpy(&x, p + 4, 8);
		*sum += x;
		p += 12;
	}
}

/* Apply the log's entries in [a, b) to rp (only SNAP ones if snap_only), as
 * recovery does (SNAP and PUT replace a value, APPEND adds, DEL removes). */
static uint64_t runs; /* SNAPS entries replayed */

static void sn_replay(slog_pos a, slog_pos b, bool snap_only, sn_state rp[2])
{
	slog_reader *rd;
	char err[512];
	const void *fp;
	size_t fn;
	int rc;
	if (slog_pos_cmp(a, b) >= 0)
		return;
	cr_assert_eq(slog_reader_open(testenv_dir, "core-0", a, b, &rd, err, sizeof(err)), 0,
		     "%s", err);
	while ((rc = slog_next(rd, &fp, &fn, err, sizeof(err))) > 0) {
		const char *p = fp, *end = p + fn;
		st_entry e;
		while (p < end) {
			const char *next = entry_parse(p, end, &e);
			cr_assert_not_null(next, "malformed entry");
			p = next;
			if (e.kind == ST_MAT || (snap_only && e.kind != ST_SNAP && e.kind != ST_SNAPS))
				continue;
			if (e.kind == ST_SNAPS) {
				/* a run of the plain table's slots */
				cr_assert_eq(e.tab, 0);
				cr_assert_eq(e.vlen, (uint64_t)e.ns * 40);
				for (int64_t j = 0; j < e.ns; j++) {
					int64_t slot[5];
					memcpy(slot, e.vp + 40 * j, 40);
					cr_assert(slot[1] >= 0 && slot[1] < SN_MAX && slot[2] >= 0 &&
						  slot[2] < SN_NS);
					cr_assert_eq(slot[4], slot[1] ^ slot[2], "a value of another entry");
					int i = (int)(slot[1] * SN_NS + slot[2]);
					rp[0].present[i] = true;
					rp[0].val[i] = slot[3];
				}
				runs++;
				continue;
			}
			cr_assert(e.klen == 8 && e.tab < 2 && e.ns >= 0 && e.ns < SN_NS);
			int64_t key;
			memcpy(&key, e.kp, 8);
			cr_assert(key >= 0 && key < SN_MAX);
			int i = (int)(key * SN_NS + e.ns);
			sn_state *s = &rp[e.tab];
			switch (e.kind) {
			case ST_PUT:
			case ST_SNAP:
				s->present[i] = true;
				if (e.tab == 0) {
					int64_t v[2];
					cr_assert_eq(e.vlen, 16u);
					memcpy(v, e.vp, 16);
					cr_assert_eq(v[1], key ^ e.ns, "a value of another entry");
					s->val[i] = v[0];
				} else {
					decode_list(e.vp, e.vlen, &s->len[i], &s->val[i]);
				}
				break;
			case ST_APPEND: {
				int64_t x;
				cr_assert_eq(e.tab, 1);
				cr_assert_eq(e.vlen, 4u + 8u);
				memcpy(&x, e.vp + 4, 8);
				if (!s->present[i]) /* creates it, as kv_upsert did */
					s->present[i] = true;
				s->len[i]++;
				s->val[i] += x;
				break;
			}
			case ST_DEL:
				s->present[i] = false;
				s->len[i] = s->val[i] = 0;
				break;
			default:
				cr_assert_fail("entry kind %d", e.kind);
			}
		}
	}
	cr_assert_eq(rc, 0, "%s", err);
	slog_reader_close(rd);
}

static int count_entry(void *arg, skey k, int64_t ns, void *value)
{
	(void)k, (void)ns, (void)value;
	++*(size_t *)arg;
	return 0;
}

Test(snapshot, replays_to_the_tables_at_the_barrier, .init = testenv_mkdir,
     .fini = testenv_rmdir, .timeout = 300)
{
	static sn_state model[2], at_barrier[2], rp[2];
	memset(model, 0, sizeof(model));

	task *t = calloc(1, sizeof(*t));
	kdict *d = kdict_new();
	kvtab_conf pc = { .key_type = WEIR_I64, .vsize = 16 };
	kvtab_conf lc = { .key_type = WEIR_I64, .vsize = 16, .nlists = 1,
			  .free_value = free_lval };
	kvtab *tabs[2] = { kv_new(&pc, d), kv_new(&lc, d) };
	cr_assert_eq(state_register_table(t, "plain", tabs[0]), 0);
	cr_assert_eq(state_register_table(t, "lists", tabs[1]), 0);
	slog_conf sc = { .dir = testenv_dir, .prefix = "core-0", .run = 1, .core = 0,
			 .buf_size = 64 << 10, .eventfd = -1 };
	slog *log;
	cr_assert_eq(slog_open(&sc, &log), 0);
	cr_assert_eq(state_bind_log(t, log), 0);
	st_task *k = st_of(t);

	slog_pos from = { 0, 0 }, to = { 0, 0 };
	bool begun = false, have_mat = false;
	uint64_t ops = 0, snaps = 0, mats = 0, abandoned = 0, checked = 0, logged = 0;
	for (int phase = 0; phase < 4; phase++) {
		int nkeys = 2000 << phase; /* 2000 .. 16000: growth mid-snapshot */
		long nops = 80000 + 40000L * phase;
		for (long op = 0; op < nops; op++, ops++) {
			int tb = (int)(sn_rnd() & 1);
			kvtab *tab = tabs[tb];
			sn_state *m = &model[tb];
			int64_t key = (int64_t)(sn_rnd() % (uint64_t)nkeys);
			int64_t ns = (int64_t)(sn_rnd() % SN_NS);
			int i = (int)(key * SN_NS + ns);
			skey kk = key_from_value(d, WEIR_I64, (weir_value){ .i64 = key });
			uint64_t r = sn_rnd() % 1000;
			bool created;
			if (r < 500) {
				/* an upsert: add to the value, or append */
				int64_t x = (int64_t)r + 1;
				if (tb == 0) {
					int64_t *v = kv_upsert(tab, kk, ns, &created);
					cr_assert_not_null(v);
					cr_assert_eq(created, !m->present[i]);
					v[0] = (created ? 0 : v[0]) + x;
					v[1] = key ^ ns;
					kv_written(tab, v);
				} else {
					lval *v = kv_upsert(tab, kk, ns, &created);
					cr_assert_not_null(v);
					cr_assert_eq(created, !m->present[i]);
					cr_assert_eq(blist_add(&v->l, &x, 8), 0);
					kv_appended(tab, v, 0, &x, 8);
					m->len[i] = created ? 1 : m->len[i] + 1;
				}
				m->present[i] = true;
				m->val[i] = (created ? 0 : m->val[i]) + x;
			} else if (r < 580 && tb == 0) {
				/* a write through kv_get's pointer */
				int64_t *v = kv_get(tab, kk, ns);
				cr_assert_eq(v != NULL, m->present[i]);
				if (v) {
					v[0] = v[0] * 3 + 1;
					kv_written(tab, v);
					m->val[i] = m->val[i] * 3 + 1;
				}
			} else if (r < 800) {
				cr_assert_eq(kv_delete(tab, kk, ns), m->present[i]);
				m->present[i] = false;
				m->val[i] = m->len[i] = 0;
			} else if (r == 800 && sn_rnd() % 8 == 0) {
				/* an iteration (a read; it may log what it visits) */
				size_t n = 0;
				kv_foreach(tab, count_entry, &n);
				cr_assert_eq(n, kv_count(tab));
			}
			if (r >= 990 && sn_rnd() % 4 == 0) {
				/* a barrier */
				if (k->snapping)
					abandoned++;
				bool mat = !have_mat || sn_rnd() % 5 == 0;
				slog_pos f;
				cr_assert_eq(st_snapshot_begin(k, log, mat, &f), 0);
				if (mat) {
					from = f;
					have_mat = true;
					mats++;
				}
				to = slog_mark(log);
				memcpy(at_barrier, model, sizeof(model));
				begun = true;
				snaps++;
			}
			if (begun && k->snapping && sn_rnd() % 16 == 0)
				logged += st_snapshot_step(k, 1 + sn_rnd() % 300);
			if (begun && !k->snapping) {
				/* logged entirely: replay as recovery would */
				slog_pos tail = slog_mark(log);
				cr_assert_eq(slog_wait(log, slog_sync(log)), 0);
				memset(rp, 0, sizeof(rp));
				sn_replay(from, to, false, rp);
				sn_replay(to, tail, true, rp);
				for (int b = 0; b < 2; b++)
					for (int j = 0; j < SN_SLOTS; j++) {
						cr_assert_eq(rp[b].present[j], at_barrier[b].present[j],
							     "table %d entry %d: %s after replay (op %llu)",
							     b, j, rp[b].present[j] ? "present" : "absent",
							     (unsigned long long)ops);
						cr_assert_eq(rp[b].val[j], at_barrier[b].val[j],
							     "table %d entry %d: replayed %lld, was %lld",
							     b, j, (long long)rp[b].val[j],
							     (long long)at_barrier[b].val[j]);
						cr_assert_eq(rp[b].len[j], at_barrier[b].len[j]);
					}
				begun = false;
				checked++;
			}
		}
	}
	cr_assert_eq(slog_error(log), 0);
	cr_assert_gt(checked, 20u);
	cr_assert_gt(mats, 3u);
	cr_assert_gt(abandoned, 0u);
	cr_assert_gt(runs, 100u); /* the plain table's drain logs runs of slots */
	cr_log_info("snapshot: %llu operations, %llu snapshots (%llu materializations, %llu "
		    "begun over an unfinished one), %llu checked, %llu entries logged by slices, %llu runs replayed",
		    (unsigned long long)ops, (unsigned long long)snaps, (unsigned long long)mats,
		    (unsigned long long)abandoned, (unsigned long long)checked,
		    (unsigned long long)logged, (unsigned long long)runs);
	cr_assert_eq(state_bind_log(t, NULL), 0);
	cr_assert_eq(slog_close(log), 0);
	t->keyed_free(t->keyed);
	free(t);
	kv_free(tabs[0]);
	kv_free(tabs[1]);
	kdict_free(d);
}
