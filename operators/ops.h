/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Built-in operators (private to operators/): their op_ops tables and
 * configuration structs, used by the DataStream API in datastream.c, and
 * the CSV codec shared by the CSV source, the sinks and the fuzz target.
 */
#ifndef WEIR_OPS_H
#define WEIR_OPS_H

#include "core.h"

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
	char path[4096]; /* "" = stdout */
	bool discard;
} sink_conf;

extern const op_ops op_map, op_filter, op_flat_map, op_project, op_union;
extern const op_ops op_watermarks;
extern const op_ops op_window, op_process, op_interval_join;
extern const op_ops op_aggregate;
extern const op_ops op_file_source, op_generator;
extern const op_ops op_csv_sink, op_discard_sink;

/* ---- graph building for the API functions in each operator's file ------------------ */

/* Record the first build error of env (see weir_env_error). */
void env_error(weir_env *env, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
weir_env *stream_env(const weir_stream *s);
/* The node that produces s. */
lnode *stream_node(const weir_stream *s);
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
/* Add an output port with `schema` to the node of s; its stream or NULL. */
weir_stream *stream_add_port(weir_stream *s, const weir_schema *schema);
/* The stream of an existing port of the node of s. */
weir_stream *stream_port(weir_stream *s, int port);

/* The schema of input i of an interval-join node (its late records). */
const weir_schema *interval_join_input_schema(const lnode *n, int i);

/* Plan env's graph without running it; describe it into buf (tests). */
int env_describe_plan(weir_env *env, char *buf, size_t len);

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

#endif
