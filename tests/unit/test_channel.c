/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Channels (ck_ring + credits) and the per-core pools with remote free:
 * order, credits, blocking and unblocking, and cross-thread hand-off of
 * batches (also run under ThreadSanitizer).
 */
#include <criterion/criterion.h>
#include <pthread.h>

#include "core.h"

static const weir_schema *schema3(void)
{
	static weir_schema s;
	char err[128];
	if (!s.ncols)
		cr_assert_eq(schema_parse("a:i64,b:f64,c:str", &s, err, sizeof(err)), 0);
	return &s;
}

Test(channel, order_and_kinds)
{
	channel *c = channel_new(4, NULL, NULL);
	elem e;
	cr_assert_not_null(c);
	for (int i = 0; i < 6; i++)
		cr_assert(channel_push(c, (elem){ .kind = ELEM_WATERMARK, .value = i }));
	cr_assert(channel_push(c, (elem){ .kind = ELEM_EOI }));
	for (int i = 0; i < 6; i++) {
		cr_assert(channel_pop(c, &e));
		cr_assert_eq(e.kind, ELEM_WATERMARK);
		cr_assert_eq(e.value, i);
	}
	cr_assert(channel_pop(c, &e));
	cr_assert_eq(e.kind, ELEM_EOI);
	cr_assert_not(channel_pop(c, &e));
	channel_free(c);
}

Test(channel, credits_block_and_release_in_order)
{
	channel *c = channel_new(2, NULL, NULL);
	weir_batch fake[5];
	elem e;

	/* Two credits: the third batch and the watermark after it queue. */
	cr_assert(channel_push(c, (elem){ .kind = ELEM_DATA, .batch = &fake[0] }));
	cr_assert(channel_push(c, (elem){ .kind = ELEM_DATA, .batch = &fake[1] }));
	cr_assert_not(channel_push(c, (elem){ .kind = ELEM_DATA, .batch = &fake[2] }));
	cr_assert_not(channel_push(c, (elem){ .kind = ELEM_WATERMARK, .value = 7 }));
	cr_assert(channel_blocked(c));
	cr_assert_not(channel_flush_pending(c));

	cr_assert(channel_pop(c, &e));
	cr_assert_eq(e.batch, &fake[0]);
	/* Still no credit until the consumer says it is done with it. */
	cr_assert_not(channel_flush_pending(c));
	channel_consumed(c);
	cr_assert(channel_flush_pending(c));
	cr_assert_not(channel_blocked(c));

	cr_assert(channel_pop(c, &e));
	cr_assert_eq(e.batch, &fake[1]);
	cr_assert(channel_pop(c, &e));
	cr_assert_eq(e.batch, &fake[2]);
	cr_assert(channel_pop(c, &e));
	cr_assert_eq(e.kind, ELEM_WATERMARK);
	cr_assert_eq(e.value, 7);
	channel_free(c);
}

/* Producer on core 0 sends N batches numbered in column a; the consumer on
 * core 1 checks order and contents and releases them (remote free). */
#define N_BATCHES 20000

typedef struct xfer {
	pool_set *ps;
	channel *c;
	uint64_t sum;
	int received;
} xfer;

static void *consumer(void *arg)
{
	xfer *x = arg;
	int64_t expect = 0;
	pool_bind_thread(x->ps, 1);
	while (x->received < N_BATCHES) {
		elem e;
		if (!channel_pop(x->c, &e))
			continue;
		cr_assert_eq(e.kind, ELEM_DATA);
		weir_batch *b = e.batch;
		cr_assert_eq(weir_col_i64(b, 0)[0], expect);
		cr_assert_eq(b->rows, 3);
		uint32_t len;
		const char *s = weir_batch_str(b, 2, 2, &len);
		cr_assert_eq(len, 5);
		cr_assert(memcmp(s, "hello", 5) == 0);
		x->sum += (uint64_t)weir_col_i64(b, 0)[2];
		expect++;
		x->received++;
		batch_release(b);
		channel_consumed(x->c);
	}
	pool_reclaim(pool_current());
	return NULL;
}

