#include "spec/drafters/draft_model.h"

namespace specdec {

draft_model_drafter::draft_model_drafter(std::shared_ptr<const model> draft, const session_params & params, const sampling_params & sampling)
    : mdl(std::move(draft)), par(params), chain([&] {
          sampling_params sp = sampling;
          sp.seed = sampling.seed ^ 0x9E3779B97F4A7C15ull;  // its own random stream
          return sp;
      }()) {}

const std::vector<token_prob> * draft_model_drafter::draft_dist(size_t i) const {
    if (chain.greedy() || i >= dists.size()) return nullptr;
    return &dists[i];
}

void draft_model_drafter::propose(const std::vector<int32_t> & history, uint32_t budget, std::vector<int32_t> & out) {
    out.clear();
    dists.clear();
    if (!sess) sess = std::make_unique<session>(mdl, par);
    // follow the target: keep the common prefix, evaluate the rest of the history
    const auto & held = sess->tokens();
    size_t common = 0;
    while (common < held.size() && common < history.size() && held[common] == history[common]) common++;
    if (common == history.size()) common--;  // re-evaluate the last token for its logits
    sess->truncate((uint32_t) common);
    budget = std::min<uint32_t>(budget, sess->n_ctx() - (uint32_t) history.size());
    if (budget == 0) return;
    std::vector<int32_t> rest(history.begin() + common, history.end());
    sess->eval_chain(rest, false, false, logits);
    std::vector<int32_t> ctx = history;
    std::vector<token_prob> dist;
    for (uint32_t i = 0; i < budget; ++i) {
        chain.distribution(logits.data(), (int32_t) sess->n_vocab(), ctx, dist);
        const int32_t x = chain.greedy() ? dist[0].id : chain.sample_from(dist);
        out.push_back(x);
        if (!chain.greedy()) dists.push_back(dist);
        ctx.push_back(x);
        if (i + 1 < budget) sess->eval_chain({ x }, false, false, logits);
    }
}

} // namespace specdec
