// Hidden Transfer maps on ggml-opt (heads/transfer_heads.h for the maps and their file).
//
// A datapoint is a window of T corpus tokens. The frozen target reads it once; its hidden states at
// the transfer layer l (the input of layer l, every row) are the data, and its distributions the
// labels. At anchors P = 0, s, 2s, ... (P + k < T) the k maps turn h_P into pseudo rows of positions
// P + 1 .. P + k, and the frozen layers l .. n_layer - 1 (F32 copies) run over the window's real rows
// and all pseudo rows together: a real row attends the real rows before it, pseudo row j of anchor P
// the real rows up to P and the pseudo rows 1 .. j of P, as at inference (session::set_transfer).
// The target's output head decodes the pseudo rows; the loss is the soft cross-entropy to the
// target's own distribution at row P + j (KL up to a constant), backpropagated through the frozen
// upper layers to the maps alone. ggml has no backward for concat: the pseudo rows are added into
// their rows of the stream with ggml_acc.
#include "train/transfer_train.h"

#include "common/error.h"
#include "heads/medusa_heads.h"
#include "heads/transfer_heads.h"
#include "train/llama_trainable.h"

#include "ggml-backend.h"
#include "ggml-opt.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace specdec {

namespace {

struct windows {
    std::vector<float> data, labels;  // [n][T][d], [n][k][A][V] (map-major, as the pseudo rows)
    int64_t n = 0;
};

void collect(target_features & feat, corpus_windows & src, int64_t want, uint32_t T, uint32_t d, uint32_t V, uint32_t k,
             const std::vector<uint32_t> & anchors, windows & out, uint64_t & feature_tokens, const std::atomic<bool> * abort) {
    const size_t A = anchors.size();
    out.n = 0;
    out.data.resize((size_t) want * T * d);
    out.labels.resize((size_t) want * k * A * V);
    std::vector<int32_t> w;
    std::vector<float> hidden, logits;
    while (out.n < want) {
        if (abort && abort->load()) fail("ERR_ABORTED", "training aborted");
        if (!src.next(w)) break;
        if (w.size() != T) continue;
        feat.run(w, hidden, logits);
        feature_tokens += w.size();
        std::memcpy(out.data.data() + (size_t) out.n * T * d, hidden.data(), (size_t) T * d * sizeof(float));
        float * lab = out.labels.data() + (size_t) out.n * k * A * V;
        for (uint32_t j = 0; j < k; ++j) {
            for (size_t a = 0; a < A; ++a) {
                // pseudo row j of anchor P sits at position P + 1 + j: the target's distribution at that row
                softmax_row(logits.data() + (size_t) (anchors[a] + 1 + j) * V, V, lab + ((size_t) j * A + a) * V);
            }
        }
        out.n++;
    }
}

} // namespace

