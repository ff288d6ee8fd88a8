#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Check a Nexmark query's output against an independent computation.

    nexmark_check.py QUERY DUMP_DIR OUTPUT_DIR

DUMP_DIR holds `weir nexmark gen`'s person.csv, auction.csv and bid.csv for
the same options; OUTPUT_DIR holds the query's CSV part files (no header).
The expected answer is computed here from the dump alone: with SQL in
sqlite3 where the query is relational, in plain Python where SQL is awkward
(sessions, top-N with its tie rule), following the meaning in NEXMARK.md
and the column order in apps/examples/nexmark_queries.c.  Queries that emit
updates (q4, q18, q19) are compared on the last row per key, reading each
subtask's part files in order.  Rows are compared as multisets; f64 columns
to 10 significant digits.  Exit 0 when equal, else 1 with the differences.
"""
import csv
import os
import re
import sqlite3
import sys
from collections import Counter, defaultdict

PERSON = ["id", "name", "email_address", "credit_card", "city", "state",
          "date_time", "extra"]
AUCTION = ["id", "item_name", "description", "initial_bid", "reserve",
           "date_time", "expires", "seller", "category", "extra"]
BID = ["auction", "bidder", "price", "channel", "url", "date_time", "extra"]
INTS = {"id", "initial_bid", "reserve", "date_time", "expires", "seller",
        "category", "auction", "bidder", "price"}


def load(dump, name, cols):
    with open(os.path.join(dump, name + ".csv"), newline="") as f:
        r = csv.reader(f)
        head = next(r)
        if head != cols:
            sys.exit(f"{name}.csv: header {head}, want {cols}")
        return [tuple(int(v) if c in INTS else v for c, v in zip(cols, row))
                for row in r]


def parts(out):
    """The output rows in emission order per subtask (part-S-N by S, N)."""
    names = []
    for n in os.listdir(out):
        m = re.fullmatch(r"part-(\d+)-(\d+)", n)
        if m:
            names.append((int(m.group(1)), int(m.group(2)), n))
    rows = []
    for _, _, n in sorted(names):
        with open(os.path.join(out, n), newline="") as f:
            rows.extend(tuple(r) for r in csv.reader(f))
    return rows


def db(dump):
    c = sqlite3.connect(":memory:")
    for name, cols in (("person", PERSON), ("auction", AUCTION), ("bid", BID)):
        c.execute(f"CREATE TABLE {name} ({', '.join(cols)})")
        c.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(cols))})",
                      load(dump, name, cols))
    return c


def norm(v):
    """A cell as compared: numbers by value (a whole f64 prints without a
    fraction), fractions to 10 significant digits, strings as they are."""
    if isinstance(v, str):
        if re.fullmatch(r"-?\d+", v):
            return ("n", int(v))
        try:
            v = float(v)
        except ValueError:
            return ("s", v)
    if isinstance(v, float):
        if v.is_integer():
            return ("n", int(v))
        return ("f", float(f"{v:.10g}"))
    return ("n", v)


def compare(q, got, want):
    g = Counter(tuple(norm(v) for v in r) for r in got)
    w = Counter(tuple(norm(v) for v in r) for r in want)
    if g == w:
        print(f"{q}: {sum(w.values())} rows as expected")
        return 0
    missing, extra = w - g, g - w
    print(f"{q}: {sum(g.values())} rows, want {sum(w.values())}; "
          f"{sum(missing.values())} missing, {sum(extra.values())} unexpected")
    for r in list(missing)[:5]:
        print("  missing:   ", [v for _, v in r])
    for r in list(extra)[:5]:
        print("  unexpected:", [v for _, v in r])
    return 1


def last_per_key(rows, key):
    last = {}
    for r in rows:
        last[key(r)] = r
    return list(last.values())


def sessions(bids, gap=10000):
    by = defaultdict(list)
    for b in bids:
        by[b[1]].append(b[5])
    out = []
    for bidder, ts in by.items():
        ts.sort()
        start = last = ts[0]
        n = 1
        for t in ts[1:]:
            if t - last >= gap:
                out.append((bidder, n, start, last + gap))
                start, n = t, 0
            last = t
            n += 1
        out.append((bidder, n, start, last + gap))
    return out


def topn(rows, key, n, order, desc):
    """weir_topn's rule: by `order`, ties by the other columns ascending."""
    def sort_key(r):
        o = r[order]
        rest = tuple(v.encode() if isinstance(v, str) else v
                     for i, v in enumerate(r) if i != order)
        return ((-o if desc else o),) + rest
    by = defaultdict(list)
    for r in rows:
        by[key(r)].append(r)
    out = []
    for rs in by.values():
        rs.sort(key=sort_key)
        out.extend(r + (rank,) for rank, r in enumerate(rs[:n], 1))
    return out


