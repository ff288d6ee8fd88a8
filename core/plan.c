/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Planning: the logical job graph becomes the execution graph -- subtasks
 * (tasks), chains of them fused into actors, outlets and channels between
 * actors, and the placement of actors on reactors -- and the accessors
 * through which other folders read that graph.
 *
 *   - parallelism per operator: its own, else the environment's; operators
 *     limited to one subtask (stdin, single-file sinks) get 1;
 *   - an edge is FORWARD when both sides have the same parallelism and no
 *     partitioning was asked for, else REBALANCE; key_by asks for HASH;
 *   - a FORWARD edge into a single-input operator is chained: both run in
 *     one actor and the edge is a direct call (no ring, no copy);
 *   - chains' subtasks are dealt round-robin over the reactors, except that
 *     a chain fed by an unchained forward edge runs subtask i on the core
 *     of its producer's subtask i, so a forward edge stays on one core.
 *
 * In a cluster every worker plans the whole job over the cluster's cores
 * (channel i is the same edge everywhere); the end of a channel on another
 * worker is the data plane's stand-in reactor (reactors[nreactors]).
 *
 * Everything here runs on the main thread before the reactors start (or
 * reads what is read-only once they run).
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core.h"
#include "plan.h"
#include "reactor.h"

/* ---- the execution graph, as other folders see it ---------------------------------- */

int runtime_ntasks(const runtime *rt) { return rt->ntasks; }
task *runtime_task(const runtime *rt, int i) { return rt->tasks[i]; }
int runtime_ncores(const runtime *rt) { return rt->nreactors; }
const run_cluster *runtime_cluster(const runtime *rt) { return rt->cl; }
bool runtime_core_local(const runtime *rt, int core) { return core >= rt->lo && core < rt->hi; }
struct reactor *runtime_net_reactor(const runtime *rt)
{
	return rt->cl ? &rt->reactors[rt->nreactors] : NULL;
}

int channel_remote(const runtime *rt, const channel *c)
{
	const reactor *net = runtime_net_reactor(rt);
	if (!net)
		return 0;
	return (c->consumer == net ? 1 : 0) | (c->producer == net ? 2 : 0);
}

const graph *runtime_graph(const runtime *rt) { return rt->g; }
const char *runtime_job(const runtime *rt) { return rt->job; }
int task_core(const task *t) { return t->actor->r->id; }
int runtime_core_efd(const runtime *rt, int core) { return rt->reactors[core].efd; }
int runtime_nchannels(const runtime *rt) { return rt->nchannels; }
channel *runtime_channel(const runtime *rt, int i) { return rt->channels[i]; }

/* ---- growable arrays (setup only) ---------------------------------------- */

#define PUSH(arr, n, cap, v)                                                   \
	do {                                                                   \
		if ((n) == (cap)) {                                            \
			int c_ = (cap) ? (cap) * 2 : 8;                        \
			void *p_ = realloc((arr), (size_t)c_ * sizeof(*(arr))); \
			if (!p_)                                               \
				abort();                                       \
			(arr) = p_;                                            \
			(cap) = c_;                                            \
		}                                                              \
		(arr)[(n)++] = (v);                                            \
	} while (0)

/* ---- planning -------------------------------------------------------------------------- */

