#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The checkpoint options as a user meets them on the command line: a rerun
# on a checkpoint directory whose job finished says so, does nothing and
# exits 0 (in batch mode it used to emit the keyed totals a second time);
# savepoints go where the help says, and their printed paths are absolute.
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

# ---- where savepoints go -------------------------------------------------------
# start_job DIR ARGS...: an unbounded job run from DIR; PID its pid once
# its control socket is up.
start_job() {
	jd="$1"
	shift
	mkdir -p "$jd"
	(cd "$jd" && exec "$WEIR" run --no-progress "$@" "$JOBS/pipeline.so" --records 0 \
		> /dev/null 2> "$jd.err") &
	PID=$!
	i=0
	while [ ! -S "$WEIR_RUN_DIR/$PID.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
}
# savepoint OUT ERR ARGS...: weir savepoint ARGS, again while the job is
# still starting (its socket is up before its runtime); ST its status.
savepoint() {
	o="$1"
	e="$2"
	shift 2
	i=0
	while :; do
		set +e
		"$WEIR" savepoint "$@" > "$o" 2> "$e"
		ST=$?
		set -e
		grep -q "no job that can take savepoints is running" "$e" && [ $i -lt 50 ] || break
		sleep 0.1
		i=$((i + 1))
	done
}
stop_job() {
	"$WEIR" cancel --pid "$PID" > /dev/null || true
	wait "$PID" || true
}

# Neither --savepoint-dir nor --checkpoint-dir: refused, as Flink refuses a
# savepoint without a target directory (it went to a relative ./savepoints
# of the job's working directory); a DIR relative to the client's directory
# works, and the path printed is absolute.
start_job "$TMP/job1"
savepoint "$TMP/sp.out" "$TMP/sp.err" --pid "$PID"
st=$ST
cd "$TMP"
savepoint "$TMP/sp2.out" "$TMP/sp2.err" --pid "$PID" rel-sp
st2=$ST
cd - > /dev/null
stop_job
if [ $st -eq 1 ] && grep -q "^weir savepoint: no savepoint directory: give the command one (DIR), or start the job with --savepoint-dir DIR or --checkpoint-dir CK" "$TMP/sp.err" &&
	[ ! -e "$TMP/job1/savepoints" ]; then
	ok "a savepoint with no directory anywhere is refused, naming --savepoint-dir"
else
	not_ok "savepoint without a directory: exit $st"; cat "$TMP/sp.err"; ls "$TMP/job1"
fi
if [ $st2 -eq 0 ] && grep -q "^$TMP/rel-sp/savepoint-[0-9]*$" "$TMP/sp2.out" &&
	[ -f "$(cat "$TMP/sp2.out")/_metadata" ]; then
	ok "weir savepoint DIR (relative to the client): absolute path printed"
else
	not_ok "weir savepoint DIR: exit $st2"; cat "$TMP/sp2.out" "$TMP/sp2.err"
fi

# A relative --checkpoint-dir: the default is <checkpoint-dir>/savepoints,
# printed as an absolute path that names the savepoint from anywhere.
start_job "$TMP/job2" --checkpoint-dir ck
savepoint "$TMP/sp3.out" "$TMP/sp3.err" --pid "$PID"
st3=$ST
stop_job
if [ $st3 -eq 0 ] && grep -q "^$TMP/job2/ck/savepoints/savepoint-[0-9]*$" "$TMP/sp3.out" &&
	[ -f "$(cat "$TMP/sp3.out")/_metadata" ]; then
	ok "default savepoint directory <checkpoint-dir>/savepoints, printed absolute"
else
	not_ok "default savepoint directory: exit $st3"; cat "$TMP/sp3.out" "$TMP/sp3.err"
fi
# ---- a BATCH job stopped with a savepoint and restored --------------------------
# Its combiners (two-phase aggregation) keep partial counts in a table that
# is never checkpointed: they send them ahead of every barrier, or the
# counts folded before the savepoint were lost at the restore.
awk 'BEGIN { srand(3); for (i = 0; i < 6000; i++) { l = ""; for (j = 0; j < 6; j++)
	l = l sprintf("%c%c ", 97 + int(rand() * 26), 97 + int(rand() * 26)); print l } }' \
	> "$TMP/bw.txt"
"$WEIR" run --no-progress --mode batch "$EXAMPLES/wordcount.so" --input "$TMP/bw.txt" \
	--output "$TMP/bw.ref" 2> /dev/null
"$WEIR" run --no-progress --mode batch -p 2 --checkpoint-dir "$TMP/bw.ck" \
	"$EXAMPLES/wordcount.so" --input "$TMP/bw.txt" --output "$TMP/bw.out" --rate 2000 \
	> /dev/null 2> "$TMP/bw.err" &
PID=$!
i=0
while [ ! -S "$WEIR_RUN_DIR/$PID.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
sleep 1 # a third of the input: counts folded, none emitted (BATCH emits at the end)
set +e
"$WEIR" stop --savepoint --pid "$PID" "$TMP/bw.sp" > "$TMP/bw.sp.out" 2>&1
st=$?
wait "$PID"
"$WEIR" run --no-progress --mode batch -p 2 --checkpoint-dir "$TMP/bw.ck2" \
	--from-savepoint "$(cat "$TMP/bw.sp.out")" "$EXAMPLES/wordcount.so" --input "$TMP/bw.txt" \
	--output "$TMP/bw.out" > /dev/null 2> "$TMP/bw.err2"
st2=$?
set -e
cat "$TMP/bw.out"/part-* 2> /dev/null | LC_ALL=C sort > "$TMP/bw.got"
LC_ALL=C sort "$TMP/bw.ref" > "$TMP/bw.want"
if [ $st -eq 0 ] && [ $st2 -eq 0 ] && [ -s "$TMP/bw.want" ] && cmp -s "$TMP/bw.want" "$TMP/bw.got"; then
	ok "batch word count stopped with a savepoint and restored: the counts of the uninterrupted run"
else
	not_ok "batch word count through a savepoint (stop exit $st, restore exit $st2)"
	cat "$TMP/bw.sp.out" "$TMP/bw.err2"; diff "$TMP/bw.want" "$TMP/bw.got" | head -5
fi
finish
