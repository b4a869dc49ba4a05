// Lossless acceptance of a draft tree from the target's logits.
//
// Greedy: the longest path whose tokens are the target's argmax, then the target's next token.
// Sampling: recursive rejection sampling over each node's children (SpecInfer; RSD's rule for
// children drawn without replacement). At a node with target distribution p (after the sampler
// chain, so exactly what autoregressive sampling would draw from), children x_1..x_k are tried in
// order: x_j is accepted with probability min(1, p(x_j) / q_j(x_j)); on rejection
// p <- normalize(max(0, p - q_j)). q_j is the child's draft distribution (one-hot for a
// deterministic proposal; for draws without replacement, q with the earlier siblings removed and
// renormalized). When every child is rejected the next token is drawn from what is left of p.
//
// Seed-exact ('match'): at each node the target draws its own token from p with the keyed stream
// at that node's position (sampler_chain::draw, as autoregressive sampling does), and the child
// holding that token, if any, is accepted. The output is then the autoregressive sample for the seed,
// bit for bit, whatever the drafter. A deterministic proposal is accepted with probability p(x), as
// by rejection sampling; a sampled one with the probability that the drafter's coupled draw
// (sampling_params::coupled_drafts) equals the target's.
#pragma once

#include "sampling/sampler.h"
#include "spec/drafter.h"

#include <vector>

namespace specdec {

enum verify_mode { VERIFY_MATCH, VERIFY_REJECTION };

struct acceptance {
    std::vector<uint32_t> path;  // accepted nodes, root-first
    int32_t next = -1;           // the target's token after them
};

class tree_verifier {
public:
    // logits: [1 + tree.size()][n_vocab] as in verify_result. history ends with the root.
    // biased: a deliberately wrong verifier that accepts the first child whatever p says (test only).
    acceptance accept(const draft_tree & tree, const float * logits, int32_t n_vocab, sampler_chain & chain,
                      const std::vector<int32_t> & history, bool biased = false);
    // Seed-exact acceptance (see above).
    acceptance accept_match(const draft_tree & tree, const float * logits, int32_t n_vocab, const sampler_chain & chain,
                            const std::vector<int32_t> & history);

private:
    // Indexes the tree's children by parent and starts the context at `history`.
    void start(const draft_tree & tree, const std::vector<int32_t> & history);
    std::vector<std::vector<uint32_t>> children;
    std::vector<token_prob> dist;
    std::vector<float> pdense, qdense;
    std::vector<int32_t> ctx;
};

} // namespace specdec
