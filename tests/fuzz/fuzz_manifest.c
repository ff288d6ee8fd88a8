/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for the manifest parser (state/manifest.c manifest_parse):
 * a checkpoint's chk-N.manifest, a savepoint's _metadata, and what
 * `weir run --from-savepoint` is pointed at.  Any input parses into a
 * manifest whose every index is in range, or is refused with -EINVAL (or
 * -ENOMEM) and a message; it never crashes or leaks.
 *
 * The first input byte picks how the text is built, so mutations reach
 * past the checksum line:
 *   0  the rest of the input is the text
 *   1  the rest of the input, then a "crc" line that is right for it
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > (1 << 20))
		return 0;
	size_t n = size - 1;
	char *text = malloc(n + 32);
	if (!text)
		return 0;
	memcpy(text, data + 1, n);
	if (data[0] & 1)
		n += (size_t)snprintf(text + n, 32, "crc %08x\n", crc32c(0, text, n));
	manifest m;
	char err[512] = "";
	int rc = manifest_parse(text, n, &m, err, sizeof(err));
	if (rc == 0) {
		for (int i = 0; i < m.ntasks; i++) {
			const mf_task *t = &m.tasks[i];
			if (t->op < 0 || t->op >= m.nops || t->sub < 0 ||
			    t->sub >= m.ops[t->op].parallelism || t->core < 0 ||
			    t->core >= m.ncores)
				abort();
			if (t->tail_off && (t->tail_seg < t->to_seg ||
					    (t->tail_seg == t->to_seg && t->tail_off <= t->to_off)))
				abort(); /* a tail before its barrier */
		}
		for (int i = 0; i < m.ninflight; i++)
			if (m.inflight[i].core < 0 || m.inflight[i].core >= m.ncores)
				abort();
	} else if ((rc != -EINVAL && rc != -ENOMEM) || !err[0]) {
		abort();
	}
	manifest_free(&m);
	free(text);
	return 0;
}
