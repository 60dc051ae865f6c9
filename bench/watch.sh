#!/usr/bin/env bash
# Issue 12's figures for `syncengine watch`: how fast a local edit reaches the other side, and
# what a watch costs while nothing changes. Output: a Markdown report, also written to
# bench/results/watch.md.
#
#   bash scripts/test-servers.sh start       # SeaweedFS S3 :9400 (and moto :9100)
#   bash bench/watch.sh                      # every part (about half an hour, most of it the
#                                            # first copies of the 100 000-file trees)
#   PARTS=latency EDITS=10 bash bench/watch.sh               # a quick check of the script
#   PARTS="idle-local" FILES=2000 IDLE_SECS=10 bash bench/watch.sh
#
# Parts (PARTS, default "latency idle-local idle-s3"):
#   latency     A two-way pair with one file edited EDITS times (default 100): after each
#               write, the destination is polled every POLL_MS (default 10) ms until it holds
#               the new content, then the next write follows at once. Median, 90th percentile
#               and worst latency, for local <-> local and for local <-> S3 on each server of
#               LATENCY_S3 (default "seaweedfs moto"). The poller is
#               bench/watch_probe.py, one Python process: a local destination is read with
#               open/read, an S3 one with a SigV4-signed GET over one kept-alive connection
#               (its own cost per poll is printed). The S3 pair keeps the default poll
#               interval of its bucket side (60s); every run restarts that timer, so with an
#               edit every ~2 s no poll run happens during the edits.
#   idle-local  IDLE_PAIRS (default 3) two-way local <-> local pairs, each of FILES (default
#               100 000) files of 0-2 KiB (bench/gen_tree.py profile 1k) in DIRS (default 100)
#               folders, copied by the watch's first runs; once the log has been quiet for
#               SETTLE (default 10) s, IDLE_SECS (default 60) s with nothing changing: CPU =
#               (utime + stime) delta of /proc/PID/stat over the wall time, in % of one core;
#               VmRSS and VmHWM from /proc/PID/status (VmRSS sampled every second: its lowest
#               and highest in the window); the inotify watches the process holds (from
#               /proc/PID/fdinfo) against fs.inotify.max_user_watches. Then the watch is
#               stopped and started again on the synced trees (its first runs find nothing
#               to do) and measured the same way: the idle cost without the first copy's peak.
#   idle-s3     One two-way local <-> S3 pair of FILES objects on S3_IDLE_SERVER (default
#               seaweedfs; moto is slow with 100 000 objects), its bucket polled every S3_POLL
#               (default 60s). The window starts SETTLE s after the first run (the upload)
#               and ends when S3_POLLS (default 3) poll runs after its start have ended: about
#               S3_POLLS whole poll periods, so the CPU figure includes the polls. Each poll
#               run's duration comes from its "up to date (X s)" log line.
# The load average (/proc/loadavg) is recorded at the start and end of every measurement: the
# machine may be shared, and its other work shows up in the wall-clock figures (not in the
# CPU figures, which count this process's own time).
#
# Env: WORK (default /work/bench-work): scratch under $WORK/watch-PID, removed at the end
# unless KEEP=1; the generated tree $WORK/watch-tree-FILES-DIRS is kept and reused. SE (our
# binary; default a release build with s3). Buckets made here are removed at exit.
# Only 127.0.0.1 is contacted.
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECT=$(pwd)

