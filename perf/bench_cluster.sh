#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Pipeline-level figures of a Weir cluster on one machine: a coordinator
# and up to three workers (`--cores 1` each), every one in a network
# namespace of its own, joined by veth pairs on a bridge (the layout of
# tests/e2e/cluster.sh).  Prints JSON lines (figures, never pass/fail):
#
#  cluster_throughput  perf/cluster_job.so --job throughput: a generator of
#      (key i64, value i64, ts) rows in batches of 1024 on worker 0 ->
#      rebalance -> a counting sink on worker 1.  records/s is timed by the
#      sink (first to last batch), the wire MB/s is worker 0's "MB out" over
#      that time, next to iperf3 between the same two namespaces, same run.
#  cluster_rtt  perf/cluster_job.so --job latency: a latency source on worker
#      0 at a fixed rate -> rebalance -> pass on worker 1 -> rebalance ->
#      latency sink on worker 0 (buffer timeout 0, park idle policy): one
#      network round trip per record, measured from each record's intended
#      emission time (no coordinated omission; the first second is warm-up).
#      Next to plain blocking TCP ping-pong (64-byte + header messages,
#      TCP_NODELAY: bench_net ping/pong) between the same namespaces.
#  cluster_rtt_dpdk  the same over `weir worker --transport dpdk` on
#      net_af_packet over a second veth per worker (second bridge, no IP
#      address), when it works; otherwise a line saying why not.
#  cluster_failover  wordcount.so --mode streaming on 3 workers, -p 3,
#      checkpoints every 200 ms into a file-sink directory; one worker is
#      SIGKILLed after ~2 s.  Figures (polled every 10 ms, so +-10 ms):
#      detect_redeploy_ms = kill -> the coordinator prints the placement of
#      the next attempt (dead worker noticed, attempt cancelled, next one
#      deployed and started); failover_ms = kill -> the first part file
#      committed by the next attempt (the user-visible resumption of
#      exactly-once output: includes restore and the next checkpoint, at
#      most one interval).  Printed next to the state restored: the
#      checkpoint directory's bytes at the kill (logs are not truncated on a
#      cluster, so an upper bound on what the restore reads) and the id of
#      the checkpoint resumed from.
#
#   perf/bench_cluster.sh [WEIR [CLUSTER_JOB.so [BENCH_NET [WORDCOUNT.so]]]]
#   RECORDS=60000000 RATE=10000 LAT_SECS=3 SECS=2 to change (WORKER_ARGS:
#   more `weir worker` options, e.g. --no-zerocopy; RUN_ARGS: more `weir run`
#   options for the throughput job, e.g. --credits 4); the whole
#   script takes 30-45 s.  Needs root; exits 77 (skip) otherwise or when
#   namespaces or a bridge cannot be made.
set -u
WEIR=$(realpath "${1:-build/apps/weir}")
JOB=$(realpath "${2:-build/perf/cluster_job.so}")
NETB=$(realpath "${3:-build/perf/bench_net}")
WC=$(realpath "${4:-build/apps/examples/wordcount.so}")
RECORDS=${RECORDS:-60000000}
RATE=${RATE:-10000}
LAT_SECS=${LAT_SECS:-3}
SECS=${SECS:-2}
POLICIES=${POLICIES:-park busy-poll}
NCPU=$(nproc)
say() { echo "bench_cluster: $*" >&2; }
if [ "$(id -u)" != 0 ]; then
	say "skipped: needs root for network namespaces"
	exit 77
fi
command -v ip > /dev/null || { say "skipped: no ip (iproute2)"; exit 77; }
for f in "$WEIR" "$JOB" "$NETB" "$WC"; do
	[ -e "$f" ] || { say "skipped: $f not built"; exit 77; }
done

TMP=$(mktemp -d)
# the namespaces, bridges and cleanup (shared with tests/e2e/cluster.sh)
. "$(dirname "$(realpath "$0")")/../tests/e2e/netns_lib.sh"
NET=10.89.$((S % 200))
node "wco$S" "$NET.1"
node "ww1$S" "$NET.11"
node "ww2$S" "$NET.12"
node "ww3$S" "$NET.13"
CO="$NET.1:7700"

