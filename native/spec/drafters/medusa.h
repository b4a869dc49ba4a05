// Medusa drafting (arXiv 2401.10774): heads over the target's last hidden state propose the tokens
// after the root, head k the token k+1 places after it, all from the one hidden state of the row
// that predicted the root (the target's own verification pass taps it: no drafter pass).
//
// The tree comes from the heads' top-k products: nodes are added best first by the product of
// their heads' probabilities along the path (each level's candidates are the same head's top
// tokens, whatever the parent). Nodes are deterministic proposals (q one-hot), so the verifier's
// rejection sampling stays exact at any temperature.
#pragma once

#include "heads/medusa_heads.h"
#include "runtime/session.h"
#include "spec/drafter.h"

#include <memory>

namespace specdec {

class medusa_drafter : public drafter {
public:
    // `target` is the session that verifies: its taps must include n_layer (tap_layers()) by the
    // time it evaluates; without them the drafter proposes nothing.
    medusa_drafter(std::shared_ptr<const medusa_heads> heads, const session & target, uint32_t top_k = 8);

    // The taps this drafter reads from the target's evaluations.
    static std::vector<uint32_t> tap_layers(const model & target) { return { target.hp.n_layer }; }

    void propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) override;
    void prepare(const std::vector<int32_t> & history) override;
    void observe(const verify_result & r) override;

private:
    // The hidden state of the target's row `row` of its last evaluation.
    void take_hidden(uint32_t row);

    const session &      target;
    medusa_runner        runner;
    uint32_t             top_k;
    std::vector<float>   h;        // the row that predicted the current root
    bool                 have_h = false;
    std::vector<float>   logits;   // [K][n_vocab]
    std::vector<std::vector<token_prob>> cands;  // per head: top_k candidates with softmax p
};

} // namespace specdec
