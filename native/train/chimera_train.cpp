// Chimera on ggml-opt (heads/chimera_heads.h for the network and its file).
//
// A datapoint is a window of T + 1 corpus tokens. The frozen target reads it once; element P of the
// window (P < T) gets the target's hidden state h_P (the input of its last layer), the trigram of
// tokens P - 1 .. P + 1 (embeddings side by side, zeros before the window), the next hidden state
// h_{P+1}, and the label softmax(target logits at row P + 1), the target's distribution of token
// P + 2. The draft network runs over the window's elements causally (its full-context layer), and the
// loss is the paper's pair: distillation (soft cross-entropy to the target's distribution) plus the
// regression of the next hidden state, here mean((rms_norm(o_P) - rms_norm(h_{P+1}))^2) of the layer
// output o_P, which stands in for h_{P+1} when drafting further. One scalar: ggml-opt's MEAN loss over
// a loss the graph builds, the labels carried in the inputs.
//
// ggml has no backward pass for concat or flash attention: the residual head's [h; o] is two
// matmuls; attention is mul_mat + soft_max_ext + mul_mat (the values transposed per window by a
// product with the weights broadcast, as eagle3_train.cpp does). The trigram's concatenation is of
// frozen embeddings: it is part of the inputs.
//
// Validation runs the inference path (chimera_runner) over held-out windows: the soft cross-entropy
// and top-1 agreement of the first draft step on the target's hidden states, and of the second on
// the first step's stand-ins and drafted token, whence the report's τ of a greedy chain two deep.
#include "train/chimera_train.h"

#include "common/error.h"
#include "heads/chimera_heads.h"
#include "heads/chimera_runner.h"
#include "heads/medusa_heads.h"

#include "ggml-backend.h"
#include "ggml-opt.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

