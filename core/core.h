/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The runtime's internal interface, shared by the engine's folders (state/,
 * operators/, net/) but not by jobs: logging, clocks, batch pools, channels,
 * the logical job graph, and the operator contract (op_ops) that every
 * built-in operator implements.
 *
 * Ownership at a glance:
 *   - a reactor (one pinned thread per core) owns its pool, its actors, the
 *     tasks inside them, and the producer side of their output channels;
 *   - a channel's consumer side belongs to the consumer's reactor;
 *   - a batch belongs to whoever holds a reference; its block goes back to
 *     the pool of the core that made it (remote free through a return ring).
 */
#ifndef WEIR_CORE_H
#define WEIR_CORE_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <ck_ring.h>

#include <weir/admin.h>
#include <weir/weir.h>

#define CACHELINE 64
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- logging: stderr, levels; never called per record ------------------ */

enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };
void log_set_level(int level);
int log_level(void);
/* Parse "error|warn|info|debug"; -EINVAL if unknown. */
int log_parse_level(const char *s);
void wlog(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- time --------------------------------------------------------------- */

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Processing time: the wall clock, ms since the Unix epoch. */
static inline int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- checksums (crc32c.c) ------------------------------------------------
 *
 * CRC32C (Castagnoli), hardware-accelerated where the CPU has SSE4.2.
 * crc32c(0, p, n) starts a checksum; pass the result back to continue. */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);

/* ---- schemas -------------------------------------------------------------- */

size_t type_width(weir_type t);
const char *type_name(weir_type t);
bool schema_equal(const weir_schema *a, const weir_schema *b);
/* Parse a schema spec into *out; on error write a message into err. */
int schema_parse(const char *spec, weir_schema *out, char *err, size_t errlen);

/* ---- batches and per-core pools --------------------------------------------
 *
 * Each core has a pool of fixed-size blocks.  A block is taken and released
 * only by its owner core; another core that drops the last reference pushes
 * the block onto the owner's return ring for that (releaser, owner) pair
 * (or, if that ring is full, the owner's lock-free overflow stack), and the
 * owner drains them when its free list runs dry.  Pools
 * grow by malloc in whole blocks (amortised over a batch of records, never
 * per record); sources stop producing when their pool's outstanding blocks
 * pass a soft limit, which together with channel credits bounds memory.
 */

#define BATCH_JUMBO 0x1 /* block sized for one oversized row: free(), not pooled */

typedef struct pool pool;

typedef struct pool_set {
	int n;
	pool **pools; /* indexed by core */
	/* Called after a block was pushed on core's return ring (may be NULL). */
	void (*wake)(void *ctx, int core);
	void *wake_ctx;
} pool_set;

/* Create n pools, one per core; ring capacity per (releaser, owner) pair. */
pool_set *pool_set_new(int n, uint32_t block_size, uint32_t batch_rows,
		       uint32_t soft_limit);
/* Free all pools; every batch must have been released (drains returns). */
void pool_set_free(pool_set *ps);
/* Bind the calling thread to core `core`'s pool (reactor start, tests). */
void pool_bind_thread(pool_set *ps, int core);
pool *pool_current(void);
/* Blocks handed out and not yet returned (owner core only). */
uint32_t pool_outstanding(pool *p);
/* True when a source on this core may make more batches. */
bool pool_has_room(pool *p);
/* Take back blocks other cores returned (rings, overflow). Owner core only. */
void pool_reclaim(pool *p);
/* Blocks allocated with malloc so far (for tests and metrics). */
uint64_t pool_blocks_allocated(const pool *p);

/*
 * The runtime's part of a batch, kept in weir_batch.runtime_private so
 * that the public struct shows none of it.
 */
