/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The DataStream API (include/weir/datastream.h): environments, schemas and
 * the graph-building calls, each of which adds an operator node from
 * operators/ to the logical graph of core/.  Errors are recorded in the
 * environment (first one wins) and NULL propagates, so a job checks once.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "ops.h"

struct weir_stream {
	weir_env *env;
	struct weir_stream *next_alloc;
	int node, port;
	enum part_kind part;  /* partitioning of edges from this stream */
	int key_col;
	bool keyed;
};

struct weir_env {
	weir_config cfg;
	graph g;
	char error[512];
	struct weir_stream *streams;
	struct schema_block {
		struct schema_block *next;
		weir_schema s;
	} *schemas;
	bool any_unbounded;
	bool prepared;  /* combiners added for the runtime mode */
	bool executed;
	weir_checkpoint_stats stats; /* of the run */
};

/* Record the first build error (env_error, declared in ops.h). */
#define env_fail env_error

weir_env *weir_env_new(void)
{
	weir_env *env = calloc(1, sizeof(*env));
	if (!env)
		return NULL;
	env->cfg = (weir_config){
		.parallelism = 1,
		.cores = 0,
		.mode = WEIR_MODE_AUTOMATIC,
		.idle = WEIR_IDLE_PARK,
		.batch_rows = 1024,
		.block_size = 128 * 1024,
		.channel_credits = 16,
		.buffer_timeout_us = 1000,
		.max_parallelism = 128,
		.chaining = true,
		.pin = true,
	};
	graph_init(&env->g);
	return env;
}

void weir_env_free(weir_env *env)
{
	if (!env)
		return;
	graph_destroy(&env->g);
	while (env->streams) {
		struct weir_stream *n = env->streams->next_alloc;
		free(env->streams);
		env->streams = n;
	}
	while (env->schemas) {
		struct schema_block *n = env->schemas->next;
		free(env->schemas);
		env->schemas = n;
	}
	free(env);
}

weir_config *weir_env_config(weir_env *env) { return &env->cfg; }

const char *weir_env_error(const weir_env *env)
{
	return env->error[0] ? env->error : NULL;
}

static weir_schema *env_schema(weir_env *env)
{
	struct schema_block *b = calloc(1, sizeof(*b));
	if (!b) {
		env_fail(env, "out of memory");
		return NULL;
	}
	b->next = env->schemas;
	env->schemas = b;
	return &b->s;
}

const weir_schema *weir_schema_parse(weir_env *env, const char *spec)
{
	char err[256];
	weir_schema *s;

	if (!env)
		return NULL;
	s = env_schema(env);
	if (!s)
		return NULL;
	if (schema_parse(spec, s, err, sizeof(err)) < 0) {
		env_fail(env, "%s", err);
		return NULL;
	}
	return s;
}

static weir_stream *new_stream(weir_env *env, int node, int port)
{
	weir_stream *s = calloc(1, sizeof(*s));
	if (!s) {
		env_fail(env, "out of memory");
		return NULL;
	}
	s->env = env;
	s->node = node;
	s->port = port;
	s->key_col = -1;
	s->next_alloc = env->streams;
	env->streams = s;
	return s;
}

const weir_schema *weir_stream_schema(const weir_stream *s)
{
	return s ? s->env->g.nodes[s->node]->schema[s->port] : NULL;
}

static lnode *add_node(weir_env *env, const char *name, const char *dflt,
		       const op_ops *ops, const weir_schema *schema, void *conf)
{
	lnode *n;
	if (!schema) {
		env_fail(env, "operator '%s': no schema", name ? name : dflt);
		free(conf);
		return NULL;
	}
	n = graph_add_node(&env->g, name && *name ? name : dflt, ops);
	if (!n) {
		env_fail(env, "out of memory");
		free(conf);
		return NULL;
	}
	n->schema[0] = schema;
	n->conf = conf;
	n->conf_free = free;
	return n;
}

