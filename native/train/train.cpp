#include "train/train.h"

#include "common/error.h"
#include "train/chimera_train.h"
#include "train/eagle3_train.h"
#include "train/lud_train.h"
#include "coproc/coproc_train.h"
#include "train/medusa_train.h"
#include "train/transfer_train.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ggml-cpu.h"

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

train_run::train_run(const train_options & o) : opt_(o), t0(std::chrono::steady_clock::now()) {
    rep.out = o.out;
    pr.tokens_budget = o.max_tokens;
    pr.budget_s = o.max_seconds;
    lr.lr = o.lr;
    cpu = ggml_backend_cpu_init();
    if (!cpu) fail("ERR_BACKEND_UNAVAILABLE", "cannot start the CPU backend");
    ggml_backend_cpu_set_n_threads(cpu, o.n_threads);
    if (o.abort) ggml_backend_cpu_set_abort_callback(cpu, [](void * p) { return ((const std::atomic<bool> *) p)->load(); }, (void *) o.abort);
    ctx_p = ggml_init({ ggml_tensor_overhead() * 1024, nullptr, true });
    res = ggml_opt_result_init();
    res_eval = ggml_opt_result_init();
}

train_run::~train_run() {
    end_step();
    ggml_opt_result_free(res);
    ggml_opt_result_free(res_eval);
    for (auto * d : datasets) ggml_opt_dataset_free(d);
    if (opt_ctx) ggml_opt_free(opt_ctx);
    if (buf) ggml_backend_buffer_free(buf);
    if (ctx_c) ggml_free(ctx_c);
    if (ctx_p) ggml_free(ctx_p);
    if (sched) ggml_backend_sched_free(sched);
    if (cpu) ggml_backend_free(cpu);
}

void train_run::set_threads(int n) { ggml_backend_cpu_set_n_threads(cpu, std::max(1, n)); }

double train_run::seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }

void train_run::check_abort() const {
    if (aborted()) fail("ERR_ABORTED", "training aborted");
}

bool train_run::budget_left() const {
    if (opt_.max_tokens > 0 && rep.tokens >= opt_.max_tokens) return false;
    if (opt_.max_seconds > 0 && seconds() >= opt_.max_seconds) return false;
    return true;
}

void train_run::report(const char * phase) {
    if (!opt_.progress) return;
    pr.phase = phase;
    pr.elapsed_s = seconds();
    pr.tokens = rep.tokens;
    pr.tokens_per_s = pr.elapsed_s > 0 ? rep.tokens / pr.elapsed_s : 0.0;
    opt_.progress(pr);
}

void train_run::alloc_weights() {
    buf = ggml_backend_alloc_ctx_tensors(ctx_p, cpu);
    if (!buf) fail("ERR_BACKEND_UNAVAILABLE", "cannot allocate the training weights");
    ggml_backend_buffer_clear(buf, 0);
}

ggml_context * train_run::compute(size_t n_tensors) {
    if (!ctx_c) ctx_c = ggml_init({ ggml_tensor_overhead() * n_tensors + 4 * ggml_graph_overhead_custom(GGML_DEFAULT_GRAPH_SIZE * 4, true), nullptr, true });
    return ctx_c;
}

ggml_opt_optimizer_params train_run::lr_pars(void * ud) {
    const lr_state * st = (const lr_state *) ud;
    ggml_opt_optimizer_params p = ggml_opt_get_default_optimizer_params(nullptr);
    p.adamw.alpha = st->lr * (1.0f - 0.9f * std::min(1.0f, st->frac));  // linear decay to 10 % over the budget
    p.adamw.wd = 0.0f;
    return p;
}

void train_run::init_opt(ggml_tensor * inputs, ggml_tensor * outputs, ggml_opt_loss_type loss) {
    sched = ggml_backend_sched_new(&cpu, nullptr, 1, GGML_DEFAULT_GRAPH_SIZE * 4, false, true);
    ggml_opt_params op = ggml_opt_default_params(sched, loss);
    op.ctx_compute = ctx_c;
    op.inputs = inputs;
    op.outputs = outputs;
    op.opt_period = 1;
    op.get_opt_pars = lr_pars;
    op.get_opt_pars_ud = &lr;
    op.optimizer = GGML_OPT_OPTIMIZER_TYPE_ADAMW;
    opt_ctx = ggml_opt_init(op);
}

void train_run::init_opt_rebuilt(std::function<built_graph(ggml_context *, size_t)> build, size_t max_nodes) {
    sched = ggml_backend_sched_new(&cpu, nullptr, 1, max_nodes * 4, false, true);
    ggml_opt_params op = ggml_opt_default_params(sched, GGML_OPT_LOSS_TYPE_CROSS_ENTROPY);
    op.ctx_compute = nullptr;  // no static graphs: one is built per step
    op.opt_period = 1;
    op.get_opt_pars = lr_pars;
    op.get_opt_pars_ud = &lr;
    op.optimizer = GGML_OPT_OPTIMIZER_TYPE_ADAMW;
    opt_ctx = ggml_opt_init(op);
    rebuild = std::move(build);
    rebuild_nodes = max_nodes;
}

void train_run::alloc_step(bool backward) {
    if (!rebuild) {
        ggml_opt_alloc(opt_ctx, backward);
        return;
    }
    end_step();
    // the forward graph, then ggml-opt's backward and optimizer graphs (copies of it), in one context
    const size_t n = rebuild_nodes;
    ctx_step = ggml_init({ 4 * n * ggml_tensor_overhead() + 3 * ggml_graph_overhead_custom(n, true), nullptr, true });
    if (!ctx_step) fail("ERR_INTERNAL", "cannot create the training graph's context");
    built_graph g = rebuild(ctx_step, n);
    ggml_opt_prepare_alloc(opt_ctx, ctx_step, g.gf, g.inputs, g.outputs);
    ggml_opt_alloc(opt_ctx, backward);
}