typedef struct batch_meta {
	weir_batch *next;      /* pool free list (owner core only), or the
				* overflow stack's link (pool.c's ck_stack) */
	_Atomic uint32_t refs; /* holders of this batch, any core */
	uint16_t owner;        /* core whose pool the block came from */
	uint16_t flags;        /* BATCH_JUMBO */
} batch_meta;
_Static_assert(sizeof(batch_meta) <= sizeof(((weir_batch *)0)->runtime_private),
	       "batch_meta must fit weir_batch.runtime_private");

static inline batch_meta *batch_meta_of(const weir_batch *b)
{
	return (batch_meta *)(void *)b->runtime_private;
}

/*
 * Allocate an empty batch of `schema` from the calling thread's pool, with
 * room for at least `min_heap` heap bytes (more than a block holds makes a
 * jumbo batch).  refs = 1.  Aborts the process on ENOMEM, like malloc
 * failure handling everywhere in the data path: there is nothing safe to do.
 */
weir_batch *batch_alloc(const weir_schema *schema, size_t min_heap);
/* Add n references (fan-out). Any core. */
void batch_retain(weir_batch *b, uint32_t n);
/* Drop one reference; the last one returns the block to its owner. */
void batch_release(weir_batch *b);
static inline bool batch_exclusive(const weir_batch *b)
{
	/* Acquire: pairs with batch_release's acq_rel, so the other holders'
	 * reads are done before the caller writes in place. */
	return atomic_load_explicit(&batch_meta_of(b)->refs, memory_order_acquire) == 1;
}
/* Append row `row` of `src` (same schema) to `dst`.  False if dst is full. */
bool batch_append_row(weir_batch *dst, const weir_batch *src, uint32_t row);
/* Bytes of heap that row `row` of b uses. */
size_t batch_row_heap(const weir_batch *b, uint32_t row);
/* Copy rows [from, from+n) of src into a fresh batch. */
weir_batch *batch_slice_copy(const weir_batch *src, uint32_t from, uint32_t n);
/* Keep only rows with keep[i] != 0, in place (caller holds it exclusively). */
void batch_compact(weir_batch *b, const uint8_t *keep);
/*
 * A batch as bytes (format drawn in batch.c): the in-flight data of
 * unaligned checkpoints.  batch_decode() checks every length against n and
 * the column types against schema s, and makes a batch from the calling
 * thread's pool (a jumbo one if it does not fit a block): 0, -EBADMSG when
 * the bytes are not such a batch of s, or -ENOMEM.  *out is NULL on error.
 */
size_t batch_encoded_size(const weir_batch *b);
void batch_encode(const weir_batch *b, void *out);
int batch_decode(const weir_schema *s, const void *p, size_t n, weir_batch **out);
/*
 * The same bytes as a gather list, for the network: the event times and
 * fixed-width columns point into b itself (b must stay alive and unchanged
 * until the list is sent); the rest is written into scratch (room for
 * batch_encoded_size(b) bytes is always enough).  Returns the number of
 * pieces (<= maxiov) with their total in *len, or 0 when more than maxiov
 * pieces would be needed (then encode with batch_encode).
 */
struct iovec;
int batch_encode_iov(const weir_batch *b, void *scratch, struct iovec *iov, int maxiov,
		     size_t *len);

/* ---- stream elements and channels ------------------------------------------ */

enum elem_kind {
	ELEM_DATA = 1,      /* batch */
	ELEM_WATERMARK = 2, /* value: event time ms */
	ELEM_BARRIER = 3,   /* value: checkpoint id */
	ELEM_EOI = 4,       /* end of input */
	ELEM_IDLE = 5,      /* value: 1 = the stream went idle, 0 = active */
};

typedef struct elem {
	uint32_t kind;
	uint32_t pad;
	union {
		weir_batch *batch;
		int64_t value;
	};
} elem;

struct reactor;

