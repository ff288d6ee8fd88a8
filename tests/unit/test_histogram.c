/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Log-linear histograms (core/histogram.h): the bucket layout (contiguous,
 * exact below 256, no bucket wider than 1/128 of its lowest value), the
 * error bound of every percentile against the exact nearest-rank value of
 * the sorted input over random distributions spanning 100 ns .. 100 s,
 * merging (equal to recording everything in one), and the extremes: empty,
 * one value, zero, the largest value kept, and values outside the range,
 * clamped and counted.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "histogram.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t x = (rng_state += 0x9e3779b97f4a7c15ULL);
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Uniform in [0, 1). */
static double unif(void)
{
	return (double)(rnd() >> 11) / 9007199254740992.0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

Test(histogram, buckets_are_contiguous_and_narrow)
{
	cr_assert_eq(hist_index(0), 0);
	cr_assert_eq(hist_index((uint64_t)HIST_MAX_VALUE), HIST_BUCKETS - 1);
	cr_assert_eq(hist_bucket_low(0), 0);
	cr_assert_eq(hist_bucket_high(HIST_BUCKETS - 1), HIST_MAX_VALUE);
	for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
		int64_t lo = hist_bucket_low(i), hi = hist_bucket_high(i);
		cr_assert_leq(lo, hi);
		if (i + 1 < HIST_BUCKETS)
			cr_assert_eq(hi + 1, hist_bucket_low(i + 1), "gap after bucket %u", i);
		cr_assert_eq(hist_index((uint64_t)lo), i);
		cr_assert_eq(hist_index((uint64_t)hi), i);
		if (lo < 256)
			cr_assert_eq(lo, hi, "values below 256 are exact");
		else
			cr_assert_leq((hi - lo + 1) * 128, lo, "bucket %u too wide", i);
	}
	/* Every value up to 2^20, and random ones above, fall in their bucket. */
	for (uint64_t v = 0; v < (1u << 20); v++) {
		uint32_t i = hist_index(v);
		cr_assert((uint64_t)hist_bucket_low(i) <= v && v <= (uint64_t)hist_bucket_high(i));
	}
	rng_state = 1;
	for (int k = 0; k < 1000000; k++) {
		uint64_t v = rnd() & (uint64_t)HIST_MAX_VALUE;
		uint32_t i = hist_index(v);
		cr_assert((uint64_t)hist_bucket_low(i) <= v && v <= (uint64_t)hist_bucket_high(i));
	}
	cr_assert_lt(sizeof(hist), 32 * 1024, "fixed memory: %zu bytes", sizeof(hist));
}

typedef int64_t (*dist_fn)(void);

/* 100 ns .. 100 s, uniform in log: every octave of the range. */
static int64_t log_uniform(void)
{
	return (int64_t)exp(log(100.0) + unif() * (log(1e11) - log(100.0)));
}

/* A latency-like shape: most values near 2 us, an exponential tail, and
 * rare stalls of milliseconds to seconds. */
static int64_t latency_like(void)
{
	double u = unif();
	if (u < 0.999)
		return 1500 + (int64_t)(-log(1 - unif()) * 800);
	return (int64_t)(1e6 * exp(unif() * log(1e4)));
}

static int64_t uniform_wide(void)
{
	return 100 + (int64_t)(unif() * 1e11);
}

/* Small integers: every percentile exact. */
static int64_t small(void)
{
	return (int64_t)(rnd() % 256);
}

/* Few distinct values, many ties. */
static int64_t ties(void)
{
	static const int64_t v[] = { 100, 1000, 12345, 999999, 100000000000LL };
	return v[rnd() % 5];
}

static void check_distribution(const char *name, dist_fn f, int n, uint64_t seed)
{
	int64_t *v = malloc((size_t)n * sizeof(*v));
	hist *h = hist_new();
	cr_assert(v && h);
	rng_state = seed;
	for (int i = 0; i < n; i++) {
		v[i] = f();
		hist_record(h, v[i]);
	}
	qsort(v, (size_t)n, sizeof(*v), cmp_i64);
	cr_assert_eq(hist_count(h), (uint64_t)n);
	cr_assert_eq(h->min, v[0]);
	cr_assert_eq(h->max, v[n - 1]);
	cr_assert_eq(h->under + h->over, 0);
	/* Percentiles in units of 0.01%: nearest rank ceil(q * n / 10000). */
	static const int q[] = { 0, 1, 100, 1000, 2500, 5000, 7500, 9000, 9900, 9950,
				 9990, 9999, 10000 };
	for (size_t k = 0; k < sizeof(q) / sizeof(q[0]); k++) {
		uint64_t rank = ((uint64_t)q[k] * (uint64_t)n + 9999) / 10000;
		if (rank < 1)
			rank = 1;
		int64_t exact = v[rank - 1];
		int64_t got = hist_percentile(h, q[k] / 100.0);
		cr_assert_geq(got, exact, "%s p%g: %lld below the exact %lld", name,
			      q[k] / 100.0, (long long)got, (long long)exact);
		cr_assert_leq((double)(got - exact), 0.01 * (double)exact,
			      "%s p%g: %lld vs exact %lld (%.4f%%)", name, q[k] / 100.0,
			      (long long)got, (long long)exact,
			      100.0 * (double)(got - exact) / (double)exact);
		if (exact < 256)
			cr_assert_eq(got, exact, "%s p%g: small values are exact", name,
				     q[k] / 100.0);
	}
	cr_assert_eq(hist_percentile(h, 100), v[n - 1]);
	free(v);
	hist_free(h);
}

