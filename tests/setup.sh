#!/usr/bin/env bash
# Installs what building, running and testing Ember needs on a fresh Debian
# machine. Idempotent: anything already present is left alone.
#
#   tests/setup.sh run    - what `examples/quickstart/run.sh` needs
#   tests/setup.sh test   - what the whole test suite needs (default)
set -euo pipefail

purpose="${1:-test}"

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else log "need root for: $*"; return 1
  fi
}

if ! command -v cargo >/dev/null 2>&1; then
  log "cargo not found: install Rust (https://rustup.rs) and run this again"
  exit 1
fi

# Plugins are built for wasm32-wasip2.
if command -v rustup >/dev/null 2>&1; then
  if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    log "adding Rust target wasm32-wasip2"
    rustup target add wasm32-wasip2
  fi
  for component in rustfmt clippy; do
    if ! rustup component list --installed | grep -q "^$component"; then
      log "adding Rust component $component"
      rustup component add "$component"
    fi
  done
fi

# Debian packages: the real Prometheus components Ember is tested against.
apt_packages=()
if [ "$purpose" = test ]; then
  command -v promtool >/dev/null 2>&1 || apt_packages+=(prometheus)
  command -v prometheus-alertmanager >/dev/null 2>&1 || apt_packages+=(prometheus-alertmanager)
  command -v prometheus-pushgateway >/dev/null 2>&1 || apt_packages+=(prometheus-pushgateway)
  command -v prometheus-node-exporter >/dev/null 2>&1 || apt_packages+=(prometheus-node-exporter)
  # The UI's browser tests drive Debian's Chromium with playwright-core.
  [ -x /usr/bin/chromium ] || apt_packages+=(chromium)
  # psql is the real client of the SQL listener's tests (catalog, TLS).
  command -v psql >/dev/null 2>&1 || apt_packages+=(postgresql-client)
fi
# The web UI is built with Node.js (npm); the binary embeds ui/dist.
command -v npm >/dev/null 2>&1 || apt_packages+=(nodejs npm)
if [ "${#apt_packages[@]}" -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    log "installing Debian packages: ${apt_packages[*]}"
    # Keep the packages from starting their own services.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
      as_root chmod +x /usr/sbin/policy-rc.d
    fi
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
  else
    log "not a Debian system: install ${apt_packages[*]} yourself; tests that need them are skipped outside CI"
  fi
fi
# Python packages (module:PyPI name): pyarrow reads Ember's Parquet blocks;
# prometheus_client is the official client library, a real OpenMetrics
# producer and Pushgateway client; psycopg is a real PostgreSQL client for the
# SQL listener; duckdb reads blocks directly to cross-check SQL answers;
# moto in server mode is the S3-compatible bucket of the object storage
# tests (boto3, which comes with it, lists and downloads the bucket).
if [ "$purpose" = test ]; then
  for entry in pyarrow:pyarrow prometheus_client:prometheus_client "psycopg:psycopg[binary]" duckdb:duckdb "moto.server:moto[server]" boto3:boto3; do
    module="${entry%%:*}"
    package="${entry#*:}"
    if ! python3 -c "import $module" >/dev/null 2>&1; then
      log "installing $package from PyPI"
      python3 -m pip install --quiet --disable-pip-version-check "$package" ||
        python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$package"
    fi
  done
fi

# Build the web UI before cargo builds: host/build.rs embeds ui/dist and
# fails without it. npm ci only when the lock file changed since the last
# install; the build only when a source file is newer than ui/dist.
if ! command -v node >/dev/null 2>&1 || ! node -e '
  const [a, b] = process.versions.node.split(".").map(Number);
  process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  log "the UI build needs Node.js 20.19 or newer (found: $(node --version 2>/dev/null || echo none))"
  exit 1
fi
(
  cd ui
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    log "installing the UI's npm packages (npm ci in ui/)"
    npm ci --no-audit --no-fund --loglevel=error
  fi
  if [ ! -f dist/index.html ] ||
     [ -n "$(find src index.html package.json package-lock.json vite.config.ts tsconfig.json \
               -newer dist/index.html -print -quit)" ]; then
    log "building the web UI (npm run build in ui/)"
    npm run --silent build >/dev/null
  fi
)

log "setup ($purpose) complete"
