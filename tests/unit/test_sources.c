/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Replayable sources and the rate cap (operators/source.c): the pure split
 * and token-bucket functions of ops.h; snapshot and restore of the text,
 * CSV and generator sources driven through their op_ops callbacks on
 * hand-built tasks whose output is chained to a capturing task (so no
 * checkpoint runtime is needed), with rescaling; and rate-capped jobs on
 * the real runtime (lower bounds on time only).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ops.h"
#include "reactor.h"
#include "testenv.h"

#define ROWS 64 /* batch rows of the hand-built tasks */

static pool_set *pools;

static void setup(void)
{
	testenv_mkdir();
	pools = pool_set_new(1, 128 * 1024, ROWS, 1 << 20);
	pool_bind_thread(pools, 0);
}

static void teardown(void)
{
	pool_set_free(pools);
	testenv_rmdir();
}

TestSuite(sources, .init = setup, .fini = teardown);

/* ---- pure functions ------------------------------------------------------------------ */

Test(sources, initial_ranges_cover_everything_once)
{
	for (uint64_t total = 0; total < 50; total++)
		for (int p = 1; p <= 7; p++) {
			uint64_t prev = 0;
			for (int i = 0; i < p; i++) {
				uint64_t a, b;
				src_split_range(total, i, p, &a, &b);
				cr_assert_eq(a, prev);
				cr_assert_geq(b, a);
				prev = b;
			}
			cr_assert_eq(prev, total);
		}
	uint64_t a, b;
	src_split_range(UINT64_MAX, 4095, 4096, &a, &b);
	cr_assert_eq(b, UINT64_MAX);
}

/* Blobs of `old_p` subtasks, subtask s holding splits {100 s + k, 100 s + 50}
 * for k < s + 1 (so counts differ). */
static void make_blobs(snap_buf *bufs, op_blob *blobs, int old_p, enum src_blob_kind kind)
{
	for (int s = 0; s < old_p; s++) {
		src_split sp[8];
		int n = s % 4 + 1;
		for (int k = 0; k < n; k++)
			sp[k] = (src_split){ .pos = 100u * s + k, .end = 100u * s + 50,
					     .line = (uint64_t)k + 1 };
		bufs[s] = (snap_buf){ 0 };
		cr_assert_eq(src_splits_write(&bufs[s], kind, sp, n), 0);
		cr_assert_eq(bufs[s].len, 6 + 40 * (size_t)n);
		blobs[s] = (op_blob){ .subtask = s, .p = bufs[s].p, .len = bufs[s].len };
	}
}

Test(sources, restore_takes_the_splits_of_old_subtasks_modulo_parallelism)
{
	snap_buf bufs[8];
	op_blob blobs[8];
	make_blobs(bufs, blobs, 4, SRC_BLOB_TEXT);
	op_restore r = { .old_parallelism = 4, .n = 4, .blobs = blobs };
	src_split *sp;
	int n;
	bool stream;

	/* 4 into 2: subtask 0 gets old 0 and 2, in that order */
	cr_assert_eq(src_splits_take(&r, SRC_BLOB_TEXT, 0, 2, &sp, &n, &stream), 0);
	cr_assert(!stream);
	cr_assert_eq(n, 1 + 3);
	cr_assert_eq(sp[0].pos, 0);
	cr_assert_eq(sp[1].pos, 200);
	cr_assert_eq(sp[3].pos, 202);
	cr_assert_eq(sp[3].end, 250);
	cr_assert_eq(sp[3].line, 3);
	free(sp);
	cr_assert_eq(src_splits_take(&r, SRC_BLOB_TEXT, 1, 2, &sp, &n, &stream), 0);
	cr_assert_eq(n, 2 + 4);
	cr_assert_eq(sp[0].pos, 100);
	cr_assert_eq(sp[2].pos, 300);
	free(sp);
	/* same parallelism: its own */
	cr_assert_eq(src_splits_take(&r, SRC_BLOB_TEXT, 3, 4, &sp, &n, &stream), 0);
	cr_assert_eq(n, 4);
	cr_assert_eq(sp[0].pos, 300);
	free(sp);
	/* 4 into 6: subtasks 4 and 5 get nothing (they end at once) */
	cr_assert_eq(src_splits_take(&r, SRC_BLOB_TEXT, 5, 6, &sp, &n, &stream), 0);
	cr_assert_eq(n, 0);
	cr_assert_null(sp);
	/* 4 into 1: everything, in order of old subtask */
	cr_assert_eq(src_splits_take(&r, SRC_BLOB_TEXT, 0, 1, &sp, &n, &stream), 0);
	cr_assert_eq(n, 10);
	for (int i = 1; i < n; i++)
		cr_assert_gt(sp[i].pos, sp[i - 1].pos);
	free(sp);
	/* another kind of source's state is refused */
	cr_assert_eq(src_splits_take(&r, SRC_BLOB_GEN, 0, 1, &sp, &n, &stream), -EINVAL);
	for (int s = 0; s < 4; s++)
		snap_free(&bufs[s]);
}

