// The addon's entry point: registers the wrapper classes.
#include "addon/kernels_wrap.h"
#include "addon/sampler_wrap.h"
#include "addon/model_wrap.h"
#include "addon/session_wrap.h"
#include "addon/train_wrap.h"
#include "runtime/backends.h"
#include "runtime/rpc.h"

#include <napi.h>

#include <thread>

namespace specdec {

static Napi::Value devices(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env);
    uint32_t i = 0;
    for (const auto & d : list_devices()) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("name", d.name);
        o.Set("description", d.description);
        o.Set("type", d.type);
        out.Set(i++, o);
    }
    return out;
}

static Napi::Value build_info(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
#if defined(SPECDEC_WITH_CUDA)
    o.Set("cuda", true);
#else
    o.Set("cuda", false);
#endif
#if defined(SPECDEC_WITH_METAL)
    o.Set("metal", true);
#else
    o.Set("metal", false);
#endif
    o.Set("hardwareConcurrency", std::thread::hardware_concurrency());
    return o;
}

// rpcServe(endpoint, threads): ggml's RPC server on this thread; blocks while it serves (the CLI's
// rpc-server command runs it in a process of its own) and throws when it cannot start.
static Napi::Value rpc_serve_js(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
        Napi::TypeError::New(env, "[ERR_INVALID_OPTION] rpcServe(endpoint: string, threads: number)").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    try {
        rpc_serve(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Number>().Int32Value());
    } catch (const std::exception & e) {
        Napi::Error::New(env, e.what()).ThrowAsJavaScriptException();
    }
    return env.Undefined();
}

// Test hook: how many native models are alive (loaded and not yet freed by their last owner).
static Napi::Value live_models(const Napi::CallbackInfo & info) {
    return Napi::Number::New(info.Env(), (double) model_live_count());
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
    backends_init();
    exports.Set("Model", model_wrap::init(env));
    exports.Set("LoadTask", load_task_wrap::init(env));
    exports.Set("Session", session_wrap::init(env));
    exports.Set("createSession", Napi::Function::New(env, create_session));
    exports.Set("trainDrafter", Napi::Function::New(env, train_drafter_js));
    exports.Set("devices", Napi::Function::New(env, devices));
    exports.Set("buildInfo", Napi::Function::New(env, build_info));
    exports.Set("_liveModels", Napi::Function::New(env, live_models));
    exports.Set("rpcServe", Napi::Function::New(env, rpc_serve_js));
    kernels_init(env, exports);
    sampler_init(env, exports);
    return exports;
}

} // namespace specdec

static Napi::Object module_init(Napi::Env env, Napi::Object exports) { return specdec::init(env, exports); }

NODE_API_MODULE(specdec, module_init)
