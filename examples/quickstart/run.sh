#!/usr/bin/env bash
# Builds Ember and runs it with the repository's default configuration and a
# local data directory, so http://localhost:9090 answers. Ctrl-C stops it.
#
# Extra arguments are passed to ember, e.g.
#   examples/quickstart/run.sh --web.enable-lifecycle --log.level=debug
set -euo pipefail
cd "$(dirname "$0")/../.."

bash tests/setup.sh run
# cargo run finds the binary wherever the target directory is (CARGO_TARGET_DIR).
exec cargo run --release --locked --quiet --bin ember -- \
  --config.file=config/ember.yml \
  --storage.tsdb.path=data/ \
  "$@"
