// N-API wrapper of the immutable model, and the async load task.
#pragma once

#include "model/model.h"

#include <napi.h>

#include <string>
#include <vector>

#include <atomic>
#include <memory>

namespace specdec {

class model_wrap : public Napi::ObjectWrap<model_wrap> {
public:
    static Napi::Function init(Napi::Env env);
    static Napi::FunctionReference constructor;

    explicit model_wrap(const Napi::CallbackInfo & info);

    std::shared_ptr<const model> get(Napi::Env env) const;

private:
    Napi::Value info(const Napi::CallbackInfo & info);
    Napi::Value vocab_check(const Napi::CallbackInfo & info);
    void dispose(const Napi::CallbackInfo & info);

    std::shared_ptr<const model> m;
};

// new LoadTask(path, backend, cpuKernels, { rpc?, tensorSplit? }?).start(onProgress) -> Promise<Model>; .cancel()
class load_task_wrap : public Napi::ObjectWrap<load_task_wrap> {
public:
    static Napi::Function init(Napi::Env env);
    explicit load_task_wrap(const Napi::CallbackInfo & info);

private:
    Napi::Value start(const Napi::CallbackInfo & info);
    void cancel(const Napi::CallbackInfo & info);

    std::string path;
    backend_kind backend = BACKEND_AUTO;
    bool specdec_kernels = true;
    std::vector<std::string> rpc;       // the 4th argument's { rpc, tensorSplit }
    std::vector<float>       tensor_split;
    bool draft = false;                 // the 4th argument's { draft }: make the Q8_0 draft copies at load
    std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);
};

// Throws a JS Error whose message carries the "[CODE] " prefix of specdec::error.
void throw_js(Napi::Env env, const std::exception & e);

} // namespace specdec
