/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Building Kafka sources and sinks into a job graph (weir_source_kafka,
 * weir_sink_kafka in include/weir/connectors.h): the public configuration
 * is checked and copied into the operators' own (kafka.h); nothing talks
 * to a broker until the job runs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"

static bool copy(weir_env *env, const char *what, const char *name, char *dst, size_t cap,
		 const char *src)
{
	if (!src) {
		dst[0] = 0;
		return true;
	}
	if (strlen(src) >= cap) {
		env_error(env, "%s '%s': %s is too long (at most %zu bytes)", what, name, "a setting",
			  cap - 1);
		return false;
	}
	snprintf(dst, cap, "%s", src);
	return true;
}

static int source_adopt_watermarks(lnode *n, int ts_col, int64_t lag, int64_t idle_ms)
{
	kafka_source_conf *c = n->conf;
	if (ts_col >= 0)
		c->ts_col = ts_col;
	c->pp_watermarks = true;
	c->wm_lag = lag;
	c->idle_ms = idle_ms;
	return 0;
}

/* The source's operator table: op_kafka_source plus the graph-building
 * hook, which lives here with the rest of the building. */
static op_ops kafka_source_ops;

weir_stream *weir_source_kafka(weir_env *env, const char *name,
			       const weir_kafka_source_conf *conf)
{
	const char *nm = name ? name : "kafka-source";
	if (!env)
		return NULL;
	if (!conf || !conf->brokers || !*conf->brokers || !conf->topics || !*conf->topics) {
		env_error(env, "kafka source '%s': brokers and topics are required", nm);
		return NULL;
	}
	const weir_schema *schema = conf->schema;
	if (conf->format == WEIR_FORMAT_RAW)
		schema = weir_schema_parse(env, "value:str");
	else if (conf->format != WEIR_FORMAT_CSV) {
		env_error(env, "kafka source '%s': unknown format %d", nm, (int)conf->format);
		return NULL;
	}
	if (!schema) {
		env_error(env, "kafka source '%s': a CSV source needs a schema", nm);
		return NULL;
	}
	if (conf->start < WEIR_KAFKA_EARLIEST || conf->start > WEIR_KAFKA_TIMESTAMP) {
		env_error(env, "kafka source '%s': unknown start position %d", nm, (int)conf->start);
		return NULL;
	}
	if (conf->start == WEIR_KAFKA_GROUP && (!conf->group_id || !*conf->group_id)) {
		env_error(env, "kafka source '%s': starting from group offsets needs a group id", nm);
		return NULL;
	}
	kafka_source_conf *c = calloc(1, sizeof(*c));
	if (!c) {
		env_error(env, "out of memory");
		return NULL;
	}
	c->format = conf->format;
	c->start = conf->start;
	c->start_ts_ms = conf->start_timestamp_ms;
	c->bounded = conf->bounded;
	c->schema = schema;
	c->ts_col = -1;
	if (!copy(env, "kafka source", nm, c->brokers, sizeof(c->brokers), conf->brokers) ||
	    !copy(env, "kafka source", nm, c->group, sizeof(c->group), conf->group_id) ||
	    !copy(env, "kafka source", nm, c->properties, sizeof(c->properties),
		  conf->properties))
		goto fail;
	for (const char *p = conf->topics; *p;) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n == 0 || n > KAFKA_TOPIC_MAX || c->ntopics == KAFKA_MAX_TOPICS) {
			env_error(env, "kafka source '%s': topics '%s': %s", nm, conf->topics,
				  n == 0 ? "an empty topic name"
				  : n > KAFKA_TOPIC_MAX ? "a topic name longer than 249 bytes"
				  : "more than 16 topics");
			goto fail;
		}
		memcpy(c->topics[c->ntopics], p, n);
		c->topics[c->ntopics++][n] = 0;
		p = end ? end + 1 : p + n;
	}
	if (conf->ts_column) {
		c->ts_col = weir_schema_find(schema, conf->ts_column);
		if (c->ts_col < 0 || (schema->fields[c->ts_col].type != WEIR_TS &&
				      schema->fields[c->ts_col].type != WEIR_I64)) {
			env_error(env, "kafka source '%s': time column '%s' is not an i64/ts column",
				  nm, conf->ts_column);
			goto fail;
		}
	}
	if (conf->per_partition_watermarks) {
		const weir_watermark_strategy *ws = &conf->watermarks;
		if (ws->kind != WEIR_WM_BOUNDED && ws->kind != WEIR_WM_MONOTONIC) {
			env_error(env, "kafka source '%s': per-partition watermarks are BOUNDED or "
				  "MONOTONIC", nm);
			goto fail;
		}
		c->pp_watermarks = true;
		c->wm_lag = (ws->kind == WEIR_WM_BOUNDED ? ws->out_of_orderness_ms : 0) + 1;
		c->idle_ms = ws->idle_timeout_ms;
	}
	if (!kafka_source_ops.kind) {
		kafka_source_ops = op_kafka_source;
		kafka_source_ops.adopt_watermarks = source_adopt_watermarks;
	}
	weir_stream *s = stream_add_source(env, name, "kafka-source", &kafka_source_ops, schema, c,
					   conf->bounded);
	if (!s)
		return NULL;
	lnode *n = stream_node(s);
	n->nports = 2;
	n->schema[1] = weir_schema_parse(env, "line:i64,reason:str,raw:str,topic:str,"
					 "partition:i64");
	return s;
