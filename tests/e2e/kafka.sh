#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Kafka end to end (issue 15), on librdkafka's mock cluster
# (build/tests/kafka_mock_broker, started here on loopback and stopped by its
# own pid) with kcat as the independent client that writes and reads topics:
#
#   - the broker program's first line is bootstrap=HOST:PORT (a contract);
#   - vwap.so reads kafka://.../trades?bounded=1 (3 partitions, keyed by
#     symbol, -p 2) and writes kafka://.../vwap: the rows equal an
#     independent Python answer (per-partition watermarks: no trade is late,
#     though the partitions are read interleaved);
#   - a value that does not decode is a dead letter naming its topic,
#     partition and offset, and the job goes on;
#   - clear errors: no broker at an address, a topic that does not exist,
#     an unknown URI parameter, a transaction timeout below the checkpoint
#     interval plus timeout;
#   - exactly-once: the same job with guarantee=exactly-once, SIGKILLed at
#     random moments 10 times and restarted from its checkpoints, then run to
#     the end.  The mock shows a read_committed reader the messages of
#     aborted transactions too, so the audit is ours: each message names its
#     subtask, checkpoint and attempt (process id) in headers; a transaction
#     (attempt A, checkpoint K) counts iff a checkpoint >= K completed in A
#     (A's log says so); the rows kept must be exactly the reference, each
#     once.
. "$(dirname "$0")/lib.sh"
require_tools python3 kcat
BROKER_BIN="$(dirname "$WEIR")/../tests/kafka_mock_broker"
[ -x "$BROKER_BIN" ] || { echo "skip: $BROKER_BIN not built"; exit 77; }

"$BROKER_BIN" --partitions 3 --topic trades --topic bad > "$TMP/broker.out" 2> "$TMP/broker.err" &
BROKER_PID=$!
trap 'kill "$BROKER_PID" 2> /dev/null; wait "$BROKER_PID" 2> /dev/null; rm -rf "$TMP"' EXIT
wait_until 20 grep -q . "$TMP/broker.out" || { echo "broker did not start"; cat "$TMP/broker.err"; exit 1; }
if head -n 1 "$TMP/broker.out" | grep -Eq '^bootstrap=127\.0\.0\.1:[0-9]+$'; then
	ok "kafka_mock_broker prints bootstrap=HOST:PORT first"
else
	not_ok "kafka_mock_broker's first line: $(head -n 1 "$TMP/broker.out")"
fi
B=$(sed -n '1s/^bootstrap=//p' "$TMP/broker.out")

# In-order trades (ts grows), 8 symbols; message key = symbol.
python3 - > "$TMP/trades.kv" <<'PY'
import random
random.seed(15)
syms = ["S%d" % i for i in range(8)]
for i in range(20000):
    s = random.choice(syms)
    print("%s:%s,%d,%.2f,%d" % (s, s, 1000 + i * 5, 50 + random.random() * 10, random.randint(1, 20)))
PY
cut -d: -f2- "$TMP/trades.kv" > "$TMP/trades.csv"
kcat -P -b "$B" -t trades -K: -l "$TMP/trades.kv"

# Reference: per symbol and 1 s window, trades, volume and VWAP.
python3 - "$TMP/trades.csv" > "$TMP/ref" <<'PY'
import sys, collections
acc = collections.defaultdict(lambda: [0, 0, 0.0])
for line in open(sys.argv[1]):
    s, ts, p, q = line.strip().split(",")
    ts, p, q = int(ts), float(p), int(q)
    w = ts - ts % 1000
    a = acc[(s, w)]
    a[0] += 1; a[1] += q; a[2] += p * q
for (s, w), (n, v, pq) in sorted(acc.items()):
    print("%s,%d,%d,%d,%d,%.17g" % (s, w, w + 1000, n, v, pq / v))
PY

# same_rows OUT REF: the same rows (as a multiset), VWAP to 1e-9 relative.
same_rows() {
	python3 - "$1" "$2" <<'PY'
import sys, collections
def rows(path):
    c = collections.Counter()
    for line in open(path):
        f = line.strip().split(",")
        if len(f) != 6:
            sys.exit("malformed row: " + line)
        c[(tuple(f[:5]), round(float(f[5]), 8))] += 1
    return c
out, ref = rows(sys.argv[1]), rows(sys.argv[2])
if out != ref:
    extra, missing = out - ref, ref - out
    print("extra %d rows, e.g. %s; missing %d rows, e.g. %s" % (
        sum(extra.values()), list(extra)[:2], sum(missing.values()), list(missing)[:2]))
    sys.exit(1)
PY
}

# ---- bounded, at-least-once -------------------------------------------------------
if "$WEIR" run -p 2 "$EXAMPLES/vwap.so" --input "kafka://$B/trades?bounded=1" \
	--output "kafka://$B/vwap" --window-ms 1000 > "$TMP/run1.out" 2>&1; then
	kcat -C -b "$B" -t vwap -e -o beginning -q > "$TMP/vwap.out"
	if same_rows "$TMP/vwap.out" "$TMP/ref"; then
		ok "vwap Kafka -> Kafka (bounded, -p 2, 3 partitions) equals the reference"
	else
		not_ok "vwap Kafka -> Kafka rows differ from the reference"
	fi
else
	not_ok "vwap Kafka -> Kafka failed: $(tail -n 3 "$TMP/run1.out")"
fi

