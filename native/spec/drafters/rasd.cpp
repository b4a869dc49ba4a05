#include "spec/drafters/rasd.h"

#include <algorithm>
#include <map>

namespace specdec {

static uint64_t bigram_key(int32_t a, int32_t b) { return ((uint64_t) (uint32_t) a << 32) | (uint32_t) b; }

rasd_drafter::rasd_drafter(std::vector<std::vector<int32_t>> corpus_, std::shared_ptr<const model> draft,
                           const session_params & params, const sampling_params & sampling, const rasd_options & options)
    : corpus(std::move(corpus_)), opt(options) {
    for (uint32_t s = 0; s < corpus.size(); ++s) {
        for (uint32_t i = 2; i <= corpus[s].size(); ++i) index[bigram_key(corpus[s][i - 2], corpus[s][i - 1])].push_back({ s, i });
    }
    if (draft) {
        sampling_params greedy = sampling;
        greedy.temperature = 0.0f;  // the draft's tree is deterministic: q = one-hot, lossless either way
        draft_model_options dmo;
        dmo.slot = opt.slot;
        dm = std::make_unique<draft_model_drafter>(std::move(draft), params, greedy, dmo);
    }
}

void rasd_drafter::find_matches(const std::vector<int32_t> & h, std::vector<match> & out) const {
    out.clear();
    const size_t n = h.size();
    auto match_len = [&](const std::vector<int32_t> & seq, size_t end) {
        size_t len = 0;
        while (len < opt.max_ngram && len < end && len < n && seq[end - 1 - len] == h[n - 1 - len]) len++;
        return len;
    };
    // the context: every earlier position (the history is short next to a corpus)
    for (size_t end = n - 1; end >= 1 && n >= 2; --end) {
        const size_t len = match_len(h, end);
        if (len >= 1) out.push_back({ len, &h, end });
    }
    // the corpus, through its bigram index (matches of at least two tokens)
    if (n >= 2) {
        auto it = index.find(bigram_key(h[n - 2], h[n - 1]));
        if (it != index.end()) {
            for (const auto & [s, end] : it->second) out.push_back({ match_len(corpus[s], end), &corpus[s], end });
        }
    }
    // longest first; among equals the context before the corpus and later positions first
    std::stable_sort(out.begin(), out.end(), [](const match & a, const match & b) { return a.len > b.len; });
}

void rasd_drafter::propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) {
    out.clear();
    // 1. retrieval trie of the continuations of the longest matches
    std::vector<match> ms;
    find_matches(history, ms);
    struct trie_node { int32_t token; int32_t parent; uint32_t count; std::map<int32_t, int32_t> kids; };
    std::vector<trie_node> trie;
    std::map<int32_t, int32_t> root_kids;
    size_t taken = 0;
    const size_t best_len = ms.empty() ? 0 : ms[0].len;
    for (const match & m : ms) {
        if (taken >= opt.max_matches || m.len + 1 < best_len) break;  // only (nearly) the longest matches
        const std::vector<int32_t> & seq = *m.seq;
        if (m.end >= seq.size()) continue;
        taken++;
        int32_t parent = -1;
        for (size_t j = m.end; j < seq.size() && j < m.end + opt.max_depth; ++j) {
            auto & kids = parent < 0 ? root_kids : trie[(size_t) parent].kids;
            auto it = kids.find(seq[j]);
            int32_t id;
            if (it == kids.end()) {
                id = (int32_t) trie.size();
                kids[seq[j]] = id;
                trie.push_back({ seq[j], parent, 0, {} });
            } else {
                id = it->second;
            }
            trie[(size_t) id].count++;
            parent = id;
        }
    }
    // nodes by support (how many continuations pass through), parents before children
    std::vector<int32_t> order(trie.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = (int32_t) i;
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return trie[(size_t) a].count > trie[(size_t) b].count; });
    const uint32_t retrieval_budget = dm ? budget - budget / std::max<uint32_t>(1, opt.draft_share) : budget;
    std::vector<int32_t> node_of(trie.size(), -1);
    for (int32_t i : order) {
        if (out.size() >= retrieval_budget) break;
        const int32_t p = trie[(size_t) i].parent;
        if (p >= 0 && node_of[(size_t) p] < 0) continue;
        node_of[(size_t) i] = out.add(trie[(size_t) i].token, p < 0 ? -1 : node_of[(size_t) p]);
    }
    if (!dm) return;

    // 2. the draft model's chain for the rest of the budget
    draft_tree drafted;
    const uint32_t room = budget > out.size() ? budget - (uint32_t) out.size() : 0;
    if (room > 0) dm->propose(history, room, drafted);

    // 3. prune the retrieval tree by the draft's probabilities (one draft tree pass over it)
    if (!out.empty()) {
        std::vector<uint32_t> outputs(out.size());
        for (size_t i = 0; i < out.size(); ++i) outputs[i] = (uint32_t) i;
        session & ds = dm->follow(history, logits);  // logits after the root
        ds.eval_tree(out.tokens, out.parents, outputs, tree_logits);
        const int32_t n_vocab = (int32_t) ds.n_vocab();
        std::vector<token_prob> top;
        draft_tree kept;
        std::vector<int32_t> kept_of(out.size(), -1);
        for (size_t i = 0; i < out.size(); ++i) {
            const int32_t p = out.parents[i];
            if (p >= 0 && kept_of[(size_t) p] < 0) continue;  // its parent was cut
            const float * row = p < 0 ? logits.data() : tree_logits.data() + (size_t) p * n_vocab;
            top_candidates(row, n_vocab, 16, top, true);
            float q = 0.0f;
            for (const auto & c : top) {
                if (c.id == out.tokens[i]) q = c.p;
            }
            if (q < opt.prune_below) continue;
            kept_of[i] = kept.add(out.tokens[i], p < 0 ? -1 : kept_of[(size_t) p]);
        }
        out = kept;
    }

    // 4. fuse: walk the draft's chain down the pruned trie, sharing the longest common prefix
    int32_t at = -1;
    for (size_t i = 0; i < drafted.size() && out.size() < budget; ++i) {
        if (drafted.parents[i] != (int32_t) i - 1) break;  // fuse the main chain only
        int32_t found = -1;
        for (size_t j = 0; j < out.size(); ++j) {
            if (out.parents[j] == at && out.tokens[j] == drafted.tokens[i]) found = (int32_t) j;
        }
        at = found >= 0 ? found : out.add(drafted.tokens[i], at);
    }
}

} // namespace specdec
