/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connector URIs (include/weir/connectors.h has the forms users write):
 * parsing is pure, so tests/fuzz/fuzz_uri.c drives it with any bytes.
 */
#ifndef WEIR_URI_H
#define WEIR_URI_H

#include <stdbool.h>
#include <stddef.h>

#include <weir/connectors.h>

typedef enum uri_kind { URI_PATH = 0, URI_KAFKA = 1 } uri_kind;

typedef struct kafka_uri {
	char brokers[1024];
	char topic[256];
	weir_kafka_format format;
	/* source */
	weir_kafka_start start;
	bool bounded;
	char group[256];
	/* sink */
	weir_delivery guarantee;
	char key[256];
} kafka_uri;

/*
 * What `uri` names: URI_PATH (a file path: anything without "scheme://"),
 * URI_KAFKA (parsed into *k), or -EINVAL with err naming the problem: an
 * unknown scheme, a malformed host list or topic, an unknown parameter
 * or value, a parameter that the use (`sink`: an output) does not take.
 */
int uri_parse(const char *uri, bool sink, kafka_uri *k, char *err, size_t errlen);

#endif