def time_class(dt):
    hour = (dt // 1000) % 86400 // 3600
    if 8 <= hour <= 18:
        return "dayTime"
    if hour <= 6 or hour >= 20:
        return "nightTime"
    return "otherTime"


def expected(q, dump):
    if q in ("q0", "q1", "q14", "q11", "q18", "q19"):
        bids = load(dump, "bid", BID)
    if q == "q0":
        return bids
    if q == "q1":
        return [(a, b, 0.908 * p, dt, x) for a, b, p, _, _, dt, x in bids]
    if q == "q14":
        return [(a, b, 0.908 * p, time_class(dt), dt, x, x.count("c"))
                for a, b, p, _, _, dt, x in bids
                if 1000000 < 0.908 * p < 50000000]
    if q == "q11":
        return sessions(bids)
    if q == "q18":
        pairs = [b + ((b[1] << 32) ^ (b[0] & 0xffffffff),) for b in bids]
        return topn(pairs, lambda r: (r[1], r[0]), 1, 5, True)
    if q == "q19":
        return topn(bids, lambda r: r[0], 10, 2, True)
    c = db(dump)
    sql = {
        "q2": "SELECT auction, price FROM bid WHERE auction % 123 = 0",
        "q3": """SELECT p.name, p.city, p.state, a.id
                 FROM auction a JOIN person p ON a.seller = p.id
                 WHERE a.category = 10 AND p.state IN ('OR', 'ID', 'CA')""",
        "q4": """SELECT category, AVG(winning) FROM (
                   SELECT a.id, a.category, MAX(b.price) AS winning
                   FROM auction a JOIN bid b ON b.auction = a.id
                    AND b.date_time BETWEEN a.date_time AND a.expires
                   GROUP BY a.id, a.category)
                 GROUP BY category""",
        "q5": """WITH k(k) AS (VALUES (0), (1), (2), (3), (4)),
                 c AS (SELECT auction, (date_time / 2000 - k) * 2000 AS ws,
                              COUNT(*) AS n
                       FROM bid, k GROUP BY auction, ws)
                 SELECT c.auction, c.n, c.ws, c.ws + 10000 FROM c
                 JOIN (SELECT ws, MAX(n) AS m FROM c GROUP BY ws) x
                   ON c.ws = x.ws AND c.n = x.m""",
        "q7": """WITH w AS (SELECT *, date_time / 10000 * 10000 AS ws FROM bid)
                 SELECT w.auction, w.price, w.bidder, w.date_time, w.extra, w.ws
                 FROM w JOIN (SELECT ws, MAX(price) AS m FROM w GROUP BY ws) x
                   ON w.ws = x.ws AND w.price = x.m""",
        "q8": """SELECT DISTINCT p.id, p.name, p.date_time / 10000 * 10000
                 FROM person p JOIN auction a ON a.seller = p.id
                  AND a.date_time / 10000 = p.date_time / 10000""",
    }[q]
    return c.execute(sql).fetchall()


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: nexmark_check.py QUERY DUMP_DIR OUTPUT_DIR")
    q, dump, out = sys.argv[1:]
    got = parts(out)
    if q == "q4":
        got = last_per_key(got, lambda r: r[0])
    elif q == "q18":
        got = last_per_key(got, lambda r: r[7])
    elif q == "q19":
        got = last_per_key(got, lambda r: (r[0], r[7]))
    return compare(q, got, expected(q, dump))


if __name__ == "__main__":
    sys.exit(main())
