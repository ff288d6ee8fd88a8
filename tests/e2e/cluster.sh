#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# A cluster on one machine: the coordinator and each worker in a network
# namespace of its own, joined by veth pairs on a bridge (made and removed
# here); each worker also has a data veth without an IP address on a second
# bridge, for the DPDK transport (net_af_packet on it).  For each transport
# (io_uring TCP, then DPDK when built): jobs across 2 and 3 workers
# compared with the single-process answer; workers SIGKILLed mid-job at
# random moments with exactly-once committed output; the network degraded
# under a running job (1% packet loss, a 300 ms partition, a rate limit)
# with exactly-once output.  Garbage is sent to the live coordinator.
# This kernel has no netem (CONFIG_NET_SCH_NETEM is off here), so loss is
# nftables (TCP) or the DPDK transport's receive-drop hook, the partition a
# link taken down, and delay a tbf rate limit; reordering is covered by the
# DPDK protocol's unit test (test_rdp).  Needs root; exits 77 otherwise.
. "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/netns_lib.sh"
node "wco$S" 10.88.$((S % 200)).1
NET=10.88.$((S % 200))
node "ww1$S" "$NET.11"
node "ww2$S" "$NET.12"
node "ww3$S" "$NET.13"
node "ww4$S" "$NET.14"
CO="$NET.1:7700"

LC_ALL=C tr -c 'a-z\n' ' ' < /usr/share/doc/bash/copyright 2> /dev/null > "$TMP/text.txt" ||
	true
