#include "runtime/generation.h"
#include "common/error.h"

#include <algorithm>
#include <chrono>
#include <cmath>

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
        // drafted tokens the last verification accepted come out first (no forward pass of
        // their own), then the token the target chose after them
        bool stopped = false;
        for (size_t i = 0; i < accepted.size() && !stopped; ++i) {
            stopped = !emit(accepted[i], out, n_new);
        }
        accepted.clear();
        if (stopped) break;
        const int32_t t = pending;
        pending = -1;
        if (!emit(t, out, n_new)) break;
        if (s.tokens().size() + 1 > s.n_ctx()) {
            reason = STOP_CONTEXT_FULL;
            break;
        }
        try {
            if (par.draft) {
                speculate(t);
            } else {
                one[0] = t;
                s.eval_chain(one, false, false, logits);
                stats.n_forward++;
                pending = chain.sample(logits.data(), (int32_t) s.n_vocab(), history);
            }
        } catch (const error &) {
            if (s.abort_requested()) {
                reason = STOP_ABORTED;
                break;
            }
            throw;
        }
        if (n_new >= max_new || ms_since(t0) >= budget_ms) break;
    }
    stats.ms_decode += ms_since(td);
}

} // namespace specdec

namespace specdec {

bool generation::emit(int32_t t, std::vector<int32_t> & out, uint32_t & n_new) {
    if (par.eog.count(t)) {
        reason = STOP_EOS;
        return false;
    }
    out.push_back(t);
    history.push_back(t);
    stats.n_generated++;
    n_new++;
    if (stats.n_generated >= par.max_tokens) {
        reason = STOP_MAX_TOKENS;
        return false;
    }
    return true;
}

void generation::speculate(int32_t t) {
    // draft: history already ends with t
    const auto t0 = clk::now();
    std::vector<int32_t> draft;
    const uint32_t room = s.n_ctx() - (uint32_t) s.tokens().size() - 1;  // cells left after t
    const uint32_t left = par.max_tokens - stats.n_generated;             // tokens still wanted
    const uint32_t budget = std::min({ par.draft_max, room, left, MAX_INVARIANT_BATCH - 1 });
    s.pause_threads();  // the target's threads must not spin while the drafter computes
    if (budget > 0) par.draft->propose(history, budget, draft);
    par.draft->pause();  // its threads must not spin while the target computes
    stats.ms_draft += ms_since(t0);

    // verify t + draft in one forward pass; row i predicts the token after batch[i]
    const auto t1 = clk::now();
    std::vector<int32_t> batch = { t };
    batch.insert(batch.end(), draft.begin(), draft.end());
    std::vector<int32_t> parents(batch.size());
    std::vector<uint32_t> outputs(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
        parents[i] = (int32_t) i - 1;
        outputs[i] = (uint32_t) i;
    }
    s.eval_tree(batch, parents, outputs, logits);
    stats.n_forward++;
    stats.n_verify++;
    stats.n_drafted += (uint32_t) draft.size();

    // accept: the longest prefix of the draft that the target agrees with. Greedy: the draft
    // token must be the target's choice. Sampling (speculative sampling): accept x with
    // probability min(1, p(x) / q(x)), where q is the draft's distribution (one-hot for a
    // deterministic drafter); on rejection sample from the residual max(0, p - q), normalised.
    const int32_t n_vocab = (int32_t) s.n_vocab();
    std::vector<int32_t> ctx = history;  // the target's view at row i: history + draft[0..i)
    size_t n_acc = 0;
    int32_t next = -1;
    for (size_t i = 0; i <= draft.size(); ++i) {
        const float * row = logits.data() + i * (size_t) n_vocab;
        chain.distribution(row, n_vocab, ctx, dist);
        if (i == draft.size()) {
            next = chain.greedy() ? dist[0].id : chain.sample_from(dist);
            break;
        }
        const int32_t x = draft[i];
        if (chain.greedy()) {
            if (dist[0].id == x) {
                n_acc++;
                ctx.push_back(x);
                continue;
            }
            next = dist[0].id;
            break;
        }
        float px = 0.0f;
        for (const auto & c : dist) {
            if (c.id == x) px = c.p;
        }
        const std::vector<token_prob> * q = par.draft->draft_dist(i);
        float qx = 1.0f;  // a deterministic draft: q is one-hot on x
        if (q) {
            qx = 0.0f;
            for (const auto & c : *q) {
                if (c.id == x) qx = c.p;
            }
        }
        // speculative sampling: accept x with probability min(1, p(x) / q(x))
        const double accept_p = par.biased_verifier ? 1.0 : (qx > 0.0f ? std::min(1.0, (double) px / qx) : 0.0);
        if ((px > 0.0f || par.biased_verifier) && chain.uniform() < accept_p) {
            n_acc++;
            ctx.push_back(x);
            continue;
        }
        // rejected: sample from the residual max(0, p - q), normalised
        std::vector<token_prob> res;
        double z = 0.0;
        if (q) {
            qdense.assign(n_vocab, 0.0f);
            for (const auto & d : *q) qdense[d.id] = d.p;
        }
        for (const auto & c : dist) {
            const float qc = q ? qdense[c.id] : (c.id == x ? 1.0f : 0.0f);
            const float r = c.p - qc;
            if (r > 0.0f) {
                res.push_back({ c.id, c.logit, r });
                z += r;
            }
        }
        for (auto & c : res) c.p = (float) (c.p / z);
        next = res.empty() ? dist[0].id : chain.sample_from(res);
        break;
    }
    par.draft->observe((uint32_t) draft.size(), (uint32_t) n_acc);
    stats.n_accepted += (uint32_t) n_acc;

    // keep t and the accepted tokens in the cache; they come out before `next`
    s.commit_chain(batch, (uint32_t) (1 + n_acc));
    accepted.assign(draft.begin(), draft.begin() + n_acc);
    pending = next;
    stats.ms_verify += ms_since(t1);
}

} // namespace specdec
