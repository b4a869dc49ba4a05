// Entropy Adaptive Decoding (EAD, arXiv 2502.06833): a small and a large model with one vocabulary
// take turns producing the output, the large one only while the prediction is uncertain. Lossy on
// purpose: the output is not the large model's own (the README's "lossless" column says so).
//
// Each step the active model's next-token distribution (raw logits, temperature 1) gives an entropy
// H in nats; a rolling mean over the last `window` steps decides:
// - small active, mean > threshold: the large model takes over at once and produces this very token
//   (the small model's uncertain guess is not used);
// - large active, mean < threshold: the large model's token is kept and the small model takes over
//   from the next token.
// A switch needs `min_dwell` tokens produced since the previous one (none at the start). A model that
// takes over first evaluates the tokens the other one produced since it last ran, as one batch of
// batch-invariant rows (chunks of MAX_INVARIANT_BATCH), so its logits are those of one-token decoding.
// Tokens are drawn from the active model's logits with the generation's sampler chain.
#pragma once

#include "model/model.h"
#include "runtime/session.h"
#include "sampling/sampler.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

namespace specdec {

struct ead_options {
    // defaults: lib/session.ts EAD_DEFAULTS (chosen by bench/ead.mjs on its tuning prompts)
    float    threshold = 0.5f;  // nats; any finite value (negative: always the large model)
    uint32_t window    = 5;     // steps in the rolling mean, >= 1 (the paper's 5)
    uint32_t min_dwell = 1;     // tokens produced between two switches, >= 1
};

struct ead_stats {
    uint32_t    n_switches   = 0;
    uint32_t    n_pass_large = 0;  // the large model's forward passes while decoding
    uint64_t    n_eval_large = 0;  // tokens the large model evaluated while decoding (catch-up included)
    uint64_t    n_eval_small = 0;  // tokens the small model evaluated while decoding (catch-up included)
    uint64_t    n_prompt_small = 0;  // prompt tokens the small model evaluated (prompt processing)
    double      ms_large     = 0.0;
    double      ms_small     = 0.0;
    std::string sources;           // one letter per token produced: 'L' large, 'S' small
};

// Throws specdec::error (ERR_INVALID_OPTION) for a non-finite threshold, a zero window or dwell.
void ead_check_options(const ead_options & o);

class ead_decoder {
public:
    // `small`: the small model; `params`: its session's parameters (those of the target's session).
    ead_decoder(std::shared_ptr<const model> small, const session_params & params, const ead_options & options);

    // After the target's prompt prefill: `target_logits` follow `history` (the prompt) in `target`'s
    // cache. The small model reads the prompt here (prompt processing, in chunks of n_batch as plain
    // prefill does, so that its output is the small model's own). Returns the first token.
    int32_t start(session & target, const std::vector<float> & target_logits, const std::vector<int32_t> & history,
                  sampler_chain & chain);
    // The token after `history` (which ends with the last token emitted).
    int32_t next(session & target, const std::vector<int32_t> & history, sampler_chain & chain);

    // Safe from another thread while next() runs: the small session reads the flag (abort_also).
    void abort() { aborted.store(true); }
    void pause() { if (small_sess) small_sess->pause_threads(); }

    // FLOP-equivalent compute of decoding saved against the large model alone producing `n_generated`
    // tokens (evaluating n - 1 of them: the first follows the prompt):
    // 1 - (P_L * n_eval_large + P_S * n_eval_small) / (P_L * (n_generated - 1)), P = parameter
    // counts (a forward pass costs ~2 P FLOPs per token). Prompt processing is left out on both sides
    // (the small model's reading of the prompt is the extra cost of EAD there).
    double compute_saved(uint32_t n_generated) const;

    ead_stats stats;

private:
    enum which { EAD_SMALL, EAD_LARGE };
    // Brings `x` to `history` (evaluating what it has not seen, as one invariant batch) and returns its logits.
    const std::vector<float> & follow(session & x, std::vector<float> & lg, size_t & lg_at, const std::vector<int32_t> & history,
                                      uint64_t & n_eval, double & ms);
    float push_entropy(const std::vector<float> & lg, int32_t n_vocab, bool replace_last);
    float window_mean() const;
    int32_t decide(session & target, const std::vector<int32_t> & history, sampler_chain & chain);

    std::atomic<bool>            aborted { false };  // outlives small_sess (declared before it)
    std::shared_ptr<const model> small;
    session_params               par;
    ead_options                  opt;
    std::unique_ptr<session>     small_sess;  // made on the worker thread, in start()
    which                        active = EAD_SMALL;
    uint32_t                     dwell = 0;   // tokens produced since the last switch
    std::vector<float>           window;      // ring of the last `window` entropies
    size_t                       n_pushed = 0;
    std::vector<float>           small_logits, large_logits;
    size_t                       small_at = 0, large_at = 0;  // history lengths the logits follow
    uint64_t                     large_params = 0;
};

} // namespace specdec
