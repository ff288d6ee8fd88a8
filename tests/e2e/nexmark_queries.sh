#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The Nexmark queries (build/apps/examples/nexmark_qN.so) against an
# independent computation (nexmark_check.py: sqlite3 or plain Python) over
# `weir nexmark gen`'s CSV dump of the same events: every query at -p 1,
# at -p 2 with out-of-order groups and small batches, and checkpointed at
# -p 2; q4 and q19 (update streams) also killed with SIGKILL mid-run and
# resumed.  Then bad usage.
. "$(dirname "$0")/lib.sh"
require_tools python3
CHECK="$(dirname "$0")/nexmark_check.py"

# 100 s of event time: 10 tumbling windows, 50 sliding ones, sessions.
N=100000
OPTS="--events $N --event-rate 1000 --seed 11"
"$WEIR" nexmark gen $OPTS --out "$TMP/dump" > /dev/null
QUERIES="0 1 2 3 4 5 7 8 11 14 18 19"

check() { # label query output-dir
	if python3 "$CHECK" "q$2" "$TMP/dump" "$3" > "$TMP/check.out" 2>&1; then
		ok "$1: $(cat "$TMP/check.out")"
	else
		not_ok "$1"
		cat "$TMP/check.out"
	fi
}

QOPTS=""
run() { # label query output-dir weir-run-options... (query options: $QOPTS)
	label="$1" q="$2" out="$3"
	shift 3
	if "$WEIR" run --no-progress "$@" "$EXAMPLES/nexmark_q$q.so" $OPTS $QOPTS \
		--output "$out" > "$TMP/run.out" 2>&1; then
		check "$label" "$q" "$out"
	else
		not_ok "$label: exit $?"
		tail -5 "$TMP/run.out"
	fi
}

for q in $QUERIES; do
	run "q$q -p 1" "$q" "$TMP/p1-q$q" -p 1
done
# The out-of-order groups (the dump's rows are the same events in another
# order) stay well inside the 4 s watermark delay, so no row is late.
QOPTS="--ooo-group 500"
for q in $QUERIES; do
	run "q$q -p 2, ooo groups of 500, batches of 7" "$q" "$TMP/p2-q$q" -p 2 --batch-size 7
done
QOPTS=""
for q in $QUERIES; do
	run "q$q -p 2, checkpoints every 20 ms" "$q" "$TMP/ck-q$q" -p 2 \
		--checkpoint-dir "$TMP/ck-state-q$q" --checkpoint-interval 20
done

# SIGKILL mid-run (the source throttled to ~4 s of wall time) once two
# checkpoints are complete, then the same command resumes from the newest
# checkpoint; the committed output must still be exactly the answer.
for q in 4 19; do
	out="$TMP/kill-q$q" st="$TMP/kill-state-q$q"
	"$WEIR" run --no-progress -p 2 --checkpoint-dir "$st" --checkpoint-interval 100 \
		"$EXAMPLES/nexmark_q$q.so" $OPTS --emit-rate 25000 --output "$out" \
		> "$TMP/kill.out" 2>&1 &
	pid=$!
	# killed once two checkpoints are complete (a fixed 2 s could pass
	# before the first on a loaded machine, leaving nothing to resume)
	wait_until 120 has_checkpoints "$st" 2 || true
	kill -9 $pid 2> /dev/null || true
	wait $pid 2> /dev/null || true
	if "$WEIR" run --no-progress -p 2 --checkpoint-dir "$st" --checkpoint-interval 100 \
		"$EXAMPLES/nexmark_q$q.so" $OPTS --output "$out" > "$TMP/kill.out" 2>&1 &&
		grep -q "resum" "$TMP/kill.out"; then
		check "q$q killed mid-run and resumed" "$q" "$out"
	else
		not_ok "q$q resume"
		tail -5 "$TMP/kill.out"
	fi
done

# Bad usage: a clear message and exit 2, no output directory made.
bad() { # label expected-text args...
	label="$1" want="$2"
	shift 2
	st=0
	"$WEIR" run --no-progress "$EXAMPLES/nexmark_q5.so" "$@" > "$TMP/bad.out" 2>&1 || st=$?
	if [ "$st" -ne 0 ] && grep -q -- "$want" "$TMP/bad.out"; then
		ok "$label: exit $st, '$want'"
	else
		not_ok "$label: exit $st"
		cat "$TMP/bad.out"
	fi
}
bad "no --output" "--output DIR or --output discard is required" --events 10
bad "unknown option" "unexpected argument '--bogus'" --events 10 --output discard --bogus
bad "bad --events" "events" --events ten --output discard
bad "bad --event-rate" "event-rate" --event-rate 0 --output discard
finish
