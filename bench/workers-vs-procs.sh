#!/usr/bin/env bash
# One process per CPU or one process with every CPU? Runs `immut up` twice on
# this machine, N workers x GOMAXPROCS=1 and 1 worker x GOMAXPROCS=N, drives
# the same open-loop load through the front with `immut loadtest`, and prints
# requests/s and latency percentiles for both.
#
#   bash bench/workers-vs-procs.sh [RATE] [DURATION] [CACHE]
#
# RATE defaults to 600/s, DURATION to 20s. CACHE is the front's cache size:
# the default 1MiB keeps almost every read a miss, so the app tier and the
# database do the work being compared (with a large cache the front answers
# and both arrangements look alike).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
RATE=${1:-600/s}
DURATION=${2:-20s}
CACHE=${3:-1MiB}
N=$(nproc)
work=$(mktemp -d /tmp/immut-wvp-XXXXXX)
chmod 755 "$work"
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/immut" ./cmd/immut

run() { # name workers procs port
  local name=$1 workers=$2 procs=$3 port=$4 data="$work/data-$1"
  "$work/immut" up --data "$data" --listen "127.0.0.1:$port" --workers "$workers" --worker-procs "$procs" \
      --worker-base-port 0 --cache-size "$CACHE" --log-level warn > "$work/$name.up" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do grep -q '^  token' "$work/$name.up" 2>/dev/null && break; sleep 0.2; done
  local token targets
  token=$(cat "$data/token")
  targets=$(awk '$1=="port"{printf "%shttp://%s", sep, $2; sep=","}' "$work/$name.up")
  echo "== $name: $workers worker(s) x GOMAXPROCS=$procs, front $targets, cache $CACHE"
  "$work/immut" loadtest --target "$targets" --token "$token" --rate "$RATE" --duration "$DURATION" \
      --warmup 3s --corpus 300 --seed 5 --json "$work/$name.json" > "$work/$name.txt" 2>/dev/null || true
  grep -E '^(requests|throughput):' "$work/$name.txt"
  grep -A7 '^latency from intended' "$work/$name.txt" | grep -E '^ +(op|all)'
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
}

run per-cpu "$N" 1 28080
run one-proc 1 "$N" 28180
