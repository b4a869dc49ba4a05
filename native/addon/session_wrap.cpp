#include "addon/session_wrap.h"
#include "addon/model_wrap.h"
#include "addon/options.h"
#include "common/error.h"
#include "spec/drafters/aded.h"
#include "spec/drafters/chimera.h"
#include "spec/drafters/eagle.h"
#include "heads/head_file.h"
#include "spec/methods.h"

#include <chrono>
#include <cmath>
#include <sys/stat.h>

namespace specdec {

Napi::FunctionReference session_wrap::constructor;

namespace {

std::vector<int32_t> to_tokens(Napi::Value v) {
    std::vector<int32_t> out;
    if (v.IsTypedArray()) {
        Napi::Int32Array a = v.As<Napi::Int32Array>();
        out.assign(a.Data(), a.Data() + a.ElementLength());
    } else if (v.IsArray()) {
        Napi::Array a = v.As<Napi::Array>();
        out.resize(a.Length());
        for (uint32_t i = 0; i < a.Length(); ++i) out[i] = a.Get(i).As<Napi::Number>().Int32Value();
    }
    return out;
}

Napi::Object stats_object(Napi::Env env, const generation & g) {
    Napi::Object s = Napi::Object::New(env);
    s.Set("promptTokens", g.stats.n_prompt);
    s.Set("promptTokensReused", g.stats.n_prompt_reused);
    s.Set("generatedTokens", g.stats.n_generated);
    s.Set("prefillMs", g.stats.ms_prefill);
    s.Set("decodeMs", g.stats.ms_decode);
    // 'ead': the target's passes while decoding are the decoder's
    s.Set("forwardPasses", g.stats.n_forward + (g.ead() ? g.ead()->stats.n_pass_large : 0));
    s.Set("draftedTokens", g.stats.n_drafted);
    s.Set("acceptedTokens", g.stats.n_accepted);
    s.Set("verifyPasses", g.stats.n_verify);
    s.Set("treeCompactions", g.stats.n_compactions);
    s.Set("draftMs", g.stats.ms_draft);
    s.Set("verifyMs", g.stats.ms_verify);
    s.Set("stopReason", stop_reason_name(g.reason));
    if (const auto * a = dynamic_cast<const auto_drafter *>(g.drafter_ptr())) {
        // 'auto': its decisions, step by step (a step drafts with one drafter, or not at all)
        Napi::Object x = Napi::Object::New(env);
        x.Set("plainSteps", (double) a->plain_steps());
        Napi::Object by = Napi::Object::New(env);
        for (size_t i = 0; i < a->candidates().size(); ++i) by.Set(a->candidates()[i].name, (double) a->steps_by_candidate()[i]);
        x.Set("steps", by);
        s.Set("auto", x);
    }
    s.Set("augmentMs", g.stats.ms_augment);
    s.Set("latentCells", g.stats.n_latents);
    if (const ead_decoder * e = g.ead()) {
        Napi::Object x = Napi::Object::New(env);
        x.Set("switches", e->stats.n_switches);
        x.Set("largeEvaluated", (double) e->stats.n_eval_large);
        x.Set("smallEvaluated", (double) e->stats.n_eval_small);
        x.Set("smallPromptTokens", (double) e->stats.n_prompt_small);
        x.Set("largeMs", e->stats.ms_large);
        x.Set("smallMs", e->stats.ms_small);
        x.Set("computeSaved", e->compute_saved(g.stats.n_generated));
        s.Set("ead", x);
    }
    return s;
}

// A promise-returning worker that owns a reference to the session wrapper and its busy flag:
// run() does the native work off the JS thread, result() turns it into a JS value. The
// session's compute threads are paused afterwards whatever happened, so they never spin idle.
class session_worker : public Napi::AsyncWorker {
public:
    session_worker(Napi::Env env, session_wrap * w)
        : Napi::AsyncWorker(env), wrap(w), self(Napi::Persistent(w->Value())), deferred(Napi::Promise::Deferred::New(env)) {}
    ~session_worker() override { wrap->busy.store(false); }
    Napi::Promise promise() { return deferred.Promise(); }

    void Execute() final {
        try {
            run();
        } catch (const std::exception & e) {
            SetError(e.what());
        }
        wrap->get()->pause_threads();
    }

    void OnOK() final {
        Napi::HandleScope scope(Env());
        wrap->busy.store(false);
        deferred.Resolve(result(Env()));
        finished(true);
    }

    void OnError(const Napi::Error & e) final {
        wrap->busy.store(false);
        deferred.Reject(e.Value());
        finished(false);
    }

protected:
    virtual void run() = 0;
    virtual Napi::Value result(Napi::Env env) = 0;
    // On the JS thread, after the promise is settled.
    virtual void finished(bool ok) { (void) ok; }

    session_wrap *          wrap;
    Napi::ObjectReference   self;
    Napi::Promise::Deferred deferred;
};

class step_worker : public session_worker {
public:
    step_worker(Napi::Env env, session_wrap * w, double budget_ms, uint32_t max_new)
        : session_worker(env, w), budget(budget_ms), max_new(max_new) {}

private:
    void run() override { wrap->gen()->step(budget, max_new, out); }

    Napi::Value result(Napi::Env env) override {
        generation * g = wrap->gen();
        Napi::Object r = Napi::Object::New(env);
        Napi::Int32Array toks = Napi::Int32Array::New(env, out.size());
        std::copy(out.begin(), out.end(), toks.Data());
        r.Set("tokens", toks);
        r.Set("done", g->done());
        r.Set("stats", stats_object(env, *g));
        if (const ead_decoder * e = g->ead()) {
            // which model produced each of this step's tokens (JS appends them: no copy of the whole history per step)
            const size_t from = g->stats.n_generated >= out.size() ? g->stats.n_generated - out.size() : 0;
            r.Set("eadSources", from < e->stats.sources.size() ? e->stats.sources.substr(from, out.size()) : std::string());
        }
        return r;
    }

