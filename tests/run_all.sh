#!/usr/bin/env bash
# Runs every check and test of kcheck: formatting, lints, the header drift
# check, and all Rust tests against the embedded emulators. This is the
# README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"

echo "== header drift"
git diff --exit-code -- include/kcheck.h || {
    echo "include/kcheck.h differs from the committed header: commit the regenerated header" >&2
    exit 1
}

# One closing line for all test binaries together.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$log"