/*
 * A single-producer single-consumer channel between two subtasks: a ck_ring
 * of elements plus credit-based flow control.  The consumer grants
 * `credits` data batches in flight; the producer may push a batch only while
 * sent - consumed < credits.  Control elements need ring space but no
 * credit.  Elements that cannot be pushed wait, in order, in the producer's
 * pending queue, and the producing actor does not take new input until the
 * queue is empty: that is how backpressure travels upstream.
 */
typedef struct channel {
	ck_ring_t ring; /* cache-line separated producer/consumer indices */
	elem *slots;
	/* Which edge of the job graph this is (set when planned; read-only
	 * afterwards): unaligned checkpoints file its in-flight elements
	 * under it. */
	int src_node, src_sub, src_port, dst_node, dst_sub;
	struct actor *src_actor;
	/* producer core only */
	uint64_t sent;
	uint64_t pushed;       /* elements that entered the ring, any kind */
	elem *pend;
	uint32_t pend_head, pend_len, pend_cap;
	uint32_t credits;
	struct reactor *producer, *consumer;
	/* Wakes the reactor at an end after the channel gave it something
	 * to do (both ends call it): set by the planner to reactor_notify,
	 * read-only afterwards, so that a channel knows nothing of
	 * reactors.  NULL: no wake-ups (tests). */
	void (*notify)(struct reactor *r);
	int dst_input;         /* logical input index at the consumer */
	/* consumer core only */
	uint32_t ended;        /* EOI received */
	uint32_t aligned;      /* barrier seen, channel blocked */
	uint32_t idle;         /* producer said its stream is idle */
	int64_t watermark;
	uint64_t consumed_local;
	uint64_t popped;       /* elements taken from the ring, any kind */
	int64_t cap_id;        /* unaligned checkpoint whose in-flight data
				* this channel is capturing (0: none) */
	uint64_t cap_end;      /* ... up to this element (UINT64_MAX: not
				* announced yet, capture what is popped) */
	bool cap_done;
	/* written by consumer (release), read by producer (acquire) */
	_Alignas(CACHELINE) uint64_t consumed;
	char pad_[CACHELINE - sizeof(uint64_t)];
	/* An unaligned barrier overtaking the ring: the producer stores
	 * ann_seq (relaxed), then ann_id (release); the consumer loads
	 * ann_id (acquire), then ann_seq.  Elements [0, ann_seq) of the
	 * channel precede barrier ann_id. */
	_Alignas(CACHELINE) _Atomic int64_t ann_id;
	_Atomic uint64_t ann_seq;
	char pad2_[CACHELINE - 2 * sizeof(uint64_t)];
} channel;

channel *channel_new(uint32_t credits, struct reactor *producer,
		     struct reactor *consumer);
void channel_free(channel *c);
/* Producer: push or queue e; false if e was queued (channel is blocked). */
bool channel_push(channel *c, elem e);
/* Producer: move queued elements into the ring; true when none remain. */
bool channel_flush_pending(channel *c);
static inline bool channel_blocked(const channel *c) { return c->pend_len != 0; }
/* Consumer: take the next element; false if none. */
bool channel_pop(channel *c, elem *e);
/* Consumer: copy the element k places after the next one to pop without
 * taking it; false if the ring holds no such element yet. */
bool channel_peek(channel *c, uint64_t k, elem *e);
/* Consumer: a data element has been processed: return its credit. */
void channel_consumed(channel *c);

/* ---- logical job graph -------------------------------------------------------- */

enum part_kind { PART_DEFAULT = 0, PART_FORWARD, PART_HASH, PART_REBALANCE,
		 PART_BROADCAST };

typedef struct task task;

/* ---- operator snapshots (snapshot.c) ---------------------------------------------
 *
 * Operator (non-keyed) state travels as an opaque byte string per subtask,
 * written by op_ops.snapshot() at a barrier and given back to
 * op_ops.restore().  Little-endian fixed-width integers; the operator owns
 * the layout and should start it with a version byte.
 */

#define CKPT_FINAL INT64_MAX /* snapshot() id when a task ends */

