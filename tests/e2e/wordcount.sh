#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Word count end to end at parallelism 1, 2 and 4 on real text (the copyright
# files of this machine's packages) and on edge cases, compared with an
# answer computed independently by tr, sort and uniq.
. "$(dirname "$0")/lib.sh"

# Real text, capped at ~6 MB so the sanitizer builds stay quick.
cat /usr/share/doc/*/copyright 2>/dev/null | head -c 6000000 > "$TMP/real.txt"
# Edge cases: CRLF, no final newline, empty lines, long words, digits,
# non-ASCII bytes, a line longer than a batch block.
printf 'Hello, hello HELLO!\r\nwörld 42abc def\n\n\nend' > "$TMP/edge.txt"
awk 'BEGIN { for (i = 0; i < 40000; i++) printf "x%dy ", i; print "" }' >> "$TMP/edge.txt"
head -c 300 /dev/zero | tr '\0' 'q' >> "$TMP/edge.txt"
: > "$TMP/empty.txt"

for input in real edge empty; do
	ref_wordcount "$TMP/$input.txt" > "$TMP/$input.ref"
	for p in 1 2 4; do
		out="$TMP/$input.$p.csv"
		if "$WEIR" run -p "$p" "$EXAMPLES/wordcount.so" --input "$TMP/$input.txt" \
			--output "$out" 2> "$TMP/err"; then
			if LC_ALL=C sort "$out" | cmp -s - "$TMP/$input.ref"; then
				ok "wordcount $input -p $p ($(wc -l < "$out") words)"
			else
				not_ok "wordcount $input -p $p differs from reference"
				LC_ALL=C sort "$out" | diff - "$TMP/$input.ref" | head -5
			fi
		else
			not_ok "wordcount $input -p $p exited non-zero"; cat "$TMP/err"
		fi
	done
done

# stdin to stdout, several cores, small batches and no chaining.
ref_wordcount "$TMP/real.txt" > "$TMP/real.ref"
if "$WEIR" run -p 3 --cores 2 --batch-size 64 --no-chaining "$EXAMPLES/wordcount.so" \
	< "$TMP/real.txt" > "$TMP/stdout.csv" 2> "$TMP/err" &&
	LC_ALL=C sort "$TMP/stdout.csv" | cmp -s - "$TMP/real.ref"; then
	ok "wordcount stdin -> stdout, -p 3, batch 64, no chaining"
else
	not_ok "wordcount stdin -> stdout"; cat "$TMP/err"
fi

# Busy-poll idle policy and per-record flushing give the same answer.
if "$WEIR" run -p 2 --idle-policy busy-poll --buffer-timeout 0 "$EXAMPLES/wordcount.so" \
	--input "$TMP/real.txt" --output "$TMP/busy.csv" 2> "$TMP/err" &&
	LC_ALL=C sort "$TMP/busy.csv" | cmp -s - "$TMP/real.ref"; then
	ok "wordcount busy-poll, buffer timeout 0"
else
	not_ok "wordcount busy-poll"; cat "$TMP/err"
fi
# A quiet pipe: the reactor sleeps until input arrives (polling the pipe),
# so waiting costs next to no CPU, and the words still come out right.
# The CPU of the wait is what the run costs beyond the same run on input
# that is there at once (start-up, which a sanitizer build makes dearer).
echo "Quiet quiet pipe" | /usr/bin/time -f "%U %S" -o "$TMP/cpu0" \
	"$WEIR" run "$EXAMPLES/wordcount.so" > /dev/null 2> "$TMP/err" || true
(sleep 2; echo "Quiet quiet pipe") | /usr/bin/time -f "%U %S" -o "$TMP/cpu" \
	"$WEIR" run "$EXAMPLES/wordcount.so" > "$TMP/pipe.csv" 2> "$TMP/err"
cpu=$(awk 'NR == FNR { base = $1 + $2; next } { printf "%.2f", $1 + $2 - base }' \
	"$TMP/cpu0" "$TMP/cpu")
if [ "$(LC_ALL=C sort "$TMP/pipe.csv" | tr '\n' ' ')" = "pipe,1 quiet,2 " ] &&
	awk -v c="$cpu" 'BEGIN { exit !(c < 0.5) }'; then
	ok "quiet pipe: right counts, ${cpu}s CPU over a 2 s wait"
else
	not_ok "quiet pipe: ${cpu}s CPU, output: $(cat "$TMP/pipe.csv" | tr '\n' ' ')"; cat "$TMP/err"
fi
finish
