#include "spec/ead.h"

#include "common/error.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace specdec {

using clk = std::chrono::steady_clock;

static double ms_since(clk::time_point t0) {
    return std::chrono::duration<double, std::milli>(clk::now() - t0).count();
}

// Entropy in nats of softmax(logits) at temperature 1: log Z - E[l - m].
static float entropy_of(const float * logits, int32_t n_vocab) {
    float m = logits[0];
    for (int32_t i = 1; i < n_vocab; ++i) m = std::max(m, logits[i]);
    double z = 0.0, el = 0.0;
    for (int32_t i = 0; i < n_vocab; ++i) {
        const double d = (double) logits[i] - m;
        const double e = std::exp(d);
        z += e;
        el += e * d;
    }
    return (float) (std::log(z) - el / z);
}

void ead_check_options(const ead_options & o) {
    if (!std::isfinite(o.threshold)) fail("ERR_INVALID_OPTION", "ead.threshold must be a finite number of nats");
    if (o.window < 1 || o.window > 1024) fail("ERR_INVALID_OPTION", format("ead.window must be between 1 and 1024, got %u", o.window));
    if (o.min_dwell < 1 || o.min_dwell > 1 << 20) fail("ERR_INVALID_OPTION", format("ead.minDwell must be between 1 and 1048576, got %u", o.min_dwell));
}

ead_decoder::ead_decoder(std::shared_ptr<const model> small_model, const session_params & params, const ead_options & options)
    : small(std::move(small_model)), par(params), opt(options) {
    ead_check_options(opt);
    par.abort_also = &aborted;
    window.assign(opt.window, 0.0f);
    dwell = opt.min_dwell;  // the first step may switch
}

const std::vector<float> & ead_decoder::follow(session & x, std::vector<float> & lg, size_t & lg_at, const std::vector<int32_t> & history,
                                               uint64_t & n_eval, double & ms) {
    const auto t0 = clk::now();
    const auto & held = x.tokens();
    size_t common = 0;
    while (common < held.size() && common < history.size() && held[common] == history[common]) common++;
    if (common == history.size() && lg_at == history.size() && held.size() == history.size()) return lg;
    if (common == history.size()) common--;  // the logits after the last token are not at hand: evaluate it again
    x.truncate((uint32_t) common);
    // what the other model produced since this one last ran, as one batch (batch-invariant rows:
    // the logits of its last token are those of one-token decoding)
    const std::vector<int32_t> missing(history.begin() + common, history.end());
    x.eval_chain(missing, false, true, lg);
    if (&x != small_sess.get()) {
        const size_t chunk = std::min<size_t>(x.n_batch(), MAX_INVARIANT_BATCH);  // eval_chain's invariant chunks
        stats.n_pass_large += (uint32_t) ((missing.size() + chunk - 1) / chunk);
    }
    lg_at = history.size();
    n_eval += missing.size();
    ms += ms_since(t0);
    return lg;
}

float ead_decoder::push_entropy(const std::vector<float> & lg, int32_t n_vocab, bool replace_last) {
    const float h = entropy_of(lg.data(), n_vocab);
    if (replace_last && n_pushed > 0) {
        window[(n_pushed - 1) % window.size()] = h;
    } else {
        window[n_pushed % window.size()] = h;
        n_pushed++;
    }
    return h;
}

float ead_decoder::window_mean() const {
    const size_t n = std::min(n_pushed, window.size());
    double s = 0.0;
    for (size_t i = 0; i < n; ++i) s += window[i];
    return n > 0 ? (float) (s / (double) n) : 0.0f;
}

int32_t ead_decoder::start(session & target, const std::vector<float> & target_logits, const std::vector<int32_t> & history,
                           sampler_chain & chain) {
    large_params = target.mdl().n_params;
    large_logits = target_logits;
    large_at = history.size();
    if (!small_sess) small_sess = std::make_unique<session>(small, par);
    target.pause_threads();
    // the prompt, as plain prefill evaluates it (chunks of n_batch), so that the small model's tokens
    // are exactly those of its own autoregressive decoding
    const auto t0 = clk::now();
    small_sess->truncate(0);
    small_sess->eval_chain(history, false, false, small_logits);
    small_at = history.size();
    stats.n_prompt_small += history.size();
    stats.ms_small += ms_since(t0);
    return decide(target, history, chain);
}

int32_t ead_decoder::next(session & target, const std::vector<int32_t> & history, sampler_chain & chain) {
    return decide(target, history, chain);
}

int32_t ead_decoder::decide(session & target, const std::vector<int32_t> & history, sampler_chain & chain) {
    const int32_t n_vocab = (int32_t) target.n_vocab();
    int32_t tok;
    if (active == EAD_SMALL) {
        const auto & lg = follow(*small_sess, small_logits, small_at, history, stats.n_eval_small, stats.ms_small);
        push_entropy(lg, n_vocab, false);
        if (dwell >= opt.min_dwell && window_mean() > opt.threshold) {
            // uncertain: the large model takes over and produces this token itself
            small_sess->pause_threads();
            active = EAD_LARGE;
            dwell = 0;
            stats.n_switches++;
            const auto & big = follow(target, large_logits, large_at, history, stats.n_eval_large, stats.ms_large);
            push_entropy(big, n_vocab, true);  // one entropy per position: the large model's replaces the small one's
            tok = chain.sample(big.data(), n_vocab, history);
            stats.sources.push_back('L');
        } else {
            tok = chain.sample(lg.data(), n_vocab, history);
            stats.sources.push_back('S');
        }
    } else {
        const auto & big = follow(target, large_logits, large_at, history, stats.n_eval_large, stats.ms_large);
        push_entropy(big, n_vocab, false);
        tok = chain.sample(big.data(), n_vocab, history);
        stats.sources.push_back('L');
        if (dwell + 1 >= opt.min_dwell && window_mean() < opt.threshold) {
            // confident again: the large model's token stands, the small one produces the next
            target.pause_threads();
            active = EAD_SMALL;
            dwell = 0;
            stats.n_switches++;
            return tok;
        }
    }
    dwell++;
    return tok;
}

double ead_decoder::compute_saved(uint32_t n_generated) const {
    // the large model alone evaluates n - 1 tokens to produce n (the first follows the prompt)
    if (n_generated < 2 || large_params == 0) return 0.0;
    const double cost = (double) large_params * (double) stats.n_eval_large + (double) small->n_params * (double) stats.n_eval_small;
    return 1.0 - cost / ((double) large_params * (double) (n_generated - 1));
}

} // namespace specdec
