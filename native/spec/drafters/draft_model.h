// Draft-model drafting: a smaller model with the same vocabulary proposes by decoding ahead of the
// target. Its own session (KV cache) follows the target's sequence: before each proposal the draft
// cache is cut back to the common prefix (rolling back rejected drafts) and the missing tokens are
// evaluated.
//
// Greedy: the draft's argmax chain (q = one-hot), and a tree by branching where the draft is
// unsure: when its top token has probability below `branch_below`, the runner-up joins as a
// sibling leaf (free: no extra draft pass). Drafting stops early when the top token falls below
// `stop_below`. Sampling: a chain drawn from the draft's distribution after the same sampler
// chain, stopped early where the draft is unsure; the verifier accepts with min(1, p/q)
// (speculative sampling).
#pragma once

#include "runtime/session.h"
#include "sampling/sampler.h"
#include "spec/drafter.h"
#include "train/online_learner.h"

#include <atomic>
#include <memory>

namespace specdec {

// Tokens per forward pass when a draft session catches up with a long history (the prompt): one
// node of a larger batch can take over 100 ms on a large draft model, and an abort waits for it.
static constexpr size_t DRAFT_CATCH_UP = 128;

// A draft model's session kept by the target session across its generations, so that each generation
// does not make a new one (KV cache, compute buffers, graph buffer, threads). Each generation starts it
// empty (truncate(0)): the draft reads the prompt as a new session would, bit for bit.
// The target session drops it when the draft model is disposed, when a generation drafts with another
// model, and when it is disposed itself. `aborted` outlives the session (its session_params::abort_also).
struct draft_session_slot {
    std::atomic<bool>        aborted { false };
    std::unique_ptr<session> sess;
};

struct draft_model_options {
    float branch_below = 0.5f;   // greedy: add the runner-up as a sibling below this top-1 probability (0: chains)
    float stop_below   = 0.05f;  // greedy: stop drafting below this top-1 probability
    // sampling: stop drafting where the draft's most likely token (after the sampler chain) has less
    // than this probability: its samples there seldom are the target's (code pair at T = 0.8: 1.28x
    // our autoregressive decoding without the stop, 1.42-1.47x at 0.35-0.6)
    float stop_below_sampled = 0.5f;
    // seed-exact sampling (coupled drafts): add the runner-up of the perturbed log q as a sibling leaf
    // when it is within this margin of the best (the target's p then often picks it)
    float coupled_branch_margin = 1.0f;
    // the target session's slot for the draft session (null: a session of this drafter's own)
    std::shared_ptr<draft_session_slot> slot;
};

class draft_model_drafter : public drafter {
public:
    draft_model_drafter(std::shared_ptr<const model> draft, const session_params & params, const sampling_params & sampling,
                        const draft_model_options & options = {}, std::shared_ptr<online_learner> learner = nullptr);
    void propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) override;
    void prepare(const std::vector<int32_t> & history) override { follow(history, logits); }
    size_t catch_up(const std::vector<int32_t> & history) override;
    // Online Speculative Decoding: the learner hears every verification.
    void observe(const verify_result & r) override { if (learner) learner->observe(r); }
    bool computes() const override { return true; }
    // Safe from another thread while the drafter computes: its session (made on the worker thread)
    // reads the flag through session_params::abort_also, the Q8_0 weight copy included.
    void abort() override {
        abort_flag->store(true);
        if (learner) learner->abort();
    }
    void pause() override { if (sess) sess->pause_threads(); }

    // The draft session, following `history` (all but the last token evaluated, the last one
    // evaluated now): logits after history. For drafters built on this one (RSD, RASD).
    session & follow(const std::vector<int32_t> & history, std::vector<float> & logits);

private:
    session & ensure_session();
    // Evaluates history[0, n) past the prefix the draft session holds; `need_logits`: the logits after
    // it into out_logits (the last token evaluated again if the session held it all). Returns the
    // tokens evaluated.
    size_t evaluate(const std::vector<int32_t> & history, size_t n, bool need_logits, std::vector<float> & out_logits);

    std::atomic<bool>                     aborted { false };  // outlives own (declared before it)
    std::atomic<bool> *                   abort_flag = &aborted;  // the slot's, with a slot
    std::shared_ptr<online_learner>       learner;  // online: drafts with the learner's copy of the model
    std::shared_ptr<const model>          mdl;
    session_params                        par;
    sampler_chain                         chain;
    draft_model_options                   opt;
    std::unique_ptr<session>              own;   // without a slot: made on first use, on the worker thread
    session *                             sess = nullptr;  // own's, or the slot's
    std::vector<float>                    logits;
};

} // namespace specdec
