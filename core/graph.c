/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The logical job graph: operators (nodes) with output ports, and edges with
 * a partitioning.  Built by the DataStream API, expanded into subtasks,
 * chains and channels by the planner in plan.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

void graph_init(graph *g)
{
	memset(g, 0, sizeof(*g));
}

void graph_destroy(graph *g)
{
	for (int i = 0; i < g->nnodes; i++) {
		lnode *n = g->nodes[i];
		if (n->conf_free)
			n->conf_free(n->conf);
		free(n);
	}
	free(g->nodes);
	free(g->edges);
	memset(g, 0, sizeof(*g));
}

lnode *graph_add_node(graph *g, const char *name, const op_ops *ops)
{
	lnode *n;

	if (g->nnodes == g->cap_nodes) {
		int cap = g->cap_nodes ? g->cap_nodes * 2 : 16;
		lnode **nn = realloc(g->nodes, (size_t)cap * sizeof(*nn));
		if (!nn)
			return NULL;
		g->nodes = nn;
		g->cap_nodes = cap;
	}
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->id = g->nnodes;
	snprintf(n->name, sizeof(n->name), "%s", name);
	n->ops = ops;
	n->nports = 1;
	g->nodes[g->nnodes++] = n;
	return n;
}

int graph_add_edge(graph *g, int src, int src_port, int dst,
		   enum part_kind part, int key_col)
{
	if (src < 0 || src >= g->nnodes || dst < 0 || dst >= g->nnodes ||
	    src_port < 0 || src_port >= g->nodes[src]->nports)
		return -EINVAL;
	if (g->nedges == g->cap_edges) {
		int cap = g->cap_edges ? g->cap_edges * 2 : 16;
		ledge *ne = realloc(g->edges, (size_t)cap * sizeof(*ne));
		if (!ne)
			return -ENOMEM;
		g->edges = ne;
		g->cap_edges = cap;
	}
	g->edges[g->nedges++] = (ledge){
		.src = src, .src_port = src_port, .dst = dst,
		.dst_input = g->nodes[dst]->ninputs++, .part = part,
		.key_col = key_col,
	};
	return 0;
}
