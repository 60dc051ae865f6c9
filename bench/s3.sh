#!/usr/bin/env bash
# S3 benchmark against moto on 127.0.0.1:9100: syncengine vs `rclone copy` on 10 000 small
# files (local → S3, initial sync), and syncengine's peak RSS uploading one 1 GiB file.
#
#   bash scripts/test-servers.sh start    # moto must be running (bucket `test`)
#   bash bench/s3.sh                      # N=10000 files, BIG_MIB=1024
#   N=500 BIG_MIB=64 bash bench/s3.sh     # a quick check of the script itself
#
# Env: N (files), BIG_MIB (size of the big file), WORK (scratch folder; removed unless KEEP=1).
# Needs: cargo, python3, rclone (Debian's), /usr/bin/time. Only 127.0.0.1 is contacted.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-10000}
BIG_MIB=${BIG_MIB:-1024}
ENDPOINT=http://127.0.0.1:9100
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/syncengine-s3bench.XXXXXX")}
mkdir -p "$WORK"
if [[ "${KEEP:-0}" != 1 ]]; then trap 'rm -rf "$WORK"' EXIT; fi

curl -s -o /dev/null "$ENDPOINT/moto-api/" || {
    echo "moto is not running on $ENDPOINT: bash scripts/test-servers.sh install && bash scripts/test-servers.sh start" >&2
    exit 1
}
cargo build --release --quiet --features s3 --bin syncengine
SE=target/release/syncengine
RUN=$(date +%s)-$$

# The S3 settings for syncengine, from the ecosystem's variables (never the real cloud).
export AWS_ACCESS_KEY_ID=a AWS_SECRET_ACCESS_KEY=b AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=$ENDPOINT AWS_ALLOW_HTTP=true
unset AWS_CA_BUNDLE # Debian's rclone fails with it set; syncengine ignores it
RCLONE_REMOTE=":s3,provider=Other,access_key_id=a,secret_access_key=b,endpoint='$ENDPOINT'"

python3 bench/gen_tree.py "$WORK/small" "$N" >/dev/null
head -c $((BIG_MIB * 1024 * 1024)) /dev/urandom >"$WORK/big.bin"
mkdir -p "$WORK/bigdir" && mv "$WORK/big.bin" "$WORK/bigdir/"

ROWS=()
measure() { # measure LABEL FILES COMMAND...
    local label=$1 files=$2; shift 2
    if ! /usr/bin/time -v -o "$WORK/time.txt" "$@" >"$WORK/out.txt" 2>"$WORK/err.txt"; then
        echo "FAILED: $label" >&2; cat "$WORK/err.txt" "$WORK/time.txt" >&2; exit 1
    fi
    local wall rss rate
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; printf "%.2f", s }' "$WORK/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$WORK/time.txt")
    rate=$(awk -v n="$files" -v w="$wall" 'BEGIN { printf "%.0f", (w > 0 ? n / w : 0) }')
    ROWS+=("$(printf '| %-44s | %9s | %8s | %14s |' "$label" "$wall" "$rate" "$rss")")
}

count_s3() { rclone --config /dev/null lsf -R --files-only "$RCLONE_REMOTE:test/$1" | wc -l; }

measure "syncengine: $N files local -> moto" "$N" \
    "$SE" sync "$WORK/small" "s3://test/bench-$RUN/se" --mode source-to-destination \
    --state-dir "$WORK/state" -q
measure "rclone copy: $N files local -> moto" "$N" \
    rclone --config /dev/null copy "$WORK/small" "$RCLONE_REMOTE:test/bench-$RUN/rclone"
measure "syncengine: one ${BIG_MIB} MiB file local -> moto" 1 \
    "$SE" sync "$WORK/bigdir" "s3://test/bench-$RUN/big" --mode source-to-destination \
    --state-dir "$WORK/state" -q

for sub in se rclone; do
    got=$(count_s3 "bench-$RUN/$sub")
    [[ "$got" -eq "$N" ]] || { echo "ERROR: $sub uploaded $got files, expected $N" >&2; exit 1; }
done

echo
echo "syncengine S3 benchmark against moto ($(nproc) cores), run $RUN"
printf '| %-44s | %9s | %8s | %14s |\n' "step" "wall (s)" "files/s" "peak RSS (MiB)"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..11})" "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..16})"
printf '%s\n' "${ROWS[@]}"