# ---- bad input and errors --------------------------------------------------------------
printf 'S1,1000,10.0,5\nS1,1500,oops,5\nS2,2500,11.0,7\n' | kcat -P -b "$B" -t bad -p 1
if "$WEIR" run "$EXAMPLES/csv_sum.so" --input "kafka://$B/bad?bounded=1" \
	--schema 'symbol:str,ts:i64,price:f64,qty:i64' --key symbol --sum qty \
	--output "$TMP/sums.csv" --dead-letters "$TMP/dead.csv" > "$TMP/bad.out" 2>&1 &&
	grep -q '^S1,5$' "$TMP/sums.csv" && grep -q '^S2,7$' "$TMP/sums.csv" &&
	grep -q "^1,.*oops.*,bad,1$" "$TMP/dead.csv"; then
	ok "a value that does not decode is a dead letter with its topic, partition and offset"
else
	not_ok "dead letters: $(cat "$TMP/dead.csv" "$TMP/bad.out" 2> /dev/null | tail -n 4)"
fi

# A port nobody listens on (a socket bound, never listening, holds it).
DEAD_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start=$(date +%s)
if "$WEIR" run "$EXAMPLES/vwap.so" --input "kafka://127.0.0.1:$DEAD_PORT/trades" \
	--output "$TMP/o1" --window-ms 1000 > "$TMP/e1.out" 2>&1; then
	not_ok "an unreachable broker did not fail the job"
elif grep -q "weir: error: .*brokers 127.0.0.1:$DEAD_PORT: no Kafka broker answered" "$TMP/e1.out" &&
	[ $(($(date +%s) - start)) -lt 60 ]; then
	ok "an unreachable broker fails the job naming its address: $(grep -m1 'weir: error' "$TMP/e1.out")"
else
	not_ok "unreachable broker: $(tail -n 2 "$TMP/e1.out")"
fi
# refused NAME PATTERN COMMAND...: COMMAND fails and its output matches PATTERN.
refused() {
	_name=$1 _pat=$2
	shift 2
	if "$@" > "$TMP/refused.out" 2>&1; then
		not_ok "$_name: accepted"
	elif grep -q "$_pat" "$TMP/refused.out"; then
		ok "$_name"
	else
		not_ok "$_name: $(tail -n 2 "$TMP/refused.out")"
	fi
}
refused "a missing topic fails the job naming it" "topic 'no-such-topic' does not exist" \
	"$WEIR" run "$EXAMPLES/vwap.so" --input "kafka://$B/no-such-topic" --output "$TMP/o2" \
	--window-ms 1000
refused "an unknown URI parameter is refused by name" "unknown parameter 'colour'" \
	"$WEIR" run "$EXAMPLES/vwap.so" --input "kafka://$B/trades?colour=red" --output "$TMP/o3" \
	--window-ms 1000

# ---- exactly-once, killed 10 times -------------------------------------------------------
CK="$TMP/ck"
run_eo() { # run_eo LOG [background]: one attempt; its pid in $EO_PID
	"$WEIR" run -p 2 --log-level info --checkpoint-dir "$CK" --checkpoint-interval 300 \
		--checkpoints-retained 1000 "$EXAMPLES/vwap.so" \
		--input "kafka://$B/trades?bounded=1" \
		--output "kafka://$B/vwap-eo?guarantee=exactly-once" --window-ms 1000 \
		--rate 2500 > "$1" 2>&1 &
	EO_PID=$!
}
kills=0
tries=0
while [ "$kills" -lt 10 ] && [ "$tries" -lt 20 ]; do
	tries=$((tries + 1))
	run_eo "$TMP/eo.log.tmp"
	pid=$EO_PID
	sleep "$(python3 -c 'import random; print(round(random.uniform(0.3, 1.0), 2))')"
	if kill -9 "$pid" 2> /dev/null; then
		kills=$((kills + 1))
	fi
	wait "$pid" 2> /dev/null || true
	mv "$TMP/eo.log.tmp" "$TMP/eo.$pid.log"
done
run_eo "$TMP/eo.log.tmp"
pid=$EO_PID
if wait "$pid"; then
	mv "$TMP/eo.log.tmp" "$TMP/eo.$pid.log"
	kcat -C -b "$B" -t vwap-eo -e -o beginning -q -f '%h\t%s\n' > "$TMP/eo.raw"
	python3 - "$TMP" "$TMP/eo.raw" > "$TMP/eo.kept" <<'PY'
import glob, re, sys, os
done = {}
for log in glob.glob(os.path.join(sys.argv[1], "eo.*.log")):
    a = re.search(r"eo\.(\d+)\.log$", log).group(1)
    ids = [int(m) for m in re.findall(r"checkpoint (\d+) complete", open(log).read())]
    done[a] = max(ids) if ids else 0
for line in open(sys.argv[2]):
    h, _, row = line.rstrip("\n").partition("\t")
    hd = dict(kv.split("=", 1) for kv in h.split(","))
    if done.get(hd["weir-attempt"], 0) >= int(hd["weir-checkpoint"]):
        print(row)
PY
	if [ "$kills" -ge 10 ] && same_rows "$TMP/eo.kept" "$TMP/ref"; then
		ok "exactly-once Kafka -> Kafka, killed $kills times: the committed transactions hold the reference rows exactly once ($(wc -l < "$TMP/eo.raw") messages written, $(wc -l < "$TMP/eo.kept") committed)"
	else
		not_ok "exactly-once Kafka -> Kafka after $kills kills: audited output differs"
	fi
else
	not_ok "the last exactly-once attempt failed: $(tail -n 3 "$TMP/eo.log.tmp")"
fi

# The transaction timeout must exceed the checkpoint interval plus timeout.
refused "a transaction timeout below the checkpoint interval plus timeout is refused" \
	"transaction.timeout.ms" \
	"$WEIR" run --checkpoint-dir "$TMP/ck-to" --checkpoint-interval 1000000 "$EXAMPLES/vwap.so" \
	--input "kafka://$B/trades?bounded=1" --output "kafka://$B/x?guarantee=exactly-once" \
	--window-ms 1000
finish
