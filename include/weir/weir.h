/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Weir public API: the one header a job includes.
 *
 * Error convention (all of Weir): a function that can fail returns 0 or a
 * non-negative count on success and a negative errno value on failure
 * (-EINVAL, -ENOMEM, -ENOENT, ...).  No Weir function sets errno for the
 * caller to read.  Functions returning pointers return NULL on failure and
 * say where the reason is recorded (for graph building: weir_env_error).
 */
#ifndef WEIR_WEIR_H
#define WEIR_WEIR_H

#include <weir/batch.h>
#include <weir/datastream.h>
#include <weir/keyed.h>
#include <weir/nexmark.h>

#define WEIR_VERSION "0.1.0"

#endif
