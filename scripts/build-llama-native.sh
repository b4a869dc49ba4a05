#!/usr/bin/env bash
# Builds native llama.cpp from the pinned submodule (deps/llama.cpp: the llama.cpp and ggml that
# node-llama-cpp 3.21.1 ships) for the benchmarks' native peer: llama-bench (autoregressive decode),
# llama-speculative-simple (its draft-model speculation) and llama-lookup (its prompt lookup), CPU
# only, -march=native, into build-llama/bin. bench:ar and bench:spec report them beside
# node-llama-cpp when they are there. Not part of CI (several minutes on 2 cores).
#
#   scripts/build-llama-native.sh          # builds what is missing
#   JOBS=1 scripts/build-llama-native.sh   # fewer compile jobs (default: nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f deps/llama.cpp/CMakeLists.txt ] || node scripts/fetch-ggml.js
TARGETS=(llama-bench llama-speculative-simple llama-lookup)
missing=()
for t in "${TARGETS[@]}"; do [ -x "build-llama/bin/$t" ] || missing+=("$t"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "build-llama/bin has ${TARGETS[*]}"
  exit 0
fi
cmake -S deps/llama.cpp -B build-llama -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
  -DGGML_CUDA=OFF -DGGML_METAL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF >/dev/null
cmake --build build-llama --target "${missing[@]}" -j "${JOBS:-$(nproc)}"
for t in "${TARGETS[@]}"; do [ -x "build-llama/bin/$t" ] || { echo "build-llama/bin/$t was not built" >&2; exit 1; }; done
echo "built: ${TARGETS[*]} in build-llama/bin"
