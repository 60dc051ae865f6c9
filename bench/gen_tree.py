#!/usr/bin/env python3
"""Generates a reproducible test tree: N small files of varied sizes in about N/30 folders.

usage: gen_tree.py ROOT N [DIRS]

Sizes: 80% 0-4 KiB, 19% 4-32 KiB, 1% 32 KiB-1 MiB (about 10 KiB on average), seeded so every
run builds the same tree. Folders are nested up to three levels deep.
"""
import os
import random
import sys


def main() -> None:
    root = sys.argv[1]
    n = int(sys.argv[2])
    dirs = int(sys.argv[3]) if len(sys.argv) > 3 else max(1, n // 30)
    rng = random.Random(42)
    folders = []
    for d in range(dirs):
        depth = 1 + d % 3
        parts = [f"d{d % 17:02d}"] + [f"s{(d // 17) % 50:02d}"] * (depth > 1) + [f"t{d:05d}"] * (depth > 2)
        folders.append(os.path.join(root, *parts))
    for f in folders:
        os.makedirs(f, exist_ok=True)
    pool = os.urandom(1 << 20)
    total = 0
    for i in range(n):
        r = rng.random()
        if r < 0.80:
            size = rng.randrange(0, 4096)
        elif r < 0.99:
            size = rng.randrange(4096, 32768)
        else:
            size = rng.randrange(32768, 1 << 20)
        off = rng.randrange(0, (1 << 20) - size + 1)
        path = os.path.join(folders[i % dirs], f"file{i:06d}.dat")
        with open(path, "wb") as fh:
            fh.write(pool[off:off + size])
        total += size
    print(f"generated {n} files in {len(set(folders))} folders, {total / (1 << 20):.1f} MiB, under {root}")


if __name__ == "__main__":
    main()
