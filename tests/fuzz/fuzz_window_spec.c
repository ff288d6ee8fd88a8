/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for the window specification parser (weir_window_parse, the
 * --window argument of window_agg.so): any input either parses into a
 * valid specification or is rejected with -EINVAL; it never crashes or
 * reads past the string.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <weir/weir.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	weir_window_spec w;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	memset(&w, 0xa5, sizeof(w));
	int r = weir_window_parse(s, &w);
	if (r == 0) {
		switch (w.kind) {
		case WEIR_WIN_TUMBLING:
			if (w.size <= 0)
				abort();
			break;
		case WEIR_WIN_SLIDING:
			if (w.size <= 0 || w.slide <= 0)
				abort();
			break;
		case WEIR_WIN_SESSION:
			if (w.gap <= 0)
				abort();
			break;
		case WEIR_WIN_COUNT:
			if (w.size <= 0 || w.slide < 0)
				abort();
			break;
		default:
			abort(); /* parsed into nothing valid */
		}
		if (w.allowed_lateness || w.trigger_count || w.early_fire_ms || w.offset)
			abort(); /* the other fields are zeroed */
	} else if (r != -EINVAL) {
		abort();
	}
	free(s);
	return 0;
}
