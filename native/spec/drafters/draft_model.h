// Draft-model drafting: a smaller model with the same vocabulary proposes a chain by decoding
// ahead of the target. Its own session (KV cache) follows the target's sequence: before each
// proposal the draft cache is cut back to the common prefix (rolling back rejected drafts) and
// the missing tokens are evaluated. Greedy proposes the draft's argmax (q = one-hot); sampling
// draws from the draft's distribution after the same sampler chain, and the verifier accepts with
// min(1, p/q) (speculative sampling).
#pragma once

#include "runtime/session.h"
#include "sampling/sampler.h"
#include "spec/drafter.h"

#include <memory>

namespace specdec {

class draft_model_drafter : public drafter {
public:
    draft_model_drafter(std::shared_ptr<const model> draft, const session_params & params, const sampling_params & sampling);
    void propose(const std::vector<int32_t> & history, uint32_t budget, std::vector<int32_t> & out) override;
    const std::vector<token_prob> * draft_dist(size_t i) const override;
    void abort() override { if (sess) sess->request_abort(); }
    void pause() override { if (sess) sess->pause_threads(); }

private:
    std::shared_ptr<const model>          mdl;
    session_params                        par;
    sampler_chain                         chain;
    std::unique_ptr<session>              sess;  // made on first use, on the worker thread
    std::vector<std::vector<token_prob>>  dists; // q of each proposed token (sampling only)
    std::vector<float>                    logits;
};

} // namespace specdec
