/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keys, keyed tables and variable-size values (state.h): the interning
 * dictionary of string keys (kdict), the (key, namespace) -> value table
 * (kvtab) that window and process-function operators keep their state in,
 * and the byte-string list (blist) and map (bmap) that list and map state
 * values point to.  Everything here belongs to one subtask on one core.
 *
 * kvtab is an open-addressing table with linear probing, backward-shift
 * deletion (no tombstones) and a power-of-two capacity that doubles at 3/4
 * load.  A slot is the entry drawn in state.h, nothing more:
 *
 *   +-----------+---------+---------+--------------------+----------------+
 *   | khash u64 | key u64 | ns i64  | [written_ms i64]   | value[vsize]   |
 *   +-----------+---------+---------+--------------------+----------------+
 *
 * An empty slot holds khash 0 and key 1, which no real key can: hash_mix64
 * is a bijection with hash_mix64(0) = 0, so a fixed-width key with hash 0
 * is the cell 0, and 1 is never a kstr pointer.  So a probe reads only the
 * slot it compares, and a lookup of a key that is present usually costs one
 * cache miss, which kv_prefetch() starts early.  The home slot is taken
 * from bits 32 and up of (khash ^ ns * phi) * MIX, masked to the capacity:
 * not the low bits of the hash, which pick the key group and so are nearly
 * constant within one subtask; and not its top bits either, because then
 * a table's slot order is the hash order, and inserting the entries of a
 * big table in that order (a restore replaying a materialization, which is
 * written in slot order) into a small growing one piles them all into one
 * cluster: quadratic, minutes for a few million keys.  Masking makes slot
 * order at one capacity cycle through every slot at a smaller one.  (The
 * same holds for the dictionary of string keys.)
 *
 * With a TTL, each kv_upsert also examines two slots at a cursor that
 * sweeps the table and deletes expired entries there, so state of keys that
 * are never seen again is reclaimed within about capacity/2 upserts.  The
 * slot array never shrinks (a window's keys come back with the next one).
 *
 * Size: a slot is 24 (32 with TTL) + vsize rounded to 8 bytes; at 3/4
 * maximum load a key costs 1.33 to 2.67 slots, e.g. with vsize 16 and 1 M
 * keys 2^21 slots of 40 bytes, 84 bytes per key.  Arrays of 2 MiB or more
 * are asked to be backed by transparent huge pages.
 *
 * Dirty tracking.  A table bound to a state log (kv_bind) does not log a
 * PUT per kv_written: it sets the slot's bit in a bitmap (one bit per slot,
 * 1/(8 * slot size) of the slots' memory), and kv_flush_dirty(), which the
 * store calls at every checkpoint barrier before it marks the task's log
 * position (state/checkpoint.c, through log_write.c), logs one PUT per set
 * bit, in slot order, with the value as it is then, through the table's
 * binding (state.h st_log_ops).  A hot key updated a million times between
 * two checkpoints thus costs one entry instead of a million (a running sum
 * over 4 M keys wrote ~56 bytes per record, ~400 MB/s, which cost a third
 * of its throughput).  kv_written costs a multiply and an OR, and
 * kv_prefetch fetches the bit's word with the slot (on 4 M keys, where the
 * bitmap is 1 MiB: 0-6 ns per update with that prefetch, 6-30 without).
 * The bit follows its entry wherever the entry goes: kv_remove_at moves it
 * with a backward-shifted entry and clears the emptied slot's, kv_resize
 * moves every set bit to its entry's new slot (rather than flushing first:
 * a key written again after the growth would then cost two entries), and
 * kv_clear_all clears them all.  So a set bit always names an entry
 * (perhaps expired) written since the last flush, and every such entry
 * has its bit.
 *
 * Why a log with deferred PUTs still replays to the state at the barrier.
 * Within one checkpoint interval, DEL (kv_delete), APPEND (kv_appended) and
 * the timer entries are still logged at once, so they precede the
 * interval's deferred PUTs; recovery replays a task's range [its
 * materialization, its barrier mark) in log order.  Take a key:
 *
 *   - bit set at the barrier: its entry exists and the PUT carries its
 *     whole value as it is at the barrier, after every DEL or APPEND of
 *     the key this interval, so replaying [..., DEL/APPEND..., PUT] leaves
 *     exactly that value (a PUT replaces the whole value, lists included);
 *   - deleted after it became dirty (kv_delete): its entry and bit are
 *     gone, its DEL is in the log after any earlier entry of the key; if it
 *     was created again, the new entry has its own bit, and [DEL, PUT] or
 *     [DEL, APPEND...] rebuilds it;
 *   - bit clear: no kv_written since the last flush, so the log already
 *     holds its value (earlier PUTs, a materialization, and this
 *     interval's APPENDs, which are the only changes since);
 *   - swept by the TTL sweep while dirty: kv_sweep logs its PUT before it
 *     removes it, as kv_written did before (a sweep logs no DEL, so an
 *     expired key comes back at a restore, with fresh TTL, as it always
 *     did: see docs/checkpoints.md "Recovery"), instead of leaving the log
 *     with an older value of the key or none.
 *
 * Every mutation path, and why it is covered: kv_upsert of a new key
 * writes a zeroed value that is logged only once the caller's kv_written /
 * kv_appended records it (as before); its expired-entry restart rewrites
 * the value in place, in the same slot, and the caller's kv_written sets
 * that slot's bit (a restart without one logs the restarted value if the
 * bit was already set, the value at the barrier either way); kv_upsert's
 * growth and kv_reserve go through kv_resize (bits move); kv_upsert's
 * sweep through kv_sweep (above); kv_written sets the bit; kv_appended
 * logs its APPEND at once; kv_delete logs its DEL at once and kv_remove_at
 * clears the bit; kv_clear_all (not logged, a failed restore starting
 * over) clears the bitmap; restore (apply in recovery.c) writes values
 * without kv_written into tables that are not bound yet (kv_bind comes
 * after it), and the first barrier of a run materializes them.  A caller
 * that changes a value without kv_written (the window operator's early-
 * firing flag) is logged with the value's next PUT, as before, or at the
 * barrier if the entry is dirty anyway.
 *
 * Asynchronous snapshots.  At a checkpoint barrier the store does not
 * flush (kv_flush_dirty pauses the core for 35-45 ns per changed entry:
 * 0.2-0.3 s per checkpoint with a gigabyte of state); it calls
 * kv_snapshot_begin, which only swaps the dirty bitmap with the clear
 * `snap` one (or, for a materialization, sets every bit of `snap`): the
 * entries with a `snap` bit are the snapshot's, their values as they are
 * now are its contents, and the core goes on.  kv_snapshot_step then logs
 * them as SNAP entries, a slice at a time between reactor turns, in slot
 * order, clearing each bit.  What keeps the logged values the values at
 * the barrier is copy-on-write at entry granularity: before an entry can
 * change, move or go -- kv_get and kv_upsert hand out a pointer to it,
 * kv_delete and the TTL sweep remove it, kv_remove_at shifts it back,
 * kv_foreach hands it to a function -- snap_touch logs it if its bit is
 * still set.  Nothing is copied in memory: the frozen version goes
 * straight into the log, so a snapshot costs one bit per slot (the
 * second bitmap), not a copy of the state.  A shifted entry is logged
 * rather than its bit moved back, where the drain may already have
 * passed; kv_resize moves the bits and restarts the drain from slot 0; an
 * insert clears the bit of its (empty) slot, which a materialization may
 * have set.  A barrier that finds a snapshot still being logged (its
 * checkpoint was abandoned) ORs the dirty bits into it: an entry not
 * logged yet has not changed since, so its value is also the new
 * barrier's.  Recovery takes, after the barrier's mark, only SNAP entries
 * (log_write.h): the changes made meanwhile belong to the next
 * checkpoint, and every entry's SNAP precedes them in the log.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "keyhash.h"