static int plan_fail(struct runtime *rt, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int plan_fail(struct runtime *rt, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rt->error, sizeof(rt->error), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static bool edge_chained(const struct runtime *rt, const ledge *e)
{
	const lnode *d = rt->g->nodes[e->dst];
	return e->part == PART_FORWARD && rt->cfg->chaining && !d->new_chain &&
	       d->ninputs == 1 && d->ops->produce == NULL;
}

static task *find_task(struct runtime *rt, int node, int subtask)
{
	for (int i = 0; i < rt->ntasks; i++)
		if (rt->tasks[i]->node->id == node && rt->tasks[i]->subtask == subtask)
			return rt->tasks[i];
	return NULL;
}

static task *new_task(struct runtime *rt, const lnode *n, int sub, actor *a)
{
	task *t = calloc(1, sizeof(*t));
	if (!t)
		abort();
	t->ops = n->ops;
	t->node = n;
	t->subtask = sub;
	t->parallelism = rt->node_par[n->id];
	t->actor = a;
	t->rt = rt;
	t->cfg = rt->cfg;
	t->nports = n->nports;
	t->watermark = INT64_MIN;
	t->out_watermark = INT64_MIN;
	t->wait_fd = -1;
	for (int p = 0; p < n->nports; p++) {
		weir_out *o = aligned_alloc(CACHELINE, (sizeof(weir_out) + 63) / 64 * 64);
		if (!o)
			abort();
		memset(o, 0, sizeof(*o));
		o->t = t;
		o->port = p;
		o->schema = n->schema[p];
		t->emit[p] = o;
	}
	PUSH(rt->tasks, rt->ntasks, rt->cap_tasks, t);
	PUSH(a->tasks, a->ntasks, a->cap_tasks, t);
	return t;
}

static void add_chain(struct runtime *rt, actor *a, task *t)
{
	/* Add the chained successors of t (DFS). */
	for (int e = 0; e < rt->g->nedges; e++) {
		const ledge *ed = &rt->g->edges[e];
		if (ed->src != t->node->id || !edge_chained(rt, ed))
			continue;
		task *n = new_task(rt, rt->g->nodes[ed->dst], t->subtask, a);
		add_chain(rt, a, n);
	}
}

static outlet *add_outlet(task *t, int port)
{
	int n = t->nout[port];
	outlet *o = realloc(t->out[port], (size_t)(n + 1) * sizeof(outlet));
	if (!o)
		abort();
	t->out[port] = o;
	memset(&o[n], 0, sizeof(outlet));
	o[n].owner = t;
	t->nout[port] = n + 1;
	return &o[n];
}

int plan(struct runtime *rt)
{
	graph *g = rt->g;
	const weir_config *cfg = rt->cfg;
	int maxp = 1;

	rt->node_par = calloc((size_t)g->nnodes + 1, sizeof(int));
	if (!rt->node_par)
		return -ENOMEM;
	for (int i = 0; i < g->nnodes; i++) {
		lnode *n = g->nodes[i];
		int p = n->parallelism ? n->parallelism : cfg->parallelism;
		if (n->max_parallelism_1) {
			if (n->parallelism > 1)
				return plan_fail(rt, "operator '%s' runs with parallelism 1 only",
						 n->name);
			p = 1;
		}
		if (p < 1 || p > 4096)
			return plan_fail(rt, "operator '%s': parallelism %d out of range",
					 n->name, p);
		if (p > cfg->max_parallelism)
			return plan_fail(rt, "operator '%s': parallelism %d exceeds the max "
					 "parallelism %d (the number of key groups, default 128): "
					 "raise it with --max-parallelism N, N >= %d", n->name, p,
					 cfg->max_parallelism, p);
		rt->node_par[i] = p;
		if (p > maxp)
			maxp = p;
		if (!n->ops->produce && n->ninputs == 0)
			return plan_fail(rt, "operator '%s' has no input", n->name);
	}
	for (int e = 0; e < g->nedges; e++) {
		ledge *ed = &g->edges[e];
		int ps = rt->node_par[ed->src], pd = rt->node_par[ed->dst];
		if (ed->part == PART_DEFAULT)
			ed->part = ps == pd ? PART_FORWARD : PART_REBALANCE;
		if (ed->part == PART_FORWARD && ps != pd)
			return plan_fail(rt, "forward edge '%s' -> '%s' joins parallelism %d "
					 "to %d", g->nodes[ed->src]->name,
					 g->nodes[ed->dst]->name, ps, pd);
	}

	rt->nreactors = cfg->cores > 0 ? cfg->cores : maxp;
	if (rt->cl)
		rt->nreactors = rt->cl->ncores;
	else if (cfg->cores <= 0) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		if (ncpu > 0 && rt->nreactors > ncpu)
			rt->nreactors = (int)ncpu;
	}
	if (rt->nreactors > 1024)
		return plan_fail(rt, "--cores %d is too many", rt->nreactors);
	/* In a cluster, one more: the data plane's stand-in. */
	int nalloc = rt->nreactors + (rt->cl ? 1 : 0);
	rt->lo = rt->cl ? rt->cl->first : 0;
	rt->hi = rt->cl ? rt->cl->first + rt->cl->nlocal : rt->nreactors;
	if (rt->lo < 0 || rt->hi > rt->nreactors || rt->lo >= rt->hi)
		return plan_fail(rt, "cores [%d, %d) are not within the cluster's %d",
				 rt->lo, rt->hi, rt->nreactors);
	rt->reactors = aligned_alloc(CACHELINE, (size_t)nalloc * sizeof(reactor));
	if (!rt->reactors)
		return -ENOMEM;
	memset(rt->reactors, 0, (size_t)nalloc * sizeof(reactor));
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	for (int i = 0; i < nalloc; i++) {
		reactor *r = &rt->reactors[i];
		r->id = i;
		/* a worker's first core on CPU 0, as a local run's */
		r->cpu = i >= rt->lo ? (int)((i - rt->lo) % (ncpu > 0 ? ncpu : 1)) : 0;
		r->rt = rt;
		r->efd = -1;
		if (i < rt->lo || (i >= rt->hi && i < rt->nreactors))
			continue; /* another worker's core */
		if (i == rt->nreactors) /* the stand-in: notifications wake lo */
			continue;
		r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (r->efd < 0)
			return plan_fail(rt, "eventfd: %s", strerror(errno));
	}
	if (rt->cl)
		rt->reactors[rt->nreactors].efd = rt->reactors[rt->lo].efd;

	/* Actors: one per chain head and subtask, placed round-robin over
	 * the reactors; a chain fed by an unchained forward edge sits with
	 * its producer, subtask by subtask. */
	int next_core = 0;
	for (int i = 0; i < g->nnodes; i++) {
		lnode *n = g->nodes[i];
		bool head = true;
		const ledge *fwd = NULL;
		for (int e = 0; e < g->nedges; e++) {
			if (g->edges[e].dst != i)
				continue;
			if (edge_chained(rt, &g->edges[e]))
				head = false;
			else if (g->edges[e].part == PART_FORWARD && !fwd)
				fwd = &g->edges[e];
		}
		if (!head)
			continue;
		for (int s = 0; s < rt->node_par[i]; s++) {
			actor *a = calloc(1, sizeof(*a));
			task *up = fwd ? find_task(rt, fwd->src, s) : NULL;
			if (!a)
				return -ENOMEM;
			if (up) {
				a->r = up->actor->r;
			} else {
				a->r = &rt->reactors[next_core];
				next_core = (next_core + 1) % rt->nreactors;
			}
			a->is_source = n->ops->produce != NULL;
			a->wm = INT64_MIN;
			a->head = new_task(rt, n, s, a);
			add_chain(rt, a, a->head);
			PUSH(rt->actors, rt->nactors, rt->cap_actors, a);
			PUSH(a->r->actors, a->r->nactors, a->r->cap_actors, a);
		}
	}

	/* Outlets: chained calls and channels. */
	for (int e = 0; e < g->nedges; e++) {
		const ledge *ed = &g->edges[e];
		int ps = rt->node_par[ed->src], pd = rt->node_par[ed->dst];
		bool chained = edge_chained(rt, ed);
		for (int s = 0; s < ps; s++) {
			task *src = find_task(rt, ed->src, s);
			outlet *o = add_outlet(src, ed->src_port);
			if (chained) {
				o->kind = OUT_CHAIN;
				o->next = find_task(rt, ed->dst, s);
				o->next_input = ed->dst_input;
				continue;
			}
			o->kind = OUT_CHANNELS;
			o->part = ed->part;
			o->key_col = ed->key_col;
			o->max_parallelism = cfg->max_parallelism;
			int first = ed->part == PART_FORWARD ? s : 0;
			o->nch = ed->part == PART_FORWARD ? 1 : pd;
			o->ch = calloc((size_t)o->nch, sizeof(channel *));
			o->build = calloc((size_t)o->nch, sizeof(weir_batch *));
			o->build_since = calloc((size_t)o->nch, sizeof(uint64_t));
			if (!o->ch || !o->build || !o->build_since)
				return -ENOMEM;
			if (ed->part == PART_HASH) {
				o->scratch_cap = cfg->batch_rows;
				o->scratch = malloc(o->scratch_cap * sizeof(uint16_t));
				o->kg_target = malloc((size_t)cfg->max_parallelism *
						      sizeof(uint16_t));
				if (!o->scratch || !o->kg_target)
					return -ENOMEM;
				for (int kg = 0; kg < cfg->max_parallelism; kg++)
					o->kg_target[kg] = (uint16_t)((uint64_t)kg * (uint64_t)o->nch /
								      (uint64_t)cfg->max_parallelism);
			}
			o->rr = (uint32_t)s; /* spread rebalancing senders */
			for (int k = 0; k < o->nch; k++) {
				task *dst = find_task(rt, ed->dst, first + k);
				actor *da = dst->actor;
				/* An end on another worker is the data plane's. */
				reactor *pr = src->actor->r, *cr = da->r;
				if (rt->cl && !runtime_core_local(rt, pr->id))
					pr = &rt->reactors[rt->nreactors];
				if (rt->cl && !runtime_core_local(rt, cr->id))
					cr = &rt->reactors[rt->nreactors];
				/* A channel that crosses the network grants 4x the
				 * credits: its credit loop takes a network round trip
				 * and two thread wake-ups, not a cache miss (measured:
				 * 16 -> 64 credits, 21 -> 28 M rows/s across a veth). */
				uint32_t credits = cfg->channel_credits;
				if (pr != src->actor->r || cr != da->r)
					credits = credits > UINT32_MAX / 4 ? UINT32_MAX : credits * 4;
				channel *c = channel_new(credits, pr, cr);
				if (!c)
					return -ENOMEM;
				c->notify = reactor_notify;
				c->dst_input = ed->dst_input;
				c->src_node = ed->src;
				c->src_sub = s;
				c->src_port = ed->src_port;
				c->dst_node = ed->dst;
				c->dst_sub = first + k;
				c->src_actor = src->actor;
				o->ch[k] = c;
				PUSH(rt->channels, rt->nchannels, rt->cap_channels, c);
				PUSH(da->in, da->nin, da->cap_in, c);
				PUSH(src->actor->outch, src->actor->noutch, src->actor->cap_outch, c);
			}
		}
	}
	/* Register row builders only now: outlet arrays moved while growing. */
	for (int i = 0; i < rt->ntasks; i++) {
		task *t = rt->tasks[i];
		for (int p = 0; p < t->nports; p++)
			for (int k = 0; k < t->nout[p]; k++)
				if (t->out[p][k].kind == OUT_CHANNELS &&
				    t->out[p][k].part == PART_HASH)
					PUSH(t->actor->hash_outlets, t->actor->nhash,
					     t->actor->cap_hash, &t->out[p][k]);
	}
	for (int i = 0; i < rt->nactors; i++)
		rt->actors[i]->open_inputs = rt->actors[i]->nin;
	return 0;
}

static const char *part_name(enum part_kind p)
{
	switch (p) {
	case PART_FORWARD: return "forward";
	case PART_HASH: return "hash";
	case PART_REBALANCE: return "rebalance";
	case PART_BROADCAST: return "broadcast";
	default: return "default";
	}
}

void print_plan(struct runtime *rt, FILE *f)
{
	graph *g = rt->g;
	fprintf(f, "plan: %d reactor(s)\n", rt->nreactors);
	for (int i = 0; i < rt->nactors; i++) {
		actor *a = rt->actors[i];
		if (a->head->subtask != 0)
			continue;
		fprintf(f, "  chain x%d:", a->head->parallelism);
		for (int k = 0; k < a->ntasks; k++)
			fprintf(f, "%s %s", k ? " ->" : "", a->tasks[k]->node->name);
		fprintf(f, "  (cores:");
		for (int s = 0; s < a->head->parallelism; s++)
			fprintf(f, " %d", find_task(rt, a->head->node->id, s)->actor->r->id);
		fprintf(f, ")\n");
	}
	for (int e = 0; e < g->nedges; e++)
		if (!edge_chained(rt, &g->edges[e]))
			fprintf(f, "  exchange: %s =%s=> %s\n",
				g->nodes[g->edges[e].src]->name,
				part_name(g->edges[e].part),
				g->nodes[g->edges[e].dst]->name);
}

void plan_free(struct runtime *rt)
{
	for (int i = 0; i < rt->ntasks; i++) {
		task *t = rt->tasks[i];
		for (int p = 0; p < NODE_MAX_PORTS; p++) {
			for (int k = 0; k < t->nout[p]; k++) {
				outlet *o = &t->out[p][k];
				free(o->ch);
				free(o->build);
				free(o->build_since);
				free(o->scratch);
				free(o->kg_target);
			}
			free(t->out[p]);
			free(t->emit[p]);
		}
		snap_free(&t->snap);
		snap_free(&t->final_snap);
		if (t->keyed_free)
			t->keyed_free(t->keyed);
		free(t);
	}
	for (int i = 0; i < rt->nactors; i++) {
		actor *a = rt->actors[i];
		free(a->tasks);
		free(a->in);
		free(a->outch);
		free(a->hash_outlets);
		free(a);
	}
	for (int i = 0; i < rt->nchannels; i++)
		channel_free(rt->channels[i]);
	for (int i = 0; rt->reactors && i < rt->nreactors + (rt->cl ? 1 : 0); i++) {
		if (rt->reactors[i].efd > 0 && i < rt->nreactors)
			close(rt->reactors[i].efd);
		free(rt->reactors[i].actors);
	}
	free(rt->reactors);
	free(rt->tasks);
	free(rt->actors);
	free(rt->channels);
	free(rt->node_par);
}

int runtime_describe_plan(graph *g, const weir_config *cfg, char *buf,
			  size_t len)
{
	struct runtime *rt = calloc(1, sizeof(*rt));
	FILE *f;
	int err;

	if (!rt)
		return -ENOMEM;
	rt->cfg = cfg;
	rt->g = g;
	err = plan(rt);
	if (err) {
		snprintf(buf, len, "error: %s", rt->error);
	} else if ((f = fmemopen(buf, len, "w"))) {
		fprintf(f, "actors %d channels %d\n", rt->nactors, rt->nchannels);
		print_plan(rt, f);
		fclose(f);
	}
	plan_free(rt);
	free(rt);
	return err;
}

