/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for the Nexmark job options (weir_nexmark_options, the
 * parser every Nexmark query runs on its argv).  The input is split at
 * newlines into argv words (argv[0] is a fixed name).  Any input either
 * parses, leaving a shorter argv whose words are the input's other words
 * in order, NULL-terminated, and values the generator accepts; or fails
 * with -EINVAL, a message, and argv untouched.  Never a crash or a read
 * past a word.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <weir/nexmark.h>
#include <weir/weir.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_WORDS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1);
	char *argv[MAX_WORDS + 2], *orig[MAX_WORDS + 2];
	int argc = 0;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = 0;
	argv[argc++] = (char *)"nexmark_q0.so";
	for (char *p = buf; argc <= MAX_WORDS;) {
		char *nl = strchr(p, '\n');
		argv[argc++] = p;
		if (!nl)
			break;
		*nl = 0;
		p = nl + 1;
	}
	argv[argc] = NULL;
	memcpy(orig, argv, sizeof(argv));
	int n = argc;
	weir_nexmark_conf c = { .seed = 7 };
	char err[256];
	memset(err, 0x5a, sizeof(err));
	int r = weir_nexmark_options(&n, argv, &c, err, sizeof(err));
	if (r == 0) {
		/* What is left: a subsequence of the words, argv[0] first. */
		if (n < 1 || n > argc || argv[n] != NULL || argv[0] != orig[0])
			abort();
		int j = 1;
		for (int i = 1; i < n; i++) {
			while (j < argc && orig[j] != argv[i])
				j++;
			if (j++ == argc)
				abort();
		}
		if (c.ooo_group >= (1u << 31) || (c.ooo_group > 1 && c.ooo_group % 953 == 0) ||
		    c.emit_rate < 0 || c.emit_rate != c.emit_rate)
			abort();
	} else {
		if (r != -EINVAL || n != argc || memcmp(argv, orig, sizeof(argv)) ||
		    !memchr(err, 0, sizeof(err)) || !err[0])
			abort();
	}
	free(buf);
	return 0;
}