Test(histogram, percentiles_within_one_percent_of_exact)
{
	check_distribution("log-uniform", log_uniform, 200000, 7);
	check_distribution("latency-like", latency_like, 300000, 8);
	check_distribution("uniform", uniform_wide, 100000, 9);
	check_distribution("small", small, 50000, 10);
	check_distribution("ties", ties, 10001, 11);
	for (uint64_t seed = 100; seed < 120; seed++)
		check_distribution("log-uniform, few", log_uniform, 1 + (int)(seed % 37), seed);
}

Test(histogram, merge_equals_recording_everything_in_one)
{
	hist *all = hist_new(), *parts[4], *m = hist_new(), *empty = hist_new();
	cr_assert(all && m && empty);
	for (int k = 0; k < 4; k++)
		cr_assert((parts[k] = hist_new()));
	rng_state = 3;
	for (int i = 0; i < 100000; i++) {
		int64_t v = i % 1000 == 0  ? -5
			    : i % 777 == 0 ? HIST_MAX_VALUE + 9
					   : log_uniform();
		hist_record(all, v);
		hist_record(parts[rnd() % 3], v); /* parts[3] stays empty */
	}
	hist_merge(m, empty);
	cr_assert_eq(hist_count(m), 0);
	for (int k = 0; k < 4; k++)
		hist_merge(m, parts[k]);
	hist_merge(m, empty);
	cr_assert_eq(m->count, all->count);
	cr_assert_eq(m->under, all->under);
	cr_assert_eq(m->over, all->over);
	cr_assert_eq(m->min, all->min);
	cr_assert_eq(m->max, all->max);
	cr_assert_eq(memcmp(m->buckets, all->buckets, sizeof(all->buckets)), 0);
	for (double p = 0; p <= 100; p += 0.5)
		cr_assert_eq(hist_percentile(m, p), hist_percentile(all, p));
	/* Merging into an empty histogram copies min and max, even when
	 * they are above every other histogram's. */
	hist *one = hist_new(), *neg = hist_new();
	hist_record(one, 5);
	hist_record(neg, 7);
	hist_merge(neg, one);
	cr_assert_eq(neg->min, 5);
	cr_assert_eq(neg->max, 7);
	hist_free(one);
	hist_free(neg);
	for (int k = 0; k < 4; k++)
		hist_free(parts[k]);
	hist_free(all);
	hist_free(m);
	hist_free(empty);
}

Test(histogram, extremes)
{
	hist h;
	hist_init(&h);
	/* Empty. */
	cr_assert_eq(hist_count(&h), 0);
	cr_assert_eq(hist_percentile(&h, 50), 0);
	cr_assert_eq(hist_percentile(&h, 100), 0);
	cr_assert_eq(hist_count_at_least(&h, 0), 0);
	/* One value: every percentile is it (clamped to [min, max]). */
	hist_record(&h, 123456789);
	for (double p = 0; p <= 100; p += 12.5)
		cr_assert_eq(hist_percentile(&h, p), 123456789);
	/* Zero and the largest value kept are exact at the ends. */
	hist_init(&h);
	hist_record(&h, 0);
	hist_record(&h, HIST_MAX_VALUE);
	cr_assert_eq(hist_percentile(&h, 0), 0);
	cr_assert_eq(hist_percentile(&h, 50), 0);
	cr_assert_eq(hist_percentile(&h, 50.1), HIST_MAX_VALUE);
	cr_assert_eq(hist_percentile(&h, 100), HIST_MAX_VALUE);
	cr_assert_eq(h.under + h.over, 0);
	/* Outside the range: clamped into the end buckets and counted; the
	 * exact min and max stay. */
	hist_init(&h);
	hist_record(&h, -1);
	hist_record(&h, INT64_MIN);
	hist_record(&h, HIST_MAX_VALUE + 1);
	hist_record(&h, INT64_MAX);
	hist_record(&h, 1000);
	cr_assert_eq(hist_count(&h), 5);
	cr_assert_eq(h.under, 2);
	cr_assert_eq(h.over, 2);
	cr_assert_eq(h.min, INT64_MIN);
	cr_assert_eq(h.max, INT64_MAX);
	cr_assert_eq(h.buckets[0], 2);
	cr_assert_eq(h.buckets[HIST_BUCKETS - 1], 2);
	cr_assert_eq(hist_percentile(&h, 100), INT64_MAX);
	cr_assert_eq(hist_percentile(&h, 80), HIST_MAX_VALUE, "clamped above");
	cr_assert_geq(hist_percentile(&h, 60), 1000);
	cr_assert_leq(hist_percentile(&h, 60), 1010);
	cr_assert_eq(hist_percentile(&h, 40), 0, "clamped below");
	/* record_n is n records. */
	hist g;
	hist_init(&g);
	hist_record_n(&g, 5000, 3);
	hist_record_n(&g, 7, 1);
	cr_assert_eq(hist_count(&g), 4);
	cr_assert_eq(hist_percentile(&g, 25), 7);
	cr_assert_geq(hist_percentile(&g, 26), 5000);
	cr_assert_leq(hist_percentile(&g, 26), 5000 * 1.01);
}

Test(histogram, count_at_least)
{
	hist h;
	hist_init(&h);
	for (int64_t v = 0; v < 10000; v++)
		hist_record(&h, v * 1000); /* 0 .. 9.999 ms */
	cr_assert_eq(hist_count_at_least(&h, 0), 10000);
	cr_assert_eq(hist_count_at_least(&h, -7), 10000);
	/* values >= 5 ms: 5000, give or take 5 ms's bucket (1/128 wide) */
	uint64_t n = hist_count_at_least(&h, 5000000);
	cr_assert(n >= 5000 && n <= 5000 + 5000 / 128 + 1, "%llu", (unsigned long long)n);
	cr_assert_eq(hist_count_at_least(&h, INT64_MAX), 0);
}
