#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The DPDK transport between two processes in two network namespaces over
# a veth pair (net_af_packet on each end): thousands of frames of random
# sizes (some 2-4 MB) both ways, each checked (order, length, content).
# Then the same through faults that need no tc netem: 1% of the datagrams
# dropped at random on receive (xport_dpdk's WEIR_DPDK_RX_DROP_PPM test
# hook) and a 300 ms partition (one veth end down).  The tc netem version
# (delay, loss, reordering) is dpdk_veth_netem.sh.  Skips (77) when not
# root or when DPDK cannot start.
. "$(dirname "$0")/lib.sh"
PROBE="${PROBE:-$JOBS/dpdk_xport_probe}"
. "$(dirname "$0")/dpdk_lib.sh"
trap 'cleanup_ns; rm -rf "$TMP"' EXIT
ns_up

if probe_pair verify --frames 3000 --seed 11; then
	ok "clean veth: $(cat "$TMP/outA") / $(cat "$TMP/outB")"
else
	not_ok "clean veth: $(tail -n 3 "$TMP/errA" "$TMP/errB" | tr '\n' ' ')"
fi

export WEIR_DPDK_RX_DROP_PPM=10000
( sleep 1; ip -n "$NA" link set "$VA" down; sleep 0.3; ip -n "$NA" link set "$VA" up ) &
if probe_pair verify --frames 3000 --seed 12; then
	ok "1% loss + 300 ms partition: $(cat "$TMP/outA") / $(cat "$TMP/outB")"
else
	not_ok "1% loss + 300 ms partition: $(tail -n 3 "$TMP/errA" "$TMP/errB" | tr '\n' ' ')"
fi
wait
unset WEIR_DPDK_RX_DROP_PPM
finish
