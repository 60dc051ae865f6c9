#!/usr/bin/env bash
# Runs the PROPFIND parser fuzz target for a while (default 300 s).
#   bash crates/backend-webdav/fuzz/run.sh [SECONDS]
# Needs cargo-fuzz (installed here on first use) and nightly features: with only a stable
# toolchain, RUSTC_BOOTSTRAP=1 unlocks them.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_TO_RUN=${1:-300}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
if rustup toolchain list 2>/dev/null | grep -q nightly; then
    TOOLCHAIN=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
    TOOLCHAIN=()
fi
mkdir -p corpus/multistatus  # new inputs land here (not committed); seeds/ holds the committed seeds
cargo "${TOOLCHAIN[@]}" fuzz run multistatus corpus/multistatus seeds/multistatus -- \
    -max_total_time="$SECONDS_TO_RUN" -max_len=65536 -rss_limit_mb=2048
