#include "coproc/perplexity.h"

#include "common/error.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace specdec {

namespace {

// -log softmax(row)[t]
double nll_of(const float * row, int64_t V, int32_t t) {
    const float mx = *std::max_element(row, row + V);
    double z = 0.0;
    for (int64_t i = 0; i < V; ++i) z += std::exp((double) (row[i] - mx));
    return (double) mx + std::log(z) - (double) row[t];
}

} // namespace

perplexity_result perplexity(session & s, const std::vector<int32_t> & tokens, const perplexity_params & p, const coprocessor * c) {
    const int64_t V = s.n_vocab();
    for (int32_t t : tokens) {
        if (t < 0 || t >= (int32_t) V) fail("ERR_TOKEN_OUT_OF_RANGE", format("token id %d is out of range [0, %lld)", t, (long long) V));
    }
    if (c && p.every == 0) fail("ERR_INVALID_OPTION", "a coprocessor needs augmentation points (augmentEvery >= 1)");
    if (p.every > 0 && (p.ahead < 1 || p.ahead > s.n_batch())) {
        fail("ERR_INVALID_OPTION", format("ahead must be 1..%u (the batch size), got %u", s.n_batch(), p.ahead));
    }
    if (c) coproc_check(s, *c, p.latents);
    const uint32_t room = s.n_ctx() - (c ? p.latents : 0);
    const uint32_t ctx = p.context == 0 ? room : p.context;
    if (ctx < 2 || ctx > room) fail("ERR_INVALID_OPTION", format("context must be 2..%u, got %u", room, ctx));

    perplexity_result r;
    double sum = 0.0;
    std::vector<float> logits;
    for (size_t at = 0; at + 1 < tokens.size(); at += ctx) {
        const size_t n = std::min<size_t>(ctx, tokens.size() - at);
        if (n < 2) break;
        const std::vector<int32_t> chunk(tokens.begin() + (std::ptrdiff_t) at, tokens.begin() + (std::ptrdiff_t) (at + n));
        s.truncate(0);
        if (p.every == 0) {
            s.eval_chain(chunk, /*all_logits =*/ true, /*invariant =*/ false, logits);
            for (size_t i = 0; i + 1 < n; ++i) {
                sum += nll_of(logits.data() + i * V, V, chunk[i + 1]);
                r.tokens++;
            }
            continue;
        }
        if (!c) {
            s.eval_chain(chunk, true, false, logits);
            for (size_t pt = p.every; pt + p.ahead < n; pt += p.every) {
                for (size_t j = 0; j < p.ahead; ++j) {
                    sum += nll_of(logits.data() + (pt + j) * V, V, chunk[pt + j + 1]);
                    r.tokens++;
                }
            }
            continue;
        }
        // the cache holds x[0 .. pt - 1]; augment, score the ahead tokens, drop them and the latents, go on
        size_t held = 0;
        for (size_t pt = p.every; pt + p.ahead < n; pt += p.every) {
            if (s.abort_requested()) fail("ERR_ABORTED", "evaluation aborted");
            s.eval_chain(std::vector<int32_t>(chunk.begin() + (std::ptrdiff_t) held, chunk.begin() + (std::ptrdiff_t) pt), false, false, logits);
            held = pt;
            const auto t0 = std::chrono::steady_clock::now();
            coproc_append(s, *c, p.latents);
            r.ms_augment += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            r.augmentations++;
            const std::vector<int32_t> ahead(chunk.begin() + (std::ptrdiff_t) pt, chunk.begin() + (std::ptrdiff_t) (pt + p.ahead));
            s.eval_chain(ahead, true, false, logits);
            for (size_t j = 0; j < p.ahead; ++j) {
                sum += nll_of(logits.data() + j * V, V, chunk[pt + j + 1]);
                r.tokens++;
            }
            s.truncate((uint32_t) pt);  // the ahead tokens and the latents after x[pt - 1] go
        }
    }
    s.truncate(0);
    if (r.tokens == 0) {
        fail("ERR_INVALID_OPTION", p.every > 0 ? "the text is too short: no augmentation point with its ahead tokens fits a chunk"
                                               : "the text is too short: at least two tokens are needed");
    }
    r.nll = sum / (double) r.tokens;
    r.ppl = std::exp(r.nll);
    return r;
}

} // namespace specdec
