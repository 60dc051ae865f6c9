#!/usr/bin/env bash
# Issue 9's slow-link figure: a 12 MiB upload and download to S3 (moto on 127.0.0.1:9100)
# through the project's throttling proxy at 256 KiB/s per connection, with the client's
# default timeouts (5 min without progress, 60 s to connect) and part size. Must succeed.
#
#   bash scripts/test-servers.sh start && bash bench/slow_link.sh [SIZE_MIB] [RATE_KIB]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p syncengine-backend-s3 --example slow_link_figure
echo "slow link, moto on 127.0.0.1 ($(nproc) cores, $(date -u +%F))"
cargo run -q -p syncengine-backend-s3 --example slow_link_figure -- "${1:-12}" "${2:-256}"
