# SPDX-License-Identifier: Apache-2.0
# A cluster's network on one machine, for tests/e2e/cluster.sh and
# perf/bench_cluster.sh: network namespaces, each with a veth on a control
# bridge (an IP address) and a veth on a data bridge (no IP address: the
# DPDK transport's port, which the kernel then ignores).  Sourced; sets
# S (a suffix unique to this run), NSS (the namespaces), PIDS (processes to
# kill at the end) and TMP must exist.  Exits 77 (skip) when not root or
# when namespaces or bridges cannot be made.
[ "$(id -u)" -eq 0 ] || { echo "skip: not root (network namespaces)"; exit 77; }
command -v ip > /dev/null || { echo "skip: ip (iproute2) not found"; exit 77; }
S=$$
BR=wbr$S
BD=wbd$S
NSS=""
PIDS=""
netns_cleanup() {
	for p in $PIDS; do kill -9 "$p" 2> /dev/null || true; done
	for n in $NSS; do ip netns del "$n" 2> /dev/null || true; done
	ip link del "$BR" 2> /dev/null || true
	ip link del "$BD" 2> /dev/null || true
	if [ -n "${KEEP:-}" ]; then echo "# logs kept in $TMP"; else rm -rf "$TMP"; fi
}
trap netns_cleanup EXIT
{ ip link add "$BR" type bridge && ip link set "$BR" up &&
	ip link add "$BD" type bridge && ip link set "$BD" up; } 2> /dev/null ||
	{ echo "skip: cannot create a bridge"; exit 77; }
# node NAME IP: namespace NAME with IP on the control bridge (interface
# n$S<k>) and a data interface d$S<k> (MAC 02:00:00:xx:00:<k>), k counting
# the nodes from 1
NODES=0
node() {
	NODES=$((NODES + 1))
	k=$NODES
	ip netns add "$1" 2> /dev/null || { echo "skip: cannot create network namespaces"; exit 77; }
	NSS="$NSS $1"
	ip link add "h$S$k" type veth peer name "n$S$k"
	ip link set "h$S$k" master "$BR" up
	ip link set "n$S$k" netns "$1"
	ip -n "$1" addr add "$2/24" dev "n$S$k"
	ip -n "$1" link set "n$S$k" up
	ip -n "$1" link set lo up
	ip link add "hd$S$k" type veth peer name "d$S$k"
	ip link set "hd$S$k" master "$BD" up
	ip link set "d$S$k" netns "$1"
	ip -n "$1" link set "d$S$k" address "02:00:00:$(printf %02x $((S % 250))):00:$(printf %02x "$k")" up
}
