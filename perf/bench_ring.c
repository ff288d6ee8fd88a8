/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Batch hand-off between two cores: Weir's channel (ck_ring + credits, pool
 * allocation, remote free back to the owner) against raw ck_ring pointer
 * passing of the same batches (a second raw ring returns them), measured in
 * the same run.  In both, the producer writes 1024 rows of three i64
 * columns and the consumer reads one column, so the difference is the
 * runtime's overhead.  Prints JSON lines.
 *
 *   bench_ring [seconds]
 */

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core.h"

#define ROWS 1024

static double secs = 1.0;
static weir_schema schema;

static void pin(int cpu)
{
	cpu_set_t set;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	CPU_ZERO(&set);
	CPU_SET(cpu % (n > 0 ? n : 1), &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void fill(weir_batch *b, uint64_t base)
{
	int64_t *a = weir_col_i64(b, 0), *k = weir_col_i64(b, 1), *v = weir_col_i64(b, 2);
	for (uint32_t i = 0; i < ROWS; i++) {
		a[i] = (int64_t)(base + i);
		k[i] = (int64_t)i & 63;
		v[i] = (int64_t)i * 3;
		b->ts[i] = (int64_t)(base + i);
	}
	b->rows = ROWS;
}

static int64_t consume(const weir_batch *b)
{
	int64_t s = 0;
	const int64_t *a = weir_col_i64(b, 0);
	for (uint32_t i = 0; i < b->rows; i++)
		s += a[i];
	return s;
}

/* ---- Weir channel -------------------------------------------------------- */

typedef struct chan_run {
	pool_set *ps;
	channel *c;
	_Atomic int stop;
	uint64_t batches;
	int64_t sum;
} chan_run;

static void *chan_consumer(void *arg)
{
	chan_run *r = arg;
	pin(1);
	pool_bind_thread(r->ps, 1);
	for (;;) {
		elem e;
		if (!channel_pop(r->c, &e))
			continue;
		if (e.kind == ELEM_EOI)
			break;
		r->sum += consume(e.batch);
		r->batches++;
		batch_release(e.batch);
		channel_consumed(r->c);
	}
	return NULL;
}

static double run_channel(uint64_t *batches)
{
	chan_run r = { 0 };
	pthread_t th;
	r.ps = pool_set_new(2, 128 * 1024, ROWS, 1024);
	r.c = channel_new(16, NULL, NULL);
	pthread_create(&th, NULL, chan_consumer, &r);
	pin(0);
	pool_bind_thread(r.ps, 0);
	uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9), n = 0;
	while (now_ns() < end) {
		for (int k = 0; k < 64; k++) {
			weir_batch *b = batch_alloc(&schema, 0);
			fill(b, n * ROWS);
			if (!channel_push(r.c, (elem){ .kind = ELEM_DATA, .batch = b }))
				while (!channel_flush_pending(r.c))
					;
			n++;
		}
	}
	channel_push(r.c, (elem){ .kind = ELEM_EOI });
	while (!channel_flush_pending(r.c))
		;
	pthread_join(th, NULL);
	double dt = (now_ns() - t0) / 1e9;
	pool_reclaim(pool_current());
	pool_bind_thread(NULL, 0);
	channel_free(r.c);
	pool_set_free(r.ps);
	*batches = r.batches;
	return dt;
}

/* ---- raw ck_ring ------------------------------------------------------------ */

typedef struct raw_run {
	ck_ring_t fwd, back;
	ck_ring_buffer_t *fbuf, *bbuf;
	uint64_t batches;
	int64_t sum;
} raw_run;

static weir_batch *const RAW_EOI = (weir_batch *)1;

static void *raw_consumer(void *arg)
{
	raw_run *r = arg;
	pin(1);
	for (;;) {
		weir_batch *b;
		if (!ck_ring_dequeue_spsc(&r->fwd, r->fbuf, &b))
			continue;
		if (b == RAW_EOI)
			break;
		r->sum += consume(b);
		r->batches++;
		while (!ck_ring_enqueue_spsc(&r->back, r->bbuf, b))
			;
	}
	return NULL;
}

static double run_raw(uint64_t *batches)
{
	raw_run r = { 0 };
	pthread_t th;
	enum { NB = 16 };
	weir_batch *held[NB];
	pool_set *ps = pool_set_new(1, 128 * 1024, ROWS, 64);

	pool_bind_thread(ps, 0);
	r.fbuf = calloc(64, sizeof(ck_ring_buffer_t));
	r.bbuf = calloc(64, sizeof(ck_ring_buffer_t));
	ck_ring_init(&r.fwd, 64);
	ck_ring_init(&r.back, 64);
	for (int i = 0; i < NB; i++) {
		held[i] = batch_alloc(&schema, 0);
		ck_ring_enqueue_spsc(&r.back, r.bbuf, held[i]);
	}
	pthread_create(&th, NULL, raw_consumer, &r);
	pin(0);
	uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9), n = 0;
	while (now_ns() < end) {
		for (int k = 0; k < 64; k++) {
			weir_batch *b;
			while (!ck_ring_dequeue_spsc(&r.back, r.bbuf, &b))
				;
			fill(b, n * ROWS);
			while (!ck_ring_enqueue_spsc(&r.fwd, r.fbuf, b))
				;
			n++;
		}
	}
	while (!ck_ring_enqueue_spsc(&r.fwd, r.fbuf, RAW_EOI))
		;
	pthread_join(th, NULL);
	double dt = (now_ns() - t0) / 1e9;
	for (int i = 0; i < NB; i++)
		batch_release(held[i]);
	pool_bind_thread(NULL, 0);
	pool_set_free(ps);
	free(r.fbuf);
	free(r.bbuf);
	*batches = r.batches;
	return dt;
}

int main(int argc, char **argv)
{
	char err[128];
	uint64_t nb_raw, nb_chan;
	if (argc > 1)
		secs = atof(argv[1]);
	schema_parse("a:i64,k:i64,v:i64", &schema, err, sizeof(err));
	double t_raw = run_raw(&nb_raw);
	double t_chan = run_channel(&nb_chan);
	double raw = nb_raw * (double)ROWS / t_raw, chan = nb_chan * (double)ROWS / t_chan;
	printf("{\"bench\":\"ring_raw_ck_ring\",\"rows_per_batch\":%d,\"batches_per_s\":%.0f,"
	       "\"records_per_s\":%.0f}\n", ROWS, nb_raw / t_raw, raw);
	printf("{\"bench\":\"ring_weir_channel\",\"rows_per_batch\":%d,\"batches_per_s\":%.0f,"
	       "\"records_per_s\":%.0f,\"ratio_to_raw\":%.3f,\"target_records_per_s\":50000000}\n",
	       ROWS, nb_chan / t_chan, chan, chan / raw);
	return 0;
}
