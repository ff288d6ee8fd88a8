#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# An unbounded job runs until interrupted: SIGINT (Ctrl-C) and SIGTERM stop
# it promptly, with "cancelled" and exit status 1, releasing everything
# (the sanitizer builds check for leaks and races on this path).
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
finish
