/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Throughput of the Nexmark generator alone (operators/nexmark.c) on the
 * real runtime: the source into discard sinks, so that query figures can
 * be judged against it.
 *   all   all three streams consumed (people, auctions, bids)
 *   bids  bids only (what q0-q2 consume): the other types are skipped
 * Prints one JSON line per scenario: events of the id space per second
 * (bids only: bids and skipped events alike) and rows made per second.
 *
 *   bench_nexmark [events] [both|all|bids] [parallelism]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include <weir/nexmark.h>
#include <weir/weir.h>

static double run(const char *mode, uint64_t n, int p, uint64_t *rows)
{
	weir_env *env = weir_env_new();
	weir_config *cfg = weir_env_config(env);
	weir_nexmark_conf nc = { .events = n };
	bool all = !strcmp(mode, "all");

	cfg->parallelism = p;
	cfg->cores = p;
	weir_stream *person = weir_source_nexmark(env, "nexmark", &nc);
	if (!person) {
		fprintf(stderr, "bench_nexmark: %s\n", weir_env_error(env));
		exit(1);
	}
	if (all) {
		weir_sink_discard(person, "person");
		weir_sink_discard(weir_nexmark_stream(person, WEIR_NEXMARK_AUCTION), "auction");
	}
	weir_sink_discard(weir_nexmark_stream(person, WEIR_NEXMARK_BID), "bid");
	uint64_t t0 = now_ns();
	if (weir_env_execute(env, mode, 0) != 0) {
		fprintf(stderr, "bench_nexmark: %s failed\n", mode);
		exit(1);
	}
	double dt = (now_ns() - t0) / 1e9;
	weir_env_free(env);
	*rows = all ? n : n / 50 * 46 + (n % 50 > 4 ? n % 50 - 4 : 0);
	return dt;
}

int main(int argc, char **argv)
{
	uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000000ull;
	const char *which = argc > 2 ? argv[2] : "both";
	int p = argc > 3 ? atoi(argv[3]) : 1;
	static const char *const modes[] = { "all", "bids" };

	if (p < 1 || p > 64 || n == 0 ||
	    (strcmp(which, "both") && strcmp(which, "all") && strcmp(which, "bids"))) {
		fprintf(stderr, "usage: bench_nexmark [events] [both|all|bids] [parallelism]\n");
		return 2;
	}
	for (int m = 0; m < 2; m++) {
		if (strcmp(which, "both") && strcmp(which, modes[m]))
			continue;
		uint64_t rows;
		double dt = run(modes[m], n, p, &rows);
		printf("{\"bench\":\"nexmark_gen_%s\",\"parallelism\":%d,\"events\":%llu,"
		       "\"rows\":%llu,\"seconds\":%.3f,\"events_per_s\":%.0f,"
		       "\"events_per_s_per_core\":%.0f,\"rows_per_s\":%.0f}\n",
		       modes[m], p, (unsigned long long)n, (unsigned long long)rows, dt,
		       n / dt, n / dt / p, rows / dt);
		fflush(stdout);
	}
	return 0;
}
