/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Word count: the first example job.
 *
 *   weir run -p N wordcount.so [--input FILE] [--output PATH] [--rate N]
 *
 * Writes one line "word,count" per distinct word (final counts, any order).
 * A word is a maximal run of ASCII letters, lower-cased.  Without --input it
 * reads standard input; without --output it writes standard output.  When
 * the run takes checkpoints, --output names a directory of exactly-once
 * part files (weir_sink_files) instead of one CSV file.  --rate caps the
 * source at N lines per second.
 *
 * Dataflow: text source (split by byte range) -> tokenize (flat_map,
 * chained) -> key_by(word) hash exchange -> sum(count) -> CSV sink (or
 * file sink).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weir/weir.h>

#include "example_opts.h"

int weir_job(weir_env *env, int argc, char **argv);

/* 1 for ASCII letters; lower-casing is `c | 0x20` for them. */
static const unsigned char is_letter[256] = {
	['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1,
	['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
	['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
	['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
	['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
	['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
	['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
	['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static int tokenize(void *arg, const weir_batch *in, weir_out *out)
{
	char word[256];
	char *big = NULL;
	size_t bigcap = 0;
	(void)arg;

	for (uint32_t r = 0; r < in->rows; r++) {
		uint32_t len;
		const unsigned char *p =
			(const unsigned char *)weir_batch_str(in, 0, r, &len);
		uint32_t i = 0;
		while (i < len) {
			while (i < len && !is_letter[p[i]])
				i++;
			uint32_t start = i;
			while (i < len && is_letter[p[i]])
				i++;
			uint32_t n = i - start;
			if (!n)
				break;
			char *w = word;
			if (n > sizeof(word)) {
				/* Longer than any real word: lower-case it in a
				 * heap buffer (rare; not the per-record path). */
				if (n > bigcap) {
					char *nb = realloc(big, n);
					if (!nb) {
						free(big);
						return -12; /* -ENOMEM */
					}
					big = nb;
					bigcap = n;
				}
				w = big;
			}
			for (uint32_t k = 0; k < n; k++)
				w[k] = (char)(p[start + k] | 0x20);
			weir_out_str(out, 0, w, n);
			weir_out_i64(out, 1, 1);
			weir_out_emit(out);
		}
	}
	free(big);
	return 0;
}

static void usage(FILE *f, const char *self)
{
	fprintf(f,
		"usage: weir run [-p N] %s [--input FILE] [--output PATH] [--rate N]\n"
		"\n"
		"Count words: one line 'word,count' per distinct word (any order).\n"
		"A word is a maximal run of ASCII letters, lower-cased.\n"
		"\n"
		"  --input FILE   text to read (default: standard input)\n"
		"  --output PATH  CSV to write (default: standard output); when the run\n"
		"                 takes checkpoints (weir run --checkpoint-dir), PATH\n"
		"                 is a directory (created if missing) of exactly-once\n"
		"                 files part-<subtask>-<n>, committed at each checkpoint\n"
		"  --rate N       read at most N lines per second (over all subtasks)\n"
		EX_URI_HELP, self);
}

int weir_job(weir_env *env, int argc, char **argv)
{
	const char *input = NULL, *output = NULL;
	double rate = 0;
	const ex_opt opts[] = {
		{ .name = "input", .kind = EX_STR, .out = &input, .short_name = 'i' },
		{ .name = "output", .kind = EX_STR, .out = &output, .short_name = 'o' },
		{ .name = "rate", .kind = EX_RATE, .out = &rate },
		{ .name = "help", .kind = EX_HELP, .short_name = 'h' },
		{ 0 },
	};
	int rc = ex_parse_options("wordcount", opts, argc, argv, usage);
	if (rc)
		return rc;
	if (ex_extra_args("wordcount", argc, argv, usage))
		return 2;

	/* A text file, a kafka:// URI (each message a line), or stdin. */
	weir_stream *lines = !input ? weir_source_stdin(env, "lines")
			     : strstr(input, "://") ? weir_source_uri(env, "lines", input, NULL, false, NULL)
			     : weir_source_text_file(env, "lines", input);
	if (rate > 0)
		weir_source_set_rate(lines, rate);
	weir_stream *words = weir_flat_map(lines, "tokenize",
		weir_schema_parse(env, "word:str,count:i64"), tokenize, NULL);
	weir_stream *counts = weir_sum(weir_key_by(words, "word"), "count");
	if (output)
		weir_sink_uri(counts, "output", output);
	else
		weir_sink_stdout(counts, "output");
	return weir_env_error(env) ? 1 : 0;
}
