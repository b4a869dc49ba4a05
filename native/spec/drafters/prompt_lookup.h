// Prompt lookup: the longest suffix of the sequence (up to max_ngram tokens) that occurred
// earlier in the prompt or the generated text proposes the tokens that followed it there.
#pragma once

#include "spec/drafter.h"

namespace specdec {

class prompt_lookup_drafter : public drafter {
public:
    explicit prompt_lookup_drafter(uint32_t max_ngram = 4, uint32_t min_ngram = 1) : max_ngram(max_ngram), min_ngram(min_ngram) {}
    void propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) override;

private:
    uint32_t max_ngram;
    uint32_t min_ngram;
};

} // namespace specdec
