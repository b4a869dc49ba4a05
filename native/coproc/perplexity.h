// Perplexity of a token sequence under a session's model (as llama.cpp's llama-perplexity, simpler):
// the sequence is cut into chunks of `context` tokens, each evaluated from an empty cache.
//
// Plain (every == 0): every prediction inside a chunk is scored (token i + 1 from row i).
// At augmentation points (every > 0): in each chunk the points are s = every, 2 every, ... with
// s + ahead < chunk length, and only the `ahead` tokens x[s + 1 .. s + ahead] after each point are
// scored. With a coprocessor, the cache holding x[0 .. s - 1] is augmented (coproc_append: the latents
// after x[s - 1]) and x[s .. s + ahead - 1] are evaluated after the latents; without one the same tokens
// are scored from the plain chunk's rows, so the two numbers compare.
#pragma once

#include "coproc/coprocessor.h"
#include "runtime/session.h"

#include <vector>

namespace specdec {

struct perplexity_params {
    uint32_t context = 0;  // tokens per chunk (0: the session's context less the latents)
    uint32_t every   = 0;  // augmentation points every this many tokens (0: plain perplexity)
    uint32_t ahead   = 16; // tokens scored after each point
    uint32_t latents = 0;  // latents per augmentation (with a coprocessor)
};

struct perplexity_result {
    uint64_t tokens = 0;        // predictions scored
    double   nll = 0.0;         // their mean negative log-likelihood (nats)
    double   ppl = 0.0;         // exp(nll)
    uint64_t augmentations = 0;
    double   ms_augment = 0.0;  // the coprocessor's and its latents' time, all augmentations
};

// `c` may be null. ERR_INVALID_OPTION for bad parameters or a sequence too short to score anything.
perplexity_result perplexity(session & s, const std::vector<int32_t> & tokens, const perplexity_params & p, const coprocessor * c);

} // namespace specdec
