/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyed state and timers (internal to the engine; operators/ uses it, jobs
 * reach it through include/weir/keyed.h).
 *
 * Ownership: every object here belongs to one operator subtask, hence to
 * one core; nothing is shared or locked.  A subtask's keys are those of the
 * key groups the planner gave it (key group = key hash % max_parallelism,
 * the same hash the exchange uses), so each core keeps exactly its own
 * key-group ranges in its own tables.  The key hash is stored with every
 * entry, so state can be addressed by key group (snapshots, rescaling).
 *
 * Keys.  A key is an skey: its hash plus 8 bytes that are the cell itself
 * for fixed-width types, or a pointer to an interned, reference-counted
 * string (kstr) for strings, so equal string keys share one copy per
 * subtask and comparing keys is comparing two words.
 *
 * Tables.  A kvtab maps (key, namespace) -> a fixed-size value.  The
 * namespace is an i64 chosen by the operator (a window's start, 0 for plain
 * keyed state).  Values needing variable memory (lists, maps) store a
 * pointer and give the table a free function.
 *
 * The one write path.  Every mutation of a table goes through kv_upsert /
 * kv_written / kv_appended / kv_delete (and of a timer service through
 * tsvc_add / tsvc_delete / tsvc_pop).  kv_written() is where a changed
 * value is recorded: it stamps the TTL, counts the write and, in a table
 * bound to a state log, marks the entry dirty; its PUT is logged once per
 * checkpoint, at the barrier (kv_flush_dirty), with the value as it is
 * then, however often it changed (see keyed.c, "Dirty tracking").
 *
 * Entry layout in a kvtab (8-byte aligned, `vsize` rounded up to 8):
 *
 *   +-----------+---------+---------+--------------------+----------------+
 *   | khash u64 | key u64 | ns i64  | [written_ms i64]   | value[vsize]   |
 *   +-----------+---------+---------+--------------------+----------------+
 *                                     only with ttl_ms > 0
 */
#ifndef WEIR_STATE_H
#define WEIR_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <weir/batch.h>
#include <weir/datastream.h>

/* ---- keys ---------------------------------------------------------------------- */

typedef struct kstr {
	uint32_t refs;
	uint32_t len;
	uint64_t hash;
	char data[];
} kstr;

typedef struct skey {
	uint64_t hash; /* key_hash() of the cell: key group = hash % max_par */
	uint64_t v;    /* the cell's 8 bytes, or (uintptr_t)kstr* */
} skey;

/* Interned string keys of one subtask. */
typedef struct kdict kdict;

kdict *kdict_new(void);
/* Free the dictionary; all its strings must have been released. */
void kdict_free(kdict *d);
size_t kdict_count(const kdict *d);
/* Make room for n interned strings without growing.  0 or -ENOMEM. */
int kdict_reserve(kdict *d, size_t n);

/*
 * The key of cell (col, row) of b, whose type is `type`.  Hash as
 * key_hash() (core/keyhash.h).  A string key is interned in d and returned
 * *borrowed*: whoever keeps it calls key_retain(); after use the caller
 * calls key_done(), which frees a string nobody retained.  Fixed-width
 * keys need neither (both are no-ops).
 */
skey key_of(kdict *d, weir_type type, const weir_batch *b, int col,
	    uint32_t row);
/* The same from a weir_value (e.g. a key carried by a timer or a row). */
skey key_from_value(kdict *d, weir_type type, weir_value v);
void key_retain(weir_type type, skey k);
/* Drop one reference (after key_retain). */
void key_release(kdict *d, weir_type type, skey k);
void key_done(kdict *d, weir_type type, skey k);
/* The key as a cell of its type (a string points into the kstr). */
weir_value key_value(weir_type type, skey k);
static inline bool key_eq(skey a, skey b)
{
	return a.v == b.v && a.hash == b.hash;
}

/* ---- tables: (key, namespace) -> value --------------------------------------------- */

typedef struct kvtab kvtab;

