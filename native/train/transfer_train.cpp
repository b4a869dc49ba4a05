// Hidden Transfer maps on ggml-opt (heads/transfer_heads.h for the maps and their file).
//
// A datapoint is a window of T corpus tokens. The frozen target reads it once; its hidden states at
// the inputs of layers l .. n_layer - 1 (every row) are the data, and its distributions the labels.
// At every anchor P with P + k < T the k maps turn h_P (layer l's input) into pseudo rows of
// positions P + 1 .. P + k, which run through the frozen layers l .. n_layer - 1 (F32 copies): pseudo
// row j of anchor P attends the real rows up to P and the pseudo rows 1 .. j of P, as at inference
// (session::set_transfer). The real rows do not depend on the maps: their keys and values at each
// upper layer come from the target's own hidden states at that layer's input (no backward pass
// through them). The target's output head decodes the pseudo rows; the loss is the soft
// cross-entropy to the target's own distribution at row P + j (KL up to a constant), backpropagated
// through the frozen upper layers to the maps alone. ggml has no backward for concat: the pseudo
// rows' keys and values join the real ones with ggml_acc into zeros.
#include "train/transfer_train.h"

#include "common/error.h"
#include "heads/medusa_heads.h"
#include "heads/transfer_heads.h"

#include "ggml-backend.h"
#include "ggml-opt.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace specdec {

