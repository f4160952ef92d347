#!/usr/bin/env bash
# front-vs-nginx.sh compares the front tier's cache-hit path with nginx
# proxy_cache (DESIGN §8): same origin, same port layout (two listen ports →
# two origin ports), same wrk load (16 KiB objects over 1,000 keys, 64
# connections split over both ports), same run. It prints requests/s and
# p99 for each and the ratios, then stops everything it started.
#
#   loadtest/peers/front-vs-nginx.sh            # 3 rounds, 10 s per side
#   DURATION=30s ROUNDS=2 loadtest/peers/front-vs-nginx.sh
#   CHURN=0 ...   skips the memory phase (a front with a 256 MiB budget under a
#                 key space far larger than the budget; peak RSS vs budget)
#
# Needs: go, nginx and wrk (apt-get install -y nginx wrk).
set -euo pipefail

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}           # total, split over the two ports
# Eight free loopback ports, held open together so that they differ, then
# released for the servers (BASE_PORT=N uses N+1..N+8 instead).
if [ -n "${BASE_PORT:-}" ]; then
  ports=$(seq $((BASE_PORT + 1)) $((BASE_PORT + 8)))
else
  ports=$(python3 -c 'import socket
ss = [socket.socket() for _ in range(8)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
fi
read -r O1 O2 N1 N2 F1 F2 FA C1 <<<"$(echo $ports)"
# origin O1 O2, nginx N1 N2, immut front F1 F2 (admin FA), churn front C1
CHURN_BUDGET=${CHURN_BUDGET:-256MiB}
CHURN_DURATION=${CHURN_DURATION:-15s}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d /tmp/front-vs-nginx.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT INT TERM

for tool in go nginx wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "need $tool (apt-get install -y nginx wrk curl)" >&2; exit 1; }
done

echo "building immut and the origin..."
(cd "$root" && go build -o "$work/immut" ./cmd/immut && go build -o "$work/origin" ./loadtest/peers/origin)

wait_port() {
  for _ in $(seq 100); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$1$2" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1 did not come up; logs in $work (KEEP=1 keeps them)" >&2; tail -3 "$work"/nginx/error.log "$work"/front.log >&2 || true; exit 1
}

"$work/origin" -ports "$O1,$O2" -keys 1000 -keyfile "$work/keys" 2>"$work/origin.log" &
pids+=($!)
wait_port "$O1" /healthz; wait_port "$O2" /healthz
[ "$(wc -l <"$work/keys")" = 1000 ] || { echo "origin wrote no key file" >&2; exit 1; }

mkdir -p "$work/nginx"
sed -e "s#@DIR@#$work/nginx#g" -e "s/@O1@/$O1/; s/@O2@/$O2/; s/@P1@/$N1/; s/@P2@/$N2/" \
  "$here/nginx.conf.tmpl" >"$work/nginx/nginx.conf"
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log" &
pids+=($!)

IMMUT_TOKEN=bench "$work/immut" front --map "$F1=$O1,$F2=$O2" \
  --admin "127.0.0.1:$FA" --cache-size 1GiB >"$work/front.out" 2>"$work/front.log" &
pids+=($!)
front_pid=$!

key() { sed -n "${1}p" "$work/keys"; }
wait_port "$N1" "$(key 1)"; wait_port "$F1" "$(key 1)"

echo "warming both caches (1,000 keys on each port)..."
for port in $N1 $N2 $F1 $F2; do
  while read -r path; do echo "url = \"http://127.0.0.1:$port$path\""; echo "output = /dev/null"; done <"$work/keys" >"$work/warm-$port"
  curl -s --parallel --parallel-max 16 -K "$work/warm-$port" 2>/dev/null
done
sleep 1
for port in $N1 $F1; do
  xc=$(curl -s -D - -o /dev/null "http://127.0.0.1:$port$(key 7)" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}')
  echo "  port $port X-Cache: $xc"
done

# run_wrk PORT1 PORT2 → "rps p99_ms" for both ports driven at once.
run_wrk() {
  local half=$((CONNS / 2))
  wrk -t1 -c"$half" -d"$DURATION" --latency -s "$here/keys.lua" "http://127.0.0.1:$1" -- "$work/keys" >"$work/wrk-$1" &
  local w1=$!
  wrk -t1 -c"$half" -d"$DURATION" --latency -s "$here/keys.lua" "http://127.0.0.1:$2" -- "$work/keys" >"$work/wrk-$2" &
  local w2=$!
  wait "$w1" "$w2"
  awk -v a="$work/wrk-$1" -v b="$work/wrk-$2" 'function ms(v) {
      if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    FNR==1 {f++}
    /Requests\/sec:/ {rps += $2}
    $1=="99%" {p = ms($2); if (p > p99) p99 = p}
    /Non-2xx|Socket errors/ {err = err " " $0}
    END {printf "%.0f %.2f%s\n", rps, p99, (err ? " ERR:" err : "")}' "$work/wrk-$1" "$work/wrk-$2"
}

echo "load: wrk, $CONNS connections over 2 ports, $DURATION each, 16 KiB objects over 1,000 keys"
for r in $(seq "$ROUNDS"); do
  read -r n_rps n_p99 n_err <<<"$(run_wrk "$N1" "$N2")"
  read -r f_rps f_p99 f_err <<<"$(run_wrk "$F1" "$F2")"
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$front_pid/status")
  printf 'round %d\n' "$r"
  printf '  nginx proxy_cache  %8s req/s   p99 %6s ms %s\n' "$n_rps" "$n_p99" "${n_err:-}"
  printf '  immut front        %8s req/s   p99 %6s ms %s\n' "$f_rps" "$f_p99" "${f_err:-}"
  awk -v f="$f_rps" -v n="$n_rps" -v fp="$f_p99" -v np="$n_p99" \
    'BEGIN {printf "  ratio front/nginx  %8.2fx req/s   p99 %.2fx (lower is better)\n", f/n, fp/np}'
  awk -v f="$f_rps" -v n="$n_rps" -v fp="$f_p99" -v np="$n_p99" 'BEGIN {print f/n, fp/np}' >>"$work/ratios"
  printf '  immut front RSS    %8d KiB\n' "$rss"
done
if [ "$ROUNDS" -gt 1 ]; then
  # The machine may be shared: the median over rounds is the figure to quote.
  sort -n -k1 "$work/ratios" | awk '{r[NR]=$1} END {m = (NR % 2) ? r[(NR+1)/2] : (r[NR/2] + r[NR/2+1]) / 2; printf "median over %d rounds: front/nginx %.2fx req/s", NR, m}'
  sort -n -k2 "$work/ratios" | awk '{r[NR]=$2} END {m = (NR % 2) ? r[(NR+1)/2] : (r[NR/2] + r[NR/2+1]) / 2; printf ", p99 %.2fx\n", m}'
fi
hits=$(curl -s "http://127.0.0.1:$FA/metrics" | awk '$1=="immut_front_cache_hits_total"{print $2}')
misses=$(curl -s "http://127.0.0.1:$FA/metrics" | awk '$1=="immut_front_cache_misses_total"{print $2}')
printf "immut front cache: hits %.0f, misses %.0f\n" "$hits" "$misses"

if [ "${CHURN:-1}" != 0 ]; then
  kill "$front_pid"; wait "$front_pid" 2>/dev/null || true
  IMMUT_TOKEN=bench "$work/immut" front --map "$C1=$O1" --cache-size "$CHURN_BUDGET" >/dev/null 2>"$work/churn.log" &
  pids+=($!)
  churn_pid=$!
  wait_port "$C1" "$(key 1)"
  echo "memory: immut front --cache-size $CHURN_BUDGET, wrk $CONNS connections over 10,000,000 keys for $CHURN_DURATION"
  wrk -t2 -c"$CONNS" -d"$CHURN_DURATION" -s "$here/churn.lua" "http://127.0.0.1:$C1" >"$work/wrk-churn"
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$churn_pid/status")
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$churn_pid/status")
  moved=$(awk '/requests in/ {print $1}' "$work/wrk-churn")
  awk -v h="$hwm" -v r="$rss" -v b="$CHURN_BUDGET" -v n="$moved" 'BEGIN {
    u = tolower(b); m = 1;
    if (u ~ /gib$|g$|gb$/) m = 1048576; else if (u ~ /mib$|m$|mb$/) m = 1024; else if (u ~ /kib$|k$|kb$/) m = 1;
    kib = (b + 0) * m;
    printf "  %d requests (%.1f GiB through the cache); peak RSS %d KiB = %.2fx the budget, now %d KiB = %.2fx\n", n, n * 16 / 1048576, h, h / kib, r, r / kib }'
fi
