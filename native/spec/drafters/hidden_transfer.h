// Hidden Transfer drafting (arXiv 2404.12022; heads/transfer_heads.h): no drafter pass. The target's
// verification pass itself carries, for each of its rows, k pseudo rows that enter at the transfer
// layer as maps of that row's hidden state (session::set_transfer); once the verifier has decided,
// the pseudo rows of the last accepted row (the one that predicted the next root) give the
// distributions of the k tokens after the root, and the next proposal is a tree of their top
// candidates, best first by the product of their probabilities (as Medusa's). The first step after a
// prompt has no pseudo rows yet and proposes nothing. Nodes are deterministic proposals (q one-hot):
// the verifier stays exact at any temperature.
#pragma once

#include "heads/transfer_heads.h"
#include "runtime/session.h"
#include "spec/drafter.h"

#include <memory>

namespace specdec {

class hidden_transfer_drafter : public drafter {
public:
    hidden_transfer_drafter(std::shared_ptr<const transfer_heads> heads, const session & target, uint32_t top_k = 4);

    void propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) override;
    void prepare(const std::vector<int32_t> & history) override;
    void observe(const verify_result & r) override;

private:
    std::shared_ptr<const transfer_heads> hd;
    const session &                       target;
    uint32_t                              top_k;
    std::vector<std::vector<token_prob>>  cands;  // per pseudo position: top_k candidates with softmax p
    bool                                  have = false;
};

} // namespace specdec
