#include "kernels/kernel_check.h"

#include "ggml.h"
#include "ggml-cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

namespace specdec::kernels {

bool kernel_check(isa kernel, const std::string & type_name, int64_t rows, int64_t k, int64_t n, uint32_t seed,
                  int64_t parts, kernel_check_result & res, std::string & error) {
    const std::pair<const char *, ggml_type> types[] = {
        { "q8_0", GGML_TYPE_Q8_0 }, { "q4_0", GGML_TYPE_Q4_0 }, { "q4_k", GGML_TYPE_Q4_K }, { "q6_k", GGML_TYPE_Q6_K },
        { "f16", GGML_TYPE_F16 }, { "bf16", GGML_TYPE_BF16 } };
    ggml_type gt = GGML_TYPE_COUNT;
    for (const auto & t : types) {
        if (type_name == t.first) gt = t.second;
    }
    wtype wt;
    if (gt == GGML_TYPE_COUNT || !wtype_from_ggml(gt, wt)) {
        error = "unknown weight type '" + type_name + "'";
        return false;
    }
    const int64_t blck = ggml_blck_size(gt);
    if (rows < 1 || k < blck || k % blck || k % QK8_0 || n < 1 || n > 4096 || rows > 1 << 16 || k > 1 << 16 || parts < 1) {
        error = "bad sizes";
        return false;
    }
    ggml_cpu_init();
    std::mt19937 rng(seed);

    // weights: random bytes (every quantized value, scale and min code, the extremes included),
    // with the fp16 super-scales set to finite values of mixed magnitude
    const size_t row_bytes = ggml_row_size(gt, k);
    const size_t blk_bytes = ggml_type_size(gt);
    std::vector<uint8_t> w(row_bytes * (size_t) rows);
    for (auto & v : w) v = (uint8_t) rng();
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    const auto scale = [&](uint8_t * at, int exp_lo) {
        const ggml_fp16_t d = ggml_fp32_to_fp16(std::ldexp(u(rng), (int) (rng() % 9) + exp_lo));
        std::memcpy(at, &d, 2);
    };
    if (gt == GGML_TYPE_F16 || gt == GGML_TYPE_BF16) {
        // finite values over 12 binades, and zeros
        std::vector<float> wf((size_t) (rows * k));
        for (auto & v : wf) v = rng() % 17 == 0 ? 0.0f : std::ldexp(u(rng), (int) (rng() % 12) - 8);
        ggml_get_type_traits_cpu(gt)->from_float(wf.data(), w.data(), rows * k);
    } else {
        for (size_t off = 0; off < w.size(); off += blk_bytes) {
            switch (gt) {
                case GGML_TYPE_Q4_K: scale(w.data() + off, -16); scale(w.data() + off + 2, -16); break;
                case GGML_TYPE_Q6_K: scale(w.data() + off + 208, -18); break;
                default:             scale(w.data() + off, -12); break;
            }
        }
    }
    // activations: floats with outliers, quantized as the graph does
    std::vector<float> x((size_t) (k * n));
    for (auto & v : x) v = u(rng) * (rng() % 50 == 0 ? 30.0f : 1.0f);
    const act_type at = act_type_for(wt);
    const size_t col_bytes = act_column_bytes(at, k);
    std::vector<uint8_t> act(col_bytes * (size_t) n);
    for (int64_t c = 0; c < n; ++c) quantize_act(at, x.data() + c * k, k, act.data() + c * col_bytes);
    // the activation values the products see
    const auto act_value = [&](int64_t c, int64_t i) -> double {
        if (at == act_type::f16 || at == act_type::bf16) return ((const float *) (act.data() + c * col_bytes))[i];
        const act_block & a = ((const act_block *) (act.data() + c * col_bytes))[i / QK8_0];
        return (double) a.d * ((const int8_t *) a.q4)[i % QK8_0];
    };

    std::vector<float> ref((size_t) (rows * n)), out((size_t) (rows * n), NAN), one((size_t) rows);
    gemm_reference(wt, w.data(), rows, k, act.data(), n, ref.data(), rows);
    auto p = pack_weights(wt, w.data(), rows, k, kernel);
    for (int64_t i = 0; i < parts; ++i) {
        gemm(kernel, *p, act.data(), n, out.data(), rows, p->n_tiles * i / parts, p->n_tiles * (i + 1) / parts);
    }
    uint32_t mismatches = 0, invariant = 0;
    for (int64_t i = 0; i < rows * n; ++i) {
        if (std::memcmp(&ref[i], &out[i], sizeof(float)) != 0) mismatches++;
    }
    for (int64_t c = 0; c < n; ++c) {
        gemm(kernel, *p, act.data() + c * col_bytes, 1, one.data(), rows, 0, p->n_tiles);
        if (std::memcmp(one.data(), out.data() + c * rows, rows * sizeof(float)) != 0) invariant++;
    }

    // ggml's dequantization of the weights against the quantized activations, in double
    const auto * tr = ggml_get_type_traits(gt);
    std::vector<float> wf((size_t) k);
    double max_rel = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
        tr->to_float(w.data() + r * row_bytes, wf.data(), k);
        for (int64_t c = 0; c < n; ++c) {
            double exact = 0.0, bound = 0.0;
            for (int64_t i = 0; i < k; ++i) {
                const double xv = act_value(c, i);
                exact += (double) wf[i] * xv;
                bound += std::fabs((double) wf[i] * xv);
            }
            if (bound > 0) max_rel = std::max(max_rel, std::fabs(exact - out[c * rows + r]) / bound);
        }
    }

    res.mismatches = mismatches;
    res.invariant_mismatches = invariant;
    res.max_rel_diff_dequant = max_rel;
    return true;
}

} // namespace specdec::kernels