    // a generation that ended (done, or failed: an abort inside prompt processing, an error) lets
    // go of its drafter now, not at the session's next generation
    void finished(bool ok) override {
        if (!ok || !wrap->gen() || wrap->gen()->done()) wrap->end_generation();
    }

    double budget;
    uint32_t max_new;
    std::vector<int32_t> out;
};

class eval_worker : public session_worker {
public:
    eval_worker(Napi::Env env, session_wrap * w, std::vector<int32_t> toks, bool all)
        : session_worker(env, w), toks(std::move(toks)), all(all) {}

private:
    void run() override { wrap->get()->eval_chain(toks, all, true, logits); }

    Napi::Value result(Napi::Env env) override {
        Napi::Float32Array a = Napi::Float32Array::New(env, logits.size());
        std::copy(logits.begin(), logits.end(), a.Data());
        return a;
    }

    std::vector<int32_t> toks;
    bool all;
    std::vector<float> logits;
};

// Evaluates tokens with hidden-state taps: logits [n][n_vocab] and hidden [n][layers][n_embd] of
// every token (batch-invariant rows, as evaluate()). The session's own taps are restored after.
class eval_hidden_worker : public session_worker {
public:
    eval_hidden_worker(Napi::Env env, session_wrap * w, std::vector<int32_t> toks, std::vector<uint32_t> layers)
        : session_worker(env, w), toks(std::move(toks)), layers(std::move(layers)) {}

private:
    void run() override {
        session & s = *wrap->get();
        const std::vector<uint32_t> saved = s.taps();
        s.set_taps(layers);
        try {
            std::vector<float> lg;
            for (size_t at = 0; at < toks.size(); at += MAX_INVARIANT_BATCH) {
                const size_t n = std::min<size_t>(MAX_INVARIANT_BATCH, toks.size() - at);
                s.eval_chain(std::vector<int32_t>(toks.begin() + at, toks.begin() + at + n), true, true, lg);
                logits.insert(logits.end(), lg.begin(), lg.end());
                hidden.insert(hidden.end(), s.hidden().begin(), s.hidden().end());
            }
        } catch (...) {
            s.set_taps(saved);
            throw;
        }
        s.set_taps(saved);
    }

    Napi::Value result(Napi::Env env) override {
        Napi::Object r = Napi::Object::New(env);
        Napi::Float32Array a = Napi::Float32Array::New(env, logits.size());
        std::copy(logits.begin(), logits.end(), a.Data());
        Napi::Float32Array h = Napi::Float32Array::New(env, hidden.size());
        std::copy(hidden.begin(), hidden.end(), h.Data());
        r.Set("logits", a);
        r.Set("hidden", h);
        return r;
    }

    std::vector<int32_t> toks;
    std::vector<uint32_t> layers;
    std::vector<float> logits, hidden;
};

class calibrate_worker : public session_worker {
public:
    calibrate_worker(Napi::Env env, session_wrap * w, std::vector<int> candidates)
        : session_worker(env, w), candidates(std::move(candidates)) {}

private:
    void run() override { best = wrap->get()->calibrate_threads(candidates, ms); }

    Napi::Value result(Napi::Env env) override {
        Napi::Object r = Napi::Object::New(env);
        r.Set("threads", best);
        Napi::Array a = Napi::Array::New(env, ms.size());
        for (size_t i = 0; i < ms.size(); ++i) a.Set((uint32_t) i, ms[i]);
        r.Set("msPerToken", a);
        return r;
    }

    std::vector<int> candidates;
    std::vector<double> ms;
    int best = 1;
};

// augment(file, latents): coproc_augment on the session (the latents before its last token).
class augment_worker : public session_worker {
public:
    augment_worker(Napi::Env env, session_wrap * w, std::shared_ptr<const coprocessor> c, uint32_t n)
        : session_worker(env, w), c(std::move(c)), n(n) {}

private:
    void run() override {
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<float> logits;
        coproc_augment(*wrap->get(), *c, n, logits);
        ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }

    Napi::Value result(Napi::Env env) override {
        Napi::Object r = Napi::Object::New(env);
        r.Set("latents", n);
        r.Set("ms", ms);
        r.Set("latentCells", wrap->get()->n_latent_cells());
        return r;
    }

    std::shared_ptr<const coprocessor> c;
    uint32_t n;
    double ms = 0.0;
};

class perplexity_worker : public session_worker {
public:
    perplexity_worker(Napi::Env env, session_wrap * w, std::vector<int32_t> toks, perplexity_params p, std::shared_ptr<const coprocessor> c)
        : session_worker(env, w), toks(std::move(toks)), p(p), c(std::move(c)) {}

private:
    void run() override { r = specdec::perplexity(*wrap->get(), toks, p, c.get()); }

    Napi::Value result(Napi::Env env) override {
        Napi::Object o = Napi::Object::New(env);
        o.Set("tokens", (double) r.tokens);
        o.Set("nll", r.nll);
        o.Set("ppl", r.ppl);
        o.Set("augmentations", (double) r.augmentations);
        o.Set("msPerAugmentation", r.augmentations ? r.ms_augment / (double) r.augmentations : 0.0);
        return o;
    }

    std::vector<int32_t> toks;
    perplexity_params p;
    std::shared_ptr<const coprocessor> c;
    perplexity_result r;
};

class create_worker : public Napi::AsyncWorker {
public:
    create_worker(Napi::Env env, Napi::Object model_obj, std::shared_ptr<const model> m, session_params p)
        : Napi::AsyncWorker(env), model_ref(Napi::Persistent(model_obj)), m(std::move(m)), par(p),
          deferred(Napi::Promise::Deferred::New(env)) {}
    Napi::Promise promise() { return deferred.Promise(); }