ip netns exec "wco$S" "$WEIR" coordinator --listen "$CO" --heartbeat-timeout 1000 \
	> "$TMP/coord.log" 2>&1 &
PIDS="$PIDS $!"
disown
# worker N LOG [args]: worker N (namespace wwN) logging into LOG; pid in WPID
worker() {
	n=$1 log=$2
	shift 2
	ip netns exec "ww$n$S" taskset -c $(((n - 1) % NCPU)) \
		"$WEIR" worker --coordinator "$CO" --cores 1 ${WORKER_ARGS:-} "$@" >> "$log" 2>&1 &
	WPID=$!
	disown
	PIDS="$PIDS $WPID"
}
# await_workers K: until the coordinator lists K live workers (5 s at most)
await_workers() {
	for _ in $(seq 100); do
		k=$(ip netns exec "wco$S" "$WEIR" list --cluster "$CO" 2> /dev/null |
			grep -c 'cores 1 \(tcp\|dpdk\)$')
		[ "$k" -ge "$1" ] && return 0
		sleep 0.05
	done
	return 1
}
run_cluster() { # args... (from the coordinator's namespace)
	timeout 60 ip netns exec "wco$S" "$WEIR" run --cluster "$CO" --no-progress --no-pin "$@"
}
# (the processes started in the background are disowned: no "Killed" notes)
kill_pid() {
	kill -9 "$1" 2> /dev/null
	for _ in $(seq 100); do kill -0 "$1" 2> /dev/null || return 0; sleep 0.02; done
}
sleep 0.2
# Registration order is global core order: worker 1 (core 0) first.
worker 1 "$TMP/w1.log"
W1=$WPID
await_workers 1 || { cat "$TMP/coord.log" >&2; say "worker 1 did not register"; exit 1; }
worker 2 "$TMP/w2.log"
W2=$WPID
await_workers 2 || { cat "$TMP/coord.log" >&2; say "worker 2 did not register"; exit 1; }

# ---- 1. cross-node throughput --------------------------------------------------------
ipmb=0
if command -v iperf3 > /dev/null; then
	ip netns exec "ww2$S" iperf3 -s -1 -B "$NET.12" -p 5201 > /dev/null 2>&1 &
	srv=$!
	sleep 0.3
	ip netns exec "ww1$S" iperf3 -c "$NET.12" -p 5201 -t "$SECS" -J > "$TMP/iperf.json" 2> /dev/null
	wait $srv
	ipmb=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 8e6, 1))' \
		"$TMP/iperf.json" 2> /dev/null || echo 0)
else
	say "no iperf3: no ratio to it"
fi
: > "$TMP/w1.log"
: > "$TMP/w2.log"
if run_cluster -p 1 ${RUN_ARGS:-} "$JOB" --job throughput --records "$RECORDS" > "$TMP/tp.out" 2> "$TMP/tp.err"; then
	sleep 0.2 # the workers' end-of-job lines
	# The placement must put gen on core 0 (worker 0) and count on core 1.
	if ! grep -q "gen .*(cores: 0)" "$TMP/tp.err" || ! grep -q "count .*(cores: 1)" "$TMP/tp.err"; then
		say "unexpected placement (the exchange may not cross workers):"
		cat "$TMP/tp.err" >&2
	fi
	python3 - "$TMP/w1.log" "$TMP/w2.log" "$ipmb" "$RECORDS" <<'PY'
import json, re, sys
w1, w2 = open(sys.argv[1]).read(), open(sys.argv[2]).read()
ip, records = float(sys.argv[3]), int(sys.argv[4])
m = re.search(r"cluster_job: throughput subtask 0 rows (\d+) seconds ([\d.]+) rows_per_s (\d+)", w2)
d = re.search(r"frames out (\d+) in (\d+), ([\d.]+) MB out ([\d.]+) MB in", w1)
if not m or not d:
    print("bench_cluster: no throughput figures in the worker logs", file=sys.stderr)
    sys.exit(0)
