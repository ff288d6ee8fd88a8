/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Conventions every public header follows, and the mark of an exported
 * function.
 *
 * Exports.  libweir.so is built with hidden visibility: it exports exactly
 * the functions declared with WEIR_API in include/weir/ (all named weir_*),
 * and a test (tests/e2e/exports.sh) checks that `nm -D` of the library
 * shows nothing else.
 *
 * Errors.  A function that can fail returns 0 or a non-negative count on
 * success and a negative errno value on failure (-EINVAL, -ENOMEM, ...).
 * No Weir function sets errno for the caller to read.  Functions returning
 * pointers return NULL on failure and say where the reason is recorded
 * (for graph building: weir_env_error).
 *
 * Lifetimes.  A builder (weir_map, weir_process, weir_window_*, ...) COPIES
 * the configuration structs and arrays it is passed (weir_process_fns,
 * weir_state_desc[], weir_window_spec, weir_window_aggregate_fns, ...), so they
 * may live on the caller's stack.  What a builder cannot copy -- the `arg`
 * pointers handed back to user functions, and anything they point to --
 * must outlive the run (weir_env_execute's return).  A declaration that
 * departs from this says so.
 *
 * Threads.  Graph building (everything that takes a weir_env or a
 * weir_stream) happens on one thread, before weir_env_execute.  User
 * functions are called on the reactor thread of the subtask they belong
 * to, one call at a time per subtask.
 */
#ifndef WEIR_API_H
#define WEIR_API_H

#if defined(__GNUC__) && !defined(WEIR_STATIC)
#define WEIR_API __attribute__((visibility("default")))
#else
#define WEIR_API
#endif

#endif
