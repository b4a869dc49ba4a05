#!/usr/bin/env bash
# Runs jest on an AddressSanitizer + UndefinedBehaviorSanitizer build of the addon (outside CI).
#
#   scripts/sanitize-test.sh [JEST ARGS...]     e.g. scripts/sanitize-test.sh test/api.test.ts
#
# Builds build-asan/ (SPECDEC_SANITIZE=1: ggml and specdec compiled with
# -fsanitize=address,undefined; skipped when it exists, SPECDEC_REBUILD=1 rebuilds), preloads the
# compiler's libasan into node (ASan must come first in the process), points the binding loader at
# the sanitized addon (SPECDEC_BINDING) and runs jest in band. Every report (ASan errors, UBSan
# "runtime error:" lines) goes to build-asan/reports/; the script fails when there is one.
# Leak checking is off: node itself keeps allocations to exit by design.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build-asan/Release/specdec.node ] || [ -n "${SPECDEC_REBUILD:-}" ]; then
    SPECDEC_SANITIZE=1 node scripts/install.js --force || exit 1
fi
npm run build:ts >/dev/null || exit 1
CXX_BIN=${CXX:-g++}
ASAN_LIB=$("$CXX_BIN" -print-file-name=libasan.so)
UBSAN_LIB=$("$CXX_BIN" -print-file-name=libubsan.so)
rm -rf build-asan/reports && mkdir -p build-asan/reports
log=build-asan/reports/jest.log
echo "[sanitize] jest $* with $ASAN_LIB preloaded; log in $log"
LD_PRELOAD="$ASAN_LIB $UBSAN_LIB" \
ASAN_OPTIONS="detect_leaks=0:halt_on_error=0:log_path=$PWD/build-asan/reports/asan:allow_user_segv_handler=1:detect_odr_violation=0" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=0:log_path=$PWD/build-asan/reports/ubsan" \
SPECDEC_BINDING="$PWD/build-asan/Release/specdec.node" SPECDEC_SANITIZED=1 \
    npx jest --runInBand "$@" 2>&1 | tee "$log" | grep -E "^(PASS|FAIL)|Tests:|Time:"
status=${PIPESTATUS[0]}
reports=$(ls build-asan/reports | grep -v '^jest.log$' || true)
if [ -n "$reports" ]; then
    echo "[sanitize] sanitizer reports:"
    for r in $reports; do echo "== $r"; grep -E "ERROR: AddressSanitizer|runtime error:|SUMMARY" "build-asan/reports/$r" | sort | uniq -c | head -20; done
    exit 1
fi
echo "[sanitize] no sanitizer report (jest exit status $status)"
exit "$status"
