#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The checkpoint minimum pause (--checkpoint-min-pause, core/checkpoint_policy.h)
# holds locally and on a cluster: with an interval of 50 ms and a pause of
# 600 ms, every gap between one periodic checkpoint's completion and the
# next's is at least 600 ms; without the pause the gaps are about the
# interval (so the check can fail).  The cluster is a coordinator and one
# worker on free loopback ports (pause_gaps.py starts and stops them).
# Gaps are the manifests' modification times (pause_gaps.py says why they
# are a lower bound), allowed one tick of the file clock (TICK ms, 4 at
# HZ=250) below the pause; the times at which the completion lines reached
# stderr are printed next to them.
. "$(dirname "$0")/lib.sh"
require_tools python3
HERE="$(cd "$(dirname "$0")" && pwd)"
PAUSE=600
TICK=10
awk 'BEGIN { for (i = 0; i < 4000; i++) print "alpha beta gamma w" i % 50 }' > "$TMP/words.txt"

# gaps WHERE PAUSE_MS: run the word count (4 s at 1000 lines/s), gaps in $TMP/gaps
gaps() {
	rm -rf "$TMP/ck"
	set -- "$1" "$2" --checkpoint-dir "$TMP/ck" --checkpoint-interval 50 \
		--checkpoint-min-pause "$2" --checkpoints-retained 1000 \
		"$EXAMPLES/wordcount.so" --input "$TMP/words.txt" --output "$TMP/out.$1.$2" \
		--rate 1000
	where=$1
	shift 2
	if [ "$where" = local ]; then
		python3 "$HERE/pause_gaps.py" local "$TMP/ck" -- "$WEIR" run --no-progress \
			--log-level info -p 2 "$@" > "$TMP/gaps" 2> "$TMP/gaps.err"
	else
		python3 "$HERE/pause_gaps.py" cluster "$TMP/ck" "$WEIR" -- -p 1 "$@" \
			> "$TMP/gaps" 2> "$TMP/gaps.err"
	fi
}
# min_gap KIND: the smallest gap of that kind (log or mtime)
min_gap() {
	awk -v k="$1:" '$1 == k { m = $2; for (i = 2; i <= NF; i++) if ($i < m) m = $i; print m }' \
		"$TMP/gaps"
}

for where in local cluster; do
	if gaps $where $PAUSE; then
		sed "s/^/# $where, pause $PAUSE: /" "$TMP/gaps"
		m=$(min_gap mtime)
		if awk -v m="$m" -v p=$PAUSE -v t=$TICK 'BEGIN { exit !(m >= p - t) }'; then
			ok "$where: every gap between completed checkpoints is >= the ${PAUSE} ms pause (smallest $m ms)"
		else
			not_ok "$where: a gap of $m ms between completed checkpoints, under the ${PAUSE} ms pause"
		fi
	else
		cat "$TMP/gaps.err"
		not_ok "$where: the paced job failed or took too few checkpoints"
	fi
	if gaps $where 0; then
		sed "s/^/# $where, no pause: /" "$TMP/gaps"
		m=$(min_gap mtime)
		if awk -v m="$m" -v p=$PAUSE 'BEGIN { exit !(m < p / 2) }'; then
			ok "$where: without the pause checkpoints complete closer together (smallest gap $m ms)"
		else
			not_ok "$where: without the pause the smallest gap is $m ms: the check above proves nothing"
		fi
	else
		cat "$TMP/gaps.err"
		not_ok "$where: the unpaced job failed or took too few checkpoints"
	fi
done
finish
