#!/usr/bin/env bash
# Two syncengine binaries side by side on the same tree: first two-way run and no-change run,
# alternating old/new so a disk that changes speed between minutes hurts both alike.
#
#   bash bench/compare_binaries.sh OLD_BINARY NEW_BINARY
#   N=2000 RUNS=3 bash bench/compare_binaries.sh old new     # a quick check of the script
#
# Build the old binary from an earlier commit, e.g.
#   git worktree add /tmp/old <commit> && (cd /tmp/old && cargo build --release --bin syncengine)
# Env: N (files, default 100000), DIRS (folders, default N/30), RUNS (default 5), WORK (scratch
# folder, default a new temp dir, removed at the end unless KEEP=1).
# Prints the median wall time and peak RSS of each binary for each step, and new/old ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -ne 2 ]]; then
    sed -n '2,12p' "$0" >&2
    exit 2
fi
OLD=$(realpath "$1")
NEW=$(realpath "$2")
N=${N:-100000}
DIRS=${DIRS:-$(( N / 30 > 0 ? N / 30 : 1 ))}
RUNS=${RUNS:-5}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/syncengine-cmp.XXXXXX")}
mkdir -p "$WORK"
if [[ "${KEEP:-0}" != 1 ]]; then
    trap 'rm -rf "$WORK"' EXIT
fi
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (Debian package 'time')" >&2; exit 1; }

SRC="$WORK/src"
python3 bench/gen_tree.py "$SRC" "$N" "$DIRS"

# measure FILE COMMAND...: runs it under /usr/bin/time -v and appends "wall rss" to FILE.
measure() {
    local out=$1; shift
    sync
    if ! /usr/bin/time -v -o "$WORK/time.txt" "$@" >"$WORK/out.txt" 2>"$WORK/err.txt"; then
        echo "FAILED: $*" >&2
        cat "$WORK/err.txt" "$WORK/time.txt" >&2
        exit 1
    fi
    awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; w = s }
                /Maximum resident set size/ { r = $2 / 1024 }
                END { printf "%.3f %.1f\n", w, r }' "$WORK/time.txt" >>"$out"
    # Each sample also goes to stderr at once, so an interrupted campaign keeps its figures.
    echo "sample $(basename "$out"): $(tail -n 1 "$out") (wall s, RSS MiB)" >&2
}

one() { # one LABEL BINARY: a first run into a fresh destination, then a no-change run.
    local label=$1 bin=$2
    rm -rf "$WORK/dst" "$WORK/state"
    sync
    measure "$WORK/$label.first" "$bin" sync "$SRC" "$WORK/dst" --mode two-way --state-dir "$WORK/state" -q
    measure "$WORK/$label.nochange" "$bin" sync "$SRC" "$WORK/dst" --mode two-way --state-dir "$WORK/state" -q
    local got
    got=$(find "$WORK/dst" -path "$WORK/dst/.syncengine" -prune -o -type f -print | wc -l)
    if [[ "$got" -ne "$N" ]]; then
        echo "ERROR: $label copied $got files, expected $N" >&2
        exit 1
    fi
}

for i in $(seq 1 "$RUNS"); do
    if (( i % 2 )); then one old "$OLD"; one new "$NEW"; else one new "$NEW"; one old "$OLD"; fi
    echo "run $i/$RUNS done" >&2
done

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$2" '{ print $c }' "$1" | median; }

echo
echo "syncengine old vs new: $N files, $RUNS alternating runs each, medians ($(nproc) cores, $(date -u +%Y-%m-%d))"
echo "old: $OLD"
echo "new: $NEW"
printf '| %-22s | %12s | %12s | %9s | %14s | %14s |\n' step "old wall (s)" "new wall (s)" "new/old" "old RSS (MiB)" "new RSS (MiB)"
printf '|%s|%s|%s|%s|%s|%s|\n' "------------------------" "--------------" "--------------" "-----------" "----------------" "----------------"
for step in first nochange; do
    ow=$(col "$WORK/old.$step" 1); nw=$(col "$WORK/new.$step" 1)
    orss=$(col "$WORK/old.$step" 2); nrss=$(col "$WORK/new.$step" 2)
    ratio=$(awk -v a="$nw" -v b="$ow" 'BEGIN { printf "%.3f", a / b }')
    name=$([[ $step == first ]] && echo "first two-way run" || echo "no-change run")
    printf '| %-22s | %12s | %12s | %9s | %14s | %14s |\n' "$name" "$ow" "$nw" "$ratio" "$orss" "$nrss"
done
echo
echo "all samples (wall s, RSS MiB):"
for f in old.first new.first old.nochange new.nochange; do echo "$f: $(tr '\n' ';' <"$WORK/$f")"; done
