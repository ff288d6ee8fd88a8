/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Happens-before annotations for ThreadSanitizer.  Concurrency Kit's atomics
 * are inline assembly that TSan cannot see, so where a ck_ring hand-off
 * orders memory we declare the edge: tsan_release() before the producer's
 * enqueue, tsan_acquire() after the consumer's dequeue, on the same address.
 * The accesses to ck_ring's own indices are suppressed in tests/tsan.supp.
 * Without TSan these compile to nothing.
 */
#ifndef WEIR_TSAN_H
#define WEIR_TSAN_H

#if defined(__SANITIZE_THREAD__)
#define WEIR_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEIR_TSAN 1
#endif
#endif

#ifdef WEIR_TSAN
#include <sanitizer/tsan_interface.h>
#define tsan_release(addr) __tsan_release((void *)(addr))
#define tsan_acquire(addr) __tsan_acquire((void *)(addr))
#else
#define tsan_release(addr) ((void)(addr))
#define tsan_acquire(addr) ((void)(addr))
#endif

#endif
