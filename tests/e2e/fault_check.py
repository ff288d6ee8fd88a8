#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Read the committed output of a transactional file sink directory.

  fault_check.py rows DIR          print every committed row, sorted
  fault_check.py sequence DIR      per-key sequence check for a running count:
                                   in each subtask's files (in commit order) a
                                   key's counts must be exactly 1, 2, 3, ...;
                                   prints "key,final" lines sorted
Hidden in-progress files (".part-*") are not output and are ignored.
"""
import os
import re
import sys

PART = re.compile(r"^part-(\d+)-(\d+)$")


def committed(d):
    files = []
    for name in os.listdir(d):
        m = PART.match(name)
        if m:
            files.append((int(m.group(1)), int(m.group(2)), name))
    files.sort()
    return files


def rows(d):
    out = []
    for _, _, name in committed(d):
        with open(os.path.join(d, name), encoding="utf-8", newline="") as f:
            out.extend(line.rstrip("\n") for line in f)
    return out


def main():
    mode, d = sys.argv[1], sys.argv[2]
    if mode == "rows":
        for r in sorted(rows(d)):
            print(r)
        return 0
    last = {}
    bad = 0
    for _, _, name in committed(d):
        with open(os.path.join(d, name), encoding="utf-8", newline="") as f:
            for line in f:
                key, _, n = line.rstrip("\n").rpartition(",")
                n = int(n)
                want = last.get(key, 0) + 1
                if n != want:
                    if bad < 10:
                        print(f"{name}: key {key!r}: count {n} after {want - 1} "
                              f"({'duplicate' if n < want else 'lost'} update)",
                              file=sys.stderr)
                    bad += 1
                last[key] = max(n, last.get(key, 0))
    for k in sorted(last):
        print(f"{k},{last[k]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
