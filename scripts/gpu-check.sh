#!/usr/bin/env bash
# The device engine against PyTorch on a GPU machine, from the files that
# travel there (the repository, and gpu/atheria from scripts/build-cuda.sh):
# every golden architecture after 10 steps (max |diff|, bound 1e-4), the
# steps/s of both at 128, 512 and 2048 squared with D=64 conv3x3 and U-Net,
# and peak device memory; one JSON file, $OUT/gpu-check.json; under 5 minutes
# (python/gpu_check.py has the details).
#
#   scripts/gpu-check.sh                 # on the GPU machine (device tool: carry gpu/atheria)
#   scripts/gpu-check.sh --cpu           # dry run here: CPU binary, CPU torch, tiny sizes
#
# The binary loads libcuda, libcublas, libcurand and libnvrtc at run time;
# on the GPU machine they come from the driver and from the nvidia-* wheels
# beside its PyTorch (CUDA 13), found here and put on LD_LIBRARY_PATH.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
mode=gpu
[[ ${1:-} == --cpu ]] && mode=cpu
out=${OUT:-$root/out/gpu-check}
mkdir -p "$out"

if [[ $mode == cpu ]]; then
    python=${PYTHON:-$root/.venv/bin/python}
    bin=${ATHERIA_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/atheria/target}/release/atheria}
else
    python=${PYTHON:-python3}
    bin=${ATHERIA_BIN:-$root/gpu/atheria}
fi
[[ -x $bin ]] || { echo "gpu-check: error: no binary at $bin (scripts/build-cuda.sh builds gpu/atheria; set ATHERIA_BIN)" >&2; exit 2; }
"$python" -c 'import torch' 2>/dev/null || { echo "gpu-check: error: $python has no torch (set PYTHON)" >&2; exit 2; }

if [[ $mode == gpu ]]; then
    # The CUDA 13 libraries of PyTorch's wheels, then the driver's folders.
    libs=$("$python" - <<'PY'
import glob, os, site
dirs = []
for base in site.getsitepackages() + [site.getusersitepackages()]:
    dirs += sorted(glob.glob(os.path.join(base, "nvidia", "*", "lib")))
print(":".join(d for d in dirs if os.path.isdir(d)))
PY
)
    export LD_LIBRARY_PATH="$libs:/usr/local/nvidia/lib64:/usr/local/nvidia/lib:/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "gpu-check: LD_LIBRARY_PATH=$LD_LIBRARY_PATH" >&2
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2 || true
    # One line saying which library is missing, before any measurement.
    timeout 60 "$bin" run --device cuda --steps 1 --grid 8 >"$out/smoke.log" 2>&1 \
        || { tail -3 "$out/smoke.log" >&2; echo "gpu-check: error: the binary cannot step on cuda (above)" >&2; }
fi

flags=()
if [[ $mode == cpu ]]; then flags=(--cpu); fi
exec timeout 290 "$python" "$root/python/gpu_check.py" --bin "$bin" --out "$out" "${flags[@]}"
