// Recursive Speculative Decoding (Jeon et al., 2024): draft trees whose children at every node are
// a sample *without replacement* from the draft model's distribution q there, verified by
// recursive rejection sampling with the without-replacement rule (spec/verifier.h). Two ways to
// grow the tree, level by level (each level's nodes evaluated by the draft model in one tree pass):
// - Gumbel-top-k (RSD-C): each node gets a fixed number of children, the k largest log q + Gumbel
//   noise (a sample without replacement);
// - Stochastic Beam Search (RSD-S): the W best of all children of the current beam by their
//   perturbed path log-probabilities (Gumbels conditioned on their parent's, Kool et al., 2019),
//   so a node gets between 0 and W children, again a sample without replacement from its q.
// Greedy: the draft's top-k at each node (deterministic drafts).
#pragma once

#include "spec/drafters/draft_model.h"

#include <memory>
#include <vector>

namespace specdec {

struct rsd_options {
    bool beam = false;                                                        // Stochastic Beam Search instead of Gumbel-top-k
    std::vector<uint32_t> branching = { 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };  // Gumbel-top-k: children per node at each depth
    uint32_t beam_width = 3;                                                  // beam search: width
    uint32_t beam_depth = 6;                                                  // beam search: levels
    std::shared_ptr<draft_session_slot> slot;                                 // the target session's draft session slot
};

class rsd_drafter : public drafter {
public:
    rsd_drafter(std::shared_ptr<const model> draft, const session_params & params, const sampling_params & sampling,
                const rsd_options & options = {});
    void propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) override;
    void prepare(const std::vector<int32_t> & history) override { base.prepare(history); }
    bool computes() const override { return true; }
    void abort() override { base.abort(); }
    void pause() override { base.pause(); }

private:
    void propose_beam(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out);

    draft_model_drafter base;  // its session follows the target
    sampler_chain       chain;
    rsd_options         opt;
    std::vector<float>  logits;
    std::vector<float>  level_logits;
};

} // namespace specdec
