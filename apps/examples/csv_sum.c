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
#include <stdio.h>
#include <stdlib.h>

#include <weir/weir.h>

#include "example_opts.h"

int weir_job(weir_env *env, int argc, char **argv);

static void usage(FILE *f, const char *self)
{
	(void)self;
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
		"checkpoint, so both are exactly-once.\n" EX_URI_HELP);
}

int weir_job(weir_env *env, int argc, char **argv)
{
	const char *input = NULL, *spec = NULL, *key = NULL, *sum = NULL;
	const char *output = NULL, *dead = NULL;
	bool header = false;
	double rate = 0;
	const ex_opt opts[] = {
		{ .name = "input", .kind = EX_STR, .out = &input },
		{ .name = "schema", .kind = EX_STR, .out = &spec },
		{ .name = "key", .kind = EX_STR, .out = &key },
		{ .name = "sum", .kind = EX_STR, .out = &sum },
		{ .name = "header", .kind = EX_FLAG, .out = &header },
		{ .name = "output", .kind = EX_STR, .out = &output },
		{ .name = "dead-letters", .kind = EX_STR, .out = &dead },
		{ .name = "rate", .kind = EX_RATE, .out = &rate },
		{ .name = "help", .kind = EX_HELP },
		{ 0 },
	};
	int rc = ex_parse_options("csv_sum", opts, argc, argv, usage);
	if (rc)
		return rc;
	if (!input || !spec || !key || !sum || optind < argc) {
		fprintf(stderr, "csv_sum: --input, --schema, --key and --sum are required\n");
		usage(stderr, argv[0]);
		return 2;
	}
	const weir_schema *schema = weir_schema_parse(env, spec);
	weir_stream *rows = weir_source_uri(env, "csv", input, schema, header, NULL);
	if (rate > 0)
		weir_source_set_rate(rows, rate);
	weir_stream *keyed = weir_key_by(rows, key);
	char cols[512];
	snprintf(cols, sizeof(cols), "%s,%s", key, sum);
	weir_stream *sums = weir_project(weir_sum(keyed, sum), "key-sum", cols);
	if (output)
		weir_sink_uri(sums, "output", output);
	else
		weir_sink_stdout(sums, "output");
	if (dead)
		weir_sink_uri(weir_source_dead_letters(rows), "dead-letters", dead);
	return weir_env_error(env) ? 1 : 0;
}
