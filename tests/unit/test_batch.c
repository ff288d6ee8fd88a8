/* SPDX-License-Identifier: Apache-2.0 */
/* Schemas and batches: parsing, layout, rows, strings, compaction, jumbo. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <sys/uio.h>

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

/* The codec of in-flight data (unaligned checkpoints): every type, empty
 * strings, a batch bigger than a block (decodes into a jumbo), and every
 * truncation, bit flip and schema mismatch refused or decoded safely. */
Test(batch, codec_round_trip_and_refusals)
{
	weir_schema s = parse("a:i64,b:bool,c:str,d:f64,e:ts");
	weir_batch *b = batch_alloc(&s, 4000);
	for (uint32_t r = 0; r < 100; r++) {
		b->ts[r] = 1000 + r;
		weir_col_i64(b, 0)[r] = -(int64_t)r;
		weir_col_bool(b, 1)[r] = r % 3 == 0;
		char str[32];
		int n = snprintf(str, sizeof(str), "%.*s", (int)(r % 7), "abcdefg");
		cr_assert_eq(weir_batch_set_str(b, 2, r, str, (size_t)n), 0);
		weir_col_f64(b, 3)[r] = r * 0.5;
		weir_col_i64(b, 4)[r] = 7 * r;
		b->rows = r + 1;
	}
	size_t n = batch_encoded_size(b);
	char *buf = malloc(n);
	batch_encode(b, buf);
	weir_batch *d;
	cr_assert_eq(batch_decode(&s, buf, n, &d), 0);
	cr_assert_eq(d->rows, 100);
	for (uint32_t r = 0; r < 100; r++) {
		uint32_t l1, l2;
		const char *p1 = weir_batch_str(b, 2, r, &l1), *p2 = weir_batch_str(d, 2, r, &l2);
		cr_assert(d->ts[r] == b->ts[r] && weir_col_i64(d, 0)[r] == weir_col_i64(b, 0)[r] &&
			  weir_col_bool(d, 1)[r] == weir_col_bool(b, 1)[r] && l1 == l2 &&
			  !memcmp(p1, p2, l1) && weir_col_f64(d, 3)[r] == weir_col_f64(b, 3)[r] &&
			  weir_col_i64(d, 4)[r] == weir_col_i64(b, 4)[r], "row %u", r);
	}
	batch_release(d);
	/* Every truncation and appended byte is refused. */
	for (size_t cut = 0; cut < n; cut++)
		cr_assert_eq(batch_decode(&s, buf, cut, &d), -EBADMSG, "cut %zu", cut);
	char *longer = malloc(n + 8);
	memcpy(longer, buf, n);
	memset(longer + n, 0, 8);
	cr_assert_eq(batch_decode(&s, longer, n + 8, &d), -EBADMSG);
	free(longer);
	/* Another schema is refused. */
	weir_schema o = parse("a:i64,b:bool,c:i64,d:f64,e:ts");
	cr_assert_eq(batch_decode(&o, buf, n, &d), -EBADMSG);
	/* Flipped bytes: refused, or a batch of the schema (values are not
	 * checksummed here: the state log's frames are). */
	for (size_t i = 0; i < n; i += 3) {
		buf[i] ^= 0x41;
		int rc = batch_decode(&s, buf, n, &d);
		cr_assert(rc == 0 || rc == -EBADMSG);
		if (rc == 0) {
			cr_assert_leq(d->heap_used, d->heap_cap);
			batch_release(d);
		}
		buf[i] ^= 0x41;
	}
	free(buf);
	batch_release(b);
	/* A batch larger than a block comes back as a jumbo one. */
	weir_schema big = parse("x:str");
	b = batch_alloc(&big, 100000);
	char *blob = malloc(100000);
	memset(blob, 'q', 100000);
	cr_assert_eq(weir_batch_set_str(b, 0, 0, blob, 100000), 0);
	b->rows = 1;
	n = batch_encoded_size(b);
	buf = malloc(n);
	batch_encode(b, buf);
	cr_assert_eq(batch_decode(&big, buf, n, &d), 0);
	uint32_t len;
	const char *p = weir_batch_str(d, 0, 0, &len);
	cr_assert(len == 100000 && !memcmp(p, blob, len));
	batch_release(d);
	batch_release(b);
	free(buf);
	free(blob);
}

/* The network's gather list (batch_encode_iov) is the same bytes as the
 * codec's, with the event times and fixed-width columns pointing into the
 * batch; too few pieces allowed: refused. */
Test(batch, codec_gather_list_is_the_same_bytes)
{
	weir_schema s = parse("a:i64,b:bool,c:str,d:f64,e:ts");
	weir_batch *b = batch_alloc(&s, 4000);
	for (uint32_t r = 0; r < 77; r++) {
		b->ts[r] = 5000 + r;
		weir_col_i64(b, 0)[r] = (int64_t)r * 3;
		weir_col_bool(b, 1)[r] = r % 2;
		cr_assert_eq(weir_batch_set_str(b, 2, r, "xyz", r % 4), 0);
		weir_col_f64(b, 3)[r] = r * 0.25;
		weir_col_i64(b, 4)[r] = 11 * r;
		b->rows = r + 1;
	}
	size_t n = batch_encoded_size(b), len = 0;
	char *flat = malloc(n), *scratch = malloc(n), *gathered = malloc(n);
	batch_encode(b, flat);
	struct iovec iov[16];
	int k = batch_encode_iov(b, scratch, iov, 16, &len);
	cr_assert_gt(k, 1);
	cr_assert_eq(len, n);
	size_t off = 0;
	bool points_in = false;
	for (int i = 0; i < k; i++) {
		memcpy(gathered + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
		points_in |= iov[i].iov_base == (void *)b->ts ||
			     iov[i].iov_base == b->cols[0] || iov[i].iov_base == b->cols[3];
	}
	cr_assert(points_in, "no piece points into the batch");
	cr_assert_eq(memcmp(flat, gathered, n), 0);
	cr_assert_eq(batch_encode_iov(b, scratch, iov, 2, &len), 0);
	free(flat);
	free(scratch);
	free(gathered);
	batch_release(b);
}
