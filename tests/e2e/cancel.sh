#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# An unbounded job runs until interrupted: SIGINT (Ctrl-C) and SIGTERM stop
# it promptly, with "cancelled" and exit status 1, releasing everything
# (the sanitizer builds check for leaks and races on this path).  A CSV
# sink streams: a row reaches a pipe within the buffer timeout while the job
# runs, and what a cancelled job produced is written before it exits.
. "$(dirname "$0")/lib.sh"

# The signal goes once the job runs (its first progress line): weir
# installs its handler just before running, and a signal before that would
# kill it outright or be forgotten, leaving the job running (a fixed 1 s
# delay could lose that race on a loaded machine or in a sanitizer build).
for sig in INT TERM; do
	for p in 1 2; do
		# --records 0: an unbounded generator
		"$WEIR" run --progress=50 -p $p --cores 2 "$JOBS/pipeline.so" --records 0 \
			> /dev/null 2> "$TMP/err" &
		pid=$!
		if ! wait_until 60 grep -q '^\[' "$TMP/err"; then
			kill -9 $pid 2> /dev/null || true
			wait $pid 2> /dev/null || true
			not_ok "SIG$sig at -p $p: the job did not start within 60 s"; cat "$TMP/err"
			continue
		fi
		kill -$sig $pid
		# promptly: well within the deadline (it takes milliseconds)
		if ! wait_until 60 sh -c "! kill -0 $pid 2> /dev/null"; then
			kill -9 $pid 2> /dev/null || true
		fi
		st=0
		wait $pid || st=$?
		if [ $st -eq 1 ] && grep -q "cancelled" "$TMP/err" && ! grep -qi "sanitizer" "$TMP/err"; then
			ok "SIG$sig stops an unbounded job at -p $p (exit 1, cancelled)"
		else
			not_ok "SIG$sig at -p $p: exit $st"; cat "$TMP/err"
		fi
	done
done

# weir cancel, through the job's control socket: the job ends "cancelled"
# (exit 1); the command's messages name it ("weir cancel: ..."), never
# another command.
export WEIR_RUN_DIR="$TMP/run"
"$WEIR" run --no-progress "$JOBS/pipeline.so" --records 0 > /dev/null 2> "$TMP/job.err" &
pid=$!
i=0
while [ ! -S "$WEIR_RUN_DIR/$pid.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
set +e
"$WEIR" cancel --savepoint > "$TMP/out" 2> "$TMP/err"
st_sp=$?
"$WEIR" cancel extra > /dev/null 2>> "$TMP/err"
st_arg=$?
"$WEIR" cancel --pid "$pid" >> "$TMP/out" 2>> "$TMP/err"
st=$?
wait "$pid"
st_job=$?
"$WEIR" cancel >> "$TMP/out" 2>> "$TMP/err"
st_none=$?
"$WEIR" cancel --pid "$pid" >> "$TMP/out" 2>> "$TMP/err"
st_gone=$?
set -e
if [ $st -eq 0 ] && grep -q "^cancelled" "$TMP/out" && [ $st_job -eq 1 ] &&
	grep -q "cancelled" "$TMP/job.err"; then
	ok "weir cancel --pid stops a running job (it exits 1, cancelled)"
else
	not_ok "weir cancel --pid: exit $st, job exit $st_job"; cat "$TMP/out" "$TMP/err" "$TMP/job.err"
fi
if [ $st_sp -eq 2 ] && grep -q "^weir cancel: --savepoint: a cancelled job takes no savepoint" "$TMP/err" &&
	[ $st_arg -eq 2 ] && grep -q "^weir cancel: unexpected argument 'extra'" "$TMP/err" &&
	[ $st_none -eq 1 ] && grep -q "^weir cancel: no running job found" "$TMP/err" &&
	[ $st_gone -eq 1 ] && grep -q "^weir cancel: no running job with pid $pid" "$TMP/err" &&
	! grep -q "^weir stop" "$TMP/err"; then
	ok "weir cancel's messages name weir cancel"
else
	not_ok "weir cancel's messages"; cat "$TMP/err"
fi
# Streaming sinks: word count in streaming mode on a pipe that stays open.
# Its rows are readable while the job still runs (before this, the CSV sink
# wrote only per MiB or at the end); after SIGTERM, rows of the lines sent
# since are there too.
mkfifo "$TMP/in"
"$WEIR" run --no-progress --mode streaming "$EXAMPLES/wordcount.so" < "$TMP/in" \
	> "$TMP/stream.out" 2> "$TMP/stream.err" &
pid=$!
exec 7> "$TMP/in"
echo "alpha beta alpha" >&7
if wait_until 30 grep -q '^alpha,2$' "$TMP/stream.out" && kill -0 $pid 2> /dev/null; then
	ok "a CSV sink's rows reach a pipe while the job runs (buffer timeout)"
else
	not_ok "streaming sink: $(cat "$TMP/stream.out" "$TMP/stream.err")"
fi
echo "gamma" >&7
wait_until 30 grep -q '^gamma,1$' "$TMP/stream.out" || true
kill -TERM $pid
st=0
wait $pid || st=$?
exec 7>&-
if [ $st -eq 1 ] && grep -q '^beta,1$' "$TMP/stream.out" && grep -q '^gamma,1$' "$TMP/stream.out"; then
	ok "a cancelled streaming job's output holds every row it produced"
else
	not_ok "streaming sink after SIGTERM (exit $st): $(cat "$TMP/stream.out")"
fi
finish
