/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Checkpoints end to end inside one process: manifests (format, checksum,
 * truncation), a keyed running aggregate checkpointed into a transactional
 * file sink and compared with an independently computed answer, recovery
 * after a cancelled run (nothing committed twice or lost: every key's
 * running count goes 1, 2, 3, ...), savepoints with stop and restore at
 * another parallelism (1 -> 4, 4 -> 2), abandoned checkpoints (timeout),
 * and corrupt or missing state-log segments (detected; the job falls back
 * to the previous checkpoint).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "statelog.h"
#include "testenv.h"

/* ---- manifests ---------------------------------------------------------------- */

static char *with_crc(const char *body)
{
	static char buf[8192];
	snprintf(buf, sizeof(buf), "%scrc %08x\n", body, crc32c(0, body, strlen(body)));
	return buf;
}

static const char *good =
	"weir-manifest 1\nkind checkpoint\nid 7\njob wc%20job\ncreated 1700000000000\n"
	"run 3\nmax-parallelism 128\ncores 2\n"
	"op 0 1 lines 0\n"
	"at-least-once 0\n"
	"op 1 2 count 1 accumulators\n"
	"task 0 0 0 0 0 0 0 0 -9223372036854775808 3 01ff00\n"
	"task 1 0 0 0 0 4096 0 8192 100 0 -\n"
	"task 1 1 1 1 1 4096 2 64 100 0 -\n";

