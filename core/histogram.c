/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Log-linear histograms: the functions that read, merge and make them.
 * Layout, error bound and the threading contract are in histogram.h;
 * recording is inline there.
 */
#include <stdlib.h>
#include <string.h>

#include "histogram.h"

static inline uint64_t ld(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

void hist_init(hist *h)
{
	memset(h, 0, sizeof(*h));
}

hist *hist_new(void)
{
	return calloc(1, sizeof(hist));
}

void hist_free(hist *h)
{
	free(h);
}

uint64_t hist_count(const hist *h)
{
	return ld(&h->count);
}

void hist_merge(hist *dst, const hist *src)
{
	uint64_t n = 0;
	int64_t lo = __atomic_load_n(&src->min, __ATOMIC_RELAXED);
	int64_t hi = __atomic_load_n(&src->max, __ATOMIC_RELAXED);

	/* Count what the buckets hold rather than trusting src->count, which
	 * a concurrent writer may have bumped before or after its bucket. */
	for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
		uint64_t c = ld(&src->buckets[i]);
		dst->buckets[i] += c;
		n += c;
	}
	if (!n)
		return;
	if (!dst->count || lo < dst->min)
		dst->min = lo;
	if (!dst->count || hi > dst->max)
		dst->max = hi;
	dst->count += n;
	dst->under += ld(&src->under);
	dst->over += ld(&src->over);
}

int64_t hist_percentile(const hist *h, double p)
{
	uint64_t count = ld(&h->count);
	int64_t lo = __atomic_load_n(&h->min, __ATOMIC_RELAXED);
	int64_t hi = __atomic_load_n(&h->max, __ATOMIC_RELAXED);

	if (!count)
		return 0;
	if (p >= 100)
		return hi;
	/* Nearest rank: ceil(p/100 * count), at least 1.  A product that
	 * is an integer but for rounding (99.9% of 1000 comes out as
	 * 999.0000000000001) is taken as that integer. */
	double x = p / 100.0 * (double)count;
	uint64_t rank = x > 0 ? (uint64_t)x : 0;
	if (x - (double)rank > 1e-9 * x)
		rank++;
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	uint32_t i;
	for (i = 0; i < HIST_BUCKETS - 1; i++) {
		seen += ld(&h->buckets[i]);
		if (seen >= rank)
			break;
	}
	int64_t v = hist_bucket_high(i);
	if (v > hi)
		v = hi;
	if (v < lo)
		v = lo;
	return v;
}

uint64_t hist_count_at_least(const hist *h, int64_t v)
{
	uint64_t n = 0;
	if (v < 0)
		v = 0;
	if (v > HIST_MAX_VALUE)
		v = HIST_MAX_VALUE;
	for (uint32_t i = hist_index((uint64_t)v); i < HIST_BUCKETS; i++)
		n += ld(&h->buckets[i]);
	return n;
}
