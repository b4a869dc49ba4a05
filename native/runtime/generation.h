// The autoregressive decode loop of one generate() call, run in steps off the JS
// thread: each step decodes until its time budget is spent or generation stops, and
// hands the new tokens to JS in one chunk (no promise per token).
#pragma once

#include "runtime/session.h"
#include "sampling/sampler.h"

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
};

struct generation_stats {
    uint32_t n_prompt        = 0;  // prompt tokens
    uint32_t n_prompt_reused = 0;  // prompt tokens already in the cache (not evaluated again)
    uint32_t n_generated     = 0;
    double   ms_prefill      = 0.0;
    double   ms_decode       = 0.0;
    uint32_t n_forward       = 0;  // target forward passes
};

class generation {
public:
    generation(session & s, generation_params params);

    // Runs until `budget_ms` has passed (at least one token or prefill chunk), `max_new`
    // tokens were produced in this step, or generation stopped. New tokens are appended to `out`.
    void step(double budget_ms, uint32_t max_new, std::vector<int32_t> & out);

    bool done() const { return reason != STOP_NONE; }
    stop_reason reason = STOP_NONE;
    generation_stats stats;

private:
    void prefill_step(double budget_ms);

    session &            s;
    generation_params    par;
    sampler_chain        chain;
    std::vector<int32_t> history;   // prompt + generated (for penalties)
    std::vector<float>   logits;
    size_t               n_prefilled = 0;  // prompt tokens in the cache
    bool                 prefilled = false;
    int32_t              pending = -1;     // sampled, not yet emitted nor evaluated
};

} // namespace specdec