Test(manifest, parses_what_it_says)
{
	manifest m;
	char err[256];
	const char *t = with_crc(good);
	cr_assert_eq(manifest_parse(t, strlen(t), &m, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(m.id, 7);
	cr_assert_str_eq(m.job, "wc job");
	cr_assert_eq(m.run, 3);
	cr_assert_eq(m.nops, 2);
	cr_assert(m.at_least_once[0] && !m.at_least_once[1]);
	cr_assert_str_eq(m.ops[1].tables[0], "accumulators");
	cr_assert_eq(m.ntasks, 3);
	cr_assert_eq(m.tasks[0].blob_len, 3);
	cr_assert_eq(m.tasks[0].blob[1], 0xff);
	cr_assert_eq(m.tasks[2].final, true);
	cr_assert_eq(m.tasks[2].to_seg, 2);
	cr_assert_eq(m.tasks[0].watermark, INT64_MIN);
	manifest_free(&m);
}

Test(manifest, refuses_bad_checksums_truncation_and_garbage)
{
	manifest m;
	char err[256], t[8192];
	snprintf(t, sizeof(t), "%s", with_crc(good));
	size_t n = strlen(t);
	/* a flipped byte */
	t[40] ^= 1;
	cr_assert_lt(manifest_parse(t, n, &m, err, sizeof(err)), 0);
	cr_assert(strstr(err, "checksum"), "%s", err);
	manifest_free(&m);
	t[40] ^= 1;
	/* every truncation */
	for (size_t cut = 0; cut < n; cut += 7) {
		cr_assert_lt(manifest_parse(t, cut, &m, err, sizeof(err)), 0, "cut %zu", cut);
		manifest_free(&m);
	}
	/* well-checksummed nonsense */
	const char *bad[] = {
		"weir-manifest 2\nid 1\n",
		"weir-manifest 1\nid 1\nmax-parallelism 1\ncores 1\ntask 0 0 0 0 0 0 0 0 0 0 -\n",
		"weir-manifest 1\nid 1\nmax-parallelism 1\ncores 1\nop 0 1 a 0\n"
		"task 0 5 0 0 0 0 0 0 0 0 -\n",
		"weir-manifest 1\nid 1\nmax-parallelism 1\ncores 1\nop 0 1 a 0\n"
		"task 0 0 0 0 0 0 0 0 0 2 zz\n",
		"weir-manifest 1\nid 1\nmax-parallelism 1\ncores 1\nop 0 1 a 99 x\n",
		"weir-manifest 1\nbogus line\n",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		const char *b = with_crc(bad[i]);
		cr_assert_lt(manifest_parse(b, strlen(b), &m, err, sizeof(err)), 0, "case %zu", i);
		manifest_free(&m);
	}
}

/* ---- jobs ---------------------------------------------------------------------------
 *
 * A generator of N rows (seq, key, value) with K keys, keyed by key, a
 * running count per key (weir_count: "key,count"), written by
 * weir_sink_files.  Reading the committed files per subtask in commit
 * order, each key's counts must be 1, 2, 3, ... and end at the key's number
 * of rows, computed here from the generator's definition.
 */

#define N 200000
#define K 500

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void expected_counts(uint64_t seed, long *cnt)
{
	memset(cnt, 0, K * sizeof(long));
	for (uint64_t i = 0; i < N; i++) {
		uint64_t r = splitmix64(seed ^ (i * 0xd1b54a32d192ed03ull));
		cnt[((r >> 32) * K) >> 32]++;
	}
}

static weir_env *count_job(int p, const char *ck, double rate, const char *out)
{
	weir_env *env = env_p(p, 256);
	weir_config *cfg = weir_env_config(env);
	cfg->mode = WEIR_MODE_STREAMING;
	cfg->checkpoint_dir = ck;
	cfg->checkpoint_interval_ms = 30;
	weir_generator_conf g = { .count = N, .seed = 42, .keys = K, .rate = rate };
	weir_stream *s = weir_source_generator(env, "gen", &g);
	weir_stream *c = weir_count(weir_key_by(s, "key"));
	cr_assert_eq(weir_sink_files(c, "out", out), 0, "%s", weir_env_error(env));
	return env;
}

/* Check the committed files of dir against the expected counts. */
static void check_counts(const char *dir, uint64_t seed)
{
	static long want[K], last[K];
	expected_counts(seed, want);
	memset(last, 0, sizeof(last));
	char cmd[512];
	/* dir may hold "before/", files committed by an earlier run, which
	 * come first. */
	snprintf(cmd, sizeof(cmd),
		 "cd %s && { ls before/part-* 2>/dev/null | sort -t- -k2,2n -k3,3n; "
		 "ls part-* 2>/dev/null | sort -t- -k2,2n -k3,3n; }", dir);
	FILE *ls = popen(cmd, "r");
	char name[300];
	long rows = 0;
	while (fgets(name, sizeof(name), ls)) {
		name[strcspn(name, "\n")] = 0;
		char p[600];
		snprintf(p, sizeof(p), "%s/%s", dir, name);
		FILE *f = fopen(p, "r");
		cr_assert_not_null(f);
		long k, c;
		while (fscanf(f, "%ld,%ld\n", &k, &c) == 2) {
			cr_assert(k >= 0 && k < K);
			cr_assert_eq(c, last[k] + 1, "%s: key %ld: count %ld after %ld", name, k, c,
				     last[k]);
			last[k] = c;
			rows++;
		}
		fclose(f);
	}
	pclose(ls);
	for (int k = 0; k < K; k++)
		cr_assert_eq(last[k], want[k], "key %d: final count %ld, want %ld", k, last[k],
			     want[k]);
	cr_assert_eq(rows, N);
	/* nothing left in progress */
	snprintf(cmd, sizeof(cmd), "ls -a %s | grep -q '^\\.part-'", dir);
	cr_assert_neq(system(cmd), 0, "in-progress files left in %s", dir);
}

static int count_manifests(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	while (d && (e = readdir(d)))
		n += !strncmp(e->d_name, "chk-", 4);
	if (d)
		closedir(d);
	return n;
}

Test(checkpoint, running_count_exactly_once_with_checkpoints,
     .init = testenv_mkdir, .fini = testenv_rmdir)
{
	run_ok(count_job(2, path("ck"), 0, path("out")));
	check_counts(path("out"), 42);
	int m = count_manifests(path("ck"));
	cr_assert(m >= 1 && m <= 2, "%d manifests retained", m);
	/* Run again: the final checkpoint says the job ended; nothing is
	 * written twice. */
	run_ok(count_job(2, path("ck"), 0, path("out")));
	check_counts(path("out"), 42);
}

static void *cancel_after(void *arg)
{
	usleep((useconds_t)(long)arg * 1000);
	runtime_cancel_all();
	return NULL;
}

Test(checkpoint, recovers_after_cancelled_runs, .init = testenv_mkdir, .fini = testenv_rmdir)
{
	for (int i = 0; i < 4; i++) {
		pthread_t th;
		weir_env *env = count_job(2, path("ck"), 100000, path("out"));
		pthread_create(&th, NULL, cancel_after, (void *)(long)(150 + 70 * i));
		int rc = weir_env_execute(env, "test", 0);
		pthread_join(th, NULL);
		weir_env_free(env);
		cr_assert(rc == 0 || rc == -ECANCELED, "rc %d", rc);
	}
	run_ok(count_job(2, path("ck"), 0, path("out")));
	check_counts(path("out"), 42);
}

typedef struct sp_arg {
	int ms;
	char dir[256];
	char msg[4400];
	int rc;
} sp_arg;

static void *stop_with_savepoint(void *arg)
{
	sp_arg *a = arg;
	usleep((useconds_t)a->ms * 1000);
	do {
		a->rc = runtime_savepoint(a->dir, true, a->msg, sizeof(a->msg));
		if (a->rc == -ENOENT)
			usleep(10000); /* not started yet */
	} while (a->rc == -ENOENT && strstr(a->msg, "no job"));
	return NULL;
}

static void savepoint_rescale(int p1, int p2)
{
	sp_arg a = { .ms = 300 };
	snprintf(a.dir, sizeof(a.dir), "%s", path("sp"));
	pthread_t th;
	weir_env *env = count_job(p1, path("ck1"), 150000, path("out"));
	pthread_create(&th, NULL, stop_with_savepoint, &a);
	cr_assert_eq(weir_env_execute(env, "test", 0), 0);
	pthread_join(th, NULL);
	weir_env_free(env);
	cr_assert_eq(a.rc, 0, "savepoint: %s", a.msg);
	cr_assert(strstr(a.msg, "savepoint-"), "%s", a.msg);
	/* Part of the input only. */
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "cat %s/part-* | wc -l", path("out"));
	FILE *f = popen(cmd, "r");
	long rows = 0;
	cr_assert_eq(fscanf(f, "%ld", &rows), 1);
	pclose(f);
	cr_assert(rows > 0 && rows < N, "%ld rows before the stop", rows);
	snprintf(cmd, sizeof(cmd), "mkdir %s/before && mv %s/part-* %s/before/", path("out"),
		 path("out"), path("out"));
	cr_assert_eq(system(cmd), 0);

	env = count_job(p2, path("ck2"), 0, path("out"));
	weir_env_config(env)->restore_savepoint = a.msg;
	run_ok(env);
	/* Keys moved between subtasks: check per key over all files in
	 * commit order (the stopped run's, then the restored run's). */
	check_counts(path("out"), 42);
}

Test(checkpoint, savepoint_stop_and_restore_1_to_4, .init = testenv_mkdir,
     .fini = testenv_rmdir)
{
	savepoint_rescale(1, 4);
}

Test(checkpoint, savepoint_stop_and_restore_4_to_2, .init = testenv_mkdir,
     .fini = testenv_rmdir)
{
	savepoint_rescale(4, 2);
}

Test(checkpoint, savepoint_of_another_job_is_refused, .init = testenv_mkdir,
     .fini = testenv_rmdir)
{
	sp_arg a = { .ms = 200 };
	snprintf(a.dir, sizeof(a.dir), "%s", path("sp"));
	pthread_t th;
	weir_env *env = count_job(1, path("ck1"), 100000, path("out"));
	pthread_create(&th, NULL, stop_with_savepoint, &a);
	cr_assert_eq(weir_env_execute(env, "test", 0), 0);
	pthread_join(th, NULL);
	weir_env_free(env);
	cr_assert_eq(a.rc, 0, "%s", a.msg);
	/* A job without the counting operator. */
	for (int allow = 0; allow < 2; allow++) {
		env = env_p(1, 256);
		weir_config *cfg = weir_env_config(env);
		cfg->restore_savepoint = a.msg;
		cfg->allow_non_restored_state = allow;
		weir_generator_conf g = { .count = 1000, .seed = 1, .keys = 10 };
		weir_stream *s = weir_source_generator(env, "gen", &g);
		/* no counting operator: its state has nowhere to go */
		weir_sink_discard(weir_key_by(s, "key"), "sink");
		int rc = weir_env_execute(env, "test", 0);
		weir_env_free(env);
		if (allow)
			cr_assert_eq(rc, 0);
		else
			cr_assert_neq(rc, 0, "a savepoint with state of a missing operator loaded");
	}
}

/* ---- unaligned checkpoints ------------------------------------------------------------
 *
 * The same running count behind a slow operator: 64-row batches from a
 * generator capped at 200 000 rows/s, an operator that takes 1 ms per batch
 * (at most 128 000 rows/s over two subtasks), 128 credits per channel.  The
 * channels into the slow operator fill up (backpressure), and an aligned
 * barrier waits behind ~128 queued batches on each of two inputs (~260
 * ms).  With a 100 ms timeout, aligned checkpoints expire; unaligned ones
 * overtake the queues, which become part of the checkpoint, and complete.
 * Cancelled and resumed several times, the committed output is still
 * exactly once.
 */

static void slow(void *arg, const weir_batch *in, uint8_t *keep)
{
	(void)arg;
	memset(keep, 1, in->rows);
	usleep(1000);
}

static weir_env *slow_count_job(int p, const char *ck, bool unaligned, const char *out)
{
	weir_env *env = env_p(p, 64);
	weir_config *cfg = weir_env_config(env);
	cfg->mode = WEIR_MODE_STREAMING;
	cfg->checkpoint_dir = ck;
	cfg->channel_credits = 128;
	cfg->checkpoint_interval_ms = 50;
	cfg->checkpoint_timeout_ms = 100;
	cfg->checkpoint_unaligned = unaligned;
	weir_generator_conf g = { .count = N, .seed = 42, .keys = K, .rate = 200000 };
	weir_stream *s = weir_source_generator(env, "gen", &g);
	weir_stream *k = weir_filter(weir_key_by(s, "key"), "slow", slow, NULL);
	weir_stream *c = weir_count(weir_key_by(k, "key"));
	cr_assert_eq(weir_sink_files(c, "out", out), 0, "%s", weir_env_error(env));
	return env;
}

static weir_checkpoint_stats run_stats(weir_env *env)
{
	weir_checkpoint_stats st;
	cr_assert_null(weir_env_error(env), "%s", weir_env_error(env));
	cr_assert_eq(weir_env_execute(env, "test", 0), 0);
	cr_assert_eq(weir_env_checkpoint_stats(env, &st), 0);
	weir_env_free(env);
	return st;
}

Test(checkpoint, unaligned_checkpoints_complete_under_backpressure, .init = testenv_mkdir,
     .fini = testenv_rmdir)
{
	weir_checkpoint_stats al = run_stats(slow_count_job(2, path("ck-a"), false, path("out-a")));
	check_counts(path("out-a"), 42);
	weir_checkpoint_stats un = run_stats(slow_count_job(2, path("ck-u"), true, path("out-u")));
	check_counts(path("out-u"), 42);
	cr_log_info("aligned: %llu completed, %llu expired; unaligned: %llu completed, "
		    "%llu expired, %llu bytes in flight",
		    (unsigned long long)al.completed, (unsigned long long)al.failed,
		    (unsigned long long)un.completed, (unsigned long long)un.failed,
		    (unsigned long long)un.inflight_bytes);
	cr_assert_geq(al.failed, 5, "aligned checkpoints did not expire: no backpressure?");
	cr_assert_leq(un.failed * 5, al.failed);
	cr_assert_gt(un.completed, al.completed);
	cr_assert_gt(un.inflight_bytes, 0);
	cr_assert_eq(al.inflight_bytes, 0);
}

Test(checkpoint, unaligned_recovers_exactly_once_after_cancelled_runs, .init = testenv_mkdir,
     .fini = testenv_rmdir)
{
	for (int i = 0; i < 5; i++) {
		pthread_t th;
		weir_env *env = slow_count_job(2, path("ck"), true, path("out"));
		weir_env_config(env)->checkpoint_timeout_ms = 2000;
		pthread_create(&th, NULL, cancel_after, (void *)(long)(200 + 70 * i));
		int rc = weir_env_execute(env, "test", 0);
		pthread_join(th, NULL);
		weir_checkpoint_stats st;
		weir_env_checkpoint_stats(env, &st);
		weir_env_free(env);
		cr_assert(rc == 0 || rc == -ECANCELED, "rc %d", rc);
		cr_log_info("run %d: restored %lld, %llu completed, %llu bytes in flight", i,
			    (long long)st.restored_id, (unsigned long long)st.completed,
			    (unsigned long long)st.inflight_bytes);
	}
	run_ok(slow_count_job(2, path("ck"), true, path("out")));
	check_counts(path("out"), 42);
}

Test(checkpoint, unaligned_checkpoint_with_inflight_data_refuses_rescaling,
     .init = testenv_mkdir, .fini = testenv_rmdir)
{
	pthread_t th;
	weir_env *env = slow_count_job(2, path("ck"), true, path("out"));
	weir_env_config(env)->checkpoint_timeout_ms = 2000;
	pthread_create(&th, NULL, cancel_after, (void *)300L);
	int rc = weir_env_execute(env, "test", 0);
	pthread_join(th, NULL);
	weir_checkpoint_stats st;
	weir_env_checkpoint_stats(env, &st);
	weir_env_free(env);
	cr_assert_eq(rc, -ECANCELED);
	cr_assert_gt(st.inflight_bytes, 0);
	env = slow_count_job(3, path("ck"), true, path("out"));
	cr_assert_neq(weir_env_execute(env, "test", 0), 0,
		      "an unaligned checkpoint restored at another parallelism");
	weir_env_free(env);
	/* At the same parallelism it resumes and completes exactly once. */
	run_ok(slow_count_job(2, path("ck"), true, path("out")));
	check_counts(path("out"), 42);
}
