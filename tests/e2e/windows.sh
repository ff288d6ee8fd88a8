#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Event-time windows end to end: window_agg.so on out-of-order input (30,000
# records, 50 keys, disorder up to 2.5 s and 3% of records 3-12 s late,
# negative values, keys that need CSV quoting) with tumbling, sliding and
# session windows under several out-of-orderness / allowed-lateness
# settings, at -p 1, 2 and 4 and with 1- and 7-row batches.  The sorted
# output and the sorted late file must equal an independent answer: SQL in
# sqlite3 for tumbling and sliding windows, a record-by-record Python model
# (window_ref.py) for sessions.  Also: no record lost (tumbling), the late
# file is used when it should be, malformed lines are reported and skipped,
# bad options are refused.
. "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
require_tools python3 sqlite3
JOB="$EXAMPLES/window_agg.so"
N="${WEIR_WINDOW_EVENTS:-30000}"
python3 "$HERE/gen_events.py" events 7 "$N" > "$TMP/ev.csv"

# sql_ref INPUT SIZE SLIDE OOO LATENESS OUT LATE: the reference answer for
# tumbling (SLIDE = SIZE) and sliding windows.  Line number = arrival
# order; the watermark before record i is max(ts of records before i) -
# OOO - 1 (NULL: none yet).  A record is accepted into a window [s, e) that
# contains it iff e - 1 + LATENESS > wm, late iff no window accepts it.  A
# window fires once with the records it accepted while e - 1 > wm (if any),
# then once per record k it accepted with e - 1 <= wm_k, with the aggregate
# of its records up to k.
sql_ref() {
	sqlite3 -batch <<SQL
.mode csv
.headers off
CREATE TABLE ev(key TEXT, ts INTEGER, value INTEGER);
.import '$1' ev
CREATE TABLE k(k INTEGER PRIMARY KEY);
WITH RECURSIVE n(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM n WHERE k + 1 < ($2 + $3 - 1) / $3)
INSERT INTO k SELECT k FROM n;
CREATE TABLE e AS SELECT rowid AS i, key, ts, value,
	max(ts) OVER (ORDER BY rowid ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) - $4 - 1 AS wm
	FROM ev;
CREATE TABLE ew AS SELECT * FROM
	(SELECT e.*, ts - ts % $3 - k * $3 AS s, ts - ts % $3 - k * $3 + $2 AS e FROM e, k)
	WHERE e > ts;
CREATE TABLE acc AS SELECT * FROM ew WHERE wm IS NULL OR e - 1 + $5 > wm;
.output '$7'
SELECT key, ts, value FROM e WHERE i NOT IN (SELECT i FROM acc);
.output '$6'
SELECT key, s, e, count(*), sum(value), min(value), max(value)
	FROM acc WHERE wm IS NULL OR e - 1 > wm GROUP BY key, s;
SELECT key, s, e, c, sm, mn, mx FROM
	(SELECT *, count(*) OVER w AS c, sum(value) OVER w AS sm, min(value) OVER w AS mn,
		max(value) OVER w AS mx
	 FROM acc WINDOW w AS (PARTITION BY key, s ORDER BY i ROWS UNBOUNDED PRECEDING))
	WHERE e - 1 <= wm;
SQL
}

# Each record is in exactly one tumbling window's final count or late.
conserved() {
	python3 - "$1" "$2" "$3" <<'PY'
import csv, sys
final = {}
for key, s, e, count, *_ in csv.reader(open(sys.argv[2], newline="")):
    final[(key, s)] = max(final.get((key, s), 0), int(count))
n_in = sum(1 for _ in open(sys.argv[1]))
n_late = sum(1 for _ in open(sys.argv[3]))
sys.exit(0 if sum(final.values()) + n_late == n_in else 1)
PY
}

