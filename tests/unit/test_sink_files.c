/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The exactly-once file sink (weir_sink_files, operators/sink.c): its
 * two-phase commit driven through the op_ops callbacks on hand-built
 * tasks (the sink emits nothing, so no runtime is needed) -- rows into
 * hidden files, pre-commit at snapshot, commit by checkpoint id,
 * idempotence, recovery after a crash, rescaling, names that never
 * collide -- and whole jobs on the real runtime without checkpointing.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ops.h"
#include "testenv.h"

static pool_set *pools;
static weir_schema row_schema;

static void setup(void)
{
	testenv_mkdir();
	pools = pool_set_new(1, 128 * 1024, 256, 1024);
	pool_bind_thread(pools, 0);
	char err[128];
	cr_assert_eq(schema_parse("k:str,v:i64", &row_schema, err, sizeof(err)), 0);
}

static void teardown(void)
{
	pool_set_free(pools);
	testenv_rmdir();
}

TestSuite(sink_files, .init = setup, .fini = teardown);

/* ---- a hand-built sink subtask ------------------------------------------------------ */

typedef struct fake {
	lnode node;
	sink_conf conf;
	weir_config cfg;
	task t;
} fake;

static fake *fake_new(const char *dir, int subtask, int parallelism)
{
	fake *f = calloc(1, sizeof(*f));
	snprintf(f->conf.path, sizeof(f->conf.path), "%s", dir);
	snprintf(f->node.name, sizeof(f->node.name), "files");
	f->node.ops = &op_files_sink;
	f->node.conf = &f->conf;
	f->node.schema[0] = &row_schema;
	f->cfg.batch_rows = 256;
	f->t.ops = &op_files_sink;
	f->t.node = &f->node;
	f->t.cfg = &f->cfg;
	f->t.subtask = subtask;
	f->t.parallelism = parallelism;
	cr_assert_eq(op_files_sink.open(&f->t), 0);
	return f;
}

static void fake_free(fake *f)
{
	op_files_sink.close(&f->t);
	free(f);
}

/* Rows "<tag>-<i>,i" for i in [from, to). */
static void put_rows(fake *f, const char *tag, int from, int to)
{
	while (from < to) {
		weir_batch *b = batch_alloc(&row_schema, (size_t)(to - from) * 32);
		for (; from < to && b->rows < b->capacity; from++) {
			char k[32];
			int n = snprintf(k, sizeof(k), "%s-%d", tag, from);
			weir_batch_set_str(b, 0, b->rows, k, (uint32_t)n);
			weir_col_i64(b, 1)[b->rows] = from;
			b->rows++;
		}
		op_files_sink.process(&f->t, 0, b); /* takes b */
	}
}

/* snapshot(id) into a fresh blob (caller frees with snap_free). */
static snap_buf snap(fake *f, int64_t id)
{
	snap_buf b = { 0 };
	cr_assert_eq(op_files_sink.snapshot(&f->t, id, &b), 0);
	return b;
}

static bool exists(const char *dir, const char *name)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return access(p, F_OK) == 0;
}

static long file_size(const char *dir, const char *name)
{
	char p[512];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

/* Names in dir (sorted, one string "a b c"). */
static const char *listing(const char *dir)
{
	static char out[4096];
	struct dirent **ents;
	int n = scandir(dir, &ents, NULL, alphasort);
	out[0] = 0;
	for (int i = 0; i < n; i++) {
		if (strcmp(ents[i]->d_name, ".") && strcmp(ents[i]->d_name, "..")) {
			if (out[0])
				strcat(out, " ");
			strcat(out, ents[i]->d_name);
		}
		free(ents[i]);
	}
	free(ents);
	return out;
}

/* Count the lines of every committed part file in dir; each key seen must
 * be new (exactly once); returns the number of lines. */
static long committed_lines(const char *dir, char seen[][32], long cap)
{
	long n = 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	cr_assert_not_null(d);
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "part-", 5))
			continue;
		char p[512], line[128];
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		FILE *f = fopen(p, "r");
		cr_assert_not_null(f);
		while (fgets(line, sizeof(line), f)) {
			char *comma = strchr(line, ',');
			cr_assert_not_null(comma, "bad line '%s' in %s", line, e->d_name);
			*comma = 0;
			for (long i = 0; seen && i < n; i++)
				cr_assert_str_neq(seen[i], line, "'%s' committed twice", line);
			if (seen) {
				cr_assert_lt(n, cap);
				snprintf(seen[n], 32, "%.31s", line);
			}
			n++;
		}
		fclose(f);
	}
	closedir(d);
	return n;
}

