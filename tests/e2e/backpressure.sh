#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Backpressure: a fast generator feeds a slow operator on another core.
# Memory must stay bounded (credits, not buffering) and nothing may be lost:
# the sum of seq over the output must be N(N-1)/2.
. "$(dirname "$0")/lib.sh"

N=4000000
rss() { # max resident KB of a command
	/usr/bin/time -f %M -o "$TMP/rss" "$@" 2> "$TMP/err" || { cat "$TMP/err"; return 1; }
	cat "$TMP/rss"
}
base=$(rss "$WEIR" run --cores 2 "$JOBS/pipeline.so" --records 10000 --output "$TMP/base.csv")
slow=$(rss "$WEIR" run --cores 2 --metrics "$JOBS/pipeline.so" --records $N --slow-us 300 \
	--output "$TMP/slow.csv")
cp "$TMP/err" "$TMP/metrics"
got=$(awk -F, '{ s += $1 } END { printf "%.0f", s }' "$TMP/slow.csv")
want=$(awk -v n=$N 'BEGIN { printf "%.0f", n * (n - 1) / 2 }')
if [ "$got" = "$want" ] && [ "$(wc -l < "$TMP/slow.csv")" -eq 100 ]; then
	ok "nothing lost under backpressure (sum of seq $got)"
else
	not_ok "slow pipeline lost or duplicated records: sum $got, want $want"
fi
# Buffering all N records would take N/1024 blocks of 128 KiB (~500 MB).
limit=$((base + 65536))
if [ "$slow" -le "$limit" ]; then
	ok "memory bounded under backpressure: max RSS ${slow} KB (baseline ${base} KB)"
else
	not_ok "max RSS ${slow} KB exceeds ${limit} KB: backpressure does not bound memory"
fi
if grep -q "backpressured [1-9]" "$TMP/metrics"; then
	ok "the generator's core reports backpressured time"
else
	not_ok "no backpressured time reported"; cat "$TMP/metrics"
fi
finish