RUNS="-p1 -p2 -p4 -p2,--batch-size,1 -p4,--batch-size,7 -p3,--no-chaining,--buffer-timeout,0"
for window in tumbling:1000 sliding:2000:500 sliding:1000:300 session:300 session:1000; do
	for setting in 0:0 300:100 500:1000 2000:5000 5000:0; do
		ooo=${setting%:*}
		lateness=${setting#*:}
		name="$window ooo=$ooo lateness=$lateness"
		ref="$TMP/ref"
		case $window in
		tumbling:*)
			size=${window#*:}
			sql_ref "$TMP/ev.csv" "$size" "$size" "$ooo" "$lateness" "$ref.out" "$ref.late";;
		sliding:*)
			sz=${window#*:}
			sql_ref "$TMP/ev.csv" "${sz%:*}" "${sz#*:}" "$ooo" "$lateness" "$ref.out" "$ref.late";;
		session:*)
			python3 "$HERE/window_ref.py" "$window" "$ooo" "$lateness" "$TMP/ev.csv" \
				"$ref.out" "$ref.late";;
		esac
		LC_ALL=C sort -o "$ref.out" "$ref.out"
		LC_ALL=C sort -o "$ref.late" "$ref.late"
		good=0
		for run in $RUNS; do
			opts=$(echo "$run" | tr ',' ' ')
			out="$TMP/out.csv"
			late="$TMP/late.csv"
			# shellcheck disable=SC2086
			if ! "$WEIR" run $opts "$JOB" --input "$TMP/ev.csv" --output "$out" \
				--window "$window" --out-of-orderness "$ooo" \
				--allowed-lateness "$lateness" --late-output "$late" 2> "$TMP/err"; then
				not_ok "$name $opts: exit status $?"
				head -5 "$TMP/err"
				continue
			fi
			if ! LC_ALL=C sort "$out" | cmp -s - "$ref.out"; then
				not_ok "$name $opts: output differs from the reference" \
					"($(wc -l < "$out") lines, expected $(wc -l < "$ref.out"))"
				LC_ALL=C sort "$out" | diff - "$ref.out" | head -6
			elif ! LC_ALL=C sort "$late" | cmp -s - "$ref.late"; then
				not_ok "$name $opts: late records differ from the reference" \
					"($(wc -l < "$late") lines, expected $(wc -l < "$ref.late"))"
				LC_ALL=C sort "$late" | diff - "$ref.late" | head -6
			else
				good=$((good + 1))
			fi
		done
		nruns=$(echo "$RUNS" | wc -w)
		if [ "$good" -eq "$nruns" ]; then
			ok "$name: $nruns runs (-p 1/2/3/4, batch 1/7, unchained) = reference" \
				"($(wc -l < "$ref.out") firings, $(wc -l < "$ref.late") late)"
		fi
		# Late-heavy settings must actually produce late records.
		if [ "$ooo" -le 500 ]; then
			if [ -s "$late" ]; then
				ok "$name: late file used ($(wc -l < "$late") records)"
			else
				not_ok "$name: late file is empty"
			fi
		fi
		case $window in
		tumbling:*)
			if conserved "$TMP/ev.csv" "$out" "$late"; then
				ok "$name: every record in one window's final count or late"
			else
				not_ok "$name: records lost or counted twice"
			fi;;
		esac
	done
done

# Edge cases by hand: window_agg.so and the reference model must both give
# the expected lines (sorted, space-separated), at -p 1 and -p 2.
edge() {
	what="$1" window="$2" ooo="$3" lateness="$4" want_out="$6" want_late="$7"
	printf '%b' "$5" > "$TMP/edge.csv"
	python3 "$HERE/window_ref.py" "$window" "$ooo" "$lateness" "$TMP/edge.csv" \
		"$TMP/edge.ref" "$TMP/edge.rlate"
	ref_out=$(LC_ALL=C sort "$TMP/edge.ref" | tr '\n' ' ')
	ref_late=$(LC_ALL=C sort "$TMP/edge.rlate" | tr '\n' ' ')
	if [ "$ref_out" != "$want_out" ] || [ "$ref_late" != "$want_late" ]; then
		not_ok "edge case $what: the reference model says '$ref_out' late '$ref_late'"
		return
	fi
	for p in 1 2; do
		if ! "$WEIR" run -p "$p" "$JOB" --input "$TMP/edge.csv" --output "$TMP/edge.out" \
			--window "$window" --out-of-orderness "$ooo" --allowed-lateness "$lateness" \
			--late-output "$TMP/edge.late" 2> "$TMP/err"; then
			not_ok "edge case $what -p $p: exit status $?"; head -3 "$TMP/err"
			return
		fi
		got_out=$(LC_ALL=C sort "$TMP/edge.out" | tr '\n' ' ')
		got_late=$(LC_ALL=C sort "$TMP/edge.late" | tr '\n' ' ')
		if [ "$got_out" != "$want_out" ] || [ "$got_late" != "$want_late" ]; then
			not_ok "edge case $what -p $p: got '$got_out' late '$got_late'," \
				"expected '$want_out' late '$want_late'"
			return
		fi
	done
	ok "edge case $what"
}
edge "session merge: old cleanup time = new firing time, fires once" \
	session:300 0 100 'a,0,1\na,100,2\n' 'a,0,400,2,3,1,2 ' ''
edge "session freed exactly at wm = end - 1 + lateness, no merge after" \
	session:1000 300 100 'a,15100,-621\nb,16500,883\na,15874,502\n' \
	'a,15100,16100,1,-621,-621,-621 a,15874,16874,1,502,502,502 b,16500,17500,1,883,883,883 ' ''