/* ---- the commit protocol ------------------------------------------------------------------ */

Test(sink_files, rows_land_in_a_hidden_file_opened_lazily)
{
	const char *dir = path("out/nested");
	fake *f = fake_new(dir, 0, 1);
	/* open() made the directory (mkdir -p) but no file */
	cr_assert_str_eq(listing(dir), "");
	snap_buf b = snap(f, 1);
	cr_assert_str_eq(listing(dir), "", "an empty interval makes no file");
	snap_free(&b);
	put_rows(f, "a", 0, 10);
	cr_assert_str_eq(listing(dir), ".part-0-0.inprogress");
	fake_free(f);
	/* close() keeps the in-progress file (a recovery decides) */
	cr_assert_str_eq(listing(dir), ".part-0-0.inprogress");
}

Test(sink_files, snapshot_precommits_and_commit_renames_up_to_id)
{
	const char *dir = path("out");
	fake *f = fake_new(dir, 2, 4);
	put_rows(f, "a", 0, 100);
	snap_buf b1 = snap(f, 1);
	/* pre-committed: flushed (all bytes on disk), still hidden */
	cr_assert_str_eq(listing(dir), ".part-2-0.inprogress");
	long len0 = file_size(dir, ".part-2-0.inprogress");
	cr_assert_gt(len0, 0);
	put_rows(f, "b", 0, 50);
	snap_buf b2 = snap(f, 2);
	put_rows(f, "c", 0, 5);
	snap_buf b3 = snap(f, 3);
	put_rows(f, "d", 0, 5); /* open, not pre-committed */
	cr_assert_str_eq(listing(dir), ".part-2-0.inprogress .part-2-1.inprogress "
			 ".part-2-2.inprogress .part-2-3.inprogress");

	op_files_sink.commit(&f->t, 2);
	cr_assert_str_eq(listing(dir), ".part-2-2.inprogress .part-2-3.inprogress "
			 "part-2-0 part-2-1");
	cr_assert_eq(file_size(dir, "part-2-0"), len0);
	/* idempotent, and an older id commits nothing new */
	op_files_sink.commit(&f->t, 2);
	op_files_sink.commit(&f->t, 1);
	cr_assert_str_eq(listing(dir), ".part-2-2.inprogress .part-2-3.inprogress "
			 "part-2-0 part-2-1");
	op_files_sink.commit(&f->t, 3);
	cr_assert_str_eq(listing(dir), ".part-2-3.inprogress part-2-0 part-2-1 part-2-2");
	op_files_sink.commit(&f->t, 3);

	/* the blob of barrier 2 lists the files pending then: 0 and 1 */
	snap_rd rd = { .p = b2.p, .len = b2.len };
	const uint8_t *v = snap_get(&rd, 1);
	cr_assert_eq(*v, 1);
	cr_assert_eq(snap_get_u64(&rd), 2); /* next seq */
	uint32_t n;
	memcpy(&n, snap_get(&rd, 4), 4);
	cr_assert_eq(n, 2);
	char name[64];
	cr_assert_eq((int64_t)snap_get_u64(&rd), 1);
	cr_assert_eq((long)snap_get_u64(&rd), len0);
	cr_assert(snap_get_str(&rd, name, sizeof(name)));
	cr_assert_str_eq(name, ".part-2-0.inprogress");
	cr_assert_eq((int64_t)snap_get_u64(&rd), 2);
	snap_get_u64(&rd);
	cr_assert(snap_get_str(&rd, name, sizeof(name)));
	cr_assert_str_eq(name, ".part-2-1.inprogress");
	cr_assert_eq(rd.off, rd.len);
	cr_assert(!rd.err);
	snap_free(&b1);
	snap_free(&b2);
	snap_free(&b3);
	fake_free(f);

	/* the CSV inside is what the CSV sink writes */
	char p[512], line[64];
	snprintf(p, sizeof(p), "%s/part-2-1", dir);
	FILE *fp = fopen(p, "r");
	cr_assert_not_null(fp);
	cr_assert_not_null(fgets(line, sizeof(line), fp));
	cr_assert_str_eq(line, "b-0,0\n");
	fclose(fp);
}

