/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connector URIs: parsing (pure) and the public functions that turn a
 * path or a URI into a source or a sink (weir_source_uri, weir_sink_uri,
 * weir_source_dead_letters), which is how the example jobs' --input and
 * --output flags accept either.
 *
 *   kafka://HOST:PORT[,HOST:PORT...]/TOPIC[?KEY=VALUE[&KEY=VALUE...]]
 *
 * source keys: format=csv|json|raw, start=earliest|latest|group,
 * bounded=0|1, group=ID; sink keys: format, guarantee=exactly-once|
 * at-least-once|none, key=COL[,COL...].  Values are taken as written (no
 * percent-decoding: topic names and columns need none).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kafka/kafka.h"
#include "uri.h"

#define URI_MAX 2048

static bool valid_hostport(const char *p, size_t n)
{
	/* HOST:PORT, HOST a name, an IPv4 address or [IPv6] */
	const char *colon = NULL;
	for (size_t i = 0; i < n; i++)
		if (p[i] == ':')
			colon = p + i;
	if (!colon || colon == p || (size_t)(colon - p) + 1 == n)
		return false;
	size_t digits = n - (size_t)(colon - p) - 1;
	if (digits > 5)
		return false;
	long port = 0;
	for (const char *d = colon + 1; d < p + n; d++) {
		if (*d < '0' || *d > '9')
			return false;
		port = port * 10 + (*d - '0');
	}
	if (port < 1 || port > 65535)
		return false;
	for (const char *h = p; h < colon; h++)
		if (!(*h == '.' || *h == '-' || *h == '_' || *h == '[' || *h == ']' || *h == ':' ||
		      (*h >= '0' && *h <= '9') || (*h >= 'a' && *h <= 'z') ||
		      (*h >= 'A' && *h <= 'Z')))
			return false;
	return true;
}

