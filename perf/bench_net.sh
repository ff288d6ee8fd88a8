#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The TCP transport's throughput and round trip between two network
# namespaces joined by a veth pair (10.77.0.1 <-> 10.77.0.2), next to
# iperf3 over the same veth and plain blocking sockets.  Needs root; exits
# 77 (skip) when not root or namespaces are unavailable.  Prints JSON lines.
#
#   perf/bench_net.sh [build/perf/bench_net]    SECS=2 TRIPS=20000 to change
set -u
BIN=${1:-build/perf/bench_net}
SECS=${SECS:-2}
TRIPS=${TRIPS:-20000}
if [ "$(id -u)" != 0 ]; then
	echo "bench_net.sh: skipped: needs root for network namespaces" >&2
	exit 77
fi
command -v iperf3 >/dev/null || { echo "bench_net.sh: skipped: no iperf3" >&2; exit 77; }
NS1=weirnet1.$$
NS2=weirnet2.$$
OUT=$(mktemp)
cleanup() {
	ip netns del "$NS1" 2>/dev/null
	ip netns del "$NS2" 2>/dev/null
	rm -f "$OUT"
}
trap cleanup EXIT
if ! ip netns add "$NS1" 2>/dev/null || ! ip netns add "$NS2" 2>/dev/null ||
   ! ip link add wa$$ netns "$NS1" type veth peer name wb$$ netns "$NS2" 2>/dev/null; then
	echo "bench_net.sh: skipped: cannot make network namespaces and a veth pair" >&2
	exit 77
fi
ip -n "$NS1" addr add 10.77.0.1/24 dev wa$$
ip -n "$NS2" addr add 10.77.0.2/24 dev wb$$
for n in "$NS1" "$NS2"; do ip -n "$n" link set lo up; done
ip -n "$NS1" link set wa$$ up
ip -n "$NS2" link set wb$$ up
A="ip netns exec $NS1"
B="ip netns exec $NS2"

# one batch of 1024 rows of (i64 key, i64 value, ts) = 24 KiB + 64 B of batch header
for size in 24640 131072; do
	for zc in 0 1; do
		$B "$BIN" serve 10.77.0.2:7700 &
		srv=$!
		$A "$BIN" send 10.77.0.1:0 10.77.0.2:7700 $size "$SECS" $zc | tee -a "$OUT"
		wait $srv
	done
done

$B iperf3 -s -1 -B 10.77.0.2 -p 5201 >/dev/null 2>&1 &
srv=$!
sleep 0.3
$A iperf3 -c 10.77.0.2 -p 5201 -t 3 -J > "$OUT.iperf" 2>/dev/null
wait $srv
python3 - "$OUT" "$OUT.iperf" <<'PY'
import json, sys
ip = json.load(open(sys.argv[2]))["end"]["sum_received"]["bits_per_second"] / 8e6
print(json.dumps({"bench": "net_iperf3", "mb_per_s": round(ip, 1)}))
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(json.dumps({"bench": "net_tcp_vs_iperf3", "payload": r["payload"],
                      "zerocopy": r["zerocopy"], "ratio": round(r["mb_per_s"] / ip, 3)}))
PY
rm -f "$OUT.iperf"

$B "$BIN" pong 10.77.0.2:7710 &
srv=$!
$A "$BIN" ping 10.77.0.1:0 10.77.0.2:7710 "$TRIPS"
wait $srv
