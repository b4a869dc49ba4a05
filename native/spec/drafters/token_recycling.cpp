#include "spec/drafters/token_recycling.h"

#include "common/error.h"
#include "sampling/sampler.h"

#include <cstring>
#include <queue>

namespace specdec {

void adjacency_matrix::update(int32_t token, const float * logits) {
    if (token < 0 || token >= n_vocab) return;
    std::vector<token_prob> top;
    top_candidates(logits, n_vocab, K, top, true);  // only the ids are kept
    int32_t * r = next.data() + (size_t) token * K;
    for (int32_t i = 0; i < K; ++i) r[i] = i < (int32_t) top.size() ? top[i].id : -1;
}

std::vector<uint8_t> adjacency_matrix::save() const {
    std::vector<uint8_t> out(16 + bytes());
    const uint32_t head[4] = { 0x52544453u /* "SDTR" */, 1u, (uint32_t) n_vocab, (uint32_t) K };
    std::memcpy(out.data(), head, sizeof(head));
    std::memcpy(out.data() + 16, next.data(), bytes());
    return out;
}

void adjacency_matrix::load(const uint8_t * data, size_t size) {
    uint32_t head[4];
    if (size < sizeof(head)) fail("ERR_INVALID_OPTION", "not a Token Recycling matrix (too short)");
    std::memcpy(head, data, sizeof(head));
    if (head[0] != 0x52544453u) fail("ERR_INVALID_OPTION", "not a Token Recycling matrix (bad magic)");
    if (head[1] != 1u) fail("ERR_INVALID_OPTION", format("unsupported Token Recycling matrix version %u", head[1]));
    if (head[2] != (uint32_t) n_vocab) {
        fail("ERR_INVALID_OPTION", format("the Token Recycling matrix is for a vocabulary of %u tokens, this model has %d", head[2], n_vocab));
    }
    if (head[3] != (uint32_t) K || size != 16 + bytes()) fail("ERR_INVALID_OPTION", "Token Recycling matrix: bad size");
    std::vector<int32_t> rows((size_t) n_vocab * K);
    std::memcpy(rows.data(), data + 16, bytes());
    for (int32_t t : rows) {
        if (t < -1 || t >= n_vocab) fail("ERR_INVALID_OPTION", format("Token Recycling matrix: token id %d out of range", t));
    }
    next.swap(rows);
}

tree_template tree_template::best_first(size_t n) {
    // chance that the target's next token is the rank-r candidate (decreasing; the shape of the
    // template, not a measurement: what matters is that likelier branches come first)
    static const double rank_p[adjacency_matrix::K] = { 0.5, 0.15, 0.08, 0.05, 0.035, 0.025, 0.02, 0.015 };
    struct cand { double score; int32_t parent; int32_t rank; };
    auto worse = [](const cand & a, const cand & b) { return a.score < b.score; };
    std::priority_queue<cand, std::vector<cand>, decltype(worse)> q(worse);
    for (int32_t r = 0; r < adjacency_matrix::K; ++r) q.push({ rank_p[r], -1, r });
    tree_template t;
    while (t.parent.size() < n && !q.empty()) {
        const cand c = q.top();
        q.pop();
        const int32_t id = (int32_t) t.parent.size();
        t.parent.push_back(c.parent);
        t.rank.push_back(c.rank);
        for (int32_t r = 0; r < adjacency_matrix::K; ++r) q.push({ c.score * rank_p[r], id, r });
    }
    return t;
}

token_recycling_drafter::token_recycling_drafter(std::shared_ptr<adjacency_matrix> matrix, size_t template_size)
    : adj(std::move(matrix)), tpl(tree_template::best_first(template_size)) {}

void token_recycling_drafter::propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) {
    out.clear();
    const int32_t root = history.back();
    node_of.assign(tpl.parent.size(), -1);
    for (size_t i = 0; i < tpl.parent.size() && out.size() < budget; ++i) {
        const int32_t tp = tpl.parent[i];
        int32_t parent_node = -1;
        int32_t parent_token = root;
        if (tp >= 0) {
            parent_node = node_of[(size_t) tp];
            if (parent_node < 0) continue;  // the parent had no candidate: no subtree
            parent_token = out.tokens[(size_t) parent_node];
        }
        const int32_t x = adj->row(parent_token)[tpl.rank[i]];
        if (x < 0) continue;
        node_of[i] = out.add(x, parent_node);
    }
}

void token_recycling_drafter::observe(const verify_result & r) {
    // every evaluated token's row gets the target's fresh candidates
    adj->update(r.root, r.logits);
    for (size_t i = 0; i < r.tree->size(); ++i) {
        adj->update(r.tree->tokens[i], r.logits + (1 + i) * (size_t) r.n_vocab);
    }
}

} // namespace specdec
