#!/usr/bin/env bash
# Checks the aarch64 (NEON, dotprod) kernels on this x86 machine: cross-compiles
# specdec-kernel-check (tools/check-kernels.cpp, with ggml) for aarch64 into build-aarch64/, then
# runs it under qemu-user twice: on an emulated CPU with the int8 dot product instructions (every
# path, neon-dotprod included, bit for bit against the scalar reference) and on one without them
# (the generic path alone). Needs the Debian packages g++-aarch64-linux-gnu and qemu-user
# (installed when missing and apt-get is usable). Emulated, so correctness only, no timings; not
# part of CI (a few minutes to build ggml for aarch64 on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q g++-aarch64-linux-gnu qemu-user
fi
node scripts/fetch-ggml.js
jobs="${SPECDEC_JOBS:-$(nproc)}"
cmake -S . -B build-aarch64 -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
  -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ \
  -DSPECDEC_NATIVE=OFF >/dev/null
cmake --build build-aarch64 --target specdec-kernel-check --parallel "$jobs"
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
echo "== emulated CPU with dotprod (-cpu max)"
out="$(qemu-aarch64 -cpu max build-aarch64/specdec-kernel-check)"
echo "$out"
echo "$out" | grep -q '^neon-dotprod' || { echo "the neon-dotprod path was not selected"; exit 1; }
echo "== emulated CPU without dotprod (-cpu cortex-a57)"
out="$(qemu-aarch64 -cpu cortex-a57 build-aarch64/specdec-kernel-check)"
echo "$out"
if echo "$out" | grep -q '^neon-dotprod'; then echo "neon-dotprod offered on a CPU without it"; exit 1; fi
echo "NEON kernel checks OK"
