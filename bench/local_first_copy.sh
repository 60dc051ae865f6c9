#!/usr/bin/env bash
# First copy, local disk to local disk: syncengine one-way and two-way beside `cp -a` and
# `cp -a && sync`, alternated run by run, medians and ratios to `cp -a`.
#
#   bash bench/local_first_copy.sh                         # target/release/syncengine, N=100000
#   bash bench/local_first_copy.sh OLD_BINARY NEW_BINARY   # several binaries side by side
#   N=2000 RUNS=1 bash bench/local_first_copy.sh           # a quick check of the script
#
# Env: N (files, default 100000), DIRS (folders, default N/30), PROFILE (file sizes: 10k, the
# default, or 1k for 1 000 000 files; see gen_tree.py), RUNS (default 3), WORK (scratch
# folder, default a new temp dir on the same disk as TMPDIR, removed at the end unless KEEP=1),
# WARMUP (1, the default: one unmeasured `cp -a` of the new tree first; 0: none).
# Every destination is a new folder next to the source (same filesystem); each step starts
# after a `sync`, so no step pays for the previous one's writes. syncengine flushes what it
# copied to disk (syncfs) before its state records it: `cp -a && sync` is the comparable
# durable figure, `cp -a` the one to beat.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100000}
DIRS=${DIRS:-$(( N / 30 > 0 ? N / 30 : 1 ))}
RUNS=${RUNS:-3}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/syncengine-firstcopy.XXXXXX")}
mkdir -p "$WORK"
if [[ "${KEEP:-0}" != 1 ]]; then
    trap 'rm -rf "$WORK"' EXIT
fi
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (Debian package 'time')" >&2; exit 1; }

BINS=()
if [[ $# -eq 0 ]]; then
    cargo build --release --quiet --bin syncengine
    BINS=("$(realpath target/release/syncengine)")
else
    for b in "$@"; do BINS+=("$(realpath "$b")"); done
fi

SRC="$WORK/src"
python3 bench/gen_tree.py "$SRC" "$N" "$DIRS" ${PROFILE:+--profile "$PROFILE"} >&2
# The first copy after the tree was written pays for the kernel's deferred work of writing it:
# at 1 000 000 files the first step took 51.6 s where the same step took 34.6-37.1 s later,
# whichever tool it was. An unmeasured copy takes that on.
if [[ "${WARMUP:-1}" == 1 ]]; then
    cp -a "$SRC" "$WORK/dst" && rm -rf "$WORK/dst" && sync
fi

# measure LABEL COMMAND...: runs it under /usr/bin/time -v and appends "wall rss" to LABEL's file.
measure() {
    local label=$1; shift
    rm -rf "$WORK/dst" "$WORK/state"
    sync
    if ! /usr/bin/time -v -o "$WORK/time.txt" "$@" >"$WORK/out.txt" 2>"$WORK/err.txt"; then
        echo "FAILED: $label" >&2
        cat "$WORK/err.txt" "$WORK/time.txt" >&2
        exit 1
    fi
    awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; w = s }
                /User time/ { u = $2 } /System time/ { y = $2 }
                /Maximum resident set size/ { r = $2 / 1024 }
                END { printf "%.3f %.1f %.2f\n", w, r, u + y }' "$WORK/time.txt" >>"$WORK/$label.samples"
    local got
    got=$(find "$WORK/dst" -path "$WORK/dst/.syncengine" -prune -o -type f -print | wc -l)
    if [[ "$got" -ne "$N" ]]; then
        echo "ERROR: $label copied $got files, expected $N" >&2
        exit 1
    fi
    echo "sample $label: $(tail -n 1 "$WORK/$label.samples") (wall s, RSS MiB, CPU s)" >&2
}

STEPS=()
for i in "${!BINS[@]}"; do STEPS+=("se$i-one-way" "se$i-two-way"); done
STEPS+=(cp cp-sync)

step() {
    case $1 in
        cp) measure cp cp -a "$SRC" "$WORK/dst" ;;
        cp-sync) measure cp-sync sh -c 'cp -a "$1" "$2" && sync' _ "$SRC" "$WORK/dst" ;;
        se*-one-way)
            local i=${1#se}; i=${i%%-*}
            measure "$1" "${BINS[$i]}" sync "$SRC" "$WORK/dst" --mode source-to-destination --state-dir "$WORK/state" -q ;;
        se*-two-way)
            local i=${1#se}; i=${i%%-*}
            measure "$1" "${BINS[$i]}" sync "$SRC" "$WORK/dst" --mode two-way --state-dir "$WORK/state" -q ;;
    esac
}

for r in $(seq 1 "$RUNS"); do
    # Alternate the order: forwards on odd rounds, backwards on even ones.
    if (( r % 2 )); then order=("${STEPS[@]}"); else order=(); for ((j=${#STEPS[@]}-1; j>=0; j--)); do order+=("${STEPS[$j]}"); done; fi
    for s in "${order[@]}"; do step "$s"; done
    echo "round $r/$RUNS done" >&2
done
rm -rf "$WORK/dst" "$WORK/state"

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$2" '{ print $c }' "$WORK/$1.samples" | median; }
cpw=$(col cp 1)

echo
echo "local first copy: $N files in $DIRS folders, $(du -sh "$SRC" | cut -f1), $RUNS alternated runs, medians ($(nproc) cores, $(date -u +%Y-%m-%d), $(cp --version | head -n 1))"
for i in "${!BINS[@]}"; do echo "se$i: ${BINS[$i]}"; done
# CPU (user + system) is shown too: on a busy shared machine it is steadier than wall time.
printf '| %-16s | %10s | %10s | %10s | %14s | %s |\n' step "wall (s)" "/ cp -a" "CPU (s)" "peak RSS (MiB)" "samples (wall s)"
printf '|%s|%s|%s|%s|%s|%s|\n' "------------------" "------------" "------------" "------------" "----------------" "---"
for s in "${STEPS[@]}"; do
    w=$(col "$s" 1); rss=$(col "$s" 2); cpu=$(col "$s" 3)
    ratio=$(awk -v a="$w" -v b="$cpw" 'BEGIN { printf "%.3f", a / b }')
    printf '| %-16s | %10s | %10s | %10s | %14s | %s |\n' "$s" "$w" "$ratio" "$cpu" "$rss" "$(awk '{ printf "%s ", $1 }' "$WORK/$s.samples")"
done