/* Connect `in` to node n as its next input. */
static bool connect(weir_stream *in, lnode *n)
{
	if (graph_add_edge(&in->env->g, in->node, in->port, n->id, in->part,
			   in->key_col) < 0) {
		env_fail(in->env, "cannot connect to '%s'", n->name);
		return false;
	}
	return true;
}

/* ---- the internal builder API of ops.h --------------------------------------------- */

void env_error(weir_env *env, const char *fmt, ...)
{
	va_list ap;
	if (env->error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(env->error, sizeof(env->error), fmt, ap);
	va_end(ap);
}

weir_env *stream_env(const weir_stream *s) { return s->env; }
lnode *stream_node(const weir_stream *s) { return s->env->g.nodes[s->node]; }
int stream_port_of(const weir_stream *s) { return s->port; }
int stream_key_col(const weir_stream *s) { return s->keyed ? s->key_col : -1; }
bool stream_is_broadcast(const weir_stream *s) { return s->part == PART_BROADCAST; }

weir_schema *env_alloc_schema(weir_env *env) { return env_schema(env); }

weir_stream *stream_add_op(weir_stream *const *in, int nin, const char *name,
			   const char *dflt, const op_ops *ops,
			   const weir_schema *out, void *conf,
			   void (*conf_free)(void *))
{
	weir_env *env = nin > 0 && in[0] ? in[0]->env : NULL;
	lnode *n;

	for (int i = 0; i < nin; i++)
		if (!in[i] || in[i]->env != env) {
			if (env && in[i])
				env_fail(env, "'%s': inputs from different environments",
					 name ? name : dflt);
			if (conf_free)
				conf_free(conf);
			else
				free(conf);
			return NULL;
		}
	if (!env) {
		if (conf_free)
			conf_free(conf);
		else
			free(conf);
		return NULL;
	}
	n = add_node(env, name, dflt, ops, out, conf);
	if (!n)
		return NULL;
	if (conf_free)
		n->conf_free = conf_free;
	for (int i = 0; i < nin; i++)
		if (!connect(in[i], n))
			return NULL;
	return new_stream(env, n->id, 0);
}

weir_stream *stream_add_source(weir_env *env, const char *name, const char *dflt,
			       const op_ops *ops, const weir_schema *out, void *conf,
			       bool bounded)
{
	if (!env) {
		free(conf);
		return NULL;
	}
	lnode *n = add_node(env, name, dflt, ops, out, conf);
	if (!n)
		return NULL;
	n->bounded = bounded;
	if (!bounded)
		env->any_unbounded = true;
	return new_stream(env, n->id, 0);
}

weir_stream *stream_add_port(weir_stream *s, const weir_schema *schema)
{
	lnode *n = s->env->g.nodes[s->node];
	if (!schema) {
		env_fail(s->env, "'%s': output port without a schema", n->name);
		return NULL;
	}
	if (n->nports == NODE_MAX_PORTS) {
		env_fail(s->env, "'%s': too many outputs", n->name);
		return NULL;
	}
	n->schema[n->nports] = schema;
	return new_stream(s->env, n->id, n->nports++);
}

weir_stream *stream_port(weir_stream *s, int port)
{
	return new_stream(s->env, s->node, port);
}

static void *conf_new(weir_env *env, size_t size)
{
	void *c = calloc(1, size);
	if (!c)
		env_fail(env, "out of memory");
	return c;
}

/* ---- sources --------------------------------------------------------------------- */

static weir_stream *file_source(weir_env *env, const char *name,
				const char *dflt, enum source_kind kind,
				const char *path, const weir_schema *schema,
				bool header, const char *ts_column)
{
	file_source_conf *c;
	lnode *n;

	if (!env)
		return NULL;
	if (kind != SRC_STDIN && (!path || !*path)) {
		env_fail(env, "source '%s': no file path given", name ? name : dflt);
		return NULL;
	}
	if (path && strlen(path) >= sizeof(c->path)) {
		env_fail(env, "source '%s': path too long", name ? name : dflt);
		return NULL;
	}
	if (!schema)
		schema = weir_schema_parse(env, "line:str");
	c = conf_new(env, sizeof(*c));
	if (!c)
		return NULL;
	c->kind = kind;
	c->header = header;
	c->ts_col = -1;
	c->schema = schema;
	if (path)
		snprintf(c->path, sizeof(c->path), "%s", path);
	if (ts_column && schema) {
		c->ts_col = weir_schema_find(schema, ts_column);
		if (c->ts_col < 0 || (schema->fields[c->ts_col].type != WEIR_TS &&
				      schema->fields[c->ts_col].type != WEIR_I64)) {
			env_fail(env, "source '%s': time column '%s' is not an i64/ts column",
				 name ? name : dflt, ts_column);
			free(c);
			return NULL;
		}
	}
	n = add_node(env, name, dflt, &op_file_source, schema, c);
	if (!n)
		return NULL;
	n->bounded = true;
	n->max_parallelism_1 = kind != SRC_TEXT;
	/* Standard input, a pipe or a device cannot seek back for a replay
	 * (the source reads such files with read(2), see source.c). */
	struct stat st;
	n->not_replayable = kind == SRC_STDIN ||
			    (stat(path, &st) == 0 && !S_ISREG(st.st_mode));
	if (kind == SRC_CSV) {
		n->nports = 2;
		n->schema[1] = weir_schema_parse(env, "line:i64,reason:str,raw:str");
	}
	return new_stream(env, n->id, 0);
}

weir_stream *weir_source_text_file(weir_env *env, const char *name,
				   const char *path)
{
	return file_source(env, name, "text-source", SRC_TEXT, path, NULL, false, NULL);
}

weir_stream *weir_source_stdin(weir_env *env, const char *name)
{
	return file_source(env, name, "stdin-source", SRC_STDIN, NULL, NULL, false, NULL);
}

weir_stream *weir_source_csv(weir_env *env, const char *name, const char *path,
			     const weir_schema *schema, bool header,
			     const char *ts_column)
{
	if (env && !schema) {
		env_fail(env, "csv source '%s': no schema", name ? name : "csv-source");
		return NULL;
	}
	return file_source(env, name, "csv-source", SRC_CSV, path, schema, header,
			   ts_column);
}

weir_stream *weir_csv_dead_letters(weir_stream *src)
{
	if (!src)
		return NULL;
	lnode *n = src->env->g.nodes[src->node];
	if (n->ops != &op_file_source || n->nports < 2) {
		env_fail(src->env, "'%s' is not a CSV source", n->name);
		return NULL;
	}
	return new_stream(src->env, n->id, 1);
}

weir_stream *weir_source_generator(weir_env *env, const char *name,
				   const weir_generator_conf *conf)
{
	weir_generator_conf *c;
	const weir_schema *schema;
	lnode *n;

	if (!env)
		return NULL;
	if (!conf) {
		env_fail(env, "generator '%s': no configuration", name ? name : "generator");
		return NULL;
	}
	if (conf->fill && !conf->schema) {
		env_fail(env, "generator '%s': a fill function needs a schema",
			 name ? name : "generator");
		return NULL;
	}
	if (conf->rate < 0) {
		env_fail(env, "generator '%s': negative rate", name ? name : "generator");
		return NULL;
	}
	schema = conf->fill ? conf->schema
			    : weir_schema_parse(env, "seq:i64,key:i64,value:i64");
	c = conf_new(env, sizeof(*c));
	if (!c)
		return NULL;
	*c = *conf;
	n = add_node(env, name, "generator", &op_generator, schema, c);
	if (!n)
		return NULL;
	n->bounded = conf->count > 0;
	if (!n->bounded)
		env->any_unbounded = true;
	return new_stream(env, n->id, 0);
}

int weir_source_set_rate(weir_stream *source, double records_per_sec)
{
	if (!source)
		return -EINVAL;
	lnode *n = source->env->g.nodes[source->node];
	if (!n->ops->produce) {
		env_fail(source->env, "set_rate: '%s' is not a source", n->name);
		return -EINVAL;
	}
	if (!(records_per_sec >= 0) || isinf(records_per_sec)) {
		env_fail(source->env, "set_rate: '%s': rate %g is not a number of records "
			 "per second >= 0", n->name, records_per_sec);
		return -EINVAL;
	}
	n->rate = records_per_sec;
	return 0;
}

bool weir_env_checkpointing(const weir_env *env)
{
	return env && env->cfg.checkpoint_dir && env->cfg.checkpoint_dir[0];
}

/* ---- transformations ---------------------------------------------------------------- */

static weir_stream *fn_op(weir_stream *in, const char *name, const char *dflt,
			  const op_ops *ops, const weir_schema *schema, void *fn,
			  void *arg)
{
	fn_conf *c;
	lnode *n;

	if (!in)
		return NULL;
	if (!fn) {
		env_fail(in->env, "%s '%s': no function", dflt, name ? name : dflt);
		return NULL;
	}
	c = conf_new(in->env, sizeof(*c));
	if (!c)
		return NULL;
	c->fn = fn;
	c->arg = arg;
	n = add_node(in->env, name, dflt, ops, schema, c);
	if (!n || !connect(in, n))
		return NULL;
	n->side_outputs = ops == &op_flat_map;
	return new_stream(in->env, n->id, 0);
}

weir_stream *weir_map(weir_stream *in, const char *name,
		      const weir_schema *out_schema, weir_map_fn fn, void *arg)
{
	return fn_op(in, name, "map", &op_map, out_schema, (void *)fn, arg);
}

weir_stream *weir_filter(weir_stream *in, const char *name, weir_filter_fn fn,
			 void *arg)
{
	return fn_op(in, name, "filter", &op_filter, weir_stream_schema(in),
		     (void *)fn, arg);
}

weir_stream *weir_flat_map(weir_stream *in, const char *name,
			   const weir_schema *out_schema, weir_flat_map_fn fn,
			   void *arg)
{
	return fn_op(in, name, "flat_map", &op_flat_map, out_schema, (void *)fn, arg);
}

weir_stream *weir_project(weir_stream *in, const char *name, const char *columns)
{
	const weir_schema *is;
	weir_schema *os;
	fn_conf *c;
	lnode *n;

	if (!in)
		return NULL;
	is = weir_stream_schema(in);
	os = env_schema(in->env);
	c = conf_new(in->env, sizeof(*c));
	if (!os || !c || !columns) {
		env_fail(in->env, "project: no columns");
		free(c);
		return NULL;
	}
	for (const char *p = columns; *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		char col[WEIR_MAX_NAME];
		int k;
		if (len == 0 || len >= sizeof(col)) {
			env_fail(in->env, "project: bad column list '%s'", columns);
			free(c);
			return NULL;
		}
		memcpy(col, p, len);
		col[len] = 0;
		k = weir_schema_find(is, col);
		if (k < 0) {
			env_fail(in->env, "project: no column '%s' in the input", col);
			free(c);
			return NULL;
		}
		if (os->ncols == WEIR_MAX_COLS) {
			env_fail(in->env, "project: too many columns");
			free(c);
			return NULL;
		}
		c->cols[os->ncols] = k;
		os->fields[os->ncols++] = is->fields[k];
		p = e ? e + 1 : p + len;
	}
	n = add_node(in->env, name, "project", &op_project, os, c);
	if (!n || !connect(in, n))
		return NULL;
	return new_stream(in->env, n->id, 0);
}

weir_stream *weir_side_output(weir_stream *s, int tag, const weir_schema *schema)
{
	lnode *n;
	if (!s)
		return NULL;
	n = s->env->g.nodes[s->node];
	if (!schema) {
		env_fail(s->env, "side output %d of '%s': no schema", tag, n->name);
		return NULL;
	}
	if (!n->side_outputs) {
		env_fail(s->env, "side output %d: only flat_map and process operators "
			 "have side outputs ('%s' is a %s)", tag, n->name, n->ops->kind);
		return NULL;
	}
	if (tag != n->nports) {
		env_fail(s->env, "side output %d of '%s': side outputs are numbered 1, 2, ... "
			 "in the order they are declared; the next one is %d", tag, n->name,
			 n->nports);
		return NULL;
	}
	return stream_add_port(s, schema);
}

weir_stream *weir_union(weir_stream *a, weir_stream *b)
{
	lnode *n;
	if (!a || !b)
		return NULL;
	if (a->env != b->env) {
		env_fail(a->env, "union of streams from different environments");
		return NULL;
	}
	if (!schema_equal(weir_stream_schema(a), weir_stream_schema(b))) {
		env_fail(a->env, "union: the two streams have different schemas");
		return NULL;
	}
	n = add_node(a->env, NULL, "union", &op_union, weir_stream_schema(a), NULL);
	if (!n || !connect(a, n) || !connect(b, n))
		return NULL;
	return new_stream(a->env, n->id, 0);
}

/* ---- partitioning ------------------------------------------------------------------ */

static weir_stream *repartition(weir_stream *in, enum part_kind part, int key)
{
	weir_stream *s;
	if (!in)
		return NULL;
	s = new_stream(in->env, in->node, in->port);
	if (!s)
		return NULL;
	s->part = part;
	s->key_col = key;
	s->keyed = part == PART_HASH;
	return s;
}

weir_stream *weir_key_by(weir_stream *in, const char *column)
{
	int k;
	if (!in)
		return NULL;
	k = column ? weir_schema_find(weir_stream_schema(in), column) : -ENOENT;
	if (k < 0) {
		env_fail(in->env, "key_by: no column '%s' in '%s'", column ? column : "(null)",
			 in->env->g.nodes[in->node]->name);
		return NULL;
	}
	return repartition(in, PART_HASH, k);
}

weir_stream *weir_rebalance(weir_stream *in) { return repartition(in, PART_REBALANCE, -1); }
weir_stream *weir_broadcast(weir_stream *in) { return repartition(in, PART_BROADCAST, -1); }

/* ---- keyed aggregates -------------------------------------------------------------------- */

static weir_stream *aggregate(weir_stream *keyed, const char *name,
			      enum agg_kind kind, const char *column,
			      weir_reduce_fn fn, void *arg)
{
	const weir_schema *is, *os;
	agg_conf *c;
	lnode *n;
	static const char *names[] = { "", "sum", "min", "max", "count", "reduce" };

	if (!keyed)
		return NULL;
	if (!keyed->keyed) {
		env_fail(keyed->env, "%s: the input is not keyed (call weir_key_by first)",
			 names[kind]);
		return NULL;
	}
	is = weir_stream_schema(keyed);
	c = conf_new(keyed->env, sizeof(*c));
	if (!c)
		return NULL;
	c->kind = kind;
	c->key_col = keyed->key_col;
	c->fn = fn;
	c->arg = arg;
	c->in = is;
	os = is;
	if (kind == AGG_SUM || kind == AGG_MIN || kind == AGG_MAX) {
		c->col = column ? weir_schema_find(is, column) : -ENOENT;
		if (c->col < 0) {
			env_fail(keyed->env, "%s: no column '%s'", names[kind],
				 column ? column : "(null)");
			free(c);
			return NULL;
		}
		weir_type t = is->fields[c->col].type;
		if (t != WEIR_I64 && t != WEIR_F64 && (kind == AGG_SUM || t != WEIR_TS)) {
			env_fail(keyed->env, "%s: column '%s' is %s, not a number", names[kind],
				 column, type_name(t));
			free(c);
			return NULL;
		}
		if (c->col == c->key_col) {
			env_fail(keyed->env, "%s: column '%s' is the key", names[kind], column);
			free(c);
			return NULL;
		}
	} else if (kind == AGG_COUNT) {
		weir_schema *cs = env_schema(keyed->env);
		if (!cs) {
			free(c);
			return NULL;
		}
		cs->ncols = 2;
		cs->fields[0] = is->fields[c->key_col];
		snprintf(cs->fields[1].name, WEIR_MAX_NAME, "count");
		cs->fields[1].type = WEIR_I64;
		if (!strcmp(cs->fields[0].name, "count"))
			snprintf(cs->fields[0].name, WEIR_MAX_NAME, "key");
		os = cs;
	} else if (!fn) {
		env_fail(keyed->env, "reduce: no function");
		free(c);
		return NULL;
	}
	n = add_node(keyed->env, name, names[kind], &op_aggregate, os, c);
	if (!n || !connect(keyed, n))
		return NULL;
	return new_stream(keyed->env, n->id, 0);
}

weir_stream *weir_sum(weir_stream *k, const char *col) { return aggregate(k, NULL, AGG_SUM, col, NULL, NULL); }
weir_stream *weir_min(weir_stream *k, const char *col) { return aggregate(k, NULL, AGG_MIN, col, NULL, NULL); }
weir_stream *weir_max(weir_stream *k, const char *col) { return aggregate(k, NULL, AGG_MAX, col, NULL, NULL); }
weir_stream *weir_count(weir_stream *k) { return aggregate(k, NULL, AGG_COUNT, NULL, NULL, NULL); }

weir_stream *weir_reduce(weir_stream *keyed, const char *name, weir_reduce_fn fn,
			 void *arg)
{
	return aggregate(keyed, name, AGG_REDUCE, NULL, fn, arg);
}

/* ---- sinks ---------------------------------------------------------------------------- */

static int sink(weir_stream *in, const char *name, const char *dflt,
		const op_ops *ops, const char *path)
{
	sink_conf *c;
	lnode *n;

	if (!in)
		return -EINVAL;
	if (path && strlen(path) >= sizeof(c->path)) {
		env_fail(in->env, "sink '%s': path too long", name ? name : dflt);
		return -EINVAL;
	}
	c = conf_new(in->env, sizeof(*c));
	if (!c)
		return -ENOMEM;
	if (path)
		snprintf(c->path, sizeof(c->path), "%s", path);
	n = add_node(in->env, name, dflt, ops, weir_stream_schema(in), c);
	if (!n)
		return -ENOMEM;
	n->max_parallelism_1 = ops == &op_csv_sink;
	return connect(in, n) ? 0 : -EINVAL;
}

int weir_sink_stdout(weir_stream *in, const char *name)
{
	return sink(in, name, "stdout-sink", &op_csv_sink, NULL);
}

int weir_sink_csv(weir_stream *in, const char *name, const char *path)
{
	if (in && (!path || !*path)) {
		env_fail(in->env, "csv sink '%s': no file path given", name ? name : "csv-sink");
		return -EINVAL;
	}
	return sink(in, name, "csv-sink", &op_csv_sink, path);
}

int weir_sink_discard(weir_stream *in, const char *name)
{
	return sink(in, name, "discard-sink", &op_discard_sink, NULL);
}

int weir_sink(weir_stream *in, const char *name, const weir_sink_fns *fns)
{
	if (!in)
		return -EINVAL;
	if (!fns || !fns->invoke) {
		env_fail(in->env, "sink '%s': no invoke function", name ? name : "user-sink");
		return -EINVAL;
	}
	weir_sink_fns *c = conf_new(in->env, sizeof(*c));
	if (!c)
		return -ENOMEM;
	*c = *fns;
	lnode *n = add_node(in->env, name, "user-sink", &op_user_sink, weir_stream_schema(in), c);
	if (!n)
		return -ENOMEM;
	return connect(in, n) ? 0 : -EINVAL;
}

int weir_sink_files(weir_stream *in, const char *name, const char *dir)
{
	if (!in)
		return -EINVAL;
	if (!dir || !*dir) {
		env_fail(in->env, "file sink '%s': no directory given",
			 name ? name : "file-sink");
		return -EINVAL;
	}
	/* Two sinks in one directory would both write part-<subtask>-0. */
	for (int i = 0; i < in->env->g.nnodes; i++) {
		const lnode *o = in->env->g.nodes[i];
		if (o->ops == &op_files_sink && !strcmp(((const sink_conf *)o->conf)->path, dir)) {
			env_fail(in->env, "file sink '%s': directory '%s' is already written "
				 "by '%s'", name ? name : "file-sink", dir, o->name);
			return -EINVAL;
		}
	}
	/* Parallelism: the input's, set in env_prepare. */
	return sink(in, name, "file-sink", &op_files_sink, dir);
}

/* ---- settings and execution ---------------------------------------------------------------- */

int weir_stream_set_parallelism(weir_stream *s, int p)
{
	if (!s)
		return -EINVAL;
	lnode *n = s->env->g.nodes[s->node];
	if (p < 1 || p > 4096) {
		env_fail(s->env, "'%s': parallelism %d out of range", n->name, p);
		return -EINVAL;
	}
	n->parallelism = p;
	return 0;
}

int weir_stream_start_new_chain(weir_stream *s)
{
	if (!s)
		return -EINVAL;
	s->env->g.nodes[s->node]->new_chain = true;
	return 0;
}

/*
 * Prepare keyed aggregates for the runtime mode.  In BATCH mode each gets a
 * combiner chained to its input's producer (two-phase aggregation): COUNT
 * becomes a local COUNT followed by a SUM of the partial counts; SUM, MIN,
 * MAX and REDUCE (whose function must be associative, as in Flink) combine
 * with themselves.  Runs once per environment.
 */
static int add_combiners(weir_env *env, weir_runtime_mode mode)
{
	int n = env->g.nnodes;
	for (int i = 0; i < n; i++) {
		lnode *a = env->g.nodes[i];
		agg_conf *c = a->conf;
		if (a->ops != &op_aggregate || c->combiner)
			continue;
		c->final_only = mode == WEIR_MODE_BATCH;
		if (mode != WEIR_MODE_BATCH)
			continue;
		ledge *e = NULL;
		for (int k = 0; k < env->g.nedges; k++)
			if (env->g.edges[k].dst == a->id)
				e = &env->g.edges[k];
		if (!e || e->part != PART_HASH)
			continue;
		lnode *src = env->g.nodes[e->src];
		agg_conf *cc = malloc(sizeof(*cc));
		if (!cc)
			return -ENOMEM;
		*cc = *c;
		cc->combiner = true;
		cc->final_only = false;
		char name[64];
		snprintf(name, sizeof(name), "%.50s-combine", a->name);
		lnode *cn = graph_add_node(&env->g, name, &op_aggregate);
		if (!cn) {
			free(cc);
			return -ENOMEM;
		}
		a = env->g.nodes[i]; /* the node array may have moved */
		c = a->conf;
		cn->conf = cc;
		cn->conf_free = free;
		cn->schema[0] = a->schema[0];
		cn->parallelism = src->parallelism;
		cn->max_parallelism_1 = src->max_parallelism_1;
		/* src -> combiner (forward: chained), combiner -> a (hash) */
		int esrc = e->src, eport = e->src_port;
		e->src = cn->id;
		e->src_port = 0;
		if (c->kind == AGG_COUNT) {
			/* The final step sums the partial counts. */
			c->kind = AGG_SUM;
			c->in = a->schema[0];
			c->key_col = 0;
			c->col = 1;
			e->key_col = 0;
		}
		if (graph_add_edge(&env->g, esrc, eport, cn->id, PART_FORWARD, -1) < 0)
			return -ENOMEM;
	}
	return 0;
}

/*
 * Check the configuration and fix what the runtime mode decides: resolve
 * AUTOMATIC, and (once per environment) put combiners before the keyed
 * aggregates in BATCH mode.  Writes the effective configuration to *cfg.
 */
static int env_prepare(weir_env *env, const char *job_name, weir_config *cfg)
{
	*cfg = env->cfg;
	if (env->error[0]) {
		wlog(LOG_ERROR, "job '%s': %s", job_name, env->error);
		return -EINVAL;
	}
	if (env->g.nnodes == 0) {
		wlog(LOG_ERROR, "job '%s' defines no operators", job_name);
		return -EINVAL;
	}
	if (cfg->parallelism < 1 || cfg->parallelism > 4096 || cfg->cores < 0 ||
	    cfg->cores > 1024 || cfg->batch_rows < 1 || cfg->batch_rows > 65535 ||
	    cfg->channel_credits < 1 || cfg->channel_credits > 65536 ||
	    cfg->block_size < 4096 || cfg->block_size > (1u << 30) ||
	    cfg->max_parallelism < 1 || cfg->max_parallelism > 32768 ||
	    cfg->buffer_timeout_us < 0) {
		wlog(LOG_ERROR, "job '%s': invalid configuration (parallelism %d, cores %d, "
		     "batch rows %u, credits %u, block size %u, max parallelism %d, "
		     "buffer timeout %lld us)", job_name, cfg->parallelism, cfg->cores,
		     cfg->batch_rows, cfg->channel_credits, cfg->block_size,
		     cfg->max_parallelism, (long long)cfg->buffer_timeout_us);
		return -EINVAL;
	}
	if (cfg->mode == WEIR_MODE_AUTOMATIC)
		cfg->mode = env->any_unbounded ? WEIR_MODE_STREAMING : WEIR_MODE_BATCH;
	/* A file sink runs at its input's parallelism (a forward edge: it
	 * chains), unless the job set its own. */
	for (int i = 0; i < env->g.nnodes; i++) {
		lnode *n = env->g.nodes[i];
		if (n->ops != &op_files_sink || n->parallelism)
			continue;
		for (int k = 0; k < env->g.nedges; k++)
			if (env->g.edges[k].dst == n->id) {
				const lnode *src = env->g.nodes[env->g.edges[k].src];
				n->parallelism = src->max_parallelism_1 ? 1 : src->parallelism;
				break;
			}
	}
	if (!env->prepared) {
		if (add_combiners(env, cfg->mode) < 0)
			return -ENOMEM;
		env->prepared = true;
	}
	return 0;
}

int weir_env_execute(weir_env *env, const char *job_name, int progress_ms)
{
	return weir_env_execute_part(env, job_name, progress_ms, NULL);
}

int weir_env_execute_part(weir_env *env, const char *job_name, int progress_ms,
			const run_cluster *cluster)
{
	weir_config cfg;
	run_hooks hooks = { .progress_ms = progress_ms, .cluster = cluster,
			    .print_plan = env->cfg.print_plan,
			    .print_metrics = env->cfg.print_metrics,
			    .store = &checkpoint_store_ops,
			    .stats = &env->stats };
	int err;

	if (env->executed) {
		wlog(LOG_ERROR, "job '%s': an environment runs once; build a new one",
		     job_name);
		return -EINVAL;
	}
	if ((err = env_prepare(env, job_name, &cfg)) < 0)
		return err;
	env->executed = true;
	return runtime_run(&env->g, &cfg, job_name, &hooks);
}

int weir_env_checkpoint_stats(const weir_env *env, weir_checkpoint_stats *out)
{
	if (!env || !env->executed)
		return -EINVAL;
	*out = env->stats;
	return 0;
}

int weir_env_describe_plan(weir_env *env, char *buf, size_t len)
{
	weir_config cfg;
	if (env_prepare(env, "plan", &cfg) < 0) {
		snprintf(buf, len, "error: %s", env->error[0] ? env->error : "invalid");
		return -EINVAL;
	}
	return runtime_describe_plan(&env->g, &cfg, buf, len);
}
