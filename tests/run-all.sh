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

echo "==> plugins (wasm32-wasip2): cargo fmt --check, cargo clippy"
# One package at a time: the SDK's world features must not unify.
(
  cd plugins
  cargo fmt --all --check
  for pkg in ember-webhook ember-slack ember-pagerduty ember-http-sd ember-dns-sd ember-node-exporter ember-hostile; do
    cargo clippy --locked -p "$pkg" --target wasm32-wasip2 -- -D warnings
    # Parsing and formatting unit tests run natively.
    cargo test --locked --quiet -p "$pkg"
  done
)

# tests/plugins.rs builds the plugins itself (plugins/build.sh).
echo "==> cargo test"
cargo test --workspace --locked --no-fail-fast
