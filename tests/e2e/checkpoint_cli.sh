#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The checkpoint options as a user meets them on the command line: a rerun
# on a checkpoint directory whose job finished says so, does nothing and
# exits 0 (in batch mode it used to emit the keyed totals a second time);
# savepoints go where the help says.
. "$(dirname "$0")/lib.sh"
printf 'a b a\nc a\n' > "$TMP/in.txt"
export WEIR_RUN_DIR="$TMP/run"

# ---- a finished run ----------------------------------------------------------
for mode in batch streaming; do
	ck="$TMP/$mode.ck"
	out="$TMP/$mode.out"
	set +e
	"$WEIR" run --no-progress --mode $mode --checkpoint-dir "$ck" --checkpoint-interval 100 \
		"$EXAMPLES/wordcount.so" --input "$TMP/in.txt" --output "$out" 2> "$TMP/err1"
	st1=$?
	cat "$out"/part-* | LC_ALL=C sort > "$TMP/$mode.rows1"
	"$WEIR" run --no-progress --mode $mode --checkpoint-dir "$ck" --checkpoint-interval 100 \
		"$EXAMPLES/wordcount.so" --input "$TMP/in.txt" --output "$out" 2> "$TMP/err2"
	st2=$?
	set -e
	cat "$out"/part-* | LC_ALL=C sort > "$TMP/$mode.rows2"
	if [ $st1 -eq 0 ] && [ $st2 -eq 0 ] &&
		grep -q "checkpoint directory $ck holds a finished run of this job (checkpoint [0-9]*, final): nothing to do" "$TMP/err2"; then
		ok "$mode: a rerun on a finished run's directory says why it does nothing (exit 0)"
	else
		not_ok "$mode: rerun on a finished run: exit $st1 then $st2"; cat "$TMP/err1" "$TMP/err2"
	fi
	if [ -s "$TMP/$mode.rows1" ] && cmp -s "$TMP/$mode.rows1" "$TMP/$mode.rows2" &&
		[ "$(ls "$out" | wc -l)" -eq 1 ] && [ "$(ls -d "$ck"/run-* | wc -l)" -eq 1 ]; then
		ok "$mode: the rerun wrote no output and started no run"
	else
		not_ok "$mode: the rerun changed the output or the directory"
		ls "$out" "$ck"; diff "$TMP/$mode.rows1" "$TMP/$mode.rows2" || true
	fi
done
finish