Test(sink_files, final_snapshot_is_committed_by_the_next_checkpoint_only)
{
	const char *dir = path("out");
	fake *f = fake_new(dir, 0, 1);
	put_rows(f, "a", 0, 10);
	snap_buf b1 = snap(f, 5);
	put_rows(f, "b", 0, 10);
	/* end of input while checkpointing: flushed, left open for the final
	 * snapshot */
	f->cfg.checkpoint_dir = "unused";
	op_files_sink.end_input(&f->t);
	f->cfg.checkpoint_dir = NULL;
	cr_assert_eq(file_size(dir, ".part-0-1.inprogress") > 0, true);
	snap_buf bf = snap(f, CKPT_FINAL);
	/* checkpoint 5 completes late: only what barrier 5 pre-committed */
	op_files_sink.commit(&f->t, 5);
	cr_assert_str_eq(listing(dir), ".part-0-1.inprogress part-0-0");
	/* the first checkpoint after the task ended holds its final state */
	op_files_sink.commit(&f->t, 6);
	cr_assert_str_eq(listing(dir), "part-0-0 part-0-1");
	snap_free(&b1);
	snap_free(&bf);
	fake_free(f);
}

Test(sink_files, without_checkpointing_end_input_commits)
{
	const char *dir = path("out");
	fake *f = fake_new(dir, 1, 2);
	put_rows(f, "a", 0, 1000);
	op_files_sink.end_input(&f->t);
	cr_assert_str_eq(listing(dir), "part-1-0");
	cr_assert_eq(committed_lines(dir, NULL, 0), 1000);
	fake_free(f);
	/* an empty subtask makes no file */
	f = fake_new(dir, 0, 2);
	op_files_sink.end_input(&f->t);
	fake_free(f);
	cr_assert_str_eq(listing(dir), "part-1-0");
}

/* ---- recovery ------------------------------------------------------------------------------ */

static op_restore restore_of(op_blob *blobs, const snap_buf *bufs, int n, int old_p)
{
	for (int i = 0; i < n; i++)
		blobs[i] = (op_blob){ .subtask = i, .p = bufs[i].p, .len = bufs[i].len };
	return (op_restore){ .old_parallelism = old_p, .n = n, .blobs = blobs };
}

