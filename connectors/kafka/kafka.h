/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kafka connector's internals (connectors/kafka/): the source and sink
 * operators (kafka_source.c, kafka_sink.c) over librdkafka, and the client
 * settings both build (kafka_client.c).  The public side is
 * include/weir/connectors.h.
 *
 * Threads: librdkafka runs its own threads (brokers, timers); the
 * operators call it only from their reactor (produce/process/snapshot/
 * commit) and from the main thread before and after the run (open,
 * restore, close).  Callbacks that librdkafka makes (delivery reports)
 * run inside rd_kafka_poll()/rd_kafka_flush() on the calling thread.
 */
#ifndef WEIR_KAFKA_H
#define WEIR_KAFKA_H

#include <librdkafka/rdkafka.h>

#include "ops.h"
#include <weir/connectors.h>

/* Longest topic name Kafka allows. */
#define KAFKA_TOPIC_MAX 249
#define KAFKA_MAX_TOPICS 16

typedef struct kafka_source_conf {
	char brokers[1024];
	char topics[KAFKA_MAX_TOPICS][KAFKA_TOPIC_MAX + 1];
	int ntopics;
	char group[256];
	char properties[1024];
	weir_kafka_format format;
	weir_kafka_start start;
	int64_t start_ts_ms;
	bool bounded;
	int ts_col;              /* -1: the record timestamp */
	bool pp_watermarks;      /* per-partition watermarks */
	int64_t wm_lag;          /* out-of-orderness + 1 */
	int64_t idle_ms;
	const weir_schema *schema;
} kafka_source_conf;

typedef struct kafka_sink_conf {
	char brokers[1024];
	char topic[KAFKA_TOPIC_MAX + 1];
	char properties[1024];
	char headers[1024];
	char txn_prefix[256];
	weir_kafka_format format;
	weir_kafka_partitioner partitioner;
	int fixed_partition;
	weir_delivery guarantee;
	int64_t txn_timeout_ms;
	int key_cols[WEIR_MAX_COLS];
	int nkeys;
} kafka_sink_conf;

extern const op_ops op_kafka_source, op_kafka_sink;

/* Is n a Kafka source (kafka_build.c)? */
bool kafka_is_source(const lnode *n);

/*
 * A librdkafka configuration with bootstrap.servers = brokers, quiet
 * logging, the operator's defaults[0..ndefaults) (key, value), and then
 * each "key=value" of the user's `properties` (comma-separated; NULL or ""
 * for none), which may override them.  NULL after writing why into err (a
 * property librdkafka refuses is named).
 */
rd_kafka_conf_t *kafka_conf_new(const char *brokers, const char *const (*defaults)[2],
				int ndefaults, const char *properties, char *err, size_t errlen);
/* Set one property; false after writing why into err. */
bool kafka_conf_set(rd_kafka_conf_t *c, const char *key, const char *value,
		    char *err, size_t errlen);
/*
 * Check that the cluster answers and count the partitions of `topic`
 * into *n, retrying for up to `wait_ms`.  A missing topic is looked up by
 * name once when `create` (a sink: a broker that creates topics on first
 * use creates it), never otherwise (a source must not create what it
 * reads).  0; -ENOENT when the topic does not exist; -EHOSTUNREACH when no
 * broker answered; another -errno; err says why (the caller names the
 * brokers).
 */
int kafka_topic_partitions(rd_kafka_t *rk, const char *topic, bool create, int wait_ms,
			   int *n, char *err, size_t errlen);

#endif
