#!/usr/bin/env bash
# The GPU check, for a machine with CUDA and no Node.js: builds specdec-check with the ggml CUDA
# backend and compares greedy output on the CPU and CUDA backends with llama.cpp's reference
# tokens (made on the CPU), then measures batch invariance on CUDA. Inputs in $1 (default .device/):
# MODEL.gguf, MODEL.prompts (token ids per line), MODEL.ref (llama.cpp's greedy tokens per line).
set -uo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.device}"
out="${OUT:-/tmp}"
jobs="$(nproc)"
t0=$(date +%s)
bin="${DEVICE_BIN:-build-dev/specdec-check}"
backends="${BACKENDS:-cpu cuda}"
if [ -z "${DEVICE_BIN:-}" ]; then
cmake -S . -B build-dev -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPECDEC_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CMAKE_CUDA_ARCHITECTURES:-90}" > "$out/configure.log" 2>&1 \
  || { tail -30 "$out/configure.log"; exit 1; }
cmake --build build-dev --target specdec-check --parallel "$jobs" > "$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
for m in "$dir"/*.gguf; do
  name=$(basename "$m" .gguf)
  [ -f "$dir/$name.prompts" ] || continue
  args=()
  while IFS= read -r line; do args+=(--prompt "$line"); done < "$dir/$name.prompts"
  for backend in $backends; do
    for threads in 1 2; do
      [ "$backend" = cuda ] && [ "$threads" = 2 ] && continue
      "$bin" "$m" --backend "$backend" --threads "$threads" --tokens 64 --ctx 1024 "${args[@]}" > "$out/$name.$backend.$threads.out" 2> "$out/$name.$backend.$threads.err" \
        || { echo "$name $backend: FAILED"; tail -5 "$out/$name.$backend.$threads.err"; continue; }
      same=0; total=0
      while IFS= read -r a && IFS= read -r b <&3; do
        # compare over the reference's length (it may be shorter than --tokens)
        n=$(wc -w <<< "$b"); a=$(tr ' ' '\n' <<< "$a" | head -n "$n" | paste -sd' ')
        total=$((total+1)); [ "$a" = "$b" ] && same=$((same+1))
      done < "$out/$name.$backend.$threads.out" 3< "$dir/$name.ref"
      echo "$name backend=$backend threads=$threads identical-to-llama.cpp=$same/$total $(grep -o 'decode.*' "$out/$name.$backend.$threads.err" | tail -n 1)"
    done
  done
  [[ " $backends " == *" cuda "* ]] && "$bin" "$m" --backend cuda --invariance --ctx 1024 "${args[@]}" 2>/dev/null | sed "s/^/$name cuda /"
done
echo "total: $(( $(date +%s) - t0 )) s"
