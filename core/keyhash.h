/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Hashing of key cells, shared by hash partitioning (emit.c) and keyed
 * state (operators/aggregate.c) so both agree on where a key lives.
 * Strings use XXH3 (xxhash); fixed-width values a 64-bit finaliser
 * (MurmurHash3's fmix64).  Inline: it runs once per record.
 */
#ifndef WEIR_KEYHASH_H
#define WEIR_KEYHASH_H

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <weir/batch.h>

static inline uint64_t hash_mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static inline uint64_t key_hash(const weir_batch *b, int col, uint32_t row)
{
	switch (b->schema->fields[col].type) {
	case WEIR_STR: {
		weir_str s = ((const weir_str *)b->cols[col])[row];
		return XXH3_64bits(b->heap + s.off, s.len);
	}
	case WEIR_BOOL:
		return hash_mix64(((const uint8_t *)b->cols[col])[row]);
	default:
		return hash_mix64((uint64_t)((const int64_t *)b->cols[col])[row]);
	}
}

/*
 * The key group of hash h among maxp (the maximum parallelism): h mod maxp,
 * a mask when maxp is a power of two (the default, 128), since a 64-bit
 * division costs ~40 cycles per record.  Key group kg belongs to subtask
 * kg * p / maxp of an operator of parallelism p; callers tabulate that.
 */
static inline uint32_t key_group(uint64_t h, uint32_t maxp)
{
	if ((maxp & (maxp - 1)) == 0)
		return (uint32_t)(h & (maxp - 1));
	return (uint32_t)(h % maxp);
}

#endif
