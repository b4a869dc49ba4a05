#!/usr/bin/env bash
# Checks that the CUDA build compiles and links: builds the addon and specdec-check with the ggml
# CUDA backend (nvcc; CMAKE_CUDA_ARCHITECTURES, default 90) into build-cuda/, then checks that the
# CUDA backend is in the binaries. Slow on 2 cores (the ggml CUDA kernels): not part of CI.
# Run the binaries on a GPU with scripts/device-check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
node scripts/fetch-ggml.js
jobs="${SPECDEC_JOBS:-$(nproc)}"
arch="${CMAKE_CUDA_ARCHITECTURES:-90}"
npx cmake-js compile --out build-cuda --config Release --log-level warn --parallel "$jobs" \
  --CDSPECDEC_CUDA=ON --CDCMAKE_CUDA_ARCHITECTURES="$arch"
cmake --build build-cuda --target specdec-check --parallel "$jobs"
for f in build-cuda/Release/specdec.node build-cuda/specdec-check; do
  test -f "$f" || { echo "missing $f"; exit 1; }
  nm -C "$f" | grep -q ggml_backend_cuda_init || { echo "$f has no CUDA backend"; exit 1; }
done
ldd build-cuda/Release/specdec.node | grep -Ei "cuda|cublas" || true
echo "CUDA build OK (sm_$arch): build-cuda/Release/specdec.node (use with SPECDEC_BINDING=...), build-cuda/specdec-check"
