/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CSV codec (RFC 4180): record splitting with quotes, value parsing,
 * escaping and row formatting.  Pure functions over caller memory, shared
 * by the CSV source, the CSV sinks, the connectors (connectors/) and
 * tests/fuzz/fuzz_csv.c.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

size_t csv_skip_line(const char *buf, size_t len)
{
	const char *nl = memchr(buf, '\n', len);
	return nl ? (size_t)(nl - buf) + 1 : len;
}

long csv_split(const char *buf, size_t len, bool at_eof, char *scratch,
	       csv_field *out, int max, int *nfields, const char **why)
{
	size_t i = 0, w = 0;
	int nf = 0;

	*nfields = 0;
	for (;;) {
		size_t start = w;
		if (i < len && buf[i] == '"') {
			i++;
			for (;;) {
				if (i >= len) {
					if (!at_eof)
						return 0;
					*why = "unterminated quoted field";
					return -EINVAL;
				}
				if (buf[i] == '"') {
					if (i + 1 < len && buf[i + 1] == '"') {
						scratch[w++] = '"';
						i += 2;
						continue;
					}
					if (i + 1 >= len && !at_eof)
						return 0; /* can't tell "" from " yet */
					i++;
					break;
				}
				scratch[w++] = buf[i++];
			}
			if (i < len && buf[i] != ',' && buf[i] != '\n' &&
			    !(buf[i] == '\r' && (i + 1 >= len || buf[i + 1] == '\n'))) {
				*why = "text after a closing quote";
				return -EINVAL;
			}
		} else {
			while (i < len && buf[i] != ',' && buf[i] != '\n') {
				if (buf[i] == '"') {
					*why = "quote inside an unquoted field";
					return -EINVAL;
				}
				scratch[w++] = buf[i++];
			}
			/* A CR before the LF ends the line, it is not data. */
			if (w > start && scratch[w - 1] == '\r' &&
			    (i < len ? buf[i] == '\n' : at_eof))
				w--;
		}
		if (nf < max) {
			out[nf].off = (uint32_t)start;
			out[nf].len = (uint32_t)(w - start);
		}
		nf++;
		if (i >= len) {
			if (!at_eof)
				return 0;
			*nfields = nf;
			return (long)i;
		}
		if (buf[i] == '\n') {
			*nfields = nf;
			return (long)(i + 1);
		}
		if (buf[i] == '\r') {
			/* quoted field followed by CRLF */
			i++;
			if (i < len && buf[i] == '\n') {
				*nfields = nf;
				return (long)(i + 1);
			}
			if (i >= len && !at_eof)
				return 0;
			*nfields = nf;
			return (long)i;
		}
		i++; /* the comma */
	}
}

int csv_parse_value(const char *p, size_t n, weir_type t, int64_t *v)
{
	char tmp[64];
	char *end;

	if (t == WEIR_BOOL) {
		if ((n == 4 && !strncmp(p, "true", 4)) || (n == 1 && p[0] == '1')) {
			*v = 1;
			return 0;
		}
		if ((n == 5 && !strncmp(p, "false", 5)) || (n == 1 && p[0] == '0')) {
			*v = 0;
			return 0;
		}
		return -EINVAL;
	}
	if (n == 0 || n >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, p, n);
	tmp[n] = 0;
	if (t == WEIR_F64) {
		double d;
		if (tmp[0] == ' ' || tmp[0] == '\t')
			return -EINVAL;
		errno = 0;
		d = strtod(tmp, &end);
		if (*end || errno == ERANGE)
			return -EINVAL;
		memcpy(v, &d, 8);
		return 0;
	}
	/* i64, ts: optional sign and decimal digits only */
	size_t i = tmp[0] == '-' || tmp[0] == '+';
	if (i == n)
		return -EINVAL;
	for (size_t k = i; k < n; k++)
		if (tmp[k] < '0' || tmp[k] > '9')
			return -EINVAL;
	errno = 0;
	long long x = strtoll(tmp, &end, 10);
	if (errno == ERANGE || *end)
		return -EINVAL;
	*v = x;
	return 0;
}

