/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Progress and metrics printing (private to core/): metrics.c.  Main
 * thread, while the reactors run or after they stopped.
 */
#ifndef WEIR_METRICS_H
#define WEIR_METRICS_H

#include "runtime.h"

/* One line on stderr: records per operator so far. */
void print_progress(struct runtime *rt, double secs);
/* The table of per-operator and per-core figures on stderr. */
void print_metrics(struct runtime *rt, double secs);

#endif
