#!/usr/bin/env bash
# Creates (or reuses) the project-local Python environment in .venv with the pinned
# versions from python/requirements.txt, then builds and installs this checkout's
# Python module (atheria_native, crates/atheria-py) into it. Idempotent: a stamp
# file records the requirements the environment was built from, so a second run
# only rebuilds the module (seconds when cargo's outputs are cached).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
req="$root/python/requirements.txt"
stamp="$venv/.atheria-requirements"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
  echo "setup-python: .venv is up to date"
else
  start=$(date +%s)
  echo "setup-python: creating .venv (torch is ~4.8 GB; about 2 minutes on a fresh machine)"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -r "$req"
  cp "$req" "$stamp"
  echo "setup-python: done in $(( $(date +%s) - start )) s"
fi

# atheria_native from this checkout: maturin (pinned above) builds the release
# abi3 wheel with cargo, showing cargo's progress, into the shared target
# directory of scripts/env.sh (so a fresh clone rebuilds little); pip installs
# it over any older one.
# shellcheck source=scripts/env.sh
source "$root/scripts/env.sh"
start=$(date +%s)
echo "setup-python: building and installing atheria_native (crates/atheria-py; minutes the first time)"
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
"$venv/bin/maturin" build --release --manifest-path "$root/crates/atheria-py/Cargo.toml" \
  --interpreter "$venv/bin/python" --out "$wheels"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$wheels"/*.whl
echo "setup-python: atheria_native $("$venv/bin/python" -c 'import atheria_native; print(atheria_native.__version__)') installed in $(( $(date +%s) - start )) s"
