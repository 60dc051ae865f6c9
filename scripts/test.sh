#!/usr/bin/env bash
# Runs every test of the workspace: the one command behind "how do I test this?".
#
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -- NAME    # extra arguments go to the test binaries (a name filter)
#
# Needs only the Rust toolchain for the local backend. Backends that need a server (S3, GCS,
# Azure, WebDAV, SFTP) get it from scripts/test-servers.sh once that script exists; in CI
# (CI=true) a backend whose server is missing fails the run, elsewhere it is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/test.sh: cargo not found; install the Rust toolchain (rustup) first" >&2
    exit 1
fi

# --- test servers hook -------------------------------------------------------------------
# scripts/test-servers.sh (install|start|stop|env) runs the loopback S3, Azure, GCS, WebDAV and
# SFTP servers the backend tests talk to; it is used only if present.
servers=scripts/test-servers.sh
if [[ -f "$servers" ]]; then
    bash "$servers" install
    trap 'bash "$servers" stop || true' EXIT
    bash "$servers" start
    # The endpoints the backend tests read (SYNCENGINE_TEST_*).
    eval "$(bash "$servers" env)"
fi
# ------------------------------------------------------------------------------------------

cargo test --workspace --all-features "$@"

# The facade with its default features only (no remote backend compiled in): the CLI's
# "s3:// needs the \"s3\" feature" usage errors, which --all-features compiles away.
if [[ $# -eq 0 ]]; then
    cargo test -p syncengine --bins --test cli -- feature
fi