#include "state.h"

#define PHI 0x9e3779b97f4a7c15ULL
#define MIX 0xff51afd7ed558ccdULL

/* Slot bits of a hash (see the top of the file); capacities < 2^32. */
static inline size_t home_bits(uint64_t h)
{
	return (size_t)((h * MIX) >> 32);
}

static inline int log2_u64(uint64_t x)
{
	return 63 - __builtin_clzll(x);
}

/*
 * A table that is written before it is read (see table_alloc in
 * operators/aggregate.c): filling every slot maps every page now, with
 * write faults, instead of a zero-page read fault and a copy-on-write fault
 * plus TLB shootdown on the first insert.
 */
#define HUGE_PAGE (2u << 20)

static void *slots_alloc(size_t cap, size_t slot_size)
{
	if (cap > SIZE_MAX / slot_size)
		return NULL;
	size_t n = cap * slot_size;
	if (n < HUGE_PAGE)
		return malloc(n);
	/*
	 * A big table is probed at random: with 4 KiB pages nearly every
	 * probe is also a TLB miss.  Transparent huge pages (enabled=madvise
	 * on most distributions) need 2 MiB alignment and the advice.
	 */
	void *p;
	if (posix_memalign(&p, HUGE_PAGE, n))
		return NULL;
	madvise(p, n, MADV_HUGEPAGE); /* only a hint: failure is harmless */
	return p;
}

/* ---- kdict: interned string keys ------------------------------------------------ */

typedef struct kd_slot {
	uint64_t hash;
	kstr *s; /* NULL: empty */
} kd_slot;

struct kdict {
	kd_slot *slots;
	size_t mask;
	size_t count;
};

#define KD_MIN_CAP 64

static inline size_t kd_home(const kdict *d, uint64_t h)
{
	return home_bits(h) & d->mask;
}

kdict *kdict_new(void)
{
	kdict *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->slots = calloc(KD_MIN_CAP, sizeof(kd_slot));
	if (!d->slots) {
		free(d);
		return NULL;
	}
	d->mask = KD_MIN_CAP - 1;
	return d;
}

void kdict_free(kdict *d)
{
	if (!d)
		return;
	/* All strings should have been released; free stragglers anyway. */
	for (size_t i = 0; i <= d->mask; i++)
		free(d->slots[i].s);
	free(d->slots);
	free(d);
}

size_t kdict_count(const kdict *d)
{
	return d->count;
}

static bool kd_resize(kdict *d, size_t ncap)
{
	kd_slot *n = calloc(ncap, sizeof(kd_slot));
	if (!n)
		return false;
	kd_slot *old = d->slots;
	size_t ocap = d->mask + 1;
	d->slots = n;
	d->mask = ncap - 1;
	for (size_t i = 0; i < ocap; i++) {
		if (!old[i].s)
			continue;
		size_t j = kd_home(d, old[i].hash);
		while (n[j].s)
			j = (j + 1) & d->mask;
		n[j] = old[i];
	}
	free(old);
	return true;
}

static bool kd_grow(kdict *d)
{
	return kd_resize(d, (d->mask + 1) * 2);
}

/* The capacity, from cap doubling, that holds n entries at 3/4 load. */
static size_t cap_for(size_t cap, size_t n)
{
	while (cap / 4 * 3 < n)
		cap *= 2;
	return cap;
}

int kdict_reserve(kdict *d, size_t n)
{
	size_t cap = cap_for(d->mask + 1, n);
	if (cap == d->mask + 1)
		return 0;
	return kd_resize(d, cap) ? 0 : -ENOMEM;
}

/* The interned copy of bytes p[0..len), created with refs 0 if absent;
 * NULL on ENOMEM. */
static kstr *kd_intern(kdict *d, uint64_t h, const char *p, uint32_t len)
{
	size_t i = kd_home(d, h);
	for (;; i = (i + 1) & d->mask) {
		kstr *s = d->slots[i].s;
		if (!s)
			break;
		if (d->slots[i].hash == h && s->len == len &&
		    memcmp(s->data, p, len) == 0)
			return s;
	}
	if (d->count + 1 > (d->mask + 1) / 4 * 3) {
		if (!kd_grow(d))
			return NULL;
		i = kd_home(d, h);
		while (d->slots[i].s)
			i = (i + 1) & d->mask;
	}
	kstr *s = malloc(sizeof(kstr) + (size_t)len + 1);
	if (!s)
		return NULL;
	s->refs = 0;
	s->len = len;
	s->hash = h;
	if (len)
		memcpy(s->data, p, len);
	s->data[len] = '\0';
	d->slots[i].hash = h;
	d->slots[i].s = s;
	d->count++;
	return s;
}

/* Remove s from the dictionary (backward shift) and free it. */
static void kd_drop(kdict *d, kstr *s)
{
	size_t i = kd_home(d, s->hash);
	while (d->slots[i].s != s) {
		/* a kstr not in its dictionary is an impossible state */
		if (!d->slots[i].s)
			abort();
		i = (i + 1) & d->mask;
	}
	for (size_t j = i;;) {
		j = (j + 1) & d->mask;
		if (!d->slots[j].s)
			break;
		size_t home = kd_home(d, d->slots[j].hash);
		if (((j - home) & d->mask) >= ((j - i) & d->mask)) {
			d->slots[i] = d->slots[j];
			i = j;
		}
	}
	d->slots[i].s = NULL;
	d->slots[i].hash = 0;
	d->count--;
	free(s);
}

static inline skey key_fixed(uint64_t v)
{
	return (skey){ .hash = hash_mix64(v), .v = v };
}

static skey key_str(kdict *d, const char *p, uint32_t len)
{
	uint64_t h = XXH3_64bits(p, len);
	kstr *s = kd_intern(d, h, p, len);
	/* v = 0 (no kstr) stands for ENOMEM: kv_upsert then returns NULL,
	 * tsvc_add -ENOMEM, and retain/release/done ignore it. */
	return (skey){ .hash = h, .v = (uintptr_t)s };
}

