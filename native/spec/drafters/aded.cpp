#include "spec/drafters/aded.h"

#include "sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <queue>

namespace specdec {

static uint64_t key2(int32_t a, int32_t b) { return ((uint64_t) (uint32_t) a << 32) | (uint32_t) b; }

static void blend_into(aded_drafter::entry & e, const std::vector<token_prob> & top, float w) {
    // union of the held candidates (weight 1 - w) and the observed ones (weight w), best K kept
    std::vector<std::pair<float, int32_t>> all;
    for (int i = 0; i < aded_drafter::K; ++i) {
        if (e.seen > 0 && e.token[i] >= 0) all.push_back({ e.p[i] * (1.0f - w), e.token[i] });
    }
    const float wo = e.seen > 0 ? w : 1.0f;
    for (const auto & c : top) {
        auto it = std::find_if(all.begin(), all.end(), [&](const auto & x) { return x.second == c.id; });
        if (it != all.end()) it->first += c.p * wo;
        else all.push_back({ c.p * wo, c.id });
    }
    std::sort(all.begin(), all.end(), [](const auto & a, const auto & b) { return a.first > b.first; });
    for (int i = 0; i < aded_drafter::K; ++i) {
        e.token[i] = i < (int) all.size() ? all[(size_t) i].second : -1;
        e.p[i]     = i < (int) all.size() ? all[(size_t) i].first : 0.0f;
    }
    e.seen++;
}

aded_drafter::entry & aded_drafter::trigram_entry(uint64_t key) {
    auto it = trigram.find(key);
    if (it != trigram.end()) {
        recency.splice(recency.begin(), recency, it->second.at);  // refreshed: to the front
        return it->second.e;
    }
    if (trigram.size() >= std::max<size_t>(1, opt.max_trigrams)) {
        // full: the context refreshed longest ago makes room
        trigram.erase(recency.back());
        recency.pop_back();
    }
    recency.push_front(key);
    trigram_slot & slot = trigram[key];
    slot.at = recency.begin();
    return slot.e;
}

void aded_drafter::learn(int32_t a, int32_t b, const float * logits, int32_t n_vocab) {
    // probabilities normalized among the top 32 (a full softmax over the vocabulary for every
    // verified row would cost more than the drafting saves)
    std::vector<token_prob> top;
    top_candidates(logits, n_vocab, 32, top, true);
    top.resize(std::min<size_t>(top.size(), K));
    if (a >= 0) blend_into(trigram_entry(key2(a, b)), top, opt.blend);
    blend_into(bigram[b], top, opt.blend);
}

const aded_drafter::entry * aded_drafter::lookup(int32_t a, int32_t b) const {
    if (a >= 0) {
        auto it = trigram.find(key2(a, b));
        if (it != trigram.end()) return &it->second.e;
    }
    auto it = bigram.find(b);
    return it == bigram.end() ? nullptr : &it->second;
}

void aded_drafter::observe(const verify_result & r) {
    // row 0 follows (token before the root, root); row 1 + i follows (node i's parent token, node i)
    const draft_tree & t = *r.tree;
    learn(r.before_root, r.root, r.logits, r.n_vocab);
    for (size_t i = 0; i < t.size(); ++i) {
        const int32_t p = t.parents[i];
        const int32_t a = p < 0 ? r.root : t.tokens[(size_t) p];
        learn(a, t.tokens[i], r.logits + (1 + i) * (size_t) r.n_vocab, r.n_vocab);
    }
}

void aded_drafter::propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) {
    out.clear();
    const int32_t b0 = history.back();
    const int32_t a0 = history.size() > 1 ? history[history.size() - 2] : -1;
    // best-first search: a candidate is a token under a parent node, whose own context is
    // (the parent's token, the candidate)
    struct cand { float score; float path_p; int32_t parent; int32_t b; int32_t token; };
    auto worse = [](const cand & x, const cand & y) { return x.score < y.score; };
    std::priority_queue<cand, std::vector<cand>, decltype(worse)> q(worse);
    auto push_children = [&](int32_t parent, int32_t a, int32_t b, float path_p) {
        const entry * e = lookup(a, b);
        if (!e) return;
        const float bonus = opt.explore / std::sqrt(1.0f + (float) e->seen);
        for (int i = 0; i < K; ++i) {
            if (e->token[i] < 0) break;
            const float pp = path_p * e->p[i];
            q.push({ pp + path_p * bonus, pp, parent, b, e->token[i] });
        }
    };
    push_children(-1, a0, b0, 1.0f);
    while (out.size() < budget && !q.empty()) {
        const cand c = q.top();
        q.pop();
        const int32_t node = out.add(c.token, c.parent);
        push_children(node, c.b, c.token, c.path_p);
    }
}

} // namespace specdec
