#!/usr/bin/env bash
# cache-tests.sh runs the public HTTP caching test suite behind
# https://cache-tests.fyi (github.com/http-tests/cache-tests) against
# `immut front`: the suite's origin server on a free loopback port, the front
# in front of it (--map FRONT=ORIGIN), the suite's client against the front.
# It writes the client's results JSON and prints a summary and every failing
# test, then stops everything it started.
#
#   loadtest/peers/cache-tests.sh                 # front only
#   BASELINE=1 loadtest/peers/cache-tests.sh      # also client → origin, no cache
#   CACHE_TESTS_ID=vary-match loadtest/peers/cache-tests.sh   # one test, with
#                                 # the suite's request/response dump
#
#   CACHE_TESTS_DIR  the suite's checkout (default /tmp/cache-tests)
#   OUT_DIR          where results go (default /tmp/cache-tests-results):
#                    front.json (and baseline.json), the client's
#                    {test id: true | [error name, message]}
#   KEEP=1           keep the logs of the origin and the front
#
# Needs: go, node (>= 18: the client uses the built-in fetch), python3, curl.
# The suite is not vendored here: clone it outside the repository.
#
# How it counts (test-engine/lib/results.mjs, which cache-tests.fyi uses):
# a test's kind is "required" unless it says "optimal" or "check". A test
# passes when the client recorded `true`. cache-tests.fyi then shows, in this
# order: "dependency failed" when a test in its depends_on did not pass (or
# said yes, for checks), "setup failed" when the failing assertion was part
# of the setup (the "Setup" error name; "retry" when the cache retried a
# request), "harness failure" for a request timeout (AbortError), and
# otherwise fail (required), optional fail (optimal) or no (check). The
# summary prints those classes and counts "required failed" as required
# tests shown as fail: an assertion on required behaviour, with its
# dependencies passing. Tests marked browser_only are not run (the client
# runs in proxy mode, as for a CDN or reverse proxy).
set -euo pipefail

CACHE_TESTS_DIR=${CACHE_TESTS_DIR:-/tmp/cache-tests}
OUT_DIR=${OUT_DIR:-/tmp/cache-tests-results}
CLIENT_TIMEOUT=${CLIENT_TIMEOUT:-900}   # seconds for one pass of the client

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

for f in test-engine/cli.mjs test-engine/server/server.mjs test-engine/lib/results.mjs tests/index.mjs; do
  if [ ! -f "$CACHE_TESTS_DIR/$f" ]; then
    cat >&2 <<EOF
cache-tests.sh: no HTTP cache test suite at $CACHE_TESTS_DIR (missing $f).
Get it outside this repository, then point CACHE_TESTS_DIR at it:
  git clone https://github.com/http-tests/cache-tests.git /tmp/cache-tests
  (cd /tmp/cache-tests && npm install)   # only needed by versions whose client imports node-fetch
EOF
    exit 1
  fi
done
for tool in go node python3 curl; do
  command -v "$tool" >/dev/null || { echo "cache-tests.sh: need $tool" >&2; exit 1; }
done

work=$(mktemp -d /tmp/cache-tests-run.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT INT TERM

echo "building immut..."
(cd "$root" && go build -o "$work/immut" ./cmd/immut)

# Two free loopback ports, chosen by the kernel (bound at once so they differ).
read -r origin_port front_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])
for x in s: x.close()')

# The suite's server calls listen(port) on every interface; this preload makes
# a bare-port listen bind 127.0.0.1 only.
cat >"$work/loopback.mjs" <<'EOF'
import net from 'node:net'
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (/^\d+$/.test(String(args[0])) && typeof args[1] !== 'string') {
    args[0] = Number(args[0])
    args.splice(1, 0, '127.0.0.1')
  }
  return listen.apply(this, args)
}
EOF

wait_http() { # URL LOG: until URL answers 200, at most 15 s
  for _ in $(seq 150); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "cache-tests.sh: $1 did not answer 200; last lines of $2:" >&2
  tail -5 "$2" >&2 || true
  exit 1
}

# The origin serves files under its working directory; /package.json is the
# path the front's health check polls (the suite has no /healthz).
health_path=/package.json
(cd "$CACHE_TESTS_DIR" && npm_config_protocol=http npm_config_port="$origin_port" \
  npm_config_pidfile="$work/origin.pid" exec node --import "$work/loopback.mjs" \
  test-engine/server/server.mjs) >"$work/origin.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$origin_port$health_path" "$work/origin.log"

"$work/immut" front --map "$front_port=127.0.0.1:$origin_port" --cache-size 64MiB \
  --health-path "$health_path" >"$work/front.out" 2>"$work/front.log" &
pids+=($!)
wait_http "http://127.0.0.1:$front_port$health_path" "$work/front.log"
echo "origin http://127.0.0.1:$origin_port/ (suite server), front http://127.0.0.1:$front_port/ (immut front)"

run_client() { # BASE_URL OUTFILE
  (cd "$CACHE_TESTS_DIR" && npm_config_base="$1" npm_package_config_base="$1" \
    npm_config_id="${CACHE_TESTS_ID:-}" npm_package_config_id="${CACHE_TESTS_ID:-}" \
    timeout "$CLIENT_TIMEOUT" node --no-warnings test-engine/cli.mjs) >"$2" 2>"$2.stderr"
}

