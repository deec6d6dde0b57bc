#!/usr/bin/env bash
# Open MPI from Debian's packages, for the `mpi` feature (crates/distributed,
# `atheria run --distributed`): the library and mpirun (libopenmpi-dev,
# openmpi-bin), and what rsmpi's build needs to generate its bindings
# (libclang through bindgen, pkg-config to find MPI). Installs them with
# apt-get only when missing; quiet when everything is there.
set -euo pipefail
missing=()
command -v mpirun >/dev/null || missing+=(openmpi-bin)
command -v mpicc >/dev/null || missing+=(libopenmpi-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
compgen -G "/usr/lib/llvm-*/lib/libclang*.so*" >/dev/null \
  || compgen -G "/usr/lib/x86_64-linux-gnu/libclang*.so*" >/dev/null \
  || missing+=(libclang-dev)
# bindgen runs clang's headers too.
compgen -G "/usr/lib/llvm-*/lib/clang/*/include/stddef.h" >/dev/null || missing+=(clang)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "== installing ${missing[*]} (apt-get)"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
