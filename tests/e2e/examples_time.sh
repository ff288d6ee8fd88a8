#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The event-time example jobs end to end on generated out-of-order data, at
# -p 1 and 2 (and 7-row batches), against answers computed independently:
#   vwap.so       per-symbol trades, volume and VWAP over tumbling windows,
#                 against SQL in sqlite3 (VWAP compared to 1e-9 relative);
#   telemetry.so  per-host count, p50, p99 and max latency over sliding
#                 windows, against a Python model; the alert file must hold
#                 exactly the rows with p99 > threshold.
# Both drop records that arrive after their windows fired (no allowed
# lateness), so the references apply the same watermark rule: the
# watermark before record i is max(ts of records before i) - OOO - 1, and a
# record counts in a window [s, e) iff e - 1 > that watermark.
. "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
require_tools python3 sqlite3
RUNS="-p1 -p2 -p2,--batch-size,7"

# ---- vwap ------------------------------------------------------------------
python3 "$HERE/gen_events.py" trades 11 20000 > "$TMP/trades.csv"

# vwap_ref INPUT WINDOW_MS OOO > reference rows (unsorted)
vwap_ref() {
	sqlite3 -batch <<SQL
.mode csv
.headers off
CREATE TABLE t(symbol TEXT, ts INTEGER, price REAL, qty INTEGER);
.import '$1' t
CREATE TABLE e AS SELECT rowid AS i, symbol, ts, price, qty, ts - ts % $2 AS s,
	max(ts) OVER (ORDER BY rowid ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) - $3 - 1 AS wm
	FROM t;
SELECT symbol, s, s + $2, count(*), sum(qty), printf('%.15e', sum(price * qty) / sum(qty))
	FROM e WHERE wm IS NULL OR s + $2 - 1 > wm GROUP BY symbol, s;
SQL
}

# same_vwap OUT REF: the same rows, VWAP equal to 1e-9 relative.
same_vwap() {
	python3 - "$1" "$2" <<'PY'
import csv, sys
def load(p):
    rows = {}
    for r in csv.reader(open(p, newline="")):
        k = tuple(r[:5])
        if k in rows:
            sys.exit("duplicate row %s in %s" % (k, p))
        rows[k] = float(r[5])
    return rows
out, ref = load(sys.argv[1]), load(sys.argv[2])
if out.keys() != ref.keys():
    print("rows differ: %d only in output, %d only in reference; e.g. %s" % (
        len(out.keys() - ref.keys()), len(ref.keys() - out.keys()),
        sorted(out.keys() ^ ref.keys())[:3]))
    sys.exit(1)
bad = [(k, out[k], ref[k]) for k in ref if abs(out[k] - ref[k]) > 1e-9 * abs(ref[k])]
if bad:
    print("%d VWAPs differ, e.g. %s" % (len(bad), bad[:3]))
    sys.exit(1)
PY
}

