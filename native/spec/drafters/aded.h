// ADED (Liu et al., 2024, "Adaptive Draft-Verification for Efficient LLM Decoding"), as built here:
// a tri-gram table approximates the target's next-token distribution after each pair of tokens,
// refreshed online from every verification's logits (the top candidates with their
// probabilities, blended with what the table held). The draft tree comes from a best-first search
// in the spirit of the paper's MCTS: each candidate branch is scored by its estimated path
// probability plus a UCB-style exploration bonus that favours entries seen few times, and the
// best-scoring branches are expanded until the budget is spent. Tokens without a tri-gram entry
// fall back to the bi-gram entry of their last token.
#pragma once

#include "spec/drafter.h"

#include <cstdint>
#include <unordered_map>
#include <vector>

namespace specdec {

struct aded_options {
    float explore = 0.1f;  // weight of the exploration bonus
    float blend   = 0.5f;  // weight of a fresh observation against the table's estimate
};

class aded_drafter : public drafter {
public:
    explicit aded_drafter(const aded_options & options = {}) : opt(options) {}
    void propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) override;
    void observe(const verify_result & r) override;

    static constexpr int K = 4;  // candidates kept per context
    struct entry {
        int32_t  token[K];
        float    p[K];
        uint32_t seen = 0;  // observations folded in
    };

private:
    const entry * lookup(int32_t a, int32_t b) const;
    void learn(int32_t a, int32_t b, const float * logits, int32_t n_vocab);

    aded_options opt;
    std::unordered_map<uint64_t, entry> trigram;  // (a, b) -> next
    std::unordered_map<int32_t, entry>  bigram;   // b -> next
};

} // namespace specdec
