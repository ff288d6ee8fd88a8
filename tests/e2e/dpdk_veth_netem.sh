#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# dpdk_veth.sh's exchange through tc netem on both veth ends: delay 2 ms,
# loss 1%, reorder 25%, then a 300 ms partition (loss 100%) mid-run; every
# frame must still arrive intact.  Skips (77) when the netem qdisc is
# missing (kernel module sch_netem), when not root, or without DPDK.
. "$(dirname "$0")/lib.sh"
PROBE="${PROBE:-$JOBS/dpdk_xport_probe}"
. "$(dirname "$0")/dpdk_lib.sh"
trap 'cleanup_ns; rm -rf "$TMP"' EXIT
ns_up
NETEM="delay 2ms loss 1% reorder 25%"
if ! ip netns exec "$NA" tc qdisc add dev "$VA" root netem $NETEM 2> "$TMP/tc"; then
	echo "skip: tc netem unavailable here ($(cat "$TMP/tc")): sch_netem module missing"
	exit 77
fi
ip netns exec "$NB" tc qdisc add dev "$VB" root netem $NETEM
( sleep 2
  ip netns exec "$NA" tc qdisc change dev "$VA" root netem loss 100%
  sleep 0.3
  ip netns exec "$NA" tc qdisc change dev "$VA" root netem $NETEM ) &
if probe_pair verify --frames 2000 --seed 13; then
	ok "netem $NETEM + 300 ms partition: $(cat "$TMP/outA") / $(cat "$TMP/outB")"
else
	not_ok "netem: $(tail -n 3 "$TMP/errA" "$TMP/errB" | tr '\n' ' ')"
fi
wait
finish