typedef struct snap_buf {
	uint8_t *p;
	size_t len, cap;
} snap_buf;

/* Append n bytes (grows by malloc: at barriers, never per record).  0 or
 * -ENOMEM. */
int snap_put(snap_buf *b, const void *p, size_t n);
int snap_put_u64(snap_buf *b, uint64_t v);
/* Append a length-prefixed (u32) byte string. */
int snap_put_str(snap_buf *b, const char *s);
void snap_free(snap_buf *b);

/* Reading a blob: each getter returns 0 / NULL once the blob is exhausted
 * and sets err, so a reader checks err once at the end. */
typedef struct snap_rd {
	const uint8_t *p;
	size_t len, off;
	bool err;
} snap_rd;
uint64_t snap_get_u64(snap_rd *r);
const void *snap_get(snap_rd *r, size_t n);
/* A length-prefixed string copied into buf (NUL-terminated); false on
 * error or if it does not fit. */
bool snap_get_str(snap_rd *r, char *buf, size_t cap);

typedef struct op_blob {
	int subtask;          /* the old subtask that wrote it */
	const uint8_t *p;
	size_t len;
} op_blob;

typedef struct op_restore {
	int old_parallelism;
	int n;
	const op_blob *blobs; /* sorted by subtask */
	bool savepoint;       /* restoring a savepoint (not a checkpoint) */
} op_restore;

/*
 * The operator contract.  All callbacks except open/close run on the task's
 * reactor thread.  process() takes ownership of the batch.  end_input() is
 * called once when all inputs ended (before EOI is forwarded), watermark()
 * when the input watermark advances (NULL: forward it).  Sources implement
 * produce(): return > 0 after doing work (emitting, or consuming input that
 * yielded nothing), 0 when nothing could be done now (then say when to try
 * again with task_wait), < 0 when exhausted (the runtime ends the stream).
 * timer() is called once the deadline set with task_set_timer() has passed
 * (processing-time timers, idleness detection, early firing).  close() is
 * called for every task whose open() was called, even one that failed, so
 * it must cope with partly initialised state.
 */
typedef struct lnode lnode;

typedef struct op_ops {
	const char *kind;
	/* The operator makes its own watermarks and idleness (a watermark
	 * generator): input watermarks and idle marks are not forwarded. */
	bool own_watermarks;
	int (*open)(task *t);
	void (*process)(task *t, int input, weir_batch *b);
	void (*watermark)(task *t, int64_t wm);
	void (*end_input)(task *t);
	/*
	 * Checkpoint barrier `id` passed this task (aligned over all its open
	 * inputs), or the task ended (id = CKPT_FINAL): append the operator's
	 * non-keyed state to `out` -- a source's position, a sink's pending
	 * transaction, a watermark generator's clock.  Keyed state needs
	 * nothing here: registered tables log every mutation themselves
	 * (state/).  A transactional sink pre-commits here (flush, then
	 * task_sync_fd()).  NULL: no operator state.  Returns 0 or -errno
	 * (fails the job).
	 */
	int (*snapshot)(task *t, int64_t id, snap_buf *out);
	/* Checkpoint `id` is durable (its manifest is written): commit what
	 * was pre-committed at barriers <= id.  Idempotent. */
	void (*commit)(task *t, int64_t id);
	/*
	 * After open() and before the job runs (main thread): restore the
	 * operator state written by snapshot() in an earlier run.  r holds the
	 * blobs of every old subtask of this operator; with rescaling
	 * (r->old_parallelism != t->parallelism) the operator decides which
	 * part is its own (a source takes the splits of old subtasks s with
	 * s % parallelism == subtask).  0 or -errno.
	 */
	int (*restore)(task *t, const op_restore *r);
	int (*produce)(task *t);
	void (*timer)(task *t);
	void (*close)(task *t);
	/*
	 * Building the graph: a source that generates watermarks per split
	 * (a Kafka partition) takes over weir_assign_watermarks() applied to
	 * its main output: event time from column ts_col (-1: the source's
	 * own), watermark = max - lag per split, idle after idle_ms (0:
	 * never).  0, or -errno and the source stays as it was.  NULL: a
	 * watermark operator is added after the source instead.
	 */
	int (*adopt_watermarks)(lnode *n, int ts_col, int64_t lag, int64_t idle_ms);
} op_ops;

