#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Checkpointing across cores, for the ThreadSanitizer build (also run in the
# others): a keyed running count at -p 2 with checkpoints every 20 ms,
# aligned and unaligned, is killed with SIGKILL mid-run, then resumed to the
# end; every word's counts must go 1, 2, 3, ... to the right total.  Under
# TSan a data race between the reactors, the coordinator, the state logs'
# io_uring completions or the in-flight data capture aborts the run.
. "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
require_tools python3
python3 - "$TMP/words.txt" <<'PY'
import random, sys
r = random.Random(3)
with open(sys.argv[1], "w") as f:
    for _ in range(6000):
        f.write(" ".join("w%02d" % r.randrange(40) for _ in range(r.randint(1, 6))) + "\n")
PY
ref_wordcount "$TMP/words.txt" > "$TMP/ref"
for mode in aligned unaligned; do
	extra=""
	[ "$mode" = unaligned ] && extra="--unaligned-checkpoints"
	# exec: the background job's pid is weir's own, for the kill
	run() {
		exec "$WEIR" run --no-progress -p 2 --mode streaming --checkpoint-dir "$TMP/$mode.ck" \
			--checkpoint-interval 20 $extra "$EXAMPLES/wordcount.so" \
			--input "$TMP/words.txt" --output "$TMP/$mode.out" --rate 4000
	}
	run > /dev/null 2> "$TMP/$mode.err1" &
	pid=$!
	# killed once two checkpoints are complete, so that the resumed run
	# restores one (a fixed 1 s could pass before the first under TSan)
	two_or_ended() { has_checkpoints "$TMP/$mode.ck" 2 || ! kill -0 "$pid" 2> /dev/null; }
	wait_until 120 two_or_ended || true
	kill -9 "$pid" 2> /dev/null || true
	wait "$pid" 2> /dev/null || true
	if grep -qi "sanitizer" "$TMP/$mode.err1"; then
		not_ok "$mode: sanitizer report before the kill"
		cat "$TMP/$mode.err1"
		continue
	fi
	if ! (run) > /dev/null 2> "$TMP/$mode.err2"; then
		not_ok "$mode: resumed run failed"
		cat "$TMP/$mode.err2"
		continue
	fi
	if python3 "$HERE/fault_check.py" sequence "$TMP/$mode.out" > "$TMP/$mode.final" &&
		cmp -s "$TMP/ref" "$TMP/$mode.final"; then
		ok "$mode checkpoints at -p 2, killed and resumed: exactly once ($(grep -c '' "$TMP/$mode.final") words)"
	else
		not_ok "$mode checkpoints: output not exactly once"
	fi
done
finish
