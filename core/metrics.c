/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Progress and metrics, printed on stderr by the main thread: a line of
 * records per operator every --progress interval, and at the end a table
 * of each operator's records and batches in and out, then each core's
 * traffic, busy / idle / backpressured time, parks and pool blocks.
 * Counters are per task and per reactor, written by their owner core with
 * relaxed stores and summed here when read (no shared atomic in the data
 * path).
 */

#include <stdio.h>
#include <string.h>

#include "core.h"
#include "metrics.h"
#include "reactor.h"

static void node_totals(struct runtime *rt, int node, task_metrics *m)
{
	memset(m, 0, sizeof(*m));
	for (int i = 0; i < rt->ntasks; i++) {
		task *t = rt->tasks[i];
		if (t->node->id != node)
			continue;
		m->rec_in += metric_read(&t->m.rec_in);
		m->rec_out += metric_read(&t->m.rec_out);
		m->batch_in += metric_read(&t->m.batch_in);
		m->batch_out += metric_read(&t->m.batch_out);
		m->dead_letters += metric_read(&t->m.dead_letters);
	}
}

void print_progress(struct runtime *rt, double secs)
{
	char line[2048];
	int n = snprintf(line, sizeof(line), "[%6.1fs]", secs);
	for (int i = 0; i < rt->g->nnodes && n < (int)sizeof(line) - 100; i++) {
		task_metrics m;
		node_totals(rt, i, &m);
		uint64_t v = rt->g->nodes[i]->ops->produce ? m.rec_out : m.rec_in;
		n += snprintf(line + n, sizeof(line) - (size_t)n, " %s=%llu",
			      rt->g->nodes[i]->name, (unsigned long long)v);
	}
	fprintf(stderr, "%s\n", line);
}

void print_metrics(struct runtime *rt, double secs)
{
	fprintf(stderr, "metrics: %.3f s\n", secs);
	fprintf(stderr, "  %-24s %3s %14s %14s %10s %10s %8s\n", "operator", "p",
		"records_in", "records_out", "batch_in", "batch_out", "dead");
	for (int i = 0; i < rt->g->nnodes; i++) {
		task_metrics m;
		node_totals(rt, i, &m);
		fprintf(stderr, "  %-24s %3d %14llu %14llu %10llu %10llu %8llu\n",
			rt->g->nodes[i]->name, rt->node_par[i],
			(unsigned long long)m.rec_in, (unsigned long long)m.rec_out,
			(unsigned long long)m.batch_in, (unsigned long long)m.batch_out,
			(unsigned long long)m.dead_letters);
	}
	for (int i = rt->lo; i < rt->hi; i++) {
		reactor_metrics *m = &rt->reactors[i].m;
		task_metrics c = { 0 };
		/* Records and batches that entered and left this core's actors
		 * (fused calls inside a chain are not counted twice). */
		for (int k = 0; k < rt->nactors; k++) {
			actor *a = rt->actors[k];
			if (a->r != &rt->reactors[i])
				continue;
			c.rec_in += metric_read(&a->head->m.rec_in);
			c.batch_in += metric_read(&a->head->m.batch_in);
			for (int j = 0; j < a->ntasks; j++) {
				task *t = a->tasks[j];
				bool leaves = false;
				for (int p = 0; p < t->nports; p++)
					for (int o = 0; o < t->nout[p]; o++)
						leaves |= t->out[p][o].kind == OUT_CHANNELS;
				c.batch_out += metric_read(&t->m.chan_out);
				if (leaves)
					c.rec_out += metric_read(&t->m.rec_out);
			}
		}
		fprintf(stderr, "  core %d (cpu %d): records in %llu out %llu, batches in %llu "
			"out %llu; busy %.1f ms, idle %.1f ms, backpressured %.1f ms; "
			"parks %llu, pool blocks %llu\n", i, rt->reactors[i].cpu,
			(unsigned long long)c.rec_in, (unsigned long long)c.rec_out,
			(unsigned long long)c.batch_in, (unsigned long long)c.batch_out,
			metric_read(&m->busy_ns) / 1e6, metric_read(&m->idle_ns) / 1e6,
			metric_read(&m->backpressured_ns) / 1e6,
			(unsigned long long)metric_read(&m->parks),
			(unsigned long long)pool_blocks_allocated(rt->pools->pools[i]));
	}
	if (rt->store) {
		/* Every stretch a reactor spent on checkpoints at once: at a
		 * barrier, or logging a snapshot between turns. */
		weir_checkpoint_stats st = { 0 };
		char hist[WEIR_PAUSE_BUCKETS * 32];
		int n = 0;
		uint64_t total = 0;
		rt->sops->stats(rt->store, &st);
		for (int b = 0; b < WEIR_PAUSE_BUCKETS; b++) {
			total += st.pause_hist[b];
			if (!st.pause_hist[b])
				continue;
			uint64_t us = b ? 1ull << b : 0;
			n += snprintf(hist + n, sizeof(hist) - (size_t)n, " %s%llu%s:%llu",
				      b == WEIR_PAUSE_BUCKETS - 1 ? ">=" : "",
				      (unsigned long long)(us >= 1000 ? us / 1000 : us),
				      us >= 1000 ? "ms" : "us",
				      (unsigned long long)st.pause_hist[b]);
		}
		fprintf(stderr, "  checkpoint pauses: %llu, longest %.3f ms; by duration from "
			"(2^i us):%s\n", (unsigned long long)total, st.max_pause_ms,
			n ? hist : " none");
	}
}
