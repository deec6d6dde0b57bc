# Source this to build and run with the tch and onnx features by hand:
#   source scripts/env.sh && cargo build --release --features tch,onnx
# It points the builds at the project's Python environment (scripts/setup-python.sh).
_atheria_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# tch builds against the PyPI torch wheel (tch's documented route). torch-sys
# only asks whether LIBTORCH_USE_PYTORCH is set, and reruns its build script
# only when that variable's value changes, not when PATH does: the value is
# this clone's venv so that a clone elsewhere sharing CARGO_TARGET_DIR (CI's
# clean clone) relinks against its own libtorch instead of the path a previous
# clone's build recorded, which fails once that clone is deleted.
export LIBTORCH_USE_PYTORCH="$_atheria_root/.venv"
export PATH="$_atheria_root/.venv/bin:$PATH"
# Keep build outputs outside the clone so fresh clones (and CI) rebuild little.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/atheria/target}"
unset _atheria_root
# libtorch's OpenMP threads spin between forwards unless told otherwise. The
# atheria library sets this itself before it loads the tch library; programs
# that link libtorch directly (backend-tch's tests and examples) read it here.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
