/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pipeline throughput through the public API on the real runtime:
 *   chain     generator -> map -> filter -> discard, fused, one core
 *   exchange  the same with a hash exchange (key_by) across two cores
 * Records are three i64 columns.  Prints one JSON line per scenario.
 *
 *   bench_pipeline [records] [chain|exchange|all]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include <weir/weir.h>

static int scale(void *arg, const weir_batch *in, weir_batch *out)
{
	const int64_t *s = weir_col_i64(in, 0), *k = weir_col_i64(in, 1),
		      *v = weir_col_i64(in, 2);
	int64_t *os = weir_col_i64(out, 0), *ok = weir_col_i64(out, 1),
		*ov = weir_col_i64(out, 2);
	(void)arg;
	for (uint32_t i = 0; i < in->rows; i++) {
		os[i] = s[i];
		ok[i] = k[i];
		ov[i] = v[i] * 3 + 1;
	}
	return 0;
}

static void keep_most(void *arg, const weir_batch *in, uint8_t *keep)
{
	const int64_t *v = weir_col_i64(in, 2);
	(void)arg;
	for (uint32_t i = 0; i < in->rows; i++)
		keep[i] = v[i] < 2700; /* about 90% of rows */
}

static double run(const char *mode, uint64_t n)
{
	weir_env *env = weir_env_new();
	weir_config *cfg = weir_env_config(env);
	bool ex = !strcmp(mode, "exchange");
	weir_generator_conf g = { .count = n, .seed = 42, .keys = 4096 };

	cfg->parallelism = ex ? 2 : 1;
	cfg->cores = ex ? 2 : 1;
	weir_stream *s = weir_source_generator(env, "gen", &g);
	if (ex)
		s = weir_key_by(s, "key");
	s = weir_map(s, "map", weir_stream_schema(s), scale, NULL);
	s = weir_filter(s, "filter", keep_most, NULL);
	weir_sink_discard(s, "discard");
	uint64_t t0 = now_ns();
	if (weir_env_execute(env, mode, 0) != 0) {
		fprintf(stderr, "bench_pipeline: %s failed\n", mode);
		exit(1);
	}
	double dt = (now_ns() - t0) / 1e9;
	weir_env_free(env);
	return dt;
}

int main(int argc, char **argv)
{
	uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000000ull;
	const char *which = argc > 2 ? argv[2] : "all";

	if (!strcmp(which, "all") || !strcmp(which, "chain")) {
		double dt = run("chain", n);
		printf("{\"bench\":\"fused_chain_1core\",\"records\":%llu,\"seconds\":%.3f,"
		       "\"records_per_s\":%.0f,\"bytes_per_s\":%.0f,"
		       "\"target_records_per_s\":100000000}\n",
		       (unsigned long long)n, dt, n / dt, n * 24.0 / dt);
	}
	if (!strcmp(which, "all") || !strcmp(which, "exchange")) {
		double dt = run("exchange", n);
		printf("{\"bench\":\"hash_exchange_2cores\",\"records\":%llu,\"seconds\":%.3f,"
		       "\"records_per_s\":%.0f,\"records_per_s_per_core\":%.0f,"
		       "\"bytes_per_s\":%.0f}\n",
		       (unsigned long long)n, dt, n / dt, n / dt / 2, n * 24.0 / dt);
	}
	return 0;
}
