#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Bad input gets a clear error and the right exit status, never a crash.
. "$(dirname "$0")/lib.sh"

# expect STATUS PATTERN -- command...: exit status and a stderr message.
expect() {
	want="$1"; pattern="$2"; shift 3
	set +e
	"$@" > "$TMP/out" 2> "$TMP/err" < /dev/null
	got=$?
	set -e
	if [ "$got" -eq "$want" ] && grep -q -- "$pattern" "$TMP/err" "$TMP/out"; then
		ok "exit $got, '$pattern': $*"
	else
		not_ok "wanted exit $want and '$pattern', got $got: $*"
		cat "$TMP/err"
	fi
}

expect 1 "cannot open '$TMP/nope.txt': No such file" -- \
	"$WEIR" run "$EXAMPLES/wordcount.so" --input "$TMP/nope.txt" --output "$TMP/o.csv"
expect 1 "is not a readable file" -- \
	"$WEIR" run "$EXAMPLES/wordcount.so" --input "$TMP" --output "$TMP/o.csv"
expect 1 "cannot create '$TMP/no/such/dir/o.csv'" -- \
	"$WEIR" run "$EXAMPLES/wordcount.so" --input /etc/hostname --output "$TMP/no/such/dir/o.csv"
expect 2 "unrecognized option '--bogus'" -- \
	"$WEIR" run "$EXAMPLES/wordcount.so" --bogus
expect 2 "unexpected argument 'extra'" -- \
	"$WEIR" run "$EXAMPLES/wordcount.so" extra
expect 2 "is not a number" -- "$WEIR" run -p zero "$EXAMPLES/wordcount.so"
expect 2 "is not a number" -- "$WEIR" run -p 0 "$EXAMPLES/wordcount.so"
expect 1 "parallelism 1000 exceeds the max parallelism 128 (the number of key groups, default 128): raise it with --max-parallelism N, N >= 1000" -- \
	"$WEIR" run -p 1000 "$EXAMPLES/wordcount.so" --input /etc/hostname --output "$TMP/o.csv"
expect 2 "no job given" -- "$WEIR" run -p 2
expect 1 "cannot read job" -- "$WEIR" run "$TMP/missing.so"
printf 'not an ELF' > "$TMP/fake.so"
expect 1 "cannot load job" -- "$WEIR" run "$TMP/fake.so"
: > "$TMP/ckfile"
expect 1 "checkpoint directory $TMP/ckfile: Not a directory" -- \
	"$WEIR" run --checkpoint-dir "$TMP/ckfile" "$EXAMPLES/wordcount.so" --input /etc/hostname \
	--output "$TMP/o.csv"
expect 0 "--checkpoint-dir without --checkpoint-interval: no periodic checkpoints" -- \
	"$WEIR" run --checkpoint-dir "$TMP/ck0" "$EXAMPLES/wordcount.so" --input /etc/hostname \
	--output "$TMP/o0"
expect 0 "as in Flink: no periodic checkpoints" -- "$WEIR" run --help
expect 1 "is not a Weir job: its 'weir_job' is a data object, not a function" -- \
	"$WEIR" run "$JOBS/data_symbol.so"
expect 2 "unknown command 'frobnicate'" -- "$WEIR" frobnicate
expect 2 "is not park or busy-poll" -- "$WEIR" run --idle-policy lazy "$EXAMPLES/wordcount.so"
expect 0 "usage: weir run" -- "$WEIR" run --help
expect 0 "usage: weir <command>" -- "$WEIR" --help
expect 0 "usage: weir run" -- "$WEIR" help run
expect 0 "usage: weir version" -- "$WEIR" version --help
expect 0 "usage: weir run" -- "$WEIR" run "$EXAMPLES/wordcount.so" --help
finish
