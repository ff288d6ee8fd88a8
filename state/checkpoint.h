/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Checkpoints, recovery and savepoints: the storage side (state/).  The
 * protocol side -- triggering, barriers, alignment, acknowledgements,
 * timeouts -- is in core/barrier.c and core/checkpoint_coordinator.c,
 * and reaches state/ only through the ckpt_store interface of core.h (checkpoint_store_ops below), so core/
 * knows no file format.
 *
 * The store's files, from the bottom up (each calls only files above it):
 *
 *   keyed.c timers.c  tables and timer services (state.h)
 *   statelog.c        state-log files: segments of checksummed frames
 *   log_write.c       registration of keyed state, the bindings tables log
 *                     through, the entry format, materialization
 *   manifest.c        manifests: text format, write, parse, merge, list
 *   inflight.c        in-flight data of unaligned checkpoints
 *   recovery.c        restoring a job from a manifest and its logs
 *   checkpoint.c      the store: per-core logs, barriers, syncing,
 *                     completion, retention (checkpoint_store_ops)
 *
 * store_internal.h holds what the last four share.  Other folders include
 * this header alone: it brings the registration calls (log_write.h) and
 * the manifest format and parser (manifest.h).
 */
#ifndef WEIR_CHECKPOINT_H
#define WEIR_CHECKPOINT_H

#include "core.h"
#include "log_write.h"
#include "manifest.h"
#include "state.h"

/* The storage implementation handed to the runtime (core.h ckpt_store). */
extern const ckpt_store_ops checkpoint_store_ops;

#endif