if [ -n "${CACHE_TESTS_ID:-}" ]; then
  run_client "http://127.0.0.1:$front_port" "$work/one.out" || true
  cat "$work/one.out" "$work/one.out.stderr"
  echo "--- origin's view (server dump):"
  cat "$work/origin.log"
  exit 0
fi

mkdir -p "$OUT_DIR"
echo "running the suite against the front (a few minutes: the tests pause 3 s between requests)..."
start=$(date +%s)
if ! run_client "http://127.0.0.1:$front_port" "$OUT_DIR/front.json"; then
  echo "cache-tests.sh: the client failed or timed out; stderr:" >&2
  tail -20 "$OUT_DIR/front.json.stderr" >&2
  exit 1
fi
echo "  done in $(($(date +%s) - start)) s"
if [ -n "${BASELINE:-}" ]; then
  echo "running the suite straight against the origin (no cache, baseline)..."
  run_client "http://127.0.0.1:$origin_port" "$OUT_DIR/baseline.json" ||
    { echo "cache-tests.sh: baseline client failed" >&2; tail -20 "$OUT_DIR/baseline.json.stderr" >&2; exit 1; }
fi

cat >"$work/summary.mjs" <<'EOF'
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const [dir, frontFile, baselineFile] = process.argv.slice(2)
const load = rel => import(pathToFileURL(path.join(dir, rel)).href)
const suites = (await load('tests/index.mjs')).default
const { determineTestResult, resultTypes } = await load('test-engine/lib/results.mjs')

// Which tests/<file>.mjs each suite comes from: index.mjs imports each file
// under a name and exports the names in suite order.
const index = fs.readFileSync(path.join(dir, 'tests/index.mjs'), 'utf8')
const fileOf = {}
for (const m of index.matchAll(/import\s+(\w+)\s+from\s+'\.\/([^']+)'/g)) fileOf[m[1]] = m[2]
const order = (index.match(/export default \[([^\]]*)\]/) || [, ''])[1].split(',').map(s => s.trim()).filter(Boolean)
const suiteFile = suite => fileOf[order[suites.indexOf(suite)]] || suite.id

const className = {}
for (const [name, type] of Object.entries(resultTypes)) className[type] = name

function summarise (label, results) {
  const rows = []
  const classes = {}
  let run = 0; let passed = 0; let requiredFailed = 0; let requiredNotPassed = 0
  for (const suite of suites) {
    for (const test of suite.tests) {
      if (!(test.id in results)) continue
      run++
      const raw = results[test.id]
      const cls = className[determineTestResult(suites, test.id, results)]
      classes[cls] = (classes[cls] || 0) + 1
      const kind = test.kind || 'required'
      if (raw === true) { passed++; continue }
      if (cls === 'fail') requiredFailed++
      if (kind === 'required') requiredNotPassed++
      rows.push({ file: suiteFile(suite), id: test.id, kind, cls, name: test.name, msg: raw[1] || raw[0] || '' })
    }
  }
  const notRun = suites.reduce((n, s) => n + s.tests.filter(t => !(t.id in results)).length, 0)
  console.log(`\n== ${label}: ${run} tests run (${notRun} not run: browser-only), ${passed} passed, ${run - passed} failed, ${requiredFailed} required failed`)
  console.log(`   required tests not passing: ${requiredNotPassed} (${requiredFailed} fail, the rest setup, dependency or harness failures)`)
  console.log('   as cache-tests.fyi shows them: ' + Object.entries(classes).map(([k, v]) => `${k} ${v}`).join(', '))
  let file = ''
  for (const r of rows) {
    if (r.file !== file) { file = r.file; console.log(`\n  tests/${file}`) }
    console.log(`    ${r.id}  ${r.kind}  [${r.cls}]  ${r.name}`)
    if (r.msg) console.log(`        ${r.msg}`)
  }
  return results
}

const front = summarise('immut front', JSON.parse(fs.readFileSync(frontFile, 'utf8')))
if (baselineFile) {
  const base = JSON.parse(fs.readFileSync(baselineFile, 'utf8'))
  const ids = Object.keys(front)
  const both = ids.filter(id => front[id] !== true && base[id] !== true)
  const onlyFront = ids.filter(id => front[id] !== true && base[id] === true)
  const fixed = ids.filter(id => front[id] === true && base[id] !== true)
  const basePassed = ids.filter(id => base[id] === true).length
  console.log(`\n== baseline (client straight to the origin, no cache): ${basePassed} of ${ids.length} pass`)
  console.log(`   failing with the front and without any cache (a pass-through fails them too): ${both.length}`)
  console.log(`   failing only with the front (a pass-through passes them): ${onlyFront.length}`)
  for (const id of onlyFront) console.log(`     ${id}`)
  console.log(`   passing only thanks to the front: ${fixed.length}`)
}
EOF
echo "results: $OUT_DIR/front.json${BASELINE:+ and $OUT_DIR/baseline.json}"
node "$work/summary.mjs" "$CACHE_TESTS_DIR" "$OUT_DIR/front.json" ${BASELINE:+"$OUT_DIR/baseline.json"}