    void Execute() override {
        try {
            result = std::make_unique<session>(m, par);
        } catch (const std::exception & e) {
            SetError(e.what());
        }
    }
    void OnOK() override {
        Napi::HandleScope scope(Env());
        session * raw = result.release();
        Napi::Object obj = session_wrap::constructor.New({ Napi::External<session>::New(Env(), raw) });
        deferred.Resolve(obj);
    }
    void OnError(const Napi::Error & e) override { deferred.Reject(e.Value()); }

private:
    Napi::ObjectReference model_ref;
    std::shared_ptr<const model> m;
    session_params par;
    Napi::Promise::Deferred deferred;
    std::unique_ptr<session> result;
};

} // namespace

Napi::Function session_wrap::init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "Session", {
        InstanceMethod("begin", &session_wrap::begin),
        InstanceMethod("step", &session_wrap::step),
        InstanceMethod("evaluate", &session_wrap::evaluate),
        InstanceMethod("evaluateHidden", &session_wrap::evaluate_hidden),
        InstanceMethod("tokens", &session_wrap::tokens),
        InstanceMethod("truncate", &session_wrap::truncate),
        InstanceMethod("abort", &session_wrap::abort),
        InstanceMethod("end", &session_wrap::end),
        InstanceMethod("setThreads", &session_wrap::set_threads),
        InstanceMethod("calibrateThreads", &session_wrap::calibrate_threads),
        InstanceMethod("info", &session_wrap::info),
        InstanceMethod("dispose", &session_wrap::dispose),
        InstanceMethod("saveTokenRecycling", &session_wrap::save_recycling),
        InstanceMethod("loadTokenRecycling", &session_wrap::load_recycling),
        InstanceMethod("saveOnline", &session_wrap::save_online),
        InstanceMethod("loadOnline", &session_wrap::load_online),
        InstanceMethod("onlineInfo", &session_wrap::online_info),
        InstanceMethod("_onlineForward", &session_wrap::online_forward),
        InstanceMethod("_adedSize", &session_wrap::aded_size),
        InstanceMethod("autoMemory", &session_wrap::auto_memory_get),
        InstanceMethod("dropDraftSession", &session_wrap::drop_draft_session),
        InstanceMethod("setAutoMemory", &session_wrap::auto_memory_set),
        InstanceMethod("_memory", &session_wrap::memory),
        InstanceMethod("_evalTree", &session_wrap::eval_tree),
        InstanceMethod("augment", &session_wrap::augment),
        InstanceMethod("perplexity", &session_wrap::perplexity),
    });
    constructor = Napi::Persistent(f);
    constructor.SuppressDestruct();
    return f;
}

session_wrap::session_wrap(const Napi::CallbackInfo & info) : Napi::ObjectWrap<session_wrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
        Napi::TypeError::New(info.Env(), "[ERR_INTERNAL] Session objects are made by createSession()").ThrowAsJavaScriptException();
        return;
    }
    sess.reset(info[0].As<Napi::External<session>>().Data());
}

bool session_wrap::check(Napi::Env env) {
    if (!sess) {
        Napi::Error::New(env, "[ERR_DISPOSED] the session has been disposed").ThrowAsJavaScriptException();
        return false;
    }
    if (busy.load()) {
        Napi::Error::New(env, "[ERR_BUSY] the session is busy with another evaluation").ThrowAsJavaScriptException();
        return false;
    }
    return true;
}

