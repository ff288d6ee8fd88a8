/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers shared by the Criterion suites that run jobs on the real runtime:
 * a temporary directory per test, paths in it, an environment of a given
 * parallelism and batch size, and running a job to success.
 */
#ifndef WEIR_TESTENV_H
#define WEIR_TESTENV_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include <weir/weir.h>

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

#endif
