#!/usr/bin/env bash
# Creates (or reuses) the project-local Python environment in .venv with the pinned
# versions from python/requirements.txt. Idempotent: a stamp file records the
# requirements it was built from, so a second run takes well under a second.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
req="$root/python/requirements.txt"
stamp="$venv/.atheria-requirements"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
  echo "setup-python: .venv is up to date"
  exit 0
fi
start=$(date +%s)
echo "setup-python: creating .venv (torch is ~4.8 GB; about 2 minutes on a fresh machine)"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -r "$req"
cp "$req" "$stamp"
echo "setup-python: done in $(( $(date +%s) - start )) s"
