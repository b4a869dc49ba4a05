#include "spec/drafters/hidden_transfer.h"

#include <queue>

namespace specdec {

hidden_transfer_drafter::hidden_transfer_drafter(std::shared_ptr<const transfer_heads> heads, const session & target_, uint32_t top_k_)
    : hd(std::move(heads)), target(target_), top_k(top_k_) {
    hd->check_target(target.mdl(), "the Hidden Transfer maps");
}

void hidden_transfer_drafter::prepare(const std::vector<int32_t> & history) {
    (void) history;
    have = false;  // prompt prefill carries no pseudo rows
}

void hidden_transfer_drafter::observe(const verify_result & r) {
    // the pseudo rows of the row that predicted `next` (the next root): the last accepted node's, or the root's
    const std::vector<float> & pl = target.pseudo_logits();
    const size_t K = hd->k, V = hd->n_vocab;
    const size_t row = r.path.empty() ? 0 : 1 + r.path.back();
    have = false;
    if (pl.size() < (row + 1) * K * V) return;
    cands.resize(K);
    for (size_t j = 0; j < K; ++j) top_candidates(pl.data() + (row * K + j) * V, (int32_t) V, (int32_t) top_k, cands[j]);
    have = true;
}

void hidden_transfer_drafter::propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) {
    (void) history;
    out.clear();
    if (!have || budget == 0) return;
    have = false;
    const int32_t K = (int32_t) cands.size();
    // best first by the product of probabilities: a popped node offers its best child (the next
    // position's top candidate) and its next sibling (the same position's next candidate)
    struct item {
        float   score;
        int32_t parent, depth, rank;
        float   parent_score;
        bool operator<(const item & o) const { return score < o.score; }
    };
    std::priority_queue<item> q;
    if (cands[0].empty()) return;
    q.push({ cands[0][0].p, -1, 0, 0, 1.0f });
    while (!q.empty() && out.size() < budget) {
        const item it = q.top();
        q.pop();
        const int32_t node = out.add(cands[it.depth][it.rank].id, it.parent);
        if (it.rank + 1 < (int32_t) cands[it.depth].size()) {
            q.push({ it.parent_score * cands[it.depth][it.rank + 1].p, it.parent, it.depth, it.rank + 1, it.parent_score });
        }
        if (it.depth + 1 < K && !cands[it.depth + 1].empty()) {
            q.push({ it.score * cands[it.depth + 1][0].p, node, it.depth + 1, 0, it.score });
        }
    }
}

} // namespace specdec
