#!/usr/bin/env bash
# Builds every plugin for wasm32-wasip2 and copies the components to
# $1 (default: plugins/dist). One cargo invocation per plugin: building them
# together would unify the SDK's world features and every component would
# claim all worlds.
set -euo pipefail
cd "$(dirname "$0")"
out="${1:-dist}"
mkdir -p "$out"
target="${EMBER_PLUGINS_TARGET_DIR:-${CARGO_TARGET_DIR:-target}}"
for spec in "ember-webhook:webhook" "ember-slack:slack" "ember-pagerduty:pagerduty" "ember-http-sd:http-sd" "ember-dns-sd:dns-sd" "ember-node-exporter:node-exporter" "ember-hostile:hostile"; do
  pkg="${spec%%:*}"; name="${spec##*:}"
  [ -f "$name/Cargo.toml" ] || continue
  if [ "$name" = hostile ] && [ "${EMBER_PLUGINS_HOSTILE:-0}" != 1 ]; then continue; fi
  CARGO_TARGET_DIR="$target" cargo build --quiet --release --target wasm32-wasip2 -p "$pkg"
  cp "$target/wasm32-wasip2/release/${pkg//-/_}.wasm" "$out/$name.wasm"
done
