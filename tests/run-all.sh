#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, end-to-end tests
# against the real binary and the real Prometheus tools. Installs what it
# needs first. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/setup.sh test

echo "==> cargo fmt --check"
cargo fmt --all --check

echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> cargo test"
cargo test --workspace --locked --no-fail-fast