Test(sink_files, restore_commits_the_precommitted_and_deletes_the_rest)
{
	const char *dir = path("out");
	static char seen[4000][32];
	fake *f = fake_new(dir, 0, 1);
	put_rows(f, "a", 0, 100);
	snap_buf b1 = snap(f, 1);
	op_files_sink.commit(&f->t, 1);     /* part-0-0 */
	put_rows(f, "b", 0, 100);
	snap_buf b2 = snap(f, 2);           /* .part-0-1 pending at 2 */
	put_rows(f, "c", 0, 100);
	snap_buf b3 = snap(f, 3);           /* .part-0-2 pending at 3 */
	/* Checkpoint 2 completes but its commit never runs; checkpoint 3
	 * never completes; more rows go to .part-0-3; the process dies. */
	put_rows(f, "d", 0, 100);
	snap_free(&b3);
	fake_free(f);
	/* Bytes past the pre-committed length (none can come from the sink,
	 * which writes a new file after a pre-commit, but a file of another
	 * writer or a torn tail must not become visible): the length in the
	 * blob wins. */
	char p[512];
	snprintf(p, sizeof(p), "%s/.part-0-1.inprogress", dir);
	long len1 = file_size(dir, ".part-0-1.inprogress");
	FILE *fp = fopen(p, "a");
	fputs("junk,1\n", fp);
	fclose(fp);
	cr_assert_str_eq(listing(dir), ".part-0-1.inprogress .part-0-2.inprogress "
			 ".part-0-3.inprogress part-0-0");

	/* Recover from checkpoint 2. */
	f = fake_new(dir, 0, 1);
	op_blob blobs[1];
	op_restore r = restore_of(blobs, &b2, 1, 1);
	cr_assert_eq(op_files_sink.restore(&f->t, &r), 0);
	cr_assert_str_eq(listing(dir), "part-0-0 part-0-1");
	cr_assert_eq(file_size(dir, "part-0-1"), len1);
	/* the replay writes c and d again, above every name open() saw */
	put_rows(f, "c", 0, 100);
	snap_buf b4 = snap(f, 4);
	op_files_sink.commit(&f->t, 4);
	put_rows(f, "d", 0, 100);
	op_files_sink.end_input(&f->t);
	cr_assert_str_eq(listing(dir), "part-0-0 part-0-1 part-0-4 part-0-5");
	cr_assert_eq(committed_lines(dir, seen, 4000), 400);
	/* Restoring checkpoint 2 again (as after falling back past a corrupt
	 * newer checkpoint) rolls back what was committed after it: the
	 * replay writes those rows again. */
	fake_free(f);
	f = fake_new(dir, 0, 1);
	cr_assert_eq(op_files_sink.restore(&f->t, &r), 0);
	cr_assert_str_eq(listing(dir), "part-0-0 part-0-1");
	fake_free(f);
	snap_free(&b1);
	snap_free(&b2);
	snap_free(&b4);
}

Test(sink_files, restore_after_commit_already_ran_is_idempotent)
{
	const char *dir = path("out");
	fake *f = fake_new(dir, 0, 1);
	put_rows(f, "a", 0, 10);
	snap_buf b1 = snap(f, 1);
	op_files_sink.commit(&f->t, 1);
	fake_free(f);
	f = fake_new(dir, 0, 1);
	op_blob blobs[1];
	op_restore r = restore_of(blobs, &b1, 1, 1);
	cr_assert_eq(op_files_sink.restore(&f->t, &r), 0);
	cr_assert_str_eq(listing(dir), "part-0-0");
	/* the next file is part-0-1 */
	put_rows(f, "b", 0, 10);
	op_files_sink.end_input(&f->t);
	cr_assert_str_eq(listing(dir), "part-0-0 part-0-1");
	fake_free(f);
	snap_free(&b1);
}

