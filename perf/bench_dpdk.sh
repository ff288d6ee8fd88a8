#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The DPDK transport between two network namespaces (veth pair, one
# net_af_packet port in each): throughput of 25 KiB frames (a 1024-row
# batch) one way, then round trips of 64-byte frames (p50/p99/p99.9).
# Prints JSON lines; a benchmark, never a pass/fail timing test.  Skips
# (77) when not root or when DPDK cannot start.  About 10 s.
set -eu
PROBE="${DPDK_PROBE:-$(dirname "$0")/../build/tests/jobs/dpdk_xport_probe}"
TMP="$(mktemp -d -p "${TMPDIR:-/tmp}" --suffix=.weir-bench-dpdk)"
. "$(dirname "$0")/../tests/e2e/dpdk_lib.sh"
trap 'cleanup_ns; rm -rf "$TMP"' EXIT
ns_up
probe_pair bw --frames 20000 || { cat "$TMP/errA" "$TMP/errB"; exit 1; }
cat "$TMP/outB"
probe_pair lat --frames 20000 || { cat "$TMP/errA" "$TMP/errB"; exit 1; }
cat "$TMP/outA"
