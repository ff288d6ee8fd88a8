/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Checkpoints end to end inside one process: manifests (format, checksum,
 * truncation), a keyed running aggregate checkpointed into a transactional
 * file sink and compared with an independently computed answer, recovery
 * after a cancelled run (nothing committed twice or lost: every key's
 * running count goes 1, 2, 3, ...), savepoints with stop and restore at
 * another parallelism (1 -> 4, 4 -> 2), abandoned checkpoints (timeout),
 * and corrupt or missing state-log segments (detected; the job falls back
 * to the previous checkpoint).  Dirty tracking (PUTs deferred to the
 * barrier): tables driven against a real log and replayed after every
 * flush, and a job restored at a checkpoint and at its end compared with
 * the state its operator saw at those barriers.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "ops.h"
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

Test(checkpoint, recovers_after_cancelled_runs, .init = testenv_mkdir, .fini = testenv_rmdir)
{
	char ck[128];
	snprintf(ck, sizeof(ck), "%s", path("ck"));
	for (int i = 0; i < 4; i++) {
		pthread_t th;
		weir_env *env = count_job(2, ck, 100000, path("out"));
		/* at the earliest then, and once a checkpoint is complete: a run
		 * cancelled before any leaves in-progress files that the next,
		 * starting from the beginning, does not clean up */
		cancel_arg ca = { .ms = 150 + 70 * i, .ready = has_checkpoint, .ready_arg = ck };
		pthread_create(&th, NULL, cancel_when, &ca);
		int rc = weir_env_execute(env, "test", 0);
		pthread_join(th, NULL);
		weir_env_free(env);
		cr_assert(rc == 0 || rc == -ECANCELED, "rc %d", rc);
	}
	run_ok(count_job(2, path("ck"), 0, path("out")));
	check_counts(path("out"), 42);
}

static void savepoint_rescale(int p1, int p2)
{
	/* Stop once a checkpoint committed output: rows went through.  The
	 * rate cap keeps the input going for 1.3 s at least: the stop comes
	 * before its end unless a checkpoint takes that long. */
	char out[128];
	snprintf(out, sizeof(out), "%s", path("out"));
	sp_arg a = { .ready = has_committed_output, .ready_arg = out };
	snprintf(a.dir, sizeof(a.dir), "%s", path("sp"));
	pthread_t th;
	weir_env *env = count_job(p1, path("ck1"), 150000, out);
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
	char out[128];
	snprintf(out, sizeof(out), "%s", path("out"));
	sp_arg a = { .ready = has_committed_output, .ready_arg = out };
	snprintf(a.dir, sizeof(a.dir), "%s", path("sp"));
	pthread_t th;
	weir_env *env = count_job(1, path("ck1"), 100000, out);
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
 * The same running count behind a slow operator: 64-row batches from an
 * uncapped generator, an operator that sleeps D per batch, 128 credits per
 * channel.  The backpressure is forced, not a matter of speeds: the job runs
 * on four reactors, so the two generator subtasks and the two slow subtasks
 * each have a thread of their own (round-robin placement), and a generator,
 * bounded by nothing but credits, refills a channel within microseconds of
 * a credit coming back while the consumer sleeps D per batch.  (On two
 * reactors a generator shared its thread with a slow subtask, which took up
 * to 16 batches per turn to the generator's one: how full the queues got
 * was a race, and aligned checkpoints sometimes did not expire.)  So the
 * channels into the slow operator stay full while the generator runs, and
 * an aligned barrier waits behind ~128 batches on each of its two inputs:
 * ~256 sleeps of at least D.  The timeout is derived from that: with D = 3
 * ms the wait is at least 768 ms, over 2.5 times the 300 ms timeout on any
 * machine (a loaded one only sleeps longer), so aligned checkpoints expire,
 * while unaligned ones, which overtake the queues (these become part of the
 * checkpoint), have 300 ms to log ~1 MB and complete.  The input takes at
 * least 200 000 / 128 rows per 3 ms = 4.7 s to go through: ~14 expiries,
 * whatever the speed (both scale with D).  Cancelled and resumed several
 * times, the committed output is still exactly once (D = 1 ms there).
 */

/* The generator's default rows, counted as they are made (gen_filled). */
static _Atomic long gen_filled;

static void count_fill(void *arg, uint64_t seed, uint64_t first, uint32_t n, weir_batch *out)
{
	int64_t *seq = weir_col_i64(out, 0), *key = weir_col_i64(out, 1),
		*val = weir_col_i64(out, 2);
	(void)arg;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t id = first + i, r = splitmix64(seed ^ (id * 0xd1b54a32d192ed03ull));
		seq[i] = (int64_t)id;
		key[i] = (int64_t)(((r >> 32) * K) >> 32);
		val[i] = (int64_t)(((r & 0xffffffffu) * 1000) >> 32);
		out->ts[i] = (int64_t)id;
	}
	atomic_fetch_add(&gen_filled, n);
}