Test(sink_files, rescaled_restore_four_into_two)
{
	const char *dir = path("out");
	static char seen[8000][32];
	snap_buf bufs[4];
	fake *old[4];
	char tag[8];

	for (int s = 0; s < 4; s++) {
		old[s] = fake_new(dir, s, 4);
		snprintf(tag, sizeof(tag), "x%d", s);
		put_rows(old[s], tag, 0, 100);
		if (s != 3) {
			snap_buf b = snap(old[s], 1); /* subtask 3 had nothing at 1 */
			snap_free(&b);
		}
		snprintf(tag, sizeof(tag), "y%d", s);
		put_rows(old[s], tag, 0, 100);
		bufs[s] = snap(old[s], 2);
		/* after checkpoint 2: lost to the crash */
		snprintf(tag, sizeof(tag), "z%d", s);
		put_rows(old[s], tag, 0, 100);
	}
	op_files_sink.commit(&old[0]->t, 1); /* only subtask 0 heard of 1 */
	for (int s = 0; s < 4; s++)
		fake_free(old[s]);
	cr_assert_str_eq(listing(dir),
		".part-0-1.inprogress .part-0-2.inprogress "
		".part-1-0.inprogress .part-1-1.inprogress .part-1-2.inprogress "
		".part-2-0.inprogress .part-2-1.inprogress .part-2-2.inprogress "
		".part-3-0.inprogress .part-3-1.inprogress part-0-0");

	op_blob blobs[4];
	op_restore r = restore_of(blobs, bufs, 4, 4);
	fake *nw[2];
	/* restore runs subtask by subtask on the main thread; 1 first here */
	nw[1] = fake_new(dir, 1, 2);
	nw[0] = fake_new(dir, 0, 2);
	cr_assert_eq(op_files_sink.restore(&nw[1]->t, &r), 0);
	cr_assert_eq(op_files_sink.restore(&nw[0]->t, &r), 0);
	cr_assert_str_eq(listing(dir),
		"part-0-0 part-0-1 part-1-0 part-1-1 part-2-0 part-2-1 part-3-0");
	/* x and y of every old subtask, once; no z */
	cr_assert_eq(committed_lines(dir, seen, 8000), 800);
	for (int i = 0; i < 800; i++)
		cr_assert_neq(seen[i][0], 'z');
	/* the new subtasks write above every name of theirs (open() saw the
	 * leftovers that restore deleted) */
	for (int s = 0; s < 2; s++) {
		snprintf(tag, sizeof(tag), "w%d", s);
		put_rows(nw[s], tag, 0, 10);
		op_files_sink.end_input(&nw[s]->t);
		fake_free(nw[s]);
	}
	cr_assert_str_eq(listing(dir),
		"part-0-0 part-0-1 part-0-3 part-1-0 part-1-1 part-1-3 part-2-0 part-2-1 "
		"part-3-0");
	for (int s = 0; s < 4; s++)
		snap_free(&bufs[s]);
}

Test(sink_files, seq_starts_above_existing_names)
{
	const char *dir = path("out");
	cr_assert_eq(mkdir(dir, 0755), 0);
	const char *names[] = { "part-0-7", ".part-0-9.inprogress", "part-1-20",
				"part-0-x", "part-0-", "notes.txt" };
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		FILE *fp = fopen(p, "w");
		fclose(fp);
	}
	fake *f = fake_new(dir, 0, 2);
	put_rows(f, "a", 0, 3);
	op_files_sink.end_input(&f->t);
	fake_free(f);
	cr_assert(exists(dir, "part-0-10"));
	/* restore's cleanup deletes only hidden part files no blob lists */
	f = fake_new(dir, 0, 2);
	op_restore r = { .old_parallelism = 2, .n = 0 };
	cr_assert_eq(op_files_sink.restore(&f->t, &r), 0);
	fake_free(f);
	cr_assert_str_eq(listing(dir), "notes.txt part-0- part-0-10 part-0-7 part-0-x "
			 "part-1-20");
}

Test(sink_files, a_run_without_checkpoint_deletes_earlier_attempts_hidden_files)
{
	const char *dir = path("out");
	cr_assert_eq(mkdir(dir, 0755), 0);
	/* An attempt cancelled before its first checkpoint left these; the
	 * fresh run writes their rows again. */
	const char *names[] = { ".part-0-3.inprogress", ".part-1-4.inprogress",
				".part-5-1.inprogress", "part-0-2" };
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		FILE *fp = fopen(p, "w");
		fclose(fp);
	}
	fake *f0 = fake_new(dir, 0, 2), *f1 = fake_new(dir, 1, 2);
	put_rows(f0, "a", 0, 3);
	cr_assert(!exists(dir, ".part-0-3.inprogress"), "subtask 0's own stale file");
	cr_assert(!exists(dir, ".part-5-1.inprogress"), "a subtask beyond the parallelism");
	cr_assert(exists(dir, ".part-1-4.inprogress"), "subtask 1's is its own business");
	op_files_sink.end_input(&f1->t);
	cr_assert(!exists(dir, ".part-1-4.inprogress"));
	op_files_sink.end_input(&f0->t);
	fake_free(f0);
	fake_free(f1);
	cr_assert_str_eq(listing(dir), "part-0-2 part-0-4");
}

