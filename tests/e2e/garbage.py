#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Send malformed messages to a live Weir endpoint, one connection each,
and report whether the endpoint closed that connection.

  garbage.py control HOST PORT   the coordinator: control messages
  garbage.py data HOST PORT      a worker's data plane: frames (a worker
                                 whose mesh is complete no longer listens:
                                 refused at connect)
  garbage.py fake-coordinator PORT WEIR
                                 a coordinator that lets a worker register,
                                 then sends it malformed messages: the
                                 worker must log, close and exit 1 (no
                                 crash); one worker process per case

Prints "<case> closed" / "<case> refused" / "<case> worker exited 1" per
case, or "... NOT CLOSED" when the connection stayed open 30 s (a
truncated message is closed by the coordinator's 5 s authentication
deadline; the rest at once).  Waits are deadlines for what must happen,
generous so that a loaded machine does not turn a late close into a
failure (the wait was 7 s: 2 s over that deadline).
"""
import os
import socket
import struct
import sys


def hdr(kind, edge, length, crc=0, value=0, magic=b"WF", version=1):
    return magic + bytes([version, kind]) + struct.pack("<IIIQ", edge, length, crc, value)


def probe(host, port, data, challenge):
    try:
        s = socket.create_connection((host, port), timeout=30)
    except ConnectionRefusedError:
        return True
    if challenge:
        s.recv(8 + 32)
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        s.close()
        return True
    s.settimeout(30)
    try:
        while True:
            b = s.recv(65536)
            if b == b"":
                closed = True
                break
    except (ConnectionResetError, BrokenPipeError):
        closed = True
    except socket.timeout:
        closed = False
    s.close()
    return closed


# The control protocol's version (CTL_VERSION in net/control.h): the
# messages below are well-formed but for what each case breaks.
V = b"\x02"


def msg(t, payload):
    return b"WC" + V + bytes([t]) + struct.pack("<I", len(payload)) + payload


def fake_coordinator(port, weir):
    import subprocess
    cases = {
        "random bytes": os.urandom(4096),
        "truncated then closed": b"WC" + V + b"\x0a\x10",
        "oversized": b"WC" + V + b"\x07" + struct.pack("<I", 0xFFFFFFF0),
        "bad magic": b"QQ\x01\x07" + struct.pack("<I", 0),
        "malformed deploy": msg(7, b"\x01\x02\x03"),
        "unknown type": msg(99, b""),
    }
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(4)
    for name, data in cases.items():
        w = subprocess.Popen([weir, "worker", "--coordinator", f"127.0.0.1:{port}",
                              "--cores", "1"], stderr=subprocess.PIPE)
        c, _ = ls.accept()
        c.settimeout(30)
        c.sendall(msg(1, os.urandom(32)))          # CHALLENGE
        c.recv(8 + 33)                             # AUTH
        c.sendall(msg(3, struct.pack("<I", 0)))    # AUTH_OK
        c.recv(4096)                               # REGISTER (and a heartbeat)
        c.sendall(data)
        if name == "truncated then closed":
            c.close()
        try:
            rc = w.wait(timeout=30)
        except subprocess.TimeoutExpired:
            w.kill()
            rc = None
        err = w.stderr.read().decode(errors="replace").strip().splitlines()
        c.close()
        why = err[-1] if err else ""
        print(f"{name} {'worker exited 1' if rc == 1 else f'WORKER STATUS {rc}'}: {why}")


def main():
    if sys.argv[1] == "fake-coordinator":
        fake_coordinator(int(sys.argv[2]), sys.argv[3])
        return
    what, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if what == "control":
        cases = {
            "random bytes": os.urandom(4096),
            "truncated header": b"WC" + V,
            "bad magic": b"XX" + V + b"\x02" + struct.pack("<I", 33) + os.urandom(33),
            "oversized": b"WC" + V + b"\x02" + struct.pack("<I", 0xFFFFFFF0),
            "unknown type": b"WC" + V + b"\x63" + struct.pack("<I", 0),
            "wrong mac": b"WC" + V + b"\x02" + struct.pack("<I", 33) + b"\x01" + os.urandom(32),
            "short auth": b"WC" + V + b"\x02" + struct.pack("<I", 5) + b"\x01abcd",
        }
        word = "closed"
    else:
        cases = {
            "random bytes": os.urandom(4096),
            "truncated header": b"WF\x01",
            "oversized": hdr(1, 0, 0xFFFFFFF0),
            "bad magic hello": hdr(7, 1, 0, magic=b"ZZ"),
            "hello of a wrong attempt": hdr(7, 999999, 0, value=0),
        }
        word = "refused"
    for name, data in cases.items():
        closed = probe(host, port, data, what == "control")
        print(f"{name} {word if closed else 'NOT CLOSED'}")


if __name__ == "__main__":
    main()
