/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Columnar record batches and schemas: the unit of data that flows between
 * operators.  User functions (map, filter, flat_map, reduce) see batches, so
 * they can loop over whole columns; a row emitter (weir_out) is offered for
 * functions that produce a variable number of rows.
 *
 * A batch lives in one contiguous block taken from the pool of the core that
 * made it.  Layout of a block (offsets 64-byte aligned):
 *
 *   +--------------------+-------------+---------+---------+-----+------------+
 *   | struct weir_batch  | ts[cap] i64 | col 0   | col 1   | ... | heap bytes |
 *   +--------------------+-------------+---------+---------+-----+------------+
 *
 *   i64, ts      int64_t[cap]
 *   f64          double[cap]
 *   bool         uint8_t[cap]   (0 or 1)
 *   str          weir_str[cap]  ({offset, length} into the heap)
 *
 * Every batch carries an event-time column `ts` (milliseconds since the Unix
 * epoch by convention) besides its schema's columns.  String offsets are
 * relative to the heap, so a block can be sent over a network as it is.
 *
 * Ownership: a batch handed to a user function is borrowed for the call; the
 * runtime owns and recycles it.  Batches are reference-counted by the runtime
 * for fan-out; user code never frees one.
 */
#ifndef WEIR_BATCH_H
#define WEIR_BATCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include <weir/api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Column types.  WEIR_TS is an i64 timestamp in milliseconds. */
typedef enum weir_type {
	WEIR_I64 = 1,
	WEIR_F64 = 2,
	WEIR_BOOL = 3,
	WEIR_TS = 4,
	WEIR_STR = 5,
} weir_type;

#define WEIR_MAX_COLS 32
#define WEIR_MAX_NAME 48

typedef struct weir_field {
	char name[WEIR_MAX_NAME];
	weir_type type;
} weir_field;

/*
 * An immutable schema.  Schemas are created through an environment
 * (weir_schema_parse, weir_schema_make) and live as long as it does.
 */
typedef struct weir_schema {
	int ncols;
	weir_field fields[WEIR_MAX_COLS];
} weir_schema;

/* A string cell: bytes [off, off + len) of the batch heap. */
typedef struct weir_str {
	uint32_t off;
	uint32_t len;
} weir_str;

/*
 * A record batch.  Fields are read-only for user code except the column
 * arrays of an output batch handed to a map function, and `rows` is set by
 * the runtime.  `runtime_private` is the runtime's bookkeeping of the block
 * (pool link, reference count, owning core): opaque, never touched by user
 * code.
 */
typedef struct weir_batch {
	const weir_schema *schema;
	uint32_t rows;
	uint32_t capacity;
	int64_t *ts;
	void *cols[WEIR_MAX_COLS];
	char *heap;
	uint32_t heap_used;
	uint32_t heap_cap;
	uint64_t runtime_private[2];
} weir_batch;

static inline int64_t *weir_col_i64(const weir_batch *b, int c)
{
	return (int64_t *)b->cols[c];
}
static inline double *weir_col_f64(const weir_batch *b, int c)
{
	return (double *)b->cols[c];
}
static inline uint8_t *weir_col_bool(const weir_batch *b, int c)
{
	return (uint8_t *)b->cols[c];
}
static inline weir_str *weir_col_str(const weir_batch *b, int c)
{
	return (weir_str *)b->cols[c];
}
/* Pointer to the bytes of string cell (c, row); *len receives its length. */
static inline const char *weir_batch_str(const weir_batch *b, int c,
					 uint32_t row, uint32_t *len)
{
	weir_str s = ((const weir_str *)b->cols[c])[row];
	*len = s.len;
	return b->heap + s.off;
}

/*
 * Store a string into cell (c, row) of a batch being built (a map function's
 * output).  Returns 0, or -ENOSPC when the batch heap is full: a map function
 * returns that code and the runtime calls it again on smaller slices.
 */
WEIR_API int weir_batch_set_str(weir_batch *b, int c, uint32_t row, const void *p,
		       size_t len);

/* Index of the column called `name`, or -ENOENT. */
WEIR_API int weir_schema_find(const weir_schema *s, const char *name);

/*
 * Row emitter for flat_map and for operators whose output count differs from
 * their input.  Set the cells of one row, then call weir_out_emit().  A
 * string given to weir_out_str must stay valid until weir_out_emit returns.
 * Cells not set in a row are zero / empty.  Not thread-safe: an emitter
 * belongs to the subtask that is running the function.
 */
typedef struct weir_out weir_out;

WEIR_API void weir_out_i64(weir_out *o, int c, int64_t v);
WEIR_API void weir_out_f64(weir_out *o, int c, double v);
WEIR_API void weir_out_bool(weir_out *o, int c, bool v);
WEIR_API void weir_out_str(weir_out *o, int c, const void *p, size_t len);
WEIR_API void weir_out_ts(weir_out *o, int64_t event_time);
/* Append the staged row to the output; flushes a full batch downstream. */
WEIR_API void weir_out_emit(weir_out *o);
/* Emitter of side output `tag`, as declared with weir_side_output (1, 2,
 * ... in declaration order). */
WEIR_API weir_out *weir_out_side(weir_out *o, int tag);

#ifdef __cplusplus
}
#endif
#endif
