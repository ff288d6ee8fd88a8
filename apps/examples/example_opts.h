/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Option parsing shared by the example jobs (wordcount, csv_sum,
 * window_agg, vwap, telemetry).  Each example is its own shared module, so
 * this header is static inline and uses only the public API and libc.
 *
 * A job describes its options in a table and calls ex_parse_options():
 *
 *   const char *input = NULL;
 *   double rate = 0;
 *   const ex_opt opts[] = {
 *           { .name = "input", .kind = EX_STR, .out = &input, .short_name = 'i' },
 *           { .name = "rate", .kind = EX_RATE, .out = &rate },
 *           { .name = "help", .kind = EX_HELP },
 *           { 0 },
 *   };
 *   int rc = ex_parse_options("myjob", opts, argc, argv, usage);
 *   if (rc)
 *           return rc;
 *
 * A bad value is reported as "<job>: --flag: '<value>' is not ...", an
 * unknown option by getopt; then usage(stderr) and 2 (bad usage).  --help
 * prints usage(stdout) and exits 0.  What is left (argv[optind...]) is the
 * caller's: ex_no_extra_args() refuses it.
 */
#ifndef WEIR_EXAMPLE_OPTS_H
#define WEIR_EXAMPLE_OPTS_H

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef enum ex_kind {
	EX_STR,  /* const char **out: the value as given */
	EX_FLAG, /* bool *out: set, no value */
	EX_RATE, /* double *out: records per second, > 0 */
	EX_I64,  /* int64_t *out: an integer >= min, described as `what` */
	EX_HELP, /* usage(stdout), exit(0) */
} ex_kind;

typedef struct ex_opt {
	const char *name;  /* the long option, without "--"; NULL ends the table */
	ex_kind kind;
	void *out;         /* see ex_kind; NULL for EX_HELP */
	int short_name;    /* also -<c> (0: long only) */
	int64_t min;       /* EX_I64: smallest value */
	const char *what;  /* EX_I64: "a number of milliseconds", "an integer" */
	bool *seen;        /* if not NULL: set when the option is given */
} ex_opt;

#define EX_MAX_OPTS 16

/* The end of a usage text whose input and output flags take connector
 * URIs (weir_source_uri, weir_sink_uri). */
#define EX_URI_HELP \
	"\n" \
	"A file flag may name a Kafka topic instead (one message per row, the row's\n" \
	"CSV line as its value):\n" \
	"  input:  kafka://HOST:PORT[,HOST:PORT...]/TOPIC[?format=csv|raw\n" \
	"          &start=earliest|latest|group&bounded=1&group=ID]\n" \
	"  output: kafka://HOST:PORT[,HOST:PORT...]/TOPIC[?format=csv|raw\n" \
	"          &guarantee=exactly-once|at-least-once|none&key=COLS]\n"

/* A rate in records per second, > 0, the whole string.  0 or -1 (printed). */
static inline int ex_parse_rate(const char *job, const char *flag, const char *s,
				double *v)
{
	char *end;
	errno = 0;
	double x = strtod(s, &end);
	if (errno || end == s || *end || !(x > 0) || x > 1e15) {
		fprintf(stderr, "%s: %s: '%s' is not a number of records per second > 0\n",
			job, flag, s);
		return -1;
	}
	*v = x;
	return 0;
}

/* An integer >= min, the whole string.  0 or -1 (printed, naming `what`). */
static inline int ex_parse_i64(const char *job, const char *flag, const char *s,
			       int64_t min, const char *what, int64_t *v)
{
	char *end;
	errno = 0;
	long long x = strtoll(s, &end, 10);
	if (errno || end == s || *end || x < min) {
		fprintf(stderr, "%s: %s: '%s' is not %s >= %lld\n", job, flag, s, what,
			(long long)min);
		return -1;
	}
	*v = x;
	return 0;
}

/*
 * Parse argv's options by the table `opts` with getopt_long (the job's
 * argv[0] is the job's file name; weir resets optind before the job runs).
 * 0 when every option parsed, optind at the first argument left; 2 after
 * printing why and usage(stderr, argv[0]).  --help exits 0.
 */
static inline int ex_parse_options(const char *job, const ex_opt *opts, int argc,
				   char **argv, void (*usage)(FILE *f, const char *self))
{
	struct option lo[EX_MAX_OPTS + 1] = { { 0 } };
	char shorts[2 * EX_MAX_OPTS + 1];
	int n = 0, ns = 0, c;

	for (; opts[n].name; n++) {
		if (n == EX_MAX_OPTS) {
			fprintf(stderr, "%s: more than %d options (EX_MAX_OPTS)\n", job,
				EX_MAX_OPTS);
			return 2;
		}
		bool arg = opts[n].kind != EX_FLAG && opts[n].kind != EX_HELP;
		lo[n] = (struct option){ opts[n].name, arg ? required_argument : no_argument,
					 NULL, opts[n].short_name ? opts[n].short_name : 256 + n };
		if (opts[n].short_name) {
			shorts[ns++] = (char)opts[n].short_name;
			if (arg)
				shorts[ns++] = ':';
		}
	}
	shorts[ns] = 0;
	while ((c = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
		int i = 0;
		while (i < n && lo[i].val != c)
			i++;
		if (i == n) { /* unknown option or missing value: getopt said so */
			usage(stderr, argv[0]);
			return 2;
		}
		const ex_opt *o = &opts[i];
		char flag[64];
		int bad = 0;
		snprintf(flag, sizeof(flag), "--%s", o->name);
		switch (o->kind) {
		case EX_STR:
			*(const char **)o->out = optarg;
			break;
		case EX_FLAG:
			*(bool *)o->out = true;
			break;
		case EX_RATE:
			bad = ex_parse_rate(job, flag, optarg, o->out);
			break;
		case EX_I64:
			bad = ex_parse_i64(job, flag, optarg, o->min, o->what, o->out);
			break;
		case EX_HELP:
			usage(stdout, argv[0]);
			exit(0);
		}
		if (o->seen)
			*o->seen = true;
		if (bad) {
			usage(stderr, argv[0]);
			return 2;
		}
	}
	return 0;
}

/* After ex_parse_options: true (after printing "<job>: unexpected argument
 * 'X'" and usage(stderr, argv[0])) if arguments are left. */
static inline bool ex_extra_args(const char *job, int argc, char **argv,
				 void (*usage)(FILE *f, const char *self))
{
	if (optind >= argc)
		return false;
	fprintf(stderr, "%s: unexpected argument '%s'\n", job, argv[optind]);
	usage(stderr, argv[0]);
	return true;
}

#endif
