#include "spec/drafters/rsd.h"

#include <algorithm>
#include <cmath>

namespace specdec {

rsd_drafter::rsd_drafter(std::shared_ptr<const model> draft, const session_params & params, const sampling_params & sampling,
                         const rsd_options & options)
    : base(std::move(draft), params, sampling), chain([&] {
          sampling_params sp = sampling;
          sp.seed = sampling.seed ^ 0xD1B54A32D192ED03ull;  // its own random stream
          return sp;
      }()), opt(options) {}

void rsd_drafter::propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) {
    out.clear();
    out.without_replacement = !chain.greedy();
    session & ds = base.follow(history, logits);
    if (history.size() + budget >= ds.n_ctx()) budget = ds.n_ctx() > history.size() + 1 ? ds.n_ctx() - (uint32_t) history.size() - 1 : 0;
    const int32_t n_vocab = (int32_t) ds.n_vocab();
    std::vector<int32_t> frontier = { -1 };  // nodes to expand; -1 is the root
    std::vector<const float *> rows = { logits.data() };
    std::vector<token_prob> dist;
    std::vector<std::pair<double, int32_t>> keys;
    std::vector<int32_t> ctx;
    for (size_t depth = 0; depth < opt.branching.size() && out.size() < budget && !frontier.empty(); ++depth) {
        const uint32_t k = opt.branching[depth];
        std::vector<int32_t> next;
        for (size_t f = 0; f < frontier.size() && out.size() < budget; ++f) {
            const int32_t node = frontier[f];
            if (chain.greedy()) {
                top_candidates(rows[f], n_vocab, (int32_t) k, dist, true);
                for (const auto & c : dist) {
                    if (out.size() >= budget) break;
                    next.push_back(out.add(c.id, node));
                }
                continue;
            }
            // the draft's distribution after the sampler chain (penalties see the node's path)
            ctx = history;
            std::vector<int32_t> path;
            for (int32_t a = node; a >= 0; a = out.parents[(size_t) a]) path.push_back(out.tokens[(size_t) a]);
            ctx.insert(ctx.end(), path.rbegin(), path.rend());
            chain.distribution(rows[f], n_vocab, ctx, dist);
            // Gumbel-top-k: the k largest log q + Gumbel noise are a sample without replacement
            keys.clear();
            for (size_t i = 0; i < dist.size(); ++i) {
                const double u = std::max(chain.uniform(), 1e-300);
                keys.push_back({ std::log((double) dist[i].p) - std::log(-std::log(u)), (int32_t) i });
            }
            const size_t take = std::min<size_t>(k, keys.size());
            std::partial_sort(keys.begin(), keys.begin() + take, keys.end(), [](const auto & a, const auto & b) { return a.first > b.first; });
            out.dists.push_back(dist);
            const int32_t qi = (int32_t) out.dists.size() - 1;
            for (size_t i = 0; i < take && out.size() < budget; ++i) next.push_back(out.add(dist[(size_t) keys[i].second].id, node, qi));
        }
        frontier.swap(next);
        if (out.size() >= budget || frontier.empty() || depth + 1 >= opt.branching.size()) break;
        // the draft model over the tree so far, for the logits of the new frontier
        std::vector<uint32_t> outputs(frontier.begin(), frontier.end());
        ds.eval_tree(out.tokens, out.parents, outputs, level_logits);
        rows.clear();
        for (size_t i = 0; i < frontier.size(); ++i) rows.push_back(level_logits.data() + i * (size_t) n_vocab);
    }
}

} // namespace specdec
