#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# An unbounded job runs until interrupted: SIGINT (Ctrl-C) and SIGTERM stop
# it promptly, with "cancelled" and exit status 1, releasing everything
# (the sanitizer builds check for leaks and races on this path).
. "$(dirname "$0")/lib.sh"

for sig in INT TERM; do
	for p in 1 2; do
		set +e
		# --records 0: an unbounded generator
		timeout --preserve-status -s $sig 1 "$WEIR" run -p $p --cores 2 "$JOBS/pipeline.so" --records 0 \
			> /dev/null 2> "$TMP/err"
		st=$?
		set -e
		if [ $st -eq 1 ] && grep -q "cancelled" "$TMP/err" && ! grep -qi "sanitizer" "$TMP/err"; then
			ok "SIG$sig stops an unbounded job at -p $p (exit 1, cancelled)"
		else
			not_ok "SIG$sig at -p $p: exit $st"; cat "$TMP/err"
		fi
	done
done
finish
