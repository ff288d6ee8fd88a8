/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Row helpers of the operators (declared in rows.h): the check of a
 * restored row encoding, and the encoding of a row from cells.  Both
 * follow the format of state.h's row codec: [i64 event time] then each
 * column, i64/f64/ts as 8 bytes, bool as 1, a string as [u32 len][bytes].
 */
#include <string.h>

#include "rows.h"

bool row_valid(const weir_schema *s, const void *buf, size_t len)
{
	const char *p = buf, *end = p + len;
	uint32_t n;

	if (len < 8)
		return false;
	p += 8; /* event time */
	for (int c = 0; c < s->ncols; c++) {
		switch (s->fields[c].type) {
		case WEIR_STR:
			if (end - p < 4)
				return false;
			memcpy(&n, p, 4);
			p += 4;
			if ((size_t)(end - p) < n)
				return false;
			p += n;
			break;
		case WEIR_BOOL:
			if (end - p < 1)
				return false;
			p++;
			break;
		default:
			if (end - p < 8)
				return false;
			p += 8;
		}
	}
	return p == end;
}

size_t cells_size(const weir_schema *sc, const weir_value *cells)
{
	size_t n = 8;
	for (int c = 0; c < sc->ncols; c++)
		n += sc->fields[c].type == WEIR_STR ? 4 + cells[c].str.len
		     : sc->fields[c].type == WEIR_BOOL ? 1 : 8;
	return n;
}

void cells_encode(const weir_schema *sc, const weir_value *cells, int64_t ts,
		  char *p)
{
	memcpy(p, &ts, 8);
	p += 8;
	for (int c = 0; c < sc->ncols; c++) {
		switch (sc->fields[c].type) {
		case WEIR_STR:
			memcpy(p, &cells[c].str.len, 4);
			if (cells[c].str.len)
				memcpy(p + 4, cells[c].str.ptr, cells[c].str.len);
			p += 4 + cells[c].str.len;
			break;
		case WEIR_BOOL:
			*p++ = cells[c].b ? 1 : 0;
			break;
		default:
			memcpy(p, &cells[c].i64, 8);
			p += 8;
		}
	}
}

