// Lexical Unit Decoding (arXiv 2405.15208) with a model fine-tuned by train/lud_train.cpp: k
// placeholder tokens appended to the context make one forward pass predict the next k + 1 tokens
// (the last real token's row the first, placeholder j's row token j + 1).
//
// Two uses of one pass (lud_parallel_pass):
//   - verify mode (this drafter, lossless): the first prediction and the confident run after it are
//     a chain the target verifies like any draft;
//   - lossy mode (generation_params::parallel, runtime/generation.cpp): the generation runs on the
//     LUD model's own session and emits the first token and the confident run at once, unverified.
#pragma once

#include "model/model.h"
#include "runtime/session.h"
#include "spec/drafter.h"

#include <atomic>
#include <memory>
#include <vector>

namespace specdec {

struct lud_params {
    uint32_t k = 4;            // placeholders appended
    float    alpha = 0.8f;     // a placeholder's prediction counts while its probability is at least alpha
    int32_t  placeholder = -1; // the model's input-only placeholder id (its vocabulary size)
};

// The lud.* keys of a loaded model (k and alpha as trained; the caller may override them).
// ERR_INVALID_OPTION when the model is not a LUD model.
lud_params lud_params_of(const model & m);

// ERR_VOCAB_MISMATCH unless the LUD model was made for a target of this vocabulary and shape.
void lud_check_target(const model & lud, const model & target);

// Evaluates `pending` (tokens after the session's cache, at least one) followed by k placeholders
// as one chain, commits `pending` only (the placeholders' cells are dropped), and writes the logits
// of the last pending token and of each placeholder to `logits` ([k + 1][n_vocab]).
void lud_parallel_pass(session & s, const std::vector<int32_t> & pending, uint32_t k, int32_t placeholder,
                       std::vector<float> & logits);

// The confident run: the argmax of placeholder rows 1 .. k (logits as lud_parallel_pass writes
// them) as long as its softmax probability is at least alpha.
void lud_confident_run(const float * logits, uint32_t k, int32_t n_vocab, float alpha, std::vector<int32_t> & out);

class lud_drafter : public drafter {
public:
    lud_drafter(std::shared_ptr<const model> lud, const session_params & params, const lud_params & lp);
    // A chain: the LUD model's next token, then its confident run.
    void propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) override;
    void prepare(const std::vector<int32_t> & history) override;
    bool computes() const override { return true; }
    void abort() override { aborted.store(true); }
    void pause() override { if (sess) sess->pause_threads(); }

private:
    session & ensure_session();
    // Cuts the session back to its common prefix with `history` (at least one token short of it),
    // evaluates the rest but its last `max_pending` tokens (in chunks), and returns those.
    std::vector<int32_t> catch_up(const std::vector<int32_t> & history, size_t max_pending);

    std::atomic<bool>            aborted { false };  // outlives sess (declared before it)
    std::shared_ptr<const model> mdl;
    session_params               par;
    lud_params                   lp;
    std::unique_ptr<session>     sess;
    std::vector<float>           logits;
};

} // namespace specdec
