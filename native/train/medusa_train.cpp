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

#include "ggml-backend.h"
#include "ggml-opt.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace specdec {

namespace {

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
    const hparams & hp = target->hp;
    const uint32_t K = o.n_heads, d = hp.n_embd, V = hp.n_vocab, B = o.batch;
    if (K < 1 || K > 16) fail("ERR_INVALID_OPTION", format("medusa heads must be 1..16, got %u", K));
    if (B < 1 || o.chunk < B) fail("ERR_INVALID_OPTION", "the batch must be at least 1 and at most the chunk size");
    if (o.seq_len < K + 8) fail("ERR_INVALID_OPTION", format("sequence length %u is too short for %u heads", o.seq_len, K));

    train_run run(o);
    train_report & rep = run.rep;
    target_features feat(target, o.seq_len, o.n_threads, { hp.n_layer });

    // the validation split, once: windows of at most 128 tokens drawn from many held-out documents
    // (seeded), so that the validation positions are not one or two files
    run.report("features");
    datapoints val;
    {
        corpus_windows vs(o.val_docs, std::min<uint32_t>(o.seq_len, 128), K + 2, /*random =*/ true, o.seed ^ 0x5eedull);
        collect(feat, vs, o.val_max, K, d, V, val, rep.feature_tokens, o.abort);
        val.n = (val.n / B) * B;
    }
    if (val.n < (int64_t) B) {
        fail("ERR_INVALID_OPTION", format("the corpus is too short: its validation split gives %lld positions, at least %u are needed "
                "(give more text)", (long long) val.n, B));
    }
    rep.val_datapoints = (uint64_t) val.n;

    // trainable heads and the frozen output norm and head (an f32 copy: out_prod runs on any backend);
    // ggml-opt's static graphs need the inputs allocated with the weights
    ggml_context * cp = run.weights();
    ggml_tensor * inputs = ggml_new_tensor_2d(cp, GGML_TYPE_F32, d, B);               // [d, B]: the target's last hidden states
    ggml_set_input(inputs);
    ggml_tensor * W     = ggml_new_tensor_2d(cp, GGML_TYPE_F32, d, (int64_t) d * K);  // [d_in, d_out * K]: the heads side by side
    ggml_tensor * Bv    = ggml_new_tensor_3d(cp, GGML_TYPE_F32, d, K, 1);             // [d, K, 1]
    ggml_tensor * Wout  = ggml_new_tensor_2d(cp, GGML_TYPE_F32, d, V);                // frozen [d, V]
    ggml_tensor * normw = ggml_new_tensor_1d(cp, GGML_TYPE_F32, d);                   // frozen [d]
    ggml_set_param(W);
    ggml_set_param(Bv);
    run.alloc_weights();  // zero: the paper's initialisation, every head starts as the target's head
    {
        std::vector<float> tmp;
        tensor_to_f32(target->output, tmp);
        ggml_backend_tensor_set(Wout, tmp.data(), 0, ggml_nbytes(Wout));
        tensor_to_f32(target->output_norm, tmp);
        ggml_backend_tensor_set(normw, tmp.data(), 0, ggml_nbytes(normw));
    }

    // the forward graph, laid out [d, K, B] throughout (no permute: ggml's CPU silu_back reads rows by
    // nb[1] alone, so a permuted gradient would mix the heads' rows)
    ggml_context * c = run.compute(512);
    ggml_tensor * x  = ggml_mul(c, ggml_rms_norm(c, inputs, hp.f_norm_rms_eps), normw);      // [d, B]
    ggml_tensor * xK = ggml_repeat(c, ggml_reshape_3d(c, x, d, 1, B), ggml_new_tensor_3d(c, GGML_TYPE_F32, d, K, B));  // [d, K, B]
    ggml_tensor * y  = ggml_reshape_3d(c, ggml_mul_mat(c, W, x), d, K, B);                    // [d * K, B] -> [d, K, B]
    y = ggml_add(c, y, Bv);                                                                   // + b_k
    ggml_tensor * z  = ggml_add(c, xK, ggml_silu(c, y));                                      // [d, K, B]
    ggml_tensor * outputs = ggml_mul_mat(c, Wout, ggml_reshape_2d(c, z, d, (int64_t) K * B)); // [V, K * B], head-minor
    ggml_set_output(outputs);
    run.init_opt(inputs, outputs);

    // datasets: the validation split, and one chunk of training datapoints reused per chunk
    ggml_opt_dataset_t ds_val = run.dataset(d, (int64_t) K * V, val.n);
    std::memcpy(ggml_opt_dataset_data(ds_val)->data, val.hidden.data(), (size_t) val.n * d * sizeof(float));
    std::memcpy(ggml_opt_dataset_labels(ds_val)->data, val.labels.data(), (size_t) val.n * K * V * sizeof(float));
    const int64_t chunk = (o.chunk / B) * B;
    ggml_opt_dataset_t ds = run.dataset(d, (int64_t) K * V, chunk);

    auto heads_now = [&] {
        auto h = medusa_heads::zeros(*target, K);
        ggml_backend_tensor_get(W, h->w.data(), 0, ggml_nbytes(W));
        ggml_backend_tensor_get(Bv, h->b.data(), 0, ggml_nbytes(Bv));
        return h;
    };
    auto validate = [&](double & loss, double & acc) { run.evaluate(ds_val, val.n / B, loss, acc); };
    auto measure = [&](std::vector<double> & acc, double & tau) {
        medusa_runner runner(heads_now(), target);
        measure_heads(runner, val, K, d, V, acc, tau);
    };

    run.report("validate");
    validate(rep.val_loss_before, rep.val_accuracy_before);
    measure(rep.head_accuracy_before, rep.tau_before);
    run.pr.val_loss = rep.val_loss_before;
    run.pr.val_accuracy = rep.val_accuracy_before;
    run.report("train");

    corpus_windows src(o.train_docs, o.seq_len, K + 2, /*random =*/ true, o.seed);
    datapoints dp;
    int64_t n_chunks = 0;
    while (run.budget_left()) {
        const int64_t want = o.max_tokens > 0 ? std::min<int64_t>(chunk, (int64_t) (o.max_tokens - rep.tokens) + B - 1) : chunk;
        collect(feat, src, std::max<int64_t>(B, (want / B) * B), K, d, V, dp, rep.feature_tokens, o.abort);
        dp.n = (dp.n / B) * B;
        if (dp.n < (int64_t) B) {
            fail("ERR_INVALID_OPTION", format("the corpus is too short: its training split gives %lld positions, at least %u are needed "
                    "(give more text)", (long long) dp.n, B));
        }
        run.train_chunk(ds, dp.hidden.data(), dp.labels.data(), dp.n, B, B, 8);
        run.validate_every(++n_chunks, 8, validate);
    }

    run.report("validate");
    validate(rep.val_loss_after, rep.val_accuracy_after);
    measure(rep.head_accuracy_after, rep.tau_after);
    run.pr.val_loss = rep.val_loss_after;
    run.pr.val_accuracy = rep.val_accuracy_after;
    run.check_abort();
    run.report("write");
    auto h = heads_now();
    h->trained_tokens = rep.tokens;
    h->save(o.out);
    rep.seconds = run.seconds();
    return rep;
}

} // namespace specdec
