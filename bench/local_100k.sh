#!/usr/bin/env bash
# Kept for old instructions: the local rows of bench/run.sh at one size (default 100 000 files).
#
#   bash bench/local_100k.sh            # = N=100000 bash bench/run.sh local
#   N=2000 R=1 bash bench/local_100k.sh # a quick check
#
# See bench/run.sh --help for the rows and the environment (R, WORK, KEEP...).
set -euo pipefail
N=${N:-100000} exec bash "$(dirname "$0")/run.sh" local "$@"