typedef struct kvtab_conf {
	weir_type key_type;
	uint32_t vsize;              /* value bytes */
	int64_t ttl_ms;              /* > 0: values expire (processing time) */
	/* Release memory a value points to (lists, maps); NULL if none. */
	void (*free_value)(void *value);
	/* With a TTL: an expired value that kv_upsert starts over is emptied
	 * by this, keeping its memory for the key's new life, instead of
	 * free_value and zeroing (a key that comes back every few TTLs would
	 * otherwise free and allocate its lists each time).  It must leave
	 * the value as a zeroed one reads.  NULL: free_value, then zero. */
	void (*clear_value)(void *value);
	/*
	 * How a value is written to the state log and snapshots.  By default
	 * its vsize bytes are its encoding (plain data, no pointers).  A value
	 * whose first `nlists` 8-byte words are blist pointers is encoded as
	 * those lists' elements then the remaining plain bytes, and
	 * kv_appended() logs one appended element instead of the whole value.
	 * Any other value holding pointers (maps, buffers, strings) gives
	 * encode/decode: encoded_size(v) bytes written by encode(v, out);
	 * decode(v, in, len) rebuilds a zeroed value (0 or -EINVAL/-ENOMEM).
	 */
	uint8_t nlists;
	size_t (*encoded_size)(const void *value);
	void (*encode)(const void *value, void *out);
	int (*decode)(void *value, const void *in, size_t len);
	/* A value with its own codec may still log appends: kv_appended
	 * (list 0) logs the element alone, and a restore replays it with
	 * append(value, p, len), on a value that is zeroed or decoded (0,
	 * -EINVAL for a malformed element, -ENOMEM).  NULL: no appends. */
	int (*append)(void *value, const void *p, uint32_t len);
	/* Broadcast state: the same entries in every subtask; a restore at any
	 * parallelism gives each subtask all of them. */
	bool broadcast;
} kvtab_conf;

/* A new empty table; keys are interned in d (shared by the subtask's
 * tables and timers).  NULL on ENOMEM. */
kvtab *kv_new(const kvtab_conf *c, kdict *d);
void kv_free(kvtab *t);
/* Delete every entry (not logged: a failed restore starting over). */
void kv_clear_all(kvtab *t);

/* The value of (k, ns), or NULL.  An expired value reads as NULL. */
void *kv_get(kvtab *t, skey k, int64_t ns);
/*
 * The value of (k, ns), created zeroed if absent (then *created = true and
 * the table retains the key).  The caller changes it and then calls
 * kv_written().  NULL only on ENOMEM.  Pointers into the table are valid
 * until the next kv_upsert or kv_delete on it.
 */
void *kv_upsert(kvtab *t, skey k, int64_t ns, bool *created);
/*
 * The one place a change is recorded: `value` (from kv_upsert or kv_get,
 * still valid) was written.  In a bound table this only marks the entry
 * dirty (a few ns, no I/O): the store logs the whole value as it is at
 * the next checkpoint barrier (kv_flush_dirty), later changes made
 * without a kv_written included.
 */
void kv_written(kvtab *t, void *value);
/* Instead of kv_written: element (p, len) was appended with blist_add to
 * list `list` (< conf.nlists) of `value`, or, in a table with an append
 * codec (list 0), added as conf.append would add it (logs the element
 * only, at once). */
void kv_appended(kvtab *t, void *value, unsigned list, const void *p,
		 uint32_t len);
/* Remove (k, ns) if present (freeing its value's memory); true if it was.
 * A bound table logs the DEL at once. */
bool kv_delete(kvtab *t, skey k, int64_t ns);

/* A value's encoding (see kvtab_conf): its size, the bytes, and back into
 * a zeroed value slot.  decode returns 0 or -EINVAL (malformed), -ENOMEM. */
size_t kv_value_encoded_size(const kvtab *t, const void *value);
void kv_value_encode(const kvtab *t, const void *value, void *out);
int kv_value_decode(const kvtab *t, void *value, const void *in, size_t len);
const kvtab_conf *kv_conf(const kvtab *t);
weir_type kv_key_type(const kvtab *t);
kdict *kv_dict(const kvtab *t);
/* Start loading the cache lines (k, ns) will probe (batch prefetch). */
void kv_prefetch(const kvtab *t, skey k, int64_t ns);

/* Every live entry; fn returns non-zero to stop.  fn must not insert or
 * delete (collect, then act). */
void kv_foreach(kvtab *t,
		int (*fn)(void *arg, skey k, int64_t ns, void *value),
		void *arg);
size_t kv_count(const kvtab *t);
/* Make room for n entries without growing (a restore that knows the
 * size).  0 or -ENOMEM. */
int kv_reserve(kvtab *t, size_t n);
/* Bytes the table holds (slots, control bytes, the dirty bitmap of a bound
 * table; not list/map contents). */
size_t kv_memsize(const kvtab *t);
/* Mutations recorded by kv_written/kv_delete so far. */
uint64_t kv_writes(const kvtab *t);
/* Processing-time clock used for TTL (tests set it; default: the wall
 * clock in ms).  Per table. */
void kv_set_clock(kvtab *t, int64_t (*now_ms)(void));

/* ---- variable-size values: lists of byte strings and byte-keyed maps --------------- */

