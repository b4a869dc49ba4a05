#include "addon/model_wrap.h"
#include "common/error.h"
#include "runtime/backends.h"

#include <cmath>

namespace specdec {

Napi::FunctionReference model_wrap::constructor;

void throw_js(Napi::Env env, const std::exception & e) {
    Napi::Error::New(env, e.what()).ThrowAsJavaScriptException();
}

Napi::Function model_wrap::init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "Model", {
        InstanceMethod("info", &model_wrap::info),
        InstanceMethod("dispose", &model_wrap::dispose),
    });
    constructor = Napi::Persistent(f);
    constructor.SuppressDestruct();
    return f;
}

model_wrap::model_wrap(const Napi::CallbackInfo & info) : Napi::ObjectWrap<model_wrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
        Napi::TypeError::New(info.Env(), "[ERR_INTERNAL] Model objects are made by loadModel()").ThrowAsJavaScriptException();
        return;
    }
    auto * holder = info[0].As<Napi::External<std::shared_ptr<const model>>>().Data();
    m = *holder;
}

std::shared_ptr<const model> model_wrap::get(Napi::Env env) const {
    if (!m) {
        Napi::Error::New(env, "[ERR_DISPOSED] the model has been disposed").ThrowAsJavaScriptException();
    }
    return m;
}

Napi::Value model_wrap::info(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    auto mm = get(env);
    if (!mm) return env.Undefined();
    const hparams & hp = mm->hp;
    Napi::Object o = Napi::Object::New(env);
    o.Set("architecture", hp.arch_name);
    o.Set("parameterCount", (double) mm->n_params);
    o.Set("sizeBytes", (double) mm->n_bytes);
    o.Set("weightType", mm->file_type);
    o.Set("contextLength", hp.n_ctx_train);
    o.Set("vocabSize", hp.n_vocab);
    o.Set("embeddingLength", hp.n_embd);
    o.Set("layerCount", hp.n_layer);
    o.Set("headCount", hp.n_head);
    o.Set("headCountKv", hp.n_head_kv);
    o.Set("feedForwardLength", hp.n_ff);
    o.Set("ropeFreqBase", hp.rope_freq_base);
    o.Set("ropeScaling", hp.rope_scaling);
    o.Set("tiedEmbeddings", mm->tied_embeddings);
    o.Set("backend", mm->kind == BACKEND_CPU ? "cpu" : mm->kind == BACKEND_CUDA ? "cuda" : mm->kind == BACKEND_RPC ? "rpc" : "metal");
    o.Set("device", mm->device_name);
    o.Set("cpuKernels", mm->cpu_kernels);
    return o;
}

void model_wrap::dispose(const Napi::CallbackInfo &) { m.reset(); }

// ---- loading ---------------------------------------------------------------------

namespace {

class load_worker : public Napi::AsyncProgressQueueWorker<float> {
public:
    load_worker(Napi::Env env, load_params params, bool draft, std::shared_ptr<std::atomic<bool>> cancelled, Napi::Function on_progress)
        : Napi::AsyncProgressQueueWorker<float>(env), par(std::move(params)), draft(draft), cancelled(std::move(cancelled)),
          deferred(Napi::Promise::Deferred::New(env)) {
        if (!on_progress.IsEmpty()) {
            progress_cb = Napi::Persistent(on_progress);
        }
    }

    Napi::Promise promise() { return deferred.Promise(); }

    void Execute(const ExecutionProgress & progress) override {
        float last = -1.0f;
        par.progress = [&](float f) {
            if (f - last >= 0.01f || f >= 1.0f) {
                last = f;
                progress.Send(&f, 1);
            }
            return !cancelled->load();
        };
        try {
            result = model_load(par);
            // a draft model: its Q8_0 copies now, inside loading (and its abort), not in the first
            // generation that drafts with it (that generation's time to first token)
            if (draft && result->kind == BACKEND_CPU) result->prepare_draft_weights([this] { return cancelled->load(); });
        } catch (const std::exception & e) {
            SetError(e.what());
        }
    }

    void OnProgress(const float * data, size_t count) override {
        if (progress_cb.IsEmpty() || count == 0) return;
        Napi::HandleScope scope(Env());
        try {
            progress_cb.Call({ Napi::Number::New(Env(), data[count - 1]) });
        } catch (...) {
            // a throwing progress callback must not take the load down
        }
    }

