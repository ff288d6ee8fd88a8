/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers shared by the Criterion suites that run jobs on the real runtime:
 * a temporary directory per test, paths in it, an environment of a given
 * parallelism and batch size, running a job to success, lines of output
 * compared as sorted lists, waiting for an event with a deadline, and
 * stopping or cancelling a running job once something happened in it.
 *
 * Timing: a test never sleeps a fixed time and then assumes something has
 * happened (a checkpoint, committed output, a running job): on a loaded
 * machine, or in a sanitizer build (~3x slower), it may not have.  It polls
 * for the event with poll_until and a generous deadline instead.
 */
#ifndef WEIR_TESTENV_H
#define WEIR_TESTENV_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <weir/weir.h>

#include "core.h"

static char testenv_dir[64];

static inline void testenv_mkdir(void)
{
	snprintf(testenv_dir, sizeof(testenv_dir), "/tmp/weir-unit.XXXXXX");
	cr_assert_not_null(mkdtemp(testenv_dir));
}

static inline void testenv_rmdir(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", testenv_dir);
	cr_assert_eq(system(cmd), 0);
}

/* A file in the test's directory (eight results live at once). */
static inline const char *path(const char *name)
{
	static char p[8][128];
	static int k;
	k = (k + 1) % 8;
	snprintf(p[k], sizeof(p[k]), "%s/%s", testenv_dir, name);
	return p[k];
}

/* An unpinned environment of parallelism p and batch size (streaming mode
 * when the suite defines TESTENV_STREAMING). */
static inline weir_env *env_p(int p, uint32_t batch_rows)
{
	weir_env *env = weir_env_new();
	weir_env_config(env)->parallelism = p;
	weir_env_config(env)->pin = false;
	weir_env_config(env)->batch_rows = batch_rows;
#ifdef TESTENV_STREAMING
	weir_env_config(env)->mode = WEIR_MODE_STREAMING;
#endif
	return env;
}

static inline void run_ok(weir_env *env)
{
	cr_assert_null(weir_env_error(env), "build error: %s", weir_env_error(env));
	cr_assert_eq(weir_env_execute(env, "test", 0), 0);
	weir_env_free(env);
}

/* ---- lines of text, compared as sorted lists --------------------------------------- */

/* For the suites that define TESTENV_LINES before including this (the
 * name `lines` is a common local variable elsewhere). */
#ifdef TESTENV_LINES

typedef struct lines {
	char **v;
	size_t n, cap;
} lines;

static inline void lines_add(lines *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void lines_add(lines *l, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 1024;
		l->v = realloc(l->v, l->cap * sizeof(char *));
		cr_assert_not_null(l->v);
	}
	l->v[l->n++] = strdup(buf);
}

static inline void lines_read(lines *l, const char *file)
{
	char buf[1024];
	FILE *f = fopen(file, "r");
	cr_assert_not_null(f, "no output file %s", file);
	while (fgets(buf, sizeof(buf), f)) {
		buf[strcspn(buf, "\n")] = 0;
		lines_add(l, "%s", buf);
	}
	fclose(f);
}

static inline int lines_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static inline void lines_sort(lines *l)
{
	if (l->n)
		qsort(l->v, l->n, sizeof(char *), lines_cmp);
}

static inline void lines_free(lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	*l = (lines){ 0 };
}

static inline void lines_expect(lines *got, lines *exp, const char *what)
{
	lines_sort(got);
	lines_sort(exp);
	cr_assert_eq(got->n, exp->n, "%s: %zu lines, expected %zu", what, got->n, exp->n);
	for (size_t i = 0; i < got->n; i++)
		cr_assert_str_eq(got->v[i], exp->v[i], "%s: line %zu", what, i);
}

static inline void expect_file_lines(const char *file, lines *exp, const char *what)
{
	lines got = { 0 };
	lines_read(&got, file);
	lines_expect(&got, exp, what);
	lines_free(&got);
}
#endif /* TESTENV_LINES */