skey key_of(kdict *d, weir_type type, const weir_batch *b, int col,
	    uint32_t row)
{
	switch (type) {
	case WEIR_STR: {
		uint32_t len;
		const char *p = weir_batch_str(b, col, row, &len);
		return key_str(d, p, len);
	}
	case WEIR_BOOL:
		return key_fixed(weir_col_bool(b, col)[row] ? 1 : 0);
	default:
		return key_fixed((uint64_t)weir_col_i64(b, col)[row]);
	}
}

skey key_from_value(kdict *d, weir_type type, weir_value v)
{
	switch (type) {
	case WEIR_STR:
		return key_str(d, v.str.ptr, v.str.len);
	case WEIR_BOOL:
		return key_fixed(v.b ? 1 : 0);
	case WEIR_F64: {
		uint64_t bits;
		memcpy(&bits, &v.f64, 8);
		return key_fixed(bits);
	}
	default:
		return key_fixed((uint64_t)v.i64);
	}
}

void key_retain(weir_type type, skey k)
{
	if (type == WEIR_STR && k.v)
		((kstr *)(uintptr_t)k.v)->refs++;
}

void key_release(kdict *d, weir_type type, skey k)
{
	if (type != WEIR_STR || !k.v)
		return;
	kstr *s = (kstr *)(uintptr_t)k.v;
	assert(s->refs > 0);
	if (--s->refs == 0)
		kd_drop(d, s);
}

void key_done(kdict *d, weir_type type, skey k)
{
	if (type != WEIR_STR || !k.v)
		return;
	kstr *s = (kstr *)(uintptr_t)k.v;
	if (s->refs == 0)
		kd_drop(d, s);
}

weir_value key_value(weir_type type, skey k)
{
	weir_value v;
	memset(&v, 0, sizeof(v));
	switch (type) {
	case WEIR_STR: {
		const kstr *s = (const kstr *)(uintptr_t)k.v;
		if (s) {
			v.str.ptr = s->data;
			v.str.len = s->len;
		}
		break;
	}
	case WEIR_BOOL:
		v.b = k.v != 0;
		break;
	default:
		v.i64 = (int64_t)k.v; /* f64: the same bits */
	}
	return v;
}

/* ---- kvtab ------------------------------------------------------------------------ */

/* Words of an entry. */
enum { E_HASH = 0, E_KEY = 1, E_NS = 2, E_WRITTEN = 3 };
#define EMPTY_KEY 1

struct kvtab {
	/* hot: read by every lookup */
	char *slots;
	size_t mask;
	uint32_t slot_size; /* bytes per slot, a multiple of 8 */
	uint32_t voff;      /* offset of the value in a slot: 24 or 32 */
	int64_t ttl_ms;
	int64_t (*now_ms)(void);
	/* cold */
	size_t count;
	size_t grow_at;
	size_t cursor;      /* TTL cleanup sweep position */
	/* TTL: the clock as read by the last kv_upsert and the value it
	 * returned, so the kv_written that follows needs no second read */
	int64_t upsert_now;
	void *upsert_value;
	/* Dirty bits (bound tables only, else NULL): bit i of word i / 64 is
	 * slot i's, see the top of the file.  Slot index of a slot's byte
	 * offset without a division: slot_size = odd << slot_shift, and
	 * slot_inv * odd = 1 mod 2^64, so offset / slot_size is
	 * (offset >> slot_shift) * slot_inv, exact for multiples. */
	uint64_t *dirty;
	/* The snapshot in progress (bound tables only): bit i of `snap` is
	 * set while slot i's entry still has to be logged with its value at
	 * the barrier (kv_snapshot_begin); `snapping` while any may be set,
	 * `snap_word` the drain's next word.  See "Asynchronous snapshots". */
	uint64_t *snap;
	bool snapping;
	bool snap_runs;     /* log the drain's entries as runs of slots */
	size_t snap_word;
	uint64_t slot_inv;
	uint32_t slot_shift;
	uint32_t vsize;
	uint64_t writes;
	weir_type key_type;
	void (*free_value)(void *value);
	kdict *d;
	kvtab_conf conf;
	st_bind *bind;      /* state log of the task, NULL when not logged */
	const st_log_ops *log; /* how to log through bind (state.h) */
};

#define KV_MIN_CAP 64

/*
 * The wall clock at tick resolution (1-4 ms): CLOCK_REALTIME reads the TSC
 * behind an lfence, which costs ~16 ns and drains the memory-level
 * parallelism prefetching builds up; with it a TTL table did 13 M
 * upserts/s on 1 M keys, with the coarse clock 23 M/s.  A TTL may thus
 * end up to one tick early or late.
 */
static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline uint64_t *kv_slot(const kvtab *t, size_t i)
{
	return (uint64_t *)(t->slots + i * t->slot_size);
}

static inline size_t kv_home(const kvtab *t, uint64_t khash, int64_t ns)
{
	return home_bits(khash ^ ((uint64_t)ns * PHI)) & t->mask;
}

static inline bool kv_empty(const uint64_t *e)
{
	return e[E_KEY] == EMPTY_KEY && e[E_HASH] == 0;
}

static inline void kv_clear(uint64_t *e)
{
	e[E_HASH] = 0;
	e[E_KEY] = EMPTY_KEY;
}

static inline bool kv_expired(const kvtab *t, const uint64_t *e, int64_t now)
{
	return now - (int64_t)e[E_WRITTEN] >= t->ttl_ms;
}

/* ---- dirty bits ---- */

static inline size_t kv_index(const kvtab *t, const uint64_t *e)
{
	size_t off = (size_t)((const char *)e - t->slots);
	size_t i = (size_t)(((uint64_t)off >> t->slot_shift) * t->slot_inv);
	assert(i <= t->mask && i * t->slot_size == off);
	return i;
}

static inline bool bit_get(const uint64_t *b, size_t i)
{
	return (b[i >> 6] >> (i & 63)) & 1;
}

static inline void bit_set(uint64_t *b, size_t i)
{
	b[i >> 6] |= 1ull << (i & 63);
}

static inline void bit_clear(uint64_t *b, size_t i)
{
	b[i >> 6] &= ~(1ull << (i & 63));
}

/* A bitmap for cap slots (a power of two >= KV_MIN_CAP), all clear. */
static uint64_t *dirty_new(size_t cap)
{
	return calloc(cap / 64, sizeof(uint64_t));
}

static void dirty_clear_all(kvtab *t)
{
	if (t->dirty)
		memset(t->dirty, 0, (t->mask + 1) / 64 * sizeof(uint64_t));
}

/* Bit i of bitmap b goes to bit j (an entry moved from slot i to j). */
static inline void bit_move(uint64_t *b, size_t i, size_t j)
{
	if (bit_get(b, i))
		bit_set(b, j);
	else
		bit_clear(b, j);
}

/*
 * Slot i's entry is about to change, move or go: if the snapshot in
 * progress has not logged it yet, log it now, with its value at the
 * barrier (nothing changed it since, or this would have run before).
 */
static inline void snap_touch(kvtab *t, size_t i)
{
	if (__builtin_expect(t->snapping, 0) && bit_get(t->snap, i)) {
		uint64_t *e = (uint64_t *)(t->slots + i * t->slot_size);
		bit_clear(t->snap, i);
		t->log->snap(t->bind, t, (skey){ e[E_HASH], e[E_KEY] }, (int64_t)e[E_NS],
			     (char *)e + t->voff);
	}
}

