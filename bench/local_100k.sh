#!/usr/bin/env bash
# Local-disk benchmark: syncengine against cp -a and rsync -a on a 100 000-file tree.
#
#   bash bench/local_100k.sh            # 100 000 files (~1 GiB), the closing figures
#   N=2000 bash bench/local_100k.sh     # a quick check of the script itself
#
# Env: N (files, default 100000), DIRS (folders, default N/30), WORK (scratch folder, default
# a new temp dir, removed at the end unless KEEP=1).
# Measures wall time and peak RSS with /usr/bin/time -v. The source tree is freshly written,
# so every tool reads it from the page cache; destinations are new folders on the same disk.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100000}
DIRS=${DIRS:-$(( N / 30 > 0 ? N / 30 : 1 ))}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/syncengine-bench.XXXXXX")}
mkdir -p "$WORK"
if [[ "${KEEP:-0}" != 1 ]]; then
    trap 'rm -rf "$WORK"' EXIT
fi

need() { # need COMMAND PACKAGE: installs the Debian package when the command is missing.
    if [[ -x "$1" ]] || command -v "$1" >/dev/null 2>&1; then return; fi
    echo "installing $2 (for $1)" >&2
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$2" >/dev/null
}
need /usr/bin/time time
need rsync rsync
need python3 python3

cargo build --release --quiet --bin syncengine
SE=target/release/syncengine

SRC="$WORK/src"
python3 bench/gen_tree.py "$SRC" "$N" "$DIRS"

ROWS=()
# measure LABEL COMMAND...: runs it under /usr/bin/time -v and records wall time and peak RSS.
measure() {
    local label=$1; shift
    sync # flush the previous step's writes so they are not billed to this one
    if ! /usr/bin/time -v -o "$WORK/time.txt" "$@" >"$WORK/out.txt" 2>"$WORK/err.txt"; then
        echo "FAILED: $label" >&2
        cat "$WORK/err.txt" "$WORK/time.txt" >&2
        exit 1
    fi
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; printf "%.2f", s }' "$WORK/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$WORK/time.txt")
    ROWS+=("$(printf '| %-36s | %10s | %14s |' "$label" "$wall" "$rss")")
}

count() { find "$1" -path "$1/.syncengine" -prune -o -type f -print | wc -l; }

measure "syncengine first run (two-way a->b)" \
    "$SE" sync "$SRC" "$WORK/se_dst" --mode two-way --state-dir "$WORK/state" -q
measure "cp -a" cp -a "$SRC" "$WORK/cp_dst"
# syncengine flushes its writes to disk before recording them; this row pays the same.
measure "cp -a, then sync (durable)" sh -c 'cp -a "$1" "$2" && sync' _ "$SRC" "$WORK/cp_sync_dst"
measure "rsync -a (initial copy)" rsync -a "$SRC/" "$WORK/rsync_dst/"
measure "syncengine second run (no change)" \
    "$SE" sync "$SRC" "$WORK/se_dst" --mode two-way --state-dir "$WORK/state" --json
second_json=$(cat "$WORK/out.txt")
measure "rsync -a re-run (no change)" rsync -a "$SRC/" "$WORK/rsync_dst/"

for d in se_dst cp_dst cp_sync_dst rsync_dst; do
    got=$(count "$WORK/$d")
    if [[ "$got" -ne "$N" ]]; then
        echo "ERROR: $d has $got files, expected $N" >&2
        exit 1
    fi
done

echo
folders=$(( $(find "$SRC" -type d | wc -l) - 1 ))
echo "syncengine local benchmark: $N files in $folders folders, $(du -sh "$SRC" | cut -f1) ($(nproc) cores)"
printf '| %-36s | %10s | %14s |\n' "step" "wall (s)" "peak RSS (MiB)"
printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..38})" "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..16})"
printf '%s\n' "${ROWS[@]}"
echo
echo "syncengine makes its writes durable (syncfs) before it records them in its state; cp and rsync leave them in the page cache."
echo "second syncengine run: $second_json"