Test(sources, restore_drops_exhausted_splits_and_refuses_bad_blobs)
{
	src_split sp[3] = { { .pos = 10, .end = 10 }, { .pos = 5, .end = 9 },
			    { .pos = 11, .end = 3 } };
	snap_buf b = { 0 };
	cr_assert_eq(src_splits_write(&b, SRC_BLOB_CSV, sp, 3), 0);
	op_blob blob = { .subtask = 0, .p = b.p, .len = b.len };
	op_restore r = { .old_parallelism = 1, .n = 1, .blobs = &blob };
	src_split *out;
	int n;
	bool stream;
	cr_assert_eq(src_splits_take(&r, SRC_BLOB_CSV, 0, 1, &out, &n, &stream), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(out[0].pos, 5);
	free(out);
	/* truncated */
	blob.len--;
	cr_assert_eq(src_splits_take(&r, SRC_BLOB_CSV, 0, 1, &out, &n, &stream), -EINVAL);
	/* wrong version */
	blob.len++;
	b.p[0] = 7;
	cr_assert_eq(src_splits_take(&r, SRC_BLOB_CSV, 0, 1, &out, &n, &stream), -EINVAL);
	snap_free(&b);
	/* an unbounded generator split needs a stride */
	src_split g = { .pos = 0, .end = UINT64_MAX, .block_rows = 64 };
	cr_assert_eq(src_splits_write(&b, SRC_BLOB_GEN, &g, 1), 0);
	blob = (op_blob){ .subtask = 0, .p = b.p, .len = b.len };
	cr_assert_eq(src_splits_take(&r, SRC_BLOB_GEN, 0, 1, &out, &n, &stream), -EINVAL);
	snap_free(&b);
	/* a source that could not replay: flagged, no splits */
	cr_assert_eq(src_splits_write(&b, SRC_BLOB_STREAM, NULL, 0), 0);
	blob = (op_blob){ .subtask = 0, .p = b.p, .len = b.len };
	cr_assert_eq(src_splits_take(&r, SRC_BLOB_TEXT, 0, 1, &out, &n, &stream), 0);
	cr_assert(stream);
	cr_assert_eq(n, 0);
	snap_free(&b);
}

Test(sources, token_bucket)
{
	rate_gate g;
	uint64_t wake = 0, t0 = 1000000000;

	rate_gate_init(&g, 0, 4);
	cr_assert_eq(rate_gate_allow(&g, t0, &wake), UINT32_MAX);

	/* 4000/s over 4 subtasks: 1000/s each, 10 rows deep */
	rate_gate_init(&g, 4000, 4);
	cr_assert_eq(g.rate, 1000);
	cr_assert_eq(g.depth, 10);
	/* starts empty: the first row is due after 1 ms */
	cr_assert_eq(rate_gate_allow(&g, t0, &wake), 0);
	cr_assert_geq(wake, t0 + 1000000);
	cr_assert_leq(wake, t0 + 1000010);
	cr_assert_eq(rate_gate_allow(&g, t0 + 5000000, &wake), 5);
	rate_gate_take(&g, 3);
	cr_assert_eq(rate_gate_allow(&g, t0 + 5000000, &wake), 2);
	rate_gate_take(&g, 2);
	cr_assert_eq(rate_gate_allow(&g, t0 + 5500000, &wake), 0);
	cr_assert_geq(wake, t0 + 6000000);
	cr_assert_leq(wake, t0 + 6000010);
	/* an idle second buys at most 10 ms worth: a cap, not a target */
	cr_assert_eq(rate_gate_allow(&g, t0 + 2000000000ull, &wake), 10);
	rate_gate_take(&g, 10);
	/* a clock that does not move gives nothing new */
	cr_assert_eq(rate_gate_allow(&g, t0 + 2000000000ull, &wake), 0);

	/* slower than 100/s: one row deep */
	rate_gate_init(&g, 10, 1);
	cr_assert_eq(g.depth, 1);
	cr_assert_eq(rate_gate_allow(&g, t0, &wake), 0);
	cr_assert_eq(rate_gate_allow(&g, t0 + 5000000000ull, &wake), 1);

	cr_assert_eq(rate_min(0, 0), 0);
	cr_assert_eq(rate_min(5, 0), 5);
	cr_assert_eq(rate_min(0, 7), 7);
	cr_assert_eq(rate_min(9, 7), 7);
}

/* ---- hand-built source subtasks chained to a capturing task ------------------------- */

/* What reached the capture tasks: strings (text, CSV keys), integers
 * (generator ids, CSV values), dead-letter line numbers. */
typedef struct captured {
	char **str;
	int64_t *num;
	long n, cap;
	int64_t dead[4096];
	long ndead;
	int64_t last_id; /* generator: ids a task emits keep increasing */
	bool increasing;
} captured;

static captured cap;

static void cap_reset(void)
{
	for (long i = 0; i < cap.n; i++)
		free(cap.str[i]);
	free(cap.str);
	free(cap.num);
	memset(&cap, 0, sizeof(cap));
}

static void cap_add(const char *s, uint32_t len, int64_t v)
{
	if (cap.n == cap.cap) {
		cap.cap = cap.cap ? cap.cap * 2 : 1024;
		cap.str = realloc(cap.str, (size_t)cap.cap * sizeof(*cap.str));
		cap.num = realloc(cap.num, (size_t)cap.cap * sizeof(*cap.num));
	}
	cap.str[cap.n] = s ? strndup(s, len) : NULL;
	cap.num[cap.n++] = v;
}

static void cap_process(task *t, int input, weir_batch *b)
{
	const weir_schema *s = b->schema;
	(void)t;
	(void)input;
	for (uint32_t r = 0; r < b->rows; r++) {
		uint32_t len = 0;
		const char *str = NULL;
		int64_t v = 0;
		if (s->fields[0].type == WEIR_STR) {
			str = weir_batch_str(b, 0, r, &len);
			if (s->ncols > 1)
				v = weir_col_i64(b, 1)[r];
		} else {
			v = weir_col_i64(b, 0)[r];
		}
		if (!str) {
			if (v <= cap.last_id)
				cap.increasing = false;
			cap.last_id = v;
		}
		cap_add(str, len, v);
	}
	batch_release(b);
}

static void dead_process(task *t, int input, weir_batch *b)
{
	(void)t;
	(void)input;
	for (uint32_t r = 0; r < b->rows; r++)
		cap.dead[cap.ndead++] = weir_col_i64(b, 0)[r];
	batch_release(b);
}

static const op_ops cap_ops = { .kind = "capture", .process = cap_process };
static const op_ops dead_ops = { .kind = "dead", .process = dead_process };

typedef struct src {
	lnode node;
	file_source_conf fconf;
	weir_generator_conf gconf;
	weir_config cfg;
	task t, sink, dsink;
	outlet o, od;
	weir_out wo;
	actor a;
} src;

static weir_schema line_schema, csv_schema, dead_schema, gen_schema;

static void schemas(void)
{
	char err[128];
	schema_parse("line:str", &line_schema, err, sizeof(err));
	schema_parse("k:str,v:i64", &csv_schema, err, sizeof(err));
	schema_parse("line:i64,reason:str,raw:str", &dead_schema, err, sizeof(err));
	schema_parse("seq:i64,key:i64,value:i64", &gen_schema, err, sizeof(err));
}

static src *src_new(const op_ops *ops, int subtask, int parallelism)
{
	src *s = calloc(1, sizeof(*s));
	schemas();
	snprintf(s->node.name, sizeof(s->node.name), "src");
	s->node.ops = ops;
	s->cfg.batch_rows = ROWS;
	s->sink.ops = &cap_ops;
	s->sink.watermark = s->sink.out_watermark = INT64_MIN;
	s->dsink.ops = &dead_ops;
	s->o = (outlet){ .kind = OUT_CHAIN, .owner = &s->t, .next = &s->sink };
	s->od = (outlet){ .kind = OUT_CHAIN, .owner = &s->t, .next = &s->dsink };
	s->t.ops = ops;
	s->t.node = &s->node;
	s->t.cfg = &s->cfg;
	s->t.subtask = subtask;
	s->t.parallelism = parallelism;
	s->t.actor = &s->a;
	s->t.watermark = s->t.out_watermark = INT64_MIN;
	s->t.nports = 1;
	s->t.nout[0] = 1;
	s->t.out[0] = &s->o;
	return s;
}

static src *text_src(const char *file, int subtask, int parallelism)
{
	src *s = src_new(&op_file_source, subtask, parallelism);
	s->fconf.kind = SRC_TEXT;
	s->fconf.ts_col = -1;
	snprintf(s->fconf.path, sizeof(s->fconf.path), "%s", file);
	s->node.conf = &s->fconf;
	s->node.schema[0] = &line_schema;
	cr_assert_eq(s->t.ops->open(&s->t), 0);
	return s;
}

static src *csv_src(const char *file)
{
	src *s = src_new(&op_file_source, 0, 1);
	s->fconf.kind = SRC_CSV;
	s->fconf.header = true;
	s->fconf.ts_col = -1;
	s->fconf.schema = &csv_schema;
	snprintf(s->fconf.path, sizeof(s->fconf.path), "%s", file);
	s->node.conf = &s->fconf;
	s->node.nports = 2;
	s->node.schema[0] = &csv_schema;
	s->node.schema[1] = &dead_schema;
	s->t.nports = 2;
	s->t.nout[1] = 1;
	s->t.out[1] = &s->od;
	s->wo = (weir_out){ .t = &s->t, .port = 1, .schema = &dead_schema };
	s->t.emit[1] = &s->wo;
	cr_assert_eq(s->t.ops->open(&s->t), 0);
	return s;
}

static src *gen_src(uint64_t count, int subtask, int parallelism)
{
	src *s = src_new(&op_generator, subtask, parallelism);
	s->gconf = (weir_generator_conf){ .count = count, .seed = 1 };
	s->node.conf = &s->gconf;
	s->node.schema[0] = &gen_schema;
	cr_assert_eq(s->t.ops->open(&s->t), 0);
	return s;
}

/* Up to `calls` produce() calls (-1: until the source ends); the source's
 * last return value. */
static int run(src *s, int calls)
{
	int rc = 1;
	for (int i = 0; calls < 0 || i < calls; i++) {
		rc = s->t.ops->produce(&s->t);
		task_flush(&s->t);
		if (rc < 0)
			break;
		cr_assert_gt(rc, 0, "a file source with input left did nothing");
	}
	return rc;
}

static snap_buf snapshot(src *s, int64_t id)
{
	snap_buf b = { 0 };
	cr_assert_eq(s->t.ops->snapshot(&s->t, id, &b), 0);
	return b;
}

static void src_free(src *s)
{
	s->t.ops->close(&s->t);
	free(s);
}

/* ---- text -------------------------------------------------------------------------------- */

/* Lines "L<i>" padded with i % 37 'x' (ranges cut lines anywhere); the last
 * one without '\n', one with CRLF, one empty. */
static long write_text(const char *file, long n)
{
	FILE *f = fopen(file, "w");
	cr_assert_not_null(f);
	for (long i = 0; i < n; i++) {
		fprintf(f, "L%ld", i);
		for (long k = 0; k < i % 37; k++)
			fputc('x', f);
		if (i == n - 1)
			break;
		fputs(i == 17 ? "\r\n" : "\n", f);
	}
	fclose(f);
	return n;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every line of the file was captured exactly once. */
static void expect_each_line_once(long n)
{
	cr_assert_eq(cap.n, n, "%ld lines captured, %ld in the file", cap.n, n);
	qsort(cap.str, (size_t)cap.n, sizeof(*cap.str), cmp_str);
	for (long i = 1; i < cap.n; i++)
		cr_assert_str_neq(cap.str[i], cap.str[i - 1], "'%s' twice", cap.str[i]);
	for (long i = 0; i < cap.n; i++)
		cr_assert_eq(cap.str[i][0], 'L', "bad line '%s'", cap.str[i]);
}

/* Old subtasks run calls[s] produce calls (-1: to the end), snapshot; new
 * ones restore from all blobs and run to the end. */
static void text_rescale(long lines, int old_p, const int *calls, int new_p)
{
	const char *file = path("text.txt");
	snap_buf bufs[16];
	op_blob blobs[16];

	cap_reset();
	write_text(file, lines);
	for (int s = 0; s < old_p; s++) {
		src *x = text_src(file, s, old_p);
		run(x, calls[s]);
		bufs[s] = snapshot(x, calls[s] < 0 ? CKPT_FINAL : 1);
		blobs[s] = (op_blob){ .subtask = s, .p = bufs[s].p, .len = bufs[s].len };
		src_free(x);
	}
	op_restore r = { .old_parallelism = old_p, .n = old_p, .blobs = blobs };
	for (int s = 0; s < new_p; s++) {
		src *x = text_src(file, s, new_p);
		cr_assert_eq(x->t.ops->restore(&x->t, &r), 0);
		cr_assert_eq(run(x, -1), -1);
		src_free(x);
	}
	expect_each_line_once(lines);
	for (int s = 0; s < old_p; s++)
		snap_free(&bufs[s]);
}

Test(sources, text_restore_same_parallelism)
{
	static const int calls[] = { 3, 0, 1 };
	text_rescale(5000, 3, calls, 3);
}

Test(sources, text_restore_rescaled_down_and_up)
{
	static const int calls[] = { 2, -1, 0, 5, 1 };
	text_rescale(5000, 5, calls, 2);
	text_rescale(5000, 3, calls, 7);
	text_rescale(5000, 2, calls + 3, 1);
}

Test(sources, text_restore_at_every_position)
{
	/* a snapshot after every produce call of a subtask: restoring any
	 * of them yields the rest, exactly */
	const char *file = path("text.txt");
	long lines = write_text(file, 700);
	for (int k = 0;; k++) {
		cap_reset();
		src *a = text_src(file, 1, 2);
		int rc = run(a, k);
		snap_buf b = snapshot(a, 1);
		src_free(a);
		src *b0 = text_src(file, 0, 2);
		run(b0, -1);
		src_free(b0);
		op_blob blob = { .subtask = 1, .p = b.p, .len = b.len };
		op_restore r = { .old_parallelism = 2, .n = 1, .blobs = &blob };
		src *c = text_src(file, 1, 2);
		cr_assert_eq(c->t.ops->restore(&c->t, &r), 0);
		run(c, -1);
		src_free(c);
		snap_free(&b);
		expect_each_line_once(lines);
		if (rc < 0)
			break;
	}
}

Test(sources, an_ended_source_restores_to_nothing)
{
	const char *file = path("text.txt");
	cap_reset();
	write_text(file, 100);
	src *a = text_src(file, 0, 1);
	run(a, -1);
	snap_buf b = snapshot(a, CKPT_FINAL);
	src_free(a);
	cr_assert_eq(b.len, 6, "an ended source writes no splits");
	op_blob blob = { .subtask = 0, .p = b.p, .len = b.len };
	op_restore r = { .old_parallelism = 1, .n = 1, .blobs = &blob };
	a = text_src(file, 0, 1);
	cr_assert_eq(a->t.ops->restore(&a->t, &r), 0);
	cr_assert_eq(a->t.ops->produce(&a->t), -1);
	src_free(a);
	expect_each_line_once(100);
	snap_free(&b);
}

/* ---- CSV --------------------------------------------------------------------------------- */

/* A header, rows "k<i>,<i>", every 10th one malformed, every 7th key quoted
 * with a newline inside (two lines).  Returns the good rows; the line
 * numbers of the bad ones go to bad[]. */
static long write_csv(const char *file, long n, int64_t *bad, long *nbad)
{
	FILE *f = fopen(file, "w");
	long line = 1, good = 0;
	*nbad = 0;
	fputs("k,v\n", f);
	line++;
	for (long i = 0; i < n; i++) {
		if (i % 10 == 3) {
			fprintf(f, "bad%ld,notanumber\n", i);
			bad[(*nbad)++] = line++;
		} else if (i % 7 == 0) {
			fprintf(f, "\"k%ld\nmore\",%ld\n", i, i);
			line += 2;
			good++;
		} else {
			fprintf(f, "k%ld,%ld\n", i, i);
			line++;
			good++;
		}
	}
	fclose(f);
	return good;
}

static void csv_case(int calls)
{
	const char *file = path("in.csv");
	int64_t bad[1024];
	long nbad;
	long good = write_csv(file, 2000, bad, &nbad);

	cap_reset();
	src *a = csv_src(file);
	run(a, calls);
	snap_buf b = snapshot(a, 1);
	src_free(a);
	op_blob blob = { .subtask = 0, .p = b.p, .len = b.len };
	op_restore r = { .old_parallelism = 1, .n = 1, .blobs = &blob };
	a = csv_src(file);
	cr_assert_eq(a->t.ops->restore(&a->t, &r), 0);
	cr_assert_eq(run(a, -1), -1);
	src_free(a);
	snap_free(&b);

	cr_assert_eq(cap.n, good, "calls %d: %ld rows, expected %ld", calls, cap.n, good);
	for (long i = 0; i < cap.n; i++) {
		char want[32];
		snprintf(want, sizeof(want), "k%ld", (long)cap.num[i]);
		cr_assert_eq(strncmp(cap.str[i], want, strlen(want)), 0, "row %s,%ld",
			     cap.str[i], (long)cap.num[i]);
		if (i)
			cr_assert_gt(cap.num[i], cap.num[i - 1], "duplicate or reordered row");
	}
	/* dead letters once each, with their line numbers; never the header */
	cr_assert_eq(cap.ndead, nbad, "calls %d: %ld dead letters, expected %ld", calls,
		     cap.ndead, nbad);
	for (long i = 0; i < nbad; i++)
		cr_assert_eq(cap.dead[i], bad[i], "dead letter %ld: line %ld, expected %ld",
			     i, (long)cap.dead[i], (long)bad[i]);
}

Test(sources, csv_restore_keeps_header_and_line_numbers)
{
	/* before the header was read, mid-file, after the end */
	for (int calls = 0; calls < 40; calls += 3)
		csv_case(calls);
	csv_case(-1);
}

/* ---- generator ---------------------------------------------------------------------------- */

Test(sources, generator_bounded_restore_rescaled)
{
	static const int calls[3] = { 1, 0, 5 };
	snap_buf bufs[3];
	op_blob blobs[3];
	const uint64_t count = 3000;

	cap_reset();
	for (int s = 0; s < 3; s++) {
		src *x = gen_src(count, s, 3);
		run(x, calls[s]);
		bufs[s] = snapshot(x, 1);
		blobs[s] = (op_blob){ .subtask = s, .p = bufs[s].p, .len = bufs[s].len };
		src_free(x);
	}
	op_restore r = { .old_parallelism = 3, .n = 3, .blobs = blobs };
	for (int s = 0; s < 2; s++) {
		src *x = gen_src(count, s, 2);
		cr_assert_eq(x->t.ops->restore(&x->t, &r), 0);
		cap.increasing = true;
		cap.last_id = -1;
		run(x, -1);
		cr_assert(cap.increasing, "subtask %d: ids out of order", s);
		src_free(x);
	}
	cr_assert_eq(cap.n, (long)count);
	char *seen = calloc(count, 1);
	for (long i = 0; i < cap.n; i++) {
		cr_assert_lt(cap.num[i], (int64_t)count);
		cr_assert(!seen[cap.num[i]], "id %ld twice", (long)cap.num[i]);
		seen[cap.num[i]] = 1;
	}
	free(seen);
	for (int s = 0; s < 3; s++)
		snap_free(&bufs[s]);
}

Test(sources, generator_unbounded_restore_merges_block_sequences)
{
	static const int calls[3] = { 2, 3, 0 };
	snap_buf bufs[3];
	op_blob blobs[3];

	cap_reset();
	for (int s = 0; s < 3; s++) {
		src *x = gen_src(0, s, 3);
		run(x, calls[s]);
		bufs[s] = snapshot(x, 1);
		blobs[s] = (op_blob){ .subtask = s, .p = bufs[s].p, .len = bufs[s].len };
		src_free(x);
	}
	op_restore r = { .old_parallelism = 3, .n = 3, .blobs = blobs };
	for (int s = 0; s < 2; s++) {
		src *x = gen_src(0, s, 2);
		/* a different batch size now: the saved blocks keep theirs */
		x->cfg.batch_rows = 16;
		cr_assert_eq(x->t.ops->restore(&x->t, &r), 0);
		cap.increasing = true;
		cap.last_id = -1;
		run(x, 40);
		cr_assert(cap.increasing, "subtask %d: ids out of order", s);
		src_free(x);
	}
	/* per old subtask, the ids form a prefix of its blocks (no gap, no
	 * repeat): blocks b of ROWS ids with b % 3 == s */
	for (int s = 0; s < 3; s++) {
		int64_t next = (int64_t)s * ROWS;
		long got = 0;
		for (;;) {
			long k;
			for (k = 0; k < cap.n && cap.num[k] != next; k++)
				;
			if (k == cap.n)
				break;
			got++;
			next++;
			if (next % ROWS == 0)
				next += 2 * ROWS;
		}
		long mine = 0;
		for (long k = 0; k < cap.n; k++)
			mine += (cap.num[k] / ROWS) % 3 == s;
		cr_assert_eq(got, mine, "old subtask %d: a gap or a repeat", s);
		cr_assert_gt(got, 0);
	}
	for (int s = 0; s < 3; s++)
		snap_free(&bufs[s]);
}

/* ---- rate-capped jobs on the runtime ------------------------------------------------------ */

static long count_lines(const char *file)
{
	FILE *f = fopen(file, "r");
	long n = 0;
	int c;
	cr_assert_not_null(f);
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static double seconds_since(uint64_t t0)
{
	return (double)(now_ns() - t0) / 1e9;
}

Test(sources, text_source_rate_cap)
{
	const char *file = path("text.txt");
	write_text(file, 5000);
	for (int p = 1; p <= 2; p++) {
		weir_env *env = env_p(p, 256);
		weir_stream *s = weir_source_text_file(env, "lines", file);
		cr_assert_eq(weir_source_set_rate(s, 20000), 0);
		weir_sink_csv(s, "out", path("out.csv"));
		uint64_t t0 = now_ns();
		run_ok(env);
		double took = seconds_since(t0);
		/* 5000 rows at 20000/s over all subtasks: 0.25 s at least */
		cr_assert_geq(took, 0.2, "p=%d: 5000 rows at 20000/s took %.3f s", p, took);
		cr_assert_eq(count_lines(path("out.csv")), 5000);
	}
}

Test(sources, csv_source_rate_cap)
{
	int64_t bad[1024];
	long nbad;
	long good = write_csv(path("in.csv"), 2000, bad, &nbad);
	weir_env *env = env_p(1, 256);
	weir_stream *s = weir_source_csv(env, "csv", path("in.csv"),
					 weir_schema_parse(env, "k:str,v:i64"), true, NULL);
	cr_assert_eq(weir_source_set_rate(s, 10000), 0);
	weir_sink_csv(s, "out", path("out.csv"));
	weir_sink_csv(weir_csv_dead_letters(s), "dead", path("dead.csv"));
	uint64_t t0 = now_ns();
	run_ok(env);
	double took = seconds_since(t0);
	cr_assert_geq(took, 0.15, "2000 records at 10000/s took %.3f s", took);
	cr_assert_eq(count_lines(path("dead.csv")), nbad);
	(void)good;
}

Test(sources, generator_takes_the_tighter_rate)
{
	/* its own rate 0, set_rate 4000: 800 rows take 0.2 s */
	weir_env *env = env_p(2, 64);
	weir_generator_conf g = { .count = 800 };
	weir_stream *s = weir_source_generator(env, "gen", &g);
	cr_assert_eq(weir_source_set_rate(s, 4000), 0);
	weir_sink_csv(s, "out", path("g1.csv"));
	uint64_t t0 = now_ns();
	run_ok(env);
	double took = seconds_since(t0);
	cr_assert_geq(took, 0.15, "800 rows at 4000/s took %.3f s", took);
	cr_assert_eq(count_lines(path("g1.csv")), 800);

	/* its own rate 2000, set_rate far above: 400 rows take 0.2 s */
	env = env_p(1, 64);
	g = (weir_generator_conf){ .count = 400, .rate = 2000 };
	s = weir_source_generator(env, "gen", &g);
	cr_assert_eq(weir_source_set_rate(s, 1e9), 0);
	weir_sink_csv(s, "out", path("g2.csv"));
	t0 = now_ns();
	run_ok(env);
	took = seconds_since(t0);
	cr_assert_geq(took, 0.15, "400 rows at 2000/s took %.3f s", took);
	cr_assert_eq(count_lines(path("g2.csv")), 400);
}

Test(sources, set_rate_only_on_sources)
{
	weir_env *env = env_p(1, 64);
	weir_generator_conf g = { .count = 10 };
	weir_stream *s = weir_source_generator(env, "gen", &g);
	cr_assert_eq(weir_source_set_rate(NULL, 5), -EINVAL);
	cr_assert_eq(weir_source_set_rate(s, 0), 0);
	cr_assert_eq(stream_node(s)->rate, 0);
	cr_assert_eq(weir_source_set_rate(s, 12.5), 0);
	cr_assert_eq(stream_node(s)->rate, 12.5);
	cr_assert_null(weir_env_error(env));
	weir_stream *p = weir_project(s, "p", "seq");
	cr_assert_eq(weir_source_set_rate(p, 5), -EINVAL);
	cr_assert_not_null(strstr(weir_env_error(env), "not a source"));
	weir_env_free(env);

	env = env_p(1, 64);
	s = weir_source_generator(env, "gen", &g);
	cr_assert_eq(weir_source_set_rate(s, -1), -EINVAL);
	cr_assert_not_null(weir_env_error(env));
	weir_env_free(env);
}

Test(sources, stdin_and_pipes_are_not_replayable)
{
	weir_env *env = env_p(1, 64);
	write_text(path("t.txt"), 3);
	cr_assert_eq(mkfifo(path("fifo"), 0600), 0);
	cr_assert(stream_node(weir_source_stdin(env, "in"))->not_replayable);
	cr_assert(!stream_node(weir_source_text_file(env, "t", path("t.txt")))->not_replayable);
	cr_assert(stream_node(weir_source_text_file(env, "f", path("fifo")))->not_replayable);
	weir_env_free(env);
}
