#!/usr/bin/env bash
# Runs every check and test of kcheck: formatting, lints, the header drift
# check, and all Rust tests against the embedded emulators. This is the
# README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== redis-server and pkg-config (the Redis checkpointer's tests run against a real one; tests/install.rs builds C with pkg-config)"
if ! command -v redis-server >/dev/null 2>&1 || ! command -v pkg-config >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq redis-server pkg-config >/dev/null
        # The package starts a system service on 6379 where systemd runs;
        # the tests start their own servers on free ports and need none.
    else
        echo "redis-server or pkg-config is missing: install them (Debian: sudo apt-get install redis-server pkg-config) and run again" >&2
        exit 1
    fi
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (with the command-line tool and Redis: features cli, redis)"
cargo clippy --workspace --all-targets --locked --features kcheck/cli,kcheck/redis -- -D warnings
# The C ABI without Redis must build cleanly too (its entry points say so).
cargo clippy --workspace --all-targets --locked --features kcheck/cli -- -D warnings

echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked --features kcheck/cli,kcheck/redis 2>&1 | tee "$log"

echo "== python tests"
# The package's pytest suite against a fresh build of the library and the
# emulators binary; its pinned requirements go into a venv under target/.
cargo build --workspace --locked --features kcheck/redis
venv=target/py-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r bindings/python/requirements-test.txt
# KCHECK_TEST_INSTALL=1: test_install.py also builds the sdist and the wheel
# from it with `python -m build` (a release build in target/), checks the
# wheel with auditwheel, installs it alone into a fresh venv and consumes.
KCHECK_TEST_INSTALL=1 KCHECK_LIBRARY="$PWD/target/debug/libkcheck.so" KCHECK_EMULATORS="$PWD/target/debug/kcheck-emulators" \
    "$venv/bin/python" -m pytest bindings/python/tests -q -p no:cacheprovider 2>&1 | tee -a "$log"

echo "== demo (the README's main job, with few records)"
cargo run --locked --example demo -- 2000

echo "== header drift"
git diff --exit-code -- include/kcheck.h || {
    echo "include/kcheck.h differs from the committed header: commit the regenerated header" >&2
    exit 1
}

# One closing line for all test binaries and pytest together.
awk '
    /^test result:/ { passed += $4; failed += $6; skipped += $8 }
    /^(=+ )?[0-9]+ (passed|failed|skipped|errors?)[ ,]/ {
        for (i = 1; i < NF; i++) {
            if ($(i + 1) ~ /^passed/) passed += $i
            if ($(i + 1) ~ /^(failed|errors?)/) failed += $i
            if ($(i + 1) ~ /^skipped/) skipped += $i
        }
    }
    END { printf "%d passed, %d failed, %d skipped\n", passed, failed, skipped }' "$log"