static char *kv_slots_new(size_t cap, size_t slot_size)
{
	char *s = slots_alloc(cap, slot_size);
	if (!s)
		return NULL;
	for (size_t i = 0; i < cap; i++)
		kv_clear((uint64_t *)(s + i * slot_size));
	return s;
}

kvtab *kv_new(const kvtab_conf *c, kdict *d)
{
	kvtab *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->vsize = c->vsize;
	t->voff = c->ttl_ms > 0 ? 32 : 24;
	t->slot_size = t->voff + ((c->vsize + 7u) & ~7u);
	t->ttl_ms = c->ttl_ms > 0 ? c->ttl_ms : 0;
	t->now_ms = wall_ms;
	t->key_type = c->key_type;
	t->free_value = c->free_value;
	t->d = d;
	t->conf = *c;
	/* the inverse of slot_size's odd part, by Newton's iteration (each
	 * step doubles the correct low bits: 3 -> 6 -> ... -> 96) */
	t->slot_shift = (uint32_t)__builtin_ctz(t->slot_size);
	uint64_t odd = t->slot_size >> t->slot_shift, inv = odd;
	for (int i = 0; i < 5; i++)
		inv *= 2 - odd * inv;
	t->slot_inv = inv;
	t->slots = kv_slots_new(KV_MIN_CAP, t->slot_size);
	if (!t->slots) {
		free(t);
		return NULL;
	}
	t->mask = KV_MIN_CAP - 1;
	t->grow_at = KV_MIN_CAP / 4 * 3;
	return t;
}

/* Release what an entry holds: its value's memory and its key. */
static void kv_release_entry(kvtab *t, uint64_t *e)
{
	if (t->free_value)
		t->free_value((char *)e + t->voff);
	skey k = { .hash = e[E_HASH], .v = e[E_KEY] };
	key_release(t->d, t->key_type, k);
}

void kv_clear_all(kvtab *t)
{
	for (size_t i = 0; i <= t->mask; i++) {
		uint64_t *e = kv_slot(t, i);
		if (!kv_empty(e)) {
			kv_release_entry(t, e);
			kv_clear(e);
		}
	}
	t->count = 0;
	t->cursor = 0;
	t->upsert_value = NULL;
	dirty_clear_all(t); /* no entry left to log */
	if (t->snap)
		memset(t->snap, 0, (t->mask + 1) / 64 * sizeof(uint64_t));
	t->snapping = false;
}

void kv_free(kvtab *t)
{
	if (!t)
		return;
	for (size_t i = 0; i <= t->mask; i++) {
		uint64_t *e = kv_slot(t, i);
		if (!kv_empty(e))
			kv_release_entry(t, e);
	}
	free(t->slots);
	free(t->dirty);
	free(t->snap);
	free(t);
}

/* Empty slot i, shifting later entries of its cluster back (the entry's
 * memory must have been released).  A shifted entry takes its dirty bit
 * along; the removed entry's bit goes (its DEL, if any, is logged).  A
 * shifted entry that the snapshot in progress has not logged yet is
 * logged first. */
static void kv_remove_at(kvtab *t, size_t i)
{
	uint64_t *dirty = t->dirty, *snap = t->snapping ? t->snap : NULL;
	t->upsert_value = NULL;
	for (size_t j = i;;) {
		j = (j + 1) & t->mask;
		uint64_t *e = kv_slot(t, j);
		if (kv_empty(e))
			break;
		size_t home = kv_home(t, e[E_HASH], (int64_t)e[E_NS]);
		if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
			/* A snapshot's bit does not move: moved back, it
			 * could land behind the drain; the entry is logged
			 * before it moves instead. */
			if (snap) {
				snap_touch(t, j);
				bit_clear(snap, i);
			}
			memcpy(kv_slot(t, i), e, t->slot_size);
			if (dirty)
				bit_move(dirty, j, i);
			i = j;
		}
	}
	kv_clear(kv_slot(t, i));
	if (dirty)
		bit_clear(dirty, i);
	if (snap)
		bit_clear(snap, i);
	t->count--;
}

/* Rehash into ncap slots (a power of two that holds count at 3/4 load).
 * Dirty bits move with their entries. */
static bool kv_resize(kvtab *t, size_t ncap)
{
	size_t ocap = t->mask + 1;
	char *n = kv_slots_new(ncap, t->slot_size), *old = t->slots;
	uint64_t *nd = NULL, *od = t->dirty, *ns = NULL, *os = t->snap;
	if (!n)
		return false;
	if ((od && !(nd = dirty_new(ncap))) || (os && !(ns = dirty_new(ncap)))) {
		free(nd);
		free(n);
		return false;
	}
	t->slots = n;
	t->dirty = nd;
	t->snap = ns;
	t->snap_word = 0; /* the drain starts over: the bits moved */
	t->mask = ncap - 1;
	t->grow_at = ncap / 4 * 3;
	t->cursor = 0;
	t->upsert_value = NULL;
	for (size_t i = 0; i < ocap; i++) {
		uint64_t *e = (uint64_t *)(old + i * t->slot_size);
		if (kv_empty(e))
			continue;
		size_t j = kv_home(t, e[E_HASH], (int64_t)e[E_NS]);
		while (!kv_empty(kv_slot(t, j)))
			j = (j + 1) & t->mask;
		memcpy(kv_slot(t, j), e, t->slot_size);
		if (od && bit_get(od, i))
			bit_set(nd, j);
		if (os && t->snapping && bit_get(os, i))
			bit_set(ns, j);
	}
	free(old);
	free(od);
	free(os);
	return true;
}

static bool kv_grow(kvtab *t)
{
	return kv_resize(t, (t->mask + 1) * 2);
}

int kv_reserve(kvtab *t, size_t n)
{
	size_t cap = cap_for(t->mask + 1, n);
	if (cap == t->mask + 1)
		return 0;
	return kv_resize(t, cap) ? 0 : -ENOMEM;
}

/* Index of (k, ns), or of the empty slot ending its probe sequence. */
static inline size_t kv_find(const kvtab *t, skey k, int64_t ns, bool *found)
{
	size_t i = kv_home(t, k.hash, ns);
	for (;; i = (i + 1) & t->mask) {
		const uint64_t *e = kv_slot(t, i);
		if (e[E_HASH] == k.hash && e[E_KEY] == k.v &&
		    e[E_NS] == (uint64_t)ns) {
			*found = true;
			return i;
		}
		if (kv_empty(e)) {
			*found = false;
			return i;
		}
	}
}

void *kv_get(kvtab *t, skey k, int64_t ns)
{
	t->upsert_value = NULL; /* a kv_written may follow at any time */
	bool found;
	size_t i = kv_find(t, k, ns, &found);
	if (!found)
		return NULL;
	uint64_t *e = kv_slot(t, i);
	snap_touch(t, i); /* the caller may change it */
	/* An expired entry is left for kv_upsert or the cleanup sweep: deleting
	 * here would move entries whose pointers the caller may hold. */
	if (t->ttl_ms && kv_expired(t, e, t->now_ms()))
		return NULL;
	return (char *)e + t->voff;
}

