/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keyed sums over a CSV file with a declared schema.
 *
 *   weir run [-p N] csv_sum.so --input FILE --schema SPEC --key COL --sum COL
 *            [--header] [--output FILE] [--dead-letters FILE]
 *
 * SPEC is "name:type,..." (types i64, f64, bool, ts, str).  Writes one line
 * "key,sum" per distinct key.  Malformed rows (wrong field count, a value
 * that does not parse, a broken quote) do not stop the job: they go to the
 * dead-letter file as "line,reason,raw", or are reported on stderr.
 */
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
		"                          [--header] [--output FILE] [--dead-letters FILE]\n"
		"\n"
		"Sum column COL per distinct KEY of a CSV file; one line 'key,sum' each.\n"
		"SPEC declares the columns: name:type,... with types i64, f64, bool, ts, str.\n"
		"Malformed rows go to --dead-letters FILE as 'line,reason,raw' (or stderr).\n");
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
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *input = NULL, *spec = NULL, *key = NULL, *sum = NULL;
	const char *output = NULL, *dead = NULL;
	bool header = false;
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
	weir_stream *keyed = weir_key_by(rows, key);
	char cols[512];
	snprintf(cols, sizeof(cols), "%s,%s", key, sum);
	weir_stream *sums = weir_project(weir_sum(keyed, sum), "key-sum", cols);
	if (output)
		weir_sink_csv(sums, "output", output);
	else
		weir_sink_stdout(sums, "output");
	if (dead)
		weir_sink_csv(weir_csv_dead_letters(rows), "dead-letters", dead);
	return weir_env_error(env) ? 1 : 0;
}
