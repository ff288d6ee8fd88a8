# SPDX-License-Identifier: Apache-2.0
# Two network namespaces joined by a veth pair, one dpdk_xport_probe in
# each on net_af_packet over its end (dpdk_veth.sh, dpdk_veth_netem.sh,
# perf/bench_dpdk.sh).  Sourced; needs PROBE and TMP.
[ "$(id -u)" -eq 0 ] || { echo "skip: not root (network namespaces, af_packet)"; exit 77; }
[ -x "${PROBE:-}" ] || { echo "skip: dpdk_xport_probe not built (no libdpdk)"; exit 77; }
S=$$
NA=wdpA$S NB=wdpB$S VA=wa$S VB=wb$S
cleanup_ns() { ip netns del "$NA" 2>/dev/null || true; ip netns del "$NB" 2>/dev/null || true; }
ns_up() {
	ip netns add "$NA" && ip netns add "$NB" ||
		{ echo "skip: cannot create network namespaces"; exit 77; }
	ip link add "$VA" type veth peer name "$VB" ||
		{ cleanup_ns; echo "skip: cannot create a veth pair"; exit 77; }
	ip link set "$VA" netns "$NA"; ip link set "$VB" netns "$NB"
	# No IP address on the veths: the kernel drops the UDP datagrams
	# that af_packet also hands it.
	ip -n "$NA" link set "$VA" address 02:00:00:77:00:01 up
	ip -n "$NB" link set "$VB" address 02:00:00:77:00:02 up
}
# probe_pair MODE ARGS...: run both roles; outputs in $TMP/out{A,B}, $TMP/err{A,B}
probe_pair() {
	mode=$1; shift
	rm -f "$TMP/addrA" "$TMP/addrB"
	timeout 300 ip netns exec "$NA" "$PROBE" "$mode" --self 0 --device "net_af_packet0,iface=$VA" \
		--bind 10.77.0.1 --me "$TMP/addrA" --peer "$TMP/addrB" "$@" > "$TMP/outA" 2> "$TMP/errA" &
	pa=$!
	timeout 300 ip netns exec "$NB" "$PROBE" "$mode" --self 1 --device "net_af_packet0,iface=$VB" \
		--bind 10.77.0.2 --me "$TMP/addrB" --peer "$TMP/addrA" "$@" > "$TMP/outB" 2> "$TMP/errB" &
	pb=$!
	ra=0; rb=0
	wait $pa || ra=$?
	wait $pb || rb=$?
	if [ $ra -eq 77 ] || [ $rb -eq 77 ]; then
		grep -h skip "$TMP/errA" "$TMP/errB" | head -1
		cleanup_ns
		exit 77
	fi
	[ $ra -eq 0 ] && [ $rb -eq 0 ]
}
