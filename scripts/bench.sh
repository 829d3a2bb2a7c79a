#!/usr/bin/env bash
# Side-by-side load benchmark: Playfield vs the seed's Python server (with the
# two fixes it needs to run, ../shared/seed/server_fixed.py), same bots, same
# machine, one after the other. The server is pinned to core 0, the bots
# (examples/bots.rs, seed protocol, 20 moves/s each, one room) to core 1.
# Prints one table; record results in BENCHMARKS.md with the machine and date.
#
#   scripts/bench.sh [players...]     default: 100 400 800
#   SECS=10 scripts/bench.sh 200
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-10}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(100 400 800)
SEED=../shared/seed/server_fixed.py

cargo build --release --quiet --bin playfield --example bots
if [ -f "$SEED" ] && ! python3 -c 'import websockets' 2>/dev/null; then
  pip install --quiet 'websockets==17.4'
fi

tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mib() { awk '/VmRSS/{printf "%.1f", $2/1024}' "/proc/$1/status"; }

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "server on port $1 did not start" >&2
  return 1
}

# run_one NAME PORT PLAYERS -- command...
run_one() {
  local name=$1 port=$2 n=$3
  shift 4
  taskset -c 0 "$@" >/dev/null 2>&1 &
  local pid=$!
  wait_port "$port"
  local t0 c0 t1 c1 out
  # Let the ramp finish (bots connect for 2 s + 2 ms per player) before sampling CPU.
  ( sleep "$(awk -v n="$n" 'BEGIN{print 2 + n*0.002}')"; ) &
  local ramp=$!
  taskset -c 1 ./target/release/examples/bots "ws://127.0.0.1:$port/" "$n" "$SECS" >/tmp/playfield-bench.$$ &
  local bots=$!
  wait "$ramp"
  c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
  sleep "$SECS"
  c1=$(cpu_ticks "$pid"); t1=$(date +%s.%N)
  local rss
  rss=$(rss_mib "$pid")
  wait "$bots"
  out=$(tail -n 1 /tmp/playfield-bench.$$)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  # out: | players | failed | updates/s | p50 | p99 | max | bytes |
  awk -v name="$name" -v out="$out" -v c="$((c1 - c0))" -v tck="$tck" -v t0="$t0" -v t1="$t1" -v rss="$rss" 'BEGIN {
    split(out, f, "|");
    printf "| %-9s |%s|%s|%s|%s|%s|%s| %5.1f%% | %6s |\n", name, f[2], f[3], f[4], f[5], f[6], f[8], 100 * c / tck / (t1 - t0), rss
  }'
}

echo "| server    | players | failed | updates/s per client | gap p50 ms | gap p99 ms | bytes/update | CPU (core 0) | RSS MiB |"
echo "|-----------|---------|--------|----------------------|------------|------------|--------------|--------------|---------|"
for n in "${SIZES[@]}"; do
  run_one playfield 9871 "$n" -- ./target/release/playfield --host 127.0.0.1 --port 9871 --room-capacity 100000 --max-connections 100000
  if [ -f "$SEED" ]; then
    run_one seed 9872 "$n" -- env PORT=9872 python3 "$SEED"
  fi
done
rm -f /tmp/playfield-bench.$$
