#!/usr/bin/env python3
"""Generates a reproducible test tree: N small files of varied sizes in about N/30 folders.

usage: gen_tree.py ROOT N [DIRS] [--profile 10k|1k]

Profiles (seeded, so every run builds the same tree):
  10k (default): 80% 0-4 KiB, 19% 4-32 KiB, 1% 32 KiB-1 MiB, about 10 KiB on average.
  1k: 0-2 KiB, about 1 KiB on average (the 1 000 000-file trees: ~1 GiB of data, ~4 GiB on
      disk per copy instead of ~10 GiB).
Folders are nested up to three levels deep.
"""
import os
import random
import sys


def size_10k(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.80:
        return rng.randrange(0, 4096)
    if r < 0.99:
        return rng.randrange(4096, 32768)
    return rng.randrange(32768, 1 << 20)


def size_1k(rng: random.Random) -> int:
    return rng.randrange(0, 2048)


PROFILES = {"10k": size_10k, "1k": size_1k}


def main() -> None:
    args = sys.argv[1:]
    profile = "10k"
    if "--profile" in args:
        i = args.index("--profile")
        profile = args[i + 1]
        del args[i:i + 2]
    if profile not in PROFILES or len(args) < 2:
        sys.exit(__doc__)
    size_of = PROFILES[profile]
    root = args[0]
    n = int(args[1])
    dirs = int(args[2]) if len(args) > 2 else max(1, n // 30)
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
        size = size_of(rng)
        off = rng.randrange(0, (1 << 20) - size + 1)
        path = os.path.join(folders[i % dirs], f"file{i:06d}.dat")
        with open(path, "wb") as fh:
            fh.write(pool[off:off + size])
        total += size
    print(f"generated {n} files in {len(set(folders))} folders, {total / (1 << 20):.1f} MiB "
          f"(profile {profile}), under {root}")


if __name__ == "__main__":
    main()
