// A check of one small-batch matrix kernel (kernels/gemm.h) on random data, shared by the test
// hooks of the addon (test/kernels.test.ts) and tools/check-kernels.cpp (cross-compiled checks,
// e.g. NEON under an emulator).
#pragma once

#include "kernels/gemm.h"

#include <cstdint>
#include <string>

namespace specdec::kernels {

struct kernel_check_result {
    uint32_t mismatches           = 0;    // outputs that differ (bit for bit) from gemm_reference
    uint32_t invariant_mismatches = 0;    // outputs that differ between the n-column product and one column at a time
    double   max_rel_diff_dequant = 0.0;  // largest |ours - exact| / sum |w x|, exact being the dot product in
                                          // double of ggml's own dequantization of the weights with the prepared
                                          // activations: a check of the tile layouts independent of ours
};

// The weight type names the check knows: q8_0, q4_0, q4_k, q6_k, f16, bf16.
// Returns false with a message in `error` for an unknown type or bad sizes (k must be a multiple of
// 32, and of 256 for the K-quants).
bool kernel_check(isa kernel, const std::string & type, int64_t rows, int64_t k, int64_t n, uint32_t seed, int64_t parts,
                  kernel_check_result & out, std::string & error);

} // namespace specdec::kernels
