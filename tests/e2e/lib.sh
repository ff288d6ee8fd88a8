# SPDX-License-Identifier: Apache-2.0
# Helpers for end-to-end tests.  Each test gets WEIR (the weir command) and
# EXAMPLES (the example jobs' folder) from meson, and a private TMP folder.
set -eu
WEIR="${WEIR:?WEIR not set}"
EXAMPLES="${EXAMPLES:?EXAMPLES not set}"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/weir-e2e.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
fails=0
passes=0

# Exit 77 (skip) with a reason unless every named command exists.
require_tools() {
	for tool in "$@"; do
		if ! command -v "$tool" > /dev/null 2>&1; then
			echo "skip: $tool not found (scripts/setup installs it)"
			exit 77
		fi
	done
}

# wait_until SECONDS COMMAND...: run COMMAND every 50 ms until it succeeds
# (0) or SECONDS passed (1).  Tests wait for an event this way instead of
# sleeping a fixed time: a loaded machine or a sanitizer build (~3x
# slower) takes longer, never shorter.  Deadlines are generous: reaching
# one means a bug, not a slow machine.
wait_until() {
	_wu_end=$(($(date +%s) + $1))
	shift
	until "$@"; do
		[ "$(date +%s)" -lt "$_wu_end" ] || return 1
		sleep 0.05
	done
}

# has_checkpoints DIR N: DIR holds at least N complete checkpoints.
has_checkpoints() {
	[ "$(find "$1" -maxdepth 1 -name 'chk-*.manifest' 2> /dev/null | wc -l)" -ge "$2" ]
}

ok() { passes=$((passes + 1)); echo "ok - $*"; }
not_ok() { fails=$((fails + 1)); echo "not ok - $*"; }
finish() {
	echo "$passes passed, $fails failed"
	[ "$fails" -eq 0 ]
}

# Reference word count: maximal runs of ASCII letters, lower-cased.
ref_wordcount() {
	LC_ALL=C tr -cs 'A-Za-z' '\n' < "$1" | LC_ALL=C tr 'A-Z' 'a-z' |
		grep -v '^$' | LC_ALL=C sort | uniq -c | awk '{print $2 "," $1}' |
		LC_ALL=C sort
}
