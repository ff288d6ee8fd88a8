#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The library boundary (weir/api.h): libweir.so -- build/libweir.so, beside
# build/apps/ -- exports exactly the functions include/weir/ declares with
# WEIR_API, all named weir_*; and the pieces built on it reach it only
# through those headers: the weir command includes no internal header and
# declares no prototype of its own, and no folder but core/ includes
# core/'s private reactor.h; and no folder's .c files refer to each other
# in a loop (file_loops.py, from the objects' symbols).
. "$(dirname "$0")/lib.sh"
require_tools nm
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
LIB="$(dirname "$WEIR")/../libweir.so"
[ -f "$LIB" ] || { not_ok "no library at $LIB"; finish; exit 1; }

nm -D --defined-only "$LIB" | awk '$2 ~ /^[TtWwDdBbRrVviu]$/ { print $3 }' |
	sed 's/@.*//' | LC_ALL=C sort -u > "$TMP/exported"
# Every WEIR_API declaration's name: the identifier before the first "(".
cat "$SRC"/include/weir/*.h | tr '\n' ' ' | sed 's/;/;\n/g' | grep 'WEIR_API' |
	sed -n 's/.*WEIR_API[^(]*[^a-zA-Z0-9_(]\([a-zA-Z0-9_]*\)(.*/\1/p' |
	LC_ALL=C sort -u > "$TMP/declared"

n=$(wc -l < "$TMP/exported")
other=$(grep -v '^weir_' "$TMP/exported" || true)
if [ -z "$other" ] && [ "$n" -gt 50 ]; then
	ok "libweir.so exports $n symbols, all weir_*"
else
	not_ok "libweir.so exports symbols outside weir_*: $(echo $other | head -c 400)"
fi
extra=$(LC_ALL=C comm -23 "$TMP/exported" "$TMP/declared")
[ -z "$extra" ] && ok "every exported symbol is declared WEIR_API in include/weir/" ||
	not_ok "exported but not declared in include/weir/: $extra"
missing=$(LC_ALL=C comm -13 "$TMP/exported" "$TMP/declared")
[ -z "$missing" ] && ok "every WEIR_API declaration is exported" ||
	not_ok "declared WEIR_API but not exported: $missing"

# The weir command: public headers and its own only.
bad=$(grep -n '#include "' "$SRC"/apps/*.c "$SRC"/apps/*.h | grep -v '"cli.h"' || true)
[ -z "$bad" ] && ok "apps/ includes no internal header of the library" ||
	not_ok "apps/ includes internal headers: $bad"
# A prototype written by hand: a non-static declaration ending in ");" at
# the top level of a .c file.
protos=$(grep -nE '^[a-z_][a-z0-9_ \*]*[ \*][a-z_][a-z0-9_]*\([^;{]*\);' \
	"$SRC"/apps/*.c "$SRC"/core/*.c "$SRC"/state/*.c "$SRC"/operators/*.c \
	"$SRC"/net/*.c | grep -v ':static ' | grep -v 'typedef' || true)
[ -z "$protos" ] && ok "no .c file declares a prototype of another file's function" ||
	not_ok "prototypes written by hand: $protos"
priv=$(grep -ln '#include "reactor.h"' "$SRC"/state/*.[ch] "$SRC"/operators/*.[ch] \
	"$SRC"/net/*.[ch] "$SRC"/apps/*.[ch] 2>/dev/null || true)
[ -z "$priv" ] && ok "only core/ includes core/reactor.h" ||
	not_ok "core/reactor.h included outside core/: $priv"
BUILD="$(dirname "$WEIR")/.."
# python3 is there wherever meson is.
if python3 "$SRC/tests/e2e/file_loops.py" "$BUILD" > "$TMP/loops"; then
	ok "no file loop in a folder: $(paste -sd, "$TMP/loops")"
else
	not_ok "file loops: $(grep -v ' ok ' "$TMP/loops")"
fi
finish