fail:
	free(c);
	return NULL;
}

bool kafka_is_source(const lnode *n)
{
	return n->ops == &kafka_source_ops;
}

int weir_sink_kafka(weir_stream *in, const char *name, const weir_kafka_sink_conf *conf)
{
	const char *nm = name ? name : "kafka-sink";
	if (!in)
		return -EINVAL;
	weir_env *env = stream_env(in);
	const weir_schema *sc = weir_stream_schema(in);
	if (!conf || !conf->brokers || !*conf->brokers || !conf->topic || !*conf->topic) {
		env_error(env, "kafka sink '%s': brokers and a topic are required", nm);
		return -EINVAL;
	}
	if (conf->format == WEIR_FORMAT_RAW && sc->ncols != 1) {
		env_error(env, "kafka sink '%s': format raw writes one column, the input has %d",
			  nm, sc->ncols);
		return -EINVAL;
	}
	if (conf->guarantee < WEIR_DELIVERY_AT_LEAST_ONCE ||
	    conf->guarantee > WEIR_DELIVERY_EXACTLY_ONCE ||
	    conf->partitioner < WEIR_KAFKA_PART_HASH ||
	    conf->partitioner > WEIR_KAFKA_PART_FIXED || conf->fixed_partition < 0) {
		env_error(env, "kafka sink '%s': unknown guarantee, partitioner or partition", nm);
		return -EINVAL;
	}
	kafka_sink_conf *c = calloc(1, sizeof(*c));
	if (!c) {
		env_error(env, "out of memory");
		return -ENOMEM;
	}
	c->format = conf->format;
	c->partitioner = conf->partitioner;
	c->fixed_partition = conf->fixed_partition;
	c->guarantee = conf->guarantee;
	c->txn_timeout_ms = conf->transaction_timeout_ms > 0 ? conf->transaction_timeout_ms
							     : 15 * 60 * 1000;
	char prefix[256];
	snprintf(prefix, sizeof(prefix), "weir-%s", nm);
	if (!copy(env, "kafka sink", nm, c->brokers, sizeof(c->brokers), conf->brokers) ||
	    !copy(env, "kafka sink", nm, c->topic, sizeof(c->topic), conf->topic) ||
	    !copy(env, "kafka sink", nm, c->properties, sizeof(c->properties), conf->properties) ||
	    !copy(env, "kafka sink", nm, c->headers, sizeof(c->headers), conf->headers) ||
	    !copy(env, "kafka sink", nm, c->txn_prefix, sizeof(c->txn_prefix),
		  conf->transactional_id_prefix ? conf->transactional_id_prefix : prefix))
		goto fail;
	for (const char *p = conf->key_columns; p && *p;) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		char col[128];
		snprintf(col, sizeof(col), "%.*s", (int)n, p);
		int k = weir_schema_find(sc, col);
		if (k < 0 || c->nkeys == WEIR_MAX_COLS) {
			env_error(env, "kafka sink '%s': key column '%s' is not a column of its input",
				  nm, col);
			goto fail;
		}
		c->key_cols[c->nkeys++] = k;
		p = end ? end + 1 : p + n;
	}
	return stream_add_op(&in, 1, name, "kafka-sink", &op_kafka_sink, sc, c, NULL) ? 0
										   : -EINVAL;
fail:
	free(c);
	return -EINVAL;
}
