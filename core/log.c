/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging with levels to stderr.  One formatted write per message, so lines
 * from different reactors do not interleave.  Never called per record.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core.h"

static int level = LOG_WARN;

void log_set_level(int l) { __atomic_store_n(&level, l, __ATOMIC_RELAXED); }
int log_level(void) { return __atomic_load_n(&level, __ATOMIC_RELAXED); }

int log_parse_level(const char *s)
{
	static const char *names[] = { "error", "warn", "info", "debug" };
	for (int i = 0; i < (int)ARRAY_SIZE(names); i++)
		if (strcasecmp(s, names[i]) == 0)
			return i;
	return -EINVAL;
}

void wlog(int l, const char *fmt, ...)
{
	static const char *tags[] = { "error", "warn", "info", "debug" };
	char buf[1024];
	va_list ap;
	int n;

	if (l > log_level())
		return;
	n = snprintf(buf, sizeof(buf), "weir: %s: ", tags[l < 0 ? 0 : l > 3 ? 3 : l]);
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
	(void)w;
}

int weir_log_set_level(const char *name)
{
	int l = log_parse_level(name);
	if (l < 0)
		return l;
	log_set_level(l);
	return 0;
}