/* A gate that keeps the job from ending before the test cancels it: while
 * slow_hold is set, the slow operator stops (sleeping, without returning)
 * once 3/4 of the input went through.  The reactors it stops take no more
 * checkpoints. */
static _Atomic bool slow_hold;
static _Atomic long slow_rows;
static useconds_t slow_us = 1000; /* per batch */

/* Slow while the generator runs: once it made its last row the queues
 * drain at full speed.  (After a source ended, its channels carry no
 * more announcements, so an unaligned checkpoint there waits for them to
 * drain like an aligned one: ~256 ms of sleeps behind full queues, longer
 * than the timeout, a share of expiries that a loaded machine made larger
 * than the test allows.)  A restored run makes fewer than N rows and stays
 * slow to its end. */
static void slow(void *arg, const weir_batch *in, uint8_t *keep)
{
	(void)arg;
	memset(keep, 1, in->rows);
	if (atomic_load(&gen_filled) < N)
		usleep(slow_us);
	if (atomic_fetch_add(&slow_rows, in->rows) + in->rows >= N / 4 * 3)
		while (atomic_load(&slow_hold))
			usleep(1000);
}

/* cancel_when, then let the stopped slow operator go (to see the cancel). */
static void *cancel_and_open_gate(void *arg)
{
	cancel_when(arg);
	atomic_store(&slow_hold, false);
	return NULL;
}

/* Condition: a checkpoint that holds in-flight data is complete in dir. */
static bool has_inflight_checkpoint(void *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	bool found = false;
	while (d && !found && (e = readdir(d))) {
		if (strncmp(e->d_name, "chk-", 4) || !strstr(e->d_name, ".manifest"))
			continue;
		char p[512], line[1024];
		snprintf(p, sizeof(p), "%s/%s", (const char *)dir, e->d_name);
		FILE *f = fopen(p, "r");
		if (!f)
			continue; /* deleted since (retention) */
		/* a long line is read in pieces; only "inflight" lines matter */
		while (!found && fgets(line, sizeof(line), f))
			found = !strncmp(line, "inflight ", 9);
		fclose(f);
	}
	if (d)
		closedir(d);
	return found;
}

static weir_env *slow_count_job(int p, const char *ck, bool unaligned, const char *out)
{
	weir_env *env = env_p(p, 64);
	weir_config *cfg = weir_env_config(env);
	cfg->mode = WEIR_MODE_STREAMING;
	cfg->checkpoint_dir = ck;
	cfg->cores = 4; /* generators and slow subtasks on threads of their own */
	cfg->channel_credits = 128;
	cfg->checkpoint_interval_ms = 50;
	cfg->checkpoint_timeout_ms = 300;
	cfg->checkpoint_unaligned = unaligned;
	weir_generator_conf g = { .count = N, .seed = 42, .fill = count_fill,
				  .schema = weir_schema_parse(env, "seq:i64,key:i64,value:i64") };
	atomic_store(&gen_filled, 0);
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
	slow_us = 3000; /* the timeout's 300 ms * 2.56 / 256 batches: see above */
	weir_checkpoint_stats al = run_stats(slow_count_job(2, path("ck-a"), false, path("out-a")));
	check_counts(path("out-a"), 42);
	weir_checkpoint_stats un = run_stats(slow_count_job(2, path("ck-u"), true, path("out-u")));
	check_counts(path("out-u"), 42);
	slow_us = 1000;
	cr_log_info("aligned: %llu completed, %llu expired; unaligned: %llu completed, "
		    "%llu expired, %llu bytes in flight, longest %.0f ms",
		    (unsigned long long)al.completed, (unsigned long long)al.failed,
		    (unsigned long long)un.completed, (unsigned long long)un.failed,
		    (unsigned long long)un.inflight_bytes, un.max_ms);
	cr_assert_geq(al.failed, 5, "aligned checkpoints did not expire: no backpressure?");
	cr_assert_leq(un.failed * 5, al.failed);
	cr_assert_gt(un.completed, al.completed);
	cr_assert_gt(un.inflight_bytes, 0);
	cr_assert_eq(al.inflight_bytes, 0);
}

