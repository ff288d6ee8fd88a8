/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the two joins that buffer rows per key (the interval join in
 * interval_join.c, the regular join in join.c) share: per-subtask free
 * lists of power-of-two blocks for the keys' record buffers, so that a
 * buffer that grows or empties costs no malloc in steady state.  A
 * subtask's lists are used by its reactor thread only.
 */
#ifndef WEIR_OPERATORS_BLOCKS_H
#define WEIR_OPERATORS_BLOCKS_H
#include <stdint.h>
#include <stdlib.h>

#define BLK_MIN_SHIFT 6          /* 64 B */
#define BLK_MAX_SHIFT 20         /* 1 MiB: larger blocks go straight to malloc */
#define BLK_KEEP_BYTES (2u << 20) /* per size: keep at most this much free */

typedef struct blk_lists {
	struct {
		void *head;
		uint32_t count;
	} fl[BLK_MAX_SHIFT + 1]; /* free blocks of 1 << i bytes */
} blk_lists;

/* A block of at least `need` bytes (a power of two, *cap), from l's free
 * lists when l is given, else malloc; NULL on ENOMEM or above 2 GiB. */
static inline char *blk_alloc(blk_lists *l, size_t need, uint32_t *cap)
{
	unsigned sh = BLK_MIN_SHIFT;
	char *p;
	while (((size_t)1 << sh) < need)
		sh++;
	if (sh > 31)
		return NULL;
	if (l && sh <= BLK_MAX_SHIFT && l->fl[sh].head) {
		p = l->fl[sh].head;
		l->fl[sh].head = *(void **)p;
		l->fl[sh].count--;
	} else if (!(p = malloc((size_t)1 << sh))) {
		return NULL;
	}
	*cap = (uint32_t)1 << sh;
	return p;
}

/* Return a block of blk_alloc's: kept for reuse up to BLK_KEEP_BYTES (or
 * four blocks) per size, else freed. */
static inline void blk_free(blk_lists *l, void *p, uint32_t cap)
{
	unsigned sh = (unsigned)__builtin_ctz(cap);
	if (l && sh <= BLK_MAX_SHIFT &&
	    ((uint64_t)l->fl[sh].count * cap < BLK_KEEP_BYTES || l->fl[sh].count < 4)) {
		*(void **)p = l->fl[sh].head;
		l->fl[sh].head = p;
		l->fl[sh].count++;
		return;
	}
	free(p);
}

/* Free every kept block (at close). */
static inline void blk_release(blk_lists *l)
{
	for (int i = 0; i <= BLK_MAX_SHIFT; i++)
		while (l->fl[i].head) {
			void *n = *(void **)l->fl[i].head;
			free(l->fl[i].head);
			l->fl[i].head = n;
		}
}

#endif
