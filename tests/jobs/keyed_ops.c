/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The regular join and top-N as a job, for the no-malloc check:
 *   weir run keyed_ops.so --op join-latest|topn --records N [--keys K]
 * join-latest: two generators of N/2 rows (seq, key, value) joined on key,
 * each side keeping its latest row per key (bounded state); topn: the top
 * 10 per key by value.  Output discarded.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weir/weir.h>

int weir_job(weir_env *env, int argc, char **argv);

int weir_job(weir_env *env, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "op", required_argument, NULL, 'o' },
		{ "records", required_argument, NULL, 'n' },
		{ "keys", required_argument, NULL, 'k' },
		{ 0 },
	};
	unsigned long long n = 1000000;
	long long keys = 100;
	const char *op = "topn";
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'o': op = optarg; break;
		case 'n': n = strtoull(optarg, NULL, 10); break;
		case 'k': keys = strtoll(optarg, NULL, 10); break;
		default:
			fprintf(stderr, "usage: keyed_ops.so --op join-latest|topn "
				"--records N [--keys K]\n");
			return 2;
		}
	}
	if (!strcmp(op, "join-latest")) {
		weir_generator_conf ga = { .count = n / 2, .seed = 1, .keys = keys };
		weir_generator_conf gb = { .count = n / 2, .seed = 2, .keys = keys };
		weir_join_conf jc = { .a_latest_only = true, .b_latest_only = true };
		weir_stream *a = weir_key_by(weir_source_generator(env, "a", &ga), "key");
		weir_stream *b = weir_key_by(weir_source_generator(env, "b", &gb), "key");
		weir_sink_discard(weir_join(a, b, "join", &jc, NULL, NULL, NULL), "out");
	} else if (!strcmp(op, "topn")) {
		weir_generator_conf g = { .count = n, .seed = 3, .keys = keys };
		weir_stream *s = weir_key_by(weir_source_generator(env, "gen", &g), "key");
		weir_sink_discard(weir_topn(s, "top", 10, "value", true), "out");
	} else {
		fprintf(stderr, "keyed_ops.so: unknown --op %s\n", op);
		return 2;
	}
	return 0;
}