namespace {

struct windows {
    std::vector<float> data, labels;  // [n][T][n_up][d] (the inputs of layers l ..), [n][k][A][V] (map-major, as the pseudo rows)
    int64_t n = 0;
};

void collect(target_features & feat, corpus_windows & src, int64_t want, uint32_t T, uint32_t d, uint32_t n_up, uint32_t V, uint32_t k,
             const std::vector<uint32_t> & anchors, windows & out, uint64_t & feature_tokens, const std::atomic<bool> * abort) {
    const size_t A = anchors.size();
    out.n = 0;
    out.data.resize((size_t) want * T * n_up * d);
    out.labels.resize((size_t) want * k * A * V);
    std::vector<int32_t> w;
    std::vector<float> hidden, logits;
    while (out.n < want) {
        if (abort && abort->load()) fail("ERR_ABORTED", "training aborted");
        if (!src.next(w)) break;
        if (w.size() != T) continue;
        feat.run(w, hidden, logits);
        feature_tokens += w.size();
        std::memcpy(out.data.data() + (size_t) out.n * T * n_up * d, hidden.data(), (size_t) T * n_up * d * sizeof(float));
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

// One frozen layer over the pseudo rows x_p [d, P]; the real rows' keys and values come from their
// input at this layer, h_r [d, T] (no gradient through them). Returns [d, P].
ggml_tensor * pseudo_layer(ggml_context * c, const hparams & hp, const layer_weights & L, ggml_tensor * rope_freqs, ggml_tensor * x_p,
                           ggml_tensor * h_r, ggml_tensor * pos_r, ggml_tensor * pos_p, ggml_tensor * mask, ggml_tensor * zk, ggml_tensor * zv) {
    const int64_t hd = hp.n_embd_head_k, H = hp.n_head, Hkv = hp.n_head_kv;
    const int64_t T = h_r->ne[1], P = x_p->ne[1], N = T + P;
    const float eps = hp.f_norm_rms_eps;
    const float scale = hp.f_attn_scale != 0.0f ? hp.f_attn_scale : 1.0f / sqrtf((float) hd);
    auto norm = [&](ggml_tensor * v, ggml_tensor * g) { return ggml_mul(c, ggml_rms_norm(c, v, eps), g); };
    // [hd, n, heads], contiguous (ggml's CPU backward kernels read rows by nb[1])
    auto heads_of = [&](ggml_tensor * v, ggml_tensor * g_norm, int64_t nh, ggml_tensor * pos) {
        ggml_tensor * t = ggml_reshape_3d(c, v, hd, nh, v->ne[1]);  // [hd, nh, n]
        if (g_norm) t = norm(t, g_norm);
        t = ggml_rope_ext(c, t, pos, rope_freqs, (int) hp.n_rot, hp.rope_type, (int) hp.n_ctx_orig, hp.rope_freq_base,
                          hp.rope_freq_scale, hp.yarn_ext_factor, hp.yarn_attn_factor, hp.yarn_beta_fast, hp.yarn_beta_slow);
        return ggml_cont(c, ggml_permute(c, t, 0, 2, 1, 3));      // [hd, n, nh]
    };
    auto proj = [&](ggml_tensor * w, ggml_tensor * b, ggml_tensor * x) {
        ggml_tensor * y = ggml_mul_mat(c, w, x);
        return b ? ggml_add(c, y, b) : y;
    };
    ggml_tensor * hn_r = norm(h_r, L.attn_norm);                                                      // [d, T]
    ggml_tensor * hn_p = norm(x_p, L.attn_norm);                                                      // [d, P]
    ggml_tensor * q  = heads_of(proj(L.wq, L.bq, hn_p), L.q_norm, H, pos_p);                          // [hd, P, H]
    ggml_tensor * kr = heads_of(proj(L.wk, L.bk, hn_r), L.k_norm, Hkv, pos_r);                        // [hd, T, Hkv]
    ggml_tensor * kp = heads_of(proj(L.wk, L.bk, hn_p), L.k_norm, Hkv, pos_p);                        // [hd, P, Hkv]
    ggml_tensor * k  = ggml_acc(c, ggml_acc(c, zk, kr, zk->nb[1], zk->nb[2], zk->nb[3], 0), kp, zk->nb[1], zk->nb[2], zk->nb[3], T * zk->nb[1]);  // [hd, N, Hkv]
    // values transposed, h^T Wv (a transposing permute would reach a binary op in the backward pass)
    ggml_tensor * vr = ggml_mul_mat(c, hn_r, L.wv);                                                   // [T, hd Hkv]
    ggml_tensor * vp = ggml_mul_mat(c, hn_p, L.wv);                                                   // [P, hd Hkv]
    if (L.bv) {
        vr = ggml_add(c, vr, ggml_reshape_2d(c, L.bv, 1, L.bv->ne[0]));
        vp = ggml_add(c, vp, ggml_reshape_2d(c, L.bv, 1, L.bv->ne[0]));
    }
    ggml_tensor * vt = ggml_acc(c, ggml_acc(c, zv, vr, zv->nb[1], zv->nb[2], zv->nb[3], 0), vp, zv->nb[1], zv->nb[2], zv->nb[3], T * sizeof(float));
    vt = ggml_reshape_3d(c, vt, N, hd, Hkv);                                                          // [N, hd, Hkv]
    ggml_tensor * kq  = ggml_soft_max_ext(c, ggml_mul_mat(c, k, q), mask, scale, 0.0f);              // [N keys, P rows, H]
    ggml_tensor * att = ggml_mul_mat(c, vt, kq);                                                      // [hd, P, H]
    att = ggml_reshape_2d(c, ggml_cont(c, ggml_permute(c, att, 0, 2, 1, 3)), hd * H, P);            // [hd H, P]
    ggml_tensor * x = ggml_add(c, proj(L.wo, L.bo, att), x_p);                                        // [d, P]
    ggml_tensor * f = norm(x, L.ffn_norm);
    f = ggml_mul_mat(c, L.ffn_down, ggml_swiglu_split(c, ggml_mul_mat(c, L.ffn_gate, f), ggml_mul_mat(c, L.ffn_up, f)));
    return ggml_add(c, f, x);                                                                         // [d, P]
}

} // namespace

train_report train_transfer(std::shared_ptr<const model> target, const train_options & o) {
    const hparams & hp = target->hp;
    const uint32_t d = hp.n_embd, V = hp.n_vocab, L = hp.n_layer;
    const uint32_t l = o.ht_layer > 0 ? o.ht_layer : L / 2, k = o.ht_k, T = o.seq_len;
    if (l < 1 || l >= L) fail("ERR_INVALID_OPTION", format("the transfer layer must be in [1, %u], got %u", L - 1, l));
    if (k < 1 || k > 8) fail("ERR_INVALID_OPTION", format("hidden transfer: 1..8 pseudo rows, got %u", k));
    if (T < k + 8) fail("ERR_INVALID_OPTION", format("sequence length %u is too short", T));
    // anchors at every position that has k positions after it (the pseudo rows are what costs)
    const uint32_t stride = 1;
    std::vector<uint32_t> anchors;
    for (uint32_t p = 0; p + k < T; p += stride) anchors.push_back(p);
    const uint32_t A = (uint32_t) anchors.size(), P = A * k, N = T + P, n_up = L - l;

    train_run run(o);
    train_report & rep = run.rep;
    std::vector<uint32_t> taps;
    for (uint32_t i = l; i < L; ++i) taps.push_back(i);
    target_features feat(target, T, o.n_threads, taps);

    run.report("features");
    windows val;
    {
        corpus_windows vs(o.val_docs, T, T, /*random =*/ true, o.seed ^ 0x5eedull);
        collect(feat, vs, std::max<int64_t>(1, o.val_max / (A * k)), T, d, n_up, V, k, anchors, val, rep.feature_tokens, o.abort);
    }
    if (val.n < 1) {
        fail("ERR_INVALID_OPTION", format("the corpus is too short: its validation split gives no window of %u tokens (give more text, "
                "or a shorter sequenceLength)", T));
    }
    rep.val_datapoints = (uint64_t) val.n * A * k;

    // weights: the maps (trainable; identity at first: each pseudo row starts as its anchor's state),
    // the frozen upper layers and output head as F32 copies, the mask, positions, anchors
    ggml_context * cp = run.weights();
    ggml_tensor * inputs = ggml_new_tensor_2d(cp, GGML_TYPE_F32, d, (int64_t) T * n_up);  // [d, n_up T]: row t's inputs of layers l .. at t n_up + i
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
    ggml_tensor * mask = ggml_new_tensor_2d(cp, GGML_TYPE_F32, N, P);   // [keys: T real, then P pseudo; rows: the pseudo rows]
    ggml_tensor * pos_r = ggml_new_tensor_1d(cp, GGML_TYPE_I32, T);
    ggml_tensor * pos_p = ggml_new_tensor_1d(cp, GGML_TYPE_I32, P);
    ggml_tensor * anchor_idx = ggml_new_tensor_1d(cp, GGML_TYPE_I32, A);
    ggml_tensor * zk = ggml_new_tensor_3d(cp, GGML_TYPE_F32, hp.n_embd_head_k, N, hp.n_head_kv);  // zeros
    ggml_tensor * zv = ggml_new_tensor_2d(cp, GGML_TYPE_F32, N, (int64_t) hp.n_embd_head_v * hp.n_head_kv);
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
        // keys: the T real rows, then pseudo row j of anchor a at T + j * A + a
        std::vector<int32_t> pr(T), pp(P);
        for (uint32_t r = 0; r < T; ++r) pr[r] = (int32_t) r;
        std::vector<float> m((size_t) N * P, -INFINITY);
        for (uint32_t j = 0; j < k; ++j) {
            for (uint32_t a = 0; a < A; ++a) {
                const uint32_t r = j * A + a;
                pp[r] = (int32_t) (anchors[a] + 1 + j);
                for (uint32_t c = 0; c <= anchors[a]; ++c) m[(size_t) r * N + c] = 0.0f;
                for (uint32_t i = 0; i <= j; ++i) m[(size_t) r * N + T + i * A + a] = 0.0f;
            }
        }
        ggml_backend_tensor_set(pos_r, pr.data(), 0, T * sizeof(int32_t));
        ggml_backend_tensor_set(pos_p, pp.data(), 0, P * sizeof(int32_t));
        ggml_backend_tensor_set(mask, m.data(), 0, m.size() * sizeof(float));
        std::vector<int32_t> ai(anchors.begin(), anchors.end());
        ggml_backend_tensor_set(anchor_idx, ai.data(), 0, A * sizeof(int32_t));
    }

    // the training graph
    ggml_context * c = run.compute(4096);
    // the real rows' inputs of upper layer i: [d, T] (strided in the datapoint)
    auto real_at = [&](uint32_t i) {
        return ggml_cont(c, ggml_view_2d(c, inputs, d, T, (size_t) n_up * inputs->nb[1], (size_t) i * inputs->nb[1]));
    };
    ggml_tensor * xa  = ggml_get_rows(c, real_at(0), anchor_idx);                                              // [d, A]
    ggml_tensor * rep_a = ggml_repeat(c, ggml_reshape_3d(c, xa, d, A, 1), ggml_new_tensor_3d(c, GGML_TYPE_F32, d, A, k));  // [d, A, k]
    ggml_tensor * x = ggml_reshape_2d(c, ggml_mul_mat(c, maps, rep_a), d, (int64_t) P);                       // [d, P]: map-major
    for (uint32_t i = 0; i < n_up; ++i) x = pseudo_layer(c, hp, up[i], rope_freqs, x, real_at(i), pos_r, pos_p, mask, zk, zv);  // [d, P]
    ggml_tensor * outputs = ggml_mul_mat(c, out_w, ggml_mul(c, ggml_rms_norm(c, x, hp.f_norm_rms_eps), out_norm));  // [V, P]
    ggml_set_output(outputs);
    run.init_opt(inputs, outputs);

    const int64_t nd = (int64_t) T * n_up * d, nl = (int64_t) k * A * V;
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
        collect(feat, src, chunk, T, d, n_up, V, k, anchors, dp, rep.feature_tokens, o.abort);
        if (dp.n < 1) fail("ERR_INVALID_OPTION", format("the corpus is too short: its training split has no window of %u tokens", T));
        run.train_chunk(ds, dp.data.data(), dp.labels.data(), dp.n, 1, (uint64_t) A * k, 1);
        run.validate_every(++n_chunks, 4, validate);
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
