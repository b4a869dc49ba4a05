#!/usr/bin/env bash
# Checks that an EAGLE-3 head trained by specdec loads and drafts in llama.cpp built from the same
# pinned submodule (deps/llama.cpp): builds llama-speculative-simple (CPU, native) into
# build-llama/, trains a small head for the code target unless HEAD is given, and runs llama.cpp's
# EAGLE-3 speculative decoding with it. Not part of CI (the build takes several minutes). -nr: the pinned
# llama.cpp crashes in its AMX weight buffers on AMX CPUs (bench/llama-native.mjs).
#
#   scripts/llama-eagle3-check.sh                  # train 2 minutes, then check
#   HEAD=bench/tmp/code-eagle3.gguf scripts/llama-eagle3-check.sh
#
# Env: SPECDEC_SHARED (../shared), MINUTES (2), HEAD.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${SPECDEC_SHARED:-$(cd .. && pwd)/shared}"
TARGET="$SHARED/models/code/code-target-q8_0.gguf"
[ -f "$TARGET" ] || { echo "missing $TARGET" >&2; exit 1; }
[ -f deps/llama.cpp/CMakeLists.txt ] || node scripts/fetch-ggml.js

if [ ! -x build-llama/bin/llama-speculative-simple ]; then
  cmake -S deps/llama.cpp -B build-llama -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF >/dev/null
  cmake --build build-llama --target llama-speculative-simple -j "$(nproc)"
fi

if [ -z "${HEAD:-}" ]; then
  HEAD="$(mktemp -d)/code-eagle3.gguf"
  node dist/cli/index.js train-drafter --model "$TARGET" --kind eagle3 \
    --corpus "$SHARED/corpus/python-packages.jsonl" --out "$HEAD" --minutes "${MINUTES:-2}"
fi

PROMPT=$(node -e "const p=require('$SHARED/eval/code-prompts.json').prompts[0].prompt; process.stdout.write(p.slice(-600))")
LOG="$(mktemp)"
build-llama/bin/llama-speculative-simple -m "$TARGET" -md "$HEAD" --spec-type draft-eagle3 \
  -p "$PROMPT" -n 64 --temp 0 --top-k 1 --seed 1 -t "$(nproc)" --spec-draft-n-max 4 -nr 2>&1 | tee "$LOG" | tail -25
grep -Eq "n_accept|accept" "$LOG" || { echo "FAIL: llama.cpp printed no acceptance statistics" >&2; exit 1; }
echo "OK: llama.cpp loaded and ran the specdec-trained EAGLE-3 head ($HEAD)"
