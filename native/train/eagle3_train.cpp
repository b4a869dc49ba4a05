// EAGLE-3 heads on ggml-opt, with EAGLE-3's training-time test (heads/eagle3_heads.h for the
// network, llama.cpp's eagle3 layout for the file).
//
// A datapoint is a window of T + 1 corpus tokens. The frozen target reads it once; position P of
// the window gives the pair (token P + 1, features P = the target's inputs of three layers at
// row P) and the label softmax(target logits at row P + 1), the target's distribution of token
// P + 2. Step 0 of the training-time test runs the draft layer on the real features, causally.
// Step j >= 1 replaces the features of position P by the draft's own pre-norm output of step
// j - 1 at position P - 1 (what drafting feeds back at tree depth j + 1), and position P attends
// what it attends when drafting: step 0's keys up to P - j, and the keys step i computed at
// P - j + i (i = 1 .. j, itself last). Every step is scored against the same labels (soft
// cross-entropy, distillation); the J steps' logits are rows of one output, so ggml-opt's
// cross-entropy covers them all.
//
// ggml has no backward pass for concat or flash attention: [norm(emb); norm(g)] . W is two
// matmuls with W split by its input halves; attention is mul_mat + soft_max_ext + mul_mat, the
// later steps' extra keys' scores and values placed into the cells step 0 masks (0/1 masks and
// ggml_acc), so that one max-subtracting soft_max_ext normalizes them all. Tensors that are viewed or permuted in differentiated ops are made contiguous first
// (some of ggml's CPU backward kernels read rows by nb[1] only).
#include "train/eagle3_train.h"

#include "common/error.h"
#include "heads/eagle3_heads.h"
#include "heads/medusa_heads.h"

#include "ggml-backend.h"
#include "ggml-opt.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

