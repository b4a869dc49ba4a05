#include "addon/train_wrap.h"

#include "addon/model_wrap.h"
#include "common/error.h"
#include "train/train.h"

#include <atomic>
#include <memory>

namespace specdec {

namespace {

std::vector<int32_t> int32s(Napi::Value v) {
    std::vector<int32_t> out;
    if (v.IsTypedArray()) {
        Napi::Int32Array a = v.As<Napi::Int32Array>();
        out.assign(a.Data(), a.Data() + a.ElementLength());
    }
    return out;
}

std::vector<std::vector<int32_t>> docs(Napi::Value v) {
    std::vector<std::vector<int32_t>> out;
    if (!v.IsArray()) return out;
    Napi::Array a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(int32s(a.Get(i)));
    return out;
}

Napi::Array doubles(Napi::Env env, const std::vector<double> & v) {
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); ++i) a.Set((uint32_t) i, v[i]);
    return a;
}

class train_worker : public Napi::AsyncProgressQueueWorker<train_progress> {
public:
    train_worker(Napi::Env env, Napi::Object model_obj, std::shared_ptr<const model> m, train_options o,
                 Napi::Function on_progress, std::shared_ptr<std::atomic<bool>> abort_flag)
        : Napi::AsyncProgressQueueWorker<train_progress>(env), model_ref(Napi::Persistent(model_obj)), target(std::move(m)),
          opt(std::move(o)), flag(std::move(abort_flag)), deferred(Napi::Promise::Deferred::New(env)) {
        if (!on_progress.IsEmpty()) progress_cb = Napi::Persistent(on_progress);
        opt.abort = flag.get();
    }
    Napi::Promise promise() { return deferred.Promise(); }

    void Execute(const ExecutionProgress & progress) override {
        try {
            opt.progress = [&](const train_progress & p) { progress.Send(&p, 1); };
            rep = train_drafter(target, opt);
        } catch (const std::exception & e) {
            SetError(e.what());
        }
        opt.train_docs.clear();
        opt.val_docs.clear();
    }

    void OnProgress(const train_progress * data, size_t count) override {
        if (progress_cb.IsEmpty() || count == 0) return;
        Napi::Env env = Env();
        Napi::HandleScope scope(env);
        const train_progress & p = data[count - 1];
        Napi::Object o = Napi::Object::New(env);
        o.Set("phase", p.phase);
        o.Set("tokens", (double) p.tokens);
        o.Set("tokensBudget", (double) p.tokens_budget);
        o.Set("elapsedSeconds", p.elapsed_s);
        o.Set("budgetSeconds", p.budget_s);
        o.Set("tokensPerSecond", p.tokens_per_s);
        o.Set("trainLoss", p.train_loss);
        o.Set("validationLoss", p.val_loss);
        o.Set("validationAccuracy", p.val_accuracy);
        // a throwing callback must not take the process down: its error ends nothing here
        try {
            progress_cb.Call({ o });
        } catch (const Napi::Error &) {
        }
        if (env.IsExceptionPending()) env.GetAndClearPendingException();
    }

    void OnOK() override {
        Napi::Env env = Env();
        Napi::HandleScope scope(env);
        Napi::Object r = Napi::Object::New(env);
        r.Set("out", rep.out);
        r.Set("tokens", (double) rep.tokens);
        r.Set("featureTokens", (double) rep.feature_tokens);
        r.Set("steps", (double) rep.steps);
        r.Set("seconds", rep.seconds);
        r.Set("validationPositions", (double) rep.val_datapoints);
        r.Set("validationLossBefore", rep.val_loss_before);
        r.Set("validationLossAfter", rep.val_loss_after);
        r.Set("validationAccuracyBefore", rep.val_accuracy_before);
        r.Set("validationAccuracyAfter", rep.val_accuracy_after);
        r.Set("headAccuracyBefore", doubles(env, rep.head_accuracy_before));
        r.Set("headAccuracyAfter", doubles(env, rep.head_accuracy_after));
        r.Set("tauBefore", rep.tau_before);
        r.Set("tauAfter", rep.tau_after);
        r.Set("validationLossBase", rep.val_loss_base);
        r.Set("validationLossControl", rep.val_loss_control);
        deferred.Resolve(r);
    }

