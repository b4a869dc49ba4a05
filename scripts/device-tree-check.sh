#!/usr/bin/env bash
# One call on a GPU machine without Node.js or network: build the addon with CUDA against the N-API
# headers carried in .cudacheck/, then run scripts/cuda-js-check.js (exactness against llama.cpp's
# references) and scripts/cuda-tree-check.js (tree verification on CUDA) with the node binary carried
# in .cudacheck/node.xz. Carry: .cudacheck, .device, node_modules/node-addon-api, dist, deps/llama.cpp/ggml.
set -euo pipefail
cd "$(dirname "$0")/.."
xz -dc .cudacheck/node.xz > /tmp/node && chmod +x /tmp/node
export PATH=/tmp:$PATH
cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DSPECDEC_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" \
  -DCMAKE_JS_VERSION=device -DCMAKE_JS_INC="$PWD/.cudacheck/include" -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/build-cuda/Release" >/dev/null
time cmake --build build-cuda --target specdec -j "$(nproc)" 2>&1 | tail -3
export SPECDEC_BINDING="$PWD/build-cuda/Release/specdec.node"
/tmp/node scripts/cuda-js-check.js .device
/tmp/node scripts/cuda-tree-check.js .device
