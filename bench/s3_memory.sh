#!/usr/bin/env bash
# Kept for old instructions: the S3 upload rows of bench/run.sh (100 × 10 MiB and 1 × 1 GiB to
# SeaweedFS on 127.0.0.1:9400, syncengine beside s5cmd and rclone, wall time and peak RSS).
#
#   bash scripts/test-servers.sh start && bash bench/s3_memory.sh
#   FILES=10 BIG_MIB=64 R=1 bash bench/s3_memory.sh   # a quick check
#
# FILES, FILE_MIB and BIG_MIB map to S3_BIG_FILES, S3_BIG_MIB and S3_HUGE_MIB of bench/run.sh.
set -euo pipefail
export S3_BIG_FILES=${FILES:-${S3_BIG_FILES:-100}} S3_BIG_MIB=${FILE_MIB:-${S3_BIG_MIB:-10}}
export S3_HUGE_MIB=${BIG_MIB:-${S3_HUGE_MIB:-1024}} S3_ROWS="big huge"
exec bash "$(dirname "$0")/run.sh" s3 "$@"