Napi::Value session_wrap::begin(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!check(env)) return env.Undefined();
    try {
        Napi::Object o = info[0].As<Napi::Object>();
        generation_params p;
        p.prompt = to_tokens(o.Get("prompt"));
        p.max_tokens = get_u32(o, "maxTokens", 256);
        for (int32_t t : to_tokens(o.Get("eog"))) p.eog.insert(t);
        p.sampling = sampling_options(o);
        sampling_params & sp = p.sampling;
        // lib/session.ts validated it: 'match' (default) or 'rejection'
        const bool rejection = o.Has("verify") && o.Get("verify").IsString() && o.Get("verify").As<Napi::String>().Utf8Value() == "rejection";
        p.verify = rejection ? VERIFY_REJECTION : VERIFY_MATCH;
        sp.coupled_drafts    = !rejection;
        method_options mo;
        if (o.Has("method") && o.Get("method").IsString()) mo.method = o.Get("method").As<Napi::String>().Utf8Value();
        mo.draft_max = get_u32(o, "draftMax", 0);
        mo.lookup_max_ngram = get_u32(o, "lookupMaxNgram", 4);
        mo.rsd_beam = o.Has("rsdBeam") && o.Get("rsdBeam").ToBoolean().Value();
        mo.ead.threshold = (float) get_f64(o, "eadThreshold", mo.ead.threshold);
        mo.ead.window = get_u32(o, "eadWindow", mo.ead.window);
        mo.ead.min_dwell = get_u32(o, "eadMinDwell", mo.ead.min_dwell);
        mo.biased_verifier = o.Has("_testBiasedVerifier") && o.Get("_testBiasedVerifier").ToBoolean().Value();
        Napi::Value dm = o.Get("draftModel");
        if (dm.IsObject()) {
            mo.draft_model = Napi::ObjectWrap<model_wrap>::Unwrap(dm.As<Napi::Object>())->get(env);
            if (!mo.draft_model) return env.Undefined();
        }
        if (mo.draft_model) {
            if (!draft_slot_) draft_slot_ = std::make_shared<draft_session_slot>();
            mo.draft_slot = draft_slot_;
        }
        mo.recycling = recycling(*sess);
        if (!auto_mem_) auto_mem_ = std::make_shared<auto_memory>();
        mo.auto_mem = auto_mem_;
        if (!aded_) aded_ = std::make_shared<aded_drafter>();
        mo.aded = aded_;
        if (o.Has("corpus") && o.Get("corpus").IsArray()) {
            Napi::Array docs = o.Get("corpus").As<Napi::Array>();
            for (uint32_t i = 0; i < docs.Length(); ++i) {
                mo.corpus.push_back(to_tokens(docs.Get(i)));
                for (int32_t t : mo.corpus.back()) {
                    if (t < 0 || (uint32_t) t >= sess->n_vocab()) throw error("ERR_TOKEN_OUT_OF_RANGE", format("corpus token id %d is out of range [0, %u)", t, sess->n_vocab()));
                }
            }
        }
        if (o.Has("online") && o.Get("online").IsObject()) {
            if (!mo.draft_model) fail("ERR_INVALID_OPTION", "option 'online' needs `draft: { model }`");
            Napi::Object on = o.Get("online").As<Napi::Object>();
            online_options oo;
            oo.lr = (float) get_f64(on, "lr", oo.lr);
            oo.every = get_u32(on, "every", oo.every);
            oo.steps = get_u32(on, "steps", oo.steps);
            oo.window = get_u32(on, "window", oo.window);
            oo.buffer = get_u32(on, "buffer", oo.buffer);
            oo.n_threads = sess->n_threads();
            if (!(oo.lr > 0.0f && std::isfinite(oo.lr)) || oo.every < 1 || oo.steps < 1 || oo.window < 8 || oo.buffer < 1) {
                fail("ERR_INVALID_OPTION", "online: lr must be > 0, every, steps and buffer >= 1, window >= 8");
            }
            if (!online_ || online_->source() != mo.draft_model) online_ = std::make_shared<online_learner>(mo.draft_model, oo);
            else online_->set_options(oo);
            mo.online = online_;
        }
        if (o.Has("headsFile") && o.Get("headsFile").IsString()) {
            heads_for(o.Get("headsFile").As<Napi::String>().Utf8Value(), mo);
        }
        Napi::Value lm = o.Get("ludModel");
        if (lm.IsObject()) {
            mo.lud_model = Napi::ObjectWrap<model_wrap>::Unwrap(lm.As<Napi::Object>())->get(env);
            if (!mo.lud_model) return env.Undefined();
            mo.lud = lud_params_of(*mo.lud_model);
            const uint32_t k = get_u32(o, "ludK", 0);
            const double alpha = get_f64(o, "ludAlpha", -1.0);
            if (k > 16) fail("ERR_INVALID_OPTION", format("lud.k must be 1..16, got %u", k));
            if (k > 0) mo.lud.k = k;
            if (alpha > 0.0) mo.lud.alpha = (float) alpha;
            mo.lud_verify = o.Has("ludVerify") && o.Get("ludVerify").ToBoolean().Value();
        }
        if (mo.method == "auto") {
            // what 'auto' learnt about another draft model or other heads does not carry over
            const void * heads = mo.heads ? (const void *) mo.heads.get()
                               : mo.eagle ? (const void *) mo.eagle.get() : (const void *) mo.chimera.get();
            if (mo.draft_model && mo.draft_model.get() != auto_mem_->draft_model) {
                if (!auto_mem_->adopt_draft) auto_mem_->by_name.erase("draft");
                auto_mem_->draft_model = mo.draft_model.get();
                auto_mem_->adopt_draft = false;
            }
            if (heads && heads != auto_mem_->heads) {
                if (!auto_mem_->adopt_heads) {
                    auto_mem_->by_name.erase("medusa");
                    auto_mem_->by_name.erase("eagle");
                    auto_mem_->by_name.erase("chimera");
                }
                auto_mem_->heads = heads;
                auto_mem_->adopt_heads = false;
            }
        }
        if (o.Has("coprocessorFile") && o.Get("coprocessorFile").IsString()) {
            p.coproc = coproc_for(o.Get("coprocessorFile").As<Napi::String>().Utf8Value());
            p.coproc_latents = get_u32(o, "coprocessorLatents", p.coproc->n_latents());
            coproc_check(*sess, *p.coproc, p.coproc_latents);
        }
        method_plan plan = make_method(mo, *sess, sp);
        sess->set_taps(plan.taps, plan.taps_all_rows);
        sess->set_transfer(plan.transfer ? plan.transfer->maps_tensor() : nullptr, plan.transfer ? plan.transfer->layer : 0);
        transfer_active_ = plan.transfer;
        p.draft = plan.draft;
        p.draft_max = plan.draft_max;
        p.ead = plan.ead;
        p.biased_verifier = mo.biased_verifier;
        sess->clear_abort();
        session * run_on = sess.get();
        generation_.reset();  // before the LUD session it may run on changes
        if (plan.lossy_model) {
            // lossy LUD: the generation decodes on the LUD model's session, the target's stays as it is
            if (!lud_sess_ || lud_sess_->model_ptr() != plan.lossy_model || lud_sess_->n_ctx() != sess->n_ctx() ||
                lud_sess_->n_batch() != sess->n_batch()) {
                lud_sess_.reset();
                session_params lp;
                lp.n_ctx = sess->n_ctx();
                lp.n_batch = sess->n_batch();
                lp.n_threads = sess->n_threads();
                lud_sess_ = std::make_unique<session>(plan.lossy_model, lp);
            }
            if (lud_sess_->n_threads() != sess->n_threads()) lud_sess_->set_threads(sess->n_threads());
            lud_sess_->clear_abort();
            if (p.coproc) fail("ERR_INVALID_OPTION", "a coprocessor augments the target's session; lossy LUD decodes on the LUD model's own");
            p.parallel_k = plan.parallel.k;
            p.parallel_alpha = plan.parallel.alpha;
            p.parallel_placeholder = plan.parallel.placeholder;
            run_on = lud_sess_.get();
        } else if (lud_sess_ && !mo.lud_model) {
            lud_sess_.reset();  // no LUD model in use any more: let it go
        }
        generation_ = std::make_unique<generation>(*run_on, std::move(p));
    } catch (const std::exception & e) {
        throw_js(env, e);
    }
    return env.Undefined();
}

