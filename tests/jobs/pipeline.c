/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A configurable job for tests:
 *   weir run pipeline.so --records N [--keys K] [--slow-us US] [--output FILE]
 * generator (seq, key, value) -> rebalance -> pass (sleeps US microseconds
 * per batch: a slow operator) -> key_by(key) -> sum(seq) -> CSV or discard.
 * The sum over all output rows of column seq is N(N-1)/2 in batch mode.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weir/weir.h>

int weir_job(weir_env *env, int argc, char **argv);

static long slow_us;

static int pass(void *arg, const weir_batch *in, weir_batch *out)
{
	(void)arg;
	if (slow_us)
		usleep((useconds_t)slow_us);
	for (int c = 0; c < 3; c++)
		memcpy(out->cols[c], in->cols[c], in->rows * sizeof(int64_t));
	return 0;
}

int weir_job(weir_env *env, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "records", required_argument, NULL, 'n' },
		{ "keys", required_argument, NULL, 'k' },
		{ "slow-us", required_argument, NULL, 's' },
		{ "output", required_argument, NULL, 'o' },
		{ 0 },
	};
	weir_generator_conf g = { .count = 1000000, .seed = 1, .keys = 100 };
	const char *output = NULL;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'n': g.count = strtoull(optarg, NULL, 10); break;
		case 'k': g.keys = strtoll(optarg, NULL, 10); break;
		case 's': slow_us = strtol(optarg, NULL, 10); break;
		case 'o': output = optarg; break;
		default:
			fprintf(stderr, "usage: pipeline.so --records N [--keys K] "
				"[--slow-us US] [--output FILE]\n");
			return 2;
		}
	}
	weir_stream *s = weir_source_generator(env, "gen", &g);
	weir_stream *p = weir_map(weir_rebalance(s), "pass", weir_stream_schema(s),
				  pass, NULL);
	weir_stream *sum = weir_sum(weir_key_by(p, "key"), "seq");
	if (output)
		weir_sink_csv(sum, "out", output);
	else
		weir_sink_discard(sum, "out");
	return 0;
}
