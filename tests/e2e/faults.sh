#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Fault tests in the style of Flink's end-to-end tests: a windowed job
# (window_agg.so) and a keyed running aggregate (wordcount.so, with aligned
# and with unaligned checkpoints) run with
# checkpoints every 100-500 ms and a rate cap, are killed with SIGKILL at
# random moments (WEIR_FAULT_KILLS times each, default 10; the seeds are
# printed), restarted with the same arguments each time, and finally run to
# the end.  Their committed output must equal that of an uninterrupted run
# row for row (no row lost, none duplicated), and every word's running count
# must go 1, 2, 3, ... in the committed files (no update lost or repeated).
. "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
require_tools python3
KILLS="${WEIR_FAULT_KILLS:-10}"
SEED="${WEIR_FAULT_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}"
echo "# seed $SEED (rerun with WEIR_FAULT_SEED=$SEED)"
python3 "$HERE/gen_events.py" events 11 60000 > "$TMP/ev.csv"
python3 - "$TMP/words.txt" <<'PY'
import random, sys
r = random.Random(5)
# letters only: the word count splits at anything else ("w001" is "w")
words = ["w" + chr(97 + i // 26) + chr(97 + i % 26) for i in range(300)]
with open(sys.argv[1], "w") as f:
    for _ in range(30000):
        f.write(" ".join(r.choice(words) for _ in range(r.randint(1, 9))) + "\n")
PY

# rnd N: R = a pseudo-random number in [0, N) from the seed (an LCG).
state=$SEED
rnd() {
	state=$(( (state * 1103515245 + 12345) % 2147483648 ))
	R=$(( (state / 65536) % $1 ))
}

# killer NAME ARGS...: run, SIGKILL after a random delay, KILLS times; then
# run to completion.  Prints what happened.
killer() {
	name="$1"
	shift
	k=0
	tries=0
	while [ "$k" -lt "$KILLS" ] && [ "$tries" -lt $((KILLS * 3)) ]; do
		tries=$((tries + 1))
		rnd 401
		interval=$((100 + R))
		rnd 900
		delay_ms=$((150 + R))
		"$WEIR" run --no-progress --checkpoint-interval "$interval" "$@" \
			> "$TMP/$name.out" 2> "$TMP/$name.err" &
		pid=$!
		sleep "$(awk "BEGIN { print $delay_ms / 1000 }")"
		if kill -9 "$pid" 2> /dev/null; then
			wait "$pid" 2> /dev/null || true
			k=$((k + 1))
			echo "# $name: kill $k after ${delay_ms} ms (checkpoints every ${interval} ms)"
		else
			wait "$pid" 2> /dev/null || true
			echo "# $name: ended before the kill at ${delay_ms} ms"
		fi
	done
	[ "$k" -ge "$KILLS" ] || echo "# $name: only $k kills landed"
	"$WEIR" run --no-progress --checkpoint-interval 200 "$@" > "$TMP/$name.out" 2> "$TMP/$name.err" || {
		cat "$TMP/$name.err"
		return 1
	}
	grep -h "resuming\|not usable" "$TMP/$name.err" | sed 's/^/# /' || true
}

# ---- window_agg -------------------------------------------------------------
# tumbling windows, and sliding ones (kept as slices: see operators/window.c)
for window in tumbling:1000 sliding:2000:500; do
	rm -rf "$TMP"/wref* "$TMP"/w "$TMP"/w.*
	WARGS="--input $TMP/ev.csv --window $window --out-of-orderness 500 --allowed-lateness 0"
	"$WEIR" run --no-progress -p 2 --checkpoint-dir "$TMP/wref.ck" \
		"$EXAMPLES/window_agg.so" $WARGS --output "$TMP/wref" --late-output "$TMP/wref.late" 2> "$TMP/wref.err" ||
		{ cat "$TMP/wref.err"; not_ok "uninterrupted window_agg $window run"; }
	python3 "$HERE/fault_check.py" rows "$TMP/wref" > "$TMP/wref.rows"
	python3 "$HERE/fault_check.py" rows "$TMP/wref.late" > "$TMP/wref.late.rows"
	[ -s "$TMP/wref.rows" ] && ok "uninterrupted window_agg $window: $(wc -l < "$TMP/wref.rows") windows" ||
		not_ok "uninterrupted window_agg $window wrote nothing"

	if killer window -p 2 --checkpoint-dir "$TMP/w.ck" "$EXAMPLES/window_agg.so" $WARGS \
		--output "$TMP/w" --late-output "$TMP/w.late" --rate 10000; then
		python3 "$HERE/fault_check.py" rows "$TMP/w" > "$TMP/w.rows"
		python3 "$HERE/fault_check.py" rows "$TMP/w.late" > "$TMP/w.late.rows"
		if cmp -s "$TMP/wref.rows" "$TMP/w.rows" && cmp -s "$TMP/wref.late.rows" "$TMP/w.late.rows"; then
			ok "window_agg $window after $KILLS kills: committed output equals the uninterrupted run"
		else
			diff "$TMP/wref.rows" "$TMP/w.rows" | head -10
			diff "$TMP/wref.late.rows" "$TMP/w.late.rows" | head -5
			not_ok "window_agg $window after $KILLS kills: output differs (seed $SEED)"
		fi
		if ls -a "$TMP/w" | grep -q '^\.part-'; then
			not_ok "window_agg $window: in-progress files left after the final run"
		else
			ok "window_agg $window: no in-progress files left"
		fi
	else
		not_ok "window_agg $window final run failed (seed $SEED)"
	fi
done

# ---- wordcount (keyed running count) -----------------------------------------
"$WEIR" run --no-progress -p 2 --mode streaming --checkpoint-dir "$TMP/cref.ck" \
	"$EXAMPLES/wordcount.so" --input "$TMP/words.txt" --output "$TMP/cref" 2> "$TMP/cref.err" ||
	{ cat "$TMP/cref.err"; not_ok "uninterrupted wordcount run"; }
python3 "$HERE/fault_check.py" sequence "$TMP/cref" > "$TMP/cref.final" &&
	ok "uninterrupted wordcount: per-word sequences 1, 2, 3, ..." ||
	not_ok "uninterrupted wordcount: sequence check"
ref_wordcount "$TMP/words.txt" > "$TMP/words.ref"
cmp -s "$TMP/words.ref" "$TMP/cref.final" && ok "uninterrupted wordcount: final counts right" ||
	not_ok "uninterrupted wordcount: final counts differ from the reference"

if killer count -p 2 --mode streaming --checkpoint-dir "$TMP/c.ck" "$EXAMPLES/wordcount.so" \
	--input "$TMP/words.txt" --output "$TMP/c" --rate 3000; then
	if python3 "$HERE/fault_check.py" sequence "$TMP/c" > "$TMP/c.final"; then
		ok "wordcount after $KILLS kills: every word's counts go 1, 2, 3, ..."
	else
		not_ok "wordcount after $KILLS kills: a count was lost or repeated (seed $SEED)"
	fi
	cmp -s "$TMP/words.ref" "$TMP/c.final" && ok "wordcount after $KILLS kills: final counts right" ||
		not_ok "wordcount after $KILLS kills: final counts differ (seed $SEED)"
	python3 "$HERE/fault_check.py" rows "$TMP/c" > "$TMP/c.rows"
	python3 "$HERE/fault_check.py" rows "$TMP/cref" > "$TMP/cref.rows"
	cmp -s "$TMP/cref.rows" "$TMP/c.rows" && ok "wordcount after $KILLS kills: same rows as uninterrupted" ||
		not_ok "wordcount after $KILLS kills: rows differ (seed $SEED)"
else
	not_ok "wordcount final run failed (seed $SEED)"
fi

# ---- wordcount killed while a snapshot is half logged -------------------------
# Snapshots are logged after the barrier, between reactor turns
# (docs/checkpoints.md).  WEIR_TEST_SNAPSHOT_SLOW_US makes each slice log a
# entry and then sleep, so that with 4,000 distinct words a snapshot (a
# materialization or the changed counts) takes a good part of the 100 ms
# between checkpoints to log: kills 1.5-4 s into a run land while one is
# half written, after earlier checkpoints completed (at 300 lines/s the
# input lasts 27 s, more than the kills take).  The debug log says which: a core's "logging its
# snapshot" without "its snapshot is logged" after it.
python3 - "$TMP/words4k.txt" <<'PY'
import random, sys
r = random.Random(7)
# letters only: the word count splits at anything else
words = ["".join(chr(97 + i // 26 ** j % 26) for j in range(3)) for i in range(4000)]
with open(sys.argv[1], "w") as f:
    for _ in range(8000):
        f.write(" ".join(r.choice(words) for _ in range(r.randint(1, 9))) + "\n")
PY
ref_wordcount "$TMP/words4k.txt" > "$TMP/words4k.ref"
k=0
mid=0
tries=0
while [ "$k" -lt "$KILLS" ] && [ "$tries" -lt $((KILLS * 3)) ]; do
	tries=$((tries + 1))
	rnd 2500
	delay_ms=$((1500 + R))
	WEIR_TEST_SNAPSHOT_SLOW_US=4000 "$WEIR" run --no-progress --log-level debug -p 2 \
		--mode streaming --checkpoint-dir "$TMP/h.ck" --checkpoint-interval 100 \
		"$EXAMPLES/wordcount.so" --input "$TMP/words4k.txt" --output "$TMP/h" --rate 300 \
		> /dev/null 2> "$TMP/h.err" &
	pid=$!
	sleep "$(awk "BEGIN { print $delay_ms / 1000 }")"
	if kill -9 "$pid" 2> /dev/null; then
		wait "$pid" 2> /dev/null || true
		k=$((k + 1))
		# a core whose last snapshot line says it began
		half=$(awk '/logging its snapshot/ { s[$4] = 1 } /its snapshot is logged/ { s[$4] = 0 }
			END { n = 0; for (c in s) n += s[c]; print n }' "$TMP/h.err")
		[ "$half" -gt 0 ] && mid=$((mid + 1))
		echo "# half-logged snapshot: kill $k after ${delay_ms} ms ($half core(s) mid-snapshot;" \
			"$(grep -c 'is logged' "$TMP/h.err") snapshots logged in that run)"
	else
		wait "$pid" 2> /dev/null || true
		echo "# half-logged snapshot: ended before the kill at ${delay_ms} ms"
	fi
done
if WEIR_TEST_SNAPSHOT_SLOW_US=4000 "$WEIR" run --no-progress -p 2 --mode streaming \
	--checkpoint-dir "$TMP/h.ck" --checkpoint-interval 100 "$EXAMPLES/wordcount.so" \
	--input "$TMP/words4k.txt" --output "$TMP/h" > /dev/null 2> "$TMP/h.err"; then
	[ "$mid" -ge $(( k / 4 + 1 )) ] &&
		ok "half-logged snapshot: $mid of $k kills landed while a snapshot was half logged" ||
		not_ok "half-logged snapshot: only $mid of $k kills landed mid-snapshot"
	python3 "$HERE/fault_check.py" sequence "$TMP/h" > "$TMP/h.final" &&
		ok "half-logged snapshot: after $k kills every word's counts go 1, 2, 3, ..." ||
		not_ok "half-logged snapshot: a count was lost or repeated (seed $SEED)"
	cmp -s "$TMP/words4k.ref" "$TMP/h.final" &&
		ok "half-logged snapshot: final counts right" ||
		not_ok "half-logged snapshot: final counts differ (seed $SEED)"
	# Each restart referenced the checkpoint it restored (base lines naming
	# earlier runs, kept by retention) instead of materializing again: the
	# state is small, so nothing materialized since the first run.
	last=$(ls "$TMP/h.ck"/chk-*.manifest | tail -1)
	nb=$(grep '^base ' "$last" | awk '{ print $4 }' | sort -u | wc -l)
	missing=$(grep '^base ' "$last" | awk '{ printf "run-%06d\n", $4 }' | sort -u |
		while read -r r; do [ -d "$TMP/h.ck/$r" ] || echo "$r"; done)
	[ "$nb" -ge $(( k / 2 )) ] && [ -z "$missing" ] &&
		ok "half-logged snapshot: the last checkpoint reads $nb earlier runs' logs, all kept" ||
		not_ok "half-logged snapshot: $nb earlier runs referenced (missing: $missing)"
else
	tail -5 "$TMP/h.err"
	not_ok "half-logged snapshot: final run failed (seed $SEED)"
fi

# ---- wordcount with unaligned checkpoints ------------------------------------
# The barrier overtakes what the channels hold, which the checkpoint then
# carries; a restore puts it back.  Same checks.
if killer ucount -p 2 --mode streaming --unaligned-checkpoints --checkpoint-dir "$TMP/u.ck" \
	"$EXAMPLES/wordcount.so" --input "$TMP/words.txt" --output "$TMP/u" --rate 3000; then
	if python3 "$HERE/fault_check.py" sequence "$TMP/u" > "$TMP/u.final"; then
		ok "unaligned wordcount after $KILLS kills: every word's counts go 1, 2, 3, ..."
	else
		not_ok "unaligned wordcount after $KILLS kills: a count was lost or repeated (seed $SEED)"
	fi
	cmp -s "$TMP/words.ref" "$TMP/u.final" &&
		ok "unaligned wordcount after $KILLS kills: final counts right" ||
		not_ok "unaligned wordcount after $KILLS kills: final counts differ (seed $SEED)"
else
	not_ok "unaligned wordcount final run failed (seed $SEED)"
fi
finish
