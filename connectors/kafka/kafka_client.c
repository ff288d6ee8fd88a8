/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the Kafka source and sink share about talking to a cluster: their
 * librdkafka configuration (bootstrap servers, quiet logs, the user's
 * extra properties) and a metadata query that says clearly why a cluster or
 * a topic cannot be used.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kafka.h"

bool kafka_conf_set(rd_kafka_conf_t *c, const char *key, const char *value, char *err,
		    size_t errlen)
{
	char why[256];
	if (rd_kafka_conf_set(c, key, value, why, sizeof(why)) == RD_KAFKA_CONF_OK)
		return true;
	snprintf(err, errlen, "librdkafka property %s=%s: %s", key, value, why);
	return false;
}

rd_kafka_conf_t *kafka_conf_new(const char *brokers, const char *const (*defaults)[2],
				int ndefaults, const char *properties, char *err, size_t errlen)
{
	rd_kafka_conf_t *c = rd_kafka_conf_new();
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* log_level 3: errors only (librdkafka prints to stderr) */
	if (!kafka_conf_set(c, "bootstrap.servers", brokers, err, errlen) ||
	    !kafka_conf_set(c, "log_level", "3", err, errlen))
		goto fail;
	for (int i = 0; i < ndefaults; i++)
		if (!kafka_conf_set(c, defaults[i][0], defaults[i][1], err, errlen))
			goto fail;
	for (const char *p = properties; p && *p;) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		char kv[1024];
		if (n >= sizeof(kv)) {
			snprintf(err, errlen, "librdkafka property '%.40s...' is too long", p);
			goto fail;
		}
		memcpy(kv, p, n);
		kv[n] = 0;
		char *eq = strchr(kv, '=');
		if (!eq || eq == kv) {
			snprintf(err, errlen, "librdkafka property '%s' is not key=value", kv);
			goto fail;
		}
		*eq = 0;
		if (!kafka_conf_set(c, kv, eq + 1, err, errlen))
			goto fail;
		p = end ? end + 1 : p + n;
	}
	return c;
fail:
	rd_kafka_conf_destroy(c);
	return NULL;
}

int kafka_topic_partitions(rd_kafka_t *rk, const char *topic, bool create, int wait_ms,
			   int *n, char *err, size_t errlen)
{
	const struct rd_kafka_metadata *md = NULL;
	struct timespec t0, t1;
	rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__TRANSPORT;
	bool found = false;

	*n = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		/* All topics, not this one by name: a request naming a topic
		 * may create it (brokers with auto-creation, the mock). */
		e = rd_kafka_metadata(rk, 1, NULL, &md, 1000);
		if (!e) {
			found = false;
			for (int i = 0; i < md->topic_cnt && !found; i++) {
				if (strcmp(md->topics[i].topic, topic))
					continue;
				found = true;
				e = md->topics[i].err;
				*n = md->topics[i].partition_cnt;
			}
			rd_kafka_metadata_destroy(md);
			md = NULL;
			if (!found && create) {
				/* naming it asks a broker that creates topics
				 * on first use to create it; then look again */
				create = false;
				rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
				if (rkt) {
					rd_kafka_metadata(rk, 0, rkt, &md, 1000);
					if (md)
						rd_kafka_metadata_destroy(md);
					md = NULL;
					rd_kafka_topic_destroy(rkt);
				}
				continue;
			}
			if (!found || (!e && *n > 0))
				break;
			/* a topic being created: its leaders come soon */
			if (e != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE &&
			    e != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
				break;
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 >= wait_ms)
			break;
		struct timespec nap = { 0, 100 * 1000000 };
		nanosleep(&nap, NULL);
	}
	if (!e && found && *n > 0)
		return 0;
	if (!e) {
		snprintf(err, errlen, "topic '%s' does not exist", topic);
		return -ENOENT;
	}
	if (e == RD_KAFKA_RESP_ERR__TRANSPORT || e == RD_KAFKA_RESP_ERR__TIMED_OUT) {
		snprintf(err, errlen, "no Kafka broker answered within %d ms", wait_ms);
		return -EHOSTUNREACH;
	}
	snprintf(err, errlen, "topic '%s': %s", topic, rd_kafka_err2str(e));
	return -EIO;
}
