// Test hook of the sampler chain (not part of the public API): the distribution one set of logits
// gives under one set of sampling options, and the time one call takes (test/sampler-chain.test.ts
// checks it against a full-sort reference; bench/sampler.mjs times it on 8k and 150k vocabularies).
#include "addon/sampler_wrap.h"
#include "addon/options.h"
#include "sampling/sampler.h"

#include <chrono>
#include <cmath>

namespace specdec {

// _samplerDistribution(logits: Float32Array, options, history: Int32Array, reps = 1)
//   -> { ids: Int32Array, p: Float32Array, nsPerCall: number, drawn: number }
// options: temperature, topK, topP, minP, repeatPenalty, frequencyPenalty, presencePenalty,
// penaltyLastN, seed (the API's names and defaults), position (of the keyed draw `drawn`).
// Runs on the calling thread: a test hook.
static Napi::Value sampler_distribution_js(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsObject() || !info[2].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
        info[2].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
        Napi::TypeError::New(env, "[ERR_INVALID_OPTION] _samplerDistribution(logits: Float32Array, options, history: Int32Array, reps)")
            .ThrowAsJavaScriptException();
        return env.Undefined();
    }
    Napi::Float32Array logits = info[0].As<Napi::Float32Array>();
    Napi::Int32Array hist = info[2].As<Napi::Int32Array>();
    const int64_t reps = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Int64Value() : 1;
    if (logits.ElementLength() == 0 || logits.ElementLength() > (1u << 24) || reps < 1 || reps > 1000000) {
        Napi::RangeError::New(env, "[ERR_INVALID_OPTION] _samplerDistribution: 1..2^24 logits, reps in 1..1e6").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    Napi::Object o = info[1].As<Napi::Object>();
    sampler_chain chain(sampling_options(o));
    const std::vector<int32_t> history(hist.Data(), hist.Data() + hist.ElementLength());
    std::vector<token_prob> dist;
    const int32_t n_vocab = (int32_t) logits.ElementLength();
    chain.distribution(logits.Data(), n_vocab, history, dist);  // warm: the timed calls allocate nothing
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t r = 0; r < reps; ++r) chain.distribution(logits.Data(), n_vocab, history, dist);
    const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / (double) reps;
    Napi::Int32Array ids = Napi::Int32Array::New(env, dist.size());
    Napi::Float32Array p = Napi::Float32Array::New(env, dist.size());
    for (size_t i = 0; i < dist.size(); ++i) {
        ids[i] = dist[i].id;
        p[i] = dist[i].p;
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("ids", ids);
    out.Set("p", p);
    out.Set("nsPerCall", ns);
    // the keyed draw at `position` (options.seed, as the API's seed)
    const double position = get_f64(o, "position", 0.0);
    out.Set("drawn", chain.draw(dist, (uint64_t) position));
    return out;
}

void sampler_init(Napi::Env env, Napi::Object exports) {
    exports.Set("_samplerDistribution", Napi::Function::New(env, sampler_distribution_js));
}

} // namespace specdec
