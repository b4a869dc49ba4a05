// The sampler chain. The same chain turns logits into the distribution that decoding
// samples from and that speculative verification compares draft tokens against, so
// speculative sampling reproduces autoregressive sampling exactly.
//
// Order (llama.cpp's common order): penalties -> top-k -> top-p -> min-p -> temperature -> softmax.
// temperature == 0 means greedy: penalties, then the first token with the highest logit.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace specdec {

struct sampling_params {
    float    temperature       = 0.0f;
    int32_t  top_k             = 40;    // <= 0: off
    float    top_p             = 0.95f; // >= 1: off
    float    min_p             = 0.05f; // <= 0: off
    float    repeat_penalty    = 1.0f;  // 1: off
    float    frequency_penalty = 0.0f;
    float    presence_penalty  = 0.0f;
    int32_t  penalty_last_n    = 64;    // how many recent tokens the penalties look at
    uint64_t seed              = 0;
};

struct token_prob {
    int32_t id;
    float   logit;
    float   p;
};

// The k most likely tokens of raw logits, sorted by logit. p is their softmax at temperature 1,
// normalized over the whole vocabulary, or (`among_k`, much cheaper) over the k alone, which
// overstates it by the mass outside them. For drafters that gauge confidence or keep candidates.
void top_candidates(const float * logits, int32_t n_vocab, int32_t k, std::vector<token_prob> & out, bool among_k = false);

class sampler_chain {
public:
    explicit sampler_chain(const sampling_params & params);

    bool greedy() const { return par.temperature <= 0.0f; }

    // Applies every transform and the softmax: `out` gets the candidate tokens that keep a
    // non-zero probability, sorted by probability (descending), with p summing to 1.
    // `history` is the sequence so far (the penalties read its last penalty_last_n tokens).
    void distribution(const float * logits, int32_t n_vocab, const std::vector<int32_t> & history,
                      std::vector<token_prob> & out) const;

    // Samples the next token (greedy or from the distribution) and advances the RNG.
    int32_t sample(const float * logits, int32_t n_vocab, const std::vector<int32_t> & history);

    // Samples from a prepared distribution with this chain's RNG.
    int32_t sample_from(const std::vector<token_prob> & dist);
    // A uniform number in [0, 1) from this chain's RNG (for rejection sampling).
    double uniform();

    const sampling_params & params() const { return par; }

private:
    void apply_penalties(std::vector<float> & logits, const std::vector<int32_t> & history) const;

    sampling_params par;
    std::mt19937_64 rng;
    mutable std::vector<float>      scratch;
    mutable std::vector<token_prob> cands;
};

} // namespace specdec