PARTS=${PARTS:-latency idle-local idle-s3}
EDITS=${EDITS:-100}
POLL_MS=${POLL_MS:-10}
LATENCY_S3=${LATENCY_S3:-seaweedfs moto}
IDLE_PAIRS=${IDLE_PAIRS:-3}
FILES=${FILES:-100000}
DIRS=${DIRS:-100}
IDLE_SECS=${IDLE_SECS:-60}
SETTLE=${SETTLE:-10}
S3_IDLE_SERVER=${S3_IDLE_SERVER:-seaweedfs}
S3_POLL=${S3_POLL:-60s}
S3_POLLS=${S3_POLLS:-3}
FIRST_RUN_TIMEOUT=${FIRST_RUN_TIMEOUT:-5400}
IDLE_VERBOSE=${IDLE_VERBOSE:-} # e.g. -v: the idle watches' log then shows each run's start
WORK=${WORK:-/work/bench-work}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
D=$WORK/watch-$$
TREE=$WORK/watch-tree-$FILES-$DIRS
TS=/tmp/syncengine-test-servers
CLK_TCK=$(getconf CLK_TCK)
RUN_ID=$(date +%s)-$$
log() { echo "[watch-bench $(date -u +%T)] $*" >&2; }

WATCH_PIDS=()
BUCKETS=()
on_exit() {
    local p b
    for p in "${WATCH_PIDS[@]}"; do
        if kill -0 "$p" 2>/dev/null; then kill -TERM "$p" 2>/dev/null || true; fi
    done
    for p in "${WATCH_PIDS[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    for b in "${BUCKETS[@]}"; do
        s3_server "${b%%/*}"
        python3 bench/watch_probe.py rb "${b#*/}" >/dev/null 2>&1 || true
    done
    if [[ ${KEEP:-0} != 1 ]]; then rm -rf "$D"; else echo "kept $D" >&2; fi
}
trap on_exit EXIT
mkdir -p "$D"

if [[ -z ${SE:-} ]]; then
    log "building syncengine (release)"
    cargo build --release --quiet --features s3,sftp,webdav --bin syncengine
    SE=${CARGO_TARGET_DIR:-$PROJECT/target}/release/syncengine