/* ---- waiting for events ------------------------------------------------------------ */

/* How long a test waits for something the mechanism guarantees will
 * happen: far longer than it takes on any machine, so that reaching it
 * means a bug, not a slow run (well inside meson's 300 s per suite). */
#define TESTENV_DEADLINE_MS 60000

static inline int64_t testenv_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Poll cond(arg) every 2 ms until it holds (true) or timeout_ms passed
 * (false). */
static inline bool poll_until(bool (*cond)(void *), void *arg, int timeout_ms)
{
	int64_t end = testenv_now_ms() + timeout_ms;
	for (;;) {
		if (cond(arg))
			return true;
		if (testenv_now_ms() >= end)
			return false;
		usleep(2000);
	}
}

/* Does directory `dir` hold a file whose name starts with `prefix` and
 * ends with `suffix`? */
static inline bool dir_has(const char *dir, const char *prefix, const char *suffix)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	bool found = false;
	size_t ls = strlen(suffix);
	while (d && !found && (e = readdir(d))) {
		size_t n = strlen(e->d_name);
		found = !strncmp(e->d_name, prefix, strlen(prefix)) && n >= ls &&
			!strcmp(e->d_name + n - ls, suffix);
	}
	if (d)
		closedir(d);
	return found;
}

/* Conditions for poll_until, on a directory: a checkpoint completed (its
 * manifest is written) there; a files sink committed output there. */
static inline bool has_checkpoint(void *dir)
{
	return dir_has(dir, "chk-", ".manifest");
}

static inline bool has_committed_output(void *dir)
{
	return dir_has(dir, "part-", "");
}

/* ---- stopping a running job with a savepoint ---------------------------------------- */

typedef struct sp_arg {
	/* Stop once ready(ready_arg) holds (e.g. has_committed_output on
	 * the job's output: the stop then comes after data went through),
	 * polled up to TESTENV_DEADLINE_MS; NULL: at once. */
	bool (*ready)(void *);
	void *ready_arg;
	char dir[256];
	char msg[4400];
	int rc;
} sp_arg;

/* A thread: once a->ready holds, take a savepoint into a->dir and stop
 * the job (retrying while the job has not started yet).  a->rc is
 * -ETIMEDOUT if a->ready did not hold in time or the job never ran. */
static inline void *stop_with_savepoint(void *arg)
{
	sp_arg *a = arg;
	int64_t end = testenv_now_ms() + TESTENV_DEADLINE_MS;
	if (a->ready && !poll_until(a->ready, a->ready_arg, TESTENV_DEADLINE_MS)) {
		a->rc = -ETIMEDOUT;
		snprintf(a->msg, sizeof(a->msg), "no savepoint: the job's condition did not "
			 "hold within %d ms", TESTENV_DEADLINE_MS);
		return NULL;
	}
	do {
		a->rc = weir_savepoint(a->dir, true, a->msg, sizeof(a->msg));
		if (a->rc == -ENOENT)
			usleep(2000); /* not started yet */
	} while (a->rc == -ENOENT && strstr(a->msg, "no job") && testenv_now_ms() < end);
	return NULL;
}

/* ---- cancelling a running job ----------------------------------------------------- */

typedef struct cancel_arg {
	bool (*ready)(void *); /* cancel once this holds (NULL: at once) */
	void *ready_arg;
	int64_t ms;            /* and at least this long after the start */
	bool timed_out;        /* ready did not hold within the deadline */
} cancel_arg;

/* A thread: wait for a->ms, then for a->ready (polled up to the deadline),
 * then cancel the running job.  A minimum time only spreads cancellations
 * over a run; what a test relies on is in a->ready. */
static inline void *cancel_when(void *arg)
{
	cancel_arg *a = arg;
	if (a->ms)
		usleep((useconds_t)a->ms * 1000);
	if (a->ready && !poll_until(a->ready, a->ready_arg, TESTENV_DEADLINE_MS))
		a->timed_out = true;
	weir_cancel_all();
	return NULL;
}

#endif