/* Log the PUT of entry e now (the caller clears its dirty bit). */
static void kv_flush_one(kvtab *t, uint64_t *e)
{
	t->log->put(t->bind, t, (skey){ e[E_HASH], e[E_KEY] }, (int64_t)e[E_NS],
		    (char *)e + t->voff);
}

/* Delete expired entries among the next two slots of the sweep. */
static void kv_sweep(kvtab *t, int64_t now)
{
	/* The sweep is sequential but too slow for the hardware prefetcher
	 * to follow between the random probes around it. */
	__builtin_prefetch(kv_slot(t, (t->cursor + 16) & t->mask));
	for (int n = 0; n < 2; n++) {
		size_t i = t->cursor;
		uint64_t *e = kv_slot(t, i);
		if (!kv_empty(e) && kv_expired(t, e, now)) {
			/* A sweep logs no DEL: log what kv_written deferred
			 * (see the top of the file); kv_remove_at clears the
			 * bit. */
			snap_touch(t, i);
			if (t->dirty && bit_get(t->dirty, i))
				kv_flush_one(t, e);
			kv_release_entry(t, e);
			/* slot i now holds a shifted entry or is empty:
			 * look at it again next time */
			kv_remove_at(t, i);
		} else {
			t->cursor = (i + 1) & t->mask;
		}
	}
}

/*
 * kv_upsert's insert of (k, ns) at slot i, the empty slot ending its probe
 * sequence.  Apart, with the key as two words: inlined, gcc built the key
 * as one 16-byte register for the entry's store from the two words the
 * caller passed, through the stack, at the top of every kv_upsert, and the
 * load waited for the stores (store-to-load forwarding fails for two 8-byte
 * stores read as one 16-byte load): ~30% of kv_upsert's samples, found or
 * not, in a sliding window count.
 */
__attribute__((noinline)) static void *kv_insert(kvtab *t, size_t i, uint64_t khash,
						 uint64_t kv, int64_t ns, int64_t now)
{
	const skey k = { .hash = khash, .v = kv };
	bool found;
	uint64_t *e;

	if (t->count + 1 > t->grow_at) {
		if (!kv_grow(t))
			return NULL;
		i = kv_find(t, k, ns, &found);
	}
	e = kv_slot(t, i);
	if (t->snapping) /* a new entry: not the snapshot's (a bit of a
			  * materialization may be set on an empty slot) */
		bit_clear(t->snap, i);
	e[E_HASH] = khash;
	e[E_KEY] = kv;
	e[E_NS] = (uint64_t)ns;
	if (t->ttl_ms)
		e[E_WRITTEN] = (uint64_t)now;
	memset((char *)e + t->voff, 0, t->slot_size - t->voff);
	key_retain(t->key_type, k);
	t->count++;
	t->upsert_value = (char *)e + t->voff;
	t->upsert_now = now;
	return (char *)e + t->voff;
}

void *kv_upsert(kvtab *t, skey k, int64_t ns, bool *created)
{
	int64_t now = 0;
	if (t->key_type == WEIR_STR && !k.v)
		return NULL; /* key_of could not intern it */
	if (t->ttl_ms) {
		now = t->now_ms();
		kv_sweep(t, now);
	}
	bool found;
	size_t i = kv_find(t, k, ns, &found);
	uint64_t *e = kv_slot(t, i);
	if (found) {
		snap_touch(t, i);
		t->upsert_value = (char *)e + t->voff;
		t->upsert_now = now;
		if (t->ttl_ms && kv_expired(t, e, now)) {
			/* Expired: it starts over (the key stays retained). */
			if (t->conf.clear_value) {
				t->conf.clear_value((char *)e + t->voff);
			} else {
				if (t->free_value)
					t->free_value((char *)e + t->voff);
				memset((char *)e + t->voff, 0, t->slot_size - t->voff);
			}
			e[E_WRITTEN] = (uint64_t)now;
			*created = true;
		} else {
			*created = false;
		}
		return (char *)e + t->voff;
	}
	*created = true;
	return kv_insert(t, i, k.hash, k.v, ns, now);
}

void kv_written(kvtab *t, void *value)
{
	uint64_t *e = (uint64_t *)((char *)value - t->voff);
	if (t->ttl_ms)
		e[E_WRITTEN] = (uint64_t)(value == t->upsert_value
					  ? t->upsert_now : t->now_ms());
	t->writes++;
	if (t->dirty) /* logged by the next kv_flush_dirty */
		bit_set(t->dirty, kv_index(t, e));
}

/*
 * Dirty entries are far apart in a big table (the skewed workload of
 * perf/bench_checkpoint changes ~4% of 16 M keys per second): each one
 * was a cache and TLB miss, 100-130 ns per entry flushed, 67 ns when 30%
 * are dirty.  So each is prefetched FLUSH_AHEAD set bits before it is
 * logged: 45-75 ns and 38 ns (this VM is noisy), mostly the PUT itself
 * (st_log_put in log_write.c).
 */
#define FLUSH_AHEAD 16

size_t kv_flush_dirty(kvtab *t)
{
	uint64_t *dirty = t->dirty;
	size_t q[FLUSH_AHEAD], head = 0, len = 0, n = 0;
	if (!dirty)
		return 0;
	for (size_t w = 0;; w++) {
		bool end = w == (t->mask + 1) / 64;
		uint64_t m = end ? 0 : dirty[w];
		if (!end)
			dirty[w] = 0;
		/* queue this word's entries, logging the oldest queued ones;
		 * at the end, log what is left */
		while (m || (end && len)) {
			if (m) {
				size_t i = w * 64 + (size_t)__builtin_ctzll(m);
				const char *p = (const char *)kv_slot(t, i);
				m &= m - 1;
				__builtin_prefetch(p, 0, 3);
				__builtin_prefetch(p + t->slot_size - 1, 0, 3);
				q[(head + len++) % FLUSH_AHEAD] = i;
				if (len < FLUSH_AHEAD)
					continue;
			}
			uint64_t *e = kv_slot(t, q[head]);
			head = (head + 1) % FLUSH_AHEAD;
			len--;
			assert(!kv_empty(e)); /* a set bit names an entry */
			if (kv_empty(e))
				continue;
			kv_flush_one(t, e);
			n++;
		}
		if (end)
			return n;
	}
}

void kv_dirty_forget(kvtab *t)
{
	dirty_clear_all(t);
}

/* ---- asynchronous snapshots ---- */

