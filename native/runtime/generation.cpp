#include "runtime/generation.h"
#include "common/error.h"

#include <chrono>

namespace specdec {

using clk = std::chrono::steady_clock;

static double ms_since(clk::time_point t0) {
    return std::chrono::duration<double, std::milli>(clk::now() - t0).count();
}

const char * stop_reason_name(stop_reason r) {
    switch (r) {
        case STOP_EOS:          return "eos";
        case STOP_MAX_TOKENS:   return "maxTokens";
        case STOP_CONTEXT_FULL: return "contextFull";
        case STOP_ABORTED:      return "abort";
        default:                return "none";
    }
}

generation::generation(session & s_, generation_params params) : s(s_), par(std::move(params)), chain(par.sampling) {
    if (par.prompt.empty()) {
        fail("ERR_INVALID_OPTION", "the prompt is empty: give at least one token");
    }
    if (par.prompt.size() > s.n_ctx()) {
        fail("ERR_CONTEXT_OVERFLOW", format("the prompt has %zu tokens, more than the context size %u", par.prompt.size(), s.n_ctx()));
    }
    for (int32_t t : par.prompt) {
        if (t < 0 || (uint32_t) t >= s.n_vocab()) {
            fail("ERR_TOKEN_OUT_OF_RANGE", format("prompt token id %d is out of range [0, %u)", t, s.n_vocab()));
        }
    }
    stats.n_prompt = (uint32_t) par.prompt.size();

    // reuse the longest common prefix of what the cache holds (at least one token is re-evaluated for logits)
    const auto & held = s.tokens();
    size_t common = 0;
    while (common < held.size() && common < par.prompt.size() && held[common] == par.prompt[common]) common++;
    if (common == par.prompt.size()) common--;
    s.truncate((uint32_t) common);
    n_prefilled = common;
    stats.n_prompt_reused = (uint32_t) common;
    history = par.prompt;
    if (par.max_tokens == 0) {
        reason = STOP_MAX_TOKENS;
    }
}

void generation::prefill_step(double budget_ms) {
    const auto t0 = clk::now();
    while (n_prefilled < par.prompt.size()) {
        const size_t n = std::min<size_t>(s.n_batch(), par.prompt.size() - n_prefilled);
        std::vector<int32_t> chunk(par.prompt.begin() + n_prefilled, par.prompt.begin() + n_prefilled + n);
        s.eval_chain(chunk, false, false, logits);
        stats.n_forward++;
        n_prefilled += n;
        if (ms_since(t0) >= budget_ms || s.abort_requested()) break;
    }
    stats.ms_prefill += ms_since(t0);
    if (n_prefilled == par.prompt.size()) {
        prefilled = true;
        pending = chain.sample(logits.data(), (int32_t) s.n_vocab(), history);
    }
}

void generation::step(double budget_ms, uint32_t max_new, std::vector<int32_t> & out) {
    if (done()) return;
    const auto t0 = clk::now();
    if (!prefilled) {
        prefill_step(budget_ms);
        if (!prefilled) return;
    }
    const auto td = clk::now();
    uint32_t n_new = 0;
    std::vector<int32_t> one(1);
    while (!done()) {
        if (s.abort_requested()) {
            reason = STOP_ABORTED;
            break;
        }
        const int32_t t = pending;
        if (par.eog.count(t)) {
            reason = STOP_EOS;
            break;
        }
        out.push_back(t);
        history.push_back(t);
        stats.n_generated++;
        n_new++;
        pending = -1;
        if (stats.n_generated >= par.max_tokens) {
            reason = STOP_MAX_TOKENS;
            break;
        }
        if (s.tokens().size() + 1 > s.n_ctx()) {
            reason = STOP_CONTEXT_FULL;
            break;
        }
        one[0] = t;
        try {
            s.eval_chain(one, false, false, logits);
        } catch (const error &) {
            if (s.abort_requested()) {
                reason = STOP_ABORTED;
                break;
            }
            throw;
        }
        stats.n_forward++;
        pending = chain.sample(logits.data(), (int32_t) s.n_vocab(), history);
        if (n_new >= max_new || ms_since(t0) >= budget_ms) break;
    }
    stats.ms_decode += ms_since(td);
}

} // namespace specdec
