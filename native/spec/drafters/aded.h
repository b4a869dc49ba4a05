// ADED (Liu et al., 2024, "Adaptive Draft-Verification for Efficient LLM Decoding"), as built here:
// a tri-gram table approximates the target's next-token distribution after each pair of tokens,
// refreshed online from every verification's logits (the top candidates with their
// probabilities, blended with what the table held). The draft tree comes from a best-first search
// in the spirit of the paper's MCTS: each candidate branch is scored by its estimated path
// probability plus a UCB-style exploration bonus that favours entries seen few times, and the
// best-scoring branches are expanded until the budget is spent. Tokens without a tri-gram entry
// fall back to the bi-gram entry of their last token.
//
// Memory is bounded: the bi-gram table has at most one entry per vocabulary token, the tri-gram
// table at most `max_trigrams` (least recently refreshed evicted first), since the table lives
// with the session and learns across generations.
#pragma once

#include "spec/drafter.h"

#include <cstddef>
#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

namespace specdec {

struct aded_options {
    float explore = 0.1f;  // weight of the exploration bonus
    float blend   = 0.5f;  // weight of a fresh observation against the table's estimate
    size_t max_trigrams = 1 << 15;  // tri-gram contexts kept (~100 bytes each)
};

class aded_drafter : public drafter {
public:
    explicit aded_drafter(const aded_options & options = {}) : opt(options) {}
    void propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) override;
    void observe(const verify_result & r) override;

    size_t trigram_count() const { return trigram.size(); }
    size_t bigram_count() const { return bigram.size(); }
    size_t max_trigrams() const { return opt.max_trigrams; }

    static constexpr int K = 4;  // candidates kept per context
    struct entry {
        int32_t  token[K];
        float    p[K];
        uint32_t seen = 0;  // observations folded in
    };

private:
    const entry * lookup(int32_t a, int32_t b) const;
    void learn(int32_t a, int32_t b, const float * logits, int32_t n_vocab);

    // A tri-gram entry and its place in the recency list (front: refreshed last).
    struct trigram_slot {
        entry                         e;
        std::list<uint64_t>::iterator at;
    };
    entry & trigram_entry(uint64_t key);

    aded_options opt;
    std::unordered_map<uint64_t, trigram_slot> trigram;  // (a, b) -> next
    std::list<uint64_t>                        recency;  // trigram's keys, most recently refreshed first
    std::unordered_map<int32_t, entry>         bigram;   // b -> next
};

} // namespace specdec
