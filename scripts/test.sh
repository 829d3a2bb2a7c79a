#!/usr/bin/env bash
# Runs every test Playfield has: formatting and lints, the Rust unit and
# integration tests (real server, real WebSocket clients), the browser
# client's unit tests (node), and the end-to-end tests in headless Chromium.
# Installs what the tests need when it is missing: Debian's chromium and the
# npm devDependencies (playwright-core; no browser is downloaded).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if [ ! -x /usr/bin/chromium ]; then
  step "installing Debian's chromium (for the browser tests)"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get install -y --no-install-recommends chromium \
    || { $sudo_cmd apt-get update && $sudo_cmd apt-get install -y --no-install-recommends chromium; }
fi

if [ ! -d node_modules/playwright-core ]; then
  step "installing npm devDependencies (playwright-core)"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

step "Rust tests (unit, property, integration)"
cargo test --locked --release

step "building the release binary for the browser tests"
cargo build --locked --release

step "client unit tests (node --test)"
node --test client/test/

step "end-to-end tests in headless Chromium"
PLAYFIELD_BIN="${PLAYFIELD_BIN:-$PWD/target/release/playfield}" \
  node --test --test-concurrency=1 tests/e2e/

step "all tests passed"