Napi::Value session_wrap::step(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!check(env)) return env.Undefined();
    if (!generation_) {
        Napi::Error::New(env, "[ERR_INTERNAL] step() without begin()").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    const double budget = info[0].As<Napi::Number>().DoubleValue();
    const uint32_t max_new = info[1].As<Napi::Number>().Uint32Value();
    auto * w = new step_worker(env, this, budget, max_new);
    return queue(w, w->promise());
}

Napi::Value session_wrap::evaluate(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!check(env)) return env.Undefined();
    std::vector<int32_t> toks = to_tokens(info[0]);
    const bool all = info.Length() > 1 && info[1].ToBoolean().Value();
    if (toks.empty()) {
        Napi::Error::New(env, "[ERR_INVALID_OPTION] evaluate() needs at least one token").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    sess->clear_abort();
    auto * w = new eval_worker(env, this, std::move(toks), all);
    return queue(w, w->promise());
}

void session_wrap::heads_for(const std::string & path, method_options & mo) {
    struct stat st;
    std::string key = path;
    if (stat(path.c_str(), &st) == 0) key += format("|%lld|%lld", (long long) st.st_size, (long long) st.st_mtime);
    if (!((heads_ || eagle_ || chimera_ || transfer_) && key == heads_key_)) {
        transfer_.reset();
        heads_.reset();
        eagle_.reset();
        eagle_state_.reset();
        chimera_.reset();
        chimera_state_.reset();
        heads_key_.clear();
        const std::string arch = head_file::peek_arch(path, "head file");
        if (arch == "eagle3") {
            eagle_ = eagle3_heads::load(path, sess->mdl());
            eagle_state_ = std::make_shared<eagle_drafter>(eagle_, *sess);
        } else if (arch == "specdec-hidden-transfer") {
            transfer_ = transfer_heads::load(path, sess->mdl());
        } else if (arch == "specdec-chimera") {
            chimera_ = chimera_heads::load(path, sess->mdl());
            chimera_state_ = std::make_shared<chimera_drafter>(chimera_, *sess);
        } else {
            heads_ = medusa_heads::load(path, sess->mdl());  // its own architecture check names the expected one
        }
        heads_key_ = key;
    }
    mo.heads = heads_;
    mo.eagle = eagle_;
    mo.eagle_state = eagle_state_;
    mo.chimera = chimera_;
    mo.chimera_state = chimera_state_;
    mo.transfer = transfer_;
}

// evaluateHidden(tokens, layers) -> Promise<{ logits, hidden }>
Napi::Value session_wrap::evaluate_hidden(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!check(env)) return env.Undefined();
    std::vector<int32_t> toks = to_tokens(info[0]);
    std::vector<uint32_t> layers;
    for (int32_t l : to_tokens(info[1])) {
        if (l < 0 || (uint32_t) l > sess->mdl().hp.n_layer) {
            Napi::Error::New(env, format("[ERR_INVALID_OPTION] hidden-state layer %d is out of range [0, %u]", l, sess->mdl().hp.n_layer))
                .ThrowAsJavaScriptException();
            return env.Undefined();
        }
        layers.push_back((uint32_t) l);
    }
    if (toks.empty() || layers.empty()) {
        Napi::Error::New(env, "[ERR_INVALID_OPTION] evaluateHidden() needs at least one token and one layer").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    sess->clear_abort();
    auto * w = new eval_hidden_worker(env, this, std::move(toks), std::move(layers));
    return queue(w, w->promise());
}

Napi::Value session_wrap::queue(Napi::AsyncWorker * w, Napi::Promise p) {
    snap_tokens_ = sess->tokens();
    snap_threads_ = sess->n_threads();
    snap_latents_ = sess->n_latent_cells();
    busy.store(true);
    w->Queue();
    return p;
}

Napi::Value session_wrap::tokens(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!sess) return Napi::Int32Array::New(env, 0);
    const auto & t = busy.load() ? snap_tokens_ : sess->tokens();
    Napi::Int32Array a = Napi::Int32Array::New(env, t.size());
    std::copy(t.begin(), t.end(), a.Data());
    return a;
}

Napi::Value session_wrap::truncate(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!check(env)) return env.Undefined();
    sess->truncate(info[0].As<Napi::Number>().Uint32Value());
    return env.Undefined();
}

Napi::Value session_wrap::abort(const Napi::CallbackInfo & info) {
    // the generation's abort reaches its drafter too (a draft model's session and weight copy)
    if (generation_) generation_->abort();
    if (sess) sess->request_abort();
    return info.Env().Undefined();
}

// end(): the generation is over (JS: its iteration ended, whatever ended it); frees it now
Napi::Value session_wrap::end(const Napi::CallbackInfo & info) {
    end_generation();
    return info.Env().Undefined();
}

Napi::Value session_wrap::set_threads(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!check(env)) return env.Undefined();
    try {
        sess->set_threads(info[0].As<Napi::Number>().Int32Value());
    } catch (const std::exception & e) {
        throw_js(env, e);
    }
    return env.Undefined();
}

