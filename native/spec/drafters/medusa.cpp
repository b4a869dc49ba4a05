#include "spec/drafters/medusa.h"

#include "common/error.h"

#include <algorithm>
#include <queue>

namespace specdec {

medusa_drafter::medusa_drafter(std::shared_ptr<const medusa_heads> heads, const session & target_, uint32_t top_k_)
    : target(target_), runner(std::move(heads), target_.model_ptr()), top_k(top_k_) {
    h.resize(target.mdl().hp.n_embd);
}

void medusa_drafter::take_hidden(uint32_t row) {
    const auto & hid = target.hidden();
    const auto & taps = target.taps();
    const auto it = std::find(taps.begin(), taps.end(), target.mdl().hp.n_layer);
    const size_t n_embd = h.size(), n_taps = taps.size(), tap_index = (size_t) (it - taps.begin());
    const size_t at = ((size_t) row * n_taps + tap_index) * n_embd;
    if (it == taps.end() || at + n_embd > hid.size()) {
        have_h = false;
        return;
    }
    std::copy(hid.begin() + at, hid.begin() + at + n_embd, h.begin());
    have_h = true;
}

void medusa_drafter::prepare(const std::vector<int32_t> & history) {
    (void) history;
    take_hidden(0);  // prefill's one output row: the last prompt token, which predicted the root
}

void medusa_drafter::observe(const verify_result & r) {
    // the row that predicted `next` (the next root): the last accepted node's, or the root's
    take_hidden(r.path.empty() ? 0 : 1 + r.path.back());
}

void medusa_drafter::propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) {
    (void) history;
    out.clear();
    if (!have_h || budget == 0) return;
    const medusa_heads & hd = runner.heads();
    const int32_t K = (int32_t) hd.n_heads, V = (int32_t) hd.n_vocab;
    runner.run(h.data(), logits);
    cands.resize(K);
    for (int32_t k = 0; k < K; ++k) top_candidates(logits.data() + (size_t) k * V, V, (int32_t) top_k, cands[k]);

    // best first by the product of probabilities: a popped node offers its best child (next
    // level's top candidate) and its next sibling (the same level's next candidate)
    struct item {
        float   score;
        int32_t parent;  // tree index of the parent, -1 the root
        int32_t depth;   // level = head index
        int32_t rank;    // candidate rank within the head
        float   parent_score;
        bool operator<(const item & o) const { return score < o.score; }
    };
    std::priority_queue<item> q;
    q.push({ cands[0][0].p, -1, 0, 0, 1.0f });
    while (!q.empty() && out.size() < budget) {
        const item it = q.top();
        q.pop();
        const int32_t node = out.add(cands[it.depth][it.rank].id, it.parent);
        if (it.rank + 1 < (int32_t) cands[it.depth].size()) {
            q.push({ it.parent_score * cands[it.depth][it.rank + 1].p, it.parent, it.depth, it.rank + 1, it.parent_score });
        }
        if (it.depth + 1 < K) {
            q.push({ it.score * cands[it.depth + 1][0].p, node, it.depth + 1, 0, it.score });
        }
    }
}

} // namespace specdec
