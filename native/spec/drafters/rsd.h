// Recursive Speculative Decoding (Jeon et al., 2024), the constant-branching variant: a draft
// tree whose children at every node are a sample *without replacement* from the draft model's
// distribution there, drawn by the Gumbel-top-k trick (the k largest log q + Gumbel noise). The
// tree grows level by level, each level's nodes evaluated by the draft model in one tree pass,
// and is verified by recursive rejection sampling with the without-replacement rule
// (spec/verifier.h). Greedy: the draft's top-k at each node (deterministic drafts).
#pragma once

#include "spec/drafters/draft_model.h"

#include <memory>
#include <vector>

namespace specdec {

struct rsd_options {
    std::vector<uint32_t> branching = { 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };  // children per node at each depth
};

class rsd_drafter : public drafter {
public:
    rsd_drafter(std::shared_ptr<const model> draft, const session_params & params, const sampling_params & sampling,
                const rsd_options & options = {});
    void propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) override;
    void prepare(const std::vector<int32_t> & history) override { base.prepare(history); }
    void abort() override { base.abort(); }
    void pause() override { base.pause(); }

private:
    draft_model_drafter base;  // its session follows the target
    sampler_chain       chain;
    rsd_options         opt;
    std::vector<float>  logits;
    std::vector<float>  level_logits;
};

} // namespace specdec
