#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Turn perf/run's JSON lines into a Markdown report.

  perf/report.py REPORT.jsonl > REPORT.md

First the machine and its limits measured in the same run (memory copy,
raw ck_ring hand-off, loopback TCP, the disk's io_uring write and read),
then a table of every other figure: what was measured, its parameters, the
target where the benchmark names one, and its ratios (to a limit, or to
the target's reference).
"""
import json
import sys

LIMITS = ("limit_memcpy", "ring_raw_ck_ring", "limit_tcp_loopback",
          "limit_disk_write", "limit_disk_read", "limit_hiccups")
# Figures (the rest of a line's numbers are parameters).
FIGURES = ("records_per_s", "records_per_s_per_core", "events_per_s",
           "events_per_s_per_core", "bytes_per_s", "mb_per_s", "entries_per_s",
           "batches_per_s", "seconds", "restore_ms", "first_output_ms",
           "records_per_s_no_checkpoints", "records_per_s_checkpoints_1s",
           "rtt_p50_us", "rtt_p99_us", "p50_us", "p99_us", "p999_us", "p9999_us",
           "max_us", "bytes_per_key", "bytes_per_key_beyond_key", "ns_per_entry",
           "log_bytes_per_checkpoint", "speedup_vs_p1",
           "events_per_s_checkpointed", "checkpoint_cost", "rows_per_s",
           "failover_ms", "detect_redeploy_ms", "plain_tcp_p50_us", "plain_tcp_p99_us",
           "plain_tcp_p999_us", "iperf3_mb_per_s", "plain_p50_us", "plain_p99_us",
           "plain_p999_us", "max_pause_ms", "p999_us_no_checkpoints",
           "p999_us_checkpoints_1s")


def human(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    a = abs(v)
    if a >= 1e9:
        return "%.2f G" % (v / 1e9)
    if a >= 1e6:
        return "%.2f M" % (v / 1e6)
    if a >= 1e4:
        return "%.1f k" % (v / 1e3)
    if isinstance(v, float):
        return "%.3g" % v
    return str(v)


def cells(d):
    params, figs, targets, ratios = [], [], [], []
    for k, v in d.items():
        if k in ("bench", "machine"):
            continue
        if k.startswith("target"):
            targets.append("%s %s" % (k[len("target_"):] or "target", human(v)))
        elif k.startswith("ratio"):
            ratios.append("%s %s" % (k, human(v)))
        elif k in FIGURES:
            figs.append("%s %s" % (k, human(v)))
        elif not isinstance(v, (dict, list)):
            params.append("%s=%s" % (k, human(v) if isinstance(v, (int, float)) else v))
    return ", ".join(params), ", ".join(figs), ", ".join(targets), ", ".join(ratios)


def main():
    rows = []
    with open(sys.argv[1]) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    machine = next((r["machine"] for r in rows if "machine" in r), {})
    print("# Weir benchmark report\n")
    if machine:
        print("Machine: %s, %s cores, %s GiB.\n" % (machine.get("cpu", "?"),
                                                   machine.get("cores", "?"),
                                                   machine.get("mem_gib", "?")))
    print("## This machine's limits (same run)\n")
    print("| limit | parameters | figures |")
    print("|---|---|---|")
    for r in rows:
        if r.get("bench") in LIMITS:
            p, fg, _, _ = cells(r)
            print("| %s | %s | %s |" % (r["bench"], p, fg))
    print("\n## Benchmarks\n")
    print("| benchmark | parameters | figures | target | ratios |")
    print("|---|---|---|---|---|")
    for r in rows:
        if r.get("bench") in LIMITS:
            continue
        p, fg, t, ra = cells(r)
        print("| %s | %s | %s | %s | %s |" % (r.get("bench", "?"), p, fg, t, ra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
