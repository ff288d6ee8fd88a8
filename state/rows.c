/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Rows as bytes (state.h): how list state, buffered window rows and join
 * buffers keep a row of a batch once the batch is gone, and how they put it
 * back into an output batch.  One row is, unaligned and little-endian:
 *
 *   +-------+--------+--------+-----+
 *   | ts i64| col 0  | col 1  | ... |
 *   +-------+--------+--------+-----+
 *   i64, ts, f64: 8 bytes; bool: 1 byte (0/1); str: [u32 len][len bytes]
 *
 * The schema is not in the bytes: the reader knows it.
 */
#include <string.h>

#include "state.h"

size_t row_cells_size(const weir_batch *b, uint32_t row, int skip)
{
	const weir_schema *s = b->schema;
	size_t n = 0;
	for (int c = 0; c < s->ncols; c++) {
		if (c == skip)
			continue;
		switch (s->fields[c].type) {
		case WEIR_STR:
			n += 4 + weir_col_str(b, c)[row].len;
			break;
		case WEIR_BOOL:
			n += 1;
			break;
		default:
			n += 8;
		}
	}
	return n;
}

size_t row_encoded_size(const weir_batch *b, uint32_t row)
{
	return 8 + row_cells_size(b, row, -1);
}

size_t row_cells_encode(const weir_batch *b, uint32_t row, int skip, void *buf)
{
	const weir_schema *s = b->schema;
	char *p = buf;
	for (int c = 0; c < s->ncols; c++) {
		if (c == skip)
			continue;
		switch (s->fields[c].type) {
		case WEIR_STR: {
			weir_str v = weir_col_str(b, c)[row];
			memcpy(p, &v.len, 4);
			if (v.len)
				memcpy(p + 4, b->heap + v.off, v.len);
			p += 4 + v.len;
			break;
		}
		case WEIR_BOOL:
			*p++ = weir_col_bool(b, c)[row] ? 1 : 0;
			break;
		default:
			memcpy(p, &weir_col_i64(b, c)[row], 8);
			p += 8;
		}
	}
	return (size_t)(p - (char *)buf);
}

size_t row_encode(const weir_batch *b, uint32_t row, void *buf)
{
	memcpy(buf, &b->ts[row], 8);
	return 8 + row_cells_encode(b, row, -1, (char *)buf + 8);
}

size_t row_decode(const weir_schema *s, const void *buf, weir_value *cells,
		  int64_t *ts)
{
	const char *p = buf;
	memcpy(ts, p, 8);
	p += 8;
	for (int c = 0; c < s->ncols; c++) {
		weir_value *v = &cells[c];
		memset(v, 0, sizeof(*v));
		switch (s->fields[c].type) {
		case WEIR_STR:
			memcpy(&v->str.len, p, 4);
			v->str.ptr = p + 4;
			p += 4 + v->str.len;
			break;
		case WEIR_BOOL:
			v->b = *p++ != 0;
			break;
		default:
			memcpy(&v->i64, p, 8);
			p += 8;
		}
	}
	return (size_t)(p - (const char *)buf);
}

void row_stage_cells(weir_out *o, const weir_schema *s, const weir_value *cells,
		     int off)
{
	for (int c = 0; c < s->ncols; c++) {
		switch (s->fields[c].type) {
		case WEIR_STR:
			weir_out_str(o, off + c, cells[c].str.ptr, cells[c].str.len);
			break;
		case WEIR_F64:
			weir_out_f64(o, off + c, cells[c].f64);
			break;
		case WEIR_BOOL:
			weir_out_bool(o, off + c, cells[c].b);
			break;
		default:
			weir_out_i64(o, off + c, cells[c].i64);
		}
	}
}

void row_stage(weir_out *o, const weir_schema *s, const weir_value *cells,
	       int64_t ts)
{
	row_stage_cells(o, s, cells, 0);
	weir_out_ts(o, ts);
}

weir_value cell_value(const weir_batch *b, int col, uint32_t row)
{
	weir_value v;
	memset(&v, 0, sizeof(v));
	switch (b->schema->fields[col].type) {
	case WEIR_STR: {
		weir_str s = weir_col_str(b, col)[row];
		v.str.ptr = b->heap + s.off;
		v.str.len = s.len;
		break;
	}
	case WEIR_BOOL:
		v.b = weir_col_bool(b, col)[row] != 0;
		break;
	default:
		v.i64 = weir_col_i64(b, col)[row];
	}
	return v;
}