static bool valid_topic(const char *p, size_t n)
{
	if (n == 0 || n > KAFKA_TOPIC_MAX || (n == 1 && p[0] == '.') ||
	    (n == 2 && p[0] == '.' && p[1] == '.'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(p[i] == '.' || p[i] == '_' || p[i] == '-' || (p[i] >= '0' && p[i] <= '9') ||
		      (p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z')))
			return false;
	return true;
}

static int param(const char *key, const char *val, bool sink, kafka_uri *k, char *err,
		 size_t errlen)
{
	if (!strcmp(key, "format")) {
		if (!strcmp(val, "csv"))
			k->format = WEIR_FORMAT_CSV;
		else if (!strcmp(val, "raw"))
			k->format = WEIR_FORMAT_RAW;
		else if (!strcmp(val, "json")) {
			snprintf(err, errlen, "format=json is not implemented yet (csv and raw are)");
			return -EINVAL;
		} else
			goto bad_value;
		return 0;
	}
	if (!sink && !strcmp(key, "start")) {
		if (!strcmp(val, "earliest"))
			k->start = WEIR_KAFKA_EARLIEST;
		else if (!strcmp(val, "latest"))
			k->start = WEIR_KAFKA_LATEST;
		else if (!strcmp(val, "group"))
			k->start = WEIR_KAFKA_GROUP;
		else
			goto bad_value;
		return 0;
	}
	if (!sink && !strcmp(key, "bounded")) {
		if (!strcmp(val, "1") || !strcmp(val, "true"))
			k->bounded = true;
		else if (!strcmp(val, "0") || !strcmp(val, "false"))
			k->bounded = false;
		else
			goto bad_value;
		return 0;
	}
	if (!sink && !strcmp(key, "group")) {
		if (!*val || strlen(val) >= sizeof(k->group))
			goto bad_value;
		snprintf(k->group, sizeof(k->group), "%s", val);
		return 0;
	}
	if (sink && !strcmp(key, "guarantee")) {
		if (!strcmp(val, "exactly-once"))
			k->guarantee = WEIR_DELIVERY_EXACTLY_ONCE;
		else if (!strcmp(val, "at-least-once"))
			k->guarantee = WEIR_DELIVERY_AT_LEAST_ONCE;
		else if (!strcmp(val, "none"))
			k->guarantee = WEIR_DELIVERY_NONE;
		else
			goto bad_value;
		return 0;
	}
	if (sink && !strcmp(key, "key")) {
		if (!*val || strlen(val) >= sizeof(k->key))
			goto bad_value;
		snprintf(k->key, sizeof(k->key), "%s", val);
		return 0;
	}
	snprintf(err, errlen, "unknown parameter '%s' for a Kafka %s", key,
		 sink ? "output (format, guarantee, key)"
		      : "input (format, start, bounded, group)");
	return -EINVAL;
bad_value:
	snprintf(err, errlen, "parameter %s: '%s' is not a valid value", key, val);
	return -EINVAL;
}

int uri_parse(const char *uri, bool sink, kafka_uri *k, char *err, size_t errlen)
{
	char buf[URI_MAX];
	memset(k, 0, sizeof(*k));
	k->guarantee = WEIR_DELIVERY_AT_LEAST_ONCE;
	const char *sep = strstr(uri, "://");
	if (!sep)
		return URI_PATH;
	for (const char *p = uri; p < sep; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '+' || *p == '-' || *p == '.'))
			return URI_PATH; /* a path that happens to hold "://" */
	if ((size_t)(sep - uri) != 5 || strncmp(uri, "kafka", 5)) {
		snprintf(err, errlen, "'%.*s://' URIs are not supported (kafka:// is; others are "
			 "coming, see the README)", (int)((sep - uri) > 20 ? 20 : sep - uri), uri);
		return -EINVAL;
	}
	if (strlen(uri) >= sizeof(buf)) {
		snprintf(err, errlen, "URI longer than %d bytes", URI_MAX - 1);
		return -EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", sep + 3);
	char *q = strchr(buf, '?');
	if (q)
		*q++ = 0;
	char *slash = strchr(buf, '/');
	if (!slash) {
		snprintf(err, errlen, "no topic: expected kafka://HOST:PORT[,HOST:PORT...]/TOPIC");
		return -EINVAL;
	}
	*slash = 0;
	const char *topic = slash + 1;
	if (!*buf) {
		snprintf(err, errlen, "no broker: expected kafka://HOST:PORT[,HOST:PORT...]/TOPIC");
		return -EINVAL;
	}
	for (const char *p = buf; *p;) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (!valid_hostport(p, n)) {
			snprintf(err, errlen, "broker '%.*s' is not HOST:PORT", (int)(n > 80 ? 80 : n), p);
			return -EINVAL;
		}
		p = end ? end + 1 : p + n;
		if (end && !*p) {
			snprintf(err, errlen, "an empty broker after ','");
			return -EINVAL;
		}
	}
	if (strlen(buf) >= sizeof(k->brokers)) {
		snprintf(err, errlen, "broker list too long");
		return -EINVAL;
	}
	if (!valid_topic(topic, strlen(topic))) {
		snprintf(err, errlen, "'%.80s' is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)",
			 topic);
		return -EINVAL;
	}
	/* both lengths were checked above */
	memcpy(k->brokers, buf, strlen(buf) + 1);
	memcpy(k->topic, topic, strlen(topic) + 1);
	for (char *p = q; p && *p;) {
		char *end = strchr(p, '&');
		if (end)
			*end = 0;
		char *eq = strchr(p, '=');
		if (!eq || eq == p) {
			snprintf(err, errlen, "parameter '%.80s' is not KEY=VALUE", p);
			return -EINVAL;
		}
		*eq = 0;
		int rc = param(p, eq + 1, sink, k, err, errlen);
		if (rc < 0)
			return rc;
		p = end ? end + 1 : NULL;
	}
	return URI_KAFKA;
}

/* ---- sources and sinks from URIs ----------------------------------------------------- */

weir_stream *weir_source_uri(weir_env *env, const char *name, const char *uri,
			     const weir_schema *schema, bool header, const char *ts_column)
{
	kafka_uri k;
	char err[512];
	if (!env)
		return NULL;
	if (!uri) {
		env_error(env, "source '%s': no input given", name ? name : "source");
		return NULL;
	}
	int kind = uri_parse(uri, false, &k, err, sizeof(err));
	if (kind < 0) {
		env_error(env, "source '%s': %s: %s", name ? name : "source", uri, err);
		return NULL;
	}
	if (kind == URI_PATH)
		return weir_source_csv(env, name, uri, schema, header, ts_column);
	/* Without a schema (a text source) a message is one line. */
	weir_kafka_source_conf c = {
		.brokers = k.brokers, .topics = k.topic, .schema = schema,
		.format = schema ? k.format : WEIR_FORMAT_RAW,
		.start = k.start, .group_id = k.group[0] ? k.group : NULL, .bounded = k.bounded,
		.ts_column = ts_column,
	};
	return weir_source_kafka(env, name, &c);
}

weir_stream *weir_source_dead_letters(weir_stream *source)
{
	if (!source)
		return NULL;
	lnode *n = stream_node(source);
	if (kafka_is_source(n))
		return stream_port(source, 1);
	return weir_csv_dead_letters(source);
}

int weir_sink_uri(weir_stream *in, const char *name, const char *uri)
{
	kafka_uri k;
	char err[512];
	if (!in)
		return -EINVAL;
	weir_env *env = stream_env(in);
	if (!uri) {
		env_error(env, "sink '%s': no output given", name ? name : "sink");
		return -EINVAL;
	}
	int kind = uri_parse(uri, true, &k, err, sizeof(err));
	if (kind < 0) {
		env_error(env, "sink '%s': %s: %s", name ? name : "sink", uri, err);
		return -EINVAL;
	}
	if (kind == URI_PATH)
		return weir_env_checkpointing(env) ? weir_sink_files(in, name, uri)
						   : weir_sink_csv(in, name, uri);
	weir_kafka_sink_conf c = {
		.brokers = k.brokers, .topic = k.topic, .format = k.format,
		.key_columns = k.key[0] ? k.key : NULL, .guarantee = k.guarantee,
	};
	return weir_sink_kafka(in, name, &c);
}
