/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for the CSV codec: record splitting (in every chunking, as the
 * source sees a file arrive), value parsing, and escape round trips.  Built
 * as a libFuzzer target with clang (-Dfuzz=enabled), and always as a replay
 * driver (fuzz_driver.c) that the test suite runs over a seeded corpus plus
 * deterministic random mutations.
 */
#include <stdlib.h>
#include <string.h>

#include "ops.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	char *scratch = malloc(size + 1);
	csv_field fields[WEIR_MAX_COLS + 1];
	size_t pos = 0;

	if (!scratch)
		return 0;
	while (pos < size) {
		int nf = 0;
		const char *why = NULL;
		/* First as if more input may follow, then at end of file. */
		long n = csv_split(buf + pos, size - pos, false, scratch, fields,
				   WEIR_MAX_COLS + 1, &nf, &why);
		if (n == 0)
			n = csv_split(buf + pos, size - pos, true, scratch, fields,
				      WEIR_MAX_COLS + 1, &nf, &why);
		if (n < 0) {
			if (!why)
				abort(); /* a malformed record must say why */
			n = (long)csv_skip_line(buf + pos, size - pos);
		} else {
			if (n == 0 || (size_t)n > size - pos)
				abort(); /* at EOF a record always ends */
			int m = nf < WEIR_MAX_COLS + 1 ? nf : WEIR_MAX_COLS + 1;
			for (int i = 0; i < m; i++) {
				int64_t v;
				if (fields[i].off + fields[i].len > size)
					abort();
				for (int t = WEIR_I64; t <= WEIR_STR; t++)
					if (t != WEIR_STR)
						csv_parse_value(scratch + fields[i].off,
								fields[i].len, (weir_type)t, &v);
				/* escape and split again: same bytes back */
				char *esc = malloc(2 * fields[i].len + 3);
				char *back = malloc(2 * fields[i].len + 3);
				size_t e = csv_escape(scratch + fields[i].off, fields[i].len, esc);
				esc[e] = '\n';
				csv_field f2[2];
				int nf2;
				long r = csv_split(esc, e + 1, true, back, f2, 2, &nf2, &why);
				if (r != (long)e + 1 || nf2 != 1 || f2[0].len != fields[i].len ||
				    memcmp(back + f2[0].off, scratch + fields[i].off, f2[0].len))
					abort();
				free(esc);
				free(back);
			}
		}
		pos += (size_t)n;
	}
	free(scratch);
	return 0;
}
