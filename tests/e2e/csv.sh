#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# CSV source end to end with csv_sum.so: keyed sums over a generated file
# with quoted keys and malformed rows, at -p 1, 2 and 4, compared with awk;
# malformed rows land in the dead-letter file with their line numbers and a
# reason, or on stderr, and never stop the job.
. "$(dirname "$0")/lib.sh"

# 50,000 rows; every 997th row is broken in one of four ways.  The reference
# answers come from the generator itself (awk), not from parsing the file.
awk 'BEGIN {
	srand(7); print "sym,px,qty"
	line = 1
	for (i = 0; i < 50000; i++) {
		line++
		k = int(rand() * 50); q = int(rand() * 100) - 20
		sym = (k % 7 == 0) ? "\"S," k "\"" : "S" k
		if (i % 997 == 5) {
			m = int(i / 997) % 4
			if (m == 0) print sym ",1.0," q "x"
			else if (m == 1) print sym ",2.0"
			else if (m == 2) print sym ",\"3\"z," q
			else print sym ",abc," q
			print line > "'"$TMP"'/bad.lines"
			continue
		}
		print sym ",1.5," q
		key = (k % 7 == 0) ? "\"S," k "\"" : "S" k
		sum[key] += q
	}
	for (k in sum) print k "," sum[k] > "'"$TMP"'/ref.unsorted"
}' > "$TMP/in.csv"
LC_ALL=C sort "$TMP/ref.unsorted" > "$TMP/ref"
nbad=$(wc -l < "$TMP/bad.lines")

for p in 1 2 4; do
	if "$WEIR" run -p $p "$EXAMPLES/csv_sum.so" --input "$TMP/in.csv" --header \
		--schema sym:str,px:f64,qty:i64 --key sym --sum qty \
		--output "$TMP/out" --dead-letters "$TMP/dead" 2> "$TMP/err"; then
		if LC_ALL=C sort "$TMP/out" | cmp -s - "$TMP/ref"; then
			ok "csv_sum -p $p matches awk ($(wc -l < "$TMP/out") keys)"
		else
			not_ok "csv_sum -p $p differs"; LC_ALL=C sort "$TMP/out" | diff - "$TMP/ref" | head -5
		fi
		cut -d, -f1 "$TMP/dead" > "$TMP/dead.lines"
		if cmp -s "$TMP/dead.lines" "$TMP/bad.lines" && [ "$nbad" -gt 40 ]; then
			ok "csv_sum -p $p: $nbad dead letters with the right line numbers"
		else
			not_ok "dead letters differ from the broken lines"; diff "$TMP/dead.lines" "$TMP/bad.lines" | head -5
		fi
	else
		not_ok "csv_sum -p $p failed"; cat "$TMP/err"
	fi
done
for reason in "is not a valid i64" "expected 3 fields, found 2" "text after a closing quote" \
	"is not a valid f64"; do
	if grep -q "$reason" "$TMP/dead"; then ok "dead letter reason: $reason"
	else not_ok "no dead letter says '$reason'"; fi
done

# A file of nothing but malformed rows: the dead letters go through a channel
# (no chaining) to a file; memory must stay bounded by credits, whatever the
# file size (1.5 M rows, ~30 MB).
awk 'BEGIN { for (i = 0; i < 1500000; i++) print "bad\"key," i }' > "$TMP/allbad.csv"
/usr/bin/time -f %M -o "$TMP/rss" "$WEIR" run --no-chaining --cores 2 "$EXAMPLES/csv_sum.so" \
	--input "$TMP/allbad.csv" --schema sym:str,qty:i64 --key sym --sum qty \
	--output "$TMP/none" --dead-letters "$TMP/dead2" 2> "$TMP/err" || cat "$TMP/err"
/usr/bin/time -f %M -o "$TMP/rss0" "$WEIR" run "$EXAMPLES/csv_sum.so" --input "$TMP/in.csv" \
	--header --schema sym:str,px:f64,qty:i64 --key sym --sum qty --output "$TMP/o" \
	--dead-letters "$TMP/d" 2> /dev/null
rss=$(cat "$TMP/rss"); rss0=$(cat "$TMP/rss0")
if [ "$(wc -l < "$TMP/dead2")" -eq 1500000 ] && [ "$rss" -le $((rss0 + 65536)) ]; then
	ok "1.5 M malformed rows: all dead-lettered, max RSS $rss KB (small file: $rss0 KB)"
else
	not_ok "malformed flood: $(wc -l < "$TMP/dead2") dead letters, max RSS $rss KB (small file: $rss0 KB)"
fi

# Without a dead-letter output: warnings on stderr, exit status 0.
if "$WEIR" run "$EXAMPLES/csv_sum.so" --input "$TMP/in.csv" --header \
	--schema sym:str,px:f64,qty:i64 --key sym --sum qty --output "$TMP/out2" 2> "$TMP/err" &&
	grep -q "in.csv line 7: column 3 (qty): '-\?[0-9]*x' is not a valid i64" "$TMP/err" &&
	grep -q "more malformed rows" "$TMP/err"; then
	ok "malformed rows reported on stderr with file and line; the job succeeds"
else
	not_ok "stderr reporting of malformed rows"; head -5 "$TMP/err"
fi
# A bad schema or column is a clear error, exit status 1.
set +e
"$WEIR" run "$EXAMPLES/csv_sum.so" --input "$TMP/in.csv" --schema sym:str,px:float \
	--key sym --sum px 2> "$TMP/err"; st=$?
set -e
if [ $st -eq 1 ] && grep -q "unknown type 'float'" "$TMP/err"; then
	ok "bad schema: exit 1 with the reason"
else
	not_ok "bad schema: exit $st"; cat "$TMP/err"
fi
finish
