#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# A cluster on one machine: the coordinator and each worker in a network
# namespace of its own, joined by veth pairs on a bridge (made and removed
# here).  Jobs across 2 and 3 workers over io_uring TCP compared with the
# single-process answer; a worker SIGKILLed mid-job (at random moments,
# twice) with exactly-once committed output; garbage sent to the live
# coordinator.  Needs root (network namespaces); exits 77 otherwise.
. "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
[ "$(id -u)" -eq 0 ] || { echo "skip: not root (network namespaces)"; exit 77; }
command -v ip > /dev/null || { echo "skip: ip (iproute2) not found"; exit 77; }

S=$$
BR=wbr$S
NSS=""
PIDS=""
cleanup() {
	for p in $PIDS; do kill -9 "$p" 2> /dev/null || true; done
	for n in $NSS; do ip netns del "$n" 2> /dev/null || true; done
	ip link del "$BR" 2> /dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT
ip link add "$BR" type bridge 2> /dev/null || { echo "skip: cannot create a bridge"; exit 77; }
ip link set "$BR" up
# node NAME IP: a namespace with a veth on the bridge
i=0
node() {
	i=$((i + 1))
	ip netns add "$1" || { echo "skip: cannot create network namespaces"; exit 77; }
	NSS="$NSS $1"
	ip link add "h$S$i" type veth peer name "n$S$i"
	ip link set "h$S$i" master "$BR" up
	ip link set "n$S$i" netns "$1"
	ip -n "$1" addr add "$2/24" dev "n$S$i"
	ip -n "$1" link set "n$S$i" up
	ip -n "$1" link set lo up
}
node "wco$S" 10.88.$((S % 200)).1
NET=10.88.$((S % 200))
node "ww1$S" "$NET.11"
node "ww2$S" "$NET.12"
node "ww3$S" "$NET.13"
node "ww4$S" "$NET.14"
CO="$NET.1:7700"

ip netns exec "wco$S" "$WEIR" coordinator --listen "$CO" --heartbeat-timeout 1000 \
	> "$TMP/coord.log" 2>&1 &
PIDS="$PIDS $!"
sleep 0.3
# worker N [args]: start worker N in its namespace; its pid in WPID
worker() {
	n=$1
	shift
	ip netns exec "ww$n$S" "$WEIR" worker --coordinator "$CO" --cores 1 "$@" \
		>> "$TMP/w$n.log" 2>&1 &
	WPID=$!
	PIDS="$PIDS $WPID"
}
# wait until the coordinator lists K live workers
await_workers() {
	for _ in $(seq 100); do
		k=$(ip netns exec "wco$S" "$WEIR" list --cluster "$CO" 2> /dev/null |
			grep -c 'cores 1 tcp$' || true)
		[ "$k" -ge "$1" ] && return 0
		sleep 0.1
	done
	return 1
}
run_cluster() { # run args... (from the coordinator's namespace: any node works)
	timeout 300 ip netns exec "wco$S" "$WEIR" run --cluster "$CO" --no-progress "$@"
}

LC_ALL=C tr -c 'a-z\n' ' ' < /usr/share/doc/bash/copyright 2> /dev/null > "$TMP/text.txt" ||
	true
cat /usr/share/doc/*/copyright 2> /dev/null | head -c 3000000 >> "$TMP/text.txt"
ref_wordcount "$TMP/text.txt" > "$TMP/text.ref"

# ---- word count on 2 and 3 workers --------------------------------------------
worker 1
W1=$WPID
worker 2
W2=$WPID
await_workers 2 || { cat "$TMP/coord.log"; not_ok "2 workers did not register"; finish; exit 1; }
if run_cluster -p 2 "$EXAMPLES/wordcount.so" --input "$TMP/text.txt" --output "$TMP/wc2.csv" \
	> "$TMP/run.out" 2> "$TMP/run.err" && LC_ALL=C sort "$TMP/wc2.csv" | cmp -s - "$TMP/text.ref"; then
	ok "wordcount -p 2 across 2 workers equals the reference ($(wc -l < "$TMP/text.ref") words)"
else
	cat "$TMP/run.err" "$TMP/run.out" | tail -20
	not_ok "wordcount across 2 workers"
fi
grep -q "worker 1 .*cores 1-1" "$TMP/run.err" && grep -q "exchange: " "$TMP/run.err" &&
	ok "the client is told the placement" || not_ok "no placement in the client's output"

worker 3
await_workers 3 || not_ok "3 workers did not register"
if run_cluster -p 3 --batch-size 100 "$EXAMPLES/wordcount.so" --input "$TMP/text.txt" \
	--output "$TMP/wc3.csv" > "$TMP/run.out" 2> "$TMP/run.err" &&
	LC_ALL=C sort "$TMP/wc3.csv" | cmp -s - "$TMP/text.ref"; then
	ok "wordcount -p 3 (batches of 100) across 3 workers equals the reference"
else
	cat "$TMP/run.err" | tail -20
	not_ok "wordcount across 3 workers"
fi
ip netns exec "wco$S" "$WEIR" list --cluster "$CO" > "$TMP/list" 2>&1 &&
	grep -q "jobs: none" "$TMP/list" && [ "$(grep -c ' tcp$' "$TMP/list")" -eq 3 ] &&
	ok "weir list --cluster shows 3 workers and no job" || { cat "$TMP/list"; not_ok "weir list"; }

# ---- windowed example on 3 workers, checkpointed, against a local run -----------
python3 "$HERE/gen_events.py" events 7 40000 > "$TMP/ev.csv"
WARGS="--input $TMP/ev.csv --window tumbling:1000 --out-of-orderness 500 --allowed-lateness 0"
"$WEIR" run --no-progress -p 3 --checkpoint-dir "$TMP/wref.ck" "$EXAMPLES/window_agg.so" $WARGS \
	--output "$TMP/wref" --late-output "$TMP/wref.late" 2> "$TMP/wref.err" ||
	{ cat "$TMP/wref.err"; not_ok "local window run"; }
python3 "$HERE/fault_check.py" rows "$TMP/wref" > "$TMP/wref.rows" || true
if run_cluster -p 3 --checkpoint-dir "$TMP/wcl.ck" --checkpoint-interval 100 \
	"$EXAMPLES/window_agg.so" $WARGS --output "$TMP/wcl" --late-output "$TMP/wcl.late" \
	> "$TMP/run.out" 2> "$TMP/run.err"; then
	python3 "$HERE/fault_check.py" rows "$TMP/wcl" > "$TMP/wcl.rows" || true
	if [ -s "$TMP/wref.rows" ] && cmp -s "$TMP/wref.rows" "$TMP/wcl.rows"; then
		ok "window_agg -p 3 across 3 workers, checkpointed: committed rows equal the local run ($(wc -l < "$TMP/wref.rows") windows)"
	else
		diff "$TMP/wref.rows" "$TMP/wcl.rows" | head -5
		not_ok "window_agg across 3 workers differs from the local run"
	fi
	ls "$TMP/wcl.ck" | grep -q '^chk-.*manifest$' && ok "the coordinator wrote checkpoint manifests" ||
		not_ok "no manifest in the shared checkpoint directory"
else
	tail -20 "$TMP/run.err"
	not_ok "window_agg across 3 workers failed"
fi

# ---- failover: SIGKILL a worker mid-job, twice ----------------------------------
# A running count per word at a limited rate: every committed row of a word
# must continue 1, 2, 3, ... and the final counts must be the reference.
awk 'BEGIN { srand(11); for (i = 0; i < 6000; i++) { l = ""; for (j = 0; j < 8; j++)
	l = l sprintf("w%c%c ", 97 + int(rand() * 26), 97 + int(rand() * 26)); print l } }' \
	> "$TMP/words.txt"
ref_wordcount "$TMP/words.txt" > "$TMP/words.ref"
SEED=${SEED:-$S}
run_cluster -p 3 --mode streaming --checkpoint-dir "$TMP/f.ck" --checkpoint-interval 200 \
	"$EXAMPLES/wordcount.so" --input "$TMP/words.txt" --output "$TMP/f" --rate 1000 \
	> "$TMP/f.out" 2> "$TMP/f.err" &
RUN=$!
kills=0
for victim in 1 2; do
	# a random moment 1-2.5 s into the run (or the restarted run)
	sleep "$(awk -v s="$SEED$victim" 'BEGIN { srand(s); printf "%.2f", 1 + rand() * 1.5 }')"
	if [ "$victim" = 1 ]; then kill -9 "$W1"; else kill -9 "$W2"; fi
	kills=$((kills + 1))
	t0=$(date +%s.%N)
	worker 4 # a replacement joins
	sleep 1
done
rc=0
wait "$RUN" || rc=$?
if [ "$rc" -eq 0 ]; then
	ok "streaming wordcount finished after $kills worker kills ($(grep -c 'restarting' "$TMP/f.err" || true) restarts; seed $SEED)"
else
	tail -20 "$TMP/f.err"
	tail -20 "$TMP/coord.log"
	not_ok "streaming wordcount with killed workers failed (rc $rc, seed $SEED)"
fi
if python3 "$HERE/fault_check.py" sequence "$TMP/f" > "$TMP/f.final"; then
	ok "after the kills every word's committed counts go 1, 2, 3, ... (nothing lost or repeated)"
else
	not_ok "after the kills a committed count was lost or repeated (seed $SEED)"
fi
cmp -s "$TMP/words.ref" "$TMP/f.final" && ok "after the kills the final counts are right" ||
	{ diff "$TMP/words.ref" "$TMP/f.final" | head -5; not_ok "final counts differ (seed $SEED)"; }
grep "restarting\|attempt" "$TMP/f.err" | sed 's/^/# /' | head -8

# ---- garbage on the wire -----------------------------------------------------------
ip netns exec "ww3$S" python3 - "$NET.1" 7700 > "$TMP/garbage.out" 2>&1 <<'EOF' || true
import os, socket, struct, sys, time
host, port = sys.argv[1], int(sys.argv[2])
def conn():
    s = socket.create_connection((host, port), timeout=5)
    s.recv(8 + 32)  # the challenge
    return s
cases = {
    "random bytes": os.urandom(4096),
    "truncated header": b"WC\x01",
    "bad magic": b"XX\x01\x02" + struct.pack("<I", 33) + os.urandom(33),
    "oversized": b"WC\x01\x02" + struct.pack("<I", 0xFFFFFFF0),
    "unknown type": b"WC\x01\x63" + struct.pack("<I", 0),
    "wrong mac": b"WC\x01\x02" + struct.pack("<I", 33) + b"\x01" + os.urandom(32),
    "short auth": b"WC\x01\x02" + struct.pack("<I", 5) + b"\x01abcd",
}
for name, data in cases.items():
    s = conn()
    s.sendall(data)
    s.settimeout(3)
    try:
        closed = s.recv(100) == b""
    except (ConnectionResetError, socket.timeout):
        closed = True
    print(name, "closed" if closed else "NOT CLOSED")
    s.close()
EOF
if ! grep -q "NOT CLOSED" "$TMP/garbage.out" && [ "$(grep -c closed "$TMP/garbage.out")" -eq 7 ] &&
	ip netns exec "wco$S" "$WEIR" list --cluster "$CO" > /dev/null 2>&1; then
	ok "garbage, truncated, oversized and unauthenticated messages close their connection; the coordinator serves on"
else
	cat "$TMP/garbage.out"
	not_ok "the coordinator did not refuse garbage cleanly"
fi
grep -q "refusing\|closing" "$TMP/coord.log" && ok "the coordinator logged what it refused" ||
	not_ok "nothing logged about the garbage"

finish