namespace specdec {

namespace {

// Windows the target has read: tokens [n][T + 1], hidden [n][T + 1][d], labels [n][T][V].
struct windows {
    std::vector<int32_t> tokens;
    std::vector<float>   hidden, labels;
    int64_t n = 0;
};

void collect(target_features & feat, corpus_windows & src, int64_t want, uint32_t T, uint32_t d, uint32_t V, windows & out,
             uint64_t & feature_tokens, const std::atomic<bool> * abort) {
    out.n = 0;
    out.tokens.resize((size_t) want * (T + 1));
    out.hidden.resize((size_t) want * (T + 1) * d);
    out.labels.resize((size_t) want * T * V);
    std::vector<int32_t> w;
    std::vector<float> hidden, logits;
    while (out.n < want) {
        if (abort && abort->load()) fail("ERR_ABORTED", "training aborted");
        if (!src.next(w)) break;
        if (w.size() != T + 1) continue;
        feat.run(w, hidden, logits);
        feature_tokens += w.size();
        std::memcpy(out.tokens.data() + (size_t) out.n * (T + 1), w.data(), (T + 1) * sizeof(int32_t));
        std::memcpy(out.hidden.data() + (size_t) out.n * (T + 1) * d, hidden.data(), (size_t) (T + 1) * d * sizeof(float));
        for (uint32_t p = 0; p < T; ++p) {
            softmax_row(logits.data() + (size_t) (p + 1) * V, V, out.labels.data() + ((size_t) out.n * T + p) * V);
        }
        out.n++;
    }
}

// The training rows of window i: [T][h_P (d) | e(x_{P-1}) e(x_P) e(x_{P+1}) (3d) | h_{P+1} (d) | label (V)].
void to_rows(const windows & w, int64_t i, uint32_t T, uint32_t d, uint32_t V, const std::vector<float> & emb, float * dst) {
    const size_t R = (size_t) 5 * d + V;
    const int32_t * tok = w.tokens.data() + (size_t) i * (T + 1);
    const float * hid = w.hidden.data() + (size_t) i * (T + 1) * d;
    for (uint32_t p = 0; p < T; ++p) {
        float * row = dst + p * R;
        std::memcpy(row, hid + (size_t) p * d, d * sizeof(float));
        for (uint32_t j = 0; j < 3; ++j) {
            const int64_t q = (int64_t) p - 1 + j;
            float * e = row + d + (size_t) j * d;
            if (q < 0) std::fill(e, e + d, 0.0f);
            else std::memcpy(e, emb.data() + (size_t) tok[q] * d, d * sizeof(float));
        }
        std::memcpy(row + 4 * d, hid + (size_t) (p + 1) * d, d * sizeof(float));
        std::memcpy(row + 5 * d, w.labels.data() + ((size_t) i * T + p) * V, V * sizeof(float));
    }
}

int64_t argmax(const float * x, int64_t n) { return std::max_element(x, x + n) - x; }

// Soft cross-entropy of logits against a distribution.
double soft_ce(const float * lg, const float * lab, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; ++i) mx = std::max(mx, lg[i]);
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += std::exp((double) lg[i] - mx);
    const double lse = mx + std::log(s);
    double ce = 0.0;
    for (int64_t i = 0; i < n; ++i) if (lab[i] > 0.0f) ce -= lab[i] * ((double) lg[i] - lse);
    return ce;
}

// The held-out figures through the inference path: loss and top-1 agreement of draft step 1, the
// agreement of step 2 where step 1 was right, τ of a greedy chain two deep.
void measure(std::shared_ptr<const chimera_heads> h, std::shared_ptr<const model> target, int n_threads, const windows & val,
             uint32_t T, double & loss, std::vector<double> & acc, double & tau, const std::atomic<bool> * abort) {
    const uint32_t d = h->n_embd, V = h->n_vocab;
    chimera_runner rn(h, target, n_threads, 2 * T);
    double ce = 0.0, a1 = 0.0, a12 = 0.0;
    int64_t n1 = 0;
    std::vector<float> o1, lg1, o2, lg2;
    for (int64_t i = 0; i < val.n; ++i) {
        if (abort && abort->load()) fail("ERR_ABORTED", "training aborted");
        const int32_t * tok = val.tokens.data() + (size_t) i * (T + 1);
        const float * lab = val.labels.data() + (size_t) i * T * V;
        rn.truncate(0);
        draft_rows r;
        std::vector<uint32_t> outs;
        for (uint32_t p = 0; p < T; ++p) {
            r.tri.insert(r.tri.end(), { p > 0 ? tok[p - 1] : -1, tok[p], tok[p + 1] });
            r.pos.push_back((int32_t) p);
            r.prefix.push_back(p + 1);
            outs.push_back(p);
        }
        r.in = val.hidden.data() + (size_t) i * (T + 1) * d;
        rn.eval(r, outs, o1, lg1);
        std::vector<int32_t> draft1(T);
        std::vector<bool> right1(T);
        for (uint32_t p = 0; p < T; ++p) {
            ce += soft_ce(lg1.data() + (size_t) p * V, lab + (size_t) p * V, V);
            draft1[p] = (int32_t) argmax(lg1.data() + (size_t) p * V, V);
            right1[p] = draft1[p] == argmax(lab + (size_t) p * V, V);
            a1 += right1[p];
        }
        n1 += T;
        // step 2: element P + 1 on o_P and the trigram (x_P, x_{P+1}, drafted x_{P+2}), after the real elements 0 .. P
        draft_rows r2;
        std::vector<uint32_t> outs2;
        for (uint32_t p = 0; p + 1 < T; ++p) {
            r2.tri.insert(r2.tri.end(), { tok[p], tok[p + 1], draft1[p] });
            r2.pos.push_back((int32_t) p + 1);
            r2.prefix.push_back(p + 1);
            r2.attend.push_back({ T + p });
            outs2.push_back(p);
        }
        r2.in = o1.data();
        r2.from_target = false;
        rn.eval(r2, outs2, o2, lg2);
        for (uint32_t p = 0; p + 1 < T; ++p) {
            if (right1[p] && argmax(lg2.data() + (size_t) p * V, V) == argmax(lab + (size_t) (p + 1) * V, V)) a12 += 1.0;
        }
    }
    loss = ce / std::max<int64_t>(1, n1);
    const double p1 = a1 / std::max<int64_t>(1, n1);
    const double p12 = a12 / std::max<int64_t>(1, val.n * (T - 1));
    acc = { p1, p1 > 0 ? p12 / p1 : 0.0 };
    tau = 1.0 + p1 + p12;
}

} // namespace

