#include "addon/options.h"

namespace specdec {

uint32_t get_u32(const Napi::Object & o, const char * key, uint32_t def) {
    if (!o.Has(key)) return def;
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) return def;
    return v.As<Napi::Number>().Uint32Value();
}

double get_f64(const Napi::Object & o, const char * key, double def) {
    if (!o.Has(key)) return def;
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) return def;
    return v.As<Napi::Number>().DoubleValue();
}

sampling_params sampling_options(const Napi::Object & o) {
    sampling_params sp;
    sp.temperature       = (float) get_f64(o, "temperature", 0.0);
    sp.top_k             = (int32_t) get_f64(o, "topK", 40);
    sp.top_p             = (float) get_f64(o, "topP", 0.95);
    sp.min_p             = (float) get_f64(o, "minP", 0.05);
    sp.repeat_penalty    = (float) get_f64(o, "repeatPenalty", 1.0);
    sp.frequency_penalty = (float) get_f64(o, "frequencyPenalty", 0.0);
    sp.presence_penalty  = (float) get_f64(o, "presencePenalty", 0.0);
    sp.penalty_last_n    = (int32_t) get_f64(o, "penaltyLastN", 64);
    sp.seed              = (uint64_t) get_f64(o, "seed", 0);
    return sp;
}

} // namespace specdec
