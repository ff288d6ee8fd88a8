/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CSV codec (RFC 4180): record splitting with quotes, value parsing and
 * escaping.  Pure functions over caller memory, shared by the CSV source,
 * the CSV sinks and tests/fuzz/fuzz_csv.c.
 */
#include <errno.h>
#include <math.h>
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
