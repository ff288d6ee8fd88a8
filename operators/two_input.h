/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The core the keyed operators of two inputs stand on (two_input.c): the
 * joins -- the regular join (join.c), the interval join (interval_join.c),
 * the window join (window_join.c) -- and the connected process functions
 * (process.c).
 *
 * Building: whether two key columns may meet in one keyed operator, and
 * the default output schema of a join (a's columns, then b's).
 *
 * Running: the chunked key loop.  A keyed operator that looks a row's key
 * up in a table of its state pays a cache miss per row when keys are
 * many; taking the keys of a chunk of KEY_CHUNK rows first and starting
 * to load their table slots (kv_prefetch) lets the misses of the chunk
 * overlap.  key_chunk_prefetch is that first pass, for both joins that
 * keep rows per key (each input's row probes the other side's table and
 * is stored in its own: two tables) and for top-n (one table).  It is
 * inline: it runs per row on the operators' hot path.  Keys of fixed
 * width only: a string key is interned in the dictionary and must be
 * taken row by row, where the caller releases it.
 *
 * Pure building functions, any thread; key_chunk_prefetch on the calling
 * subtask's reactor thread (it reads the subtask's tables).
 */
#ifndef WEIR_OPERATORS_TWO_INPUT_H
#define WEIR_OPERATORS_TWO_INPUT_H

#include "ops.h"
#include "state.h"

/* ---- building --------------------------------------------------------------------- */

/* Key columns of two inputs that may meet in one keyed operator: equal
 * types, ts and i64 counting as one. */
bool key_types_match(weir_type a, weir_type b);

/* The default output of a join: a's columns, then b's, "b_" before a name
 * a already has; NULL after an env error naming `what` '`nm`'. */
const weir_schema *join_concat_schema(weir_env *env, const char *what,
				      const char *nm, const weir_schema *a,
				      const weir_schema *b);

/* ---- the chunked key loop ------------------------------------------------------------ */

#define KEY_CHUNK 16 /* rows whose keys are prefetched together */

/* A key of type kt needs no dictionary (key_of is a hash, no lookup). */
static inline bool key_fixed(weir_type kt)
{
	return kt != WEIR_STR;
}

/*
 * The chunk of b's rows starting at r0: returns its row count (at most
 * KEY_CHUNK).  With a fixed-width key type kt it also makes the keys of
 * the chunk's rows from column kc into keys[0..n) and starts loading
 * each key's slot (namespace 0) in tabs[0], ..., tabs[ntab - 1], in that
 * order; the caller then takes keys[i] for row r0 + i.  With string keys
 * it does nothing else: the caller takes each key with key_of() as it
 * reaches its row.  The caller's loop:
 *
 *   for (r0 = 0; r0 < b->rows; r0 += KEY_CHUNK) {
 *           n = key_chunk_prefetch(d, kt, b, kc, r0, keys, tabs, 2);
 *           for (i = 0; i < n; i++)
 *                   k = key_fixed(kt) ? keys[i] : key_of(d, kt, b, kc, r0 + i);
 *   }
 */
static inline uint32_t key_chunk_prefetch(kdict *d, weir_type kt,
					  const weir_batch *b, int kc, uint32_t r0,
					  skey keys[KEY_CHUNK], kvtab *const *tabs,
					  int ntab)
{
	uint32_t n = b->rows - r0 < KEY_CHUNK ? b->rows - r0 : KEY_CHUNK;

	if (!key_fixed(kt))
		return n;
	for (uint32_t i = 0; i < n; i++) {
		keys[i] = key_of(d, kt, b, kc, r0 + i);
		for (int j = 0; j < ntab; j++)
			kv_prefetch(tabs[j], keys[i], 0);
	}
	return n;
}

#endif