/* A list of byte strings.  NULL is the empty list. */
typedef struct blist blist;
/* Append; *l may move.  0 or -ENOMEM. */
int blist_add(blist **l, const void *p, uint32_t len);
/* Append an element of len bytes and return them (8-byte aligned) for the
 * caller to fill, so a row is encoded in place; *l may move.  NULL on
 * ENOMEM. */
void *blist_push(blist **l, uint32_t len);
/* Remove every element, keeping the memory (a "latest row" value). */
void blist_clear(blist *l);
/* Remove the first k elements (all if k >= len), moving the rest to the
 * front: O(bytes kept), so callers drop prefixes in bulk. */
void blist_drop_front(blist *l, uint32_t k);
uint32_t blist_len(const blist *l);
/* Element i, or NULL when i >= len. */
const void *blist_get(const blist *l, uint32_t i, uint32_t *len);
void blist_free(blist *l);

/* A map from byte strings to values of a fixed size.  NULL is empty. */
typedef struct bmap bmap;
/* The value of k, or NULL. */
void *bmap_get(const bmap *m, const void *k, uint32_t klen);
/* The value of k, created zeroed if absent; *m may move.  NULL on ENOMEM. */
void *bmap_put(bmap **m, uint32_t vsize, const void *k, uint32_t klen);
bool bmap_remove(bmap *m, const void *k, uint32_t klen);
uint32_t bmap_len(const bmap *m);
int bmap_foreach(const bmap *m,
		 int (*fn)(void *arg, const void *k, size_t klen,
			   const void *value),
		 void *arg);
void bmap_free(bmap *m);

/* ---- rows as bytes (list state, buffered window and join rows) ----------------------- */

/*
 * Encoding of one row: [ts i64] then per column i64/ts/f64 as 8 bytes,
 * bool as 1 byte, str as [u32 len][bytes].  Unaligned; little-endian.
 */
size_t row_encoded_size(const weir_batch *b, uint32_t row);
/* Write row `row` of b into buf (row_encoded_size bytes); returns that. */
size_t row_encode(const weir_batch *b, uint32_t row, void *buf);
/* The cells alone (no ts), leaving out column `skip` (-1: none): their
 * size, and their encoding into buf (returns the bytes written). */
size_t row_cells_size(const weir_batch *b, uint32_t row, int skip);
size_t row_cells_encode(const weir_batch *b, uint32_t row, int skip, void *buf);
/* Decode into cells[0..ncols) (strings point into buf) and *ts; returns
 * bytes used. */
size_t row_decode(const weir_schema *s, const void *buf, weir_value *cells,
		  int64_t *ts);
/* Stage cells as the emitter's next row (weir_out_* of each column) and
 * its event time; the caller then calls weir_out_emit. */
void row_stage(weir_out *o, const weir_schema *s, const weir_value *cells,
	       int64_t ts);
/* Stage cells of schema s as output columns off, off + 1, ... (a join's
 * two sides side by side); no event time. */
void row_stage_cells(weir_out *o, const weir_schema *s, const weir_value *cells,
		     int off);
/* Read cell (col, row) of b as a weir_value. */
weir_value cell_value(const weir_batch *b, int col, uint32_t row);

/* ---- timers ------------------------------------------------------------------------ */

typedef struct timer {
	int64_t ts;
	int64_t ns;
	skey key;
} timer;

/* A per-subtask timer service for one time domain: timers of (key, ns) at
 * ts, popped in ts order (ties in insertion order). */
typedef struct tsvc tsvc;

/*
 * `dedup`: adding an existing (ts, key, ns) is a no-op, and delete works.
 * Without it the caller promises not to add duplicates (a window operator
 * registers a window's timer once, when the window opens), which saves a
 * hash probe per timer; tsvc_delete is then -ENOTSUP.
 */
tsvc *tsvc_new(kdict *d, weir_type key_type, bool dedup);
/* Free the service, releasing the keys of pending timers. */
void tsvc_free(tsvc *s);
/* 0, or -ENOMEM.  Retains a string key while the timer is pending. */
int tsvc_add(tsvc *s, int64_t ts, skey k, int64_t ns);
/* 0, -ENOENT if there is no such timer, -ENOTSUP without dedup. */
int tsvc_delete(tsvc *s, int64_t ts, skey k, int64_t ns);
/* Pop the earliest timer with ts <= upto into *out; false if none.  The
 * timer's key reference passes to the caller (key_release it). */
bool tsvc_pop(tsvc *s, int64_t upto, timer *out);
/* Earliest pending ts, or INT64_MAX. */
int64_t tsvc_next(const tsvc *s);
size_t tsvc_count(const tsvc *s);
weir_type tsvc_key_type(const tsvc *s);
kdict *tsvc_dict(const tsvc *s);
/* Every pending timer, in no particular order; fn returns non-zero to
 * stop.  fn must not add or pop. */
