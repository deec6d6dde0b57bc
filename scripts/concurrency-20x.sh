#!/usr/bin/env bash
# Runs every concurrency test 20 times in a row on every backend (issue: the
# concurrency tests must pass 20 times in a row). Stops at the first failure.
#   scripts/concurrency-20x.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
export ATHERIA_REQUIRE_BACKENDS=all
runs=${1:-20}
features=(--features candle,tch,onnx)
# Build once, so the loop times only the tests.
cargo test -q "${features[@]}" --no-run --test reliability
cargo test -q -p backend-onnx --no-run --test concurrency
cargo test -q -p backend-tch --no-run --test pool
cargo test -q -p backend-candle --no-run --test golden
# Runs one test command; fails unless it passed at least one test, so a
# renamed test cannot turn this loop into a loop of nothing.
run() {
  local out
  out=$(cargo test -q "$@" 2>&1) || { printf '%s\n' "$out"; return 1; }
  grep -Eq 'test result: ok\. [1-9][0-9]* passed' <<<"$out" || {
    printf 'no test ran: cargo test %s\n%s\n' "$*" "$out"
    return 1
  }
}
for i in $(seq 1 "$runs"); do
  start=$(date +%s%N)
  run "${features[@]}" --test reliability engines_on_many_threads
  run -p backend-onnx --test concurrency
  run -p backend-tch --test pool
  run -p backend-candle --test golden threads_share_one_backend
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  printf 'run %2d/%d: all concurrency tests passed (%d ms)\n' "$i" "$runs" "$ms"
done
