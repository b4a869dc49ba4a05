// specdec-kernel-check: the kernel checks of test/kernels.test.ts without Node, for builds that
// cannot run the addon here (a cross-compiled aarch64 build under an emulator:
// scripts/check-neon.sh). Every supported instruction set, every weight type, odd sizes and every
// batch size 1..64 against the scalar reference, bit for bit, and batch invariance.
//
//   specdec-kernel-check            exit status 0 when every check passes
#include "kernels/kernel_check.h"

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

using namespace specdec::kernels;

int main() {
    const std::vector<std::pair<std::string, std::vector<std::pair<int64_t, int64_t>>>> cases = {
        { "q8_0", { { 1, 32 }, { 15, 96 }, { 16, 512 }, { 17, 32 }, { 33, 512 } } },
        { "q4_0", { { 1, 32 }, { 15, 96 }, { 16, 512 }, { 17, 32 }, { 33, 512 } } },
        { "q4_k", { { 1, 256 }, { 15, 768 }, { 17, 256 } } },
        { "q6_k", { { 1, 256 }, { 15, 768 }, { 17, 256 } } },
        { "f16", { { 1, 32 }, { 15, 96 }, { 17, 32 }, { 33, 512 } } },
        { "bf16", { { 1, 32 }, { 15, 96 }, { 17, 32 }, { 33, 512 } } },
    };
    int failures = 0;
    for (isa kernel : supported_isas()) {
        for (const auto & [type, shapes] : cases) {
            uint32_t seed = 1;
            double worst = 0.0;
            int bad = 0;
            for (const auto & [rows, k] : shapes) {
                for (int64_t n = 1; n <= 64; ++n) {
                    kernel_check_result r;
                    std::string error;
                    if (!kernel_check(kernel, type, rows, k, n, seed++, 1 + n % 3, r, error)) {
                        fprintf(stderr, "%s %s: %s\n", isa_name(kernel), type.c_str(), error.c_str());
                        return 2;
                    }
                    if (r.mismatches || r.invariant_mismatches || r.max_rel_diff_dequant > 2e-6) {
                        if (bad++ == 0) {
                            fprintf(stderr, "%s %s rows=%lld k=%lld n=%lld: %u mismatches, %u not invariant, rel %.3g\n",
                                    isa_name(kernel), type.c_str(), (long long) rows, (long long) k, (long long) n,
                                    r.mismatches, r.invariant_mismatches, r.max_rel_diff_dequant);
                        }
                    }
                    if (r.max_rel_diff_dequant > worst) worst = r.max_rel_diff_dequant;
                }
            }
            printf("%-12s %-5s %s (worst relative difference from ggml's dequantization %.2g)\n", isa_name(kernel),
                   type.c_str(), bad ? "FAIL" : "ok", worst);
            failures += bad;
        }
    }
    return failures ? 1 : 0;
}