size_t kv_snapshot_begin(kvtab *t, bool all)
{
	size_t words = (t->mask + 1) / 64, n = 0;
	if (!t->dirty)
		return 0;
	if (all) {
		/* Every entry: set every bit (empty slots' bits are skipped by
		 * the drain and cleared by an insert), forget the dirty ones. */
		memset(t->snap, 0xff, words * sizeof(uint64_t));
		dirty_clear_all(t);
		n = t->count;
	} else if (!t->snapping) {
		/* The usual case: the dirty bits become the snapshot's, and
		 * the snapshot's bitmap, all clear, the next interval's. */
		uint64_t *d = t->dirty;
		t->dirty = t->snap;
		t->snap = d;
		n = SIZE_MAX;
	} else {
		/* An earlier snapshot is still being logged (its checkpoint
		 * was abandoned): what it has not logged yet still holds its
		 * value at this barrier too, so both sets go together. */
		for (size_t w = 0; w < words; w++) {
			t->snap[w] |= t->dirty[w];
			t->dirty[w] = 0;
		}
		n = SIZE_MAX;
	}
	t->snapping = true;
	t->snap_word = 0;
	return n;
}

bool kv_snapshot_pending(const kvtab *t)
{
	return t->snapping;
}

size_t kv_snapshot_step(kvtab *t, size_t budget)
{
	size_t words = (t->mask + 1) / 64, n = 0;
	if (!t->snapping)
		return 0;
	while (t->snap_word < words && n < budget) {
		size_t w = t->snap_word++;
		uint64_t m = t->snap[w];
		if (!m)
			continue;
		t->snap[w] = 0;
		/* fetch the word's entries, then log them */
		for (uint64_t b = m; b; b &= b - 1) {
			const char *p = (const char *)kv_slot(t, w * 64 + (size_t)__builtin_ctzll(b));
			__builtin_prefetch(p, 0, 3);
			__builtin_prefetch(p + t->slot_size - 1, 0, 3);
		}
		if (t->snap_runs) {
			/* as a run of slots, copied as they are */
			uint64_t live = 0;
			for (uint64_t b = m; b; b &= b - 1)
				if (!kv_empty(kv_slot(t, w * 64 + (size_t)__builtin_ctzll(b))))
					live |= b & -b;
			uint32_t cnt = (uint32_t)__builtin_popcountll(live);
			char *o = cnt ? t->log->snap_run(t->bind, t, cnt, t->slot_size) : NULL;
			for (; o && live; live &= live - 1, o += t->slot_size)
				memcpy(o, kv_slot(t, w * 64 + (size_t)__builtin_ctzll(live)),
				       t->slot_size);
			n += cnt;
			continue;
		}
		for (; m; m &= m - 1) {
			uint64_t *e = kv_slot(t, w * 64 + (size_t)__builtin_ctzll(m));
			if (kv_empty(e))
				continue; /* a materialization's bit of an empty slot */
			t->log->snap(t->bind, t, (skey){ e[E_HASH], e[E_KEY] }, (int64_t)e[E_NS],
				     (char *)e + t->voff);
			n++;
		}
	}
	if (t->snap_word >= words)
		t->snapping = false;
	return n;
}

void kv_appended(kvtab *t, void *value, unsigned list, const void *p,
		 uint32_t len)
{
	uint64_t *e = (uint64_t *)((char *)value - t->voff);
	if (t->ttl_ms)
		e[E_WRITTEN] = (uint64_t)(value == t->upsert_value
					  ? t->upsert_now : t->now_ms());
	t->writes++;
	if (t->bind)
		t->log->append(t->bind, t, (skey){ e[E_HASH], e[E_KEY] },
			       (int64_t)e[E_NS], list, p, len);
}

int kv_bind(kvtab *t, const st_log_ops *ops, st_bind *b)
{
	if (b && !t->dirty && !(t->dirty = dirty_new(t->mask + 1)))
		return -ENOMEM;
	if (b && !t->snap && !(t->snap = dirty_new(t->mask + 1)))
		return -ENOMEM;
	if (!b) {
		free(t->dirty);
		free(t->snap);
		t->dirty = t->snap = NULL;
		t->snapping = false;
	}
	t->bind = b;
	t->log = b ? ops : NULL;
	t->snap_runs = b && ops->snap_run && !t->ttl_ms && t->key_type != WEIR_STR &&
		       !t->conf.nlists && !t->conf.encoded_size && !t->conf.encode &&
		       !t->conf.decode && !t->conf.free_value;
	return 0;
}

st_bind *kv_binding(const kvtab *t) { return t->bind; }
weir_type kv_key_type(const kvtab *t) { return t->key_type; }
kdict *kv_dict(const kvtab *t) { return t->d; }
const kvtab_conf *kv_conf(const kvtab *t) { return &t->conf; }

/* ---- value encoding (state log, snapshots) ------------------------------------------
 *
 * Lists layout (conf.nlists > 0): per list [u32 n] then n x ([u32 len]
 * [bytes]), then the plain rest of the value.
 */

size_t kv_value_encoded_size(const kvtab *t, const void *value)
{
	if (t->conf.encoded_size)
		return t->conf.encoded_size(value);
	size_t n = t->vsize;
	for (unsigned i = 0; i < t->conf.nlists; i++) {
		const blist *l = ((blist *const *)value)[i];
		uint32_t c = blist_len(l), len = 0;
		n += 4 - 8; /* the count replaces the pointer */
		for (uint32_t k = 0; k < c; k++) {
			blist_get(l, k, &len);
			n += 4 + len;
		}
	}
	return n;
}

void kv_value_encode(const kvtab *t, const void *value, void *out)
{
	char *o = out;
	if (t->conf.encode) {
		t->conf.encode(value, out);
		return;
	}
	for (unsigned i = 0; i < t->conf.nlists; i++) {
		const blist *l = ((blist *const *)value)[i];
		uint32_t c = blist_len(l), len = 0;
		memcpy(o, &c, 4);
		o += 4;
		for (uint32_t k = 0; k < c; k++) {
			const void *p = blist_get(l, k, &len);
			memcpy(o, &len, 4);
			memcpy(o + 4, p, len);
			o += 4 + len;
		}
	}
	size_t rest = t->vsize - 8u * t->conf.nlists;
	memcpy(o, (const char *)value + 8u * t->conf.nlists, rest);
}

int kv_value_decode(const kvtab *t, void *value, const void *in, size_t len)
{
	const char *p = in, *end = p + len;
	if (t->conf.decode)
		return t->conf.decode(value, in, len);
	if (t->conf.free_value && !t->conf.nlists)
		return -EINVAL; /* pointers without a codec: cannot restore */
	for (unsigned i = 0; i < t->conf.nlists; i++) {
		blist **l = &((blist **)value)[i];
		uint32_t c, el;
		if (end - p < 4)
			return -EINVAL;
		memcpy(&c, p, 4);
		p += 4;
		for (uint32_t k = 0; k < c; k++) {
			if (end - p < 4)
				return -EINVAL;
			memcpy(&el, p, 4);
			p += 4;
			if ((size_t)(end - p) < el)
				return -EINVAL;
			if (blist_add(l, p, el) < 0)
				return -ENOMEM;
			p += el;
		}
	}
	size_t rest = t->vsize - 8u * t->conf.nlists;
	if ((size_t)(end - p) != rest)
		return -EINVAL;
	memcpy((char *)value + 8u * t->conf.nlists, p, rest);
	return 0;
}

