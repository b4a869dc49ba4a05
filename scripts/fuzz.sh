#!/usr/bin/env bash
# Builds the fuzz harnesses and runs each for a given time (outside CI).
#
#   scripts/fuzz.sh [SECONDS_PER_HARNESS] [HARNESS...]      (default 600 s; harnesses: load tokenizer)
#
# load       tools/fuzz/fuzz_load.cpp: libFuzzer (clang, -fsanitize=fuzzer,address,undefined) on the GGUF
#            loader and validation down to a first evaluation. Built in build-fuzz/ (ggml and specdec
#            instrumented). Corpus: build-fuzz/corpus/load, seeded by tools/fuzz/make-corpus.ts (the test
#            writer's tiny models and corrupt variants) and the shared tiny models. Crashes land in
#            build-fuzz/findings/load/.
# tokenizer  tools/fuzz/fuzz-tokenizer.mjs: the tokenizer and detokenizer are TypeScript, out of
#            libFuzzer's reach; a mutation fuzzer in Node over dist/ (npm run build:ts first), seeded
#            from test/fuzz-corpus/tokenizer and the shared vocabularies' test texts.
#
# Needs clang and its libFuzzer runtime (Debian: apt-get install clang libclang-rt-14-dev).
# Each run prints its execution count; SPECDEC_FUZZ_JOBS=N runs N libFuzzer processes at once.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${1:-600}
shift || true
HARNESSES=("$@")
[ ${#HARNESSES[@]} -eq 0 ] && HARNESSES=(load tokenizer)
SHARED=${SPECDEC_SHARED:-../shared}
CC=${CC:-clang}
CXX=${CXX:-clang++}

build_native() {
    cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" \
        -DSPECDEC_FUZZ=ON >/dev/null
    cmake --build build-fuzz --target specdec-fuzz-load -j "${SPECDEC_JOBS:-2}"
}

for h in "${HARNESSES[@]}"; do
    case "$h" in
    load)
        build_native
        mkdir -p build-fuzz/corpus/load build-fuzz/findings/load
        # the seed corpus: the test writer's tiny models and their corrupt variants (written, not committed)
        npx tsc -p tools/fuzz/tsconfig.json
        node build-fuzz/ts/tools/fuzz/make-corpus.js build-fuzz/corpus/load
        # stories260K (1.2 MB) as its first 64 kB: its real metadata and tokenizer arrays (a whole copy
        # slows every execution down; the tiny models of the corpus reach the evaluation)
        [ -f "$SHARED/models/stories260K.gguf" ] && head -c 65536 "$SHARED/models/stories260K.gguf" > build-fuzz/corpus/load/stories260K-head.gguf
        log=build-fuzz/fuzz-load.log
        echo "[fuzz] load: ${SECONDS_PER} s, log in $log"
        # -rss_limit_mb: a loaded model and its session stay far below; -max_len: small inputs mutate and run fastest
        ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
        jobs=()
        [ "${SPECDEC_FUZZ_JOBS:-1}" -gt 1 ] && jobs=(-jobs="$SPECDEC_FUZZ_JOBS" -workers="$SPECDEC_FUZZ_JOBS")
        build-fuzz/specdec-fuzz-load build-fuzz/corpus/load -max_total_time="$SECONDS_PER" -max_len=65536 \
            -rss_limit_mb=4096 -timeout=30 -print_final_stats=1 -artifact_prefix=build-fuzz/findings/load/ "${jobs[@]}" \
            > "$log" 2>&1 || echo "[fuzz] load: the fuzzer stopped on a finding (see $log and build-fuzz/findings/load/)"
        grep -E "^#[0-9]+" "$log" | tail -n 3
        grep -E "runtime error:|ERROR: AddressSanitizer|untyped|SUMMARY" "$log" | sort | uniq -c | head -20
        grep -E "stat::number_of_executed_units" "$log" || true
        ;;
    tokenizer)
        [ -f dist/index.js ] || npm run build:ts
        SPECDEC_SHARED="$SHARED" node tools/fuzz/fuzz-tokenizer.mjs --seconds "$SECONDS_PER"
        ;;
    *) echo "unknown harness $h (load, tokenizer)"; exit 2 ;;
    esac
done