Napi::Value session_wrap::calibrate_threads(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!check(env)) return env.Undefined();
    std::vector<int> cands;
    for (int32_t t : to_tokens(info[0])) {
        if (t >= 1 && t <= 512) cands.push_back(t);
    }
    if (cands.empty()) {
        Napi::Error::New(env, "[ERR_INVALID_OPTION] calibrateThreads needs thread counts >= 1").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    auto * w = new calibrate_worker(env, this, std::move(cands));
    return queue(w, w->promise());
}

Napi::Value session_wrap::info(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    if (!sess) return o;
    o.Set("contextSize", sess->n_ctx());
    o.Set("batchSize", sess->n_batch());
    const bool b = busy.load();  // a worker may be changing the sequence (and calibrate the threads)
    o.Set("threads", b ? snap_threads_ : sess->n_threads());
    o.Set("usedTokens", (uint32_t) (b ? snap_tokens_.size() : sess->tokens().size()));
    o.Set("latentCells", b ? snap_latents_ : sess->n_latent_cells());
    return o;
}

std::shared_ptr<const coprocessor> session_wrap::coproc_for(const std::string & path) {
    struct stat st;
    std::string key = path;
    if (stat(path.c_str(), &st) == 0) key += format("|%lld|%lld", (long long) st.st_size, (long long) st.st_mtime);
    if (!coproc_ || key != coproc_key_ || &coproc_->target() != &sess->mdl()) {
        coproc_.reset();
        coproc_key_.clear();
        coproc_ = std::make_shared<coprocessor>(path, sess->model_ptr());
        coproc_key_ = key;
    }
    return coproc_;
}

// augment(file, latents?) -> Promise<{ latents, ms, latentCells }>
Napi::Value session_wrap::augment(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!check(env)) return env.Undefined();
    try {
        if (info.Length() < 1 || !info[0].IsString()) throw error("ERR_INVALID_OPTION", "augment() needs the coprocessor file");
        std::shared_ptr<const coprocessor> c = coproc_for(info[0].As<Napi::String>().Utf8Value());
        const uint32_t n = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : c->n_latents();
        coproc_check(*sess, *c, n);
        if (sess->tokens().empty()) throw error("ERR_INVALID_OPTION", "augment() needs at least one token in the session");
        generation_.reset();  // a generation in progress would not know of the new cells
        sess->clear_abort();
        auto * w = new augment_worker(env, this, std::move(c), n);
        return queue(w, w->promise());
    } catch (const std::exception & e) {
        throw_js(env, e);
    }
    return env.Undefined();
}

// perplexity(tokens, { context, every, ahead, file?, latents? }) -> Promise<{ tokens, nll, ppl, augmentations, msPerAugmentation }>
Napi::Value session_wrap::perplexity(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!check(env)) return env.Undefined();
    try {
        std::vector<int32_t> toks = to_tokens(info[0]);
        Napi::Object o = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
        perplexity_params p;
        p.context = get_u32(o, "context", 0);
        p.every = get_u32(o, "every", 0);
        p.ahead = get_u32(o, "ahead", 16);
        std::shared_ptr<const coprocessor> c;
        if (o.Has("file") && o.Get("file").IsString()) {
            c = coproc_for(o.Get("file").As<Napi::String>().Utf8Value());
            p.latents = get_u32(o, "latents", c->n_latents());
            coproc_check(*sess, *c, p.latents);
        }
        generation_.reset();
        sess->clear_abort();
        auto * w = new perplexity_worker(env, this, std::move(toks), p, std::move(c));
        return queue(w, w->promise());
    } catch (const std::exception & e) {
        throw_js(env, e);
    }
    return env.Undefined();
}

// saveTokenRecycling() -> Buffer (a copy of the matrix; ~1 MiB for a 32k vocabulary)
Napi::Value session_wrap::save_recycling(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!check(env)) return env.Undefined();
    const std::vector<uint8_t> bytes = recycling(*sess)->save();
    return Napi::Buffer<uint8_t>::Copy(env, bytes.data(), bytes.size());
}

// loadTokenRecycling(buffer): replaces the matrix (validated first; the old one stays on error)
Napi::Value session_wrap::load_recycling(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!check(env)) return env.Undefined();
    if (info.Length() < 1 || !info[0].IsTypedArray()) {
        Napi::TypeError::New(env, "[ERR_INVALID_OPTION] loadTokenRecycling(data: Uint8Array)").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    Napi::Uint8Array a = info[0].As<Napi::Uint8Array>();
    try {
        auto m = std::make_shared<adjacency_matrix>((int32_t) sess->n_vocab());
        m->load(a.Data(), a.ByteLength());
        recycling_ = m;
    } catch (const std::exception & e) {
        throw_js(env, e);
    }
    return env.Undefined();
}

// saveOnline() -> Buffer: the online learner's weights (F32 after a header naming the draft model's shape)
Napi::Value session_wrap::save_online(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!check(env)) return env.Undefined();
    if (!online_) {
        Napi::Error::New(env, "[ERR_INVALID_OPTION] this session has no online learning state: generate with `online` first, or loadOnline()")
            .ThrowAsJavaScriptException();
        return env.Undefined();
    }
    try {
        const std::vector<uint8_t> bytes = online_->save();
        return Napi::Buffer<uint8_t>::Copy(env, bytes.data(), bytes.size());
    } catch (const std::exception & e) {
        throw_js(env, e);
    }
    return env.Undefined();
}

