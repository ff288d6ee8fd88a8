/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Timer services (state.h): the pending timers of one subtask in one time
 * domain, each a (ts, key, namespace), fired in ts order and, for equal ts,
 * in the order they were added.
 *
 * A 4-ary min-heap ordered by (ts, seq), seq being a per-service counter
 * of additions, holds every timer; a 4-ary heap does half the levels of a
 * binary one and reads its children from one or two cache lines, which
 * matters at a million pending timers.  Each heap entry holds one reference
 * to its (string) key.
 *
 * With dedup, a side hash set (linear probing, backward-shift deletion)
 * maps each pending (ts, key, ns) to the seq of its live heap entry.  Add
 * is a no-op when the triple is in the set; delete just removes it from
 * the set, which makes its heap entry stale (Redis-style lazy deletion): a
 * heap entry is live only while the set maps its triple to its own seq.
 * Stale entries are dropped, and their keys released, when they reach the
 * top of the heap; the top is kept live after every pop and delete, so
 * tsvc_next() is exact.
 *
 * Beside the heap, an in-order lane: a timer whose ts is at or after the
 * last timer in the lane is appended there instead (a FIFO array, sorted
 * by construction).  Aligned windows register timers in time order — a
 * million keys' windows all end at the same ts — so adding and popping
 * them costs O(1) and reads memory sequentially; only out-of-order timers
 * (late data, process functions) pay for the heap.  Pop takes the smaller
 * of the two heads by (ts, seq), so the order is the same as one heap's.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "keyhash.h"
#include "state.h"

typedef struct tentry {
	int64_t ts;
	uint64_t seq;
	int64_t ns;
	skey key;
} tentry;

typedef struct tset_slot {
	int64_t ts;
	int64_t ns;
	skey key;
	uint64_t seq; /* 0: empty */
} tset_slot;

struct tsvc {
	tentry *heap;
	size_t n, cap;
	tentry *lane;      /* in-order lane: entries [lhead, ltail) */
	size_t lhead, ltail, lcap;
	uint64_t seq;      /* last seq handed out */
	size_t live;       /* pending timers (heap entries minus stale ones) */
	kdict *d;
	weir_type key_type;
	bool dedup;
	st_bind *bind;     /* state log, NULL when not logged */
	const st_log_ops *log; /* how to log through bind (state.h) */
	tset_slot *set;    /* dedup only */
	size_t set_mask, set_count;
	int set_shift;     /* 64 - log2(set capacity) */
};

#define ARITY 4
#define SET_MIN_CAP 64

static inline bool before(const tentry *a, const tentry *b)
{
	return a->ts < b->ts || (a->ts == b->ts && a->seq < b->seq);
}

static void sift_up(tentry *h, size_t i)
{
	tentry e = h[i];
	while (i > 0) {
		size_t p = (i - 1) / ARITY;
		if (!before(&e, &h[p]))
			break;
		h[i] = h[p];
		i = p;
	}
	h[i] = e;
}

static void sift_down(tentry *h, size_t n, size_t i)
{
	tentry e = h[i];
	for (;;) {
		size_t c = i * ARITY + 1;
		if (c >= n)
			break;
		size_t best = c, end = c + ARITY < n ? c + ARITY : n;
		for (size_t j = c + 1; j < end; j++)
			if (before(&h[j], &h[best]))
				best = j;
		if (!before(&h[best], &e))
			break;
		h[i] = h[best];
		i = best;
	}
	h[i] = e;
}

static tentry heap_pop(tsvc *s)
{
	tentry top = s->heap[0];
	s->heap[0] = s->heap[--s->n];
	if (s->n)
		sift_down(s->heap, s->n, 0);
	return top;
}

/* ---- the dedup set -------------------------------------------------------- */

static inline uint64_t tkey_hash(int64_t ts, skey k, int64_t ns)
{
	return hash_mix64(k.hash ^ ((uint64_t)ts * 0x9e3779b97f4a7c15ULL) ^
			  ((uint64_t)ns * 0xc2b2ae3d27d4eb4fULL));
}

static inline size_t set_home(const tsvc *s, int64_t ts, skey k, int64_t ns)
{
	return (size_t)(tkey_hash(ts, k, ns) >> s->set_shift);
}

static inline bool set_eq(const tset_slot *e, int64_t ts, skey k, int64_t ns)
{
	return e->ts == ts && e->ns == ns && key_eq(e->key, k);
}

