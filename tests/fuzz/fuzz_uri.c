/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for connector URIs (connectors/uri.c: uri_parse, what the
 * example jobs' --input and --output flags go through).  The first byte
 * picks source or sink use; the rest, up to its first NUL, is the URI.
 * Any input is a path, a Kafka URI whose fields are NUL-terminated and
 * whose broker list and topic are non-empty, or -EINVAL with a message;
 * never a crash or a read past the string.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	bool sink = data[0] & 1;
	char *s = malloc(size);
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = 0;
	kafka_uri k;
	char err[256];
	err[0] = 0;
	int rc = uri_parse(s, sink, &k, err, sizeof(err));
	if (rc == URI_KAFKA) {
		if (!k.brokers[0] || !k.topic[0] || strlen(k.brokers) >= sizeof(k.brokers) ||
		    strlen(k.topic) >= sizeof(k.topic))
			abort();
	} else if (rc < 0) {
		if (rc != -EINVAL || !err[0] || strlen(err) >= sizeof(err))
			abort();
	} else if (rc != URI_PATH) {
		abort();
	}
	free(s);
	return 0;
}
