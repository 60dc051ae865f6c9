#!/usr/bin/env python3
"""Tree edits and checks for bench/run.sh (never follows symlinks, skips .syncengine/).

usage:
  tree_ops.py count ROOT                 print the number of files under ROOT
  tree_ops.py change ROOT PERMILLE LIST  rewrite every 1000/PERMILLE-th file (new content, 17
                                         bytes longer), each through a new file renamed over the
                                         old one (never written in place: the tree may be a
                                         hard-link copy of another); write their paths to LIST
  tree_ops.py delete ROOT PERMILLE LIST  delete every 1000/PERMILLE-th file; paths to LIST
  tree_ops.py same A B LIST              every path in LIST has the same bytes under A and B
  tree_ops.py gone B LIST                no path in LIST exists under B
Exit status 1 (with the first offending path) when a check fails.
"""
import os
import sys

SKIP = ".syncengine"


def files(root: str):
    """Relative paths of the regular files under root, sorted (deterministic picks)."""
    out = []
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel)) as it:
            for e in it:
                p = os.path.join(rel, e.name) if rel else e.name
                if e.is_dir(follow_symlinks=False):
                    if not (rel == "" and e.name == SKIP):
                        stack.append(p)
                elif e.is_file(follow_symlinks=False):
                    out.append(p)
    out.sort()
    return out


def count(root: str) -> int:
    n = 0
    stack = [root]
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    if not (d == root and e.name == SKIP):
                        stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    n += 1
    return n


def pick(root: str, permille: int, offset: int):
    step = max(1, 1000 // permille)
    return files(root)[offset::step]


def main() -> None:
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    cmd = a[0]
    if cmd == "count":
        print(count(a[1]))
    elif cmd == "change":
        root, permille, listing = a[1], int(a[2]), a[3]
        chosen = pick(root, permille, 0)
        extra = os.urandom(17)
        for rel in chosen:
            p = os.path.join(root, rel)
            with open(p, "rb") as fh:
                data = fh.read()
            tmp = p + ".bench-tmp"
            with open(tmp, "wb") as fh:
                fh.write(extra + data[::-1])
            os.replace(tmp, p)
        with open(listing, "w") as fh:
            fh.write("\n".join(chosen) + ("\n" if chosen else ""))
        print(len(chosen))
    elif cmd == "delete":
        root, permille, listing = a[1], int(a[2]), a[3]
        chosen = pick(root, permille, 5)
        for rel in chosen:
            os.unlink(os.path.join(root, rel))
        with open(listing, "w") as fh:
            fh.write("\n".join(chosen) + ("\n" if chosen else ""))
        print(len(chosen))
    elif cmd == "same":
        ra, rb, listing = a[1], a[2], a[3]
        with open(listing) as fh:
            for rel in filter(None, fh.read().split("\n")):
                with open(os.path.join(ra, rel), "rb") as f1, open(os.path.join(rb, rel), "rb") as f2:
                    if f1.read() != f2.read():
                        sys.exit(f"differs: {rel}")
    elif cmd == "gone":
        rb, listing = a[1], a[2]
        with open(listing) as fh:
            for rel in filter(None, fh.read().split("\n")):
                if os.path.lexists(os.path.join(rb, rel)):
                    sys.exit(f"still present: {rel}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