fi
[[ $SE == /* ]] || SE=$PROJECT/$SE

# ---- S3 servers ----------------------------------------------------------------------------
# s3_server NAME: the endpoint and keys of the test server NAME (for the probe: S3_*; for the
# watch: WATCH_ENV).
s3_server() {
    case $1 in
    seaweedfs)
        export S3_ENDPOINT=http://127.0.0.1:9400 S3_KEY=weedak S3_SECRET=weedsk
        # SeaweedFS does not list keys in byte order (README).
        WATCH_ENV=(SYNCENGINE_UNORDERED_LISTING=1) ;;
    moto)
        export S3_ENDPOINT=http://127.0.0.1:9100 S3_KEY=testing S3_SECRET=testing
        WATCH_ENV=() ;;
    *) echo "bench/watch.sh: unknown S3 server '$1' (seaweedfs, moto)" >&2; exit 2 ;;
    esac
    export S3_REGION=us-east-1
    WATCH_ENV+=("AWS_ACCESS_KEY_ID=$S3_KEY" "AWS_SECRET_ACCESS_KEY=$S3_SECRET")
}
s3_check() {
    s3_server "$1"
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "$S3_ENDPOINT/" || true)
    [[ $code =~ ^[2-4] ]] || {
        echo "$1 is not answering on $S3_ENDPOINT: bash scripts/test-servers.sh install && bash scripts/test-servers.sh start" >&2
        exit 1
    }
}
BUCKET_SEQ=0
new_bucket() { # new_bucket SERVER -> BUCKET
    s3_server "$1"
    BUCKET_SEQ=$((BUCKET_SEQ + 1))
    BUCKET=watch-bench-$RUN_ID-$BUCKET_SEQ
    python3 bench/watch_probe.py mb "$BUCKET"
    BUCKETS+=("$1/$BUCKET")
}
# remote_table NAME SERVER URL: a [remotes.NAME] table for SERVER (keys from the environment).
remote_table() {
    s3_server "$2"
    printf '[remotes.%s]\nurl = "%s"\nendpoint = "%s"\nregion = "us-east-1"\nallow_http = true\n\n' \
        "$1" "$3" "$S3_ENDPOINT"
}

# ---- the watch -----------------------------------------------------------------------------
# start_watch NAME CONFIG_TEXT [ENV...]: starts `syncengine [$VERBOSE] watch` on a config file
# holding CONFIG_TEXT, with the state directory $D/${STATE_NAME:-NAME}-state; its stdout goes to
# $D/NAME.log, stderr to $D/NAME.err. Sets WPID, WLOG.
start_watch() {
    local name=$1 text=$2; shift 2
    printf '%s' "$text" >"$D/$name.toml"
    WLOG=$D/$name.log
    env -u AWS_PROFILE -u AWS_CA_BUNDLE -u SYNCENGINE_STATE_DIR -u SYNCENGINE_CONFIG "$@" \
        "$SE" --config "$D/$name.toml" ${VERBOSE:+"$VERBOSE"} watch --state-dir "$D/${STATE_NAME:-$name}-state" \
        >"$WLOG" 2>"$D/$name.err" &
    WPID=$!
    WATCH_PIDS+=("$WPID")
    log "watch $name started (pid $WPID)"
}
stop_watch() { # stop_watch PID NAME: SIGTERM, then its exit status must be 0
    local rc=0
    kill -TERM "$1"
    wait "$1" || rc=$?
    if ((rc != 0)); then
        echo "watch $2 exited with $rc after SIGTERM" >&2
        tail -20 "$D/$2.log" "$D/$2.err" >&2
        exit 1
    fi
}
# finished LOG PAIR: runs of PAIR that ended, per the log.
finished() { grep -cE " $2: (synced|up to date)" "$1" || true; }
# wait_runs PID LOG PAIR N TIMEOUT: waits until N runs of PAIR have ended; stops the script on
# a failed or stopped run, a pair not started, a dead watch or the timeout.
wait_runs() {
    local pid=$1 wlog=$2 pair=$3 n=$4 limit=$5 start
    start=$SECONDS
    while (($(finished "$wlog" "$pair") < n)); do
        if grep -qE " $pair: (run failed|STOPPED|not started|run cancelled)" "$wlog"; then
            echo "watch: pair $pair did not complete a run:" >&2; tail -20 "$wlog" >&2; exit 1
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "watch $pid died:" >&2; tail -20 "$wlog" "${wlog%.log}.err" >&2; exit 1
        fi
        if ((SECONDS - start > limit)); then
            echo "watch: pair $pair: $n runs not done within ${limit}s:" >&2; tail -20 "$wlog" >&2; exit 1
        fi
        sleep 0.5
    done
}
# quiet LOG SECS: waits until LOG has not grown for SECS seconds.
quiet() {
    local size last=-1 since=$SECONDS
    while :; do
        size=$(stat -c %s "$1")
        if [[ $size != "$last" ]]; then last=$size since=$SECONDS; fi
        ((SECONDS - since >= $2)) && return
        sleep 1
    done
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # comm has no spaces: field numbers hold
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
inotify_watches() {
    local n=0 f
    for f in /proc/"$1"/fdinfo/*; do
        n=$((n + $(grep -c '^inotify wd:' "$f" 2>/dev/null || true)))
    done
    echo "$n"
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
lines() { wc -l <"$1"; }
# idle_window PID LOG SECS [PAIR POLLS]: measures PID from now for SECS seconds, or, with PAIR,
# until POLLS runs of PAIR have ended after now (and at least SECS). Sets CPU (% of a core),
# WALL, RSS_NOW, HWM, RSS_MIN, RSS_MAX, RSS_ANON, RSS_FILE (KiB), LOAD0, LOAD1, RUNS (runs that
# ended in the window), RSS_AT_RUNS (VmRSS in MiB at the first sample after each of those runs
# ended), L0 (the log's line count at the start).
idle_window() {
    local pid=$1 wlog=$2 secs=$3 pair=${4:-} polls=${5:-0} t0 s0 t1 s1 r n
    LOAD0=$(loadavg)
    L0=$(lines "$wlog")
    t0=$(date +%s.%N) s0=$(ticks "$pid")
    RSS_MIN=$(status_kb "$pid" VmRSS) RSS_MAX=$RSS_MIN RSS_AT_RUNS=""
    local seen=0 ended
    while :; do
        sleep 1
        kill -0 "$pid" 2>/dev/null || { echo "watch $pid died during the window" >&2; exit 1; }
        r=$(status_kb "$pid" VmRSS)
        ((r < RSS_MIN)) && RSS_MIN=$r
        ((r > RSS_MAX)) && RSS_MAX=$r
        t1=$(date +%s.%N)
        ended=$(tail -n +$((L0 + 1)) "$wlog" | grep -cE ": (synced|up to date|run failed|run cancelled)" || true)
        if ((ended > seen)); then
            seen=$ended
            RSS_AT_RUNS+="${RSS_AT_RUNS:+, }$(mib "$r")"
        fi
        if [[ -n $pair ]]; then
            n=$(tail -n +$((L0 + 1)) "$wlog" | grep -cE " $pair: (synced|up to date|run failed)" || true)
            if tail -n +$((L0 + 1)) "$wlog" | grep -qE " $pair: (run failed|STOPPED)"; then
                echo "watch: $pair failed during the window:" >&2; tail -5 "$wlog" >&2; exit 1
            fi
            ((n >= polls)) && awk -v a="$t0" -v b="$t1" -v s="$secs" 'BEGIN { exit !(b - a >= s) }' && break
        else
            awk -v a="$t0" -v b="$t1" -v s="$secs" 'BEGIN { exit !(b - a >= s) }' && break
        fi
    done
    s1=$(ticks "$pid")
    LOAD1=$(loadavg)
    RSS_NOW=$(status_kb "$pid" VmRSS) HWM=$(status_kb "$pid" VmHWM)
    RSS_ANON=$(status_kb "$pid" RssAnon) RSS_FILE=$(status_kb "$pid" RssFile)
    WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    CPU=$(awk -v d=$((s1 - s0)) -v hz="$CLK_TCK" -v w="$WALL" 'BEGIN { printf "%.2f", d / hz / w * 100 }')
    RUNS=$(tail -n +$((L0 + 1)) "$wlog" | grep -cE ": (synced|up to date|run failed|run cancelled)" || true)
}

gen_tree() {
    if [[ ! -d $TREE ]]; then
        log "generating $FILES files in $DIRS folders (gen_tree.py profile 1k) at $TREE"
        python3 bench/gen_tree.py "$TREE.tmp" "$FILES" "$DIRS" --profile 1k >&2
        mv "$TREE.tmp" "$TREE"
    fi
    TREE_DESC="$(find "$TREE" -type f | wc -l) files in $(($(find "$TREE" -type d | wc -l) - 1)) folders, \
$(du -s --apparent-size --block-size=1M "$TREE" | cut -f1) MiB"
}
count_files() { find "$1" -name .syncengine -prune -o -type f -print | wc -l; }
json() { python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1], {}, d))' "$1"; }

# ---- latency -------------------------------------------------------------------------------
LAT_ROWS=()
latency_row() { # latency_row KIND (local, seaweedfs, moto)
    local kind=$1
    local dir=$D/lat-$kind cfg dest label env=()
    mkdir -p "$dir/a" "$dir/b"
    echo "stays" >"$dir/a/anchor.txt" # a side emptied of everything is a safety stop
    echo "before the edits" >"$dir/a/edited.txt"
    if [[ $kind == local ]]; then
        cfg=$(printf '[pairs.lat]\nsource = "%s"\ndestination = "%s"\n' "$dir/a" "$dir/b")
        dest=$dir/b/edited.txt label="local ↔ local"
    else
        s3_check "$kind"
        new_bucket "$kind"
        cfg="$(remote_table srv "$kind" "s3://$BUCKET/lat")
$(printf '[pairs.lat]\nsource = "%s"\ndestination = "srv:"\n' "$dir/a")"
        dest=s3:$BUCKET/lat/edited.txt label="local ↔ S3 ($kind, bucket polled every 60s)"
        env=("${WATCH_ENV[@]}")
    fi
    VERBOSE=-v start_watch "lat-$kind" "$cfg" "${env[@]}"
    local pid=$WPID wlog=$WLOG
    wait_runs "$pid" "$wlog" lat 1 120
    quiet "$wlog" 3
    local l0 load0 load1
    l0=$(lines "$wlog") load0=$(loadavg)
    log "latency $kind: $EDITS edits"
    python3 bench/watch_probe.py edits "$dir/a/edited.txt" "$dest" "$EDITS" --poll-ms "$POLL_MS" \
        >"$D/lat-$kind.json" 2>"$D/lat-$kind.progress"
    load1=$(loadavg)
    quiet "$wlog" 3
    local started by_reason ended
    started=$(tail -n +$((l0 + 1)) "$wlog" | grep -c "lat: run started" || true)
    by_reason=$(tail -n +$((l0 + 1)) "$wlog" | grep -o "lat: run started ([A-Za-z]*)" | sed 's/.*(\(.*\))/\1/' |
        sort | uniq -c | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 }')
    ended=$(tail -n +$((l0 + 1)) "$wlog" | grep -cE " lat: (synced|up to date)" || true)
    stop_watch "$pid" "lat-$kind"
    local j=$D/lat-$kind.json
    if [[ $(json timeouts <"$j") != 0 ]]; then
        echo "latency $kind: $(json timeouts <"$j") edits did not arrive within 120 s" >&2
    fi
    LAT_ROWS+=("$(printf '| %s | %s/%s | %.3f s | %.3f s | %.3f s | %.3f s | %s (%s) | %.2f ms | %s → %s |' \
        "$label" "$(json arrived <"$j")" "$EDITS" "$(json min_s <"$j")" "$(json median_s <"$j")" \
        "$(json p90_s <"$j")" "$(json worst_s <"$j")" "$started" "${by_reason:-none}" \
        "$(json poll_cost_mean_ms <"$j")" "$load0" "$load1")")
    log "${LAT_ROWS[-1]}"
    [[ $ended -ge $started ]] || log "latency $kind: $started runs started, $ended ended"
}

# ---- idle ----------------------------------------------------------------------------------
IDLE_ROWS=()
FIRST_ROWS=()
NOTES=()
idle_local() {
    gen_tree
    local cfg="" i
    for i in $(seq 1 "$IDLE_PAIRS"); do
        mkdir -p "$D/idle/p$i"
        cp -al "$TREE" "$D/idle/p$i/a" # the engine only reads the source: links are safe
        mkdir -p "$D/idle/p$i/b"
        cfg+=$(printf '[pairs.p%d]\nsource = "%s"\ndestination = "%s"\n\n' "$i" "$D/idle/p$i/a" "$D/idle/p$i/b")
        cfg+=$'\n'
    done
    local load0 t0
    load0=$(loadavg) t0=$SECONDS
    VERBOSE=$IDLE_VERBOSE start_watch idle-local "$cfg"
    local pid=$WPID wlog=$WLOG
    for i in $(seq 1 "$IDLE_PAIRS"); do wait_runs "$pid" "$wlog" "p$i" 1 "$FIRST_RUN_TIMEOUT"; done
    local first_wall=$((SECONDS - t0)) load1 hwm_first
    load1=$(loadavg) hwm_first=$(status_kb "$pid" VmHWM)
    for i in $(seq 1 "$IDLE_PAIRS"); do
        local got
        got=$(count_files "$D/idle/p$i/b")
        [[ $got -eq $FILES ]] || { echo "pair p$i: $got files copied, expected $FILES" >&2; exit 1; }
    done
    FIRST_ROWS+=("| $IDLE_PAIRS local ↔ local pairs × $FILES files: first runs | ${first_wall} s (watch start to the last first run's end) | $(mib "$hwm_first") MiB | $load0 → $load1 |")
    for i in $(seq 1 "$IDLE_PAIRS"); do
        NOTES+=("first run of p$i: $(grep -E " p$i: synced" "$wlog" | head -1 | cut -d' ' -f2-)")
    done
    log "first runs done in ${first_wall}s; waiting for the log to be quiet ${SETTLE}s"
    quiet "$wlog" "$SETTLE"
    local extra
    extra=$(grep -cE ": (synced|up to date|run failed|run cancelled)" "$wlog" || true)
    extra=$((extra - IDLE_PAIRS))
    local watches dirs
    watches=$(inotify_watches "$pid")
    dirs=$(find "$D/idle" -mindepth 2 -type d | wc -l)
    log "idle window: ${IDLE_SECS}s"
    idle_window "$pid" "$wlog" "$IDLE_SECS"
    IDLE_ROWS+=("| $IDLE_PAIRS local ↔ local pairs × $FILES files (watched), after the first copy | ${WALL} s | **${CPU} %** | **$(mib "$RSS_NOW") MiB** ($(mib "$RSS_MIN")–$(mib "$RSS_MAX")) | $(mib "$RSS_ANON") / $(mib "$RSS_FILE") MiB | $(mib "$HWM") MiB | $RUNS | $watches | $LOAD0 → $LOAD1 |")
    log "${IDLE_ROWS[-1]}"
    if ((extra > 0)); then
        NOTES+=("runs after the first runs, before the window: $extra: $(grep -E " p[0-9]+: (synced|up to date)" "$wlog" | awk '{ if (seen[$2]++) print }' | cut -d' ' -f2- | paste -sd';' | sed 's/;/; /g') (IDLE_VERBOSE=-v shows why on stderr: \"changes seen during the run were not all its own: running again\", with lost=true when the watch's event queue overflowed during the copy)")
    else
        NOTES+=("runs after the first runs, before the window: 0")
    fi
    NOTES+=("inotify: $watches watches held for $IDLE_PAIRS pairs ($dirs folders in their roots, both sides, the roots and the engine's .syncengine folders included: inotify watches folders, not files); fs.inotify.max_user_watches = $(cat /proc/sys/fs/inotify/max_user_watches), max_user_instances = $(cat /proc/sys/fs/inotify/max_user_instances)")
    stop_watch "$pid" idle-local
    # The same pairs again, on the synced trees: no copy, so no copy's peak.
    log "watch restarted on the synced trees"
    load0=$(loadavg)
    STATE_NAME=idle-local start_watch idle-local-again "$cfg"
    pid=$WPID wlog=$WLOG
    for i in $(seq 1 "$IDLE_PAIRS"); do wait_runs "$pid" "$wlog" "p$i" 1 600; done
    load1=$(loadavg)
    if grep -qE " p[0-9]+: synced" "$wlog"; then
        echo "the restarted watch changed something:" >&2; grep -E " p[0-9]+: synced" "$wlog" >&2; exit 1
    fi
    FIRST_ROWS+=("| the same, watch restarted on the synced trees: first runs (nothing to do) | $(grep -oE " p[0-9]+: up to date \([0-9.]+s\)" "$wlog" | grep -oE '[0-9.]+s' | paste -sd, | sed 's/,/, /g') (each run) | $(mib "$(status_kb "$pid" VmHWM)") MiB | $load0 → $load1 |")
    quiet "$wlog" "$SETTLE"
    log "idle window: ${IDLE_SECS}s"
    idle_window "$pid" "$wlog" "$IDLE_SECS"
    IDLE_ROWS+=("| the same, watch restarted on the synced trees | ${WALL} s | **${CPU} %** | **$(mib "$RSS_NOW") MiB** ($(mib "$RSS_MIN")–$(mib "$RSS_MAX")) | $(mib "$RSS_ANON") / $(mib "$RSS_FILE") MiB | $(mib "$HWM") MiB | $RUNS | $(inotify_watches "$pid") | $LOAD0 → $LOAD1 |")
    log "${IDLE_ROWS[-1]}"
    stop_watch "$pid" idle-local-again
    rm -rf "$D/idle"
}

idle_s3() {
    gen_tree
    s3_check "$S3_IDLE_SERVER"
    new_bucket "$S3_IDLE_SERVER"
    mkdir -p "$D/idle-s3"
    cp -al "$TREE" "$D/idle-s3/a"
    local cfg
    cfg="$(remote_table bench "$S3_IDLE_SERVER" "s3://$BUCKET/p")
$(printf '[pairs.s3]\nsource = "%s"\ndestination = "bench:"\npoll_interval = "%s"\n' "$D/idle-s3/a" "$S3_POLL")"
    local load0 t0
    load0=$(loadavg) t0=$SECONDS
    VERBOSE=$IDLE_VERBOSE start_watch idle-s3 "$cfg" "${WATCH_ENV[@]}"
    local pid=$WPID wlog=$WLOG
    wait_runs "$pid" "$wlog" s3 1 "$FIRST_RUN_TIMEOUT"
    local first_wall=$((SECONDS - t0)) load1 hwm_first got
    load1=$(loadavg) hwm_first=$(status_kb "$pid" VmHWM)
    got=$(python3 bench/watch_probe.py count "$BUCKET" p)
    [[ $got -eq $FILES ]] || { echo "s3 pair: $got objects uploaded, expected $FILES" >&2; exit 1; }
    FIRST_ROWS+=("| 1 local ↔ S3 ($S3_IDLE_SERVER) pair × $FILES files: first run (upload) | ${first_wall} s | $(mib "$hwm_first") MiB | $load0 → $load1 |")
    NOTES+=("first run of the S3 pair: $(grep -E " s3: synced" "$wlog" | head -1 | cut -d' ' -f2-)")
    log "first run done in ${first_wall}s; settling ${SETTLE}s"
    quiet "$wlog" "$SETTLE"
    log "idle window: until $S3_POLLS poll runs have ended"
    idle_window "$pid" "$wlog" 1 s3 "$S3_POLLS"
    local durs
    durs=$(tail -n +$((L0 + 1)) "$wlog" | grep -oE " s3: up to date \([0-9.]+s\)" | grep -oE '[0-9.]+s' | paste -sd, | sed 's/,/, /g')
    IDLE_ROWS+=("| 1 local ↔ S3 ($S3_IDLE_SERVER) pair × $FILES objects, polled every $S3_POLL | ${WALL} s | **${CPU} %** | **$(mib "$RSS_NOW") MiB** ($(mib "$RSS_MIN")–$(mib "$RSS_MAX")) | $(mib "$RSS_ANON") / $(mib "$RSS_FILE") MiB | $(mib "$HWM") MiB | $RUNS (polls) | $(inotify_watches "$pid") | $LOAD0 → $LOAD1 |")
    log "${IDLE_ROWS[-1]}"
    NOTES+=("no-change poll runs of the S3 pair in the window ($S3_IDLE_SERVER, $FILES objects): ${durs:-none} (from the \"up to date (X s)\" lines); VmRSS after each: ${RSS_AT_RUNS:-} MiB")
    NOTES+=("S3 pair's log in the window: $(tail -n +$((L0 + 1)) "$wlog" | cut -d' ' -f1-6 | paste -sd'|' | sed 's/|/; /g')")
    stop_watch "$pid" idle-s3
    rm -rf "$D/idle-s3"
}

# ---- run -----------------------------------------------------------------------------------
START=$(date -u '+%F %H:%M UTC')
START_LOAD=$(loadavg)
for part in $PARTS; do
    case $part in
    latency)
        latency_row local
        for s in $LATENCY_S3; do latency_row "$s"; done ;;
    idle-local) idle_local ;;
    idle-s3) idle_s3 ;;
    *) echo "bench/watch.sh: unknown part '$part' (latency idle-local idle-s3)" >&2; exit 2 ;;
    esac
done

# ---- report --------------------------------------------------------------------------------
versions=("$("$SE" --version | head -1)" "Python $(python3 -c 'import platform; print(platform.python_version())')")
[[ -x $TS/venv/bin/weed ]] && versions+=("SeaweedFS $("$TS/venv/bin/weed" version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+' | head -1)")
[[ -x $TS/venv/bin/python ]] && versions+=("moto $("$TS/venv/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null)")
mkdir -p bench/results
{
    echo "## syncengine watch: latency and idle cost, $START"
    echo
    echo "Machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), \
$(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r), \
work dir on $(findmnt -no FSTYPE -T "$WORK" 2>/dev/null || df -T "$WORK" | awk 'NR==2 { print $2 }'); \
load average $START_LOAD at the start, $(loadavg) at the end (1, 5, 15 min)."
    echo "Versions: $(IFS=';'; echo "${versions[*]}" | sed 's/;/ · /g')."
    echo "Run: PARTS=\"$PARTS\" EDITS=$EDITS POLL_MS=$POLL_MS LATENCY_S3=\"$LATENCY_S3\" IDLE_PAIRS=$IDLE_PAIRS FILES=$FILES DIRS=$DIRS IDLE_SECS=$IDLE_SECS SETTLE=$SETTLE S3_IDLE_SERVER=$S3_IDLE_SERVER S3_POLL=$S3_POLL S3_POLLS=$S3_POLLS bash bench/watch.sh"
    echo "Watch: \`syncengine --config FILE [-v] watch --state-dir DIR\`, defaults (2 s debounce, 10 s cap; two-way pairs);"
    echo "-v (run starts in the log, debug logs on stderr) for the latency pairs, ${IDLE_VERBOSE:-no -v} for the idle ones."
    if ((${#LAT_ROWS[@]})); then
        echo
        echo "### Latency: a local write until the other side holds it ($EDITS edits of one file)"
        echo
        echo "Each edit rewrites one small file in place; the poller (bench/watch_probe.py, one Python process)"
        echo "reads the destination every $POLL_MS ms (local: open/read; S3: a SigV4 GET on a kept-alive"
        echo "connection) and the next edit follows as soon as the new content is there."
        echo
        echo "| pair | arrived | fastest | median | 90th pct | worst | runs started (reason) | poll cost (mean) | load start → end |"
        echo "|---|---|---|---|---|---|---|---|---|"
        printf '%s\n' "${LAT_ROWS[@]}"
    fi
    if ((${#IDLE_ROWS[@]})); then
        echo
        echo "### Idle cost: nothing changing"
        echo
        echo "Trees: ${TREE_DESC:-} (bench/gen_tree.py profile 1k: 0-2 KiB files), a hard-link copy per pair's source;"
        echo "the first runs copy them, then the log is left quiet ${SETTLE} s before the window."
        echo "CPU = (utime + stime) delta / wall time, % of one core; VmRSS at the window's end (lowest–highest"
        echo "sampled every second in it), split into anonymous memory and mapped files (the binary's pages);"
        echo "VmHWM = peak RSS since the watch started (its first runs included)."
        echo
        echo "| watch | window | CPU | VmRSS (min–max) | RssAnon / RssFile | VmHWM | runs in window | inotify watches | load start → end |"
        echo "|---|---|---|---|---|---|---|---|---|"
        printf '%s\n' "${IDLE_ROWS[@]}"
        echo
        echo "| first runs | wall | VmHWM after | load start → end |"
        echo "|---|---|---|---|"
        printf '%s\n' "${FIRST_ROWS[@]}"
        echo
        printf -- '- %s\n' "${NOTES[@]}"
    fi
} >bench/results/watch.md.new
mv bench/results/watch.md.new bench/results/watch.md
cat bench/results/watch.md
