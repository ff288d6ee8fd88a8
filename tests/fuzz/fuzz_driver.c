/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Replay driver for fuzz targets when libFuzzer is not in use: runs every
 * file given on the command line (a corpus), then ITER deterministic random
 * inputs built by mutating them (byte flips, inserted quotes, commas, CR and
 * LF, truncation).  A crash or abort fails the test.  Prints
 * "N passed, 0 failed".
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng = 0x1234567;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

int main(int argc, char **argv)
{
	static uint8_t seeds[64][4096];
	static size_t seed_len[64];
	int nseeds = 0, runs = 0;
	long iters = 20000;
	const char *it = getenv("FUZZ_ITERATIONS");
	if (it)
		iters = atol(it);

	for (int i = 1; i < argc && nseeds < 64; i++) {
		FILE *f = fopen(argv[i], "rb");
		if (!f) {
			fprintf(stderr, "fuzz_driver: cannot open %s\n", argv[i]);
			return 1;
		}
		seed_len[nseeds] = fread(seeds[nseeds], 1, sizeof(seeds[0]), f);
		fclose(f);
		LLVMFuzzerTestOneInput(seeds[nseeds], seed_len[nseeds]);
		nseeds++;
		runs++;
	}
	if (!nseeds) {
		memcpy(seeds[0], "a,b\n", 4);
		seed_len[nseeds++] = 4;
	}
	static const uint8_t special[] = { '"', ',', '\n', '\r', '"', 0, '1', '-', '.', 'e' };
	uint8_t buf[8192];
	for (long k = 0; k < iters; k++) {
		int s = (int)(next() % (uint64_t)nseeds);
		size_t n = seed_len[s];
		memcpy(buf, seeds[s], n);
		int edits = 1 + (int)(next() % 8);
		for (int e = 0; e < edits; e++) {
			switch (next() % 4) {
			case 0: /* overwrite a byte */
				if (n)
					buf[next() % n] = (uint8_t)next();
				break;
			case 1: /* insert a special byte */
				if (n < sizeof(buf) - 1) {
					size_t at = n ? next() % n : 0;
					memmove(buf + at + 1, buf + at, n - at);
					buf[at] = special[next() % sizeof(special)];
					n++;
				}
				break;
			case 2: /* truncate */
				if (n)
					n = next() % n;
				break;
			default: /* duplicate a chunk */
				if (n && n * 2 < sizeof(buf)) {
					memcpy(buf + n, buf, n);
					n *= 2;
				}
			}
		}
		LLVMFuzzerTestOneInput(buf, n);
		runs++;
	}
	printf("%d passed, 0 failed\n", runs);
	return 0;
}
