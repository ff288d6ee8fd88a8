#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Deterministic out-of-order event generators for the window e2e tests.

    gen_events.py events    SEED COUNT  > events.csv     key,ts,value
    gen_events.py trades    SEED COUNT  > trades.csv     symbol,ts,price,qty
    gen_events.py telemetry SEED COUNT  > telemetry.csv  host,ts,latency_us

Event time advances by about 1 ms per record from 1,700,000,000,000 ms,
with now and then a quiet spell of 0.4-1.5 s (so sessions close for every
key).  Keys are drawn with Zipf-like weights, so some are hot and some
rare.  Most records are in order; about a quarter are delayed by up to
2.5 s and 3% by 3-12 s (very late).  Half of the timestamps are rounded
down to a multiple of 100 ms, so records fall exactly on window
boundaries and exactly one session gap apart.  Same seed, same bytes.
"""
import csv
import random
import sys

T0 = 1_700_000_000_000


def keys(n, rng):
    names = ["k%02d" % i for i in range(n - 2)] + ["x,y", 'q"t']
    rng.shuffle(names)
    weights = [1.0 / (i + 1) ** 1.1 for i in range(n)]
    return names, weights


def timeline(rng, count):
    """Yield (event time, rank) for count records, out of order."""
    base = float(T0)
    for _ in range(count):
        base += rng.expovariate(1.0)
        if rng.random() < 0.002:
            base += rng.uniform(400, 1500)
        ts = int(base)
        r = rng.random()
        if r < 0.03:
            ts -= rng.randint(3000, 12000)
        elif r < 0.28:
            ts -= rng.randint(0, 2500)
        if rng.random() < 0.5:
            ts -= ts % 100
        yield ts


def events(rng, count, out):
    names, weights = keys(50, rng)
    for ts in timeline(rng, count):
        key = rng.choices(names, weights)[0]
        r = rng.random()
        if r < 0.01:
            value = rng.choice([-1, 1]) * rng.randint(1 << 40, 1 << 42)
        else:
            value = rng.randint(-1000, 1000)
        out.writerow([key, ts, value])


def trades(rng, count, out):
    names, weights = keys(20, rng)
    price = {n: rng.uniform(5, 500) for n in names}
    for ts in timeline(rng, count):
        sym = rng.choices(names, weights)[0]
        price[sym] = max(0.01, price[sym] * (1 + rng.gauss(0, 0.002)))
        qty = rng.choice([1, 5, 10, 25, 100, 100, 200, 500, 1000, rng.randint(1, 5000)])
        out.writerow([sym, ts, "%.4f" % price[sym], qty])


def telemetry(rng, count, out):
    names, weights = keys(12, rng)
    slow = set(rng.sample(names, 3))
    for ts in timeline(rng, count):
        host = rng.choices(names, weights)[0]
        lat = int(rng.lognormvariate(7, 0.6))  # ~1.1 ms median
        if host in slow and rng.random() < 0.05:
            lat *= rng.randint(5, 40)          # tail latency spikes
        out.writerow([host, ts, lat])


def main():
    kind, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    out = csv.writer(sys.stdout, lineterminator="\n")
    {"events": events, "trades": trades, "telemetry": telemetry}[kind](rng, count, out)


if __name__ == "__main__":
    main()
