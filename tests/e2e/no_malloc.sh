#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# No malloc and no lock in the per-record path: count allocation and mutex
# calls (LD_PRELOAD shim) in runs over N and 8N records; the counts must not
# grow with the input.  Skipped (77) in sanitizer builds, whose allocator
# cannot be interposed.
. "$(dirname "$0")/lib.sh"

if ldd "$WEIR" | grep -q -e libasan -e libtsan; then
	echo "skip: sanitizer build"
	exit 77
fi
count() { # output file, command...
	out="$1"; shift
	WEIR_ALLOC_COUNT_FILE="$out" LD_PRELOAD="$JOBS/alloc_count.so" "$@" > /dev/null
}
check() { # label, small count file, large count file
	set -- "$1" $(cat "$2") $(cat "$3")
	# $2 allocs $3 N $4 locks $5 N ; $6 allocs $7 N $8 locks $9 N
	da=$(( $7 - $3 )); dl=$(( $9 - $5 ))
	if [ "$da" -lt 64 ] && [ "$dl" -lt 64 ]; then
		ok "$1: 8x the records, +$da allocations, +$dl locks (of $7 / $9)"
	else
		not_ok "$1: allocations grew by $da ($3 -> $7), locks by $dl ($5 -> $9)"
	fi
}
for p in 1 2; do
	count "$TMP/a1" "$WEIR" run -p $p "$JOBS/pipeline.so" --records 1000000
	count "$TMP/a8" "$WEIR" run -p $p "$JOBS/pipeline.so" --records 8000000
	check "generator -> rebalance -> map -> hash -> sum, -p $p" "$TMP/a1" "$TMP/a8"
done
for p in 1 2; do
	count "$TMP/n1" "$WEIR" run -p $p "$JOBS/nexmark_csv.so" --events 1000000 --out discard
	count "$TMP/n8" "$WEIR" run -p $p "$JOBS/nexmark_csv.so" --events 8000000 --out discard
	check "nexmark source (three streams) -> discard, -p $p" "$TMP/n1" "$TMP/n8"
done
# The regular join with latest-only inputs and top-N: bounded state, so
# once every key has its buffer nothing is allocated per record.
for op in join-latest topn; do
	count "$TMP/k1" "$WEIR" run -p 1 "$JOBS/keyed_ops.so" --op $op --records 1000000
	count "$TMP/k8" "$WEIR" run -p 1 "$JOBS/keyed_ops.so" --op $op --records 8000000
	check "$op, 100 keys, -p 1" "$TMP/k1" "$TMP/k8"
done
cat /usr/share/doc/*/copyright 2>/dev/null | head -c 4000000 > "$TMP/t1"
for i in 1 2 3 4 5 6 7 8; do cat "$TMP/t1"; done > "$TMP/t8"
for p in 1 2; do
	count "$TMP/w1" "$WEIR" run -p $p "$EXAMPLES/wordcount.so" --input "$TMP/t1" --output "$TMP/o"
	count "$TMP/w8" "$WEIR" run -p $p "$EXAMPLES/wordcount.so" --input "$TMP/t8" --output "$TMP/o"
	check "wordcount -p $p" "$TMP/w1" "$TMP/w8"
done
finish