/* Index of the triple, or of the empty slot ending its probe sequence. */
static size_t set_find(const tsvc *s, int64_t ts, skey k, int64_t ns,
		       bool *found)
{
	size_t i = set_home(s, ts, k, ns);
	for (;; i = (i + 1) & s->set_mask) {
		const tset_slot *e = &s->set[i];
		if (!e->seq) {
			*found = false;
			return i;
		}
		if (set_eq(e, ts, k, ns)) {
			*found = true;
			return i;
		}
	}
}

static void set_remove_at(tsvc *s, size_t i)
{
	for (size_t j = i;;) {
		j = (j + 1) & s->set_mask;
		tset_slot *e = &s->set[j];
		if (!e->seq)
			break;
		size_t home = set_home(s, e->ts, e->key, e->ns);
		if (((j - home) & s->set_mask) >= ((j - i) & s->set_mask)) {
			s->set[i] = *e;
			i = j;
		}
	}
	s->set[i].seq = 0;
	s->set_count--;
}

static int set_grow(tsvc *s)
{
	size_t ocap = s->set_mask + 1, ncap = ocap * 2;
	tset_slot *n = calloc(ncap, sizeof(*n)), *old = s->set;
	if (!n)
		return -ENOMEM;
	s->set = n;
	s->set_mask = ncap - 1;
	s->set_shift--;
	for (size_t i = 0; i < ocap; i++) {
		if (!old[i].seq)
			continue;
		size_t j = set_home(s, old[i].ts, old[i].key, old[i].ns);
		while (n[j].seq)
			j = (j + 1) & s->set_mask;
		n[j] = old[i];
	}
	free(old);
	return 0;
}

/* A heap entry is stale once its triple left the set or was re-added. */
static bool stale(const tsvc *s, const tentry *e)
{
	if (!s->dedup)
		return false;
	bool found;
	size_t i = set_find(s, e->ts, e->key, e->ns, &found);
	return !found || s->set[i].seq != e->seq;
}

/* Drop stale entries from the top so that the top is a pending timer. */
static void purge_top(tsvc *s)
{
	while (s->n && stale(s, &s->heap[0])) {
		tentry e = heap_pop(s);
		key_release(s->d, s->key_type, e.key);
	}
	while (s->lhead < s->ltail && stale(s, &s->lane[s->lhead])) {
		key_release(s->d, s->key_type, s->lane[s->lhead].key);
		s->lhead++;
	}
	if (s->lhead == s->ltail)
		s->lhead = s->ltail = 0;
}

/* The earliest entry: the lane's head or the heap's top (NULL if none). */
static const tentry *first(const tsvc *s, bool *from_lane)
{
	const tentry *l = s->lhead < s->ltail ? &s->lane[s->lhead] : NULL;
	const tentry *h = s->n ? &s->heap[0] : NULL;
	*from_lane = l && (!h || before(l, h));
	return *from_lane ? l : h;
}

/* Room for one more lane entry: reuse the consumed prefix, else grow. */
static int lane_reserve(tsvc *s)
{
	if (s->ltail < s->lcap)
		return 0;
	if (s->lhead > 0 && s->lhead >= s->lcap / 2) {
		memmove(s->lane, s->lane + s->lhead, (s->ltail - s->lhead) * sizeof(tentry));
		s->ltail -= s->lhead;
		s->lhead = 0;
		return 0;
	}
	size_t ncap = s->lcap ? s->lcap * 2 : 64;
	tentry *nl = realloc(s->lane, ncap * sizeof(*nl));
	if (!nl)
		return -ENOMEM;
	s->lane = nl;
	s->lcap = ncap;
	return 0;
}

/* ---- the service ---------------------------------------------------------- */

tsvc *tsvc_new(kdict *d, weir_type key_type, bool dedup)
{
	tsvc *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->d = d;
	s->key_type = key_type;
	s->dedup = dedup;
	if (dedup) {
		s->set = calloc(SET_MIN_CAP, sizeof(tset_slot));
		if (!s->set) {
			free(s);
			return NULL;
		}
		s->set_mask = SET_MIN_CAP - 1;
		s->set_shift = 64 - 6; /* log2(SET_MIN_CAP) */
	}
	return s;
}

void tsvc_free(tsvc *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		key_release(s->d, s->key_type, s->heap[i].key);
	for (size_t i = s->lhead; i < s->ltail; i++)
		key_release(s->d, s->key_type, s->lane[i].key);
	free(s->lane);
	free(s->heap);
	free(s->set);
	free(s);
}