#define NODE_MAX_PORTS 8

struct lnode {
	int id;
	char name[64];
	const op_ops *ops;
	int parallelism;       /* 0 = environment default */
	int max_parallelism_1; /* operator can only run with parallelism 1 */
	bool bounded;          /* sources: ends by itself */
	bool new_chain;
	bool not_replayable;   /* sources: cannot seek back (stdin): at-least-once */
	double rate;           /* sources: records/s over all subtasks; 0 = no cap */
	bool side_outputs;     /* weir_side_output may add ports */
	int nports;
	const weir_schema *schema[NODE_MAX_PORTS]; /* per output port */
	int ninputs;
	void *conf;            /* operator configuration, owned */
	void (*conf_free)(void *conf);
};

typedef struct ledge {
	int src, src_port, dst, dst_input;
	enum part_kind part;
	int key_col;
} ledge;

typedef struct graph {
	lnode **nodes;
	int nnodes, cap_nodes;
	ledge *edges;
	int nedges, cap_edges;
} graph;

void graph_init(graph *g);
void graph_destroy(graph *g);
lnode *graph_add_node(graph *g, const char *name, const op_ops *ops);
int graph_add_edge(graph *g, int src, int src_port, int dst,
		   enum part_kind part, int key_col);

/* ---- tasks: operator subtasks inside actors ------------------------------------ */

typedef struct task_metrics {
	uint64_t rec_in, batch_in;   /* given to the operator */
	uint64_t rec_out, batch_out; /* emitted by the operator */
	uint64_t chan_out;           /* batches sent on channels (to other actors) */
	uint64_t dead_letters;
} task_metrics;

typedef struct outlet outlet;

struct task {
	const op_ops *ops;
	const lnode *node;
	void *st;               /* operator state, owned by the operator */
	int subtask, parallelism;
	struct actor *actor;
	struct runtime *rt;
	const weir_config *cfg;
	int nports;
	int nout[NODE_MAX_PORTS];
	outlet *out[NODE_MAX_PORTS];
	weir_out *emit[NODE_MAX_PORTS];
	int64_t watermark;      /* input watermark (INT64_MIN before the first) */
	int64_t out_watermark;  /* last watermark sent downstream */
	bool idle;              /* output stream marked idle */
	uint64_t timer_at;      /* task_set_timer() deadline, now_ns() clock; 0 = none */
	uint64_t wait_until;    /* task_wait(): source retry time, 0 = none */
	int wait_fd;            /* task_wait(): fd to poll, -1 = none */
	task_metrics m; /* written by the owner core with relaxed stores */
	/* Checkpointing; owner core while the job runs, main thread before
	 * and after. */
	void *keyed;            /* state/: the task's registered tables */
	void (*keyed_free)(void *keyed);
	int64_t ck_id;          /* last barrier the task passed (0 = none) */
	snap_buf snap;          /* operator state written at ck_id */
	int64_t ck_watermark;   /* its input watermark at ck_id */
	/* When the task ended: its final snapshot, kept apart from ck_id's,
	 * which the coordinator may still be writing into a manifest. */
	bool ck_final;
	snap_buf final_snap;
	int64_t final_watermark;
};

/* Emit a batch on `port` (takes ownership of b). Reactor thread. */
void task_emit(task *t, int port, weir_batch *b);
/* Advance event time on t's outputs (sources, watermark generators);
 * ignored unless it is above the last one sent. */
