#include "runtime/generation.h"
#include "common/error.h"
#include "spec/drafters/lud.h"

#include <algorithm>
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
    // a verification pass holds the root token and the tree, so a batch of one verifies nothing:
    // decode plainly (the drafter never runs, a draft model never reads the prompt)
    if (s.n_batch() < 2) par.draft = nullptr;
    if (par.parallel_k > 0) {
        if (par.draft) fail("ERR_INTERNAL", "a lossy LUD generation has no drafter");
        if (s.mdl().hp.n_vocab_extra != 1 || par.parallel_placeholder != (int32_t) s.n_vocab()) {
            fail("ERR_INTERNAL", "a lossy LUD generation runs on a LUD model's session");
        }
        // a pass holds the tokens emitted since the last one (at most k + 1) and k placeholders
        par.parallel_k = std::min(par.parallel_k, (std::min(s.n_batch(), MAX_INVARIANT_BATCH) - 1) / 2);
    }

    // reuse what the cache holds of a fresh prefill of this prompt (whole chunks, or the whole
    // prompt with its logits): the prompt's rows then have the bits a fresh session computes
    // (a drafter that reads the target's hidden states, medusa and eagle, gets the last chunk's rows)
    if (par.coproc) coproc_check(s, *par.coproc, par.coproc_latents);
    const uint32_t common = s.fresh_prefix(par.prompt, logits, par.draft && !s.taps().empty(), /*keep_latents =*/ !par.coproc);
    s.truncate(common);
    n_prefilled = common;
    stats.n_prompt_reused = common;
    history = par.prompt;
    if (par.max_tokens == 0) {
        reason = STOP_MAX_TOKENS;
    }
}