for setting in 1000:0 1000:3000 250:500; do
	wms=${setting%:*}
	ooo=${setting#*:}
	vwap_ref "$TMP/trades.csv" "$wms" "$ooo" > "$TMP/vwap.ref"
	good=0
	for run in $RUNS; do
		opts=$(echo "$run" | tr ',' ' ')
		# shellcheck disable=SC2086
		if ! "$WEIR" run $opts "$EXAMPLES/vwap.so" --input "$TMP/trades.csv" \
			--output "$TMP/vwap.out" --window-ms "$wms" --out-of-orderness "$ooo" \
			2> "$TMP/err"; then
			not_ok "vwap window $wms ooo $ooo $opts: exit status $?"; head -5 "$TMP/err"
		elif same_vwap "$TMP/vwap.out" "$TMP/vwap.ref"; then
			good=$((good + 1))
		else
			not_ok "vwap window $wms ooo $ooo $opts: differs from sqlite3"
		fi
	done
	if [ "$good" -eq "$(echo "$RUNS" | wc -w)" ]; then
		ok "vwap window $wms ooo $ooo: -p 1, -p 2, batch 7 = sqlite3 ($(wc -l < "$TMP/vwap.ref") rows)"
	fi
done

# A malformed line and a trade with qty 0 (at a time that does not move the
# watermark) are reported on stderr and change nothing.
head -3000 "$TMP/trades.csv" > "$TMP/t3k.csv"
awk 'NR == 100 { print "k01,notatime,1.5,10" }
	{ print } NR == 2000 { sub(/,[0-9]+$/, ",0"); print }' "$TMP/t3k.csv" > "$TMP/t3k_bad.csv"
vwap_ref "$TMP/t3k.csv" 1000 500 > "$TMP/t3k.ref"
if "$WEIR" run -p 2 "$EXAMPLES/vwap.so" --input "$TMP/t3k_bad.csv" --output "$TMP/t3k.out" \
	--window-ms 1000 --out-of-orderness 500 2> "$TMP/err" &&
	same_vwap "$TMP/t3k.out" "$TMP/t3k.ref" && grep -q "line 100:" "$TMP/err" &&
	grep -q "qty 0" "$TMP/err" && [ "$(grep -c '^vwap:' "$TMP/err")" -eq 2 ]; then
	ok "vwap: malformed line and qty 0 reported on stderr and skipped"
else
	not_ok "vwap: malformed line and qty 0"; head -5 "$TMP/err"
fi

# ---- telemetry ---------------------------------------------------------------
python3 "$HERE/gen_events.py" telemetry 13 20000 > "$TMP/telemetry.csv"

# telemetry_ref INPUT SIZE SLIDE OOO THRESHOLD OUT ALERTS
telemetry_ref() {
	python3 - "$@" <<'PY'
import csv, sys
inp, size, slide, ooo, threshold, outp, alertp = sys.argv[1:8]
size, slide, ooo, threshold = int(size), int(slide), int(ooo), int(threshold)
wins = {}
maxts = None
for host, ts, lat in csv.reader(open(inp, newline="")):
    ts, lat = int(ts), int(lat)
    wm = None if maxts is None else maxts - ooo - 1
    s = ts - ts % slide
    while s + size > ts:
        if wm is None or s + size - 1 > wm:
            wins.setdefault((host, s), []).append(lat)
        s -= slide
    maxts = ts if maxts is None else max(maxts, ts)
def rank(v, n):  # nearest rank: 1-based ceil(n/100 * count)
    return v[max(1, -(-n * len(v) // 100)) - 1]
with open(outp, "w", newline="") as o, open(alertp, "w", newline="") as a:
    wo, wa = csv.writer(o, lineterminator="\n"), csv.writer(a, lineterminator="\n")
    for (host, s), v in wins.items():
        v.sort()
        row = [host, s, s + size, len(v), rank(v, 50), rank(v, 99), v[-1]]
        wo.writerow(row)
        if row[5] > threshold:
            wa.writerow(row)
PY
}

for setting in 2000:500:1000 1000:250:0 3000:1000:2500; do
	size=${setting%%:*}
	rest=${setting#*:}
	slide=${rest%:*}
	ooo=${rest#*:}
	thr=5000
	name="telemetry size $size slide $slide ooo $ooo"
	telemetry_ref "$TMP/telemetry.csv" "$size" "$slide" "$ooo" "$thr" "$TMP/tel.ref" "$TMP/alerts.ref"
	LC_ALL=C sort -o "$TMP/tel.ref" "$TMP/tel.ref"
	LC_ALL=C sort -o "$TMP/alerts.ref" "$TMP/alerts.ref"
	good=0
	for run in $RUNS; do
		opts=$(echo "$run" | tr ',' ' ')
		# shellcheck disable=SC2086
		if ! "$WEIR" run $opts "$EXAMPLES/telemetry.so" --input "$TMP/telemetry.csv" \
			--output "$TMP/tel.out" --alerts "$TMP/alerts.out" --size "$size" \
			--slide "$slide" --p99-threshold "$thr" --out-of-orderness "$ooo" \
			2> "$TMP/err"; then
			not_ok "$name $opts: exit status $?"; head -5 "$TMP/err"
		elif ! LC_ALL=C sort "$TMP/tel.out" | cmp -s - "$TMP/tel.ref"; then
			not_ok "$name $opts: output differs from the reference" \
				"($(wc -l < "$TMP/tel.out") lines, expected $(wc -l < "$TMP/tel.ref"))"
			LC_ALL=C sort "$TMP/tel.out" | diff - "$TMP/tel.ref" | head -6
		elif ! LC_ALL=C sort "$TMP/alerts.out" | cmp -s - "$TMP/alerts.ref"; then
			not_ok "$name $opts: alerts differ from the rows with p99 > $thr"
			LC_ALL=C sort "$TMP/alerts.out" | diff - "$TMP/alerts.ref" | head -6
		else
			good=$((good + 1))
		fi
	done
	nal=$(wc -l < "$TMP/alerts.ref")
	if [ "$good" -eq "$(echo "$RUNS" | wc -w)" ]; then
		ok "$name: -p 1, -p 2, batch 7 = reference ($(wc -l < "$TMP/tel.ref") windows, $nal alerts)"
	fi
	# The threshold must split the windows, or the alert check proves little.
	if [ "$nal" -gt 0 ] && [ "$nal" -lt "$(wc -l < "$TMP/tel.ref")" ]; then
		ok "$name: some windows alert, some do not"
	else
		not_ok "$name: $nal alerts of $(wc -l < "$TMP/tel.ref") windows"
	fi
done

# ---- usage ---------------------------------------------------------------------
for job in vwap telemetry; do
	if "$WEIR" run "$EXAMPLES/$job.so" --help > "$TMP/help" 2>&1 &&
		grep -q -- "--input" "$TMP/help" && grep -q -- "--out-of-orderness" "$TMP/help"; then
		ok "$job --help"
	else
		not_ok "$job --help"
	fi
	"$WEIR" run "$EXAMPLES/$job.so" --input "$TMP/trades.csv" > /dev/null 2> "$TMP/err" && rc=0 || rc=$?
	if [ "$rc" -eq 2 ] && grep -q "usage:" "$TMP/err"; then
		ok "$job without its required flags: usage, exit 2"
	else
		not_ok "$job without its required flags: exit $rc"
	fi
done
finish
