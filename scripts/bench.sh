#!/usr/bin/env bash
# Side-by-side load benchmarks, each in one run on this machine: Playfield
# against the seed's Python server (W1, seed JSON), against Colyseus 0.18
# (W1, binary deltas), and alone in a large world (W2). Servers are pinned to
# core 0, bots to core 1. Prints one table; record results in BENCHMARKS.md
# with the machine and the date.
#
#   scripts/bench.sh                    # w1-json w1-bin w2
#   scripts/bench.sh w1-bin             # one workload
#   SECS=20 W2="2500 10000" scripts/bench.sh w2
#   scripts/bench.sh free               # W2, nothing pinned (whole machine)
#
# See scripts/bench.py for every knob.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet --bin playfield

SEED=../shared/seed/server_fixed.py
if [ -f "$SEED" ] && ! python3 -c 'import websockets' 2>/dev/null; then
  pip install --quiet 'websockets==17.4'
fi

# The Colyseus peer is read-only in ../shared: install a copy under target/.
PEER=../shared/peers/colyseus
export COLYSEUS_DIR="$PWD/target/colyseus-peer"
if [ -d "$PEER" ] && [ ! -d "$COLYSEUS_DIR/node_modules" ]; then
  mkdir -p "$COLYSEUS_DIR"
  cp -r "$PEER"/. "$COLYSEUS_DIR"/
  chmod -R u+w "$COLYSEUS_DIR"
  (cd "$COLYSEUS_DIR" && npm install --no-audit --no-fund --silent)
fi

# 10,000 players need 10,000 sockets on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

exec python3 scripts/bench.py "$@"