cat /usr/share/doc/*/copyright 2> /dev/null | head -c 3000000 >> "$TMP/text.txt"
ref_wordcount "$TMP/text.txt" > "$TMP/text.ref"
python3 "$HERE/gen_events.py" events 7 40000 > "$TMP/ev.csv"
WARGS="--input $TMP/ev.csv --window tumbling:1000 --out-of-orderness 500 --allowed-lateness 0"
"$WEIR" run --no-progress -p 3 --checkpoint-dir "$TMP/wref.ck" "$EXAMPLES/window_agg.so" $WARGS \
	--output "$TMP/wref" --late-output "$TMP/wref.late" 2> "$TMP/wref.err" ||
	{ cat "$TMP/wref.err"; not_ok "local window run"; }
python3 "$HERE/fault_check.py" rows "$TMP/wref" > "$TMP/wref.rows" || true
# A running count per word at a limited rate: every committed row of a word
# must continue 1, 2, 3, ... and the final counts must be the reference.
awk 'BEGIN { srand(11); for (i = 0; i < 6000; i++) { l = ""; for (j = 0; j < 8; j++)
	l = l sprintf("w%c%c ", 97 + int(rand() * 26), 97 + int(rand() * 26)); print l } }' \
	> "$TMP/words.txt"
ref_wordcount "$TMP/words.txt" > "$TMP/words.ref"
SEED=${SEED:-$S}
echo "# seed $SEED"

PORT=7700
COPID=""
SECRET="$TMP/secret"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$SECRET"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TMP/other-secret"
# start_coordinator: a fresh coordinator (its own port: the old one's may linger)
start_coordinator() {
	[ -n "$COPID" ] && kill -9 "$COPID" 2> /dev/null || true
	PORT=$((PORT + 1))
	CO="$NET.1:$PORT"
	ip netns exec "wco$S" "$WEIR" coordinator --listen "$CO" --heartbeat-timeout 1000 \
		--secret-file "$SECRET" \
		>> "$TMP/coord.log" 2>&1 &
	COPID=$!
	PIDS="$PIDS $COPID"
	# serving (answers a list), not a fixed 0.3 s after the start
	wait_until 60 ip netns exec "wco$S" "$WEIR" list --cluster "$CO" --secret-file "$SECRET" \
		> /dev/null 2>&1 || echo "# the coordinator did not answer within 60 s"
}
# worker N: start worker N in its namespace with the phase's transport; pid in WPID
worker() {
	n=$1
	if [ "$T" = dpdk ]; then
		set -- --transport dpdk --dpdk-device "net_af_packet0,iface=d$S$((n + 1))" \
			--data-addr "10.89.0.$n"
	else
		set --
	fi
	ip netns exec "ww$n$S" env ${DROP:+WEIR_DPDK_RX_DROP_PPM=$DROP} "$WEIR" worker \
		--coordinator "$CO" --cores 1 --secret-file "$SECRET" "$@" >> "$TMP/w$n.$T.log" 2>&1 &
	WPID=$!
	PIDS="$PIDS $WPID"
}
# the coordinator lists K live workers
live_workers() {
	k=$(ip netns exec "wco$S" "$WEIR" list --cluster "$CO" --secret-file "$SECRET" 2> /dev/null |
		grep -v dead | grep -c "cores 1 $T\$" || true)
	[ "$k" -ge "$1" ]
}
# wait until it does (60 s: a deadline, not an expected time)
await_workers() { wait_until 60 live_workers "$1"; }
stop_workers() { for w in $WORKERS; do kill -9 "$w" 2> /dev/null || true; done; WORKERS=""; }
run_cluster() { # run args... (from the coordinator's namespace: any node works)
	timeout 300 ip netns exec "wco$S" "$WEIR" run --cluster "$CO" --secret-file "$SECRET" --no-progress "$@"
}

# phase T: everything over transport T
phase() {
	T=$1
	DROP=""
	start_coordinator
	WORKERS=""
	worker 1; W1=$WPID; WORKERS="$WORKERS $WPID"
	worker 2; W2=$WPID; WORKERS="$WORKERS $WPID"
	await_workers 2 || { cat "$TMP/coord.log"; not_ok "$T: 2 workers did not register"; return; }

	# ---- word count on 2 and 3 workers ------------------------------------
	if run_cluster -p 2 "$EXAMPLES/wordcount.so" --input "$TMP/text.txt" \
		--output "$TMP/wc2.$T.csv" > "$TMP/run.out" 2> "$TMP/run.err" &&
		LC_ALL=C sort "$TMP/wc2.$T.csv" | cmp -s - "$TMP/text.ref"; then
		ok "$T: wordcount -p 2 across 2 workers equals the reference ($(wc -l < "$TMP/text.ref") words)"
	else
		tail -20 "$TMP/run.err"
		not_ok "$T: wordcount across 2 workers"
	fi
	grep -q "worker 1 .*cores 1-1" "$TMP/run.err" && grep -q "exchange: " "$TMP/run.err" &&
		ok "$T: the client is told the placement" || not_ok "$T: no placement in the client's output"
	worker 3; W3=$WPID; WORKERS="$WORKERS $WPID"
	await_workers 3 || not_ok "$T: 3 workers did not register"
	if run_cluster -p 3 --batch-size 100 "$EXAMPLES/wordcount.so" --input "$TMP/text.txt" \
		--output "$TMP/wc3.$T.csv" > "$TMP/run.out" 2> "$TMP/run.err" &&
		LC_ALL=C sort "$TMP/wc3.$T.csv" | cmp -s - "$TMP/text.ref"; then
		ok "$T: wordcount -p 3 (batches of 100) across 3 workers equals the reference"
	else
		tail -20 "$TMP/run.err"
		not_ok "$T: wordcount across 3 workers"
	fi
	if ip netns exec "wco$S" "$WEIR" list --cluster "$CO" > "$TMP/nosecret" 2>&1 ||
		ip netns exec "wco$S" "$WEIR" list --cluster "$CO" --secret-file "$TMP/other-secret" \
			>> "$TMP/nosecret" 2>&1; then
		not_ok "$T: a client without the cluster's secret was let in"
	else
		grep -q "refused us" "$TMP/nosecret" &&
			ok "$T: clients without the secret, or with another one, are refused" ||
			{ cat "$TMP/nosecret"; not_ok "$T: no clear refusal without the secret"; }
	fi
	ip netns exec "wco$S" "$WEIR" list --cluster "$CO" --secret-file "$SECRET" > "$TMP/list" 2>&1 &&
		grep -q "jobs: none" "$TMP/list" && [ "$(grep -c " $T\$" "$TMP/list")" -eq 3 ] &&
		ok "$T: weir list --cluster shows 3 workers and no job" ||
		{ cat "$TMP/list"; not_ok "$T: weir list"; }

	# ---- windowed example on 3 workers, checkpointed, against a local run ----
	if run_cluster -p 3 --checkpoint-dir "$TMP/wcl.$T.ck" --checkpoint-interval 100 \
		"$EXAMPLES/window_agg.so" $WARGS --output "$TMP/wcl.$T" --late-output "$TMP/wcl.$T.late" \
		> "$TMP/run.out" 2> "$TMP/run.err"; then
		python3 "$HERE/fault_check.py" rows "$TMP/wcl.$T" > "$TMP/wcl.rows" || true
		if [ -s "$TMP/wref.rows" ] && cmp -s "$TMP/wref.rows" "$TMP/wcl.rows"; then
			ok "$T: window_agg -p 3 across 3 workers, checkpointed: committed rows equal the local run ($(wc -l < "$TMP/wref.rows") windows)"
		else
			diff "$TMP/wref.rows" "$TMP/wcl.rows" | head -5
			not_ok "$T: window_agg across 3 workers differs from the local run"
		fi
		ls "$TMP/wcl.$T.ck" | grep -q '^chk-.*manifest$' &&
			ok "$T: the coordinator wrote checkpoint manifests" ||
			not_ok "$T: no manifest in the shared checkpoint directory"
	else
		tail -20 "$TMP/run.err"
		not_ok "$T: window_agg across 3 workers failed"
	fi

	# ---- savepoints, stop, restore at another parallelism, cancel -----------
	if [ "$T" = tcp ]; then
		run_cluster -p 2 --mode streaming --checkpoint-dir "$TMP/s.ck" \
			--checkpoint-interval 300 "$EXAMPLES/wordcount.so" --input "$TMP/words.txt" \
			--output "$TMP/s.out" --rate 1000 > "$TMP/s.stdout" 2> "$TMP/s.err" &
		RUN=$!
		# once the job runs (a checkpoint is complete; the input lasts 6 s
		# at least), not after a fixed 1.5 s that a slow start may eat
		wait_until 60 has_checkpoints "$TMP/s.ck" 1 || echo "# no checkpoint within 60 s"
		ctl() { ip netns exec "wco$S" "$WEIR" "$@" --cluster "$CO" --secret-file "$SECRET"; }
		sp1=$(ctl savepoint "$TMP/sp" 2> "$TMP/sp.err") || cat "$TMP/sp.err"
		sp2=$(ctl stop --savepoint "$TMP/sp" 2> "$TMP/sp.err") || cat "$TMP/sp.err"
		rc=0
		wait "$RUN" || rc=$?
		if [ -f "$sp1/_metadata" ] && [ -f "$sp2/_metadata" ] && [ "$rc" -eq 0 ] &&
			grep -q "finished with a savepoint" "$TMP/s.stdout"; then
			ok "$T: weir savepoint and weir stop --savepoint against the cluster"
		else
			not_ok "$T: savepoint or stop --savepoint on the cluster (rc $rc: '$sp1' '$sp2')"
		fi
		if run_cluster -p 3 --mode streaming --checkpoint-dir "$TMP/s2.ck" \
			--from-savepoint "$sp2" "$EXAMPLES/wordcount.so" --input "$TMP/words.txt" \
			--output "$TMP/s.out" > /dev/null 2> "$TMP/s2.err" &&
			python3 "$HERE/fault_check.py" sequence "$TMP/s.out" > "$TMP/s.final" &&
			cmp -s "$TMP/words.ref" "$TMP/s.final"; then
			ok "$T: the stop's savepoint restored on the cluster at -p 3 (from 2) continues exactly once"
		else
			tail -5 "$TMP/s2.err"
			not_ok "$T: restoring the cluster's savepoint at -p 3"
		fi
		run_cluster -p 2 --mode streaming "$EXAMPLES/wordcount.so" --input "$TMP/words.txt" \
			--output "$TMP/c.csv" --rate 500 > /dev/null 2> "$TMP/c.err" &
		RUN=$!
		# once the client was told the placement (the job runs: 12 s at
		# least), not after a fixed 1.5 s
		wait_until 60 grep -q "exchange: " "$TMP/c.err" || echo "# no placement within 60 s"
		rc=0
		ctl cancel > /dev/null 2>&1 || rc=$?
		wait "$RUN" && not_ok "$T: a cancelled job's client exited 0" ||
			{ [ "$rc" -eq 0 ] && grep -q "cancelled" "$TMP/c.err" &&
				ok "$T: weir cancel --cluster cancels the running job" ||
				not_ok "$T: weir cancel --cluster"; }
	fi

	# ---- failover: SIGKILL a worker mid-job, twice ---------------------------
	run_cluster -p 3 --mode streaming --checkpoint-dir "$TMP/f.$T.ck" --checkpoint-interval 200 \
		"$EXAMPLES/wordcount.so" --input "$TMP/words.txt" --output "$TMP/f.$T" --rate 1000 \
		> "$TMP/f.out" 2> "$TMP/f.err" &
	RUN=$!
	kills=0
	for victim in 1 2; do
		# a random moment 1-2.5 s into the run (or the restarted run)
		sleep "$(awk -v s="$SEED$victim" 'BEGIN { srand(s); printf "%.2f", 1 + rand() * 1.5 }')"
		if [ "$victim" = 1 ]; then kill -9 "$W1"; else kill -9 "$W2"; fi
		kills=$((kills + 1))
		[ "$victim" = 1 ] && { worker 4; WORKERS="$WORKERS $WPID"; } # a replacement joins
		sleep 1
	done
	rc=0
	wait "$RUN" || rc=$?
	if [ "$rc" -eq 0 ]; then
		ok "$T: streaming wordcount finished after $kills worker kills ($(grep -c 'restarting' "$TMP/f.err" || true) restarts)"
	else
		tail -20 "$TMP/f.err"
		not_ok "$T: streaming wordcount with killed workers failed (rc $rc, seed $SEED)"
	fi
	python3 "$HERE/fault_check.py" sequence "$TMP/f.$T" > "$TMP/f.final" &&
		ok "$T: after the kills every word's committed counts go 1, 2, 3, ... (nothing lost or repeated)" ||
		not_ok "$T: after the kills a committed count was lost or repeated (seed $SEED)"
	cmp -s "$TMP/words.ref" "$TMP/f.final" && ok "$T: after the kills the final counts are right" ||
		{ diff "$TMP/words.ref" "$TMP/f.final" | head -5; not_ok "$T: final counts differ (seed $SEED)"; }
	nm=$(ls "$TMP/f.$T.ck" | grep -c '^chk-.*\.manifest$' || true)
	nr=$(ls "$TMP/f.$T.ck" | grep -c '^run-' || true)
	[ "$nm" -eq 2 ] && [ "$nr" -le 2 ] &&
		ok "$T: the coordinator keeps 2 checkpoints and only the runs they read ($nr of 3 attempts)" ||
		{ ls "$TMP/f.$T.ck"; not_ok "$T: checkpoint retention ($nm manifests, $nr runs)"; }
	grep "restarting\|attempt" "$TMP/f.err" | sed 's/^/# /' | head -6
	stop_workers

	# ---- a degraded network under a running job -------------------------------
	# 1% of packets dropped, a 300 ms partition of one worker, and a rate
	# limit on another; the job (a checkpointed running count on 3 workers)
	# must finish with exactly-once output.
	if [ "$T" = dpdk ]; then
		DROP=10000 # per million, on receive (the transport's test hook)
		LINK=d$S$((3 + 1))
	else
		LINK=n$S$((3 + 1))
	fi
	worker 2; WORKERS="$WORKERS $WPID"
	worker 3; WORKERS="$WORKERS $WPID"
	worker 4; WORKERS="$WORKERS $WPID"
	await_workers 3 || not_ok "$T: workers for the fault run did not register"
	lossy=""
	if [ "$T" = tcp ]; then
		for n in 2 3 4; do
			ip netns exec "ww$n$S" nft -f - > /dev/null 2>&1 <<-NFT && lossy=1
			table inet weirloss { chain in { type filter hook input priority 0; numgen random mod 100 == 0 drop; }; }
			NFT
		done
	fi
	tc -n "ww2$S" qdisc add dev "$( [ "$T" = dpdk ] && echo d$S$((2 + 1)) || echo n$S$((2 + 1)) )" \
		root tbf rate 200mbit burst 32kb latency 20ms 2> /dev/null && limited=1 || limited=""
	run_cluster -p 3 --mode streaming --checkpoint-dir "$TMP/n.$T.ck" --checkpoint-interval 200 \
		"$EXAMPLES/wordcount.so" --input "$TMP/words.txt" --output "$TMP/n.$T" --rate 2000 \
		> "$TMP/n.out" 2> "$TMP/n.err" &
	RUN=$!
	# once the 3 workers' data ports are in the placement the client prints
	# (the job runs: 3 s at least), not after a fixed 1.5 s
	wait_until 60 sh -c "[ \$(grep -c ': cores [0-9-]*, data ' '$TMP/n.err') -ge 3 ]" ||
		echo "# no placement within 60 s"
	if [ "$T" = tcp ]; then
		# garbage at the workers' live data ports (from the placement)
		sed -n 's/.*: cores [0-9-]*, data \([0-9.]*\):\([0-9]*\)$/\1 \2/p' "$TMP/n.err" |
			while read -r ip port; do
				ip netns exec "ww1$S" python3 "$HERE/garbage.py" data "$ip" "$port"
			done > "$TMP/dgarbage.out" 2>&1 || true
	fi
	ip -n "ww3$S" link set "$LINK" down
	sleep 0.3
	ip -n "ww3$S" link set "$LINK" up
	rc=0
	wait "$RUN" || rc=$?
	if [ "$rc" -eq 0 ] && python3 "$HERE/fault_check.py" sequence "$TMP/n.$T" > "$TMP/n.final" &&
		cmp -s "$TMP/words.ref" "$TMP/n.final"; then
		ok "$T: with ${lossy:+1% loss (nftables), }${DROP:+1% receive drops, }a 300 ms partition${limited:+ and a 200 Mbit/s limit} the job's committed counts are exactly once and right ($(grep -c restarting "$TMP/n.err" || true) restarts)"
	else
		tail -20 "$TMP/n.err"
		not_ok "$T: the job under network faults failed or lost/repeated output (rc $rc)"
	fi
	if [ "$T" = tcp ]; then
		if [ "$(grep -c ' refused$' "$TMP/dgarbage.out")" -eq 15 ] && [ "$rc" -eq 0 ]; then
			ok "tcp: garbage, truncated, oversized and wrong-HELLO frames at the 3 workers' data ports were refused (a complete mesh accepts nothing more), and the job went on"
		else
			cat "$TMP/dgarbage.out"
			not_ok "tcp: a worker did not refuse garbage on its data port cleanly"
		fi
	fi
	for n in 2 3 4; do ip netns exec "ww$n$S" nft delete table inet weirloss 2> /dev/null || true; done
	stop_workers
	DROP=""
}

phase tcp
if "$WEIR" worker --help | grep -q dpdk && ldd "$WEIR" | grep -q librte; then
	phase dpdk
else
	echo "# DPDK transport not built: skipping its phase"
fi

# ---- garbage on the wire -----------------------------------------------------------
ip netns exec "ww3$S" python3 "$HERE/garbage.py" control "$NET.1" "$PORT" > "$TMP/garbage.out" 2>&1 || true
if ! grep -q "NOT CLOSED" "$TMP/garbage.out" && [ "$(grep -c closed "$TMP/garbage.out")" -eq 7 ] &&
	ip netns exec "wco$S" "$WEIR" list --cluster "$CO" --secret-file "$SECRET" > /dev/null 2>&1; then
	ok "garbage, truncated, oversized and unauthenticated messages close their connection; the coordinator serves on"
else
	cat "$TMP/garbage.out"
	not_ok "the coordinator did not refuse garbage cleanly"
fi
grep -q "refusing\|closing" "$TMP/coord.log" && ok "the coordinator logged what it refused" ||
	not_ok "nothing logged about the garbage"
# ... and what a worker gets from a (fake) coordinator
ip netns exec "ww1$S" python3 "$HERE/garbage.py" fake-coordinator 7790 "$WEIR" \
	> "$TMP/wgarbage.out" 2>&1 || true
if [ "$(grep -c 'worker exited 1: weir worker: the coordinator connection failed' "$TMP/wgarbage.out")" -eq 6 ]; then
	ok "a worker sent garbage, truncated, oversized or malformed messages logs why, closes and exits 1"
else
	cat "$TMP/wgarbage.out"
	not_ok "a worker did not refuse a bad coordinator cleanly"
fi

finish
