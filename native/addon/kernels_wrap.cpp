// Test hooks for the CPU kernels (not part of the public API): which instruction sets run here,
// and a check of one kernel against the scalar reference on random data.
#include "addon/kernels_wrap.h"
#include "kernels/kernel_check.h"

#include "ggml.h"

#include <cstring>
#include <string>

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
//   -> { mismatches, invariantMismatches, maxRelDiffDequant } (kernels/kernel_check.h)
static Napi::Value kernel_check_js(const Napi::CallbackInfo & info) {
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
    const std::string type = info.Length() > 6 && info[6].IsString() ? info[6].As<Napi::String>().Utf8Value() : "q8_0";
    kernel_check_result r;
    std::string error;
    if (!kernels::kernel_check(kernel, type, info[1].As<Napi::Number>().Int64Value(), info[2].As<Napi::Number>().Int64Value(),
                               info[3].As<Napi::Number>().Int64Value(), info[4].As<Napi::Number>().Uint32Value(),
                               info[5].As<Napi::Number>().Int64Value(), r, error)) {
        Napi::Error::New(env, "[ERR_INVALID_OPTION] " + error).ThrowAsJavaScriptException();
        return env.Undefined();
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("mismatches", r.mismatches);
    o.Set("invariantMismatches", r.invariant_mismatches);
    o.Set("maxRelDiffDequant", r.max_rel_diff_dequant);
    return o;
}

// _ggmlDequantize(type, bytes, n) -> Float32Array: ggml's own decoding of n values of a ggml type
// (its type traits' to_float), an independent check of the test suite's GGUF tensor encoders.
static Napi::Value ggml_dequantize_js(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsTypedArray() || !info[2].IsNumber()) {
        Napi::TypeError::New(env, "[ERR_INVALID_OPTION] _ggmlDequantize(type, bytes, n)").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    const int32_t type = info[0].As<Napi::Number>().Int32Value();
    const int64_t n = info[2].As<Napi::Number>().Int64Value();
    Napi::Uint8Array bytes = info[1].As<Napi::Uint8Array>();
    if (type < 0 || type >= GGML_TYPE_COUNT || ggml_blck_size((ggml_type) type) <= 0 ||
        (type != GGML_TYPE_F32 && !ggml_get_type_traits((ggml_type) type)->to_float)) {
        Napi::Error::New(env, "[ERR_INVALID_OPTION] _ggmlDequantize: no such ggml type, or one ggml cannot decode").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    const ggml_type t = (ggml_type) type;
    if (n <= 0 || n % ggml_blck_size(t) != 0 || bytes.ByteLength() < ggml_row_size(t, n)) {
        Napi::Error::New(env, "[ERR_INVALID_OPTION] _ggmlDequantize: n must be a positive multiple of the block size, within the bytes").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    Napi::Float32Array out = Napi::Float32Array::New(env, (size_t) n);
    if (t == GGML_TYPE_F32) std::memcpy(out.Data(), bytes.Data(), (size_t) n * sizeof(float));
    else ggml_get_type_traits(t)->to_float(bytes.Data(), out.Data(), n);
    return out;
}

void kernels_init(Napi::Env env, Napi::Object exports) {
    exports.Set("_ggmlDequantize", Napi::Function::New(env, ggml_dequantize_js));
    exports.Set("_kernelIsas", Napi::Function::New(env, kernel_isas));
    exports.Set("_kernelCheck", Napi::Function::New(env, kernel_check_js));
}

} // namespace specdec
