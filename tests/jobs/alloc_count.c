/* SPDX-License-Identifier: Apache-2.0 */
/*
 * LD_PRELOAD shim for tests/e2e/no_malloc.sh: counts calls to malloc,
 * calloc, realloc, aligned_alloc, posix_memalign and pthread_mutex_lock in
 * the whole process and writes "allocs N locks M" to $WEIR_ALLOC_COUNT_FILE
 * at exit.  Comparing a run over N records with one over 8N shows whether
 * anything allocates or locks per record.
 */

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static unsigned long allocs, locks;

void *malloc(size_t n)
{
	__atomic_fetch_add(&allocs, 1, __ATOMIC_RELAXED);
	return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
	__atomic_fetch_add(&allocs, 1, __ATOMIC_RELAXED);
	return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
	__atomic_fetch_add(&allocs, 1, __ATOMIC_RELAXED);
	return __libc_realloc(p, n);
}

void *aligned_alloc(size_t a, size_t n)
{
	__atomic_fetch_add(&allocs, 1, __ATOMIC_RELAXED);
	return __libc_memalign(a, n);
}

int posix_memalign(void **p, size_t a, size_t n)
{
	__atomic_fetch_add(&allocs, 1, __ATOMIC_RELAXED);
	*p = __libc_memalign(a, n);
	return *p ? 0 : 12;
}

int pthread_mutex_lock(pthread_mutex_t *m)
{
	static int (*real)(pthread_mutex_t *);
	if (!real)
		real = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_lock");
	__atomic_fetch_add(&locks, 1, __ATOMIC_RELAXED);
	return real(m);
}

__attribute__((destructor)) static void report(void)
{
	const char *f = getenv("WEIR_ALLOC_COUNT_FILE");
	FILE *o = f ? fopen(f, "w") : NULL;
	if (o) {
		fprintf(o, "allocs %lu locks %lu\n", allocs, locks);
		fclose(o);
	}
}