Test(sink_files, a_malformed_blob_is_refused)
{
	const char *dir = path("out");
	fake *f = fake_new(dir, 0, 1);
	uint8_t junk[] = { 9, 1, 2 };
	op_blob blob = { .subtask = 0, .p = junk, .len = sizeof(junk) };
	op_restore r = { .old_parallelism = 1, .n = 1, .blobs = &blob };
	cr_assert_eq(op_files_sink.restore(&f->t, &r), -EINVAL);
	fake_free(f);
}

/* ---- through the runtime, without checkpoints ------------------------------------------- */

static void gen_rows(void *arg, uint64_t seed, uint64_t first, uint32_t n,
		     weir_batch *out)
{
	(void)arg;
	(void)seed;
	for (uint32_t i = 0; i < n; i++) {
		char k[32];
		int len = snprintf(k, sizeof(k), "r-%llu", (unsigned long long)(first + i));
		weir_batch_set_str(out, 0, i, k, (uint32_t)len);
		weir_col_i64(out, 1)[i] = (int64_t)(first + i);
		out->ts[i] = 0;
	}
}

Test(sink_files, a_job_commits_its_files_at_end_of_input)
{
	static char seen[20000][32];
	for (int p = 1; p <= 3; p++) {
		char name[16];
		snprintf(name, sizeof(name), "job%d", p);
		const char *dir = path(name);
		weir_env *env = env_p(p, 128);
		cr_assert(!weir_env_checkpointing(env));
		weir_generator_conf g = {
			.count = 20000, .schema = weir_schema_parse(env, "k:str,v:i64"),
			.fill = gen_rows,
		};
		weir_stream *s = weir_source_generator(env, "gen", &g);
		cr_assert_eq(weir_sink_files(s, "files", dir), 0);
		run_ok(env);
		cr_assert_eq(committed_lines(dir, seen, 20000), 20000);
		/* one file per subtask (the sink runs at the input's
		 * parallelism), none hidden */
		const char *want[] = { "", "part-0-0", "part-0-0 part-1-0",
				       "part-0-0 part-1-0 part-2-0" };
		cr_assert_str_eq(listing(dir), want[p]);
	}
}

Test(sink_files, build_errors)
{
	weir_env *env = env_p(1, 16);
	weir_generator_conf g = { .count = 10 };
	weir_stream *s = weir_source_generator(env, "gen", &g);
	cr_assert_eq(weir_sink_files(NULL, "x", "d"), -EINVAL);
	cr_assert_eq(weir_sink_files(s, "x", ""), -EINVAL);
	cr_assert_not_null(weir_env_error(env));
	weir_env_free(env);

	env = env_p(1, 16);
	s = weir_source_generator(env, "gen", &g);
	cr_assert_eq(weir_sink_files(s, "a", path("same")), 0);
	cr_assert_eq(weir_sink_files(s, "b", path("same")), -EINVAL);
	cr_assert_not_null(strstr(weir_env_error(env), "already written"));
	weir_env_free(env);
}

Test(sink_files, checkpointing_follows_the_config)
{
	weir_env *env = env_p(1, 16);
	cr_assert(!weir_env_checkpointing(env));
	weir_env_config(env)->checkpoint_dir = "";
	cr_assert(!weir_env_checkpointing(env));
	weir_env_config(env)->checkpoint_dir = path("ck");
	cr_assert(weir_env_checkpointing(env));
	weir_env_free(env);
}