void train_run::end_step() {
    if (ctx_step) ggml_free(ctx_step);
    ctx_step = nullptr;
}

ggml_opt_dataset_t train_run::dataset(int64_t ne_data, int64_t ne_label, int64_t n) {
    datasets.push_back(ggml_opt_dataset_init(GGML_TYPE_F32, GGML_TYPE_F32, ne_data, ne_label, n, 1));
    return datasets.back();
}

void train_run::step(ggml_opt_dataset_t ds, int64_t ib, uint64_t positions) {
    step_with([&](ggml_tensor * in, ggml_tensor * lab) { ggml_opt_dataset_get_batch(ds, in, lab, ib); }, positions);
}

void train_run::step_with(const std::function<void(ggml_tensor * inputs, ggml_tensor * labels)> & fill, uint64_t positions) {
    check_abort();
    double f = 0.0;
    if (opt_.max_tokens > 0) f = std::max(f, (double) rep.tokens / opt_.max_tokens);
    if (opt_.max_seconds > 0) f = std::max(f, seconds() / opt_.max_seconds);
    lr.frac = (float) f;
    alloc_step(/*backward =*/ true);
    fill(ggml_opt_inputs(opt_ctx), ggml_opt_labels(opt_ctx));
    ggml_opt_eval(opt_ctx, res);
    check_abort();  // an abort inside the graph leaves a partial step: nothing is written after it
    if (!std::isfinite(train_loss())) {
        fail("ERR_TRAINING_DIVERGED", format("training diverged after %llu steps (the loss is not finite); nothing was written. "
                "Try a smaller learning rate", (unsigned long long) rep.steps));
    }
    rep.tokens += positions;
    rep.steps++;
}

void train_run::train_chunk(ggml_opt_dataset_t ds, const float * data, const float * labels, int64_t n, int64_t batch,
                            uint64_t positions_per_batch, int64_t report_every) {
    const ggml_tensor * dd = ggml_opt_dataset_data(ds);
    const ggml_tensor * dl = ggml_opt_dataset_labels(ds);
    std::memcpy(dd->data, data, (size_t) n * dd->ne[0] * sizeof(float));  // the tail stays unused when the chunk is short
    if (dl) std::memcpy(dl->data, labels, (size_t) n * dl->ne[0] * sizeof(float));  // none: the labels are in the data
    ggml_opt_dataset_shuffle(opt_ctx, ds, n);
    reset_train_loss();
    const int64_t nb = n / batch;
    for (int64_t ib = 0; ib < nb && budget_left(); ++ib) {
        step(ds, ib, positions_per_batch);
        if ((ib + 1) % report_every == 0 || ib + 1 == nb) {
            pr.train_loss = train_loss();
            report("train");
        }
    }
}

void train_run::validate_every(int64_t n_chunks, int64_t every, const std::function<void(double & loss, double & accuracy)> & validate) {
    if (n_chunks % every != 0 || !budget_left()) return;
    report("validate");
    validate(pr.val_loss, pr.val_accuracy);
    report("train");
}

double train_run::train_loss() {
    double loss, unc;
    ggml_opt_result_loss(res, &loss, &unc);
    return loss;
}

void train_run::reset_train_loss() { ggml_opt_result_reset(res); }

void train_run::evaluate(ggml_opt_dataset_t ds, int64_t nb, double & loss, double & acc, std::vector<int32_t> * pred) {
    ggml_opt_result_reset(res_eval);
    for (int64_t ib = 0; ib < nb; ++ib) {
        check_abort();
        ggml_opt_alloc(opt_ctx, /*backward =*/ false);
        ggml_opt_dataset_get_batch(ds, ggml_opt_inputs(opt_ctx), ggml_opt_labels(opt_ctx), ib);
        ggml_opt_eval(opt_ctx, res_eval);
    }
    double unc;
    ggml_opt_result_loss(res_eval, &loss, &unc);
    ggml_opt_result_accuracy(res_eval, &acc, &unc);
    if (pred) {
        int64_t n = 0;
        ggml_opt_result_ndata(res_eval, &n);
        pred->resize((size_t) n);
        ggml_opt_result_pred(res_eval, pred->data());
    }
}

void train_run::eval_with(const std::function<void(ggml_tensor * inputs, ggml_tensor * labels)> & fill, double & loss,
                          std::vector<int32_t> * pred) {
    check_abort();
    ggml_opt_result_reset(res_eval);
    alloc_step(/*backward =*/ false);
    const int64_t rows = ggml_opt_outputs(opt_ctx)->ne[1];
    fill(ggml_opt_inputs(opt_ctx), ggml_opt_labels(opt_ctx));
    ggml_opt_eval(opt_ctx, res_eval);
    check_abort();
    double unc;
    ggml_opt_result_loss(res_eval, &loss, &unc);
    if (pred) {
        pred->resize((size_t) rows);  // one row per output row of this one pass
        ggml_opt_result_pred(res_eval, pred->data());
    }
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
    if (o.kind == "chimera") return train_chimera(std::move(target), o);
    if (o.kind == "hidden-transfer") return train_transfer(std::move(target), o);
    if (o.kind == "lud") return train_lud(std::move(target), o);
    if (o.kind == "coprocessor") return train_coprocessor(std::move(target), o);
    fail("ERR_INVALID_OPTION", format("unknown drafter kind '%s' (known: medusa, eagle3, chimera, hidden-transfer, lud, coprocessor)", o.kind.c_str()));
}

} // namespace specdec