train_report train_transfer(std::shared_ptr<const model> target, const train_options & o) {
    const hparams & hp = target->hp;
    const uint32_t d = hp.n_embd, V = hp.n_vocab, L = hp.n_layer;
    const uint32_t l = o.ht_layer > 0 ? o.ht_layer : L / 2, k = o.ht_k, T = o.seq_len;
    if (l < 1 || l >= L) fail("ERR_INVALID_OPTION", format("the transfer layer must be in [1, %u], got %u", L - 1, l));
    if (k < 1 || k > 8) fail("ERR_INVALID_OPTION", format("hidden transfer: 1..8 pseudo rows, got %u", k));
    if (T < k + 8) fail("ERR_INVALID_OPTION", format("sequence length %u is too short", T));
    // anchors every `stride` positions, so that the pseudo rows are about a third of the rows
    const uint32_t stride = std::max<uint32_t>(1, (k + 1) / 2 + 1);
    std::vector<uint32_t> anchors;
    for (uint32_t p = 0; p + k < T; p += stride) anchors.push_back(p);
    const uint32_t A = (uint32_t) anchors.size(), N = T + A * k;

    train_run run(o);
    train_report & rep = run.rep;
    target_features feat(target, T, o.n_threads, { l });

    run.report("features");
    windows val;
    {
        corpus_windows vs(o.val_docs, T, T, /*random =*/ true, o.seed ^ 0x5eedull);
        collect(feat, vs, std::max<int64_t>(1, o.val_max / (A * k)), T, d, V, k, anchors, val, rep.feature_tokens, o.abort);
    }
    if (val.n < 1) {
        fail("ERR_INVALID_OPTION", format("the corpus is too short: its validation split gives no window of %u tokens (give more text, "
                "or a shorter sequenceLength)", T));
    }
    rep.val_datapoints = (uint64_t) val.n * A * k;

    // weights: the maps (trainable; identity at first: each pseudo row starts as its anchor's state),
    // the frozen upper layers and output head as F32 copies, the mask, positions, anchors
    ggml_context * cp = run.weights();
    ggml_tensor * inputs = ggml_new_tensor_2d(cp, GGML_TYPE_F32, d, T);  // [d, T]: the window's hidden states at layer l
    ggml_set_input(inputs);
    ggml_tensor * maps = ggml_new_tensor_3d(cp, GGML_TYPE_F32, d, d, k);  // [d in, d out, k]
    ggml_set_param(maps);
    std::vector<layer_weights> up(L - l);
    std::vector<std::pair<ggml_tensor *, const ggml_tensor *>> copies;
    auto frozen = [&](const ggml_tensor * src) -> ggml_tensor * {
        if (!src) return nullptr;
        ggml_tensor * t = ggml_new_tensor(cp, GGML_TYPE_F32, ggml_n_dims(src), src->ne);
        copies.push_back({ t, src });
        return t;
    };
    for (uint32_t i = 0; i < L - l; ++i) {
        const layer_weights & s = target->layers[l + i];
        layer_weights & w = up[i];
        w.attn_norm = frozen(s.attn_norm); w.wq = frozen(s.wq); w.wk = frozen(s.wk); w.wv = frozen(s.wv); w.wo = frozen(s.wo);
        w.bq = frozen(s.bq); w.bk = frozen(s.bk); w.bv = frozen(s.bv); w.bo = frozen(s.bo);
        w.q_norm = frozen(s.q_norm); w.k_norm = frozen(s.k_norm);
        w.ffn_norm = frozen(s.ffn_norm); w.ffn_gate = frozen(s.ffn_gate); w.ffn_up = frozen(s.ffn_up); w.ffn_down = frozen(s.ffn_down);
    }
    ggml_tensor * out_norm = frozen(target->output_norm);
    ggml_tensor * out_w = frozen(target->output);
    ggml_tensor * rope_freqs = frozen(target->rope_freqs);
    ggml_tensor * mask = ggml_new_tensor_2d(cp, GGML_TYPE_F32, N, N);
    ggml_tensor * pos = ggml_new_tensor_1d(cp, GGML_TYPE_I32, N);
    ggml_tensor * anchor_idx = ggml_new_tensor_1d(cp, GGML_TYPE_I32, A);
    ggml_tensor * zeros = ggml_new_tensor_2d(cp, GGML_TYPE_F32, d, N);
    run.alloc_weights();  // zeroed
    {
        std::vector<float> tmp;
        for (const auto & [t, src] : copies) {
            tensor_to_f32(src, tmp);
            ggml_backend_tensor_set(t, tmp.data(), 0, ggml_nbytes(t));
        }
        std::vector<float> eye((size_t) d * d * k, 0.0f);
        for (uint32_t j = 0; j < k; ++j) for (uint32_t i = 0; i < d; ++i) eye[(size_t) j * d * d + (size_t) i * d + i] = 1.0f;
        ggml_backend_tensor_set(maps, eye.data(), 0, ggml_nbytes(maps));
        // rows: the T real rows, then pseudo row j of anchor a at T + j * A + a
        std::vector<int32_t> ps(N);
        std::vector<float> m((size_t) N * N, -INFINITY);
        for (uint32_t r = 0; r < T; ++r) {
            ps[r] = (int32_t) r;
            for (uint32_t c = 0; c <= r; ++c) m[(size_t) r * N + c] = 0.0f;
        }
        for (uint32_t j = 0; j < k; ++j) {
            for (uint32_t a = 0; a < A; ++a) {
                const uint32_t r = T + j * A + a;
                ps[r] = (int32_t) (anchors[a] + 1 + j);
                for (uint32_t c = 0; c <= anchors[a]; ++c) m[(size_t) r * N + c] = 0.0f;
                for (uint32_t i = 0; i <= j; ++i) m[(size_t) r * N + T + i * A + a] = 0.0f;
            }
        }
        ggml_backend_tensor_set(pos, ps.data(), 0, N * sizeof(int32_t));
        ggml_backend_tensor_set(mask, m.data(), 0, m.size() * sizeof(float));
        std::vector<int32_t> ai(anchors.begin(), anchors.end());
        ggml_backend_tensor_set(anchor_idx, ai.data(), 0, A * sizeof(int32_t));
    }

    // the training graph
    ggml_context * c = run.compute(4096);
    ggml_tensor * xa  = ggml_get_rows(c, inputs, anchor_idx);                                                   // [d, A]
    ggml_tensor * rep_a = ggml_repeat(c, ggml_reshape_3d(c, xa, d, A, 1), ggml_new_tensor_3d(c, GGML_TYPE_F32, d, A, k));  // [d, A, k]
    ggml_tensor * y   = ggml_reshape_2d(c, ggml_mul_mat(c, maps, rep_a), d, (int64_t) A * k);                  // [d, A k]: map-major
    ggml_tensor * x   = ggml_acc(c, zeros, inputs, zeros->nb[1], zeros->nb[2], zeros->nb[3], 0);              // [d, N]: the real rows
    x = ggml_acc(c, x, y, zeros->nb[1], zeros->nb[2], zeros->nb[3], (size_t) T * zeros->nb[1]);                // and the pseudo rows
    for (const layer_weights & w : up) x = build_llama_train_layer(c, hp, w, rope_freqs, x, pos, mask, N, 1);  // [d, N]
    ggml_tensor * xp = ggml_cont(c, ggml_view_2d(c, x, d, (int64_t) A * k, x->nb[1], (size_t) T * x->nb[1]));   // [d, A k]
    ggml_tensor * outputs = ggml_mul_mat(c, out_w, ggml_mul(c, ggml_rms_norm(c, xp, hp.f_norm_rms_eps), out_norm));  // [V, A k]
    ggml_set_output(outputs);
    run.init_opt(inputs, outputs);

    const int64_t nd = (int64_t) T * d, nl = (int64_t) k * A * V;
    ggml_opt_dataset_t ds_val = run.dataset(nd, nl, val.n);
    std::memcpy(ggml_opt_dataset_data(ds_val)->data, val.data.data(), (size_t) val.n * nd * sizeof(float));
    std::memcpy(ggml_opt_dataset_labels(ds_val)->data, val.labels.data(), (size_t) val.n * nl * sizeof(float));
    const int64_t chunk = std::max<int64_t>(1, (int64_t) o.chunk / T);  // windows per chunk
    ggml_opt_dataset_t ds = run.dataset(nd, nl, chunk);

    // validation: the loss, and the top-1 agreement of each pseudo position with the target (rows map-major)
    std::vector<double> pos_acc(k);
    double chain = 0.0;
    auto validate = [&](double & loss, double & acc) {
        std::vector<int32_t> pred;
        run.evaluate(ds_val, val.n, loss, acc, &pred);
        std::fill(pos_acc.begin(), pos_acc.end(), 0.0);
        chain = 0.0;
        for (int64_t w = 0; w < val.n; ++w) {
            for (uint32_t a = 0; a < A; ++a) {
                bool all = true;
                for (uint32_t j = 0; j < k; ++j) {
                    const float * lb = val.labels.data() + (size_t) w * nl + ((size_t) j * A + a) * V;
                    const bool ok = pred[(size_t) w * A * k + (size_t) j * A + a] == std::max_element(lb, lb + V) - lb;
                    pos_acc[j] += ok;
                    all = all && ok;
                    if (all) chain += 1.0;
                }
            }
        }
        for (auto & x_ : pos_acc) x_ /= (double) val.n * A;
        chain /= (double) val.n * A;
    };

    run.report("validate");
    validate(rep.val_loss_before, rep.val_accuracy_before);
    rep.head_accuracy_before = pos_acc;
    rep.tau_before = 1.0 + chain;
    run.pr.val_loss = rep.val_loss_before;
    run.pr.val_accuracy = rep.val_accuracy_before;
    run.report("train");

    corpus_windows src(o.train_docs, T, T, /*random =*/ true, o.seed);
    windows dp;
    int64_t n_chunks = 0;
    while (run.budget_left()) {
        collect(feat, src, chunk, T, d, V, k, anchors, dp, rep.feature_tokens, o.abort);
        if (dp.n < 1) fail("ERR_INVALID_OPTION", format("the corpus is too short: its training split has no window of %u tokens", T));
        run.train_chunk(ds, dp.data.data(), dp.labels.data(), dp.n, 1, (uint64_t) A * k, 1);
        n_chunks++;
        if (n_chunks % 4 == 0 && run.budget_left()) {
            run.report("validate");
            validate(run.pr.val_loss, run.pr.val_accuracy);
            run.report("train");
        }
    }

    run.report("validate");
    validate(rep.val_loss_after, rep.val_accuracy_after);
    rep.head_accuracy_after = pos_acc;
    rep.tau_after = 1.0 + chain;
    run.pr.val_loss = rep.val_loss_after;
    run.pr.val_accuracy = rep.val_accuracy_after;
    run.check_abort();
    run.report("write");
    transfer_heads h;
    h.n_embd = d;
    h.n_vocab = V;
    h.target_layers = L;
    h.target_arch = hp.arch_name;
    h.layer = l;
    h.k = k;
    h.trained_tokens = rep.tokens;
    h.maps.resize((size_t) d * d * k);
    ggml_backend_tensor_get(maps, h.maps.data(), 0, ggml_nbytes(maps));
    h.save(o.out);
    rep.seconds = run.seconds();
    return rep;
}

} // namespace specdec
