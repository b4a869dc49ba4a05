#include "train/train.h"

#include "common/error.h"
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
    fail("ERR_INVALID_OPTION", format("unknown drafter kind '%s' (known: medusa)", o.kind.c_str()));
}

} // namespace specdec