train_report train_chimera(std::shared_ptr<const model> target, const train_options & o) {
    const hparams & hp = target->hp;
    const uint32_t d = hp.n_embd, V = hp.n_vocab, ff = hp.n_ff;
    const uint32_t H = hp.n_head, hd = d / std::max<uint32_t>(1, H), nq = hd * H;
    const uint32_t B = o.batch, T = o.seq_len - 1;
    if (H == 0 || d % H != 0 || hd % 2 != 0) fail("ERR_INVALID_OPTION", "the target's head layout does not fit a Chimera layer");
    if (T < 8) fail("ERR_INVALID_OPTION", format("sequence length %u is too short", o.seq_len));
    if (B < 1 || o.chunk < B) fail("ERR_INVALID_OPTION", "the batch must be at least 1 and at most the chunk size");
    if (!(o.reg_weight >= 0.0f) || !std::isfinite(o.reg_weight)) fail("ERR_INVALID_OPTION", "the regression weight must be finite and >= 0");

    auto shape = chimera_heads::shape_for(*target);
    train_run run(o);
    train_report & rep = run.rep;
    target_features feat(target, T + 1, o.n_threads, { shape->target_layer });
    std::vector<float> tok_embd, tmp;
    tensor_to_f32(target->tok_embd, tok_embd);

    run.report("features");
    windows val;
    {
        corpus_windows vs(o.val_docs, T + 1, T + 1, /*random =*/ true, o.seed ^ 0x5eedull);
        collect(feat, vs, std::max<int64_t>(B, (o.val_max / T / B) * B), T, d, V, val, rep.feature_tokens, o.abort);
        val.n = (val.n / B) * B;
    }
    if (val.n < (int64_t) B) {
        fail("ERR_INVALID_OPTION", format("the corpus is too short: its validation split gives %lld windows of %u tokens, at least %u "
                "are needed (give more text, or a shorter sequenceLength)", (long long) val.n, T + 1, B));
    }
    rep.val_datapoints = (uint64_t) val.n * T;

    // weights: trainable (F32) and frozen (the target's output head, the causal mask, positions)
    const int64_t R = 5 * (int64_t) d + V, TB = (int64_t) T * B;
    ggml_context * cp = run.weights();
    ggml_tensor * inputs = ggml_new_tensor_2d(cp, GGML_TYPE_F32, R, TB);  // [5d + V, T B]
    ggml_set_input(inputs);
    enum init_t { INIT_ZERO, INIT_ONE, INIT_RAND, INIT_OUT_NORM };
    struct param { ggml_tensor * t; init_t init; };
    auto P2 = [&](int64_t a, int64_t b) { return ggml_new_tensor_2d(cp, GGML_TYPE_F32, a, b); };
    auto P1 = [&](int64_t a) { return ggml_new_tensor_1d(cp, GGML_TYPE_F32, a); };
    ggml_tensor * tri_w = P2(3 * d, 3 * d), * tri_b = P1(3 * d), * tri_out = P2(3 * d, d), * hidden_norm = P1(d);
    ggml_tensor * attn_norm = P1(d), * wq = P2(d, nq), * wk = P2(d, nq), * wv = P2(d, nq), * wo = P2(nq, d);
    ggml_tensor * ffn_norm = P1(d), * gate = P2(d, ff), * up = P2(d, ff), * down = P2(ff, d);
    ggml_tensor * head_h = P2(d, d), * head_o = P2(d, d), * head_b = P1(d), * out_norm = P1(d);
    const std::vector<param> params = {
        { tri_w, INIT_ZERO }, { tri_b, INIT_ZERO }, { tri_out, INIT_RAND }, { hidden_norm, INIT_ONE },
        { attn_norm, INIT_ONE }, { wq, INIT_RAND }, { wk, INIT_RAND }, { wv, INIT_RAND }, { wo, INIT_RAND },
        { ffn_norm, INIT_ONE }, { gate, INIT_RAND }, { up, INIT_RAND }, { down, INIT_RAND },
        { head_h, INIT_ZERO }, { head_o, INIT_ZERO }, { head_b, INIT_ZERO }, { out_norm, INIT_OUT_NORM },
    };
    for (const auto & p : params) ggml_set_param(p.t);
    ggml_tensor * Wout = P2(d, V);
    ggml_tensor * mask0 = ggml_new_tensor_2d(cp, GGML_TYPE_F32, T, T);  // causal: 0, or -inf past the row
    ggml_tensor * pos = ggml_new_tensor_1d(cp, GGML_TYPE_I32, T);
    run.alloc_weights();
    {
        std::mt19937_64 rng(o.seed);
        std::normal_distribution<float> nd(0.0f, 0.02f);
        std::vector<float> out_norm_w;
        tensor_to_f32(target->output_norm, out_norm_w);
        for (const auto & p : params) {
            std::vector<float> v(ggml_nelements(p.t), 0.0f);
            switch (p.init) {
                case INIT_ZERO: break;
                case INIT_ONE: std::fill(v.begin(), v.end(), 1.0f); break;
                case INIT_RAND: for (auto & x : v) x = nd(rng); break;
                case INIT_OUT_NORM: v = out_norm_w; break;
            }
            ggml_backend_tensor_set(p.t, v.data(), 0, ggml_nbytes(p.t));
        }
        tensor_to_f32(target->output, tmp);
        ggml_backend_tensor_set(Wout, tmp.data(), 0, ggml_nbytes(Wout));
        std::vector<float> m((size_t) T * T, -INFINITY);
        for (uint32_t p = 0; p < T; ++p) for (uint32_t k = 0; k <= p; ++k) m[(size_t) p * T + k] = 0.0f;
        ggml_backend_tensor_set(mask0, m.data(), 0, m.size() * sizeof(float));
        std::vector<int32_t> ps(T);
        for (uint32_t p = 0; p < T; ++p) ps[p] = (int32_t) p;
        ggml_backend_tensor_set(pos, ps.data(), 0, T * sizeof(int32_t));
    }

    // the training graph
    ggml_context * c = run.compute(2048);
    const float eps = hp.f_norm_rms_eps;
    const float scale = 1.0f / sqrtf((float) hd);
    auto part = [&](int64_t off, int64_t n) {  // rows [off, off + n) of every input column: [n, T B]
        return ggml_cont(c, ggml_view_2d(c, inputs, n, TB, inputs->nb[1], off * sizeof(float)));
    };
    auto norm = [&](ggml_tensor * x, ggml_tensor * w) { return ggml_mul(c, ggml_rms_norm(c, x, eps), w); };
    ggml_tensor * h_in  = part(0, d);                                                              // [d, T B]
    ggml_tensor * tri   = part(d, 3 * d);                                                          // [3d, T B]
    ggml_tensor * h_nx  = part(4 * d, d);                                                          // [d, T B]
    ggml_tensor * lab   = part(5 * d, V);                                                          // [V, T B]
    // trigram encoder: a zero-initialised residual block, then down to d
    ggml_tensor * c2 = ggml_add(c, tri, ggml_silu(c, ggml_add(c, ggml_mul_mat(c, tri_w, tri), tri_b)));  // [3d, T B]
    ggml_tensor * g  = ggml_mul_mat(c, tri_out, c2);                                               // [d, T B]
    ggml_tensor * hn = norm(h_in, hidden_norm);                                                    // [d, T B]
    ggml_tensor * u  = ggml_add(c, hn, g);                                                         // [d, T B]
    // the full-context layer, causal over each window's elements
    ggml_tensor * an = norm(u, attn_norm);
    auto heads_of = [&](ggml_tensor * x) {
        ggml_tensor * t = ggml_reshape_4d(c, x, hd, H, T, B);                                      // [hd, H, T, B]
        t = ggml_rope_ext(c, t, pos, nullptr, (int) hd, 0, (int) hp.n_ctx_train, 10000.0f, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f);
        return ggml_cont(c, ggml_permute(c, t, 0, 2, 1, 3));                                       // [hd, T, H, B]
    };
    ggml_tensor * q = heads_of(ggml_mul_mat(c, wq, an));
    ggml_tensor * k = heads_of(ggml_mul_mat(c, wk, an));
    ggml_tensor * wv_rep = ggml_repeat(c, ggml_reshape_3d(c, wv, d, nq, 1), ggml_new_tensor_3d(c, GGML_TYPE_F32, d, nq, B));
    ggml_tensor * vt = ggml_reshape_4d(c, ggml_mul_mat(c, ggml_reshape_3d(c, an, d, T, B), wv_rep), T, hd, H, B);  // [T, hd, H, B]
    ggml_tensor * kq = ggml_soft_max_ext(c, ggml_mul_mat(c, k, q), mask0, scale, 0.0f);           // [T keys, T rows, H, B]
    ggml_tensor * att = ggml_mul_mat(c, vt, kq);                                                   // [hd, T, H, B]
    att = ggml_reshape_2d(c, ggml_cont(c, ggml_permute(c, att, 0, 2, 1, 3)), nq, TB);             // [nq, T B]
    ggml_tensor * x = ggml_add(c, ggml_mul_mat(c, wo, att), u);                                    // [d, T B]
    ggml_tensor * f = norm(x, ffn_norm);
    f = ggml_mul_mat(c, down, ggml_swiglu_split(c, ggml_mul_mat(c, gate, f), ggml_mul_mat(c, up, f)));
    ggml_tensor * ol = ggml_add(c, f, x);                                                          // [d, T B]: layer output o
    // residual decoding head over [hn; o] (two matmuls), the target's output head
    ggml_tensor * z = ggml_add(c, ol, ggml_silu(c, ggml_add(c, ggml_add(c, ggml_mul_mat(c, head_h, hn), ggml_mul_mat(c, head_o, ol)), head_b)));
    ggml_tensor * logits = ggml_mul_mat(c, Wout, norm(z, out_norm));                               // [V, T B]
    // loss: distillation + the regression of the next hidden state (directions: both sides rms-normed)
    ggml_tensor * ce  = ggml_cross_entropy_loss(c, logits, lab);                                   // [1]: mean over rows
    ggml_tensor * dif = ggml_sub(c, ggml_rms_norm(c, ol, eps), ggml_rms_norm(c, h_nx, eps));      // [d, T B]
    ggml_tensor * reg = ggml_scale(c, ggml_sum(c, ggml_sqr(c, dif)), o.reg_weight / (float) (TB * d));  // [1]
    ggml_tensor * outputs = ggml_add(c, ce, reg);                                                  // [1]
    ggml_set_output(outputs);
    run.init_opt(inputs, outputs, GGML_OPT_LOSS_TYPE_MEAN);

    const int64_t chunk = std::max<int64_t>(B, ((int64_t) o.chunk / T / B) * B);  // windows per chunk
    ggml_opt_dataset_t ds = run.dataset(T * R, 0, chunk);

    auto get = [](ggml_tensor * t) {
        std::vector<float> v(ggml_nelements(t));
        ggml_backend_tensor_get(t, v.data(), 0, ggml_nbytes(t));
        return v;
    };
    auto heads_now = [&] {
        auto h = chimera_heads::shape_for(*target);
        h->n_head_kv = H;
        h->n_embd_head = hd;
        h->eps = eps;
        h->tri_w = get(tri_w); h->tri_b = get(tri_b); h->tri_out = get(tri_out); h->hidden_norm = get(hidden_norm);
        h->attn_norm = get(attn_norm); h->wq = get(wq); h->wk = get(wk); h->wv = get(wv); h->wo = get(wo);
        h->ffn_norm = get(ffn_norm); h->ffn_gate = get(gate); h->ffn_up = get(up); h->ffn_down = get(down);
        h->head_h = get(head_h); h->head_o = get(head_o); h->head_b = get(head_b); h->out_norm = get(out_norm);
        h->trained_tokens = rep.tokens;
        return h;
    };
    auto validate = [&](double & loss, double & acc, std::vector<double> * accs, double * tau) {
        std::vector<double> a;
        double t;
        measure(heads_now(), target, o.n_threads, val, T, loss, a, t, o.abort);
        acc = a[0];
        if (accs) *accs = a;
        if (tau) *tau = t;
    };

    run.report("validate");
    validate(rep.val_loss_before, rep.val_accuracy_before, &rep.head_accuracy_before, &rep.tau_before);
    run.pr.val_loss = rep.val_loss_before;
    run.pr.val_accuracy = rep.val_accuracy_before;
    run.report("train");

    corpus_windows src(o.train_docs, T + 1, T + 1, /*random =*/ true, o.seed);
    windows dp;
    std::vector<float> rows;
    int64_t n_chunks = 0;
    while (run.budget_left()) {
        collect(feat, src, chunk, T, d, V, dp, rep.feature_tokens, o.abort);
        dp.n = (dp.n / B) * B;
        if (dp.n < (int64_t) B) {
            fail("ERR_INVALID_OPTION", format("the corpus is too short: its training split has no window of %u tokens", T + 1));
        }
        rows.resize((size_t) dp.n * T * R);
        for (int64_t i = 0; i < dp.n; ++i) to_rows(dp, i, T, d, V, tok_embd, rows.data() + (size_t) i * T * R);
        run.train_chunk(ds, rows.data(), nullptr, dp.n, B, (uint64_t) B * T, 1);
        run.validate_every(++n_chunks, 8, [&](double & l, double & a) { validate(l, a, nullptr, nullptr); });
    }

    run.report("validate");
    validate(rep.val_loss_after, rep.val_accuracy_after, &rep.head_accuracy_after, &rep.tau_after);
    run.pr.val_loss = rep.val_loss_after;
    run.pr.val_accuracy = rep.val_accuracy_after;
    run.check_abort();
    run.report("write");
    heads_now()->save(o.out);
    rep.seconds = run.seconds();
    return rep;
}

} // namespace specdec