Test(channel, cross_thread_handoff_with_remote_free)
{
	xfer x = { 0 };
	pthread_t th;
	uint64_t want = 0;

	x.ps = pool_set_new(2, 64 * 1024, 256, 64);
	x.c = channel_new(8, NULL, NULL);
	cr_assert_not_null(x.ps);
	pthread_create(&th, NULL, consumer, &x);
	pool_bind_thread(x.ps, 0);
	for (int i = 0; i < N_BATCHES; i++) {
		weir_batch *b = batch_alloc(schema3(), 0);
		for (int r = 0; r < 3; r++) {
			weir_col_i64(b, 0)[r] = i + r;
			weir_col_f64(b, 1)[r] = 0.5;
			cr_assert_eq(weir_batch_set_str(b, 2, (uint32_t)r, "hello", 5), 0);
		}
		b->rows = 3;
		want += (uint64_t)i + 2;
		/* false means queued, not refused: wait until it left */
		if (!channel_push(x.c, (elem){ .kind = ELEM_DATA, .batch = b }))
			while (!channel_flush_pending(x.c))
				;
	}
	pthread_join(th, NULL);
	cr_assert_eq(x.sum, want);
	/* Every block came home: the pool stayed small (credits bound it). */
	pool_reclaim(pool_current());
	cr_assert_eq(pool_outstanding(pool_current()), 0);
	cr_assert_leq(pool_blocks_allocated(pool_current()), 8 + 64);
	pool_bind_thread(NULL, 0);
	channel_free(x.c);
	pool_set_free(x.ps);
}

/* Fan-out: one batch referenced by two consumers on two other cores; the
 * last release returns it to core 0. */
static pool_set *fan_ps;
static weir_batch *fan_batch;

static void *fan_release(void *arg)
{
	pool_bind_thread(fan_ps, (int)(intptr_t)arg);
	cr_assert_eq(weir_col_i64(fan_batch, 0)[0], 42);
	batch_release(fan_batch);
	pool_reclaim(pool_current());
	return NULL;
}

Test(pool, refcounted_fanout_returns_to_owner)
{
	pthread_t a, b;
	fan_ps = pool_set_new(3, 64 * 1024, 128, 16);
	pool_bind_thread(fan_ps, 0);
	for (int round = 0; round < 200; round++) {
		fan_batch = batch_alloc(schema3(), 0);
		weir_col_i64(fan_batch, 0)[0] = 42;
		fan_batch->rows = 1;
		batch_retain(fan_batch, 1);
		pthread_create(&a, NULL, fan_release, (void *)1);
		pthread_create(&b, NULL, fan_release, (void *)2);
		pthread_join(a, NULL);
		pthread_join(b, NULL);
		pool_reclaim(pool_current());
		cr_assert_eq(pool_outstanding(pool_current()), 0);
	}
	cr_assert_leq(pool_blocks_allocated(pool_current()), 2);
	pool_bind_thread(NULL, 0);
	pool_set_free(fan_ps);
}

/* More blocks released at once on another core than the return ring holds:
 * the rest take the overflow stack, and every one comes home. */
#define BURST 500
static weir_batch *burst[BURST];

static void *release_burst(void *arg)
{
	pool_bind_thread(fan_ps, 1);
	(void)arg;
	for (int i = 0; i < BURST; i++)
		batch_release(burst[i]);
	return NULL;
}

Test(pool, remote_free_burst_overflows_ring_and_comes_home)
{
	pthread_t th;
	fan_ps = pool_set_new(2, 16 * 1024, 64, 8); /* return rings of 16 */
	pool_bind_thread(fan_ps, 0);
	for (int i = 0; i < BURST; i++)
		burst[i] = batch_alloc(schema3(), 0);
	cr_assert_eq(pool_outstanding(pool_current()), BURST);
	cr_assert_not(pool_has_room(pool_current()));
	pthread_create(&th, NULL, release_burst, NULL);
	pthread_join(th, NULL);
	pool_reclaim(pool_current());
	cr_assert_eq(pool_outstanding(pool_current()), 0);
	cr_assert(pool_has_room(pool_current()));
	/* and the blocks are reused rather than allocated again */
	for (int i = 0; i < BURST; i++)
		burst[i] = batch_alloc(schema3(), 0);
	cr_assert_eq(pool_blocks_allocated(pool_current()), BURST);
	for (int i = 0; i < BURST; i++)
		batch_release(burst[i]);
	pool_bind_thread(NULL, 0);
	pool_set_free(fan_ps);
}
