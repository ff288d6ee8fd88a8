/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Weir public API: the one header a job includes.  Two more stand apart:
 * weir/nexmark.h (the Nexmark benchmark's source and events, for the
 * benchmark's queries and tools) and weir/admin.h (operating jobs: the
 * `weir` command's interface to the library).
 *
 * The conventions every header follows (errors, lifetimes, threads) are
 * in weir/api.h.
 */
#ifndef WEIR_WEIR_H
#define WEIR_WEIR_H

#include <weir/batch.h>
#include <weir/datastream.h>
#include <weir/keyed.h>
#include <weir/connectors.h>

#define WEIR_VERSION "0.1.0"

#endif
