// Test hooks for the CPU kernels (not part of the public API): which instruction sets run here,
// and a check of one kernel against the scalar reference on random data.
#include "addon/kernels_wrap.h"
#include "kernels/q8_0_gemm.h"

#include "ggml.h"
#include "ggml-cpu.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace specdec {

using namespace kernels;

static Napi::Value kernel_isas(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env);
    uint32_t i = 0;
    for (isa k : supported_isas()) out.Set(i++, isa_name(k));
    return out;
}

// _kernelCheck(isa, rows, k, n, seed, parts) -> { mismatches, invariantMismatches, maxRelDiffGgml }
//   mismatches:          outputs that differ (bit for bit) from gemm_q8_0_reference
//   invariantMismatches: outputs that differ between the n-column product and one column at a time
//   maxRelDiffGgml:      largest |ours - ggml's vec_dot| / (sum of |terms| bound), a sanity check
static Napi::Value kernel_check(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 6 || !info[0].IsString()) {
        Napi::TypeError::New(env, "[ERR_INVALID_OPTION] _kernelCheck(isa, rows, k, n, seed, parts)").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    isa kernel;
    if (!isa_from_name(info[0].As<Napi::String>().Utf8Value(), kernel) || !isa_supported(kernel)) {
        Napi::Error::New(env, "[ERR_INVALID_OPTION] unknown or unsupported instruction set").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    const int64_t rows  = info[1].As<Napi::Number>().Int64Value();
    const int64_t k     = info[2].As<Napi::Number>().Int64Value();
    const int64_t n     = info[3].As<Napi::Number>().Int64Value();
    const uint32_t seed = info[4].As<Napi::Number>().Uint32Value();
    const int64_t parts = info[5].As<Napi::Number>().Int64Value();
    if (rows < 1 || k < QK8_0 || k % QK8_0 || n < 1 || n > 4096 || rows > 1 << 16 || k > 1 << 16 || parts < 1) {
        Napi::RangeError::New(env, "[ERR_INVALID_OPTION] bad sizes").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    ggml_cpu_init();
    const int64_t nb = k / QK8_0;
    std::mt19937 rng(seed);

    // weights: random int8 (the full range, -128 included) and fp16 scales of mixed magnitude
    std::vector<uint8_t> w((size_t) (rows * nb * 34));
    std::uniform_int_distribution<int> q(-128, 127);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (int64_t i = 0; i < rows * nb; ++i) {
        uint8_t * blk = w.data() + i * 34;
        const ggml_fp16_t d = ggml_fp32_to_fp16(std::ldexp(u(rng), (int) (rng() % 9) - 12));
        std::memcpy(blk, &d, 2);
        for (int j = 0; j < QK8_0; ++j) blk[2 + j] = (uint8_t) (int8_t) q(rng);
    }
    // activations: floats with outliers, quantized as the graph does
    std::vector<float> x((size_t) (k * n));
    for (auto & v : x) v = u(rng) * (rng() % 50 == 0 ? 30.0f : 1.0f);
    std::vector<act_block> act((size_t) (nb * n));
    for (int64_t c = 0; c < n; ++c) quantize_act_q8_0(x.data() + c * k, k, act.data() + c * nb);

    std::vector<float> ref((size_t) (rows * n)), out((size_t) (rows * n), NAN), one((size_t) rows);
    gemm_q8_0_reference(w.data(), rows, k, act.data(), n, ref.data(), rows);
    auto p = pack_q8_0(w.data(), rows, k, kernel);
    for (int64_t i = 0; i < parts; ++i) {
        gemm_q8_0(kernel, *p, act.data(), n, out.data(), rows, p->n_tiles * i / parts, p->n_tiles * (i + 1) / parts);
    }
    uint32_t mismatches = 0, invariant = 0;
    for (int64_t i = 0; i < rows * n; ++i) {
        if (std::memcmp(&ref[i], &out[i], sizeof(float)) != 0) mismatches++;
    }
    for (int64_t c = 0; c < n; ++c) {
        gemm_q8_0(kernel, *p, act.data() + c * nb, 1, one.data(), rows, 0, p->n_tiles);
        if (std::memcmp(one.data(), out.data() + c * rows, rows * sizeof(float)) != 0) invariant++;
    }

    // ggml's own Q8_0 dot product on the same data (differs only in the order of float sums)
    const auto * tr = ggml_get_type_traits_cpu(GGML_TYPE_Q8_0);
    std::vector<uint8_t> xq((size_t) (nb * 34));
    double max_rel = 0.0;
    for (int64_t c = 0; c < n; ++c) {
        tr->from_float(x.data() + c * k, xq.data(), k);
        for (int64_t r = 0; r < rows; ++r) {
            float s = 0.0f;
            tr->vec_dot((int) k, &s, 0, w.data() + r * nb * 34, 0, xq.data(), 0, 1);
            double bound = 0.0;
            for (int64_t b = 0; b < nb; ++b) {
                ggml_fp16_t d;
                std::memcpy(&d, w.data() + (r * nb + b) * 34, 2);
                bound += std::fabs((double) ggml_fp16_to_fp32(d) * act[c * nb + b].d) * 32 * 128 * 127;
            }
            if (bound > 0) max_rel = std::max(max_rel, std::fabs((double) s - out[c * rows + r]) / bound);
        }
    }

    Napi::Object o = Napi::Object::New(env);
    o.Set("mismatches", mismatches);
    o.Set("invariantMismatches", invariant);
    o.Set("maxRelDiffGgml", max_rel);
    return o;
}

void kernels_init(Napi::Env env, Napi::Object exports) {
    exports.Set("_kernelIsas", Napi::Function::New(env, kernel_isas));
    exports.Set("_kernelCheck", Napi::Function::New(env, kernel_check));
}

} // namespace specdec
