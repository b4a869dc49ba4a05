// Medusa heads on ggml-opt (heads/medusa_heads.h for the network).
//
// A datapoint is one position t of a corpus window: the input is the target's last hidden state
// at t (tap n_layer), the labels are the target's softmax at rows t+1 .. t+K, i.e. its
// distributions of tokens t+2 .. t+K+1, which heads 0 .. K-1 learn to predict (soft cross-entropy
// to the target = forward-KL distillation). The K heads train in one graph: their logits are
// rows of one [n_vocab, K * batch] output, so ggml-opt's cross-entropy covers them all.
#include "train/medusa_train.h"

#include "common/error.h"
#include "heads/medusa_heads.h"

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml-opt.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>

namespace specdec {

namespace {

using clk = std::chrono::steady_clock;

struct opt_state {
    float lr = 1e-3f;
    float frac = 0.0f;  // share of the budget spent
};

ggml_opt_optimizer_params opt_pars(void * ud) {
    const opt_state * st = (const opt_state *) ud;
    ggml_opt_optimizer_params p = ggml_opt_get_default_optimizer_params(nullptr);
    p.adamw.alpha = st->lr * (1.0f - 0.9f * std::min(1.0f, st->frac));  // linear decay to 10 %
    p.adamw.wd = 0.0f;
    return p;
}

// Datapoints of a list of windows: hidden [n][d] and labels [n][K][V].
struct datapoints {
    std::vector<float> hidden, labels;
    int64_t n = 0;
};

void collect(target_features & feat, corpus_windows & src, int64_t want, uint32_t K, uint32_t d, uint32_t V,
             datapoints & out, uint64_t & feature_tokens, const std::atomic<bool> * abort) {
    out.n = 0;
    out.hidden.resize((size_t) want * d);
    out.labels.resize((size_t) want * K * V);
    std::vector<int32_t> w;
    std::vector<float> hidden, logits;
    while (out.n < want) {
        if (abort && abort->load()) fail("ERR_ABORTED", "training aborted");
        if (!src.next(w)) break;
        feat.run(w, hidden, logits);
        feature_tokens += w.size();
        const int64_t n = (int64_t) w.size();
        for (int64_t t = 0; t + (int64_t) K < n && out.n < want; ++t) {
            std::memcpy(out.hidden.data() + (size_t) out.n * d, hidden.data() + (size_t) t * d, d * sizeof(float));
            for (uint32_t k = 0; k < K; ++k) {
                softmax_row(logits.data() + (size_t) (t + 1 + k) * V, V, out.labels.data() + ((size_t) out.n * K + k) * V);
            }
            out.n++;
        }
    }
}

// The validation figures with the real inference path (medusa_runner): per-head top-1 agreement
// with the target's argmax, and the expected tokens per step of a greedy chain of the heads.
void measure_heads(medusa_runner & runner, const datapoints & val, uint32_t K, uint32_t d, uint32_t V,
                   std::vector<double> & head_acc, double & tau) {
    head_acc.assign(K, 0.0);
    double sum_run = 0.0;
    std::vector<float> logits;
    for (int64_t i = 0; i < val.n; ++i) {
        runner.run(val.hidden.data() + (size_t) i * d, logits);
        bool all = true;
        for (uint32_t k = 0; k < K; ++k) {
            const float * lg = logits.data() + (size_t) k * V;
            const float * lb = val.labels.data() + ((size_t) i * K + k) * V;
            const int64_t a = std::max_element(lg, lg + V) - lg;
            const int64_t b = std::max_element(lb, lb + V) - lb;
            const bool ok = a == b;
            head_acc[k] += ok;
            all = all && ok;
            if (all) sum_run += 1.0;
        }
    }
    for (auto & a : head_acc) a /= std::max<int64_t>(1, val.n);
    tau = 1.0 + sum_run / std::max<int64_t>(1, val.n);
}

} // namespace

train_report train_medusa(std::shared_ptr<const model> target, const train_options & o) {
    const auto t_start = clk::now();
    auto seconds = [&] { return std::chrono::duration<double>(clk::now() - t_start).count(); };
    const hparams & hp = target->hp;
    const uint32_t K = o.n_heads, d = hp.n_embd, V = hp.n_vocab, B = o.batch;
    if (K < 1 || K > 16) fail("ERR_INVALID_OPTION", format("medusa heads must be 1..16, got %u", K));
    if (B < 1 || o.chunk < B) fail("ERR_INVALID_OPTION", "the batch must be at least 1 and at most the chunk size");
    if (o.seq_len < K + 8) fail("ERR_INVALID_OPTION", format("sequence length %u is too short for %u heads", o.seq_len, K));

    train_report rep;
    rep.out = o.out;
    train_progress pr;
    pr.tokens_budget = o.max_tokens;
    pr.budget_s = o.max_seconds;
    auto report = [&](const char * phase) {
        if (!o.progress) return;
        pr.phase = phase;
        pr.elapsed_s = seconds();
        pr.tokens = rep.tokens;
        pr.tokens_per_s = pr.elapsed_s > 0 ? rep.tokens / pr.elapsed_s : 0.0;
        o.progress(pr);
    };
    auto aborted = [&] { return o.abort && o.abort->load(); };

    target_features feat(target, o.seq_len, o.n_threads, { hp.n_layer });

    // the validation split, once
    report("features");
    datapoints val;
    {
        // windows of at most 128 tokens drawn from many held-out documents (seeded), so that the
        // validation positions are not one or two files
        corpus_windows vs(o.val_docs, std::min<uint32_t>(o.seq_len, 128), K + 2, /*random =*/ true, o.seed ^ 0x5eedull);
        collect(feat, vs, o.val_max, K, d, V, val, rep.feature_tokens, o.abort);
        val.n = (val.n / B) * B;
    }
    if (val.n < (int64_t) B) {
        fail("ERR_INVALID_OPTION", format("the corpus is too short: its validation split gives %lld positions, at least %u are needed "
                "(give more text)", (long long) val.n, B));
    }
    rep.val_datapoints = (uint64_t) val.n;

    // trainable heads and the frozen output norm and head (an f32 copy: out_prod runs on any backend)
    ggml_backend_t cpu = ggml_backend_cpu_init();
    if (!cpu) fail("ERR_BACKEND_UNAVAILABLE", "cannot start the CPU backend");
    ggml_backend_cpu_set_n_threads(cpu, o.n_threads);
    if (o.abort) ggml_backend_cpu_set_abort_callback(cpu, [](void * p) { return ((const std::atomic<bool> *) p)->load(); }, (void *) o.abort);
    struct guard_t {
        ggml_backend_t cpu = nullptr;
        ggml_backend_sched_t sched = nullptr;
        ggml_context * ctx_p = nullptr, * ctx_c = nullptr;
        ggml_backend_buffer_t buf = nullptr;
        ggml_opt_context_t opt = nullptr;
        ggml_opt_dataset_t ds = nullptr, ds_val = nullptr;
        ggml_opt_result_t res = nullptr, res_val = nullptr;
        ~guard_t() {
            if (res) ggml_opt_result_free(res);
            if (res_val) ggml_opt_result_free(res_val);
            if (ds) ggml_opt_dataset_free(ds);
            if (ds_val) ggml_opt_dataset_free(ds_val);
            if (opt) ggml_opt_free(opt);
            if (buf) ggml_backend_buffer_free(buf);
            if (ctx_c) ggml_free(ctx_c);
            if (ctx_p) ggml_free(ctx_p);
            if (sched) ggml_backend_sched_free(sched);
            if (cpu) ggml_backend_free(cpu);
        }
    } g;
    g.cpu = cpu;

    g.ctx_p = ggml_init({ ggml_tensor_overhead() * 8, nullptr, true });
    // ggml-opt's static graphs need the inputs allocated with the weights
    ggml_tensor * inputs = ggml_new_tensor_2d(g.ctx_p, GGML_TYPE_F32, d, B);  // [d, B]: the target's last hidden states
    ggml_set_name(inputs, "inputs");
    ggml_set_input(inputs);
    ggml_tensor * W     = ggml_new_tensor_2d(g.ctx_p, GGML_TYPE_F32, d, (int64_t) d * K);  // [d_in, d_out * K]: the heads side by side
    ggml_tensor * Bv    = ggml_new_tensor_3d(g.ctx_p, GGML_TYPE_F32, d, K, 1);  // [d, K, 1]
    ggml_tensor * Wout  = ggml_new_tensor_2d(g.ctx_p, GGML_TYPE_F32, d, V);     // frozen [d, V]
    ggml_tensor * normw = ggml_new_tensor_1d(g.ctx_p, GGML_TYPE_F32, d);        // frozen [d]
    ggml_set_name(W, "medusa.weight");
    ggml_set_name(Bv, "medusa.bias");
    ggml_set_param(W);
    ggml_set_param(Bv);
    g.buf = ggml_backend_alloc_ctx_tensors(g.ctx_p, cpu);
    if (!g.buf) fail("ERR_BACKEND_UNAVAILABLE", "cannot allocate the training weights");
    {
        auto init = medusa_heads::zeros(*target, K);  // the paper's initialisation: every head starts as the target's head
        ggml_backend_tensor_set(W, init->w.data(), 0, ggml_nbytes(W));
        ggml_backend_tensor_set(Bv, init->b.data(), 0, ggml_nbytes(Bv));
        std::vector<float> tmp;
        tensor_to_f32(target->output, tmp);
        ggml_backend_tensor_set(Wout, tmp.data(), 0, ggml_nbytes(Wout));
        tensor_to_f32(target->output_norm, tmp);
        ggml_backend_tensor_set(normw, tmp.data(), 0, ggml_nbytes(normw));
    }

    // the forward graph
    const size_t n_nodes = 512;
    g.ctx_c = ggml_init({ ggml_tensor_overhead() * n_nodes + 4 * ggml_graph_overhead_custom(GGML_DEFAULT_GRAPH_SIZE, true), nullptr, true });
    ggml_context * c = g.ctx_c;
    // Laid out [d, K, B] throughout (no permute: ggml's CPU silu_back reads rows by nb[1] alone, so a
    // permuted gradient would mix the heads' rows).
    ggml_tensor * x  = ggml_mul(c, ggml_rms_norm(c, inputs, hp.f_norm_rms_eps), normw);      // [d, B]
    ggml_tensor * xK = ggml_repeat(c, ggml_reshape_3d(c, x, d, 1, B), ggml_new_tensor_3d(c, GGML_TYPE_F32, d, K, B));  // [d, K, B]
    ggml_tensor * y  = ggml_reshape_3d(c, ggml_mul_mat(c, W, x), d, K, B);                    // [d * K, B] -> [d, K, B]
    y = ggml_add(c, y, Bv);                                                                   // + b_k
    ggml_tensor * z  = ggml_add(c, xK, ggml_silu(c, y));                                      // [d, K, B]
    ggml_tensor * outputs = ggml_mul_mat(c, Wout, ggml_reshape_2d(c, z, d, (int64_t) K * B)); // [V, K * B], head-minor
    ggml_set_name(outputs, "outputs");
    ggml_set_output(outputs);

    g.sched = ggml_backend_sched_new(&g.cpu, nullptr, 1, GGML_DEFAULT_GRAPH_SIZE, false, true);
    opt_state st;
    st.lr = o.lr;
    ggml_opt_params op = ggml_opt_default_params(g.sched, GGML_OPT_LOSS_TYPE_CROSS_ENTROPY);
    op.ctx_compute = c;
    op.inputs = inputs;
    op.outputs = outputs;
    op.opt_period = 1;
    op.get_opt_pars = opt_pars;
    op.get_opt_pars_ud = &st;
    op.optimizer = GGML_OPT_OPTIMIZER_TYPE_ADAMW;
    g.opt = ggml_opt_init(op);

    // datasets: the validation split, and one chunk of training datapoints reused per chunk
    g.ds_val = ggml_opt_dataset_init(GGML_TYPE_F32, GGML_TYPE_F32, d, (int64_t) K * V, val.n, 1);
    std::memcpy(ggml_opt_dataset_data(g.ds_val)->data, val.hidden.data(), (size_t) val.n * d * sizeof(float));
    std::memcpy(ggml_opt_dataset_labels(g.ds_val)->data, val.labels.data(), (size_t) val.n * K * V * sizeof(float));
    const int64_t chunk = (o.chunk / B) * B;
    g.ds = ggml_opt_dataset_init(GGML_TYPE_F32, GGML_TYPE_F32, d, (int64_t) K * V, chunk, 1);
    g.res = ggml_opt_result_init();
    g.res_val = ggml_opt_result_init();

    auto heads_now = [&] {
        auto h = medusa_heads::zeros(*target, K);
        ggml_backend_tensor_get(W, h->w.data(), 0, ggml_nbytes(W));
        ggml_backend_tensor_get(Bv, h->b.data(), 0, ggml_nbytes(Bv));
        return h;
    };
    auto validate = [&](double & loss, double & acc) {
        ggml_opt_result_reset(g.res_val);
        const int64_t nb = val.n / B;
        for (int64_t ib = 0; ib < nb; ++ib) {
            if (aborted()) fail("ERR_ABORTED", "training aborted");
            ggml_opt_alloc(g.opt, /*backward =*/ false);
            ggml_opt_dataset_get_batch(g.ds_val, ggml_opt_inputs(g.opt), ggml_opt_labels(g.opt), ib);
            ggml_opt_eval(g.opt, g.res_val);
        }
        double unc;
        ggml_opt_result_loss(g.res_val, &loss, &unc);
        ggml_opt_result_accuracy(g.res_val, &acc, &unc);
    };
    auto measure = [&](std::vector<double> & acc, double & tau) {
        medusa_runner runner(heads_now(), target);
        measure_heads(runner, val, K, d, V, acc, tau);
    };

    report("validate");
    validate(rep.val_loss_before, rep.val_accuracy_before);
    measure(rep.head_accuracy_before, rep.tau_before);
    pr.val_loss = rep.val_loss_before;
    pr.val_accuracy = rep.val_accuracy_before;
    report("train");

    corpus_windows src(o.train_docs, o.seq_len, K + 2, /*random =*/ true, o.seed);
    datapoints dp;
    int64_t n_chunks = 0;
    auto budget_left = [&] {
        if (o.max_tokens > 0 && rep.tokens >= o.max_tokens) return false;
        if (o.max_seconds > 0 && seconds() >= o.max_seconds) return false;
        return true;
    };
    auto frac = [&] {
        double f = 0.0;
        if (o.max_tokens > 0) f = std::max(f, (double) rep.tokens / o.max_tokens);
        if (o.max_seconds > 0) f = std::max(f, seconds() / o.max_seconds);
        return (float) f;
    };
    while (budget_left()) {
        const int64_t want = o.max_tokens > 0 ? std::min<int64_t>(chunk, (int64_t) (o.max_tokens - rep.tokens) + B - 1) : chunk;
        collect(feat, src, std::max<int64_t>(B, (want / B) * B), K, d, V, dp, rep.feature_tokens, o.abort);
        dp.n = (dp.n / B) * B;
        if (dp.n < (int64_t) B) {
            fail("ERR_INVALID_OPTION", format("the corpus is too short: its training split gives %lld positions, at least %u are needed "
                    "(give more text)", (long long) dp.n, B));
        }
        // the chunk into the dataset (its tail unused when the chunk is short), shuffled within the chunk
        std::memcpy(ggml_opt_dataset_data(g.ds)->data, dp.hidden.data(), (size_t) dp.n * d * sizeof(float));
        std::memcpy(ggml_opt_dataset_labels(g.ds)->data, dp.labels.data(), (size_t) dp.n * K * V * sizeof(float));
        ggml_opt_dataset_shuffle(g.opt, g.ds, dp.n);
        ggml_opt_result_reset(g.res);
        const int64_t nb = dp.n / B;
        for (int64_t ib = 0; ib < nb && budget_left(); ++ib) {
            if (aborted()) fail("ERR_ABORTED", "training aborted");
            st.frac = frac();
            ggml_opt_alloc(g.opt, /*backward =*/ true);
            ggml_opt_dataset_get_batch(g.ds, ggml_opt_inputs(g.opt), ggml_opt_labels(g.opt), ib);
            ggml_opt_eval(g.opt, g.res);
            rep.tokens += B;
            rep.steps++;
            if (aborted()) fail("ERR_ABORTED", "training aborted");
            if (ib % 8 == 7 || ib + 1 == nb) {
                double loss, unc;
                ggml_opt_result_loss(g.res, &loss, &unc);
                pr.train_loss = loss;
                report("train");
            }
        }
        n_chunks++;
        if (n_chunks % 8 == 0 && budget_left()) {
            report("validate");
            validate(pr.val_loss, pr.val_accuracy);
            report("train");
        }
    }

    report("validate");
    validate(rep.val_loss_after, rep.val_accuracy_after);
    measure(rep.head_accuracy_after, rep.tau_after);
    pr.val_loss = rep.val_loss_after;
    pr.val_accuracy = rep.val_accuracy_after;

    if (aborted()) fail("ERR_ABORTED", "training aborted");
    report("write");
    auto h = heads_now();
    h->trained_tokens = rep.tokens;
    h->save(o.out);
    rep.seconds = seconds();
    return rep;
}

} // namespace specdec
