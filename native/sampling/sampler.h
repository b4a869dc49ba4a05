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
    // Seed-exact verification ('match'): drafters that sample draw from the target's keyed stream
    // (keyed_gumbel) instead of a stream of their own, so that their draws agree with the target's.
    bool     coupled_drafts    = false;
};

struct token_prob {
    int32_t id;
    float   logit;
    float   p;
};

// The counter-based random stream of sampling: a uniform in (0, 1) that is a function of (seed,
// position, index) alone (splitmix64 finalizers chained over the three), so that a token's draw does
// not depend on how many numbers were drawn before it, or by whom.
double keyed_uniform(uint64_t seed, uint64_t position, uint64_t index);
// Gumbel noise for token `token` at `position`: -log(-log(keyed_uniform(seed, position, token))).
double keyed_gumbel(uint64_t seed, uint64_t position, int32_t token);
// The Gumbel-max draw from `dist` at `position`: argmax over its tokens of log p + keyed_gumbel. An
// exact sample from dist; two distributions drawn with the same (seed, position) agree on their
// token as often as a coupling through shared noise allows (what seed-exact verification accepts).
int32_t keyed_draw(const std::vector<token_prob> & dist, uint64_t seed, uint64_t position);

// The k most likely tokens of raw logits, sorted by logit. p is their softmax at temperature 1,
// normalized over the whole vocabulary, or (`among_k`, much cheaper) over the k alone, which
// overstates it by the mass outside them. For drafters that gauge confidence or keep candidates.
void top_candidates(const float * logits, int32_t n_vocab, int32_t k, std::vector<token_prob> & out, bool among_k = false);

class sampler_chain {
public:
    explicit sampler_chain(const sampling_params & params);

    bool greedy() const { return par.temperature <= 0.0f; }

    // Applies every transform and the softmax: `out` gets the candidate tokens that keep a
    // non-zero probability, with p summing to 1, the most likely first (ties: the lowest id). With
    // top-k on they are sorted by probability (descending, ties by id); without it the rest follow
    // in no particular order. No sort of the vocabulary in any setting: top-k is a partial
    // selection, top-p without top-k a quickselect on probability mass, min-p a linear filter.
    // No allocation once warm.
    // `history` is the sequence so far (the penalties read its last penalty_last_n tokens).
    void distribution(const float * logits, int32_t n_vocab, const std::vector<int32_t> & history,
                      std::vector<token_prob> & out) const;

    // Samples the next token: greedy, or keyed_draw at position history.size() (the token's index
    // in the sequence), so the same seed gives the same token whatever was drawn before.
    int32_t sample(const float * logits, int32_t n_vocab, const std::vector<int32_t> & history);
    // The keyed draw from a prepared distribution at `position` (greedy: its first token).
    int32_t draw(const std::vector<token_prob> & dist, uint64_t position) const;

    // Samples from a prepared distribution with this chain's sequential RNG (rejection sampling).
    int32_t sample_from(const std::vector<token_prob> & dist);
    // A uniform number in [0, 1) from this chain's sequential RNG (for rejection sampling).
    double uniform();

    const sampling_params & params() const { return par; }

private:
    void apply_penalties(std::vector<float> & logits, const std::vector<int32_t> & history) const;
    size_t top_p_select(size_t n, float mx, bool p_set) const;
    bool penalties_apply(const std::vector<int32_t> & history) const;

    sampling_params par;
    std::mt19937_64 rng;
    mutable std::vector<float>      scratch;
    mutable std::vector<token_prob> cands;
    mutable std::vector<int32_t>    penalty_ids;
    mutable std::vector<float>      weights;
    std::vector<token_prob>         sample_dist;
};

} // namespace specdec
