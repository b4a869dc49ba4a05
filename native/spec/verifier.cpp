#include "spec/verifier.h"

#include <algorithm>

namespace specdec {

void tree_verifier::start(const draft_tree & tree, const std::vector<int32_t> & history) {
    const size_t n = tree.size();
    children.assign(n + 1, {});  // children[0]: the root's; children[1 + i]: node i's
    for (size_t i = 0; i < n; ++i) children[(size_t) (tree.parents[i] + 1)].push_back((uint32_t) i);
    ctx = history;
}

acceptance tree_verifier::accept_match(const draft_tree & tree, const float * logits, int32_t n_vocab,
                                       const sampler_chain & chain, const std::vector<int32_t> & history) {
    acceptance out;
    start(tree, history);
    size_t row = 0;  // logits row of the current node (0: the root)
    for (;;) {
        // the target's own token at this position, drawn as autoregressive decoding draws it
        chain.distribution(logits + row * (size_t) n_vocab, n_vocab, ctx, dist);
        const int32_t x = chain.draw(dist, (uint64_t) ctx.size());
        const auto & kids = children[row];
        auto it = std::find_if(kids.begin(), kids.end(), [&](uint32_t k) { return tree.tokens[k] == x; });
        if (it == kids.end()) {
            out.next = x;
            return out;
        }
        out.path.push_back(*it);
        ctx.push_back(x);
        row = 1 + *it;
    }
}

acceptance tree_verifier::accept(const draft_tree & tree, const float * logits, int32_t n_vocab, sampler_chain & chain,
                                 const std::vector<int32_t> & history, bool biased) {
    acceptance out;
    start(tree, history);
    size_t row = 0;  // logits row of the current node (0: the root)
    for (;;) {
        chain.distribution(logits + row * (size_t) n_vocab, n_vocab, ctx, dist);
        const auto & kids = children[row];
        if (chain.greedy()) {
            const int32_t best = dist[0].id;
            auto it = std::find_if(kids.begin(), kids.end(), [&](uint32_t k) { return tree.tokens[k] == best; });
            if (it == kids.end()) {
                out.next = best;
                return out;
            }
            out.path.push_back(*it);
            ctx.push_back(best);
            row = 1 + *it;
            continue;
        }
        if (kids.empty()) {
            out.next = chain.sample_from(dist);
            return out;
        }
        if (biased) {
            out.path.push_back(kids[0]);
            ctx.push_back(tree.tokens[kids[0]]);
            row = 1 + kids[0];
            continue;
        }
        // p over the vocabulary (the residual as siblings are rejected)
        pdense.assign((size_t) n_vocab, 0.0f);
        for (const auto & c : dist) pdense[c.id] = c.p;
        int32_t q_loaded = -2;
        double q_removed = 0.0;  // mass of rejected siblings (draws without replacement)
        int32_t accepted = -1;
        for (uint32_t k : kids) {
            const int32_t x = tree.tokens[k];
            const int32_t qi = tree.q_index[k];
            // q_j over the vocabulary: one-hot, q, or q without the rejected siblings
            if (qi < 0) {
                q_loaded = -1;
            } else if (qi != q_loaded) {
                qdense.assign((size_t) n_vocab, 0.0f);
                for (const auto & c : tree.dists[(size_t) qi]) qdense[c.id] = c.p;
                q_loaded = qi;
                q_removed = 0.0;
            }
            const double qscale = (qi >= 0 && tree.without_replacement && q_removed < 1.0) ? 1.0 / (1.0 - q_removed) : 1.0;
            const double qx = qi < 0 ? 1.0 : qdense[x] * qscale;
            const double px = pdense[x];
            const double a = qx > 0.0 ? std::min(1.0, px / qx) : 0.0;
            if (px > 0.0 && chain.uniform() < a) {
                accepted = (int32_t) k;
                break;
            }
            // rejected: p <- normalize(max(0, p - q_j))
            double z = 0.0;
            if (qi < 0) {
                pdense[x] = 0.0f;
                for (const auto & c : dist) z += pdense[c.id];
            } else {
                for (const auto & c : dist) {
                    const double r = pdense[c.id] - qdense[c.id] * qscale;
                    pdense[c.id] = r > 0.0 ? (float) r : 0.0f;
                    z += pdense[c.id];
                }
            }
            if (z <= 0.0) break;  // nothing left (cannot happen when p and q differ); fall back below
            for (const auto & c : dist) pdense[c.id] = (float) (pdense[c.id] / z);
            if (qi >= 0 && tree.without_replacement) {
                q_removed += qdense[x] * 1.0;  // in units of the original q
                qdense[x] = 0.0f;
                q_removed = std::min(q_removed, 1.0);
            }
        }
        if (accepted >= 0) {
            out.path.push_back((uint32_t) accepted);
            ctx.push_back(tree.tokens[(size_t) accepted]);
            row = 1 + (size_t) accepted;
            continue;
        }
        // every child rejected: draw from the residual
        std::vector<token_prob> res;
        for (const auto & c : dist) {
            if (pdense[c.id] > 0.0f) res.push_back({ c.id, c.logit, pdense[c.id] });
        }
        out.next = res.empty() ? dist[0].id : chain.sample_from(res);
        return out;
    }
}

} // namespace specdec