    void OnOK() override {
        Napi::HandleScope scope(Env());
        std::shared_ptr<const model> holder = result;
        Napi::Object obj = model_wrap::constructor.New({ Napi::External<std::shared_ptr<const model>>::New(Env(), &holder) });
        deferred.Resolve(obj);
    }

    void OnError(const Napi::Error & e) override { deferred.Reject(e.Value()); }

private:
    load_params par;
    bool draft;
    std::shared_ptr<std::atomic<bool>> cancelled;
    Napi::Promise::Deferred deferred;
    Napi::FunctionReference progress_cb;
    std::shared_ptr<model> result;
};

} // namespace

Napi::Function load_task_wrap::init(Napi::Env env) {
    return DefineClass(env, "LoadTask", {
        InstanceMethod("start", &load_task_wrap::start),
        InstanceMethod("cancel", &load_task_wrap::cancel),
    });
}

load_task_wrap::load_task_wrap(const Napi::CallbackInfo & info) : Napi::ObjectWrap<load_task_wrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsString()) {
        Napi::TypeError::New(env, "[ERR_INVALID_OPTION] LoadTask(path: string, backend: string, cpuKernels: string)").ThrowAsJavaScriptException();
        return;
    }
    const std::string k = info[2].As<Napi::String>().Utf8Value();
    if (k != "specdec" && k != "ggml") {
        Napi::Error::New(env, "[ERR_INVALID_OPTION] cpuKernels must be 'specdec' or 'ggml', got '" + k + "'").ThrowAsJavaScriptException();
        return;
    }
    specdec_kernels = k == "specdec";
    path = info[0].As<Napi::String>().Utf8Value();
    const std::string b = info[1].As<Napi::String>().Utf8Value();
    if (b == "auto") backend = BACKEND_AUTO;
    else if (b == "cpu") backend = BACKEND_CPU;
    else if (b == "cuda") backend = BACKEND_CUDA;
    else if (b == "metal") backend = BACKEND_METAL;
    else {
        Napi::Error::New(env, "[ERR_INVALID_OPTION] backend must be 'auto', 'cpu', 'cuda' or 'metal', got '" + b + "'").ThrowAsJavaScriptException();
        return;
    }
    if (info.Length() > 3 && info[3].IsObject()) {
        Napi::Object o = info[3].As<Napi::Object>();
        Napi::Value r = o.Get("rpc");
        if (r.IsArray()) {
            Napi::Array a = r.As<Napi::Array>();
            for (uint32_t i = 0; i < a.Length(); ++i) {
                if (!a.Get(i).IsString()) {
                    Napi::TypeError::New(env, "[ERR_INVALID_OPTION] rpc must be an array of 'host:port' strings").ThrowAsJavaScriptException();
                    return;
                }
                rpc.push_back(a.Get(i).As<Napi::String>().Utf8Value());
            }
        }
        draft = o.Get("draft").ToBoolean().Value();
        Napi::Value t = o.Get("tensorSplit");
        if (t.IsArray()) {
            Napi::Array a = t.As<Napi::Array>();
            for (uint32_t i = 0; i < a.Length(); ++i) {
                if (!a.Get(i).IsNumber()) {
                    Napi::TypeError::New(env, "[ERR_INVALID_OPTION] tensorSplit must be an array of numbers").ThrowAsJavaScriptException();
                    return;
                }
                tensor_split.push_back(a.Get(i).As<Napi::Number>().FloatValue());
            }
        }
    }
}

Napi::Value load_task_wrap::start(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    Napi::Function cb;
    if (info.Length() > 0 && info[0].IsFunction()) cb = info[0].As<Napi::Function>();
    load_params p;
    p.path = path;
    p.backend = backend;
    p.specdec_kernels = specdec_kernels;
    p.rpc = rpc;
    p.tensor_split = tensor_split;
    auto * w = new load_worker(env, p, draft, cancelled, cb);
    Napi::Promise pr = w->promise();
    w->Queue();
    return pr;
}

void load_task_wrap::cancel(const Napi::CallbackInfo &) { cancelled->store(true); }

} // namespace specdec
