#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Measure the gaps between completed checkpoints of a weir job.

    pause_gaps.py local   CKDIR -- WEIR run ... (the whole command)
    pause_gaps.py cluster CKDIR WEIR -- RUN ARGUMENTS (after `weir run`)

`local` runs the command; `cluster` starts a coordinator and one worker on
free loopback ports, submits `weir run --cluster ADDR RUN ARGUMENTS`, and
stops both by their own pids.  Either way the process that coordinates
checkpoints logs "checkpoint N complete" on stderr (the local run with
--log-level info, the coordinator always); this script reads that stderr
line by line as it arrives and stamps each line with time.monotonic(),
since the lines carry no time.  The final checkpoint is not scheduled (it
is taken at end of input, whatever the pause) and is left out: locally its
line says "(final)", on a cluster it is the last one.

Two measures of the gap between checkpoint n's completion and n+1's:
  log    the arrival times of the two lines (the reader's wake-ups add
         noise of either sign);
  mtime  the manifests' modification times: n's manifest is written
         before the coordinator records n's end, n+1's after it triggered
         n+1, so this gap is never below the minimum pause (to the file
         clock's granularity).  Needs --checkpoints-retained large enough
         to keep every manifest.
Prints both, one line each: "log: G1 G2 ..." and "mtime: G1 G2 ..." in ms,
and the coordinator's and the job's stderr to stderr.  Exit 0, or 2 when
the job failed or fewer than 3 periodic checkpoints completed.
"""
import os
import re
import socket
import subprocess
import sys
import threading
import time

DONE = re.compile(r"checkpoint (\d+) complete")


class Stamper:
    """Read a process's stderr as it arrives; stamp completion lines."""

    def __init__(self, proc, tag):
        self.done = []          # (id, monotonic seconds, final?)
        self.lines = []
        self.registered = threading.Event()
        self.tag = tag
        self.t = threading.Thread(target=self.run, args=(proc.stderr,), daemon=True)
        self.t.start()

    def run(self, f):
        for raw in iter(f.readline, b""):
            now = time.monotonic()
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            m = DONE.search(line)
            if m and "savepoint" not in line:
                self.done.append((int(m.group(1)), now, "(final)" in line))
            if "registered from" in line:
                self.registered.set()

    def dump(self):
        self.t.join(timeout=5)
        for line in self.lines:
            print(f"[{self.tag}] {line}", file=sys.stderr)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_local(cmd):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    st = Stamper(p, "weir")
    rc = p.wait(timeout=300)
    st.dump()
    return rc, [d for d in st.done if not d[2]]


def run_cluster(weir, args):
    port = free_port()
    addr = f"127.0.0.1:{port}"
    co = subprocess.Popen([weir, "coordinator", "--listen", addr],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cst = Stamper(co, "coordinator")
    wk = None
    rc = 1
    try:
        for _ in range(100):  # the coordinator is listening
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        wk = subprocess.Popen([weir, "worker", "--coordinator", addr, "--cores", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wst = Stamper(wk, "worker")
        if not cst.registered.wait(timeout=20):
            print("the worker did not register", file=sys.stderr)
        else:
            cl = subprocess.run([weir, "run", "--cluster", addr, "--no-progress"] + args,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                timeout=300)
            rc = cl.returncode
            for line in cl.stderr.decode(errors="replace").splitlines():
                print(f"[client] {line}", file=sys.stderr)
    finally:
        for p in (wk, co):  # by their own pids
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        cst.dump()
        if wk:
            wst.dump()
    return rc, cst.done[:-1]  # the last is the final checkpoint


def main():
    mode, ckdir = sys.argv[1], sys.argv[2]
    sep = sys.argv.index("--")
    if mode == "local":
        rc, done = run_local(sys.argv[sep + 1:])
    else:
        rc, done = run_cluster(sys.argv[3], sys.argv[sep + 1:])
    if rc != 0 or len(done) < 3:
        print(f"job exit {rc}, {len(done)} periodic checkpoint(s) completed", file=sys.stderr)
        return 2
    log = [(b[1] - a[1]) * 1000 for a, b in zip(done, done[1:])]
    mt = []
    for (a, _, _), (b, _, _) in zip(done, done[1:]):
        ta = os.stat(f"{ckdir}/chk-{a:010d}.manifest").st_mtime_ns
        tb = os.stat(f"{ckdir}/chk-{b:010d}.manifest").st_mtime_ns
        mt.append((tb - ta) / 1e6)
    print("log: " + " ".join(f"{g:.1f}" for g in log))
    print("mtime: " + " ".join(f"{g:.1f}" for g in mt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