// loadOnline(buffer, draftModel): the learner for that draft model takes these weights (validated
// first; the session's learner is unchanged on error)
Napi::Value session_wrap::load_online(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!check(env)) return env.Undefined();
    if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsObject()) {
        Napi::TypeError::New(env, "[ERR_INVALID_OPTION] loadOnline(data: Uint8Array, draftModel)").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    std::shared_ptr<const model> dm = Napi::ObjectWrap<model_wrap>::Unwrap(info[1].As<Napi::Object>())->get(env);
    if (!dm) return env.Undefined();
    Napi::Uint8Array a = info[0].As<Napi::Uint8Array>();
    try {
        if (online_ && online_->source() == dm) {
            online_->load(a.Data(), a.ByteLength());
        } else {
            online_options oo;
            oo.n_threads = sess->n_threads();
            auto l = std::make_shared<online_learner>(dm, oo);
            l->load(a.Data(), a.ByteLength());
            online_ = l;
        }
    } catch (const std::exception & e) {
        throw_js(env, e);
    }
    return env.Undefined();
}

// onlineInfo() -> { mistakes, updates, steps, lastLoss, trainMs, windows } or null
Napi::Value session_wrap::online_info(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!online_) return env.Null();
    const online_stats st = online_->stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("mistakes", (double) st.mistakes);
    o.Set("updates", (double) st.updates);
    o.Set("steps", (double) st.steps);
    o.Set("lastLoss", st.last_loss);
    o.Set("trainMs", st.train_ms);
    o.Set("windows", (double) st.windows);
    return o;
}

// _onlineForward(tokens) -> Float32Array: the logits of the session's online learner's trainable
// graph (test hook: the differentiable forward pass against the model's own)
Napi::Value session_wrap::online_forward(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!check(env)) return env.Undefined();
    if (!online_) {
        Napi::Error::New(env, "[ERR_INVALID_OPTION] no online learner in this session").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    try {
        const std::vector<float> lg = online_->forward(to_tokens(info[0]));
        Napi::Float32Array a = Napi::Float32Array::New(env, lg.size());
        std::copy(lg.begin(), lg.end(), a.Data());
        return a;
    } catch (const std::exception & e) {
        throw_js(env, e);
    }
    return env.Undefined();
}

// _adedSize(maxTrigrams?) -> { trigrams, bigrams, maxTrigrams }: the entries of the session's ADED
// table; with a number, a new empty table with that bound first (test hook: eviction in seconds)
Napi::Value session_wrap::aded_size(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() > 0 && info[0].IsNumber() && !busy.load()) {
        aded_options ao;
        ao.max_trigrams = std::max<size_t>(1, info[0].As<Napi::Number>().Uint32Value());
        aded_ = std::make_shared<aded_drafter>(ao);
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("trigrams", (double) (aded_ ? aded_->trigram_count() : 0));
    o.Set("bigrams", (double) (aded_ ? aded_->bigram_count() : 0));
    o.Set("maxTrigrams", (double) (aded_ ? aded_->max_trigrams() : aded_options().max_trigrams));
    return o;
}

// dropDraftSession(): lets go of the kept draft session (its draft model is being disposed)
Napi::Value session_wrap::drop_draft_session(const Napi::CallbackInfo & info) {
    draft_slot_.reset();
    return info.Env().Undefined();
}

// autoMemory() -> what 'auto' learnt in this session, as plain data (lib/session.ts: AutoMemory)
Napi::Value session_wrap::auto_memory_get(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!check(env)) return env.Undefined();  // a generation in flight changes it
    Napi::Object o = Napi::Object::New(env);
    o.Set("version", 2);
    const auto_memory m = auto_mem_ ? *auto_mem_ : auto_memory();
    o.Set("threads", m.n_threads);
    auto array = [&](const std::vector<double> & xs) {
        Napi::Array a = Napi::Array::New(env, xs.size());
        for (uint32_t i = 0; i < xs.size(); ++i) a.Set(i, xs[i]);
        return a;
    };
    o.Set("verifyMs", array(m.t_ms));
    o.Set("verifySeen", array(m.t_seen));
    o.Set("steps", (double) m.steps);
    Napi::Object ds = Napi::Object::New(env);
    for (const auto & [name, st] : m.by_name) {
        Napi::Object d = Napi::Object::New(env);
        d.Set("tried", array(st.tried));
        d.Set("accepted", array(st.ok));
        d.Set("msPerToken", st.ms_per_token);
        d.Set("catchUpMsPerToken", st.catch_up_ms);
        d.Set("catchUpBatchMs", st.catch_up_batch_ms);
        d.Set("fill", st.fill);
        d.Set("depth", st.depth);
        d.Set("n", st.n);
        d.Set("predictedTokens", st.predicted_tokens);
        d.Set("realizedTokens", st.realized_tokens);
        d.Set("predictedMs", st.predicted_ms);
        d.Set("realizedMs", st.realized_ms);
        ds.Set(name, d);
    }
    o.Set("drafters", ds);
    return o;
}