void tsvc_foreach(tsvc *s, int (*fn)(void *arg, const timer *tm), void *arg);

/* ---- logging changes: the binding to a state log ----------------------------------
 *
 * A table or timer service registered with a task (state/log_write.h) is
 * bound to the task's state log while the job checkpoints: every change is
 * then appended to the log of the core that owns the task.  kv_appended /
 * kv_delete and tsvc_add / tsvc_pop / tsvc_delete append their entry at
 * once; kv_written only marks its entry dirty, and kv_flush_dirty appends
 * one PUT per dirty entry (write amplification: an entry per changed key
 * per checkpoint, not per change).  Unbound (NULL) structures log nothing.
 *
 * The tables know the log only through this narrow interface: an opaque
 * binding and the four calls a bound structure makes through it.  The
 * write path (state/log_write.c) defines the binding, implements the calls
 * and hands both over with kv_bind / tsvc_bind, so nothing in keyed.c or
 * timers.c calls into the write path or the checkpoint store above it.
 */
typedef struct st_bind st_bind; /* the write path's (log_write.h) */

/* What a bound structure calls to log one change, with its binding.  Each
 * appends one entry to the owner core's log (errors are kept by the
 * binding's task and reported at its next barrier). */
typedef struct st_log_ops {
	/* (k, ns) of t now holds `value`: its whole value. */
	void (*put)(st_bind *b, const kvtab *t, skey k, int64_t ns,
		    const void *value);
	/* Element (p, len) was appended to list `list` of (k, ns) of t. */
	void (*append)(st_bind *b, const kvtab *t, skey k, int64_t ns,
		       unsigned list, const void *p, uint32_t len);
	/* (k, ns) was deleted from t. */
	void (*del)(st_bind *b, const kvtab *t, skey k, int64_t ns);
	/* Timer tm (of key type kt) was added (add) or popped or deleted. */
	void (*timer)(st_bind *b, bool add, weir_type kt, const timer *tm);
	/* (k, ns) of t held `value` at the barrier of the snapshot in
	 * progress (kv_snapshot_begin): logged after the barrier, before
	 * anything changed it. */
	void (*snap)(st_bind *b, const kvtab *t, skey k, int64_t ns,
		     const void *value);
	/* The same for n entries of a table of fixed-width keys and plain
	 * values without TTL, as its slots are: room for n slots of
	 * slot_size bytes for the caller to copy them into, or NULL (an
	 * error, kept by the binding's task; or not logging). */
	void *(*snap_run)(st_bind *b, const kvtab *t, uint32_t n, uint32_t slot_size);
} st_log_ops;

/* Bind t to b, logging through ops (b NULL: unbind, forgetting changes not
 * flushed yet).  Binding allocates the dirty bitmap: 0 or -ENOMEM.  Owner
 * core only. */
int kv_bind(kvtab *t, const st_log_ops *ops, st_bind *b);
/* The same for a timer service (cannot fail). */
void tsvc_bind(tsvc *s, const st_log_ops *ops, st_bind *b);
/*
 * Log a PUT (ops->put) for every entry of t changed by kv_written since
 * the last flush, in slot order, with its value as it is now, and forget
 * them; returns how many.  The store calls it at every checkpoint barrier
 * of the task, before marking the task's log position, so the mark covers
 * them (log errors are the task's, reported at that barrier).  A no-op on
 * an unbound table.  Owner core only.
 */
size_t kv_flush_dirty(kvtab *t);
/* Forget the dirty entries without logging them: a materialization just
 * wrote every entry. */
void kv_dirty_forget(kvtab *t);
/*
 * Asynchronous snapshots (keyed.c, "Asynchronous snapshots").  At a
 * checkpoint barrier, instead of kv_flush_dirty: the entries changed since
 * the last barrier (all: every entry, a materialization) are to be logged
 * (ops->snap) with their values as they are now, while the task goes on.
 * kv_snapshot_begin costs O(1) (a pointer swap), or a memset of the
 * bitmap for `all` or when an earlier snapshot is still being logged (an
 * abandoned checkpoint's: the two are merged).  kv_snapshot_step logs up
 * to about `budget` of them in slot order (between reactor turns) and
 * returns how many; any lookup, change, move or delete of an entry not
 * logged yet logs it first.  Returns of begin: the entries to log (all),
 * or SIZE_MAX (not counted).  Owner core only; bound tables only.
 */
size_t kv_snapshot_begin(kvtab *t, bool all);
size_t kv_snapshot_step(kvtab *t, size_t budget);
/* Is a snapshot still being logged? */
bool kv_snapshot_pending(const kvtab *t);
st_bind *kv_binding(const kvtab *t);

#endif