bool kv_delete(kvtab *t, skey k, int64_t ns)
{
	bool found;
	size_t i = kv_find(t, k, ns, &found);
	if (!found)
		return false;
	uint64_t *e = kv_slot(t, i);
	snap_touch(t, i); /* before its DEL */
	/* An expired entry is absent already: reclaim it, record nothing. */
	bool live = !t->ttl_ms || !kv_expired(t, e, t->now_ms());
	if (t->bind)
		t->log->del(t->bind, t, k, ns);
	kv_release_entry(t, e);
	kv_remove_at(t, i);
	if (live)
		t->writes++;
	return live;
}

/*
 * Measured on 1 M i64 keys (vsize 16, 80 MB of slots, one core): no
 * prefetch ~20 M upserts/s; prefetching each key 16 records ahead of its
 * kv_upsert ~35 M/s, or in chunks of 16-32 (prefetch the chunk, then
 * update it) ~31 M/s; but prefetching a whole 1024-row batch first only
 * ~22 M/s (the burst runs out of fill buffers and the early lines are
 * evicted before use).
 */
void kv_prefetch(const kvtab *t, skey k, int64_t ns)
{
	size_t i = kv_home(t, k.hash, ns);
	const char *p = (const char *)kv_slot(t, i);
	/* The slot's words and its value, which may be on the next line;
	 * for writing, as kv_upsert usually writes the value. */
	__builtin_prefetch(p, 1, 3);
	__builtin_prefetch(p + t->slot_size - 1, 1, 3);
	/* and the word of its dirty bit, which kv_written sets: the bitmap
	 * of a big table is beyond L2 too (a running sum over 4 M keys spent
	 * 11% of its time waiting for it) */
	if (t->dirty)
		__builtin_prefetch(&t->dirty[i >> 6], 1, 3);
	/* and, while a snapshot is being logged, its bit's word */
	if (t->snapping)
		__builtin_prefetch(&t->snap[i >> 6], 1, 3);
}

void kv_foreach(kvtab *t,
		int (*fn)(void *arg, skey k, int64_t ns, void *value),
		void *arg)
{
	int64_t now = t->ttl_ms ? t->now_ms() : 0;
	t->upsert_value = NULL;
	for (size_t i = 0; i <= t->mask; i++) {
		uint64_t *e = kv_slot(t, i);
		if (kv_empty(e) || (t->ttl_ms && kv_expired(t, e, now)))
			continue;
		skey k = { .hash = e[E_HASH], .v = e[E_KEY] };
		snap_touch(t, i); /* fn may change it */
		if (fn(arg, k, (int64_t)e[E_NS], (char *)e + t->voff))
			return;
	}
}

size_t kv_count(const kvtab *t)
{
	return t->count;
}

size_t kv_memsize(const kvtab *t)
{
	return sizeof(*t) + (t->mask + 1) * (size_t)t->slot_size +
	       (t->dirty ? (t->mask + 1) / 8 : 0) + (t->snap ? (t->mask + 1) / 8 : 0);
}

uint64_t kv_writes(const kvtab *t)
{
	return t->writes;
}

void kv_set_clock(kvtab *t, int64_t (*now_ms)(void))
{
	t->now_ms = now_ms ? now_ms : wall_ms;
}

/* ---- blist ------------------------------------------------------------------------ */

/*
 * One allocation for the header and the offsets, one for the bytes.  An
 * element is [u32 len][u32 0][bytes], padded to 8, so an element's bytes
 * are 8-byte aligned (a job may store a struct and cast the pointer back).
 */
struct blist {
	uint32_t n, ncap;
	uint64_t used, bcap;
	char *bytes;
	uint64_t off[];
};

int blist_add(blist **lp, const void *p, uint32_t len)
{
	void *e = blist_push(lp, len);
	if (!e)
		return -ENOMEM;
	if (len)
		memcpy(e, p, len);
	return 0;
}

void *blist_push(blist **lp, uint32_t len)
{
	blist *l = *lp;
	if (!l || l->n == l->ncap) {
		uint32_t ncap = l ? l->ncap * 2 : 4;
		if (l && ncap < l->ncap)
			return NULL;
		blist *nl = realloc(l, sizeof(*l) + (size_t)ncap * sizeof(uint64_t));
		if (!nl)
			return NULL;
		if (!l) {
			nl->n = 0;
			nl->used = nl->bcap = 0;
			nl->bytes = NULL;
		}
		nl->ncap = ncap;
		*lp = l = nl;
	}
	uint64_t need = 8 + (((uint64_t)len + 7) & ~7ull);
	if (l->bcap - l->used < need) {
		uint64_t bcap = l->bcap ? l->bcap * 2 : 64;
		while (bcap - l->used < need)
			bcap *= 2;
		char *nb = realloc(l->bytes, bcap);
		if (!nb)
			return NULL;
		l->bytes = nb;
		l->bcap = bcap;
	}
	char *e = l->bytes + l->used;
	uint32_t hdr[2] = { len, 0 };
	memcpy(e, hdr, 8);
	l->off[l->n++] = l->used;
	l->used += need;
	return e + 8;
}

void blist_clear(blist *l)
{
	if (l)
		l->n = 0, l->used = 0;
}

void blist_drop_front(blist *l, uint32_t k)
{
	if (!l || k == 0)
		return;
	if (k >= l->n) {
		blist_clear(l);
		return;
	}
	uint64_t cut = l->off[k];
	memmove(l->bytes, l->bytes + cut, l->used - cut);
	for (uint32_t i = k; i < l->n; i++)
		l->off[i - k] = l->off[i] - cut;
	l->n -= k;
	l->used -= cut;
}

uint32_t blist_len(const blist *l)
{
	return l ? l->n : 0;
}

const void *blist_get(const blist *l, uint32_t i, uint32_t *len)
{
	if (!l || i >= l->n)
		return NULL;
	const char *e = l->bytes + l->off[i];
	memcpy(len, e, 4);
	return e + 8;
}

void blist_free(blist *l)
{
	if (!l)
		return;
	free(l->bytes);
	free(l);
}

/* ---- bmap ------------------------------------------------------------------------- */

/*
 * Open addressing with linear probing and backward-shift deletion, in one
 * allocation: header, then slots of [hash u64][koff u32][klen u32][value,
 * rounded to 8].  The key bytes live in an arena owned by the map; the
 * bytes of removed keys are reclaimed by compacting the arena when it
 * would otherwise grow.  Stored hash = XXH3 | 1, so 0 marks an empty slot.
 */
struct bmap {
	uint32_t n, cap; /* cap: a power of two */
	uint32_t vsize, slot_size;
	char *arena;
	uint64_t aused, acap, adead;
	char slots[];
};

#define BM_HDR 16u

static inline char *bm_slot(const bmap *m, uint32_t i)
{
	return (char *)m->slots + (size_t)i * m->slot_size;
}

static inline uint64_t bm_hash(const void *k, uint32_t klen)
{
	return XXH3_64bits(k, klen) | 1;
}

