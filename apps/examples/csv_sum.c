/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyed sums over a CSV file with a declared schema.
 *
 *   weir run [-p N] csv_sum.so --input FILE --schema SPEC --key COL --sum COL
 *            [--header] [--output PATH] [--dead-letters PATH] [--rate N]
 *
 * SPEC is "name:type,..." (types i64, f64, bool, ts, str).  Writes one line
 * "key,sum" per distinct key.  Malformed rows (wrong field count, a value
 * that does not parse, a broken quote) do not stop the job: they go to the
 * dead-letter file as "line,reason,raw", or are reported on stderr.  When
 * the run takes checkpoints, --output and --dead-letters name directories
 * of exactly-once part files (weir_sink_files).  --rate caps the source at
 * N rows/s.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weir/weir.h>

int weir_job(weir_env *env, int argc, char **argv);

static void usage(FILE *f)
{
	fprintf(f,
		"usage: weir run csv_sum.so --input FILE --schema SPEC --key COL --sum COL\n"
		"                          [--header] [--output PATH] [--dead-letters PATH]\n"
		"                          [--rate N]\n"
		"\n"
		"Sum column COL per distinct KEY of a CSV file; one line 'key,sum' each.\n"
		"SPEC declares the columns: name:type,... with types i64, f64, bool, ts, str.\n"
		"Malformed rows go to --dead-letters PATH as 'line,reason,raw' (or stderr).\n"
		"--rate N reads at most N rows per second.  When the run takes checkpoints\n"
		"(weir run --checkpoint-dir), --output and --dead-letters are directories\n"
		"(created if missing) of files part-<subtask>-<n>, committed at each\n"
		"checkpoint, so both are exactly-once.\n");
}

/* A rate in records per second, > 0, the whole string. */
static int parse_rate(const char *s, double *v)
{
	char *end;
	errno = 0;
	double x = strtod(s, &end);
	if (errno || end == s || *end || !(x > 0) || x > 1e15) {
		fprintf(stderr, "csv_sum: --rate: '%s' is not a number of records per "
			"second > 0\n", s);
		return -1;
	}
	*v = x;
	return 0;
}

int weir_job(weir_env *env, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "input", required_argument, NULL, 'i' },
		{ "schema", required_argument, NULL, 's' },
		{ "key", required_argument, NULL, 'k' },
		{ "sum", required_argument, NULL, 'u' },
		{ "header", no_argument, NULL, 'H' },
		{ "output", required_argument, NULL, 'o' },
		{ "dead-letters", required_argument, NULL, 'd' },
		{ "rate", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *input = NULL, *spec = NULL, *key = NULL, *sum = NULL;
	const char *output = NULL, *dead = NULL;
	bool header = false;
	double rate = 0;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'i': input = optarg; break;
		case 's': spec = optarg; break;
		case 'k': key = optarg; break;
		case 'u': sum = optarg; break;
		case 'H': header = true; break;
		case 'o': output = optarg; break;
		case 'd': dead = optarg; break;
		case 'r':
			if (parse_rate(optarg, &rate)) {
				usage(stderr);
				return 2;
			}
			break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return 2;
		}
	}
	if (!input || !spec || !key || !sum || optind < argc) {
		fprintf(stderr, "csv_sum: --input, --schema, --key and --sum are required\n");
		usage(stderr);
		return 2;
	}
	const weir_schema *schema = weir_schema_parse(env, spec);
	weir_stream *rows = weir_source_csv(env, "csv", input, schema, header, NULL);
	if (rate > 0)
		weir_source_set_rate(rows, rate);
	bool files = weir_env_checkpointing(env);
	weir_stream *keyed = weir_key_by(rows, key);
	char cols[512];
	snprintf(cols, sizeof(cols), "%s,%s", key, sum);
	weir_stream *sums = weir_project(weir_sum(keyed, sum), "key-sum", cols);
	if (output && files)
		weir_sink_files(sums, "output", output);
	else if (output)
		weir_sink_csv(sums, "output", output);
	else
		weir_sink_stdout(sums, "output");
	if (dead && files)
		weir_sink_files(weir_csv_dead_letters(rows), "dead-letters", dead);
	else if (dead)
		weir_sink_csv(weir_csv_dead_letters(rows), "dead-letters", dead);
	return weir_env_error(env) ? 1 : 0;
}
