#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# `weir nexmark gen`: the CSV dump of a Nexmark run.  Header lines, row
# counts by the 1:3:46 rule, files that python3's csv module and sqlite3's
# .import read, the same bytes on every run, and the same rows as the
# streams of a job (tests/jobs/nexmark_csv.so) run with the same options at
# -p 1 and 2; bad usage exits 2, I/O errors exit 1 naming the file.
. "$(dirname "$0")/lib.sh"
require_tools python3 sqlite3

N=120037
gen() { "$WEIR" nexmark gen "$@"; }

if gen --events $N --event-rate 1000 --seed 4 --out "$TMP/a/b" 2> "$TMP/err"; then
	ok "gen wrote $TMP/a/b (created with its parent)"
else
	not_ok "gen failed"; cat "$TMP/err"
fi
hp="id,name,email_address,credit_card,city,state,date_time,extra"
ha="id,item_name,description,initial_bid,reserve,date_time,expires,seller,category,extra"
hb="auction,bidder,price,channel,url,date_time,extra"
if [ "$(head -1 "$TMP/a/b/person.csv")" = "$hp" ] &&
	[ "$(head -1 "$TMP/a/b/auction.csv")" = "$ha" ] &&
	[ "$(head -1 "$TMP/a/b/bid.csv")" = "$hb" ]; then
	ok "header lines in schema order"
else
	not_ok "header lines"; head -1 "$TMP/a/b/"*.csv
fi

# Ids n mod 50 = 0 are people, 1..3 auctions, the rest bids.
wp=$(( (N + 49) / 50 ))
wa=$(awk -v n=$N 'BEGIN { c = 0; for (i = 0; i < n; i++) { r = i % 50; if (r >= 1 && r < 4) c++ } print c }')
wb=$(( N - wp - wa ))
rows() { echo $(( $(wc -l < "$1") - 1 )); }
gp=$(rows "$TMP/a/b/person.csv"); ga=$(rows "$TMP/a/b/auction.csv"); gb=$(rows "$TMP/a/b/bid.csv")
if [ "$gp $ga $gb" = "$wp $wa $wb" ]; then
	ok "rows $gp : $ga : $gb (1:3:46 of $N)"
else
	not_ok "rows $gp $ga $gb, want $wp $wa $wb"
fi

# python3's csv module: field counts, integers where the schema says so,
# date_time = base + n (event rate 1000/s), ids in their rules.
if python3 - "$TMP/a/b" <<'EOF'
import csv, sys
d = sys.argv[1]
base = 1436918400000
spec = {"person": (8, [0, 6]), "auction": (10, [0, 3, 4, 5, 6, 7, 8]),
        "bid": (7, [0, 1, 2, 5])}
seen = set()
for name, (ncols, ints) in spec.items():
    with open(f"{d}/{name}.csv", newline="") as f:
        r = csv.reader(f, strict=True)
        next(r)
        for row in r:
            assert len(row) == ncols, (name, row)
            for c in ints:
                int(row[c])
            dt = int(row[6 if name == "person" else 5])
            n = dt - base
            assert n not in seen, (name, n)
            seen.add(n)
            if name == "person":
                assert n % 50 == 0 and int(row[0]) == 1000 + n // 50, row
            elif name == "auction":
                assert 1 <= n % 50 < 4 and int(row[0]) == 1000 + n // 50 * 3 + n % 50 - 1, row
                assert int(row[6]) > dt and 10 <= int(row[8]) < 15, row
            else:
                assert n % 50 >= 4 and 100 <= int(row[2]) <= 100000000, row
assert seen == set(range(len(seen))), "event ids are not 0..N-1"
print(len(seen))
EOF
then
	ok "python3 csv reads every row; each id once, ids by the rules"
else
	not_ok "python3 csv check failed"
fi

# sqlite3 imports them (the header names the columns).
out=$(cd "$TMP/a/b" && sqlite3 :memory: ".import --csv person.csv person" \
	".import --csv auction.csv auction" ".import --csv bid.csv bid" \
	"select (select count(*) from person), (select count(*) from auction), (select count(*) from bid), (select count(*) from bid b join auction a on b.auction = a.id), (select min(cast(date_time as integer)) from bid);" 2>&1)
joined=$(echo "$out" | cut -d'|' -f4)
if [ "$(echo "$out" | cut -d'|' -f1-3)" = "$wp|$wa|$wb" ] && [ "$joined" -gt $((wb * 9 / 10)) ] &&
	[ "$(echo "$out" | cut -d'|' -f5)" = "1436918400004" ]; then
	ok "sqlite3 .import --csv: counts, a join on auction ids ($joined bids), min date_time"
else
	not_ok "sqlite3: $out"
fi