namespace specdec {

namespace {

// Windows as datapoints: data [T][3 * d_t + d] (features, then the embedding of token P + 1),
// labels [J][T][V] (the same target distribution for every step).
struct windows_data {
    std::vector<float> data, labels;
    int64_t n = 0;
};

void collect_windows(target_features & feat, corpus_windows & src, int64_t want, uint32_t T, uint32_t J, uint32_t dt, uint32_t d,
                     uint32_t V, const std::vector<float> & tok_embd, windows_data & out, uint64_t & feature_tokens,
                     const std::atomic<bool> * abort) {
    const size_t row = (size_t) 3 * dt + d;
    out.n = 0;
    out.data.resize((size_t) want * T * row);
    out.labels.resize((size_t) want * J * T * V);
    std::vector<int32_t> w;
    std::vector<float> hidden, logits, lab(V);
    while (out.n < want) {
        if (abort && abort->load()) fail("ERR_ABORTED", "training aborted");
        if (!src.next(w)) break;
        if (w.size() != T + 1) continue;
        feat.run(w, hidden, logits);
        feature_tokens += w.size();
        float * dp = out.data.data() + (size_t) out.n * T * row;
        float * lp = out.labels.data() + (size_t) out.n * J * T * V;
        for (uint32_t p = 0; p < T; ++p) {
            std::memcpy(dp + p * row, hidden.data() + (size_t) p * 3 * dt, (size_t) 3 * dt * sizeof(float));
            std::memcpy(dp + p * row + 3 * dt, tok_embd.data() + (size_t) w[p + 1] * d, (size_t) d * sizeof(float));
            softmax_row(logits.data() + (size_t) (p + 1) * V, V, lab.data());
            for (uint32_t j = 0; j < J; ++j) std::memcpy(lp + ((size_t) j * T + p) * V, lab.data(), (size_t) V * sizeof(float));
        }
        out.n++;
    }
}

} // namespace

train_report train_eagle3(std::shared_ptr<const model> target, const train_options & o) {
    const hparams & hp = target->hp;
    const uint32_t d = hp.n_embd, dt = hp.n_embd, V = hp.n_vocab, ff = hp.n_ff;
    const uint32_t H = hp.n_head, hd = d / H, nq = hd * H;
    const uint32_t J = o.ttt_steps, B = o.batch, T = o.seq_len - 1;
    if (d % H != 0 || hd % 2 != 0) fail("ERR_INVALID_OPTION", "the target's head layout does not fit an EAGLE-3 layer");
    if (J < 1 || J > 8) fail("ERR_INVALID_OPTION", format("the training-time test takes 1..8 steps, got %u", J));
    if (T < J + 4) fail("ERR_INVALID_OPTION", format("sequence length %u is too short", o.seq_len));
    if (B < 1 || o.chunk < B) fail("ERR_INVALID_OPTION", "the batch must be at least 1 and at most the chunk size");

    // the target layers whose inputs are the features: low, middle, high (as llama.cpp's converter picks them)
    const int32_t L = (int32_t) hp.n_layer;
    std::vector<int32_t> layers = { std::min(2, L - 1), L / 2, std::max(0, L - 3) };
    std::vector<uint32_t> taps(layers.begin(), layers.end());

    train_run run(o);
    train_report & rep = run.rep;
    target_features feat(target, T + 1, o.n_threads, taps);
    std::vector<float> tok_embd, out_w;
    tensor_to_f32(target->tok_embd, tok_embd);

    run.report("features");
    windows_data val;
    {
        corpus_windows vs(o.val_docs, T + 1, T + 1, /*random =*/ true, o.seed ^ 0x5eedull);
        collect_windows(feat, vs, std::max<int64_t>(B, (o.val_max / T / B) * B), T, J, dt, d, V, tok_embd, val, rep.feature_tokens, o.abort);
        val.n = (val.n / B) * B;
    }
    if (val.n < (int64_t) B) {
        fail("ERR_INVALID_OPTION", format("the corpus is too short: its validation split gives %lld windows of %u tokens, at least %u "
                "are needed (give more text, or a shorter sequenceLength)", (long long) val.n, T + 1, B));
    }
    rep.val_datapoints = (uint64_t) val.n * T;

    // weights: trainable (F32) and frozen (the target's output head and norm, the masks, zeros)
    const int64_t row = 3 * (int64_t) dt + d;
    ggml_context * cp = run.weights();
    ggml_tensor * inputs = ggml_new_tensor_2d(cp, GGML_TYPE_F32, row, (int64_t) T * B);  // [3 d_t + d, T * B]
    ggml_set_input(inputs);
    struct param { const char * name; ggml_tensor * t; bool norm; };
    auto P2 = [&](int64_t a, int64_t b) { return ggml_new_tensor_2d(cp, GGML_TYPE_F32, a, b); };
    auto P1 = [&](int64_t a) { return ggml_new_tensor_1d(cp, GGML_TYPE_F32, a); };
    ggml_tensor * fc = P2(3 * dt, d), * attn_norm = P1(d), * hidden_norm = P1(d);
    ggml_tensor * wq_e = P2(d, nq), * wq_g = P2(d, nq), * wk_e = P2(d, nq), * wk_g = P2(d, nq), * wv_e = P2(d, nq), * wv_g = P2(d, nq);
    ggml_tensor * wo = P2(nq, d), * ffn_norm = P1(d), * gate = P2(d, ff), * up = P2(d, ff), * down = P2(ff, d), * out_norm = P1(d);
    const std::vector<param> params = {
        { "fc", fc, false }, { "attn_norm", attn_norm, true }, { "hidden_norm", hidden_norm, true },
        { "wq_e", wq_e, false }, { "wq_g", wq_g, false }, { "wk_e", wk_e, false }, { "wk_g", wk_g, false },
        { "wv_e", wv_e, false }, { "wv_g", wv_g, false }, { "wo", wo, false }, { "ffn_norm", ffn_norm, true },
        { "gate", gate, false }, { "up", up, false }, { "down", down, false }, { "out_norm", out_norm, true },
    };
    for (const auto & p : params) ggml_set_param(p.t);
    ggml_tensor * Wout = P2(d, V);
    ggml_tensor * mask0 = ggml_new_tensor_2d(cp, GGML_TYPE_F32, T, T);  // causal: 0, or -inf past the row
    std::vector<ggml_tensor *> keep0(J, nullptr), diag(J, nullptr);     // 0/1: step 0's keys up to P - j; the cell (P - s, P)
    for (uint32_t j = 1; j < J; ++j) keep0[j] = ggml_new_tensor_2d(cp, GGML_TYPE_F32, T, T);
    for (uint32_t sh = 0; sh + 1 < J; ++sh) diag[sh] = ggml_new_tensor_2d(cp, GGML_TYPE_F32, T, T);
    ggml_tensor * zeros_g = ggml_new_tensor_3d(cp, GGML_TYPE_F32, d, T, B);  // (zeroed with the buffer)
    ggml_tensor * zeros_o = ggml_new_tensor_4d(cp, GGML_TYPE_F32, hd, T, H, B);
    ggml_tensor * zeros_z = ggml_new_tensor_4d(cp, GGML_TYPE_F32, 1, T, H, B);
    ggml_tensor * zeros_y = ggml_new_tensor_4d(cp, GGML_TYPE_F32, d, T, J, B);
    ggml_tensor * pos = ggml_new_tensor_1d(cp, GGML_TYPE_I32, T);
    run.alloc_weights();  // zeroed: the zeros
    {
        std::mt19937_64 rng(o.seed);
        std::normal_distribution<float> nd(0.0f, 0.02f);
        for (const auto & p : params) {
            std::vector<float> v(ggml_nelements(p.t));
            for (auto & x : v) x = p.norm ? 1.0f : nd(rng);
            ggml_backend_tensor_set(p.t, v.data(), 0, ggml_nbytes(p.t));
        }
        tensor_to_f32(target->output, out_w);
        ggml_backend_tensor_set(Wout, out_w.data(), 0, ggml_nbytes(Wout));
        auto set_mask = [&](ggml_tensor * t, uint32_t shift) {
            std::vector<float> m((size_t) T * T, -INFINITY);
            for (uint32_t p = 0; p < T; ++p) {
                for (uint32_t k = 0; k + shift <= p; ++k) m[(size_t) p * T + k] = 0.0f;  // row p: keys k <= p - shift
            }
            ggml_backend_tensor_set(t, m.data(), 0, m.size() * sizeof(float));
        };
        set_mask(mask0, 0);
        auto set01 = [&](ggml_tensor * t, auto allowed) {
            std::vector<float> m((size_t) T * T, 0.0f);
            for (uint32_t p = 0; p < T; ++p) {
                for (uint32_t k = 0; k < T; ++k) m[(size_t) p * T + k] = allowed(p, k) ? 1.0f : 0.0f;
            }
            ggml_backend_tensor_set(t, m.data(), 0, m.size() * sizeof(float));
        };
        for (uint32_t j = 1; j < J; ++j) set01(keep0[j], [&](uint32_t p, uint32_t k) { return k + j <= p; });
        for (uint32_t sh = 0; sh + 1 < J; ++sh) set01(diag[sh], [&](uint32_t p, uint32_t k) { return k + sh == p; });
        std::vector<int32_t> ps(T);
        for (uint32_t p = 0; p < T; ++p) ps[p] = (int32_t) p;
        ggml_backend_tensor_set(pos, ps.data(), 0, T * sizeof(int32_t));
    }

    // the training graph
    ggml_context * c = run.compute(4096);
    const float eps = hp.f_norm_rms_eps;
    const float scale = 1.0f / sqrtf((float) hd);
    const int64_t TB = (int64_t) T * B;
    ggml_tensor * feats = ggml_cont(c, ggml_view_2d(c, inputs, 3 * dt, TB, inputs->nb[1], 0));                  // [3 d_t, T B]
    ggml_tensor * emb   = ggml_cont(c, ggml_view_2d(c, inputs, d, TB, inputs->nb[1], 3 * dt * sizeof(float)));  // [d, T B]
    ggml_tensor * en    = ggml_mul(c, ggml_rms_norm(c, emb, eps), attn_norm);
    ggml_tensor * g0    = ggml_mul_mat(c, fc, feats);                                                            // [d, T B]
    // per-head layout [hd, T, H, B], contiguous
    auto heads_of = [&](ggml_tensor * x, bool rope) {
        ggml_tensor * t = ggml_reshape_4d(c, x, hd, H, T, B);  // [hd, H, T, B]
        if (rope) t = ggml_rope_ext(c, t, pos, nullptr, (int) hd, 0, (int) std::max<uint32_t>(T, 1), 10000.0f, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f);
        return ggml_cont(c, ggml_permute(c, t, 0, 2, 1, 3));   // [hd, T, H, B]
    };
    std::vector<ggml_tensor *> Ks, Vs, hs;
    ggml_tensor * y_all = zeros_y;
    ggml_tensor * gj = g0;
    ggml_tensor * v0t = nullptr;  // step 0's values, transposed per window: [T, hd, H, B]
    // W broadcast over the windows, so that x^T W gives the transposed product per window directly
    // (a transposing permute would reach a binary op in the backward pass, which ggml's CPU kernels refuse)
    auto per_window = [&](ggml_tensor * w) { return ggml_repeat(c, ggml_reshape_3d(c, w, w->ne[0], w->ne[1], 1), ggml_new_tensor_3d(c, GGML_TYPE_F32, w->ne[0], w->ne[1], B)); };
    for (uint32_t j = 0; j < J; ++j) {
        if (j > 0) {
            // features of position P = the previous step's output at P - 1 (position 0: zeros)
            ggml_tensor * prev = ggml_reshape_3d(c, hs[j - 1], d, T, B);
            ggml_tensor * head = ggml_cont(c, ggml_view_3d(c, prev, d, T - 1, B, prev->nb[1], prev->nb[2], 0));
            gj = ggml_reshape_2d(c, ggml_acc(c, zeros_g, head, zeros_g->nb[1], zeros_g->nb[2], zeros_g->nb[3], zeros_g->nb[1]), d, TB);
        }
        ggml_tensor * gn = ggml_mul(c, ggml_rms_norm(c, gj, eps), hidden_norm);
        // [norm(emb); norm(g)] . W as two matmuls
        ggml_tensor * q = heads_of(ggml_add(c, ggml_mul_mat(c, wq_e, en), ggml_mul_mat(c, wq_g, gn)), true);
        ggml_tensor * k = heads_of(ggml_add(c, ggml_mul_mat(c, wk_e, en), ggml_mul_mat(c, wk_g, gn)), true);
        Ks.push_back(k);
        if (j == 0) {
            ggml_tensor * e3 = ggml_reshape_3d(c, en, d, T, B), * g3 = ggml_reshape_3d(c, gn, d, T, B);
            v0t = ggml_reshape_4d(c, ggml_add(c, ggml_mul_mat(c, e3, per_window(wv_e)), ggml_mul_mat(c, g3, per_window(wv_g))), T, hd, H, B);
            Vs.push_back(nullptr);
        } else {
            Vs.push_back(heads_of(ggml_add(c, ggml_mul_mat(c, wv_e, en), ggml_mul_mat(c, wv_g, gn)), false));
        }
        ggml_tensor * att;  // [hd, T, H, B]
        if (j == 0) {
            ggml_tensor * kq = ggml_soft_max_ext(c, ggml_mul_mat(c, k, q), mask0, scale, 0.0f);  // [T keys, T rows, H, B]
            att = ggml_mul_mat(c, v0t, kq);                                                      // [hd, T, H, B]
        } else {
            // One score matrix [key, row] holds what row P attends at step j: step 0's keys at positions
            // up to P - j, and in the cells P - j + 1 .. P (masked for step 0) the scores of the keys
            // steps 1 .. j computed at those positions; then one stable soft_max_ext over it (causal mask).
            ggml_tensor * sc = ggml_mul(c, ggml_mul_mat(c, Ks[0], q), keep0[j]);                   // [T keys, T rows, H, B]
            std::vector<ggml_tensor *> vshift(j + 1, nullptr);
            for (uint32_t i = 1; i <= j; ++i) {
                const uint32_t sh = j - i;  // the key sits sh positions before the row
                ggml_tensor * ki = sh == 0 ? Ks[i] : ggml_view_4d(c, Ks[i], hd, T - sh, H, B, Ks[i]->nb[1], Ks[i]->nb[2], Ks[i]->nb[3], 0);
                ggml_tensor * qi = sh == 0 ? q : ggml_view_4d(c, q, hd, T - sh, H, B, q->nb[1], q->nb[2], q->nb[3], sh * q->nb[1]);
                ggml_tensor * si = ggml_sum_rows(c, ggml_mul(c, ki, qi));                            // [1, T - sh, H, B]
                ggml_tensor * vi = Vs[i];
                if (sh > 0) {
                    si = ggml_acc(c, zeros_z, si, zeros_z->nb[1], zeros_z->nb[2], zeros_z->nb[3], sh * zeros_z->nb[1]);  // row P: key P - sh
                    ggml_tensor * v_rows = ggml_view_4d(c, Vs[i], hd, T - sh, H, B, Vs[i]->nb[1], Vs[i]->nb[2], Vs[i]->nb[3], 0);
                    vi = ggml_acc(c, zeros_o, ggml_cont(c, v_rows), zeros_o->nb[1], zeros_o->nb[2], zeros_o->nb[3], sh * zeros_o->nb[1]);
                }
                vshift[i] = vi;                                                                     // [hd, T, H, B]: the value row P sees
                sc = ggml_add(c, sc, ggml_mul(c, ggml_repeat(c, si, sc), diag[sh]));              // into cell (P - sh, P)
            }
            ggml_tensor * pr = ggml_soft_max_ext(c, sc, mask0, scale, 0.0f);                         // [T, T, H, B]
            att = ggml_mul_mat(c, v0t, ggml_mul(c, pr, keep0[j]));                                  // [hd, T, H, B]
            for (uint32_t i = 1; i <= j; ++i) {
                ggml_tensor * w = ggml_sum_rows(c, ggml_mul(c, pr, diag[j - i]));                   // [1, T, H, B]: its weight
                att = ggml_add(c, att, ggml_mul(c, vshift[i], w));
            }
        }
        att = ggml_reshape_2d(c, ggml_cont(c, ggml_permute(c, att, 0, 2, 1, 3)), nq, TB);  // [nq, T B]
        ggml_tensor * x = ggml_add(c, ggml_mul_mat(c, wo, att), gj);                      // [d, T B]
        ggml_tensor * f = ggml_mul(c, ggml_rms_norm(c, x, eps), ffn_norm);
        f = ggml_mul_mat(c, down, ggml_swiglu_split(c, ggml_mul_mat(c, gate, f), ggml_mul_mat(c, up, f)));
        ggml_tensor * h = ggml_add(c, f, x);                                                // [d, T B]: pre-norm output
        hs.push_back(h);
        ggml_tensor * y = ggml_mul(c, ggml_rms_norm(c, h, eps), out_norm);
        y_all = ggml_acc(c, y_all, ggml_reshape_3d(c, y, d, T, B), zeros_y->nb[1], zeros_y->nb[3], zeros_y->nb[3], j * zeros_y->nb[2]);
    }
    ggml_tensor * outputs = ggml_mul_mat(c, Wout, ggml_reshape_2d(c, y_all, d, (int64_t) T * J * B));  // [V, T J B]
    ggml_set_output(outputs);

    run.init_opt(inputs, outputs);

    const int64_t nrow = (int64_t) T * row, nlab = (int64_t) J * T * V;
    ggml_opt_dataset_t ds_val = run.dataset(nrow, nlab, val.n);
    std::memcpy(ggml_opt_dataset_data(ds_val)->data, val.data.data(), (size_t) val.n * nrow * sizeof(float));
    std::memcpy(ggml_opt_dataset_labels(ds_val)->data, val.labels.data(), (size_t) val.n * nlab * sizeof(float));
    const int64_t chunk = std::max<int64_t>(B, ((int64_t) o.chunk / T / B) * B);  // windows per chunk
    ggml_opt_dataset_t ds = run.dataset(nrow, nlab, chunk);

    // validation: the loss, and per step the top-1 agreement with the target (rows ordered P, step, window)
    std::vector<double> step_acc(J);
    auto validate = [&](double & loss, double & acc) {
        std::vector<int32_t> pred;
        run.evaluate(ds_val, val.n / B, loss, acc, &pred);
        std::fill(step_acc.begin(), step_acc.end(), 0.0);
        for (int64_t w = 0; w < val.n; ++w) {
            for (uint32_t j = 0; j < J; ++j) {
                for (uint32_t p = j; p < T; ++p) {  // rows with a full chain of j steps before them
                    const float * lb = val.labels.data() + (size_t) w * nlab + ((size_t) j * T + p) * V;
                    const int64_t best = std::max_element(lb, lb + V) - lb;
                    step_acc[j] += pred[(size_t) w * J * T + (size_t) j * T + p] == best;
                }
            }
        }
        for (uint32_t j = 0; j < J; ++j) step_acc[j] /= (double) val.n * (T - j);
    };
    auto tau_of = [&](const std::vector<double> & a) {  // a greedy chain: 1 + a0 + a0 a1 + ... (steps independent)
        double tau = 1.0, run = 1.0;
        for (double x : a) { run *= x; tau += run; }
        return tau;
    };

    run.report("validate");
    validate(rep.val_loss_before, rep.val_accuracy_before);
    rep.head_accuracy_before = step_acc;
    rep.tau_before = tau_of(step_acc);
    run.pr.val_loss = rep.val_loss_before;
    run.pr.val_accuracy = rep.val_accuracy_before;
    run.report("train");

    corpus_windows src(o.train_docs, T + 1, T + 1, /*random =*/ true, o.seed);
    windows_data dp;
    int64_t n_chunks = 0;
    while (run.budget_left()) {
        collect_windows(feat, src, chunk, T, J, dt, d, V, tok_embd, dp, rep.feature_tokens, o.abort);
        dp.n = (dp.n / B) * B;
        if (dp.n < (int64_t) B) {
            fail("ERR_INVALID_OPTION", format("the corpus is too short: its training split has no window of %u tokens", T + 1));
        }
        run.train_chunk(ds, dp.data.data(), dp.labels.data(), dp.n, B, (uint64_t) B * T, 1);
        run.validate_every(++n_chunks, 4, validate);
    }

    run.report("validate");
    validate(rep.val_loss_after, rep.val_accuracy_after);
    rep.head_accuracy_after = step_acc;
    rep.tau_after = tau_of(step_acc);
    run.pr.val_loss = rep.val_loss_after;
    run.pr.val_accuracy = rep.val_accuracy_after;
    run.check_abort();

    // the file: llama.cpp's eagle3 layout (q/k/v's two input halves joined per output row)
    run.report("write");
    eagle3_heads h;
    h.n_embd = d;
    h.n_ff = ff;
    h.n_head = H;
    h.n_head_kv = H;
    h.n_embd_head = hd;
    h.n_ctx = hp.n_ctx_train;
    h.eps = eps;
    h.rope_base = 10000.0f;
    h.target_layers = layers;
    h.target_hidden = dt;
    h.target_vocab = V;
    h.n_draft_vocab = V;
    h.trained_tokens = rep.tokens;
    auto get = [](ggml_tensor * t) {
        std::vector<float> v(ggml_nelements(t));
        ggml_backend_tensor_get(t, v.data(), 0, ggml_nbytes(t));
        return v;
    };
    auto join = [&](ggml_tensor * e, ggml_tensor * gg) {  // [d, n] and [d, n] -> [2d, n]
        const std::vector<float> a = get(e), b = get(gg);
        const int64_t n = e->ne[1];
        std::vector<float> out((size_t) 2 * d * n);
        for (int64_t r = 0; r < n; ++r) {
            std::memcpy(out.data() + (size_t) r * 2 * d, a.data() + (size_t) r * d, d * sizeof(float));
            std::memcpy(out.data() + (size_t) r * 2 * d + d, b.data() + (size_t) r * d, d * sizeof(float));
        }
        return out;
    };
    h.fc = get(fc);
    h.attn_norm = get(attn_norm);
    h.hidden_norm = get(hidden_norm);
    h.wq = join(wq_e, wq_g);
    h.wk = join(wk_e, wk_g);
    h.wv = join(wv_e, wv_g);
    h.wo = get(wo);
    h.ffn_norm = get(ffn_norm);
    h.ffn_gate = get(gate);
    h.ffn_up = get(up);
    h.ffn_down = get(down);
    h.out_norm = get(out_norm);
    h.save(o.out, *target);
    rep.seconds = run.seconds();
    return rep;
}

} // namespace specdec