rows, secs, rps = int(m[1]), float(m[2]), float(m[3])
mb = float(d[3]) / secs
r = {"bench": "cluster_throughput", "workers": 2, "cores_per_worker": 1,
     "batch_rows": 1024, "row_bytes": 24, "exchange": "rebalance", "transport": "tcp",
     "rows": rows, "rows_expected": records, "seconds": round(secs, 3),
     "records_per_s": round(rps), "frames_out": int(d[1]),
     "mb_per_s": round(mb, 1), "iperf3_mb_per_s": ip}
if ip > 0:
    r["ratio_to_iperf3"] = round(mb / ip, 3)
print(json.dumps(r))
PY
	grep -h "placement\|worker [0-9]\|chain\|exchange" "$TMP/tp.err" | sed 's/^/bench_cluster: /' >&2
else
	say "throughput job failed:"
	tail -5 "$TMP/tp.err" >&2
	tail -5 "$TMP/w1.log" "$TMP/w2.log" >&2
fi

# ---- 2. round trip of a record through worker 1 ---------------------------------------
# latency_figures LOG TRANSPORT PLAIN_JSON POLICY: the JSON line of a latency run
latency_figures() {
	python3 - "$1" "$2" "$3" "$RATE" "$LAT_SECS" "$4" <<'PY'
import json, re, sys
w = open(sys.argv[1]).read()
# the last run's figures (a log may hold several)
ms = list(re.finditer(r"cluster_job: latency rows (\d+) count (\d+) p50_us ([\d.]+) p99_us ([\d.]+) "
                      r"p999_us ([\d.]+) max_us ([\d.]+)", w))
m = ms[-1] if ms else None
if not m:
    print("bench_cluster: no latency figures in worker 0's log", file=sys.stderr)
    sys.exit(1)
try:
    plain = json.loads(sys.argv[3])
except ValueError:
    plain = {}
r = {"bench": "cluster_rtt" if sys.argv[2] == "tcp" else "cluster_rtt_" + sys.argv[2],
     "transport": sys.argv[2], "path": "source@w0 -> pass@w1 -> sink@w0",
     "rate": int(sys.argv[4]), "measure_s": float(sys.argv[5]), "warmup_s": 1,
     "buffer_timeout_ms": 0, "idle_policy": sys.argv[6], "count": int(m[2]),
     "p50_us": float(m[3]), "p99_us": float(m[4]), "p999_us": float(m[5]),
     "max_us": float(m[6])}
if plain.get("plain_p50_us"):
    r["plain_tcp_p50_us"] = plain["plain_p50_us"]
    r["plain_tcp_p99_us"] = plain["plain_p99_us"]
    r["plain_tcp_p999_us"] = plain["plain_p999_us"]
    r["ratio_p50_to_plain_tcp"] = round(r["p50_us"] / plain["plain_p50_us"], 2)
    r["ratio_p99_to_plain_tcp"] = round(r["p99_us"] / plain["plain_p99_us"], 2)
    r["target_ratio_max"] = 2
print(json.dumps(r))
PY
}
# Plain TCP ping-pong between the two namespaces (bench_net's pong/ping:
# the transport's round trip, then plain blocking sockets).
ip netns exec "ww2$S" "$NETB" pong "$NET.12:7720" > /dev/null 2>&1 &
srv=$!
ip netns exec "ww1$S" "$NETB" ping "$NET.11:0" "$NET.12:7720" 20000 > "$TMP/ping.json" 2> "$TMP/ping.err"
wait $srv
plain=$(grep net_tcp_rtt "$TMP/ping.json" | head -1)
[ -n "$plain" ] && echo "$plain" | sed 's/"bench":"net_tcp_rtt"/"bench":"cluster_net_tcp_rtt"/' ||
	say "no plain TCP ping-pong figure: $(cat "$TMP/ping.err")"
