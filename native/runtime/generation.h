// The autoregressive decode loop of one generate() call, run in steps off the JS
// thread: each step decodes until its time budget is spent or generation stops, and
// hands the new tokens to JS in one chunk (no promise per token).
#pragma once

#include "coproc/coprocessor.h"
#include "runtime/session.h"
#include "sampling/sampler.h"
#include "spec/drafter.h"
#include "spec/ead.h"
#include "spec/verifier.h"

#include <memory>

#include <string>
#include <unordered_set>
#include <vector>

namespace specdec {

enum stop_reason { STOP_NONE, STOP_EOS, STOP_MAX_TOKENS, STOP_CONTEXT_FULL, STOP_ABORTED };
const char * stop_reason_name(stop_reason r);

struct generation_params {
    std::vector<int32_t>        prompt;
    uint32_t                    max_tokens = 256;
    std::unordered_set<int32_t> eog;       // end-of-generation tokens
    sampling_params             sampling;
    // speculative decoding: when set, each step verifies the drafter's proposal (at most
    // draft_max tokens) in one target forward pass; the output is exactly what autoregressive
    // decoding gives (greedy), or follows the same distribution (sampling).
    std::shared_ptr<specdec::drafter> draft;
    uint32_t                    draft_max = 8;
    // Entropy Adaptive Decoding (lossy): when set, the small and the target model take turns
    // producing tokens (spec/ead.h); no drafting, no verification.
    std::shared_ptr<ead_decoder> ead;
    // how a draft is accepted when sampling: 'match' (seed-exact: the output is the autoregressive
    // sample for the seed) or 'rejection' (recursive rejection sampling: the same distribution)
    verify_mode                 verify = VERIFY_MATCH;
    // Lexical Unit Decoding, lossy mode (spec/drafters/lud.h): when parallel_k > 0 the session is a
    // LUD model's, and each step evaluates the tokens emitted since the last one plus parallel_k
    // placeholders in one pass, then emits the next token (sampled as autoregressive decoding samples
    // it) and, unverified, the confident run of the placeholders' predictions (argmax while its
    // probability is at least parallel_alpha). Not the target's output: stats say lossless = false.
    uint32_t                    parallel_k = 0;
    float                       parallel_alpha = 1.0f;
    int32_t                     parallel_placeholder = -1;
    // The KV-cache coprocessor at the prompt's end: once the prompt is in the cache, coproc_augment
    // puts coproc_latents latent cells before its last token (evaluated again after them); decoding
    // goes on from there. The prefix reuse stops before latent cells a previous generation left.
    std::shared_ptr<const coprocessor> coproc;
    uint32_t                    coproc_latents = 0;
    // test only: a deliberately wrong verifier (accepts every draft token, whatever p),
    // the negative control of the distribution test
    bool                        biased_verifier = false;
};

struct generation_stats {
    uint32_t n_prompt        = 0;  // prompt tokens
    uint32_t n_prompt_reused = 0;  // prompt tokens already in the cache (not evaluated again)
    uint32_t n_generated     = 0;
    double   ms_prefill      = 0.0;
    double   ms_decode       = 0.0;
    uint32_t n_forward       = 0;  // target forward passes
    uint32_t n_drafted       = 0;  // tokens proposed by the drafter
    uint32_t n_accepted      = 0;  // proposed tokens accepted by the verifier
    uint32_t n_verify        = 0;  // verification passes (each also yields one token of its own)
    uint32_t n_compactions   = 0;  // verifications whose accepted path was moved into place in the KV cache
    double   ms_draft        = 0.0;
    double   ms_verify       = 0.0;
    double   ms_augment      = 0.0;  // the coprocessor's augmentation (within prefill)
    uint32_t n_latents       = 0;    // latent cells it added
};

class generation {
public:
    generation(session & s, generation_params params);

    // Runs until `budget_ms` has passed (at least one token or prefill chunk), `max_new`
    // tokens were produced in this step, or generation stopped. New tokens are appended to `out`.
    void step(double budget_ms, uint32_t max_new, std::vector<int32_t> & out);

    bool done() const { return reason != STOP_NONE; }
    // Stops the step in progress, the drafter's work included (a draft model's prompt prefill,
    // its first Q8_0 weight copy, its proposals): safe from another thread while step() runs.
    void abort();
    // The EAD decoder of an 'ead' generation, else null.
    const ead_decoder * ead() const { return par.ead.get(); }
    // The drafter of a speculative generation, else null.
    const drafter * drafter_ptr() const { return par.draft.get(); }
    stop_reason reason = STOP_NONE;
    generation_stats stats;

private:
    void prefill_step(double budget_ms);
    // Emits `t` unless it ends generation; false when generation stopped.
    bool emit(int32_t t, std::vector<int32_t> & out, uint32_t & n_new);
    // One speculative step after `t` was emitted: draft, verify t + draft, accept, commit.
    void speculate(int32_t t);
    // One Lexical Unit Decoding step (lossy mode) after `t` was emitted.
    void parallel_step();

    session &            s;
    generation_params    par;
    sampler_chain        chain;
    std::vector<int32_t> history;   // prompt + generated (for penalties)
    std::vector<float>   logits;
    size_t               n_prefilled = 0;  // prompt tokens in the cache
    bool                 prefilled = false;
    int32_t              pending = -1;     // sampled, not yet emitted nor evaluated
    std::vector<int32_t> accepted;         // drafted tokens accepted by the last verification, not yet emitted
    draft_tree           tree;             // the last proposal
    tree_verifier        verifier;
};

} // namespace specdec