static inline uint32_t bm_home(uint32_t cap, uint64_t h)
{
	return (uint32_t)((h >> 32) & (cap - 1));
}

/* Slot index of k, or of the empty slot where it would go. */
static uint32_t bm_find(const bmap *m, uint64_t h, const void *k,
			uint32_t klen, bool *found)
{
	uint32_t i = bm_home(m->cap, h);
	for (;; i = (i + 1) & (m->cap - 1)) {
		char *s = bm_slot(m, i);
		uint64_t sh;
		memcpy(&sh, s, 8);
		if (!sh) {
			*found = false;
			return i;
		}
		if (sh == h) {
			uint32_t kk[2];
			memcpy(kk, s + 8, 8);
			if (kk[1] == klen &&
			    (klen == 0 || memcmp(m->arena + kk[0], k, klen) == 0)) {
				*found = true;
				return i;
			}
		}
	}
}

void *bmap_get(const bmap *m, const void *k, uint32_t klen)
{
	if (!m || !m->n)
		return NULL;
	bool found;
	uint32_t i = bm_find(m, bm_hash(k, klen), k, klen, &found);
	return found ? bm_slot(m, i) + BM_HDR : NULL;
}

static bmap *bm_alloc(uint32_t cap, uint32_t vsize)
{
	uint32_t slot_size = BM_HDR + ((vsize + 7u) & ~7u);
	bmap *m = calloc(1, sizeof(*m) + (size_t)cap * slot_size);
	if (!m)
		return NULL;
	m->cap = cap;
	m->acap = 64;
	m->arena = malloc(m->acap);
	if (!m->arena) {
		free(m);
		return NULL;
	}
	m->vsize = vsize;
	m->slot_size = slot_size;
	return m;
}

/* Rewrite the arena with only the keys in use (their koff change). */
static int bm_compact(bmap *m, uint64_t acap)
{
	char *na = malloc(acap);
	if (!na)
		return -ENOMEM;
	uint64_t used = 0;
	for (uint32_t i = 0; i < m->cap; i++) {
		char *s = bm_slot(m, i);
		uint64_t sh;
		memcpy(&sh, s, 8);
		if (!sh)
			continue;
		uint32_t kk[2];
		memcpy(kk, s + 8, 8);
		memcpy(na + used, m->arena + kk[0], kk[1]);
		kk[0] = (uint32_t)used;
		memcpy(s + 8, kk, 4);
		used += kk[1];
	}
	free(m->arena);
	m->arena = na;
	m->aused = used;
	m->acap = acap;
	m->adead = 0;
	return 0;
}

/* Room for klen more key bytes in the arena (offsets stay < 4 GiB). */
static int bm_arena_room(bmap *m, uint32_t klen)
{
	if (m->acap - m->aused >= klen)
		return 0;
	uint64_t live = m->aused - m->adead;
	uint64_t acap = m->acap;
	while (acap < live + klen || (acap - live - klen) < acap / 4)
		acap *= 2;
	if (acap > UINT32_MAX)
		return -ENOMEM;
	if (m->adead) /* copying anyway: drop the bytes of removed keys */
		return bm_compact(m, acap);
	char *na = realloc(m->arena, acap);
	if (!na)
		return -ENOMEM;
	m->arena = na;
	m->acap = acap;
	return 0;
}

static bmap *bm_grow(bmap *m)
{
	bmap *n = bm_alloc(m->cap * 2, m->vsize);
	if (!n)
		return NULL;
	for (uint32_t i = 0; i < m->cap; i++) {
		char *s = bm_slot(m, i);
		uint64_t sh;
		memcpy(&sh, s, 8);
		if (!sh)
			continue;
		uint32_t j = bm_home(n->cap, sh);
		for (;; j = (j + 1) & (n->cap - 1)) {
			uint64_t th;
			memcpy(&th, bm_slot(n, j), 8);
			if (!th)
				break;
		}
		memcpy(bm_slot(n, j), s, m->slot_size);
	}
	n->n = m->n;
	free(n->arena);
	n->arena = m->arena;
	n->aused = m->aused;
	n->acap = m->acap;
	n->adead = m->adead;
	free(m);
	return n;
}

void *bmap_put(bmap **mp, uint32_t vsize, const void *k, uint32_t klen)
{
	bmap *m = *mp;
	if (!m) {
		m = bm_alloc(8, vsize);
		if (!m)
			return NULL;
		*mp = m;
	}
	uint64_t h = bm_hash(k, klen);
	bool found;
	uint32_t i = bm_find(m, h, k, klen, &found);
	if (found)
		return bm_slot(m, i) + BM_HDR;
	if (bm_arena_room(m, klen))
		return NULL;
	if (m->n + 1 > m->cap / 4 * 3) {
		bmap *n = bm_grow(m);
		if (!n)
			return NULL;
		*mp = m = n;
		i = bm_find(m, h, k, klen, &found);
	}
	char *s = bm_slot(m, i);
	uint32_t kk[2] = { (uint32_t)m->aused, klen };
	if (klen)
		memcpy(m->arena + m->aused, k, klen);
	m->aused += klen;
	memcpy(s, &h, 8);
	memcpy(s + 8, kk, 8);
	memset(s + BM_HDR, 0, m->slot_size - BM_HDR);
	m->n++;
	return s + BM_HDR;
}

bool bmap_remove(bmap *m, const void *k, uint32_t klen)
{
	if (!m || !m->n)
		return false;
	bool found;
	uint32_t i = bm_find(m, bm_hash(k, klen), k, klen, &found);
	if (!found)
		return false;
	uint32_t mask = m->cap - 1;
	m->adead += klen;
	for (uint32_t j = i;;) {
		j = (j + 1) & mask;
		char *s = bm_slot(m, j);
		uint64_t sh;
		memcpy(&sh, s, 8);
		if (!sh)
			break;
		uint32_t home = bm_home(m->cap, sh);
		if (((j - home) & mask) >= ((j - i) & mask)) {
			memcpy(bm_slot(m, i), s, m->slot_size);
			i = j;
		}
	}
	memset(bm_slot(m, i), 0, 8);
	m->n--;
	if (!m->n) { /* nothing live: the arena starts over */
		m->aused = 0;
		m->adead = 0;
	}
	return true;
}

uint32_t bmap_len(const bmap *m)
{
	return m ? m->n : 0;
}

int bmap_foreach(const bmap *m,
		 int (*fn)(void *arg, const void *k, size_t klen,
			   const void *value),
		 void *arg)
{
	if (!m)
		return 0;
	for (uint32_t i = 0; i < m->cap; i++) {
		const char *s = bm_slot(m, i);
		uint64_t sh;
		memcpy(&sh, s, 8);
		if (!sh)
			continue;
		uint32_t kk[2];
		memcpy(kk, s + 8, 8);
		int r = fn(arg, m->arena + kk[0], kk[1], s + BM_HDR);
		if (r)
			return r;
	}
	return 0;
}

void bmap_free(bmap *m)
{
	if (!m)
		return;
	free(m->arena);
	free(m);
}
