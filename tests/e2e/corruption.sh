#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Corrupt checkpoints: a keyed running count (wordcount.so, checkpoints
# every 100 ms, 3 retained) is killed with SIGKILL mid-run; then, on copies
# of its checkpoint and output directories, we flip a byte of the newest
# manifest, truncate it, flip a byte inside a state-log segment, truncate a
# segment, and delete one.  Every time the restart must name what is wrong
# and never load it: it falls back to an older checkpoint (and the committed
# output is still exactly once: every word's counts go 1, 2, 3, ... and end
# right) or, when no checkpoint is intact, refuses to start.
. "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
require_tools python3
python3 - "$TMP/words.txt" <<'PY'
import random, sys
r = random.Random(9)
with open(sys.argv[1], "w") as f:
    for _ in range(20000):
        f.write(" ".join("w%02d" % r.randrange(80) for _ in range(r.randint(1, 6))) + "\n")
PY
ref_wordcount "$TMP/words.txt" > "$TMP/ref"
run() { # DIR [extra weir args]
	d="$1"
	shift
	"$WEIR" run --no-progress -p 2 --mode streaming --checkpoint-dir "$d/ck" \
		--checkpoint-interval 100 --checkpoints-retained 3 "$@" \
		"$EXAMPLES/wordcount.so" --input "$TMP/words.txt" --output "$d/out" --rate 5000
}
mkdir "$TMP/base"
"$WEIR" run --no-progress -p 2 --mode streaming --checkpoint-dir "$TMP/base/ck" \
	--checkpoint-interval 100 --checkpoints-retained 3 \
	"$EXAMPLES/wordcount.so" --input "$TMP/words.txt" --output "$TMP/base/out" --rate 5000 \
	2> "$TMP/base.err" &
pid=$!
# killed once it kept its 3 checkpoints (the input lasts 14 s at least),
# not after a fixed delay a slow start may eat
wait_until 120 has_checkpoints "$TMP/base/ck" 3 || true
kill -9 "$pid"
wait "$pid" 2> /dev/null || true
n=$(ls "$TMP/base/ck" | grep -c '^chk-' || true)
[ "$n" -ge 2 ] && ok "killed run left $n checkpoints" || not_ok "killed run left $n checkpoints"
newest=$(ls "$TMP/base/ck" | grep '^chk-' | sort | tail -1)

# case NAME COMMAND: copy base, damage it with COMMAND (run in the copy's
# checkpoint directory), restart, check.
case_() {
	name="$1"
	shift
	rm -rf "$TMP/c"
	cp -a "$TMP/base" "$TMP/c"
	(cd "$TMP/c/ck" && eval "$*")
	if run "$TMP/c" > /dev/null 2> "$TMP/c.err"; then
		if ! grep -q "is not usable" "$TMP/c.err"; then
			not_ok "$name: restart did not report the damage"
			cat "$TMP/c.err"
			return
		fi
		if python3 "$HERE/fault_check.py" sequence "$TMP/c/out" > "$TMP/c.final" &&
			cmp -s "$TMP/ref" "$TMP/c.final"; then
			ok "$name: reported ($(grep -m1 'not usable' "$TMP/c.err" | cut -c1-150)), fell back, output exactly once"
		else
			not_ok "$name: output after the fallback is wrong"
		fi
	else
		if grep -q "no checkpoint in .* can be restored" "$TMP/c.err"; then
			ok "$name: reported, and refused to start: no intact checkpoint"
		else
			not_ok "$name: restart failed without saying why"
			cat "$TMP/c.err"
		fi
	fi
}
flip() { # FILE OFFSET
	python3 -c "
import sys
p, o = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, 'rb').read())
o = min(o, len(b) - 1)
b[o] ^= 0x5a
open(p, 'wb').write(b)" "$1" "$2"
}
seg() { ls run-*/core-0-*.seg | sort | tail -1; }
# The middle of the running count's state (operator 2) on core 0 in the
# newest checkpoint: a byte every restore of it must read.
mid() {
	awk '$1 == "task" && $2 == 2 && $4 == 0 { print int(($7 + $9) / 2) }' "$newest"
}
case_ "flipped byte in the newest manifest" "flip $newest 60"
case_ "truncated newest manifest" "truncate -s 100 $newest"
case_ "flipped byte in a state-log segment" 'flip $(seg) $(mid)'
case_ "truncated state-log segment" 'truncate -s $(mid) $(seg)'
case_ "deleted state-log segment" 'rm $(seg)'
# A checkpoint's intact copy still restores and completes exactly once.
rm -rf "$TMP/c"
cp -a "$TMP/base" "$TMP/c"
if run "$TMP/c" > /dev/null 2> "$TMP/c.err" &&
	python3 "$HERE/fault_check.py" sequence "$TMP/c/out" > "$TMP/c.final" &&
	cmp -s "$TMP/ref" "$TMP/c.final"; then
	ok "undamaged: resumes and completes exactly once"
else
	not_ok "undamaged restart"
fi
finish