size_t csv_escape(const char *p, size_t n, char *out)
{
	bool quote = false;
	for (size_t i = 0; i < n; i++)
		if (p[i] == ',' || p[i] == '"' || p[i] == '\n' || p[i] == '\r') {
			quote = true;
			break;
		}
	if (!quote) {
		memcpy(out, p, n);
		return n;
	}
	size_t w = 0;
	out[w++] = '"';
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '"')
			out[w++] = '"';
		out[w++] = p[i];
	}
	out[w++] = '"';
	return w;
}

/* ---- formatting ---------------------------------------------------------------- */

static char *fmt_i64(char *p, int64_t v)
{
	char tmp[24];
	int n = 0;
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*p++ = '-';
	while (n)
		*p++ = tmp[--n];
	return p;
}

static char *fmt_f64(char *p, double d)
{
	/* Shortest of %.15g / %.17g that reads back as the same double. */
	int n = snprintf(p, 32, "%.15g", d);
	if (strtod(p, NULL) != d)
		n = snprintf(p, 32, "%.17g", d);
	return p + n;
}

size_t csv_row_bound(const weir_batch *b, uint32_t r)
{
	/* numbers take < 32 bytes, strings 2n + 2 */
	return (size_t)b->schema->ncols * 32 + 2 + 2 * batch_row_heap(b, r);
}

char *csv_format_row(char *p, const weir_batch *b, uint32_t r)
{
	const weir_schema *sc = b->schema;
	for (int c = 0; c < sc->ncols; c++) {
		if (c)
			*p++ = ',';
		p = csv_format_cell(p, b, c, r);
	}
	return p;
}

char *csv_format_cell(char *p, const weir_batch *b, int c, uint32_t r)
{
	switch (b->schema->fields[c].type) {
	case WEIR_I64: case WEIR_TS:
		return fmt_i64(p, weir_col_i64(b, c)[r]);
	case WEIR_F64:
		return fmt_f64(p, weir_col_f64(b, c)[r]);
	case WEIR_BOOL:
		if (weir_col_bool(b, c)[r]) {
			memcpy(p, "true", 4);
			return p + 4;
		}
		memcpy(p, "false", 5);
		return p + 5;
	case WEIR_STR: {
		uint32_t n;
		const char *v = weir_batch_str(b, c, r, &n);
		return p + csv_escape(v, n, p);
	}
	}
	return p;
}

/* ---- records into rows ---------------------------------------------------------- */

int csv_parse_fields(const weir_schema *sc, const char *scratch, const csv_field *f, int nf,
		     int64_t *vals, size_t *str_bytes, char *msg, size_t cap)
{
	if (nf != sc->ncols) {
		snprintf(msg, cap, "expected %d fields, found %d", sc->ncols, nf);
		return -1;
	}
	*str_bytes = 0;
	for (int k = 0; k < nf; k++) {
		weir_type ty = sc->fields[k].type;
		if (ty == WEIR_STR) {
			*str_bytes += f[k].len;
			continue;
		}
		if (csv_parse_value(scratch + f[k].off, f[k].len, ty, &vals[k]) < 0) {
			snprintf(msg, cap, "column %d (%s): '%.*s' is not a valid %s", k + 1,
				 sc->fields[k].name, (int)(f[k].len > 40 ? 40 : f[k].len),
				 scratch + f[k].off, type_name(ty));
			return -1;
		}
	}
	return 0;
}

void csv_store_row(weir_batch *b, uint32_t r, const char *scratch, const csv_field *f,
		   const int64_t *vals)
{
	const weir_schema *sc = b->schema;
	for (int k = 0; k < sc->ncols; k++) {
		weir_type ty = sc->fields[k].type;
		if (ty == WEIR_STR)
			weir_batch_set_str(b, k, r, scratch + f[k].off, f[k].len);
		else if (ty == WEIR_BOOL)
			weir_col_bool(b, k)[r] = (uint8_t)vals[k];
		else
			weir_col_i64(b, k)[r] = vals[k];
	}
}
