#!/bin/bash
# A real writeback error, for the binaries given: syncs 60 MiB into ext4 (no journal) on a
# loop file in a 40 MiB tmpfs, so the disk's writeback fails once the tmpfs is full while
# the page cache still holds every file. Then the tmpfs grows, a second run goes, and the
# page cache is dropped to read what the disk really holds.
#
# What a binary must not do: end the last run with "0 uploaded" and status 0, taking the
# files the failed flush covered for landed (they read back whole from the page cache).
#
# With KILL=1 the run after the failed flush (the one that copies the files again) is slowed
# by --bwlimit and killed with SIGKILL after 4 s, and one more run goes: the files the killed
# run had not reached must still be copied again. The trash copies whose content is not the
# source's (the old, suspect versions the re-copies keep) are counted either way.
#
# Needs root, loop devices and tmpfs (no device-mapper). Usage:
#   sudo bash scripts/writeback-error.sh OLD_BINARY NEW_BINARY
#   sudo KILL=1 bash scripts/writeback-error.sh BINARY...
# Not part of CI: it mounts filesystems.
set -u
work=${WORK:-/tmp/syncengine-wbe}
back=$work/back
mnt=$work/mnt
src=$work/src
mkdir -p "$back" "$mnt" "$src"
if [ ! -e "$src/d7" ]; then
    python3 - "$src" <<'PY'
import os, sys
for i in range(240):
    d = os.path.join(sys.argv[1], "d%d" % (i % 8))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%03d.bin" % i), "wb") as f:
        f.write(os.urandom(256 * 1024))
PY
fi
for bin in "$@"; do
    echo "=== $bin ($("$bin" --version))"
    mount -t tmpfs -o size=40M tmpfs "$back"
    truncate -s 400M "$back/img"
    mkfs.ext4 -q -b 4096 -O ^has_journal "$back/img"
    mount -o loop,errors=continue "$back/img" "$mnt"
    # The folders exist on the disk before the run: a lost folder block is a broken
    # filesystem no sync tool can mend, and this script is about lost file contents.
    for d in "$src"/*/; do mkdir -p "$mnt/dst/$(basename "$d")"; done
    sync -f "$mnt"
    export XDG_STATE_HOME=$work/state
    rm -rf "$XDG_STATE_HOME"
    echo "--- run 1: the disk fills up"
    "$bin" sync --mode source-to-destination "$src" "$mnt/dst" 2>&1 | tail -1
    echo "status ${PIPESTATUS[0]}; files there: $(find "$mnt/dst" -type f -not -path '*/.syncengine*' | wc -l)"
    mount -o remount,size=1G "$back"
    # Let the failed writeback settle before the next run's client opens the disk: two
    # syncfs calls take the errors the block device still holds, and writes after them
    # take ext4's own report of its lost metadata. The next run starts on a disk that
    # works, with the page cache still serving the files it lost.
    for _ in 1 2 3; do sync -f "$mnt" 2>/dev/null; touch "$mnt/settle"; rm -f "$mnt/settle"; done
    sync -f "$mnt" || echo "the disk still fails its flush"
    if [ "${KILL:-0}" = 1 ]; then
        echo "--- run 2: room again, slowed, killed after 4 s"
        "$bin" sync --mode source-to-destination --bwlimit 2M "$src" "$mnt/dst" > "$work/run2.log" 2>&1 &
        pid=$!
        sleep 4
        kill -9 "$pid"; wait "$pid" 2>/dev/null
        tail -2 "$work/run2.log"
        echo "--- run 3"
    else
        echo "--- run 2: room again"
    fi
    "$bin" sync --mode source-to-destination "$src" "$mnt/dst" 2>&1 | tail -2
    echo "status ${PIPESTATUS[0]}"
    sync
    echo 3 > /proc/sys/vm/drop_caches
    echo "--- what the disk holds: $(diff -rq -x .syncengine "$src" "$mnt/dst" 2>&1 | wc -l) differences"
    diff -rq -x .syncengine "$src" "$mnt/dst" 2>&1 | head -2
    n=0; bad=0
    while IFS= read -r f; do
        n=$((n+1)); b=$(basename "$f"); d=$(basename "$(dirname "$f")")
        cmp -s "$f" "$src/$d/$b" || bad=$((bad+1))
    done < <(find "$mnt/dst/.syncengine" -path '*trash*' -type f -name 'f*.bin' 2>/dev/null)
    echo "--- trash: $n files, $bad of them not the source's content"
    umount "$mnt"
    umount "$back"
done
