/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers shared by the Criterion suites that run jobs on the real runtime:
 * a temporary directory per test, paths in it, an environment of a given
 * parallelism and batch size, running a job to success, lines of output
 * compared as sorted lists, and stopping a running job with a savepoint.
 */
#ifndef WEIR_TESTENV_H
#define WEIR_TESTENV_H

#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* ---- stopping a running job with a savepoint ---------------------------------------- */

typedef struct sp_arg {
	int ms;
	char dir[256];
	char msg[4400];
	int rc;
} sp_arg;

/* A thread: after a->ms ms, take a savepoint into a->dir and stop the job
 * (retrying while the job has not started yet). */
static inline void *stop_with_savepoint(void *arg)
{
	sp_arg *a = arg;
	usleep((useconds_t)a->ms * 1000);
	do {
		a->rc = weir_savepoint(a->dir, true, a->msg, sizeof(a->msg));
		if (a->rc == -ENOENT)
			usleep(10000); /* not started yet */
	} while (a->rc == -ENOENT && strstr(a->msg, "no job"));
	return NULL;
}

#endif
