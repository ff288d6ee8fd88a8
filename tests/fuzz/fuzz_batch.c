/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for the batch decoder (in-flight data of unaligned
 * checkpoints, restored from state logs): any bytes against a few schemas
 * must decode into a well-formed batch or be refused, and what decodes must
 * encode back into the same bytes (the encoding is canonical).  Replayed by the test suite (fuzz_driver.c); a libFuzzer binary with
 * -Dfuzz=enabled.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static pool_set *ps;
static weir_schema schemas[4];

static void setup(void)
{
	char err[128];
	const char *specs[4] = { "a:i64", "a:str,b:bool", "t:ts,v:f64,s:str,k:i64", "b:bool" };
	ps = pool_set_new(1, 64 * 1024, 256, 64);
	pool_bind_thread(ps, 0);
	for (int i = 0; i < 4; i++)
		if (schema_parse(specs[i], &schemas[i], err, sizeof(err))) {
			fprintf(stderr, "fuzz_batch: %s: %s\n", specs[i], err);
			abort();
		}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ps)
		setup();
	for (int i = 0; i < 4; i++) {
		weir_batch *b;
		int rc = batch_decode(&schemas[i], data, size, &b);
		if (rc == -EBADMSG)
			continue;
		if (rc) {
			fprintf(stderr, "fuzz_batch: decode returned %d\n", rc);
			abort();
		}
		if (b->rows > b->capacity || b->heap_used > b->heap_cap) {
			fprintf(stderr, "fuzz_batch: rows %u of %u, heap %u of %u\n", b->rows,
				b->capacity, b->heap_used, b->heap_cap);
			abort();
		}
		size_t n = batch_encoded_size(b);
		char *out = malloc(n ? n : 1);
		batch_encode(b, out);
		if (n != size || memcmp(out, data, n))
			abort();
		free(out);
		batch_release(b);
	}
	return 0;
}
