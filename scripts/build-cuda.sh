#!/usr/bin/env bash
# Builds a release `atheria` with candle's CUDA backend (`--features cuda`)
# on a machine with no GPU and no CUDA toolkit, for the GPU machines
# (compute capability 9.0, the H200; CUDA 13.0 driver).
#
#   scripts/build-cuda.sh            # -> gpu/atheria (stripped), checked with readelf
#
# - nvcc and the CUDA headers come from NVIDIA's PyPI wheels, pinned to
#   CUDA 13.0 (a newer nvcc writes PTX the 13.0 driver cannot load), in a
#   venv of their own under ~/.cache/atheria/cuda (not the clone).
# - The binary links no CUDA library: candle-core asks cudarc for
#   `dynamic-linking`, so the build patches a copy of cudarc whose
#   `dynamic-linking` is `dynamic-loading` (dlopen of libcuda, libcublas,
#   libnvrtc, libcurand at first use); candle-kernels' own CUDA code gets
#   NVIDIA's static runtime (libcudart_static.a). The readelf check at the
#   end fails the build if any CUDA library is still NEEDED.
# - Everything is cached: the venv, the patched cudarc and the target
#   folder ($ATHERIA_CUDA_TARGET, default ~/.cache/atheria/target-cuda), so
#   a second run only relinks what changed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${ATHERIA_CUDA_CACHE:-$HOME/.cache/atheria/cuda}
target=${ATHERIA_CUDA_TARGET:-$HOME/.cache/atheria/target-cuda}
out=${ATHERIA_CUDA_OUT:-$root/gpu/atheria}
# CUDA 13.0, as the GPU machines' driver and their PyTorch (2.11+cu130).
wheels=(nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88
        nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85)
cudarc_version=0.19.10
started=$(date +%s)

say() { echo "build-cuda: $*" >&2; }
die() { say "error: $*"; exit 1; }

# 1. The compiler, once.
python=${PYTHON:-python3}
stamp="$cache/venv/.atheria-wheels"
if [[ ! -f $stamp || $(cat "$stamp") != "${wheels[*]}" ]]; then
    say "installing nvcc ${wheels[0]#*==} from PyPI into $cache/venv"
    mkdir -p "$cache"
    "$python" -m venv "$cache/venv" || die "cannot make a venv with $python (set PYTHON to a python3 with venv)"
    "$cache/venv/bin/pip" install -q "${wheels[@]}" || die "pip could not install ${wheels[*]}"
    echo "${wheels[*]}" > "$stamp"
fi
cuda=$(echo "$cache"/venv/lib/python3*/site-packages/nvidia/cu13)
[[ -x $cuda/bin/nvcc ]] || die "no nvcc in $cuda/bin: remove $cache/venv and run again"
export PATH="$cuda/bin:$PATH"
export CUDA_HOME="$cuda" CUDA_PATH="$cuda" CUDA_ROOT="$cuda"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CUDARC_CUDA_VERSION=13000
# candle-kernels links its own CUDA code (libmoe.a) with `-lcudart`. Offer
# the linker only NVIDIA's static runtime under that name, so the runtime
# is linked in (it loads the driver itself, at first use) and the binary
# needs no libcudart.so at start.
mkdir -p "$cache/lib"
rm -f "$cache/lib/libcudart.so"
ln -sf "$cuda/lib/libcudart_static.a" "$cache/lib/libcudart.a"
export LIBRARY_PATH="$cache/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"

# 2. cudarc with dynamic loading in place of dynamic linking, once.
patched="$cache/cudarc-$cudarc_version-dynamic-loading"
if [[ ! -f $patched/.atheria-patched ]]; then
    (cd "$root" && cargo fetch -q) || die "cargo fetch failed (crates.io unreachable?)"
    src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-$cudarc_version | head -1)
    [[ -d $src ]] || die "cudarc $cudarc_version is not in the cargo registry"
    rm -rf "$patched" && cp -r "$src" "$patched"
    # The feature candle-core selects loads the libraries instead of linking them.
    sed -i 's/^dynamic-linking = \[\]/dynamic-linking = ["dynamic-loading"]/' "$patched/Cargo.toml"
    sed -i 's/#\[cfg(all(feature = "dynamic-loading", feature = "dynamic-linking"))\]/#[cfg(any())]/' "$patched/build.rs"
    python3 - "$patched/build.rs" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
old = '#[cfg(feature = "dynamic-linking")]\n    dynamic_linking(major, minor);'
assert old in s, "cudarc build.rs changed: update scripts/build-cuda.sh"
s = s.replace(old, '#[cfg(all(feature = "dynamic-linking", not(feature = "dynamic-loading")))]\n    dynamic_linking(major, minor);')
open(p, "w").write(s)
PY
    grep -q 'dynamic-linking = \["dynamic-loading"\]' "$patched/Cargo.toml" || die "could not patch cudarc's Cargo.toml"
    touch "$patched/.atheria-patched"
fi

# 3. The build. The patch rewrites Cargo.lock's cudarc entry: keep the clone's.
saved_lock=$(mktemp)
cp "$root/Cargo.lock" "$saved_lock"
trap 'cp "$saved_lock" "$root/Cargo.lock"; rm -f "$saved_lock"' EXIT
say "cargo build --release --features cuda (target $target)"
(cd "$root" && CARGO_TARGET_DIR="$target" cargo build --release -p atheria-cli --features cuda \
    --config "patch.crates-io.cudarc.path=\"$patched\"")
bin="$target/release/atheria"

# 4. No CUDA library at link time.
needed=$(readelf -d "$bin" | grep NEEDED || true)
if grep -Eq 'libcuda|libcudart|libcublas|libnvrtc|libcurand' <<<"$needed"; then
    die "$bin links CUDA libraries at link time:
$needed"
fi
mkdir -p "$(dirname "$out")"
strip -o "$out.tmp" "$bin" && mv "$out.tmp" "$out"
say "ok: $out ($(du -h "$out" | cut -f1), no CUDA library NEEDED) in $(( $(date +%s) - started )) s"
