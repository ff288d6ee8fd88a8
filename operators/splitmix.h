/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The generators' mixer (source.c's generator, latency.c's source): the
 * key and value of record i come from splitmix64(seed ^ (i * an odd
 * constant)), so any record can be made again from its id alone, on any
 * subtask and after any restore.  Its own header, not ops.h: the tests
 * that include ops.h have their own copy.
 */
#ifndef WEIR_OPERATORS_SPLITMIX_H
#define WEIR_OPERATORS_SPLITMIX_H

#include <stdint.h>

/* Steele, Lea and Flood's SplitMix64 finalizer: a bijection of u64. */
static inline uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

#endif