    void OnError(const Napi::Error & e) override { deferred.Reject(e.Value()); }

private:
    Napi::ObjectReference model_ref;  // keeps the JS model (and its native weights) alive
    std::shared_ptr<const model> target;
    train_options opt;
    std::shared_ptr<std::atomic<bool>> flag;
    Napi::FunctionReference progress_cb;
    Napi::Promise::Deferred deferred;
    train_report rep;
};

uint32_t u32_of(Napi::Object o, const char * key, uint32_t def) {
    Napi::Value v = o.Get(key);
    return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : def;
}

double f64_of(Napi::Object o, const char * key, double def) {
    Napi::Value v = o.Get(key);
    return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : def;
}

} // namespace

Napi::Value train_drafter_js(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject()) {
        Napi::TypeError::New(env, "[ERR_INTERNAL] trainDrafter(model, options, onProgress?)").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    Napi::Object model_obj = info[0].As<Napi::Object>();
    std::shared_ptr<const model> m = Napi::ObjectWrap<model_wrap>::Unwrap(model_obj)->get(env);
    if (!m) return env.Undefined();
    Napi::Object o = info[1].As<Napi::Object>();
    train_options opt;
    if (o.Get("kind").IsString()) opt.kind = o.Get("kind").As<Napi::String>().Utf8Value();
    if (o.Get("out").IsString()) opt.out = o.Get("out").As<Napi::String>().Utf8Value();
    opt.n_heads = u32_of(o, "heads", opt.n_heads);
    opt.ttt_steps = u32_of(o, "tttSteps", opt.ttt_steps);
    opt.ht_layer = u32_of(o, "transferLayer", opt.ht_layer);
    opt.ht_k = u32_of(o, "pseudoRows", opt.ht_k);
    opt.seq_len = u32_of(o, "sequenceLength", opt.seq_len);
    opt.lud_k = u32_of(o, "ludK", opt.lud_k);
    opt.lud_alpha = (float) f64_of(o, "ludAlpha", opt.lud_alpha);
    opt.lud_groups = u32_of(o, "ludGroups", opt.lud_groups);
    opt.coproc_latents = u32_of(o, "latents", opt.coproc_latents);
    opt.coproc_ahead = u32_of(o, "ahead", opt.coproc_ahead);
    opt.coproc_rank = u32_of(o, "rank", opt.coproc_rank);
    opt.coproc_points = u32_of(o, "points", opt.coproc_points);
    opt.batch = u32_of(o, "batchSize", opt.batch);
    opt.chunk = u32_of(o, "chunk", opt.chunk);
    opt.val_max = u32_of(o, "validationPositions", opt.val_max);
    opt.lr = (float) f64_of(o, "learningRate", opt.lr);
    opt.max_seconds = f64_of(o, "seconds", 0.0);
    opt.max_tokens = (uint64_t) f64_of(o, "tokens", 0.0);
    opt.n_threads = (int) u32_of(o, "threads", 1);
    opt.seed = (uint64_t) f64_of(o, "seed", 42.0);
    opt.train_docs = docs(o.Get("train"));
    opt.val_docs = docs(o.Get("validation"));
    Napi::Function cb;
    if (info.Length() > 2 && info[2].IsFunction()) cb = info[2].As<Napi::Function>();
    auto flag = std::make_shared<std::atomic<bool>>(false);
    auto * w = new train_worker(env, model_obj, m, std::move(opt), cb, flag);
    Napi::Object r = Napi::Object::New(env);
    r.Set("promise", w->promise());
    r.Set("abort", Napi::Function::New(env, [flag](const Napi::CallbackInfo & ci) {
        flag->store(true);
        return ci.Env().Undefined();
    }, "abort"));
    w->Queue();
    return r;
}

} // namespace specdec
