/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Row helpers of the operators (rows.c), beside state.h's row codec
 * (row_encode, row_decode, row_stage): checking an encoded row that came
 * back from a checkpoint, and encoding a row from cells rather than from
 * a batch.  Used by the operators that keep rows in their state: the
 * windows, the regular join, the interval join.  Pure functions; any
 * thread.
 */
#ifndef WEIR_OPERATORS_ROWS_H
#define WEIR_OPERATORS_ROWS_H

#include "core.h"

/* Check a row encoding (state.h row codec) of schema s in p[0..len): true
 * when it decodes to exactly len bytes.  Restored rows are checked before
 * use, since a context-free decode cannot. */
bool row_valid(const weir_schema *s, const void *p, size_t len);

/* Bytes of the encoding of cells (of schema sc) as a row. */
size_t cells_size(const weir_schema *sc, const weir_value *cells);
/* Encode cells, at event time ts, as a row into p (cells_size bytes). */
void cells_encode(const weir_schema *sc, const weir_value *cells, int64_t ts,
		  char *p);

#endif
