/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Log-linear histograms (HDR style) of non-negative integers -- latencies
 * in nanoseconds -- with a fixed memory footprint, O(1) recording that
 * never allocates, merging, and percentiles.  The metrics of
 * ARCHITECTURE.md's Observability: one histogram per core (or per
 * subtask), written only by its owner, merged when read.
 *
 * Buckets.  A value v is put in octave e = max(S, floor(log2 v)), S =
 * HIST_SUB_BITS, and within it into one of 2^S equal sub-buckets of width
 * 2^(e - S):
 *
 *   index(v) = (e - S) * 2^S + (v >> (e - S))
 *
 *   values         0 .. 255 | 256 .. 511 | 512 .. 1023 | ... | 2^36 .. 2^37-1
 *   bucket width       1    |      2     |      4      | ... |    2^29
 *   indices        0 .. 255 | 256 .. 383 | 384 .. 511  | ... | 3840 .. 3967
 *
 * so values below 256 are exact and every bucket is at most 1/128 of its
 * lowest value wide: a value read back is within 0.79% of the value
 * recorded, from 0 to HIST_MAX_VALUE (2^37 - 1 ns, 137 s), which covers
 * the 100 ns .. 100 s the latency harness asks for at <= 1%.  Values
 * outside [0, HIST_MAX_VALUE] are clamped into the first or last bucket
 * and counted (`under`, `over`); the exact minimum and maximum of the
 * values as given are kept beside the buckets.  31 KiB per histogram.
 *
 * Percentiles are nearest-rank: with the values sorted, pN is the value
 * of 1-based rank ceil(N/100 * count).  The histogram answers the highest
 * value of that value's bucket (never below the true value, at most 0.79%
 * above it, as HdrHistogram does), clamped to [min, max]; p100 is max.
 *
 * Threading: one writer (the owner core) records; any thread may read
 * (merge, percentiles) at any time.  The writer updates every field with
 * relaxed atomic stores of plain read-modify-writes (like metric_add in
 * core.h: no locked instruction, no shared atomic in the data path), so a
 * concurrent reader sees each field whole but may see the fields of one
 * record() at different moments (count ahead of a bucket); once the
 * writer stopped and the reader synchronised with it (a thread join), the
 * reading is exact.
 */
#ifndef WEIR_HISTOGRAM_H
#define WEIR_HISTOGRAM_H

#include <stddef.h>
#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_MAX_BITS 37
#define HIST_SUB_COUNT (1u << HIST_SUB_BITS)
#define HIST_BUCKETS ((HIST_MAX_BITS - HIST_SUB_BITS + 1) << HIST_SUB_BITS)
#define HIST_MAX_VALUE ((int64_t)((UINT64_C(1) << HIST_MAX_BITS) - 1))

typedef struct hist {
	uint64_t count;     /* values recorded, clamped ones included */
	uint64_t under;     /* values < 0, recorded as 0 */
	uint64_t over;      /* values > HIST_MAX_VALUE, recorded as it */
	int64_t min, max;   /* of the values as given; meaningless if !count */
	uint64_t buckets[HIST_BUCKETS];
} hist;

/* The bucket of v, 0 <= v <= HIST_MAX_VALUE. */
static inline uint32_t hist_index(uint64_t v)
{
	uint32_t e = 63u - (uint32_t)__builtin_clzll(v | HIST_SUB_COUNT);
	uint32_t shift = e - HIST_SUB_BITS;
	return (shift << HIST_SUB_BITS) + (uint32_t)(v >> shift);
}

/* The lowest and highest value of bucket i (i < HIST_BUCKETS). */
static inline int64_t hist_bucket_low(uint32_t i)
{
	uint32_t hi = i >> HIST_SUB_BITS;
	uint32_t shift = hi ? hi - 1 : 0;
	uint64_t sub = i < HIST_SUB_COUNT ? i : (i & (HIST_SUB_COUNT - 1)) | HIST_SUB_COUNT;
	return (int64_t)(sub << shift);
}

static inline int64_t hist_bucket_high(uint32_t i)
{
	uint32_t hi = i >> HIST_SUB_BITS;
	uint32_t shift = hi ? hi - 1 : 0;
	return hist_bucket_low(i) + (int64_t)((UINT64_C(1) << shift) - 1);
}

static inline void hist_set_(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/* Record value v, n times.  Owner only; never allocates or blocks. */
static inline void hist_record_n(hist *h, int64_t v, uint64_t n)
{
	uint64_t c = v < 0 ? 0 : v > HIST_MAX_VALUE ? (uint64_t)HIST_MAX_VALUE
						    : (uint64_t)v;
	uint32_t i = hist_index(c);

	if (__builtin_expect(v < 0, 0))
		hist_set_(&h->under, h->under + n);
	else if (__builtin_expect(v > HIST_MAX_VALUE, 0))
		hist_set_(&h->over, h->over + n);
	if (!h->count || v < h->min)
		__atomic_store_n(&h->min, v, __ATOMIC_RELAXED);
	if (!h->count || v > h->max)
		__atomic_store_n(&h->max, v, __ATOMIC_RELAXED);
	hist_set_(&h->buckets[i], h->buckets[i] + n);
	hist_set_(&h->count, h->count + n);
}

static inline void hist_record(hist *h, int64_t v)
{
	hist_record_n(h, v, 1);
}

/* Empty h (h may be uninitialised memory of sizeof(hist) bytes). */
void hist_init(hist *h);
/* A new empty histogram (malloc), or NULL on ENOMEM; hist_free() it. */
hist *hist_new(void);
void hist_free(hist *h);

/* Add every value of src to dst.  dst belongs to the caller (no other
 * writer); src may be written concurrently (see the file comment). */
void hist_merge(hist *dst, const hist *src);

/* Values recorded (clamped ones included). */
uint64_t hist_count(const hist *h);

/*
 * The nearest-rank p-th percentile, 0 <= p <= 100 (p <= 0: the least
 * value), as the highest value of its bucket clamped to [min, max]; p >= 100
 * is max.  0 for an empty histogram.
 */
int64_t hist_percentile(const hist *h, double p);

/* How many values were recorded in the buckets at or above v's bucket
 * (values >= v, give or take v's bucket, which counts whole). */
uint64_t hist_count_at_least(const hist *h, int64_t v);

#endif
