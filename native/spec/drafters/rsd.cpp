#include "spec/drafters/rsd.h"

#include <algorithm>
#include <cmath>

namespace specdec {

// Nodes the draft session has room for after `history` (its cache holds the history, the tree
// goes after it).
static uint32_t room_for(const session & ds, size_t history_size, uint32_t budget) {
    if (history_size + budget < ds.n_ctx()) return budget;
    return ds.n_ctx() > history_size + 1 ? ds.n_ctx() - (uint32_t) history_size - 1 : 0;
}

// The sequence a node continues: the history, then the path from the root down to the node
// (what the sampler chain's penalties look at).
static void node_context(const std::vector<int32_t> & history, const draft_tree & t, int32_t node, std::vector<int32_t> & ctx) {
    ctx = history;
    const size_t base = ctx.size();
    for (int32_t a = node; a >= 0; a = t.parents[(size_t) a]) ctx.push_back(t.tokens[(size_t) a]);
    std::reverse(ctx.begin() + (std::ptrdiff_t) base, ctx.end());
}

// Gumbel noise for the i-th candidate of `dist` at `position`: from the chain's sequential stream, or
// (coupled drafts) the target's keyed noise for that token, so that the top child is the draw the
// target makes when p and q agree.
static double gumbel_for(sampler_chain & chain, const std::vector<token_prob> & dist, size_t i, size_t position) {
    if (chain.params().coupled_drafts) return keyed_gumbel(chain.params().seed, (uint64_t) position, dist[i].id);
    const double u = std::max(chain.uniform(), 1e-300);
    return -std::log(-std::log(u));
}

// The draft model over the tree so far, for the logits of `nodes` (one row each, in `rows`).
static void eval_nodes(session & ds, const draft_tree & t, const std::vector<uint32_t> & nodes, std::vector<float> & buf,
                       std::vector<const float *> & rows) {
    ds.eval_tree(t.tokens, t.parents, nodes, buf);
    rows.clear();
    for (size_t i = 0; i < nodes.size(); ++i) rows.push_back(buf.data() + i * (size_t) ds.n_vocab());
}

rsd_drafter::rsd_drafter(std::shared_ptr<const model> draft, const session_params & params, const sampling_params & sampling,
                         const rsd_options & options)
    : base(std::move(draft), params, sampling, [&] {
          draft_model_options dmo;
          dmo.slot = options.slot;
          return dmo;
      }()), chain([&] {
          sampling_params sp = sampling;
          // its own random stream, or (seed-exact verification) the target's keyed one
          if (!sampling.coupled_drafts) sp.seed = sampling.seed ^ 0xD1B54A32D192ED03ull;
          return sp;
      }()), opt(options) {}

void rsd_drafter::propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) {
    if (opt.beam && !chain.greedy()) {
        propose_beam(history, budget, out);
        return;
    }
    out.clear();
    out.without_replacement = !chain.greedy();
    session & ds = base.follow(history, logits);
    budget = room_for(ds, history.size(), budget);
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
            node_context(history, out, node, ctx);
            chain.distribution(rows[f], n_vocab, ctx, dist);
            // Gumbel-top-k: the k largest log q + Gumbel noise are a sample without replacement
            keys.clear();
            for (size_t i = 0; i < dist.size(); ++i) {
                keys.push_back({ std::log((double) dist[i].p) + gumbel_for(chain, dist, i, ctx.size()), (int32_t) i });
            }
            const size_t take = std::min<size_t>(k, keys.size());
            std::partial_sort(keys.begin(), keys.begin() + take, keys.end(), [](const auto & a, const auto & b) { return a.first > b.first; });
            out.dists.push_back(dist);
            const int32_t qi = (int32_t) out.dists.size() - 1;
            for (size_t i = 0; i < take && out.size() < budget; ++i) next.push_back(out.add(dist[(size_t) keys[i].second].id, node, qi));
        }
        frontier.swap(next);
        if (out.size() >= budget || frontier.empty() || depth + 1 >= opt.branching.size()) break;
        eval_nodes(ds, out, std::vector<uint32_t>(frontier.begin(), frontier.end()), level_logits, rows);
    }
}

// log(exp(-a) ... ): the Gumbel of a child conditioned on its parent's perturbed value g_parent
// and the largest unconditioned child Gumbel z (Kool et al., 2019, appendix B, stable form)
static double conditional_gumbel(double g_parent, double z, double g) {
    const double v = g_parent - g + std::log1p(-std::exp(g - z));
    return g_parent - std::max(v, 0.0) - std::log1p(std::exp(-std::fabs(v)));
}

void rsd_drafter::propose_beam(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) {
    out.clear();
    out.without_replacement = true;
    session & ds = base.follow(history, logits);
    budget = room_for(ds, history.size(), budget);
    const int32_t n_vocab = (int32_t) ds.n_vocab();
    struct beam_node { int32_t node; double logp; double g; };  // node -1: the root
    std::vector<beam_node> beam = { { -1, 0.0, 0.0 } };
    std::vector<const float *> rows = { logits.data() };
    std::vector<token_prob> dist;
    std::vector<int32_t> ctx;
    struct child { size_t parent; int32_t token; double logp; double g; int32_t q; };
    for (uint32_t depth = 0; depth < opt.beam_depth && out.size() < budget && !beam.empty(); ++depth) {
        std::vector<child> all;
        for (size_t f = 0; f < beam.size(); ++f) {
            node_context(history, out, beam[f].node, ctx);
            chain.distribution(rows[f], n_vocab, ctx, dist);
            out.dists.push_back(dist);
            const int32_t qi = (int32_t) out.dists.size() - 1;
            // perturbed log-probabilities of the children, conditioned on the parent's
            std::vector<double> gs(dist.size());
            double z = -INFINITY;
            for (size_t i = 0; i < dist.size(); ++i) {
                gs[i] = beam[f].logp + std::log((double) dist[i].p) + gumbel_for(chain, dist, i, ctx.size());
                z = std::max(z, gs[i]);
            }
            for (size_t i = 0; i < dist.size(); ++i) {
                all.push_back({ f, dist[i].id, beam[f].logp + std::log((double) dist[i].p), conditional_gumbel(beam[f].g, z, gs[i]), qi });
            }
        }
        // the beam: the W largest perturbed values among all children
        const size_t take = std::min<size_t>({ (size_t) opt.beam_width, all.size(), (size_t) (budget - out.size()) });
        std::partial_sort(all.begin(), all.begin() + take, all.end(), [](const child & a, const child & b) { return a.g > b.g; });
        // add them grouped by parent, each parent's children in decreasing perturbed value (the
        // order of a sample without replacement)
        std::vector<beam_node> next;
        for (size_t f = 0; f < beam.size(); ++f) {
            for (size_t i = 0; i < take; ++i) {
                if (all[i].parent != f) continue;
                const int32_t node = out.add(all[i].token, beam[f].node, all[i].q);
                next.push_back({ node, all[i].logp, all[i].g });
            }
        }
        beam.swap(next);
        if (out.size() >= budget || depth + 1 >= opt.beam_depth) break;
        std::vector<uint32_t> nodes;
        for (const auto & b : beam) nodes.push_back((uint32_t) b.node);
        eval_nodes(ds, out, nodes, level_logits, rows);
    }
}

} // namespace specdec
