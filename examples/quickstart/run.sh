#!/usr/bin/env bash
# Builds Ember and the shipped WebAssembly plugins and runs Ember with the
# quick-start configuration (config/ember.yml plus the node exporter plugin)
# and a local data directory, so http://localhost:9090 answers with host
# metrics. Ctrl-C stops it.
#
# Extra arguments are passed to ember, e.g.
#   examples/quickstart/run.sh --web.enable-lifecycle --log.level=debug
set -euo pipefail
cd "$(dirname "$0")/../.."

bash tests/setup.sh run
# The plugins are their own cargo workspace, built for wasm32-wasip2 into
# the quick start's plugin directory (plugins/ next to its config file).
target="${CARGO_TARGET_DIR:-$PWD/target}"
EMBER_PLUGINS_TARGET_DIR="$target/plugins" bash plugins/build.sh "$PWD/examples/quickstart/plugins"
# cargo run finds the binary wherever the target directory is (CARGO_TARGET_DIR).
exec cargo run --release --locked --quiet --bin ember -- \
  --config.file=examples/quickstart/ember.yml \
  --storage.tsdb.path=data/ \
  "$@"