# The same bytes on every run; another seed gives other events.
gen --events $N --event-rate 1000 --seed 4 --out "$TMP/c" && gen --events $N --event-rate 1000 --seed 5 --out "$TMP/d"
same=1
for f in person auction bid; do cmp -s "$TMP/a/b/$f.csv" "$TMP/c/$f.csv" || same=0; done
if [ $same -eq 1 ] && ! cmp -s "$TMP/a/b/bid.csv" "$TMP/d/bid.csv"; then
	ok "identical across runs; another seed differs"
else
	not_ok "two runs differ, or seeds do not matter"
fi

# The dump holds exactly what a job's streams carry (compared as sets).
compare_job() { # label, dump dir, weir run options and job options...
	label="$1"; dump="$2"; shift 2
	rm -rf "$TMP/job"; mkdir "$TMP/job"
	if ! "$WEIR" run --no-progress "$@" --out "$TMP/job" 2> "$TMP/err"; then
		not_ok "$label: job failed"; cat "$TMP/err"; return
	fi
	for f in person auction bid; do
		tail -n +2 "$dump/$f.csv" | LC_ALL=C sort > "$TMP/want"
		LC_ALL=C sort "$TMP/job/$f.csv" > "$TMP/got"
		if ! cmp -s "$TMP/want" "$TMP/got"; then
			not_ok "$label: $f rows differ from the dump"
			diff "$TMP/want" "$TMP/got" | head -3
			return
		fi
	done
	ok "$label: the job's three streams equal the dump"
}
compare_job "-p 1" "$TMP/a/b" -p 1 "$JOBS/nexmark_csv.so" --events $N --event-rate 1000 --seed 4
compare_job "-p 2 --batch-size 100" "$TMP/a/b" -p 2 --batch-size 100 "$JOBS/nexmark_csv.so" \
	--seed 4 --event-rate=1000 --events $N
gen --events 50001 --ooo-group 97 --out "$TMP/o"
compare_job "-p 2 --ooo-group 97" "$TMP/o" -p 2 "$JOBS/nexmark_csv.so" --events 50001 --ooo-group 97

# Out of order: the dump is in emission order, which is not id order.
if awk -F, 'NR > 2 && $6 < prev { found = 1 } { prev = $6 } END { exit !found }' "$TMP/o/bid.csv"; then
	ok "--ooo-group 97: rows leave event-time order"
else
	not_ok "--ooo-group 97: rows in order"
fi

# Bad usage exits 2 with a message; I/O errors exit 1 naming the file.
expect() { # exit status, pattern, label, args...
	want="$1"; pat="$2"; label="$3"; shift 3
	set +e; "$WEIR" "$@" > "$TMP/out" 2> "$TMP/err"; rc=$?; set -e
	if [ $rc -eq "$want" ] && grep -q -e "$pat" "$TMP/err" "$TMP/out"; then
		ok "$label: exit $rc"
	else
		not_ok "$label: exit $rc (want $want), no '$pat'"; cat "$TMP/err"
	fi
}
expect 2 "--out DIR is required" "missing --out" nexmark gen --events 10
expect 2 "--events N" "missing --events" nexmark gen --out "$TMP/x"
expect 2 "--events: 'ten'" "bad --events" nexmark gen --events ten --out "$TMP/x"
expect 2 "--event-rate: '0'" "bad --event-rate" nexmark gen --events 10 --event-rate 0 --out "$TMP/x"
expect 2 "--ooo-group: '953'" "bad --ooo-group" nexmark gen --events 10 --ooo-group 953 --out "$TMP/x"
expect 2 "--seed: '-1'" "bad --seed" nexmark gen --events 10 --seed -1 --out "$TMP/x"
expect 2 "--seed: missing value" "--seed without a value" nexmark gen --events 10 --out "$TMP/x" --seed
expect 2 "unexpected argument 'extra'" "stray argument" nexmark gen --events 10 --out "$TMP/x" extra
expect 2 "unknown command 'dump'" "unknown subcommand" nexmark dump
expect 0 "usage: .* nexmark gen" "nexmark gen --help" nexmark gen --help
expect 0 "nexmark" "weir --help lists nexmark" --help
touch "$TMP/file"
expect 1 "$TMP/file/sub" "--out under a file" nexmark gen --events 10 --out "$TMP/file/sub"
mkdir -p "$TMP/busy/person.csv"
expect 1 "cannot create '$TMP/busy/person.csv'" "person.csv is a directory" \
	nexmark gen --events 10 --out "$TMP/busy"
if [ -w /dev/full ]; then
	mkdir -p "$TMP/full" && ln -s /dev/full "$TMP/full/bid.csv"
	expect 1 "cannot write '$TMP/full/bid.csv'" "disk full" nexmark gen --events 100000 --out "$TMP/full"
fi
finish
