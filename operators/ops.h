/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Built-in operators (private to operators/): their op_ops tables and
 * configuration structs, used by the DataStream API in datastream.c, the
 * small helpers several operators share (saturating time arithmetic, an
 * output's default event time), and the CSV codec shared by the CSV
 * source, the sinks and the fuzz target.  Row helpers are in rows.h
 * (included here, as the tests read row_valid through this header), what
 * the joins share in two_input.h, the generators' mixer in splitmix.h.
 */
#ifndef WEIR_OPS_H
#define WEIR_OPS_H

#include "core.h"
#include "rows.h"

/* ---- shared helpers ----------------------------------------------------------- */

/* a + b, clamped to [INT64_MIN, INT64_MAX] (times near the ends of the
 * range: windows, intervals, deadlines). */
static inline int64_t sat_add(int64_t a, int64_t b)
{
	int64_t r;
	if (__builtin_add_overflow(a, b, &r))
		return b > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

/* a - b, clamped likewise. */
static inline int64_t sat_sub(int64_t a, int64_t b)
{
	int64_t r;
	if (__builtin_sub_overflow(a, b, &r))
		return b < 0 ? INT64_MAX : INT64_MIN;
	return r;
}

/* Set the default event time of the next rows of every port of t. */
static inline void out_default_ts(task *t, int64_t ts)
{
	for (int p = 0; p < t->nports; p++)
		weir_out_ts(t->emit[p], ts);
}

/* ---- configurations -------------------------------------------------------- */

typedef struct fn_conf {
	void *fn;
	void *arg;
	int cols[WEIR_MAX_COLS]; /* project: source column of each output */
} fn_conf;

enum agg_kind { AGG_SUM = 1, AGG_MIN, AGG_MAX, AGG_COUNT, AGG_REDUCE };

typedef struct agg_conf {
	enum agg_kind kind;
	int key_col;       /* in the input schema */
	int col;           /* aggregated column (SUM/MIN/MAX) */
	bool final_only;   /* BATCH mode: one row per key at end of input */
	bool combiner;     /* local pre-aggregation before the exchange: emits
			    * partial rows when its table gets large */
	weir_reduce_fn fn;
	void *arg;
	const weir_schema *in;
} agg_conf;

enum source_kind { SRC_TEXT = 1, SRC_STDIN, SRC_CSV };

typedef struct file_source_conf {
	enum source_kind kind;
	char path[4096];
	bool header;
	int ts_col;
	const weir_schema *schema;
} file_source_conf;

typedef struct sink_conf {
	char path[4096]; /* "" = stdout; weir_sink_files: the directory */
	bool discard;
} sink_conf;

extern const op_ops op_map, op_filter, op_flat_map, op_project, op_union;
extern const op_ops op_watermarks;
extern const op_ops op_window, op_process, op_interval_join;
extern const op_ops op_join, op_topn;
extern const op_ops op_aggregate;
extern const op_ops op_file_source, op_generator, op_nexmark;
extern const op_ops op_csv_sink, op_discard_sink, op_files_sink, op_user_sink;

/* ---- replayable sources (source.c) ------------------------------------------------
 *
 * A source's work is a list of splits [pos, end): bytes of a file or row
 * ids of the generator.  pos is where the next batch starts (a line start
 * once a text split is partly read, a record start in CSV).  The
 * unbounded generator's split is the arithmetic sequence of blocks of
 * `block_rows` ids starting with the block of pos, every `stride`-th
 * block; block_rows = 0 is a plain range.
 *
 * Snapshot blob (little-endian, as every operator blob):
 *
 *   +------------+---------+-------------+------------------------------+
 *   | version u8 | kind u8 | nsplits u32 | nsplits x split (40 bytes)   |
 *   |     = 1    |         |             |                              |
 *   +------------+---------+-------------+------------------------------+
 *   split: pos u64, end u64, line u64, block_rows u64, stride u64
 *
 * kind: SRC_BLOB_*; a STREAM blob (stdin, a pipe) has no splits.  A
 * NEXMARK split's `line` holds a fingerprint of the run's options
 * (nexmark.c), so a restore with other options is refused.
 */
typedef struct src_split {
	uint64_t pos, end;
	uint64_t line;       /* CSV: 1-based number of the line at pos; else 0 */
	uint64_t block_rows; /* unbounded generator (see above); else 0 */
	uint64_t stride;
} src_split;

enum { SRC_BLOB_VERSION = 1 };
enum src_blob_kind { SRC_BLOB_TEXT = 1, SRC_BLOB_STREAM = 2, SRC_BLOB_CSV = 3,
		     SRC_BLOB_GEN = 4, SRC_BLOB_NEXMARK = 5 };

/* The range [*start, *end) of [0, total) that subtask i of p starts with. */
void src_split_range(uint64_t total, int subtask, int parallelism,
		     uint64_t *start, uint64_t *end);
/* Append a source snapshot with splits sp[0..n) to out.  0 or -ENOMEM. */
int src_splits_write(snap_buf *out, enum src_blob_kind kind,
		     const src_split *sp, int n);
/*
 * The splits subtask `subtask` of `parallelism` inherits from the blobs of
 * r: every split of the old subtasks s with s % parallelism == subtask, in
 * order of s.  *out is malloc'd (NULL when there are none; the caller frees
 * it), *n their number.  *stream is set when any blob came from a source
 * that cannot replay (its splits are then meaningless).  0; -EINVAL for a
 * malformed blob or one of another kind than `kind`; -ENOMEM.  Pure.
 */
int src_splits_take(const op_restore *r, enum src_blob_kind kind, int subtask,
		    int parallelism, src_split **out, int *n, bool *stream);

/*
 * Rate cap of one source subtask: a token bucket of `rate` rows per
 * second holding at most 10 ms worth (at least one row), which is also
 * the most one produce() call emits, so output is smooth.  It is a cap,
 * not a target: time the subtask spends elsewhere beyond the bucket's
 * depth is not made up.  Owner core only; pure given `now`.
 */
typedef struct rate_gate {
	double rate;    /* rows/s of this subtask; 0 = no cap */
	double depth;   /* bucket size in rows */
	double tokens;
	uint64_t last;  /* now_ns() of the last refill; 0 = never */
} rate_gate;

/* total rows/s over `parallelism` subtasks (0 = no cap); starts empty. */
void rate_gate_init(rate_gate *g, double total, int parallelism);
/* Rows the caller may emit at `now` (UINT32_MAX without a cap), or 0 with
 * *wake_ns set to when the next row is due. */
uint32_t rate_gate_allow(rate_gate *g, uint64_t now, uint64_t *wake_ns);
/* rate_gate_allow for source task t at the current time: when it returns
 * 0 it has asked the runtime to wake t when the next row is due. */
uint32_t gate_allow(task *t, rate_gate *g);
/* The caller emitted n rows. */
static inline void rate_gate_take(rate_gate *g, uint32_t n)
{
	if (g->rate > 0)
		g->tokens -= n;
}
/* The tighter of two caps in rows/s (0 = none). */
static inline double rate_min(double a, double b)
{
	return a > 0 && (b <= 0 || a < b) ? a : b;
}

/* ---- graph building for the API functions in each operator's file ------------------ */

/* Record the first build error of env (see weir_env_error). */
void env_error(weir_env *env, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
weir_env *stream_env(const weir_stream *s);
/* The node that produces s, and which of its output ports s is. */
lnode *stream_node(const weir_stream *s);
int stream_port_of(const weir_stream *s);
/* The key column of a weir_key_by() stream, else -1. */
int stream_key_col(const weir_stream *s);
bool stream_is_broadcast(const weir_stream *s);
/* A zeroed schema that lives as long as env; NULL (and an env error) on
 * ENOMEM. */
weir_schema *env_alloc_schema(weir_env *env);
/*
 * Add operator `ops` reading in[0..nin) (input i over an edge with in[i]'s
 * partitioning), with output schema `out` on port 0.  Takes ownership of
 * conf (released with conf_free, or free() when NULL), also on failure.
 * Returns the stream of port 0, or NULL after recording an env error.
 */
weir_stream *stream_add_op(weir_stream *const *in, int nin, const char *name,
			   const char *dflt, const op_ops *ops,
			   const weir_schema *out, void *conf,
			   void (*conf_free)(void *));
/*
 * Add source operator `ops` (no inputs) with output schema `out` on port 0;
 * `bounded`: it ends by itself.  Takes ownership of conf (free()), also on
 * failure.  Returns the stream of port 0, or NULL after an env error.
 */
weir_stream *stream_add_source(weir_env *env, const char *name, const char *dflt,
			       const op_ops *ops, const weir_schema *out, void *conf,
			       bool bounded);
/* Add an output port with `schema` to the node of s; its stream or NULL. */
weir_stream *stream_add_port(weir_stream *s, const weir_schema *schema);
/* The stream of an existing port of the node of s. */
weir_stream *stream_port(weir_stream *s, int port);

/* The schema of input i (0 = a, 1 = b) of an interval-join node (its late
 * records), or NULL if n is not one (interval_join.c; for
 * weir_window_late). */
const weir_schema *interval_join_input_schema(const lnode *n, int i);

/* weir_env_describe_plan and weir_env_execute_part (a worker's part of
 * a cluster run; NULL: all of it) are declared in weir/admin.h. */

struct kvtab_conf; /* state/state.h */

/* ---- keyed state of the operators: value encodings ------------------------------------
 *
 * kvtab codec callbacks see only the value, so every encoding here is
 * context-free: a value is plain bytes, or starts with blist pointers
 * (kvtab_conf.nlists), or is a fixed struct that says everything its
 * pointers need (session index, join buffer, map with its value size), or
 * is an owned buffer followed by plain bytes, whose codec is instantiated
 * per plain size (obuf_table_conf).  The constructors below are what the
 * operators' open() use; tests/unit/test_codec.c round-trips them.
 */

/* A byte buffer a table value owns through its first word (a reduce
 * accumulator row, the strings of an aggregate's accumulator).  The
 * table's free_value frees it. */
typedef struct obuf {
	uint32_t cap, len;
	char data[];
} obuf;

/* Replace the contents of *b (NULL: none yet) with p[0..n); grows, never
 * shrinks.  p must not point into *b.  0, -E2BIG or -ENOMEM (*b unchanged). */
int obuf_set(obuf **b, const void *p, size_t n);

/*
 * Give c (key_type and vsize set) the codec and free function of values
 * [obuf * | vsize - 8 plain bytes], encoded as
 *
 *   [u32 len, or 0xffffffff for no buffer][len bytes][vsize - 8 plain bytes]
 *
 * 0, or -EINVAL unless vsize - 8 is a multiple of 8 up to OBUF_MAX_PLAIN.
 */
#define OBUF_MAX_PLAIN 256u
int obuf_table_conf(struct kvtab_conf *c);

/*
 * The kvtab configuration of the keyed state an operator registers as
 * `name` (see each operator's file for its names and value layouts), as
 * open() makes it, for node n (built through the API; not yet run).  The
 * key type comes from n's input.  0, or -ENOENT if n has no such state.
 */
int aggregate_table_conf(const lnode *n, const char *name,
			 struct kvtab_conf *out);
int window_table_conf(const lnode *n, const char *name,
		      struct kvtab_conf *out);
int process_table_conf(const lnode *n, const char *name,
		       struct kvtab_conf *out);
/* The interval join's tables (process_table_conf answers for them too). */
int interval_join_table_conf(const lnode *n, const char *name,
			     struct kvtab_conf *out);
int join_table_conf(const lnode *n, const char *name, struct kvtab_conf *out);
int topn_table_conf(const lnode *n, const char *name, struct kvtab_conf *out);

/* Tests: the processing-time clock of a join subtask's TTL (NULL: the
 * coarse wall clock), for its own reading and its tables'.  After open(),
 * on the subtask's thread. */
void join_set_clock(task *t, int64_t (*now_ms)(void));
/* Tests: entries of each side's table (expired ones not yet reclaimed
 * included), the live rows of the live ones, and the bytes of their
 * buffers. */
void join_state_size(task *t, size_t keys[2], size_t rows[2], size_t bytes[2]);

/* ---- CSV codec ----------------------------------------------------------------- */

/*
 * Split one CSV record (RFC 4180) from buf[0..len).  Fields are written into
 * `out` (unquoted, with "" turned into ") as (offset, length) pairs into
 * `scratch`, which must hold len bytes.  Returns the number of bytes the
 * record used, including its line end; 0 if the record is incomplete (an
 * open quote or no line end and !at_eof); or -EINVAL with *why set for a
 * malformed record (text after a closing quote, a quote inside an unquoted
 * field), in which case the return value's magnitude is not a length: call
 * csv_skip_line to move on.  *nfields gets the field count (at most max).
 */
typedef struct csv_field {
	uint32_t off, len;
} csv_field;

long csv_split(const char *buf, size_t len, bool at_eof, char *scratch,
	       csv_field *out, int max, int *nfields, const char **why);
/* Bytes up to and including the next line end (or len). */
size_t csv_skip_line(const char *buf, size_t len);
/* Parse a field as a column of type t into *v (i64/ts/f64/bool). */
int csv_parse_value(const char *p, size_t n, weir_type t, int64_t *v);
/* Append a CSV-escaped field to out; returns bytes written (out must hold
 * 2 * n + 2). */
size_t csv_escape(const char *p, size_t n, char *out);
/* Bytes that row r of b takes as a CSV line, at most (with its '\n'). */
size_t csv_row_bound(const weir_batch *b, uint32_t r);
/* Write row r of b as CSV at p (no '\n'; csv_row_bound() bytes of room);
 * returns the end.  csv_format_cell: one cell, column c. */
char *csv_format_row(char *p, const weir_batch *b, uint32_t r);
char *csv_format_cell(char *p, const weir_batch *b, int c, uint32_t r);
/* The fields f[0..nf) of a split record (in scratch) as values of schema
 * sc: numbers, booleans and times into vals[k], the strings' total length
 * into *str_bytes.  0, or -1 with why in msg (a wrong field count, a value
 * that does not parse, naming its column). */
int csv_parse_fields(const weir_schema *sc, const char *scratch, const csv_field *f, int nf,
		     int64_t *vals, size_t *str_bytes, char *msg, size_t cap);
/* Store a record parsed by csv_parse_fields as row r of b (room checked
 * by the caller: capacity, and str_bytes of heap). */
void csv_store_row(weir_batch *b, uint32_t r, const char *scratch, const csv_field *f,
		   const int64_t *vals);

#endif
