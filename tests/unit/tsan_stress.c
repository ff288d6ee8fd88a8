/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cross-core stress for the ThreadSanitizer build.  Criterion cannot run
 * under TSan (its inheritable arena fails to map: Snaipe/Criterion#274), so
 * this is a plain program: batch hand-off through channels with credits and
 * remote free, fan-out release from several threads, and whole pipelines
 * with hash, rebalance and broadcast exchanges on several reactors.
 * Prints "N passed, M failed"; exit status 1 on any failure.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ops.h"

static int passed, failed;

#define CHECK(cond, ...)                                                  \
	do {                                                              \
		if (cond) {                                               \
			passed++;                                         \
		} else {                                                  \
			failed++;                                         \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                     \
			fprintf(stderr, "\n");                            \
		}                                                         \
	} while (0)

static weir_schema schema;

typedef struct xfer {
	pool_set *ps;
	channel *c;
	int64_t sum;
	int64_t bad;
} xfer;

#define N 20000

static void *consumer(void *arg)
{
	xfer *x = arg;
	int64_t expect = 0;
	pool_bind_thread(x->ps, 1);
	for (;;) {
		elem e;
		if (!channel_pop(x->c, &e))
			continue;
		if (e.kind == ELEM_EOI)
			break;
		if (weir_col_i64(e.batch, 0)[0] != expect++)
			x->bad++;
		x->sum += weir_col_i64(e.batch, 0)[e.batch->rows - 1];
		batch_release(e.batch);
		channel_consumed(x->c);
	}
	pool_reclaim(pool_current());
	return NULL;
}

static void channel_handoff(void)
{
	xfer x = { 0 };
	pthread_t th;
	int64_t want = 0;
	x.ps = pool_set_new(2, 16 * 1024, 64, 32);
	x.c = channel_new(4, NULL, NULL);
	pthread_create(&th, NULL, consumer, &x);
	pool_bind_thread(x.ps, 0);
	for (int i = 0; i < N; i++) {
		weir_batch *b = batch_alloc(&schema, 0);
		for (int r = 0; r < 8; r++)
			weir_col_i64(b, 0)[r] = i + r;
		b->rows = 8;
		want += i + 7;
		if (!channel_push(x.c, (elem){ .kind = ELEM_DATA, .batch = b }))
			while (!channel_flush_pending(x.c))
				;
	}
	if (!channel_push(x.c, (elem){ .kind = ELEM_EOI }))
		while (!channel_flush_pending(x.c))
			;
	pthread_join(th, NULL);
	CHECK(x.bad == 0, "%lld batches out of order", (long long)x.bad);
	CHECK(x.sum == want, "sum %lld want %lld", (long long)x.sum, (long long)want);
	pool_reclaim(pool_current());
	CHECK(pool_outstanding(pool_current()) == 0, "blocks not returned");
	pool_bind_thread(NULL, 0);
	channel_free(x.c);
	pool_set_free(x.ps);
}

/* A burst of remote frees larger than the return ring: the overflow stack
 * (ck_stack) takes the rest; two releasing threads at once. */
static pool_set *burst_ps;
static weir_batch *burst[2][300];

static void *release_half(void *arg)
{
	int k = (int)(intptr_t)arg;
	pool_bind_thread(burst_ps, 1 + k);
	for (int i = 0; i < 300; i++)
		batch_release(burst[k][i]);
	return NULL;
}

static void remote_free_overflow(void)
{
	pthread_t a, b;
	burst_ps = pool_set_new(3, 16 * 1024, 64, 8);
	pool_bind_thread(burst_ps, 0);
	for (int round = 0; round < 20; round++) {
		for (int k = 0; k < 2; k++)
			for (int i = 0; i < 300; i++)
				burst[k][i] = batch_alloc(&schema, 0);
		pthread_create(&a, NULL, release_half, (void *)0);
		pthread_create(&b, NULL, release_half, (void *)1);
		pthread_join(a, NULL);
		pthread_join(b, NULL);
		pool_reclaim(pool_current());
		CHECK(pool_outstanding(pool_current()) == 0, "round %d: %u blocks missing",
		      round, pool_outstanding(pool_current()));
	}
	pool_bind_thread(NULL, 0);
	pool_set_free(burst_ps);
}

static int keep_all_map(void *arg, const weir_batch *in, weir_batch *out)
{
	(void)arg;
	memcpy(out->cols[0], in->cols[0], in->rows * 8);
	memcpy(out->cols[1], in->cols[1], in->rows * 8);
	memcpy(out->cols[2], in->cols[2], in->rows * 8);
	return 0;
}

static void pipelines(void)
{
	char file[] = "/tmp/weir-tsan.XXXXXX";
	int fd = mkstemp(file);
	close(fd);
	for (int p = 2; p <= 4; p++) {
		weir_env *env = weir_env_new();
		weir_env_config(env)->parallelism = p;
		weir_env_config(env)->cores = 2;
		weir_env_config(env)->pin = false;
		weir_env_config(env)->batch_rows = 128;
		weir_env_config(env)->channel_credits = 2;
		weir_generator_conf g = { .count = 50000, .seed = 9, .keys = 100 };
		weir_stream *s = weir_source_generator(env, "gen", &g);
		weir_stream *m = weir_map(weir_rebalance(s), "map", weir_stream_schema(s),
					  keep_all_map, NULL);
		weir_stream *b = weir_map(weir_broadcast(m), "copy", weir_stream_schema(s),
					  keep_all_map, NULL);
		weir_stream *c = weir_count(weir_key_by(b, "key"));
		weir_sink_csv(c, "out", file);
		CHECK(weir_env_execute(env, "tsan", 0) == 0, "pipeline p=%d failed", p);
		weir_env_free(env);
		FILE *f = fopen(file, "r");
		long long total = 0, k, n;
		int keys = 0;
		while (f && fscanf(f, "%lld,%lld\n", &k, &n) == 2) {
			total += n;
			keys++;
		}
		if (f)
			fclose(f);
		/* broadcast to p subtasks: every record counted p times */
		CHECK(total == 50000LL * p, "p=%d total %lld", p, total);
		CHECK(keys == 100, "p=%d keys %d", p, keys);
	}
	unlink(file);
}

int main(void)
{
	char err[128];
	schema_parse("a:i64,b:i64,c:i64", &schema, err, sizeof(err));
	channel_handoff();
	remote_free_overflow();
	pipelines();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