int tsvc_add(tsvc *s, int64_t ts, skey k, int64_t ns)
{
	if (s->key_type == WEIR_STR && !k.v)
		return -ENOMEM; /* key_of could not intern it */
	size_t si = 0;
	if (s->dedup) {
		bool found;
		si = set_find(s, ts, k, ns, &found);
		if (found)
			return 0;
		if (s->set_count + 1 > (s->set_mask + 1) / 4 * 3) {
			if (set_grow(s))
				return -ENOMEM;
			si = set_find(s, ts, k, ns, &found);
		}
	}
	bool in_order = s->lhead == s->ltail || ts >= s->lane[s->ltail - 1].ts;
	if (in_order) {
		if (lane_reserve(s))
			return -ENOMEM;
	} else if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 64;
		tentry *nh = realloc(s->heap, ncap * sizeof(*nh));
		if (!nh)
			return -ENOMEM;
		s->heap = nh;
		s->cap = ncap;
	}
	uint64_t seq = ++s->seq;
	if (s->dedup) {
		s->set[si] = (tset_slot){ .ts = ts, .ns = ns, .key = k, .seq = seq };
		s->set_count++;
	}
	tentry e = { .ts = ts, .seq = seq, .ns = ns, .key = k };
	if (in_order) {
		s->lane[s->ltail++] = e;
	} else {
		s->heap[s->n] = e;
		sift_up(s->heap, s->n++);
	}
	key_retain(s->key_type, k);
	s->live++;
	if (s->bind)
		s->log->timer(s->bind, true, s->key_type,
			      &(timer){ .ts = ts, .ns = ns, .key = k });
	return 0;
}

int tsvc_delete(tsvc *s, int64_t ts, skey k, int64_t ns)
{
	if (!s->dedup)
		return -ENOTSUP;
	bool found;
	size_t i = set_find(s, ts, k, ns, &found);
	if (!found)
		return -ENOENT;
	set_remove_at(s, i);
	s->live--;
	purge_top(s);
	if (s->bind)
		s->log->timer(s->bind, false, s->key_type,
			      &(timer){ .ts = ts, .ns = ns, .key = k });
	return 0;
}

bool tsvc_pop(tsvc *s, int64_t upto, timer *out)
{
	bool from_lane;
	const tentry *f = first(s, &from_lane);
	if (!f || f->ts > upto)
		return false;
	tentry e;
	if (from_lane) {
		e = s->lane[s->lhead++];
		if (s->lhead == s->ltail)
			s->lhead = s->ltail = 0;
	} else {
		e = heap_pop(s);
	}
	if (s->dedup) {
		bool found;
		size_t i = set_find(s, e.ts, e.key, e.ns, &found);
		/* purge_top keeps the top live */
		if (!found || s->set[i].seq != e.seq)
			abort();
		set_remove_at(s, i);
	}
	s->live--;
	out->ts = e.ts;
	out->ns = e.ns;
	out->key = e.key; /* the heap's reference passes to the caller */
	purge_top(s);
	if (s->bind)
		s->log->timer(s->bind, false, s->key_type, out);
	return true;
}

void tsvc_bind(tsvc *s, const st_log_ops *ops, st_bind *b)
{
	s->bind = b;
	s->log = b ? ops : NULL;
}
weir_type tsvc_key_type(const tsvc *s) { return s->key_type; }
kdict *tsvc_dict(const tsvc *s) { return s->d; }

/* Is heap or lane entry e pending (not made stale by a delete)? */
static bool entry_live(tsvc *s, const tentry *e)
{
	if (!s->dedup)
		return true;
	bool found;
	size_t i = set_find(s, e->ts, e->key, e->ns, &found);
	return found && s->set[i].seq == e->seq;
}

void tsvc_foreach(tsvc *s, int (*fn)(void *arg, const timer *tm), void *arg)
{
	for (size_t i = s->lhead; i < s->ltail; i++)
		if (entry_live(s, &s->lane[i]) &&
		    fn(arg, &(timer){ s->lane[i].ts, s->lane[i].ns, s->lane[i].key }))
			return;
	for (size_t i = 0; i < s->n; i++)
		if (entry_live(s, &s->heap[i]) &&
		    fn(arg, &(timer){ s->heap[i].ts, s->heap[i].ns, s->heap[i].key }))
			return;
}

int64_t tsvc_next(const tsvc *s)
{
	bool from_lane;
	const tentry *f = first(s, &from_lane);
	return f ? f->ts : INT64_MAX;
}

size_t tsvc_count(const tsvc *s)
{
	return s->live;
}
