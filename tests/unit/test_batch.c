/* SPDX-License-Identifier: Apache-2.0 */
/* Schemas and batches: parsing, layout, rows, strings, compaction, jumbo. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>

#include "core.h"

static pool_set *ps;

static void setup(void)
{
	ps = pool_set_new(1, 32 * 1024, 256, 64);
	pool_bind_thread(ps, 0);
}

static void teardown(void)
{
	cr_assert_eq(pool_outstanding(pool_current()), 0, "a batch leaked");
	pool_bind_thread(NULL, 0);
	pool_set_free(ps);
}

TestSuite(batch, .init = setup, .fini = teardown);

static weir_schema parse(const char *spec)
{
	weir_schema s;
	char err[256];
	cr_assert_eq(schema_parse(spec, &s, err, sizeof(err)), 0, "%s", err);
	return s;
}

Test(batch, schema_parse_and_errors)
{
	weir_schema s = parse("id:i64,price:f64,ok:bool,t:ts,name:str");
	char err[256];
	cr_assert_eq(s.ncols, 5);
	cr_assert_eq(s.fields[4].type, WEIR_STR);
	cr_assert_eq(weir_schema_find(&s, "t"), 3);
	cr_assert_eq(weir_schema_find(&s, "nope"), -ENOENT);
	cr_assert_eq(schema_parse("a:int", &s, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "unknown type 'int'"), "%s", err);
	cr_assert_eq(schema_parse("a", &s, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "no ':type'"), "%s", err);
	cr_assert_eq(schema_parse("a:i64,a:str", &s, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "duplicate column 'a'"), "%s", err);
	cr_assert_eq(schema_parse("", &s, err, sizeof(err)), -EINVAL);
	cr_assert_eq(schema_parse(":i64", &s, err, sizeof(err)), -EINVAL);
}

Test(batch, layout_is_aligned_and_in_one_block)
{
	weir_schema s = parse("a:i64,b:bool,c:str,d:f64");
	weir_batch *b = batch_alloc(&s, 0);
	cr_assert_eq(b->capacity, 256);
	cr_assert_eq((uintptr_t)b->ts % 64, 0);
	for (int i = 0; i < s.ncols; i++) {
		cr_assert_eq((uintptr_t)b->cols[i] % 64, 0);
		cr_assert((char *)b->cols[i] > (char *)b &&
			  (char *)b->cols[i] < (char *)b + 32 * 1024);
	}
	cr_assert((char *)b->heap + b->heap_cap == (char *)b + 32 * 1024);
	batch_release(b);
}

Test(batch, append_rows_strings_and_full_heap)
{
	weir_schema s = parse("k:str,v:i64");
	weir_batch *src = batch_alloc(&s, 0), *dst = batch_alloc(&s, 0);
	char big[4000];
	memset(big, 'x', sizeof(big));
	for (uint32_t r = 0; r < 100; r++) {
		cr_assert_eq(weir_batch_set_str(src, 0, r, big, sizeof(big)) == 0,
			     (r + 1) * sizeof(big) <= src->heap_cap);
		weir_col_i64(src, 1)[r] = r;
		src->ts[r] = 1000 + r;
		if ((r + 1) * sizeof(big) > src->heap_cap) {
			src->rows = r;
			break;
		}
	}
	cr_assert_gt(src->rows, 2);
	uint32_t n = 0;
	while (n < src->rows && batch_append_row(dst, src, n))
		n++;
	cr_assert_eq(n, src->rows, "copied %u of %u", n, src->rows);
	cr_assert_eq(dst->ts[1], 1001);
	cr_assert_eq(weir_col_i64(dst, 1)[1], 1);
	cr_assert_eq(batch_row_heap(dst, 0), sizeof(big));
	/* The heap is now as full as src's: one more row does not fit. */
	cr_assert_not(batch_append_row(dst, src, 0));
	cr_assert_eq(weir_batch_set_str(dst, 0, 0, big, sizeof(big)), -ENOSPC);
	batch_release(src);
	batch_release(dst);
}

Test(batch, compact_keeps_selected_rows_in_order)
{
	weir_schema s = parse("a:i64,b:bool,c:str");
	weir_batch *b = batch_alloc(&s, 0);
	uint8_t keep[10];
	for (uint32_t r = 0; r < 10; r++) {
		weir_col_i64(b, 0)[r] = r;
		weir_col_bool(b, 1)[r] = r & 1;
		char t[8];
		int n = snprintf(t, sizeof(t), "s%u", r);
		weir_batch_set_str(b, 2, r, t, (size_t)n);
		b->ts[r] = r * 10;
		keep[r] = r % 3 == 0;
	}
	b->rows = 10;
	batch_compact(b, keep);
	cr_assert_eq(b->rows, 4);
	for (uint32_t r = 0; r < 4; r++) {
		uint32_t len;
		const char *p = weir_batch_str(b, 2, r, &len);
		char want[8];
		snprintf(want, sizeof(want), "s%u", r * 3);
		cr_assert_eq(weir_col_i64(b, 0)[r], r * 3);
		cr_assert_eq(weir_col_bool(b, 1)[r], (r * 3) & 1);
		cr_assert_eq(b->ts[r], r * 30);
		cr_assert(len == strlen(want) && !memcmp(p, want, len));
	}
	batch_release(b);
}

Test(batch, jumbo_row_and_slice_copy)
{
	weir_schema s = parse("k:str");
	size_t n = 200 * 1024; /* larger than a 32 KiB block */
	char *big = malloc(n);
	memset(big, 'y', n);
	weir_batch *b = batch_alloc(&s, n);
	cr_assert_geq(b->heap_cap, n);
	cr_assert_eq(weir_batch_set_str(b, 0, 0, big, n), 0);
	b->rows = 1;
	weir_batch *c = batch_slice_copy(b, 0, 1);
	cr_assert_eq(c->rows, 1);
	uint32_t len;
	const char *p = weir_batch_str(c, 0, 0, &len);
	cr_assert_eq(len, n);
	cr_assert_eq(p[n - 1], 'y');
	batch_release(b);
	batch_release(c);
	free(big);
}

Test(batch, blocks_are_recycled)
{
	weir_schema s = parse("a:i64");
	for (int i = 0; i < 1000; i++)
		batch_release(batch_alloc(&s, 0));
	cr_assert_eq(pool_blocks_allocated(pool_current()), 1);
	cr_assert(pool_has_room(pool_current()));
}
