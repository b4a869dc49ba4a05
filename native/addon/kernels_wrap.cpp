// Test hooks for the CPU kernels (not part of the public API): which instruction sets run here,
// and a check of one kernel against the scalar reference on random data.
#include "addon/kernels_wrap.h"
#include "kernels/quant_gemm.h"

#include "ggml.h"
#include "ggml-cpu.h"

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <utility>
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

// _kernelCheck(isa, rows, k, n, seed, parts, type = 'q8_0')
//   -> { mismatches, invariantMismatches, maxRelDiffDequant }
//   mismatches:          outputs that differ (bit for bit) from gemm_reference
//   invariantMismatches: outputs that differ between the n-column product and one column at a time
//   maxRelDiffDequant:   largest |ours - exact| / sum |w x|, where exact is the dot product in double
//                        of ggml's own dequantization of the weights with the quantized
//                        activations: a check of the tile layouts independent of ours
static Napi::Value kernel_check(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 6 || !info[0].IsString()) {
        Napi::TypeError::New(env, "[ERR_INVALID_OPTION] _kernelCheck(isa, rows, k, n, seed, parts, type)").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    isa kernel;
    if (!isa_from_name(info[0].As<Napi::String>().Utf8Value(), kernel) || !isa_supported(kernel)) {
        Napi::Error::New(env, "[ERR_INVALID_OPTION] unknown or unsupported instruction set").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    const std::string type_name = info.Length() > 6 && info[6].IsString() ? info[6].As<Napi::String>().Utf8Value() : "q8_0";
    const std::pair<const char *, ggml_type> types[] = {
        { "q8_0", GGML_TYPE_Q8_0 }, { "q4_0", GGML_TYPE_Q4_0 }, { "q4_k", GGML_TYPE_Q4_K }, { "q6_k", GGML_TYPE_Q6_K } };
    ggml_type gt = GGML_TYPE_COUNT;
    for (const auto & t : types) {
        if (type_name == t.first) gt = t.second;
    }
    wtype wt;
    if (gt == GGML_TYPE_COUNT || !wtype_from_ggml(gt, wt)) {
        Napi::Error::New(env, "[ERR_INVALID_OPTION] unknown weight type '" + type_name + "'").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    const int64_t rows  = info[1].As<Napi::Number>().Int64Value();
    const int64_t k     = info[2].As<Napi::Number>().Int64Value();
    const int64_t n     = info[3].As<Napi::Number>().Int64Value();
    const uint32_t seed = info[4].As<Napi::Number>().Uint32Value();
    const int64_t parts = info[5].As<Napi::Number>().Int64Value();
    const int64_t blck  = ggml_blck_size(gt);
    if (rows < 1 || k < blck || k % blck || n < 1 || n > 4096 || rows > 1 << 16 || k > 1 << 16 || parts < 1) {
        Napi::RangeError::New(env, "[ERR_INVALID_OPTION] bad sizes").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    ggml_cpu_init();
    const int64_t nb = k / QK8_0;
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
    for (size_t off = 0; off < w.size(); off += blk_bytes) {
        switch (gt) {
            case GGML_TYPE_Q4_K: scale(w.data() + off, -16); scale(w.data() + off + 2, -16); break;
            case GGML_TYPE_Q6_K: scale(w.data() + off + 208, -18); break;
            default:             scale(w.data() + off, -12); break;
        }
    }
    // activations: floats with outliers, quantized as the graph does
    std::vector<float> x((size_t) (k * n));
    for (auto & v : x) v = u(rng) * (rng() % 50 == 0 ? 30.0f : 1.0f);
    std::vector<act_block> act((size_t) (nb * n));
    for (int64_t c = 0; c < n; ++c) quantize_act(act_type_for(wt), x.data() + c * k, k, act.data() + c * nb);

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
        gemm(kernel, *p, act.data() + c * nb, 1, one.data(), rows, 0, p->n_tiles);
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
                const act_block & a = act[c * nb + i / QK8_0];
                const double xv = (double) a.d * ((const int8_t *) a.q4)[i % QK8_0];
                exact += (double) wf[i] * xv;
                bound += std::fabs((double) wf[i] * xv);
            }
            if (bound > 0) max_rel = std::max(max_rel, std::fabs(exact - out[c * rows + r]) / bound);
        }
    }

    Napi::Object o = Napi::Object::New(env);
    o.Set("mismatches", mismatches);
    o.Set("invariantMismatches", invariant);
    o.Set("maxRelDiffDequant", max_rel);
    return o;
}

void kernels_init(Napi::Env env, Napi::Object exports) {
    exports.Set("_kernelIsas", Napi::Function::New(env, kernel_isas));
    exports.Set("_kernelCheck", Napi::Function::New(env, kernel_check));
}

} // namespace specdec
