// N-API wrapper of a session and its generation. Each native step is a promise backed by
// an async worker that holds a reference to the wrapper, so nothing is freed under it.
#pragma once

#include "coproc/coprocessor.h"
#include "coproc/perplexity.h"
#include "runtime/generation.h"
#include "heads/medusa_heads.h"
#include "spec/methods.h"
#include "runtime/session.h"
#include "spec/drafters/aded.h"
#include "spec/drafters/token_recycling.h"

#include <napi.h>

#include <atomic>
#include <memory>

namespace specdec {

class session_wrap : public Napi::ObjectWrap<session_wrap> {
public:
    static Napi::Function init(Napi::Env env);
    static Napi::FunctionReference constructor;

    explicit session_wrap(const Napi::CallbackInfo & info);

    session * get() { return sess.get(); }
    generation * gen() { return generation_.get(); }
    // Frees the generation, its drafter and draft sessions with it (a draft model's last owners
    // besides its Model object): called when a generation ends, so that disposing the draft model
    // afterwards frees it. On the JS thread, never while a step runs.
    void end_generation() { if (!busy.load()) generation_.reset(); }
    std::atomic<bool> busy { false };
    // Marks the session busy and queues `w`, on the JS thread. First it takes a snapshot of what
    // tokens() and info() report (the committed sequence, the thread count), so that those
    // accessors never read what a worker is changing: while work is in flight they return the state
    // as it was when the work was queued; once it has completed (busy is cleared on the JS thread,
    // after the worker's Execute) they read the session again.
    Napi::Value queue(Napi::AsyncWorker * w, Napi::Promise p);

private:
    Napi::Value begin(const Napi::CallbackInfo & info);
    Napi::Value step(const Napi::CallbackInfo & info);
    Napi::Value evaluate(const Napi::CallbackInfo & info);
    Napi::Value evaluate_hidden(const Napi::CallbackInfo & info);
    Napi::Value tokens(const Napi::CallbackInfo & info);
    Napi::Value truncate(const Napi::CallbackInfo & info);
    Napi::Value abort(const Napi::CallbackInfo & info);
    Napi::Value end(const Napi::CallbackInfo & info);
    Napi::Value set_threads(const Napi::CallbackInfo & info);
    Napi::Value calibrate_threads(const Napi::CallbackInfo & info);
    Napi::Value info(const Napi::CallbackInfo & info);
    Napi::Value dispose(const Napi::CallbackInfo & info);
    Napi::Value save_recycling(const Napi::CallbackInfo & info);
    Napi::Value load_recycling(const Napi::CallbackInfo & info);
    Napi::Value save_online(const Napi::CallbackInfo & info);
    Napi::Value load_online(const Napi::CallbackInfo & info);
    Napi::Value online_info(const Napi::CallbackInfo & info);
    Napi::Value online_forward(const Napi::CallbackInfo & info);  // test hook
    Napi::Value aded_size(const Napi::CallbackInfo & info);  // test hook
    Napi::Value auto_memory_get(const Napi::CallbackInfo & info);
    Napi::Value drop_draft_session(const Napi::CallbackInfo & info);
    Napi::Value auto_memory_set(const Napi::CallbackInfo & info);
    Napi::Value memory(const Napi::CallbackInfo & info);     // test hook
    Napi::Value eval_tree(const Napi::CallbackInfo & info);  // test hook
    Napi::Value augment(const Napi::CallbackInfo & info);
    Napi::Value perplexity(const Napi::CallbackInfo & info);

    // The last coprocessor file loaded (reloaded when its path, size or modification time changes).
    std::shared_ptr<const coprocessor> coproc_for(const std::string & path);
    std::shared_ptr<const coprocessor> coproc_;
    std::string coproc_key_;

    // The session's Token Recycling matrix (made on first use; it learns across generations).
    std::shared_ptr<adjacency_matrix> recycling(const session & s) {
        if (!recycling_) recycling_ = std::make_shared<adjacency_matrix>((int32_t) s.n_vocab());
        return recycling_;
    }
    std::shared_ptr<adjacency_matrix> recycling_;
    // the draft model's session, kept across generations (draft_model.h); a generation in flight holds
    // its own reference, so dropping it here (dropDraftSession, on the JS thread) is safe at any time
    std::shared_ptr<draft_session_slot> draft_slot_;
    std::shared_ptr<auto_memory> auto_mem_;  // what 'auto' learnt (verify costs, acceptance), kept across generations
    std::shared_ptr<aded_drafter> aded_;  // ADED's tri-gram table, kept across generations like the matrix
    // Online Speculative Decoding: the learner of the last draft model used with `online` (its copy
    // of that model learns across generations; another draft model starts a new learner).
    std::shared_ptr<online_learner> online_;

    // The last head file loaded (reloaded when its path, size or modification time changes): Medusa
    // or EAGLE-3, by the file's architecture.
    void heads_for(const std::string & path, method_options & mo);
    std::shared_ptr<const medusa_heads> heads_;
    std::shared_ptr<const eagle3_heads> eagle_;
    std::shared_ptr<drafter> eagle_state_;  // its drafter and draft cache, following the session's sequence
    std::shared_ptr<const chimera_heads> chimera_;
    std::shared_ptr<drafter> chimera_state_;  // likewise for Chimera
    std::shared_ptr<const transfer_heads> transfer_;         // a loaded Hidden Transfer file
    std::shared_ptr<const transfer_heads> transfer_active_;  // the maps the session's passes carry now
    std::string heads_key_;

    bool check(Napi::Env env);

    // Lossy Lexical Unit Decoding: the LUD model's own session, which such a generation decodes on
    // (kept across generations for prefix reuse; remade for another LUD model or context size).
    // Declared before sess and generation_: freed after the generation that runs on it.
    std::unique_ptr<session>    lud_sess_;
    std::unique_ptr<session>    sess;
    std::unique_ptr<generation> generation_;

    // what tokens() and info() report while busy (see queue()); touched on the JS thread only
    std::vector<int32_t> snap_tokens_;
    int                  snap_threads_ = 0;
    uint32_t             snap_latents_ = 0;
};

// createSession(model, { contextSize, batchSize, threads }) -> Promise<Session>
Napi::Value create_session(const Napi::CallbackInfo & info);

} // namespace specdec
