#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Reference model of window_agg.so: keyed event-time windows with a
bounded-out-of-orderness watermark, allowed lateness and late records,
record by record in arrival order.  Independent of Weir's code; used as the
truth for session windows (and to cross-check the SQL reference of
tumbling and sliding windows).

    window_ref.py WINDOW OOO LATENESS INPUT OUTPUT LATE

WINDOW is tumbling:SIZE, sliding:SIZE:SLIDE or session:GAP.  INPUT is CSV
key,ts,value.  Writes OUTPUT (key,start,end,count,sum,min,max per firing)
and LATE (late records, unchanged), both unsorted.

The model:
  - Before record i the watermark is wm = max(ts of records 0..i-1) - OOO - 1
    (-infinity before the first record); at the end of input it is +infinity.
  - When the watermark rises to wm, every live window with end - 1 <= wm that
    has not fired since it last changed fires (emits its aggregate), then
    every window with end - 1 + LATENESS <= wm is dropped.
  - Tumbling/sliding: record i is added to each window [s, e) containing ts
    with e - 1 + LATENESS > wm; if that is none, the record is late.  A window
    that accepts a record while e - 1 <= wm fires at once.
  - Session: the record's window [ts, ts + GAP) is merged with every live
    session of its key it strictly overlaps (a.start < b.end and
    b.start < a.end: a record exactly GAP after a session's last record
    starts a new one); if the merged session's end - 1 + LATENESS <= wm the
    record is late and nothing changes; otherwise the merged session replaces
    the ones it covers and fires at once if its end - 1 <= wm.
"""
import csv
import heapq
import itertools
import sys

NEG_INF = float("-inf")
POS_INF = float("inf")


class Win:
    __slots__ = ("key", "start", "end", "count", "sum", "min", "max", "fired", "alive")

    def __init__(self, key, start, end):
        self.key, self.start, self.end = key, start, end
        self.count, self.sum, self.min, self.max = 0, 0, None, None
        self.fired, self.alive = False, True

    def add(self, v):
        self.count += 1
        self.sum += v
        self.min = v if self.min is None else min(self.min, v)
        self.max = v if self.max is None else max(self.max, v)

    def absorb(self, o):
        self.start, self.end = min(self.start, o.start), max(self.end, o.end)
        self.count += o.count
        self.sum += o.sum
        self.min = o.min if self.min is None else min(self.min, o.min)
        self.max = o.max if self.max is None else max(self.max, o.max)


def main():
    spec, ooo, lateness, inp, outp, latep = sys.argv[1:7]
    ooo, lateness = int(ooo), int(lateness)
    parts = spec.split(":")
    kind = parts[0]
    if kind == "tumbling":
        size = slide = int(parts[1])
    elif kind == "sliding":
        size, slide = int(parts[1]), int(parts[2])
    elif kind == "session":
        gap = int(parts[1])
    else:
        sys.exit("unknown window " + spec)

    # key -> list of live sessions, or key -> {start: live window}
    live = {}
    # (time, seq, window, its end then): fire at end - 1, drop at end - 1 + L
    fire_at, drop_at = [], []
    seq = itertools.count()
    out_rows, late_rows = [], []

    def fire(w):
        out_rows.append([w.key, w.start, w.end, w.count, w.sum, w.min, w.max])
        w.fired = True

    def track(w, wm):
        """w was created or grew: fire it now if its end has passed, else
        when the watermark reaches end - 1; drop it at end - 1 + L."""
        if w.end - 1 <= wm:
            fire(w)
        else:
            w.fired = False
            heapq.heappush(fire_at, (w.end - 1, next(seq), w, w.end))
        heapq.heappush(drop_at, (w.end - 1 + lateness, next(seq), w, w.end))

    def advance(wm):
        while fire_at and fire_at[0][0] <= wm:
            _, _, w, end = heapq.heappop(fire_at)
            if w.alive and w.end == end and not w.fired:
                fire(w)
        while drop_at and drop_at[0][0] <= wm:
            _, _, w, end = heapq.heappop(drop_at)
            if w.alive and w.end == end:
                w.alive = False
                if kind == "session":
                    live[w.key].remove(w)
                else:
                    del live[w.key][w.start]

    maxts = None
    last_wm = NEG_INF
    with open(inp, newline="") as f:
        for key, ts, value in csv.reader(f):
            ts, value = int(ts), int(value)
            wm = NEG_INF if maxts is None else maxts - ooo - 1
            if wm > last_wm:
                advance(wm)
                last_wm = wm
            if kind == "session":
                sessions = live.setdefault(key, [])
                merged = Win(key, ts, ts + gap)
                merged.add(value)
                covered = [s for s in sessions if s.start < merged.end and merged.start < s.end]
                for s in covered:
                    merged.absorb(s)
                if merged.end - 1 + lateness <= wm:
                    late_rows.append([key, ts, value])
                else:
                    for s in covered:
                        s.alive = False
                        sessions.remove(s)
                    sessions.append(merged)
                    track(merged, wm)
            else:
                wins = live.setdefault(key, {})
                accepted = False
                s = ts - ts % slide
                while s + size > ts:
                    e = s + size
                    if e - 1 + lateness > wm:
                        accepted = True
                        w = wins.get(s)
                        if w is None:
                            w = wins[s] = Win(key, s, e)
                            w.add(value)
                            track(w, wm)
                        else:
                            w.add(value)
                            if e - 1 <= wm:
                                fire(w)
                    s -= slide
                if not accepted:
                    late_rows.append([key, ts, value])
            maxts = ts if maxts is None else max(maxts, ts)
    advance(POS_INF)

    with open(outp, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(out_rows)
    with open(latep, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(late_rows)


if __name__ == "__main__":
    main()
