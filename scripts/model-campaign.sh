#!/usr/bin/env bash
# Runs the model-based state-machine test (crates/syncengine-core/tests/model.rs) at length,
# outside CI: ≥ 10 000 random schedules by default, split over profiles of generator switches
# so that a violation points at one behaviour of issue 8.
#
#   bash scripts/model-campaign.sh                      # 10 000 schedules, seed from the clock
#   MODEL_CASES=2000 MODEL_SEED=7 bash scripts/model-campaign.sh
#   PROFILES="all" bash scripts/model-campaign.sh       # one profile only
#
# Environment: MODEL_CASES (or PROPTEST_CASES; total over all profiles), MODEL_SEED (or
# PROPTEST_RNG_SEED), PROFILES (space-separated MODEL_KINDS values; see `Kinds::from_env` in
# the test), REPORT (file that receives every minimal failing schedule), MODEL_SHRINK_ITERS
# (default 150: shrinking steps per failing schedule).
# Prints one summary line per profile and a total: schedules run, failing schedules.
set -euo pipefail
cd "$(dirname "$0")/.."

total=${MODEL_CASES:-${PROPTEST_CASES:-10000}}
seed=${MODEL_SEED:-${PROPTEST_RNG_SEED:-$(date +%s)}}
profiles=${PROFILES:-"ci type_change case_fold same_size_mtime edit_after_crash same_run_spread never_absent ShortRead CorruptRead all"}
report=${REPORT:-target/model-campaign-$seed.txt}
mkdir -p "$(dirname "$report")"
: >"$report"

read -r -a list <<<"$profiles"
per=$(((total + ${#list[@]} - 1) / ${#list[@]}))

# Build once; every profile reuses the test binary.
cargo test -p syncengine-core --features testing --test model --no-run 2>&1 | tail -1

ran_all=0
failed_all=0
i=0
for kinds in "${list[@]}"; do
    i=$((i + 1))
    out=$(MODEL_KINDS=$kinds MODEL_CASES=$per MODEL_SEED=$((seed + i)) MODEL_CONTINUE=1 \
        MODEL_SHRINK_ITERS=${MODEL_SHRINK_ITERS:-150} \
        MODEL_REPORT=$report \
        cargo test -q -p syncengine-core --features testing --test model \
        model_schedules_keep_every_version -- --nocapture 2>&1 || true)
    line=$(grep -E '^model: [0-9]+ schedules run' <<<"$out" | tail -1 || true)
    if [[ -z $line ]]; then
        echo "profile $kinds: the test did not run:"
        tail -20 <<<"$out"
        exit 1
    fi
    ran=$(sed -E 's/^model: ([0-9]+) schedules run, ([0-9]+) failing.*/\1/' <<<"$line")
    failed=$(sed -E 's/^model: ([0-9]+) schedules run, ([0-9]+) failing.*/\2/' <<<"$line")
    ran_all=$((ran_all + ran))
    failed_all=$((failed_all + failed))
    echo "profile $kinds (seed $((seed + i))): $ran schedules run, $failed failing"
done
echo "model campaign: $ran_all schedules run, $failed_all failing (seed $seed; minimal schedules in $report)"
