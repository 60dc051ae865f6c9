#!/bin/bash
# Like scripts/writeback-error.sh, but the run after the failed flush (the one that copies
# the files again) is slowed by --bwlimit and killed with SIGKILL after 4 s; a third run then
# goes, and the page cache is dropped to read what the disk holds. Also counts the trash
# copies whose content is not the source's (the old, suspect versions the re-copies kept).
#
# What a binary must not do: end the third run with "0 uploaded" and status 0 while the
# files the killed run had not reached are lost on the disk.
#
# Needs root, loop devices and tmpfs. Usage:
#   sudo bash scripts/writeback-error-kill.sh BINARY...
# Not part of CI: it mounts filesystems.
set -u
work=${WORK:-/tmp/syncengine-wbk}
back=$work/back; mnt=$work/mnt; src=$work/src
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
    for d in "$src"/*/; do mkdir -p "$mnt/dst/$(basename "$d")"; done
    sync -f "$mnt"
    export XDG_STATE_HOME=$work/state
    rm -rf "$XDG_STATE_HOME"
    echo "--- run 1: the disk fills up"
    "$bin" sync --mode source-to-destination "$src" "$mnt/dst" 2>&1 | tail -1
    mount -o remount,size=1G "$back"
    for _ in 1 2 3; do sync -f "$mnt" 2>/dev/null; touch "$mnt/settle"; rm -f "$mnt/settle"; done
    sync -f "$mnt" || echo "the disk still fails its flush"
    if [ "${NOKILL:-}" = "" ]; then
    echo "--- run 2: slowed, killed after 4 s"
    "$bin" sync --mode source-to-destination --bwlimit 2M "$src" "$mnt/dst" > $work/run2.log 2>&1 &
    pid=$!
    sleep 4
    kill -9 $pid; wait $pid 2>/dev/null
    tail -2 $work/run2.log
    fi
    echo "--- run 3"
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
    done < <(find "$mnt/dst/.syncengine" -path '*trash*' -type f -name 'f*.bin')
    echo "--- trash: $n files, $bad of them not the source's content; du: $(du -sh "$mnt/dst/.syncengine" | cut -f1)"
    umount "$mnt"
    umount "$back"
done