// setAutoMemory(data): replaces it (lib/session.ts validated the shape and ranges)
Napi::Value session_wrap::auto_memory_set(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!check(env)) return env.Undefined();
    auto num = [](Napi::Value v) { return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : 0.0; };
    auto m = std::make_shared<auto_memory>();
    Napi::Object o = info[0].As<Napi::Object>();
    auto numbers = [&](Napi::Value v, std::vector<double> & xs, size_t max) {
        Napi::Array a = v.As<Napi::Array>();
        xs.assign(std::min<size_t>(a.Length(), max), 0.0);
        for (uint32_t i = 0; i < xs.size(); ++i) xs[i] = num(a.Get(i));
    };
    m->n_threads = (int) num(o.Get("threads"));
    numbers(o.Get("verifyMs"), m->t_ms, auto_memory::MAX_TOKENS);
    numbers(o.Get("verifySeen"), m->t_seen, auto_memory::MAX_TOKENS);
    m->t_ms.resize(auto_memory::MAX_TOKENS, 0.0);
    m->t_seen.resize(auto_memory::MAX_TOKENS, 0.0);
    m->steps = (uint64_t) num(o.Get("steps"));
    Napi::Object ds = o.Get("drafters").As<Napi::Object>();
    Napi::Array names = ds.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); ++i) {
        const std::string name = names.Get(i).As<Napi::String>().Utf8Value();
        Napi::Object d = ds.Get(name).As<Napi::Object>();
        auto_memory::drafter_stats & st = m->by_name[name];
        numbers(d.Get("tried"), st.tried, auto_memory::MAX_TOKENS);
        numbers(d.Get("accepted"), st.ok, auto_memory::MAX_TOKENS);
        st.ok.resize(st.tried.size(), 0.0);
        st.ms_per_token = num(d.Get("msPerToken"));
        st.catch_up_ms = num(d.Get("catchUpMsPerToken"));
        st.catch_up_batch_ms = num(d.Get("catchUpBatchMs"));
        st.fill = num(d.Get("fill"));
        st.depth = num(d.Get("depth"));
        st.n = num(d.Get("n"));
        st.predicted_tokens = num(d.Get("predictedTokens"));
        st.realized_tokens = num(d.Get("realizedTokens"));
        st.predicted_ms = num(d.Get("predictedMs"));
        st.realized_ms = num(d.Get("realizedMs"));
    }
    m->adopt_draft = true;
    m->adopt_heads = true;
    auto_mem_ = m;
    return env.Undefined();
}

// _memory() -> { kvBytes, computeBytes, graphBytes }: what the session holds (test hook)
Napi::Value session_wrap::memory(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    if (!sess) return o;
    const session_memory mem = sess->memory();
    o.Set("kvBytes", (double) mem.kv);
    o.Set("computeBytes", (double) mem.compute);
    o.Set("graphBytes", (double) mem.graph);
    return o;
}

// _evalTree(tokens, parents) -> Float32Array [tokens.length][n_vocab]: the logits of every row of a
// verification pass of this tree after the committed sequence (nothing committed; synchronous; test
// hook for tree rows against one-token decoding). _evalTree(tokens, parents, transferFile) -> { logits,
// pseudo }: the same pass carrying the Hidden Transfer pseudo rows of that file's maps (pseudo:
// [tokens.length][k][n_vocab], empty when they did not fit).
Napi::Value session_wrap::eval_tree(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!check(env)) return env.Undefined();
    if (busy.load()) {
        Napi::Error::New(env, "[ERR_BUSY] the session is busy").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    try {
        const std::vector<int32_t> toks = to_tokens(info[0]);
        const std::vector<int32_t> parents = to_tokens(info[1]);
        if (toks.empty() || parents.size() != toks.size()) throw error("ERR_INVALID_OPTION", "a tree needs tokens and as many parents");
        for (size_t i = 0; i < parents.size(); ++i) {
            if (parents[i] < -1 || parents[i] >= (int32_t) i) throw error("ERR_INVALID_OPTION", "tree parents must precede their children");
        }
        std::vector<uint32_t> outputs(toks.size());
        for (size_t i = 0; i < toks.size(); ++i) outputs[i] = (uint32_t) i;
        std::vector<float> logits;
        sess->clear_abort();
        std::shared_ptr<const transfer_heads> th;
        if (info.Length() > 2 && info[2].IsString()) th = transfer_heads::load(info[2].As<Napi::String>().Utf8Value(), sess->mdl());
        if (th) sess->set_transfer(th->maps_tensor(), th->layer);
        struct restore_t {
            session * s; const std::shared_ptr<const transfer_heads> & active; bool on;
            ~restore_t() { if (on) s->set_transfer(active ? active->maps_tensor() : nullptr, active ? active->layer : 0); }
        } restore { sess.get(), transfer_active_, (bool) th };
        sess->eval_tree(toks, parents, outputs, logits);
        Napi::Float32Array out = Napi::Float32Array::New(env, logits.size());
        std::copy(logits.begin(), logits.end(), out.Data());
        if (!th) return out;
        const std::vector<float> & pl = sess->pseudo_logits();
        Napi::Float32Array pseudo = Napi::Float32Array::New(env, pl.size());
        std::copy(pl.begin(), pl.end(), pseudo.Data());
        Napi::Object r = Napi::Object::New(env);
        r.Set("logits", out);
        r.Set("pseudo", pseudo);
        return r;
    } catch (const std::exception & e) {
        throw_js(env, e);
    }
    return env.Undefined();
}

Napi::Value session_wrap::dispose(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (busy.load()) {
        Napi::Error::New(env, "[ERR_BUSY] cannot dispose a session while it evaluates").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    generation_.reset();
    draft_slot_.reset();
    lud_sess_.reset();
    online_.reset();
    eagle_state_.reset();  // it refers to the session
    chimera_state_.reset();
    chimera_.reset();
    if (sess) sess->set_transfer(nullptr, 0);
    transfer_active_.reset();
    transfer_.reset();
    heads_.reset();
    eagle_.reset();
    coproc_.reset();
    sess.reset();
    return env.Undefined();
}

Napi::Value create_session(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject()) {
        Napi::TypeError::New(env, "[ERR_INTERNAL] createSession(model, options)").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    Napi::Object model_obj = info[0].As<Napi::Object>();
    model_wrap * mw = Napi::ObjectWrap<model_wrap>::Unwrap(model_obj);
    std::shared_ptr<const model> m = mw->get(env);
    if (!m) return env.Undefined();
    Napi::Object o = info[1].As<Napi::Object>();
    session_params p;
    p.n_ctx     = get_u32(o, "contextSize", m->hp.n_ctx_train);
    p.n_batch   = get_u32(o, "batchSize", 512);
    p.n_threads = (int) get_u32(o, "threads", 1);
    auto * w = new create_worker(env, model_obj, m, p);
    Napi::Promise pr = w->promise();
    w->Queue();
    return pr;
}

} // namespace specdec