void generation::abort() {
    s.request_abort();
    if (par.draft) par.draft->abort();
    if (par.ead) par.ead->abort();
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
    if (n_prefilled == par.prompt.size()) {
        if (par.draft) {
            // a draft model reads the prompt now, as part of prompt processing
            s.pause_threads();
            par.draft->prepare(history);
            par.draft->pause();
        }
        if (par.coproc) {
            // the drafter read the prompt before: its rows are the prompt's, whatever the augmentation re-evaluates
            const auto ta = clk::now();
            coproc_augment(s, *par.coproc, par.coproc_latents, logits);
            stats.ms_augment += ms_since(ta);
            stats.n_latents += par.coproc_latents;
            stats.n_forward += 3;  // the coprocessor, the latents, the last prompt token again
        }
        prefilled = true;
        // EAD: the small model reads the prompt too (prompt processing), then picks who goes first
        pending = par.ead ? par.ead->start(s, logits, history, chain) : chain.sample(logits.data(), (int32_t) s.n_vocab(), history);
    }
    stats.ms_prefill += ms_since(t0);
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
        // the tokens emitted but not evaluated yet must fit: one (t), except with EAD (the target's cache
        // lags behind the small model's tokens) and lossy LUD (the run emitted with t)
        if (history.size() + s.n_latent_cells() > s.n_ctx()) {
            reason = STOP_CONTEXT_FULL;
            break;
        }
        try {
            if (par.parallel_k > 0) {
                parallel_step();
            } else if (par.draft) {
                speculate(t);
            } else if (par.ead) {
                pending = par.ead->next(s, history, chain);
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
    if (par.ead) par.ead->pause();  // the small model's threads must not spin between steps
    stats.ms_decode += ms_since(td);
    if (par.parallel_k > 0) s.pause_threads();  // the LUD model's session: the caller pauses only the target's
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
    const uint32_t room = s.n_ctx() - s.n_cells() - 1;  // cells left after t
    const uint32_t left = par.max_tokens - stats.n_generated;             // tokens still wanted (bounds the depth)
    // the root token t is verified with the tree: at most n_batch - 1 nodes fit one pass
    const uint32_t budget = std::min({ par.draft_max, room, left, MAX_INVARIANT_BATCH - 1, s.n_batch() - 1 });
    if (par.draft->computes()) s.pause_threads();  // the target's threads must not spin while the drafter computes
    tree.clear();
    if (budget > 0) par.draft->propose(history, budget, tree);
    tree.truncate(budget);
    par.draft->pause();  // its threads must not spin while the target computes
    const double draft_ms = ms_since(t0);
    stats.ms_draft += draft_ms;

    // verify t + the tree in one forward pass; row 0 predicts the token after t, row 1 + i the
    // token after node i
    const auto t1 = clk::now();
    const size_t n = tree.size();
    std::vector<int32_t> batch(1 + n), parents(1 + n);
    std::vector<uint32_t> outputs(1 + n);
    batch[0] = t;
    parents[0] = -1;
    bool chain = true;
    for (size_t i = 0; i < n; ++i) {
        batch[1 + i] = tree.tokens[i];
        parents[1 + i] = tree.parents[i] + 1;
        chain = chain && tree.parents[i] == (int32_t) i - 1;
    }
    for (size_t i = 0; i <= n; ++i) outputs[i] = (uint32_t) i;
    s.eval_tree(batch, parents, outputs, logits);
    const double verify_ms = ms_since(t1);
    stats.n_forward++;
    stats.n_verify++;
    stats.n_drafted += (uint32_t) n;

    const acceptance acc = par.verify == VERIFY_MATCH && !par.biased_verifier
        ? verifier.accept_match(tree, logits.data(), (int32_t) s.n_vocab(), this->chain, history)
        : verifier.accept(tree, logits.data(), (int32_t) s.n_vocab(), this->chain, history, par.biased_verifier);
    bool prefix = chain;
    for (size_t i = 0; prefix && i < acc.path.size(); ++i) prefix = acc.path[i] == i;
    verify_result vr;
    vr.root = t;
    vr.before_root = history.size() > 1 ? history[history.size() - 2] : -1;
    vr.tree = &tree;
    vr.path = acc.path;
    vr.next = acc.next;
    vr.logits = logits.data();
    vr.n_vocab = (int32_t) s.n_vocab();
    vr.draft_ms = draft_ms;
    vr.verify_ms = verify_ms;
    par.draft->observe(vr);
    if (!prefix) stats.n_compactions++;
    stats.n_accepted += (uint32_t) acc.path.size();

    // keep t and the accepted path in the cache (moved into place when the path is not the
    // first branch); they come out before `next`
    if (prefix) {
        s.commit_chain(batch, (uint32_t) (1 + acc.path.size()));
    } else {
        std::vector<uint32_t> keep = { 0 };
        for (uint32_t k : acc.path) keep.push_back(1 + k);
        s.commit_path(batch, keep);
    }
    accepted.clear();
    for (uint32_t k : acc.path) accepted.push_back(tree.tokens[k]);
    pending = acc.next;
    stats.ms_verify += ms_since(t1);
}

} // namespace specdec

namespace specdec {

void generation::parallel_step() {
    // every token emitted since the last pass (t, and the run emitted with it) goes into this one
    const size_t held = s.tokens().size();
    const std::vector<int32_t> fresh(history.begin() + (std::ptrdiff_t) held, history.end());
    const uint32_t room = s.n_ctx() - (uint32_t) history.size() - s.n_latent_cells();  // cells left after them
    const uint32_t left = par.max_tokens - stats.n_generated;                   // tokens still wanted
    const uint32_t k = std::min({ par.parallel_k, room, left > 0 ? left - 1 : 0 });
    lud_parallel_pass(s, fresh, k, par.parallel_placeholder, logits);
    stats.n_forward++;
    const int32_t V = (int32_t) s.n_vocab();
    // the next token, as autoregressive decoding of this model gives it; then the confident run
    const int32_t first = chain.sample(logits.data(), V, history);
    std::vector<int32_t> run;
    lud_confident_run(logits.data(), k, V, par.parallel_alpha, run);
    stats.n_drafted += k;
    stats.n_accepted += (uint32_t) run.size();
    // emitted in order: `accepted` first, then `pending`
    accepted.clear();
    if (run.empty()) {
        pending = first;
    } else {
        accepted.push_back(first);
        accepted.insert(accepted.end(), run.begin(), run.end() - 1);
        pending = run.back();
    }
}

} // namespace specdec
