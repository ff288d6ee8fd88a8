/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Nexmark source's streams as CSV files, for tests:
 *   weir run [-p N] nexmark_csv.so [generator options] --out DIR|discard
 *            [--streams person,auction,bid]
 * writes DIR/person.csv, DIR/auction.csv and DIR/bid.csv (no header) with
 * weir_sink_csv, for the streams named in --streams (default all three;
 * the others are not consumed).  "--out discard" drops the rows.
 */
#include <stdio.h>
#include <string.h>

#include <weir/nexmark.h>
#include <weir/weir.h>

int weir_job(weir_env *env, int argc, char **argv);

int weir_job(weir_env *env, int argc, char **argv)
{
	static const char *const names[3] = { "person", "auction", "bid" };
	weir_nexmark_conf nc = { 0 };
	const char *out = NULL, *streams = "person,auction,bid";
	weir_stream *st[3];
	char err[256];

	if (weir_nexmark_options(&argc, argv, &nc, err, sizeof(err)) < 0) {
		fprintf(stderr, "nexmark_csv: %s\n", err);
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--out") && i + 1 < argc) {
			out = argv[++i];
		} else if (!strcmp(argv[i], "--streams") && i + 1 < argc) {
			streams = argv[++i];
		} else {
			fprintf(stderr, "usage: nexmark_csv.so [generator options] --out DIR|discard "
				"[--streams person,auction,bid]\ngenerator options:\n%s",
				WEIR_NEXMARK_OPTIONS_HELP);
			return 2;
		}
	}
	if (!out) {
		fprintf(stderr, "nexmark_csv: --out DIR|discard is required\n");
		return 2;
	}
	st[0] = weir_source_nexmark(env, "nexmark", &nc);
	for (int k = 0; k < 3; k++) {
		st[k] = weir_nexmark_stream(st[0], (weir_nexmark_kind)k);
		char path[4096];
		if (!strstr(streams, names[k]))
			continue;
		if (!strcmp(out, "discard")) {
			weir_sink_discard(st[k], names[k]);
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s.csv", out, names[k]);
		weir_sink_csv(st[k], names[k], path);
	}
	if (weir_env_error(env)) {
		fprintf(stderr, "nexmark_csv: %s\n", weir_env_error(env));
		return 1;
	}
	return 0;
}
