#include "train/train.h"

#include "common/error.h"
#include "train/eagle3_train.h"
#include "train/medusa_train.h"

#include <algorithm>
#include <cmath>

namespace specdec {

target_features::target_features(std::shared_ptr<const model> target, uint32_t seq_len, int n_threads, const std::vector<uint32_t> & taps) {
    session_params p;
    p.n_ctx = seq_len;
    p.n_batch = seq_len;
    p.n_threads = n_threads;
    s = std::make_unique<session>(std::move(target), p);
    s->set_taps(taps);
}

void target_features::run(const std::vector<int32_t> & window, std::vector<float> & hidden, std::vector<float> & logits) {
    s->truncate(0);
    // one batch of all rows (prompt prefill's kernels): the labels are the target's distributions
    s->eval_chain(window, /*all_logits =*/ true, /*invariant =*/ false, logits);
    hidden = s->hidden();
    s->truncate(0);
    s->pause_threads();
}

corpus_windows::corpus_windows(const std::vector<std::vector<int32_t>> & docs_, uint32_t max_len, uint32_t min_len_, bool random_, uint64_t seed)
    : docs(docs_), L(max_len), min_len(min_len_), random(random_), rng(seed) {
    for (const auto & d : docs) {
        total += d.size() >= min_len ? d.size() : 0;
        cum.push_back(total);
    }
}

bool corpus_windows::next(std::vector<int32_t> & w) {
    if (random) {
        if (total == 0) return false;
        const uint64_t at = std::uniform_int_distribution<uint64_t>(0, total - 1)(rng);
        const size_t i = std::upper_bound(cum.begin(), cum.end(), at) - cum.begin();
        const auto & d = docs[i];
        const size_t n = std::min<size_t>(L, d.size());
        const size_t o = std::uniform_int_distribution<size_t>(0, d.size() - n)(rng);
        w.assign(d.begin() + o, d.begin() + o + n);
        return true;
    }
    while (doc < docs.size()) {
        const auto & d = docs[doc];
        if (off + min_len <= d.size()) {
            const size_t n = std::min<size_t>(L, d.size() - off);
            w.assign(d.begin() + off, d.begin() + off + n);
            off += n >= d.size() - off ? n : n - (min_len - 1);
            return true;
        }
        doc++;
        off = 0;
    }
    return false;
}

void softmax_row(const float * logits, int64_t n, float * out) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; ++i) mx = std::max(mx, logits[i]);
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        out[i] = expf(logits[i] - mx);
        sum += out[i];
    }
    const float inv = (float) (1.0 / sum);
    for (int64_t i = 0; i < n; ++i) out[i] *= inv;
}

train_report train_drafter(std::shared_ptr<const model> target, const train_options & o) {
    if (o.max_seconds <= 0 && o.max_tokens == 0) {
        fail("ERR_INVALID_OPTION", "training needs a budget: minutes or tokens");
    }
    if (o.out.empty()) fail("ERR_INVALID_OPTION", "training needs an output file ('out')");
    if (o.kind == "medusa") return train_medusa(std::move(target), o);
    if (o.kind == "eagle3") return train_eagle3(std::move(target), o);
    fail("ERR_INVALID_OPTION", format("unknown drafter kind '%s' (known: medusa, eagle3)", o.kind.c_str()));
}

} // namespace specdec