void task_emit_watermark(task *t, int64_t wm);
/* Mark t's output stream idle (it no longer holds back downstream
 * watermarks) or active again.  Repeats are ignored. */
void task_emit_idle(task *t, bool idle);
/* Call ops->timer(t) once now_ns() >= at_ns (replaces an earlier deadline;
 * 0 cancels).  Reactor thread. */
void task_set_timer(task *t, uint64_t at_ns);
/*
 * Make fd durable as part of the checkpoint whose barrier t is passing:
 * an fdatasync submitted through the core's io_uring, which the core's
 * acknowledgement of the checkpoint waits for.  Call from snapshot() (a
 * sink's pre-commit).  Without checkpointing, or when the job has
 * ended, it syncs at once.  0 or -errno.
 */
int task_sync_fd(task *t, int fd);
/* Is the job taking checkpoints (so sinks must be transactional)? */
bool task_checkpointing(const task *t);
/* Send barrier `id` downstream of t as if it had passed (tests). */
void task_emit_barrier(task *t, int64_t id);
/* The row emitter of `port`. */
weir_out *task_out(task *t, int port);
/* Flush partial batches of the task's row emitters. */
void task_flush(task *t);
/* Fail the whole job with a message. Any thread. */
void task_fail(task *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Count records in a metric without a shared atomic (owner core only). */
static inline void metric_add(uint64_t *m, uint64_t n)
{
	__atomic_store_n(m, *m + n, __ATOMIC_RELAXED);
}
static inline uint64_t metric_read(const uint64_t *m)
{
	return __atomic_load_n(m, __ATOMIC_RELAXED);
}
/* Is t's actor holding output it could not send (backpressure)?  A source
 * should stop producing and return when it is. */
bool task_blocked(const task *t);
/*
 * A source that returns 0 from produce() says when to try again: at
 * `until_ns` (now_ns() clock; 0 = only when woken) or when `fd` (-1 = none)
 * is readable.  Until then its reactor may sleep.
 */
void task_wait(task *t, uint64_t until_ns, int fd);

/* ---- running a graph ------------------------------------------------------------- */

typedef struct runtime runtime;

/* Accessors for the checkpoint store (state/) and tools. */
int runtime_ntasks(const runtime *rt);
task *runtime_task(const runtime *rt, int i);
int runtime_ncores(const runtime *rt);
const graph *runtime_graph(const runtime *rt);
const char *runtime_job(const runtime *rt);
/* The core (reactor index) that runs t. */
int task_core(const task *t);
/* The eventfd core `core` sleeps on when parked (for io_uring). */
int runtime_core_efd(const runtime *rt, int core);
/* The channels between subtasks (restoring unaligned checkpoints). */
int runtime_nchannels(const runtime *rt);
channel *runtime_channel(const runtime *rt, int i);
/*
 * Before the job runs (main thread): put e into channel c ahead of
 * everything its producer will send -- in-flight data of an unaligned
 * checkpoint.  The producer then sends nothing new until it got through.
 * Takes over e's batch.
 */
void runtime_restore_element(runtime *rt, channel *c, elem e);
/* Before the job runs (main thread): make and release batches as the
 * core of channel c's producer does; NULL unbinds. */
void runtime_bind_pool(runtime *rt, const channel *c);

/*
 * Checkpoint storage, implemented in state/ (checkpoint.c) and handed to
 * the runtime, which runs the protocol: triggers, acknowledgements and
 * timeouts on the job thread (core/checkpoint_coordinator.c), barriers and
 * alignment on the reactors (core/barrier.c).  "Main" functions run
 * on the thread that called runtime_run, "core" ones on core's reactor
 * thread (or the main thread once the reactors stopped).
 */
typedef struct ckpt_store ckpt_store;
typedef struct ckpt_store_ops {
	/* Main, after every task opened and before the job runs: recover
	 * from the newest complete checkpoint in cfg->checkpoint_dir or the
	 * savepoint cfg->restore_savepoint (printing which), then start
	 * logging.  *next_id = the first checkpoint id to use.  0, 1 when
	 * it restored a finished run (every task ended: nothing to run), or
	 * -errno (message in err). */
	int (*start)(runtime *rt, const weir_config *cfg, ckpt_store **out,
		     int64_t *next_id, char *err, size_t errlen);
	/* Main, before barrier id is injected: savepoint_dir non-NULL makes
	 * it a savepoint written there.  0 or -errno. */
	int (*begin)(ckpt_store *s, int64_t id, const char *savepoint_dir,
		     char *err, size_t errlen);
	/* Core: task t passed barrier id (t->snap holds its operator state,
	 * or t ended: t->ck_final).  Record its log position; materialize
	 * its tables when due or when id is a savepoint.  0 or -errno. */
	int (*task_barrier)(ckpt_store *s, task *t, int64_t id);
	/* Core: every task of core passed id or ended: make the core's log
	 * durable up to here. */
	void (*core_sync)(ckpt_store *s, int core, int64_t id);
	/*
	 * Core: an element of channel c is in flight across unaligned
	 * checkpoint id (it precedes the barrier, but the consumer had not
	 * processed it when it took its snapshot): log it so that a restore
	 * puts it back into the channel.  `key` orders a channel's elements:
	 * 2 * (its number among the elements pushed into the channel) + 1;
	 * 2 * n for the channel's own state (watermark, idleness) taken when
	 * the consumer had popped n elements.  0 or -errno.
	 */
	int (*channel_state)(ckpt_store *s, int core, int64_t id, const channel *c,
			     uint64_t key, const elem *e);
	/* Core: an fd to sync with the core's next core_sync (sinks). */
	int (*core_sync_fd)(ckpt_store *s, int core, int fd);
	/* Core: reap I/O; the highest id durable on core (0 = none).  A
	 * negative value is a failed write (-errno). */
	int64_t (*core_poll)(ckpt_store *s, int core);
	/* Core: is there checkpoint work between turns (a snapshot being
	 * logged by core_poll)?  Then the reactor does not park. */
	bool (*core_busy)(ckpt_store *s, int core);
	/* Core, as its reactor thread exits: wait for the core's I/O in
	 * flight (io_uring cancels what an exiting thread submitted). */
	void (*core_quiesce)(ckpt_store *s, int core);
	/* Main: every core acknowledged id: write its manifest (and the
	 * savepoint's metadata).  A line for the user goes into msg.  0 or
	 * -errno (the checkpoint is abandoned, the job goes on). */
	int (*complete)(ckpt_store *s, int64_t id, char *msg, size_t msglen);
	/* Main, in a cluster worker, instead of complete(): every local core
	 * acknowledged id: this worker's part of the manifest (its tasks'
	 * lines) into *text (malloc'd; the caller frees).  0 or -errno. */
	int (*part)(ckpt_store *s, int64_t id, char **text, char *err, size_t errlen);
	/* Main: id timed out or failed; forget it. */
	void (*abandon)(ckpt_store *s, int64_t id);
	/* Main, after the reactors stopped: add the store's figures (bytes
	 * read and written, materializations) to st. */
	void (*stats)(ckpt_store *s, weir_checkpoint_stats *st);
	/* Main, after the reactors stopped: close the logs, free s. */
	void (*stop)(ckpt_store *s);
} ckpt_store_ops;

/*
 * Plan the graph (expand, chain, place), open every task on the calling
 * thread, run the reactors until every bounded stream ended or the job was
 * cancelled, and close everything.  Returns 0 or a negative code after
 * logging why.
 */
/*
 * Running one worker's part of a job in a cluster (net/worker.c).  Every
 * worker plans the whole job over the cluster's cores (the same plan
 * everywhere: channel i is the same edge on every worker) and runs only
 * the actors placed on its own cores; channels between a local and a
 * remote actor get the data plane's reactor (runtime_net_reactor) at their
 * remote end, and the data plane carries their elements over the network.
 * Checkpoints are triggered and completed by the cluster's coordinator:
 * the worker acknowledges with its part of the manifest.  Callbacks run on
 * the thread that called runtime_run.
 */
typedef struct weir_cluster_part {
	int ncores;          /* reactors over the whole cluster */
	int first, nlocal;   /* this worker's: [first, first + nlocal) */
	uint64_t run;        /* state-log run number (the coordinator's) */
	void *ctx;
	/* Main, after planning and opening: prepare the data plane for the
	 * channels that cross workers (runtime_nchannels, channel_remote).
	 * 0 or -errno with a message in err. */
	int (*net_start)(void *ctx, runtime *rt, char *err, size_t errlen);
	/* The data plane is polled by this worker's first reactor (no thread
	 * of its own: a one-core worker would switch threads per frame).
	 * On that reactor's thread: attach (connect) before its first turn;
	 * step each turn (> 0 did work, 0 idle, < 0 done; flush: every local
	 * actor finished, so finish); has_work / wait while parking (wait up
	 * to timeout_ns, or until fd is readable); detach as it stops. */
	int (*net_attach)(void *ctx, char *err, size_t errlen);
	int (*net_step)(void *ctx, bool flush);
	bool (*net_has_work)(void *ctx);
	void (*net_wait)(void *ctx, int fd, uint64_t timeout_ns);
	void (*net_detach)(void *ctx);
	/* The next checkpoint the coordinator asks for (0: none); a savepoint
	 * when *sp_dir is set; *stop: stop with it. */
	int64_t (*ck_trigger)(void *ctx, char *sp_dir, size_t len, bool *stop);
	/* Checkpoint id is durable here (rc 0) with this worker's part of
	 * its manifest in text, or failed (rc < 0, text says why). */
	void (*ck_ack)(void *ctx, int64_t id, int rc, const char *text);
	/* The newest checkpoint the coordinator completed (commit it). */
	int64_t (*ck_committed)(void *ctx);
	/* Local reactors are done (local_done) or not: true once the
	 * coordinator says the job is over everywhere (or it is cancelled). */
	bool (*job_over)(void *ctx, bool local_done);
} run_cluster;

/* The cluster part this process runs (NULL: the whole job). */
const run_cluster *runtime_cluster(const runtime *rt);
/* Is core (a reactor index) one of this process's? */
bool runtime_core_local(const runtime *rt, int core);
/* The data plane's stand-in reactor: the remote end of crossing channels
 * (it shares the first local reactor's eventfd, which polls the data
 * plane). */
struct reactor *runtime_net_reactor(const runtime *rt);
/* Which end of channel c is on another worker: 0 none (local), 1 the
 * consumer (we send), 2 the producer (we receive), 3 both (unused here). */
int channel_remote(const runtime *rt, const channel *c);
/* Fail the whole job with a message (any thread). */
void runtime_fail(runtime *rt, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

typedef struct run_hooks {
	int progress_ms;
	bool print_plan;
	bool print_metrics;
	/* Checkpoint storage (state/); NULL: the job cannot checkpoint. */
	const ckpt_store_ops *store;
	/* Filled with what checkpointing did (may be NULL). */
	weir_checkpoint_stats *stats;
	/* Run one worker's part of a cluster job (NULL: all of it here). */
	const run_cluster *cluster;
} run_hooks;
int runtime_run(graph *g, const weir_config *cfg, const char *job,
		const run_hooks *hooks);

/* Plan without running and describe the plan into buf (tests, tools). */
int runtime_describe_plan(graph *g, const weir_config *cfg, char *buf,
			  size_t len);

/* weir_cancel_all, weir_savepoint and weir_savepoint_async (the job this
 * process runs) are declared in weir/admin.h. */

#endif
