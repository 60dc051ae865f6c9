#!/usr/bin/env bash
# SIGKILL campaign: two-way syncs of the built `syncengine` binary are killed at random moments
# while a concurrent writer keeps changing both sides; local↔local and local↔S3 (moto from
# scripts/test-servers.sh). See scripts/kill_campaign.py for the pass criteria. Long; not CI.
#
#   bash scripts/kill-campaign.sh                  # 100 kills per pair (200 in all)
#   KILLS=30 PAIRS=local SEED=7 bash scripts/kill-campaign.sh
#
# Environment: KILLS (per pair, default 100), PAIRS ("local s3"), SEED, BIN (a built binary;
# default: build target/debug/syncengine with the s3 feature), WORK (scratch folder).
# Prints one summary line per pair ("kill campaign <pair>: N of K kills survived …,
# V violations") and exits 1 when any pair had a violation.
set -euo pipefail
cd "$(dirname "$0")/.."

kills=${KILLS:-100}
pairs=${PAIRS:-"local s3"}
seed=${SEED:-$(date +%s)}
work=${WORK:-${TMPDIR:-/tmp}/syncengine-kill-campaign}
bin=${BIN:-}
if [[ -z $bin ]]; then
    cargo build -q --bin syncengine --features s3
    bin=target/debug/syncengine
fi

python=python3
if [[ $pairs == *s3* ]]; then
    ts=${TS_DIR:-/tmp/syncengine-test-servers}
    if ! curl -s -o /dev/null http://127.0.0.1:9100/; then
        echo "moto (S3) is not running on 127.0.0.1:9100: bash scripts/test-servers.sh start" >&2
        exit 1
    fi
    # boto3 for the writer comes with moto.
    [[ -x $ts/venv/bin/python ]] && python=$ts/venv/bin/python
fi

status=0
for pair in $pairs; do
    "$python" scripts/kill_campaign.py --bin "$bin" --pair "$pair" --kills "$kills" \
        --seed "$seed" --work "$work/$pair" || status=1
done
exit $status
