#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""File loops: within each folder's objects (core, state, operators, net and
the weir command), which .c file refers to which (a function called or data
named, from nm's undefined and defined symbols), and any loop among them.
Prints one line per folder: "FOLDER ok N files", or "FOLDER loop a.c b.c ...".
Exit status 1 when a folder has a loop or no objects."""
import collections, glob, os, subprocess, sys

def folder_graph(objs):
    defined, wants = {}, collections.defaultdict(set)
    for o in objs:
        f = os.path.basename(o)[:-2]
        for line in subprocess.run(['nm', o], capture_output=True, text=True,
                                   check=True).stdout.splitlines():
            p = line.split()
            if len(p) == 3 and p[1] in 'TDBRGSV':
                defined[p[2]] = f
            elif len(p) == 2 and p[0] == 'U':
                wants[f].add(p[1])
    files = [os.path.basename(o)[:-2] for o in objs]
    return {f: {defined[s] for s in wants[f] if defined.get(s, f) != f} for f in files}

def loops(g):
    """Strongly connected components of more than one file (Tarjan, iterative)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], 0
    for root in g:
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = n; n += 1; stack.append(root); on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = n; n += 1; stack.append(w); on.add(w)
                    work.append((w, iter(sorted(g.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                scc = []
                while True:
                    w = stack.pop(); on.discard(w); scc.append(w)
                    if w == v:
                        break
                if len(scc) > 1:
                    out.append(sorted(scc))
    return out

build = sys.argv[1]
bad = False
for name, pattern in [('core', 'core/*.a.p'), ('state', 'state/*.a.p'),
                      ('operators', 'operators/*.a.p'), ('net', 'net/*.a.p'),
                      ('apps', 'apps/weir.p')]:
    objs = sorted(glob.glob(os.path.join(build, pattern, '*.o')))
    if not objs:
        print(f'{name} no objects under {build}/{pattern}')
        bad = True
        continue
    found = loops(folder_graph(objs))
    if found:
        bad = True
        print(f'{name} loop ' + '; '.join(' '.join(s) for s in found))
    else:
        print(f'{name} ok {len(objs)} files')
sys.exit(1 if bad else 0)