# -p 1, no pinning inside (each worker runs under taskset on its own CPU)
latargs() { # POLICY
	echo "-p 1 --mode streaming --buffer-timeout 0 --idle-policy $1 $JOB --job latency --rate $RATE --seconds $LAT_SECS --warmup 1"
}
for pol in $POLICIES; do
	: > "$TMP/w1.log"
	if run_cluster $(latargs "$pol") > "$TMP/lat.out" 2> "$TMP/lat.err"; then
		sleep 0.2
		if ! grep -q "ticks .*(cores: 0)" "$TMP/lat.err" || ! grep -q "pass .*(cores: 1)" "$TMP/lat.err" ||
		   ! grep -q "latency .*(cores: 0)" "$TMP/lat.err"; then
			say "unexpected placement for the round trip:"
			cat "$TMP/lat.err" >&2
		fi
		latency_figures "$TMP/w1.log" tcp "$plain" "$pol"
	else
		say "latency job ($pol) failed:"
		tail -5 "$TMP/lat.err" >&2
	fi
done

# ---- 2b. the same round trip over DPDK (af_packet on a second veth) ----------------------
veth_bytes() { # rx + tx bytes of worker 0's DPDK veth (its bridge end)
	echo $(($(cat /sys/class/net/hd${S}2/statistics/rx_bytes) + $(cat /sys/class/net/hd${S}2/statistics/tx_bytes)))
}
dpdk_skip() { echo "{\"bench\":\"cluster_rtt_dpdk\",\"measured\":false,\"why\":\"$*\"}"; say "DPDK round trip not measured: $*"; }
if ! "$WEIR" worker --help 2>&1 | grep -q dpdk; then
	dpdk_skip "weir built without DPDK"
else
	# each worker's data veth (netns_lib.sh: no IP address, so the kernel
	# ignores what af_packet also hands it): node k = worker k - 1
	kill_pid "$W1"
	kill_pid "$W2"
	sleep 1.2 # the coordinator notices both (connection drop)
	: > "$TMP/d1.log"
	: > "$TMP/d2.log"
	worker 1 "$TMP/d1.log" --transport dpdk --dpdk-device "net_af_packet0,iface=d${S}2"
	D1=$WPID
	await_workers 1
	worker 2 "$TMP/d2.log" --transport dpdk --dpdk-device "net_af_packet0,iface=d${S}3"
	D2=$WPID
	if ! await_workers 2; then
		dpdk_skip "DPDK workers did not register: $(tail -1 "$TMP/d2.log" | tr -d '"\\')"
	else
		for pol in $POLICIES; do
			vb0=$(veth_bytes)
			if run_cluster $(latargs "$pol") > "$TMP/dlat.out" 2> "$TMP/dlat.err"; then
				sleep 0.2
				# The frames must have crossed the af_packet veths, not the
				# control bridge.
				say "worker 0's DPDK veth carried $(($(veth_bytes) - vb0)) bytes during the $pol job"
				latency_figures "$TMP/d1.log" dpdk "$plain" "$pol" ||
					dpdk_skip "no figures: $(tail -1 "$TMP/d1.log" | tr -d '"\\')"
			else
				alive=""
				kill -0 "$D1" 2> /dev/null || alive="$alive worker 0 (dpdk) exited;"
				kill -0 "$D2" 2> /dev/null || alive="$alive worker 1 (dpdk) exited;"
				dpdk_skip "the job failed:$alive $(grep -h -i 'error\|fail\|cannot\|signal\|abort' "$TMP/dlat.err" "$TMP/d1.log" "$TMP/d2.log" | head -3 | tr -d '"\\' | tr '\n' ' ')"
				tail -5 "$TMP/d1.log" "$TMP/d2.log" >&2
				break
			fi
		done
	fi
	kill_pid "$D1"
	kill_pid "$D2"
	sleep 1.2
	worker 1 "$TMP/w1.log"
	W1=$WPID
	await_workers 1
	worker 2 "$TMP/w2.log"
	W2=$WPID
fi