Test(checkpoint, unaligned_recovers_exactly_once_after_cancelled_runs, .init = testenv_mkdir,
     .fini = testenv_rmdir)
{
	char ck[128];
	snprintf(ck, sizeof(ck), "%s", path("ck"));
	for (int i = 0; i < 5; i++) {
		pthread_t th;
		weir_env *env = slow_count_job(2, ck, true, path("out"));
		weir_env_config(env)->checkpoint_timeout_ms = 2000;
		/* at the earliest then, and once a checkpoint is complete: a run
		 * cancelled before any leaves in-progress files that the next,
		 * starting from the beginning, does not clean up */
		cancel_arg ca = { .ms = 200 + 70 * i, .ready = has_checkpoint, .ready_arg = ck };
		pthread_create(&th, NULL, cancel_when, &ca);
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
	/* Cancelled once a checkpoint holding in-flight data is complete; the
	 * gate keeps the job running until then. */
	pthread_t th;
	char ck[128];
	snprintf(ck, sizeof(ck), "%s", path("ck"));
	cancel_arg ca = { .ready = has_inflight_checkpoint, .ready_arg = ck };
	atomic_store(&slow_rows, 0);
	atomic_store(&slow_hold, true);
	weir_env *env = slow_count_job(2, ck, true, path("out"));
	weir_env_config(env)->checkpoint_timeout_ms = 2000;
	pthread_create(&th, NULL, cancel_and_open_gate, &ca);
	int rc = weir_env_execute(env, "test", 0);
	pthread_join(th, NULL);
	weir_checkpoint_stats st;
	weir_env_checkpoint_stats(env, &st);
	weir_env_free(env);
	cr_assert(!ca.timed_out, "no checkpoint with in-flight data within %d ms",
		  TESTENV_DEADLINE_MS);
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

/* ---- dirty tracking: deferred PUTs replay to the table ---------------------------
 *
 * Two tables (plain, and with a TTL on a fake clock) registered with a task
 * of their own and bound to a real state log take random upserts, writes
 * through kv_get, deletes (backward shifts move entries, and their dirty
 * bits), growth across four key ranges, clock jumps that expire entries
 * (the upserts' sweep removes them) and kv_clear_all, with kv_flush_dirty
 * and a mark at random points as a barrier would.  After every flush the
 * log read back and replayed up to the mark must give, per key, the value
 * the model says was logged: after the flush, the last value written to
 * every key written since the previous one; a flush must log exactly the
 * keys written since (the plain table; the TTL table may have logged a
 * swept one earlier); and the live entries must be the model's.
 */

#define DK_MAX 32000          /* keys of the largest range */
#define DK_NS 3               /* namespaces per key */
#define DK_SLOTS (DK_MAX * DK_NS)
#define DK_TTL 200
#define DK_VSIZE 16           /* [sum i64][key ^ ns check i64] */

typedef struct dk_model {
	/* the table: value and last write; present = written and not deleted
	 * or cleared (for the TTL table, live also needs a recent write) */
	bool present[DK_SLOTS];
	int64_t val[DK_SLOTS], written[DK_SLOTS];
	bool pending[DK_SLOTS];    /* written since the last flush */
	/* what the log holds; known = false when a kv_delete of an expired
	 * entry may or may not have found it (swept or not) */
	bool logged[DK_SLOTS], known[DK_SLOTS];
	int64_t lval[DK_SLOTS];
	/* the log replayed so far */
	bool rp[DK_SLOTS];
	int64_t rval[DK_SLOTS];
} dk_model;

static int64_t dk_now;
static int64_t dk_clock(void)
{
	return dk_now;
}

static uint64_t dk_rng = 0x2545f4914f6cdd1dull;
static uint64_t dk_rnd(void)
{
	dk_rng ^= dk_rng << 13;
	dk_rng ^= dk_rng >> 7;
	dk_rng ^= dk_rng << 17;
	return dk_rng;
}

static bool dk_live(const dk_model *m, bool ttl, int i)
{
	return m->present[i] && (!ttl || dk_now - m->written[i] < DK_TTL);
}

/* Apply the entries of the log in [a, b) to the replay models (tab 0:
 * plain, 1: TTL), as recovery would. */
static void dk_replay(slog_pos a, slog_pos b, dk_model *ms[2])
{
	slog_reader *rd;
	char err[512];
	const void *fp;
	size_t fn;
	int rc;
	cr_assert_eq(slog_reader_open(testenv_dir, "core-0", a, b, &rd, err, sizeof(err)), 0,
		     "%s", err);
	while ((rc = slog_next(rd, &fp, &fn, err, sizeof(err))) > 0) {
		const char *p = fp, *end = p + fn;
		while (p < end) {
			uint8_t kind = (uint8_t)p[0], tab = (uint8_t)p[1];
			uint32_t klen, vlen;
			int64_t ns, key, v[2];
			memcpy(&klen, p + 8, 4);
			memcpy(&vlen, p + 12, 4);
			memcpy(&ns, p + 24, 8);
			cr_assert(klen == 8 && tab < 2 && ns >= 0 && ns < DK_NS);
			memcpy(&key, p + ST_ENTRY_HDR, 8);
			cr_assert(key >= 0 && key < DK_MAX);
			int i = (int)(key * DK_NS + ns);
			dk_model *m = ms[tab];
			if (kind == ST_PUT) {
				cr_assert_eq(vlen, DK_VSIZE);
				memcpy(v, p + ST_ENTRY_HDR + 8, DK_VSIZE);
				cr_assert_eq(v[1], key ^ ns, "PUT of another entry's value");
				m->rp[i] = true;
				m->rval[i] = v[0];
			} else {
				cr_assert_eq(kind, ST_DEL, "kind %d", kind);
				m->rp[i] = false;
			}
			p += ST_ENTRY_HDR + klen + vlen;
		}
	}
	cr_assert_eq(rc, 0, "%s", err);
	slog_reader_close(rd);
}

typedef struct dk_live_ctx {
	const dk_model *m;
	bool ttl;
	size_t n;
} dk_live_ctx;

static int dk_check_entry(void *arg, skey k, int64_t ns, void *value)
{
	dk_live_ctx *c = arg;
	int64_t *v = value;
	int i = (int)((int64_t)k.v * DK_NS + ns);
	cr_assert(dk_live(c->m, c->ttl, i), "entry %d in the table, not in the model", i);
	cr_assert_eq(v[0], c->m->val[i]);
	c->n++;
	return 0;
}

/* A barrier: flush both tables, mark, replay, compare. */
static void dk_barrier(slog *log, kvtab *tabs[2], dk_model *ms[2], slog_pos *mark)
{
	for (int tb = 0; tb < 2; tb++) {
		dk_model *m = ms[tb];
		size_t want = 0;
		for (int i = 0; i < DK_SLOTS; i++)
			if (m->pending[i]) {
				/* the last value written, even if it expired
				 * since: a sweep logs it before removing it */
				m->logged[i] = m->known[i] = true;
				m->lval[i] = m->val[i];
				m->pending[i] = false;
				want++;
			}
		size_t got = kv_flush_dirty(tabs[tb]);
		if (tb == 0)
			cr_assert_eq(got, want, "flushed %zu entries, %zu changed", got, want);
		else
			cr_assert_leq(got, want);
		cr_assert_eq(kv_flush_dirty(tabs[tb]), 0, "a second flush logged again");
		/* the live entries are the model's */
		dk_live_ctx c = { m, tb == 1, 0 };
		size_t live = 0;
		kv_foreach(tabs[tb], dk_check_entry, &c);
		for (int i = 0; i < DK_SLOTS; i++)
			live += dk_live(m, tb == 1, i);
		cr_assert_eq(c.n, live);
	}
	slog_pos to = slog_mark(log);
	cr_assert_eq(slog_wait(log, slog_sync(log)), 0);
	dk_replay(*mark, to, ms);
	*mark = to;
	for (int tb = 0; tb < 2; tb++)
		for (int i = 0; i < DK_SLOTS; i++) {
			const dk_model *m = ms[tb];
			if (!m->known[i])
				continue;
			cr_assert_eq(m->rp[i], m->logged[i], "table %d entry %d: %s after replay",
				     tb, i, m->rp[i] ? "present" : "absent");
			if (m->logged[i])
				cr_assert_eq(m->rval[i], m->lval[i],
					     "table %d entry %d: replayed %lld, logged %lld", tb, i,
					     (long long)m->rval[i], (long long)m->lval[i]);
		}
}

Test(dirty, deferred_puts_replay_to_the_table, .init = testenv_mkdir, .fini = testenv_rmdir,
     .timeout = 240)
{
	static dk_model models[2];
	dk_model *ms[2] = { &models[0], &models[1] };
	memset(models, 0, sizeof(models));
	for (int tb = 0; tb < 2; tb++)
		for (int i = 0; i < DK_SLOTS; i++)
			ms[tb]->known[i] = true;
	dk_now = 1000;

	task *t = calloc(1, sizeof(*t));
	kdict *d = kdict_new();
	kvtab_conf pc = { .key_type = WEIR_I64, .vsize = DK_VSIZE };
	kvtab_conf tc = { .key_type = WEIR_I64, .vsize = DK_VSIZE, .ttl_ms = DK_TTL };
	kvtab *tabs[2] = { kv_new(&pc, d), kv_new(&tc, d) };
	kv_set_clock(tabs[1], dk_clock);
	cr_assert_eq(state_register_table(t, "plain", tabs[0]), 0);
	cr_assert_eq(state_register_table(t, "ttl", tabs[1]), 0);
	slog_conf sc = { .dir = testenv_dir, .prefix = "core-0", .run = 1, .core = 0,
			 .buf_size = 64 << 10, .eventfd = -1 };
	slog *log;
	cr_assert_eq(slog_open(&sc, &log), 0);
	cr_assert_eq(state_bind_log(t, log), 0);
	slog_pos mark = slog_mark(log);

	uint64_t ops = 0, flushes = 0, deletes = 0, clears = 0;
	for (int phase = 0; phase < 4; phase++) {
		int nkeys = 500 << (2 * phase); /* 500, 2000, 8000, 32000: growth */
		long nops = 60000 + 40000L * phase;
		long next_flush = (long)(dk_rnd() % 3000);
		for (long op = 0; op < nops; op++, ops++) {
			int tb = (int)(dk_rnd() & 1);
			bool ttl = tb == 1;
			kvtab *tab = tabs[tb];
			dk_model *m = ms[tb];
			int64_t key = (int64_t)(dk_rnd() % (uint64_t)nkeys), ns = (int64_t)(dk_rnd() % DK_NS);
			int i = (int)(key * DK_NS + ns);
			skey k = key_from_value(d, WEIR_I64, (weir_value){ .i64 = key });
			uint64_t r = dk_rnd() % 1000;
			dk_now += (int64_t)(dk_rnd() % 3);
			if (r < 550) {
				bool created;
				int64_t *v = kv_upsert(tab, k, ns, &created);
				cr_assert_not_null(v);
				cr_assert_eq(created, !dk_live(m, ttl, i), "op %llu", (unsigned long long)ops);
				if (created)
					m->val[i] = 0;
				cr_assert_eq(v[0], m->val[i]);
				v[0] += (int64_t)r + 1;
				v[1] = key ^ ns;
				kv_written(tab, v);
				m->present[i] = true;
				m->val[i] += (int64_t)r + 1;
				m->written[i] = dk_now;
				m->pending[i] = true;
			} else if (r < 600) {
				/* a write through kv_get's pointer */
				int64_t *v = kv_get(tab, k, ns);
				cr_assert_eq(v != NULL, dk_live(m, ttl, i));
				if (v) {
					v[0] *= 3;
					kv_written(tab, v);
					m->val[i] *= 3;
					m->written[i] = dk_now;
					m->pending[i] = true;
				}
			} else if (r < 850) {
				bool live = dk_live(m, ttl, i);
				cr_assert_eq(kv_delete(tab, k, ns), live);
				if (m->present[i]) {
					/* an expired entry: deleted (DEL logged)
					 * if the sweep has not removed it yet */
					m->known[i] = live;
					m->logged[i] = false;
				}
				m->present[i] = m->pending[i] = false;
				deletes += live;
			} else if (r < 852 && ttl) {
				dk_now += DK_TTL / 2 + (int64_t)(dk_rnd() % DK_TTL); /* expiry */
			} else if (r == 999 && dk_rnd() % 64 == 0) {
				/* not logged: the log keeps what it had, the
				 * changes not flushed yet are gone (but a sweep
				 * may have logged a changed entry that expired) */
				kv_clear_all(tab);
				for (int j = 0; j < DK_SLOTS && ttl; j++)
					if (m->pending[j])
						m->known[j] = false;
				memset(m->present, 0, sizeof(m->present));
				memset(m->pending, 0, sizeof(m->pending));
				clears++;
			}
			if (op == next_flush) {
				dk_barrier(log, tabs, ms, &mark);
				next_flush = op + 1 + (long)(dk_rnd() % 3000);
				flushes++;
			}
		}
		dk_barrier(log, tabs, ms, &mark);
	}
	cr_assert_eq(slog_error(log), 0);
	/* grown from 64 slots to at least 2^16 */
	cr_assert_geq(kv_memsize(tabs[0]), (size_t)65536 * (24 + DK_VSIZE));
	cr_assert_gt(clears, 0u);
	cr_log_info("dirty: %llu operations, %llu flushes, %llu deletes, %llu clears",
		    (unsigned long long)ops, (unsigned long long)flushes,
		    (unsigned long long)deletes, (unsigned long long)clears);
	cr_assert_eq(state_bind_log(t, NULL), 0);
	cr_assert_eq(slog_close(log), 0);
	t->keyed_free(t->keyed);
	free(t);
	kv_free(tabs[0]);
	kv_free(tabs[1]);
	kdict_free(d);
}

Test(dirty, a_hot_key_costs_one_entry_per_flush, .init = testenv_mkdir,
     .fini = testenv_rmdir)
{
	task *t = calloc(1, sizeof(*t));
	kdict *d = kdict_new();
	kvtab_conf c = { .key_type = WEIR_I64, .vsize = 8 };
	kvtab *tab = kv_new(&c, d);
	cr_assert_eq(state_register_table(t, "hot", tab), 0);
	slog_conf sc = { .dir = testenv_dir, .prefix = "core-0", .run = 1, .eventfd = -1 };
	slog *log;
	cr_assert_eq(slog_open(&sc, &log), 0);
	cr_assert_eq(state_bind_log(t, log), 0);
	slog_pos a = slog_mark(log);
	skey k = key_from_value(d, WEIR_I64, (weir_value){ .i64 = 7 });
	for (int i = 0; i < 1000000; i++) {
		bool created;
		int64_t *v = kv_upsert(tab, k, 0, &created);
		*v += 1;
		kv_written(tab, v);
	}
	cr_assert_eq(kv_flush_dirty(tab), 1);
	slog_pos b = slog_mark(log);
	cr_assert_eq(slog_wait(log, slog_sync(log)), 0);
	/* one frame, one PUT of the last value */
	slog_reader *rd;
	char err[256];
	const void *fp;
	size_t fn;
	cr_assert_eq(slog_reader_open(testenv_dir, "core-0", a, b, &rd, err, sizeof(err)), 0);
	cr_assert_eq(slog_next(rd, &fp, &fn, err, sizeof(err)), 1);
	cr_assert_eq(fn, ST_ENTRY_HDR + 16u);
	int64_t v;
	memcpy(&v, (const char *)fp + ST_ENTRY_HDR + 8, 8);
	cr_assert_eq(((const char *)fp)[0], ST_PUT);
	cr_assert_eq(v, 1000000);
	cr_assert_eq(slog_next(rd, &fp, &fn, err, sizeof(err)), 0);
	slog_reader_close(rd);
	cr_assert_eq(slog_close(log), 0);
	t->keyed_free(t->keyed);
	free(t);
	kv_free(tab);
	kdict_free(d);
}

/* ---- dirty tracking in a job: restore gives the state at the barrier ---------------
 *
 * An operator keeps a running sum per (key, namespace) in a registered
 * table and deletes entries often (so backward shifts move dirty entries),
 * and keeps the same sums in a model; at each barrier its snapshot saves
 * the model under the checkpoint's id and writes that id as its operator
 * state.  A run is cancelled, the next one restores (the operator's
 * restore() compares every restored table with the model saved for the
 * restored id), runs to the end (final checkpoint), and a third restores
 * the final state and compares again.
 */

#define MK 300
#define MNS 3
#define MIDS 4096

/* Each subtask touches only its keys' entries and its own rows. */
static int64_t mk_model[MK * MNS];       /* INT64_MIN: absent */
static bool mk_mine[2][MK];              /* [subtask]: keys it saw */
static int64_t (*mk_saved)[MK * MNS];    /* [id % MIDS]; 0: the final one */
static int64_t mk_saved_id[2][MIDS];
static _Atomic int mk_verified, mk_bad;
static char mk_why[256];

typedef struct mk_state {
	kdict *d;
	kvtab *tab;
} mk_state;

static int mk_open(task *t)
{
	mk_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	t->st = s;
	kvtab_conf c = { .key_type = WEIR_I64, .vsize = 8 };
	if (!(s->d = kdict_new()) || !(s->tab = kv_new(&c, s->d)))
		return -ENOMEM;
	return state_register_table(t, "sums", s->tab);
}

static void mk_close(task *t)
{
	mk_state *s = t->st;
	if (!s)
		return;
	kv_free(s->tab);
	kdict_free(s->d);
	free(s);
}

static void mk_process(task *t, int input, weir_batch *b)
{
	mk_state *s = t->st;
	(void)input;
	const int64_t *seq = weir_col_i64(b, 0), *key = weir_col_i64(b, 1),
		      *val = weir_col_i64(b, 2);
	for (uint32_t r = 0; r < b->rows; r++) {
		int64_t ns = seq[r] % MNS;
		int i = (int)(key[r] * MNS + ns);
		skey k = key_of(s->d, WEIR_I64, b, 1, r);
		mk_mine[t->subtask][key[r]] = true;
		if (val[r] < 300) {
			kv_delete(s->tab, k, ns);
			mk_model[i] = INT64_MIN;
			continue;
		}
		bool created;
		int64_t *v = kv_upsert(s->tab, k, ns, &created);
		if (!v || created != (mk_model[i] == INT64_MIN)) {
			mk_bad = 1;
			continue;
		}
		*v += val[r];
		kv_written(s->tab, v);
		mk_model[i] = (created ? 0 : mk_model[i]) + val[r];
	}
	batch_release(b);
}

static int mk_index(int64_t id)
{
	return id == CKPT_FINAL ? 0 : (int)(id % MIDS);
}

static int mk_snapshot(task *t, int64_t id, snap_buf *out)
{
	/* Each subtask saves the keys it owns (the others' stay as the
	 * other subtask leaves them: the id's array starts all absent). */
	int64_t *m = mk_saved[mk_index(id)];
	for (int k = 0; k < MK; k++)
		if (mk_mine[t->subtask][k])
			for (int ns = 0; ns < MNS; ns++)
				m[k * MNS + ns] = mk_model[k * MNS + ns];
	mk_saved_id[t->subtask][mk_index(id)] = id;
	return snap_put_u64(out, (uint64_t)id);
}

static int mk_restore(task *t, const op_restore *r)
{
	mk_state *s = t->st;
	snap_rd rd = { .p = r->blobs[0].p, .len = r->blobs[0].len };
	int64_t id = (int64_t)snap_get_u64(&rd);
	const int64_t *m = mk_saved[mk_index(id)];
	size_t want = 0;
	if (rd.err || mk_saved_id[t->subtask][mk_index(id)] != id) {
		snprintf(mk_why, sizeof(mk_why), "no model saved for checkpoint %lld", (long long)id);
		mk_bad = 1;
		return 0;
	}
	for (int k = 0; k < MK; k++) {
		if (!mk_mine[t->subtask][k])
			continue;
		skey key = key_from_value(s->d, WEIR_I64, (weir_value){ .i64 = k });
		for (int ns = 0; ns < MNS; ns++) {
			int i = k * MNS + ns;
			int64_t *v = kv_get(s->tab, key, ns);
			want += m[i] != INT64_MIN;
			if ((v == NULL) != (m[i] == INT64_MIN) || (v && *v != m[i])) {
				snprintf(mk_why, sizeof(mk_why), "checkpoint %lld, subtask %d, key %d "
					 "ns %d: restored %lld, at the barrier %lld", (long long)id,
					 t->subtask, k, ns, v ? (long long)*v : -1LL, (long long)m[i]);
				mk_bad = 1;
			}
			mk_model[i] = m[i]; /* the run goes on from there */
		}
	}
	if (kv_count(s->tab) != want) {
		snprintf(mk_why, sizeof(mk_why), "subtask %d: %zu entries restored, %zu at the "
			 "barrier", t->subtask, kv_count(s->tab), want);
		mk_bad = 1;
	}
	mk_verified++;
	return 0;
}

static const op_ops op_mutator = {
	.kind = "mutator", .open = mk_open, .process = mk_process, .snapshot = mk_snapshot,
	.restore = mk_restore, .close = mk_close,
};

static weir_env *mk_job(const char *ck)
{
	weir_env *env = env_p(2, 256);
	weir_config *cfg = weir_env_config(env);
	cfg->mode = WEIR_MODE_STREAMING;
	cfg->checkpoint_dir = ck;
	cfg->checkpoint_interval_ms = 20;
	weir_generator_conf g = { .count = 400000, .seed = 9, .keys = MK, .rate = 200000 };
	weir_stream *s = weir_key_by(weir_source_generator(env, "gen", &g), "key");
	cr_assert_not_null(stream_add_op(&s, 1, "mutator", "mutator", &op_mutator,
					 weir_stream_schema(s), NULL, NULL),
			   "%s", weir_env_error(env));
	return env;
}

Test(dirty, restored_job_state_is_the_state_at_the_barrier, .init = testenv_mkdir,
     .fini = testenv_rmdir, .timeout = 120)
{
	mk_saved = calloc(MIDS, sizeof(*mk_saved));
	for (size_t i = 0; i < MIDS * (size_t)(MK * MNS); i++)
		mk_saved[i / (MK * MNS)][i % (MK * MNS)] = INT64_MIN;
	for (int i = 0; i < MK * MNS; i++)
		mk_model[i] = INT64_MIN;
	/* 1. cancelled midway, once it completed a checkpoint (the input,
	 * capped at 200 000 rows/s, lasts 2 s at least) */
	pthread_t th;
	char ck[128];
	snprintf(ck, sizeof(ck), "%s", path("ck"));
	cancel_arg ca = { .ready = has_checkpoint, .ready_arg = ck };
	weir_env *env = mk_job(ck);
	pthread_create(&th, NULL, cancel_when, &ca);
	int rc = weir_env_execute(env, "test", 0);
	pthread_join(th, NULL);
	weir_env_free(env);
	cr_assert(!ca.timed_out, "no checkpoint within %d ms", TESTENV_DEADLINE_MS);
	cr_assert(rc == 0 || rc == -ECANCELED, "rc %d", rc);
	cr_assert_eq(mk_bad, 0, "%s", mk_why);
	/* 2. resumes from its last checkpoint, runs to the end */
	run_ok(mk_job(path("ck")));
	cr_assert_eq(mk_bad, 0, "%s", mk_why);
	cr_assert_eq(mk_verified, 2, "%d subtasks restored", mk_verified);
	/* 3. restores the final checkpoint (and ends at once) */
	run_ok(mk_job(path("ck")));
	cr_assert_eq(mk_bad, 0, "%s", mk_why);
	cr_assert_eq(mk_verified, 4, "%d subtasks restored", mk_verified);
	free(mk_saved);
}
