// RASD (Retrieval-Augmented Speculative Decoding, Quan et al., 2025), as built here: a retrieval
// tree from longest-prefix matching of the sequence's suffix against a datastore (the context
// itself plus an optional user corpus), the continuations of the longest matches merged into a
// trie. With a draft model, the retrieval tree is pruned by the draft's probabilities (one draft
// tree pass; a branch whose token the draft gives less than `prune_below` is cut with its subtree)
// and fused with the draft model's own tree by longest-prefix merging (shared prefixes become
// one branch). Without a draft model the retrieval tree is the draft.
#pragma once

#include "spec/drafters/draft_model.h"

#include <memory>
#include <unordered_map>
#include <vector>

namespace specdec {

struct rasd_options {
    uint32_t max_ngram   = 8;     // longest suffix matched
    uint32_t max_matches = 8;     // continuations taken (longest matches, most recent first)
    uint32_t max_depth   = 12;    // tokens per continuation
    float    prune_below = 0.02f; // draft probability under which a retrieved branch is cut
    uint32_t draft_share = 2;     // with a draft model: 1/draft_share of the budget goes to its tree
    std::shared_ptr<draft_session_slot> slot;  // the target session's draft session slot
};

class rasd_drafter : public drafter {
public:
    // corpus: token sequences of the user's datastore (may be empty); draft: optional
    rasd_drafter(std::vector<std::vector<int32_t>> corpus, std::shared_ptr<const model> draft,
                 const session_params & params, const sampling_params & sampling, const rasd_options & options = {});
    void propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) override;
    void prepare(const std::vector<int32_t> & history) override { if (dm) dm->prepare(history); }
    bool computes() const override { return dm != nullptr; }
    void abort() override { if (dm) dm->abort(); }
    void pause() override { if (dm) dm->pause(); }

private:
    struct match { size_t len; const std::vector<int32_t> * seq; size_t end; };  // seq[end - len, end) == suffix
    void find_matches(const std::vector<int32_t> & history, std::vector<match> & out) const;

    std::vector<std::vector<int32_t>> corpus;
    std::unordered_map<uint64_t, std::vector<std::pair<uint32_t, uint32_t>>> index;  // bigram -> (sequence, end)
    std::unique_ptr<draft_model_drafter> dm;
    rasd_options opt;
    std::vector<float> logits, tree_logits;
};

} // namespace specdec
