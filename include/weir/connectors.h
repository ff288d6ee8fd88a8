/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connectors to external systems (connectors/ in the tree): Kafka today,
 * and URIs that name a file or an external system in one string, so a
 * job's --input and --output flags take either.
 *
 * Conventions are the DataStream API's (datastream.h): building functions
 * record the first error in the environment and return NULL (or -EINVAL);
 * strings in a configuration are copied; nothing is contacted until the job
 * runs (a broker that cannot be reached fails the run with its address).
 */
#ifndef WEIR_CONNECTORS_H
#define WEIR_CONNECTORS_H

#include <weir/keyed.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Kafka (librdkafka) ---------------------------------------------------------- */

typedef enum weir_kafka_start {
	WEIR_KAFKA_EARLIEST = 0,  /* each partition from its first offset */
	WEIR_KAFKA_LATEST = 1,    /* only messages written after the start */
	WEIR_KAFKA_GROUP = 2,     /* the group's committed offsets, else earliest */
	WEIR_KAFKA_TIMESTAMP = 3, /* the first message at or after start_timestamp_ms */
} weir_kafka_start;

typedef enum weir_kafka_format {
	WEIR_FORMAT_CSV = 0,      /* one CSV record per message value (the schema's columns) */
	WEIR_FORMAT_RAW = 1,      /* the value as one str column */
} weir_kafka_format;

typedef struct weir_kafka_source_conf {
	const char *brokers;      /* "HOST:PORT[,HOST:PORT...]" */
	const char *topics;       /* one or more topics, comma-separated */
	const weir_schema *schema;/* CSV: the value's columns; RAW: NULL ("value:str") */
	weir_kafka_format format;
	weir_kafka_start start;
	int64_t start_timestamp_ms;
	/* Consumer group: offsets are committed to it when a checkpoint
	 * completes (for monitoring; recovery uses the checkpoint's own);
	 * WEIR_KAFKA_GROUP starts from it.  NULL: no group. */
	const char *group_id;
	/* Stop at the offsets that were the latest when the job started:
	 * the topic is a bounded (batch) input. */
	bool bounded;
	/* Event time: an i64/ts column of the schema, or NULL for the Kafka
	 * record timestamp. */
	const char *ts_column;
	/* Per-partition watermarks (as Flink's KafkaSource): with
	 * watermarks.kind BOUNDED or MONOTONIC set and `per_partition_watermarks`,
	 * each partition keeps its own max event time and a subtask's
	 * watermark is the minimum over its partitions; a partition silent
	 * for watermarks.idle_timeout_ms (> 0) is idle and does not hold
	 * the others back.  weir_assign_watermarks() applied directly to a
	 * Kafka source stream sets this. */
	bool per_partition_watermarks;
	weir_watermark_strategy watermarks;
	/* New partitions of the topics are looked for this often (ms);
	 * 0 = every 10 s, < 0 = never. */
	int64_t discovery_interval_ms;
	/* Extra librdkafka properties, "key=value[,key=value...]" (NULL: none). */
	const char *properties;
} weir_kafka_source_conf;

/*
 * Messages of Kafka topics as rows.  Partitions are split across the
 * source's subtasks by the source itself (partition p of the k-th topic
 * goes to subtask (k + p) % parallelism; no consumer-group rebalancing),
 * read from conf->start, their offsets kept in checkpoints and savepoints
 * (a restore replays exactly from them, also at another parallelism).  A
 * value that does not decode goes to the dead-letter output
 * (weir_source_dead_letters) with its topic, partition and offset.
 */
WEIR_API weir_stream *weir_source_kafka(weir_env *env, const char *name,
					const weir_kafka_source_conf *conf);

typedef enum weir_delivery {
	WEIR_DELIVERY_AT_LEAST_ONCE = 0, /* flush at each barrier; a delivery error fails it */
	WEIR_DELIVERY_NONE = 1,          /* fire and forget */
	WEIR_DELIVERY_EXACTLY_ONCE = 2,  /* a Kafka transaction per subtask and checkpoint */
} weir_delivery;

typedef enum weir_kafka_partitioner {
	WEIR_KAFKA_PART_HASH = 0,        /* by the key (librdkafka's murmur2, as Java clients) */
	WEIR_KAFKA_PART_ROUND_ROBIN = 1,
	WEIR_KAFKA_PART_FIXED = 2,       /* every message to fixed_partition */
} weir_kafka_partitioner;

typedef struct weir_kafka_sink_conf {
	const char *brokers;      /* "HOST:PORT[,HOST:PORT...]" */
	const char *topic;
	weir_kafka_format format; /* CSV: the row's CSV line; RAW: a one-column row's value */
	/* Columns whose CSV form is the message key, comma-separated (NULL:
	 * no key). */
	const char *key_columns;
	weir_kafka_partitioner partitioner;
	int fixed_partition;
	weir_delivery guarantee;
	/* EXACTLY_ONCE: transactional ids are "<prefix>-<subtask>-<k>" for k
	 * in a pool of 4 per subtask; default prefix "weir-<sink name>".
	 * Two jobs writing to one cluster need different prefixes. */
	const char *transactional_id_prefix;
	/* EXACTLY_ONCE: must exceed the checkpoint interval plus the time a
	 * checkpoint takes (checked at start); 0 = 15 minutes. */
	int64_t transaction_timeout_ms;
	/* Headers on every message: "name=value[,name=value...]" (NULL: none).
	 * EXACTLY_ONCE adds "weir-subtask", "weir-checkpoint" (the
	 * checkpoint whose transaction holds the message) and "weir-attempt"
	 * (the writing process's id), for audits (docs/connectors.md). */
	const char *headers;
	const char *properties;   /* extra librdkafka properties, as the source's */
} weir_kafka_sink_conf;

/* Rows of `in` as Kafka messages (record timestamp: the row's event
 * time).  0 or -EINVAL (the environment holds why). */
WEIR_API int weir_sink_kafka(weir_stream *in, const char *name,
			     const weir_kafka_sink_conf *conf);

/* ---- URIs ------------------------------------------------------------------------
 *
 * A source:  PATH (a CSV file)  or
 *   kafka://HOST:PORT[,HOST:PORT...]/TOPIC[?format=csv|json|raw&start=earliest|latest
 *           &bounded=1&group=G]
 * A sink:    PATH (exactly-once part files in directory PATH when the job
 *            takes checkpoints, else one CSV file)  or
 *   kafka://HOST:PORT[,HOST:PORT...]/TOPIC[?format=csv|raw&guarantee=exactly-once|
 *           at-least-once|none&key=COLS]
 * Unknown parameters and values are errors naming them.  format=json is
 * not implemented yet (an error says so).
 */

/* The rows of a CSV file or a Kafka topic (the CSV schema of its values);
 * ts_column as weir_source_csv's; header applies to files only. */
WEIR_API weir_stream *weir_source_uri(weir_env *env, const char *name, const char *uri,
				      const weir_schema *schema, bool header,
				      const char *ts_column);
/* The dead-letter output of a CSV or Kafka source: rows
 * "line:i64,reason:str,raw:str" (a Kafka source's line is the message's
 * offset, and it adds "topic:str,partition:i64"). */
WEIR_API weir_stream *weir_source_dead_letters(weir_stream *source);
/* Write `in` to a path or a Kafka URI (above).  0 or -EINVAL. */
WEIR_API int weir_sink_uri(weir_stream *in, const char *name, const char *uri);

#ifdef __cplusplus
}
#endif

#endif