edge "sessions exactly GAP apart stay apart" \
	session:300 0 0 'a,0,1\na,300,2\na,600,3\n' 'a,0,300,1,1,1,1 a,300,600,1,2,2,2 a,600,900,1,3,3,3 ' ''
edge "a record touching two sessions merges neither" \
	session:300 1000 0 'a,0,1\na,600,2\na,300,3\n' 'a,0,300,1,1,1,1 a,300,600,1,3,3,3 a,600,900,1,2,2,2 ' ''
edge "a record overlapping one session by 1 ms merges it" \
	session:300 1000 0 'a,0,1\na,600,2\na,299,3\n' 'a,0,599,2,4,1,3 a,600,900,1,2,2,2 ' ''
edge "late sessions within the lateness fire at once, and again when merged" \
	session:300 0 500 'a,0,1\na,1000,2\na,250,3\na,500,4\n' \
	'a,0,300,1,1,1,1 a,1000,1300,1,2,2,2 a,250,550,1,3,3,3 a,250,800,2,7,3,4 ' ''
edge "tumbling: a record at wm = end - 1 is late without lateness" \
	tumbling:1000 0 0 'a,999,1\na,1000,2\na,0,3\n' 'a,0,1000,1,1,1,1 a,1000,2000,1,2,2,2 ' 'a,0,3 '
edge "tumbling: with 1 ms of lateness it re-fires the window" \
	tumbling:1000 0 1 'a,999,1\na,1000,2\na,0,3\n' \
	'a,0,1000,1,1,1,1 a,0,1000,2,4,1,3 a,1000,2000,1,2,2,2 ' ''
edge "sliding: a record late for one of its windows goes to the other" \
	sliding:1000:500 0 0 'a,1600,1\na,1200,2\n' 'a,1000,2000,2,3,1,2 a,1500,2500,1,1,1,1 ' ''
edge "empty input" tumbling:1000 0 0 '' '' ''

# Malformed lines are reported on stderr with their line numbers and
# skipped; the job succeeds with the answer for the good lines.
head -2000 "$TMP/ev.csv" > "$TMP/good.csv"
awk 'NR == 10 { print "k01,notatime,5" } NR == 500 { print "k02,1700000000000" }
	NR == 1500 { print "k03,1700000000000,1,2" } { print }' "$TMP/good.csv" > "$TMP/bad.csv"
sql_ref "$TMP/good.csv" 1000 1000 500 1000 "$TMP/good.ref" "$TMP/good.late"
LC_ALL=C sort -o "$TMP/good.ref" "$TMP/good.ref"
if "$WEIR" run -p 2 "$JOB" --input "$TMP/bad.csv" --output "$TMP/bad.out" \
	--window tumbling:1000 --out-of-orderness 500 --allowed-lateness 1000 \
	--late-output "$TMP/bad.late" 2> "$TMP/err" &&
	LC_ALL=C sort "$TMP/bad.out" | cmp -s - "$TMP/good.ref" &&
	grep -q "line 10:" "$TMP/err" && grep -q "line 501:" "$TMP/err" &&
	grep -q "line 1502:" "$TMP/err" && [ "$(grep -c 'window_agg:' "$TMP/err")" -eq 3 ]; then
	ok "malformed lines reported on stderr and skipped"
else
	not_ok "malformed lines"; head -5 "$TMP/err"
fi

# Bad options: usage on stderr, exit status 2.
bad_usage() {
	what="$1"
	shift
	if "$WEIR" run "$JOB" "$@" > "$TMP/stdout" 2> "$TMP/err"; then
		not_ok "$what: accepted"
	else
		rc=$?
		if [ "$rc" -eq 2 ] && grep -q "usage:" "$TMP/err" && [ ! -s "$TMP/stdout" ]; then
			ok "$what: refused ($(head -1 "$TMP/err"))"
		else
			not_ok "$what: exit $rc"; head -3 "$TMP/err"
		fi
	fi
}
IO="--input $TMP/ev.csv --output $TMP/x.out --late-output $TMP/x.late"
# shellcheck disable=SC2086
{
	bad_usage "count window" $IO --window count:10
	bad_usage "unparsable window" $IO --window hopping:10
	bad_usage "no --window" $IO
	bad_usage "no --late-output" --input "$TMP/ev.csv" --output "$TMP/x.out" --window tumbling:10
	bad_usage "negative lateness" $IO --window tumbling:10 --allowed-lateness -1
	bad_usage "unknown flag" $IO --window tumbling:10 --watermark 5
}
if "$WEIR" run "$JOB" --help > "$TMP/help" 2>&1 && grep -q "allowed-lateness" "$TMP/help" &&
	grep -q "key,window_start,window_end,count,sum,min,max" "$TMP/help"; then
	ok "--help documents the flags and formats"
else
	not_ok "--help"
fi
finish