# ---- 3. failover ---------------------------------------------------------------------
worker 3 "$TMP/w3.log"
W3=$WPID
if ! await_workers 3; then
	say "3 workers did not register: no failover figure"
	ip netns exec "wco$S" "$WEIR" list --cluster "$CO" >&2
	exit 0
fi
# 40 000 lines of 8 words out of 17 576 distinct ones, at 4000 lines/s:
# about 10 s of input, cancelled once output has resumed.
awk 'BEGIN { srand(7); for (i = 0; i < 40000; i++) { l = ""; for (j = 0; j < 8; j++)
	l = l sprintf("%c%c%c ", 97 + int(rand() * 26), 97 + int(rand() * 26), 97 + int(rand() * 26)); print l } }' \
	> "$TMP/words.txt"
CK="$TMP/f.ck"
OUT="$TMP/f.out"
: > "$TMP/coord.log.mark"
coord_lines0=$(wc -l < "$TMP/coord.log")
run_cluster -p 3 --mode streaming --checkpoint-dir "$CK" --checkpoint-interval 200 \
	"$WC" --input "$TMP/words.txt" --output "$OUT" --rate 4000 > "$TMP/f.stdout" 2> "$TMP/f.err" &
RUN=$!
disown
PIDS="$PIDS $RUN"
# placements printed since the job was submitted (1: the first attempt)
placements() { tail -n +"$((coord_lines0 + 1))" "$TMP/coord.log" | grep -c "placement of job"; }
committed() { ls "$OUT" 2> /dev/null | grep -c '^part-'; }
# wait for the first attempt to commit output, then a little more
for _ in $(seq 200); do
	[ "$(committed)" -ge 3 ] && break
	sleep 0.05
done
sleep 1
if [ "$(committed)" -lt 1 ]; then
	say "the failover job committed no output before the kill:"
	tail -5 "$TMP/f.err" "$TMP/coord.log" >&2
else
	state_bytes=$(du -sb "$CK" | cut -f1)
	keys=$(cat "$OUT"/part-* | cut -d, -f1 | sort -u | wc -l)
	ls "$OUT" | grep '^part-' | sort > "$TMP/before"
	t0=$(date +%s%N)
	kill -9 "$W2"
	t_dep=0
	t_out=0
	for _ in $(seq 1500); do # 15 s at most
		now=$(date +%s%N)
		if [ "$t_dep" = 0 ] && [ "$(placements)" -ge 2 ]; then
			t_dep=$now
			ls "$OUT" | grep '^part-' | sort > "$TMP/before"
		fi
		if [ "$t_dep" != 0 ] &&
		   [ -n "$(ls "$OUT" | grep '^part-' | sort | comm -13 "$TMP/before" -)" ]; then
			t_out=$now
			break
		fi
		sleep 0.01
	done
	resumed=$(grep -h "resuming from checkpoint" "$TMP/w1.log" "$TMP/w3.log" | head -1 |
		sed 's/.*resuming from checkpoint \([0-9]*\).*/\1/')
	ip netns exec "wco$S" "$WEIR" cancel --cluster "$CO" > /dev/null 2>&1
	if [ "$t_out" != 0 ]; then
		echo "$t0 $t_dep $t_out $state_bytes $keys ${resumed:-0}" | awk '{
			printf "{\"bench\":\"cluster_failover\",\"workers\":3,\"killed\":1,\"job\":\"wordcount streaming -p 3\",\"checkpoint_interval_ms\":200,\"poll_ms\":10,\"state_bytes_on_disk\":%d,\"keys_committed_before_kill\":%d,\"resumed_from_checkpoint\":%d,\"detect_redeploy_ms\":%.0f,\"failover_ms\":%.0f}\n",
				$4, $5, $6, ($2 - $1) / 1e6, ($3 - $1) / 1e6 }'
	else
		say "output did not resume within 15 s of the kill (redeploy seen: $([ "$t_dep" != 0 ] && echo yes || echo no))"
		tail -8 "$TMP/coord.log" >&2
	fi
fi
kill_pid "$RUN"
exit 0
