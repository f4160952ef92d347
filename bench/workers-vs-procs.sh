#!/usr/bin/env bash
# One process per CPU, or one process with every CPU? On this machine, runs
# `immut up` as
#   per-cpu    N workers x GOMAXPROCS=1
#   one-proc   1 worker  x GOMAXPROCS=N
#   per-cpu-n  N workers x GOMAXPROCS=N
# and drives the same open-loop load through the front with `immut loadtest`:
# a fixed RATE (latency percentiles) and a saturating SAT rate (the requests/s
# actually achieved is the capacity). The configurations alternate over
# ROUNDS rounds, and the medians are printed at the end.
#
#   bash bench/workers-vs-procs.sh [RATE] [SAT] [DURATION] [CACHE]
#
# Defaults: RATE 1000/s, SAT 3000/s, DURATION 15s, CACHE 1MiB (the front's
# cache size: 1MiB keeps almost every read a miss, so the app tier and the
# database do the work being compared; with a large cache the front answers
# and both arrangements look alike). ROUNDS=3 by default.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
RATE=${1:-1000/s}
SAT=${2:-3000/s}
DURATION=${3:-15s}
CACHE=${4:-1MiB}
ROUNDS=${ROUNDS:-3}
N=$(nproc)
work=$(mktemp -d /tmp/immut-wvp-XXXXXX)
chmod 755 "$work"
pid=""
cleanup() { [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/immut" ./cmd/immut
results="$work/results"
: > "$results"

load() { # name phase rate targets token
  "$work/immut" loadtest --target "$4" --token "$5" --rate "$3" --duration "$DURATION" \
      --warmup 3s --corpus 300 --seed 5 > "$work/out.txt" 2>/dev/null || true
  local sent p99
  sent=$(awk '/^throughput:/{print $2}' "$work/out.txt")
  p99=$(awk '$1=="all"{print $7; exit}' "$work/out.txt")
  echo "$1 $2 ${sent%/s} $p99" >> "$results"
  printf '  %-9s %-6s at %-7s sent %-8s p99 %s\n' "$1" "$2" "$3" "$sent" "$p99"
}

run() { # name workers procs
  local name=$1 data="$work/data-$1-$RANDOM"
  "$work/immut" up --data "$data" --listen "127.0.0.1:28080" --workers "$2" --worker-procs "$3" \
      --worker-base-port 0 --cache-size "$CACHE" --log-level warn > "$work/up.txt" 2>&1 &
  pid=$!
  for _ in $(seq 150); do grep -q '^  token' "$work/up.txt" 2>/dev/null && break; sleep 0.2; done
  local token targets
  token=$(cat "$data/token")
  targets=$(awk '$1=="port"{printf "%shttp://%s", sep, $2; sep=","}' "$work/up.txt")
  load "$name" fixed "$RATE" "$targets" "$token"
  load "$name" sat "$SAT" "$targets" "$token"
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  rm -rf "$data"
}

echo "per-cpu: $N workers x GOMAXPROCS=1; one-proc: 1 worker x GOMAXPROCS=$N; per-cpu-n: $N workers x GOMAXPROCS=$N; front cache $CACHE"
for r in $(seq "$ROUNDS"); do
  echo "round $r"
  case $((r % 3)) in
    1) run per-cpu "$N" 1; run one-proc 1 "$N"; run per-cpu-n "$N" "$N" ;;
    2) run one-proc 1 "$N"; run per-cpu-n "$N" "$N"; run per-cpu "$N" 1 ;;
    0) run per-cpu-n "$N" "$N"; run per-cpu "$N" 1; run one-proc 1 "$N" ;;
  esac
done

echo "medians over $ROUNDS rounds:"
for name in per-cpu one-proc per-cpu-n; do
  p99=$(awk -v n="$name" '$1==n && $2=="fixed"{print $4}' "$results" | sed 's/ms$//;s/µs$/e-3/;s/s$/e3/' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
  cap=$(awk -v n="$name" '$1==n && $2=="sat"{print $3}' "$results" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
  printf '  %-9s p99 at %s: %s ms   capacity (sent at %s): %s/s\n' "$name" "$RATE" "$p99" "$SAT" "$cap"
done
