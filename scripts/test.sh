#!/usr/bin/env bash
# The README's test command: sets up everything the tests need (the project's
# Python environment with torch, onnxruntime and safetensors, and this
# checkout's atheria_native module installed in it), then runs every test with
# all three backends and MPI compiled in, none skipped.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup-python.sh
# The browser test of `atheria serve` needs headless Chromium and chromedriver.
bash scripts/setup-browser.sh
# The `mpi` feature (the sparse lattice across MPI ranks) needs Open MPI.
bash scripts/setup-mpi.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
export ATHERIA_REQUIRE_BACKENDS=all
# Test programs of earlier builds pile up in the shared target directory
# (tens of GB over weeks): drop those not rebuilt for 3 days; cargo relinks
# any it still needs.
find "$CARGO_TARGET_DIR/debug/deps" -maxdepth 1 -type f -perm -u+x ! -name '*.*' -mtime +3 -delete 2>/dev/null || true
# A day of many builds fills the disk too (54 GB once, and the Python setup
# then failed for want of space): of each test program and example, keep
# only the three newest builds (`name-<hash>`, newest first; two crates may
# have test programs of one name).
for dir in "$CARGO_TARGET_DIR/debug/deps" "$CARGO_TARGET_DIR/debug/examples"; do
  [[ -d $dir ]] || continue
  find "$dir" -maxdepth 1 -type f -perm -u+x ! -name '*.*' -printf '%T@ %f\n' \
    | sort -rn \
    | awk '{ name = $2; sub(/-[0-9a-f]+$/, "", name); if (++seen[name] > 3) print $2 }' \
    | while read -r old; do rm -f "$dir/$old"; done
done
# Incremental compilation caches grow by gigabytes per change in the shared
# target directory and do not speed up a one-shot test build: off here.
export CARGO_INCREMENTAL=0
rm -rf "$CARGO_TARGET_DIR/debug/incremental"
echo "== python tools"
.venv/bin/python python/test_python_tools.py
echo "== cargo test (features candle, tch, onnx, mpi)"
cargo test --workspace --features candle,tch,onnx,mpi "$@"
echo "== python module (atheria_native, pytest; skips fail the run)"
# test_cli_agreement compares with the atheria program cargo test just built.
ATHERIA_BIN="$CARGO_TARGET_DIR/debug/atheria" .venv/bin/python -m pytest -q -rs \
  -p no:cacheprovider crates/atheria-py/tests
echo "== gpu-check dry run (the GPU machine's script on the CPU, tiny sizes: about 1.5 min)"
# Its accuracy part must pass; the CPU speeds it prints mean nothing.
OUT="$CARGO_TARGET_DIR/gpu-check-dry" ATHERIA_BIN="$CARGO_TARGET_DIR/debug/atheria" \
  PYTHON=.venv/bin/python scripts/gpu-check.sh --cpu 2> "$CARGO_TARGET_DIR/gpu-check-dry.log" \
  || { tail -20 "$CARGO_TARGET_DIR/gpu-check-dry.log"; exit 1; }
echo "== CUDA build (scripts/build-cuda.sh: no GPU needed; the binary must link no CUDA library)"
# Cached outside the clone (~/.cache/atheria/cuda, target-cuda): about a minute
# here once candle's kernels are compiled (an hour the very first time).
bash scripts/build-cuda.sh
# Without a GPU, --device cuda fails at once with one line naming what is missing.
start=$(date +%s%N)
if err=$(./gpu/atheria -q run --device cuda --steps 1 2>&1); then
  echo "gpu/atheria ran on cuda without a GPU"; exit 1
fi
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[[ $(grep -c '^error:' <<<"$err") == 1 && $err == *libcuda* && $ms -lt 1000 ]] \
  || { echo "--device cuda without a GPU: want one error line naming libcuda in < 1 s, got ($ms ms): $err"; exit 1; }
echo "--device cuda without a GPU: refused in $ms ms: ${err#error: }"
echo "== examples (what tests/examples.rs checked, as a user runs them)"
for example in embed sparse_embed shared_backend; do
  cargo run --quiet --features candle,tch,onnx,mpi --example "$example" > /dev/null
done
echo "== lint (fmt, clippy and rustdoc with every backend and MPI)"
cargo fmt --all --check
cargo clippy --workspace --all-targets --features candle,tch,onnx,mpi -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --features candle,tch,onnx,mpi --quiet
