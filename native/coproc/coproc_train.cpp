// Training the KV-cache coprocessor on ggml-opt (the training subsystem's train_run).
//
// An example is a corpus window x[0..n) (n <= W) that the frozen decoder prefills in a session (its
// inference kernels: the cache a session would hold), and G augmentation points s_g drawn in it. One
// step is one graph of two passes over that cache, which enters as constants (the prefix is never
// evaluated again, and no gradient goes into it):
//
//   pass 1, the coprocessor: G groups of N_L soft-token rows, group g all at position s_g, attending to
//     cells [0, s_g) and to its group's earlier rows, through the decoder's layers with the adapters.
//     Latent i = rms_norm(last layer's row i) * gain.
//   pass 2, the frozen decoder: per group the N_L latents (rows entering at layer 0), all at position s_g,
//     then the N_A ahead tokens x[s_g .. s_g + N_A - 1] at their own positions s_g + j, attending to cells
//     [0, s_g) and to their group's earlier rows. Ahead row j's logits score x[s_g + j + 1]: the
//     decoder's language-model loss (cross-entropy with the corpus tokens), which reaches the
//     coprocessor's adapters, soft tokens and gain through the frozen decoder and the latents.
//
// That is coproc_augment's layout: latents after x[0..s-1], then x[s] evaluated after them gives the
// first scored prediction. The G points of a window train in one pass (the masks keep the groups apart).
//
// The rows' own K and V join the cached ones without a concat (no backward in ggml): K by get_rows of
// the rows' K into the cells after the window and a 0/1 mask, V^T by a product with a placement matrix.
// Validation: the same held-out windows and points each time; the unaugmented loss of the same tokens
// comes from the session's own logits, and the negative control (latents in the cache, hidden from the
// ahead rows by the mask) from this graph: the ahead rows then compute what the plain decoder computes
// (the latents take no position of theirs), so it equals the unaugmented loss up to rounding.
#include "coproc/coproc_train.h"

#include "common/error.h"
#include "coproc/coprocessor.h"
#include "heads/medusa_heads.h"  // tensor_to_f32
#include "train/llama_trainable.h"

#include "ggml-backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

namespace specdec {

namespace {

struct dims {
    int64_t W, G, NL, NA, R1, R2, d, hd, H, Hkv, V;
};

// The constants of one pass over R rows.
struct pass_inputs {
    int64_t R = 0;
    ggml_tensor * pos    = nullptr;  // [R] i32
    ggml_tensor * mask   = nullptr;  // [W + R, R] f32: 0 where the row attends the cell, -inf elsewhere
    ggml_tensor * k_idx  = nullptr;  // [(W + R) Hkv] i32: cell c of head h -> the rows' K row (c >= W)
    ggml_tensor * k_keep = nullptr;  // [1, (W + R) Hkv] f32: 1 where c >= W
    ggml_tensor * place  = nullptr;  // [R, W + R] f32: row r -> cell W + r
    std::vector<ggml_tensor *> k;    // per layer [hd, (W + R) Hkv]: the cached K (zero from cell n on)
    std::vector<ggml_tensor *> vt;   // per layer [W + R, hd, Hkv]: the cached V, transposed
};

struct adapter {
    ggml_tensor * a = nullptr;  // [n_in, rank]
    ggml_tensor * b = nullptr;  // [rank, n_out]
};

struct example {
    std::vector<int32_t> win;
    std::vector<int64_t> points;  // s_g
    double base_loss = 0.0;       // the unaugmented decoder's mean cross-entropy on the ahead tokens
};

pass_inputs declare_pass(ggml_context * cp, const dims & D, int64_t R, uint32_t n_layer) {
    pass_inputs p;
    p.R = R;
    p.pos = ggml_new_tensor_1d(cp, GGML_TYPE_I32, R);
    p.mask = ggml_new_tensor_2d(cp, GGML_TYPE_F32, D.W + R, R);
    p.k_idx = ggml_new_tensor_1d(cp, GGML_TYPE_I32, (D.W + R) * D.Hkv);
    p.k_keep = ggml_new_tensor_2d(cp, GGML_TYPE_F32, 1, (D.W + R) * D.Hkv);
    p.place = ggml_new_tensor_2d(cp, GGML_TYPE_F32, R, D.W + R);
    for (uint32_t il = 0; il < n_layer; ++il) {
        p.k.push_back(ggml_new_tensor_2d(cp, GGML_TYPE_F32, D.hd, (D.W + R) * D.Hkv));
        p.vt.push_back(ggml_new_tensor_3d(cp, GGML_TYPE_F32, D.W + R, D.hd, D.Hkv));
    }
    return p;
}

// The fixed parts of a pass: k_idx, k_keep, place.
void fill_pass_fixed(const pass_inputs & p, const dims & D) {
    const int64_t C = D.W + p.R;
    std::vector<int32_t> idx((size_t) (C * D.Hkv));
    std::vector<float> keep((size_t) (C * D.Hkv));
    for (int64_t h = 0; h < D.Hkv; ++h) {
        for (int64_t c = 0; c < C; ++c) {
            idx[(size_t) (c + C * h)] = c >= D.W ? (int32_t) ((c - D.W) + p.R * h) : 0;
            keep[(size_t) (c + C * h)] = c >= D.W ? 1.0f : 0.0f;
        }
    }
    ggml_backend_tensor_set(p.k_idx, idx.data(), 0, ggml_nbytes(p.k_idx));
    ggml_backend_tensor_set(p.k_keep, keep.data(), 0, ggml_nbytes(p.k_keep));
    std::vector<float> pl((size_t) (p.R * C), 0.0f);
    for (int64_t r = 0; r < p.R; ++r) pl[(size_t) (r + p.R * (D.W + r))] = 1.0f;
    ggml_backend_tensor_set(p.place, pl.data(), 0, ggml_nbytes(p.place));
}

// The window's cached K and V (cells [0, n)) into both passes' layouts.
void fill_cache(session & s, uint32_t n, const dims & D, const pass_inputs & p1, const pass_inputs & p2) {
    std::vector<float> k, v, kb, vb;
    const int64_t Dk = D.hd * D.Hkv;
    for (size_t il = 0; il < p1.k.size(); ++il) {
        s.read_cells((uint32_t) il, n, k, v);
        for (const pass_inputs * p : { &p1, &p2 }) {
            const int64_t C = D.W + p->R;
            kb.assign((size_t) (D.hd * C * D.Hkv), 0.0f);
            vb.assign((size_t) (C * D.hd * D.Hkv), 0.0f);
            for (int64_t c = 0; c < (int64_t) n; ++c) {
                for (int64_t h = 0; h < D.Hkv; ++h) {
                    for (int64_t e = 0; e < D.hd; ++e) {
                        kb[(size_t) (e + D.hd * (c + C * h))] = k[(size_t) (c * Dk + h * D.hd + e)];
                        vb[(size_t) (c + C * (e + D.hd * h))] = v[(size_t) (c * Dk + h * D.hd + e)];
                    }
                }
            }
            ggml_backend_tensor_set(p->k[il], kb.data(), 0, ggml_nbytes(p->k[il]));
            ggml_backend_tensor_set(p->vt[il], vb.data(), 0, ggml_nbytes(p->vt[il]));
        }
    }
}

// The decoder's layers over R rows x [d, R] attending to the cached cells and to each other as the
// pass's mask says; with the adapters when `ad` is given (the coprocessor), frozen otherwise.
ggml_tensor * build_rows(ggml_context * c, const trainable_llama & w, const std::vector<adapter> * ad, ggml_tensor * x,
                         const pass_inputs & in, const dims & D) {
    const hparams & hp = w.hp;
    const int64_t R = in.R, C = D.W + R;
    const float eps = hp.f_norm_rms_eps;
    const float scale = hp.f_attn_scale != 0.0f ? hp.f_attn_scale : 1.0f / sqrtf((float) D.hd);
    auto norm = [&](ggml_tensor * t, ggml_tensor * g) { return ggml_mul(c, ggml_rms_norm(c, t, eps), g); };
    auto rope = [&](ggml_tensor * t) {  // [hd, heads, R]
        return ggml_rope_ext(c, t, in.pos, w.rope_freqs, (int) hp.n_rot, hp.rope_type, (int) hp.n_ctx_orig, hp.rope_freq_base,
                             hp.rope_freq_scale, hp.yarn_ext_factor, hp.yarn_attn_factor, hp.yarn_beta_fast, hp.yarn_beta_slow);
    };
    auto heads = [&](ggml_tensor * t, ggml_tensor * g_norm, int64_t nh) {
        t = ggml_reshape_3d(c, t, D.hd, nh, R);  // [hd, nh, R]
        if (g_norm) t = norm(t, g_norm);
        t = rope(t);
        return ggml_cont(c, ggml_permute(c, t, 0, 2, 1, 3));  // [hd, R, nh]
    };
    for (size_t il = 0; il < w.layers.size(); ++il) {
        const layer_weights & L = w.layers[il];
        const adapter * A = ad ? &(*ad)[il * COPROC_N_MATRICES] : nullptr;
        // W h (+ B A h)
        auto mm = [&](ggml_tensor * wt, int j, ggml_tensor * h) {
            ggml_tensor * y = ggml_mul_mat(c, wt, h);  // [n_out, R]
            if (A) y = ggml_add(c, y, ggml_mul_mat(c, A[j].b, ggml_mul_mat(c, A[j].a, h)));
            return y;
        };
        ggml_tensor * h = norm(x, L.attn_norm);  // [d, R]
        ggml_tensor * q = mm(L.wq, 0, h);        // [hd H, R]
        if (L.bq) q = ggml_add(c, q, L.bq);
        ggml_tensor * k = mm(L.wk, 1, h);        // [hd Hkv, R]
        if (L.bk) k = ggml_add(c, k, L.bk);
        // V transposed, as h^T Wv (+ (A h)^T B): [R, hd Hkv]
        ggml_tensor * vt = ggml_mul_mat(c, h, L.wv);
        if (A) vt = ggml_add(c, vt, ggml_mul_mat(c, ggml_mul_mat(c, A[2].a, h), A[2].b));
        if (L.bv) vt = ggml_add(c, vt, ggml_reshape_2d(c, L.bv, 1, L.bv->ne[0]));
        q = heads(q, L.q_norm, D.H);    // [hd, R, H]
        k = heads(k, L.k_norm, D.Hkv);  // [hd, R, Hkv]
        // the cells' K: the cached ones (zero from the window's end on) and the rows' own after cell W
        ggml_tensor * kr = ggml_get_rows(c, ggml_reshape_2d(c, k, D.hd, R * D.Hkv), in.k_idx);  // [hd, C Hkv]
        ggml_tensor * kall = ggml_reshape_3d(c, ggml_add(c, in.k[il], ggml_mul(c, kr, in.k_keep)), D.hd, C, D.Hkv);  // [hd, C, Hkv]
        // the cells' V^T: the cached ones and the rows' own placed at cells W..W+R
        ggml_tensor * vplaced = ggml_reshape_3d(c, ggml_mul_mat(c, in.place, vt), C, D.hd, D.Hkv);  // [C, hd, Hkv]
        ggml_tensor * vall = ggml_add(c, in.vt[il], vplaced);
        // attention (query heads of a group share their K/V head: mul_mat broadcasts dim 2)
        ggml_tensor * kq = ggml_soft_max_ext(c, ggml_mul_mat(c, kall, q), in.mask, scale, 0.0f);  // [C, R, H]
        ggml_tensor * att = ggml_mul_mat(c, vall, kq);                                             // [hd, R, H]
        att = ggml_reshape_2d(c, ggml_cont(c, ggml_permute(c, att, 0, 2, 1, 3)), D.hd * D.H, R);   // [hd H, R]
        ggml_tensor * o = mm(L.wo, 3, att);  // [d, R]
        if (L.bo) o = ggml_add(c, o, L.bo);
        x = ggml_add(c, o, x);
        ggml_tensor * f = norm(x, L.ffn_norm);
        f = mm(L.ffn_down, 6, ggml_swiglu_split(c, mm(L.ffn_gate, 4, f), mm(L.ffn_up, 5, f)));
        x = ggml_add(c, f, x);  // [d, R]
    }
    return x;
}

} // namespace

train_report train_coprocessor(std::shared_ptr<const model> target, const train_options & o) {
    const hparams & hp = target->hp;
    if (hp.n_vocab_extra > 0) fail("ERR_INVALID_OPTION", "a coprocessor is trained for a plain target model, not a Lexical Unit Decoding model");
    if (o.coproc_latents < 1 || o.coproc_latents > COPROC_MAX_LATENTS) {
        fail("ERR_INVALID_OPTION", format("latents must be 1..%u, got %u", COPROC_MAX_LATENTS, o.coproc_latents));
    }
    if (o.coproc_ahead < 1 || o.coproc_ahead > 256) fail("ERR_INVALID_OPTION", format("ahead must be 1..256, got %u", o.coproc_ahead));
    if (o.coproc_rank < 1 || o.coproc_rank > COPROC_MAX_RANK) fail("ERR_INVALID_OPTION", format("rank must be 1..%u, got %u", COPROC_MAX_RANK, o.coproc_rank));
    if (o.coproc_points < 1 || o.coproc_points > 64) fail("ERR_INVALID_OPTION", format("points must be 1..64, got %u", o.coproc_points));
    const uint32_t min_prefix = 4;
    const uint32_t min_len = min_prefix + o.coproc_ahead + 1;
    if (o.seq_len < min_len || o.seq_len + o.coproc_latents > hp.n_ctx_train) {
        fail("ERR_INVALID_OPTION", format("sequence length %u must be %u .. %u (ahead + 5 up to the context less the latents)", o.seq_len,
                min_len, hp.n_ctx_train > o.coproc_latents ? hp.n_ctx_train - o.coproc_latents : 0));
    }
    if (hp.n_embd_head_k != hp.n_embd_head_v) fail("ERR_INVALID_OPTION", "coprocessor training needs equal key and value head sizes");
    if ((size_t) hp.n_layer * (4 + 2 * COPROC_N_MATRICES) + 64 + 16 * (size_t) hp.n_layer > 1024) {
        fail("ERR_INVALID_OPTION", format("coprocessor training takes models of at most 30 layers; this one has %u", hp.n_layer));
    }
    dims D;
    D.W = o.seq_len;
    D.G = o.coproc_points;
    D.NL = o.coproc_latents;
    D.NA = o.coproc_ahead;
    D.R1 = D.G * D.NL;
    D.R2 = D.G * (D.NL + D.NA);
    D.d = hp.n_embd;
    D.hd = hp.n_embd_head_k;
    D.H = hp.n_head;
    D.Hkv = hp.n_head_kv;
    D.V = hp.n_vocab;
    const int64_t rank = o.coproc_rank;

    train_run run(o);
    train_report & rep = run.rep;
    session_params sp;
    sp.n_ctx = (uint32_t) D.W;
    sp.n_batch = (uint32_t) D.W;
    sp.n_threads = o.n_threads;
    session sess(target, sp);
    std::mt19937_64 rng(o.seed ^ 0xc0c0ull);

    // the unaugmented decoder over a window: its cache, and its loss on each point's ahead tokens
    std::vector<float> logits;
    auto prefill = [&](example & ex) {
        sess.truncate(0);
        sess.eval_chain(ex.win, /*all_logits =*/ true, /*invariant =*/ false, logits);
        rep.feature_tokens += ex.win.size();
        double sum = 0.0;
        for (int64_t s : ex.points) {
            for (int64_t j = 0; j < D.NA; ++j) {
                const float * l = logits.data() + (size_t) ((s + j) * D.V);
                const float mx = *std::max_element(l, l + D.V);
                double z = 0.0;
                for (int64_t t = 0; t < D.V; ++t) z += std::exp((double) (l[t] - mx));
                sum += (double) mx + std::log(z) - (double) l[ex.win[(size_t) (s + j + 1)]];
            }
        }
        ex.base_loss = sum / (double) (D.G * D.NA);
        sess.pause_threads();  // its threads must not spin while ggml-opt computes
    };
    auto draw_points = [&](example & ex, std::mt19937_64 & r) {
        const int64_t hi = (int64_t) ex.win.size() - 1 - D.NA;  // s + N_A <= n - 1
        ex.points.resize((size_t) D.G);
        for (auto & s : ex.points) s = std::uniform_int_distribution<int64_t>(min_prefix, hi)(r);
    };

    // held out: a few windows with fixed points
    run.report("features");
    std::vector<example> val;
    {
        const int64_t n_val = std::clamp<int64_t>((int64_t) o.val_max / (D.G * D.NA), 2, 16);
        corpus_windows vs(o.val_docs, (uint32_t) D.W, min_len, /*random =*/ true, o.seed ^ 0x5eedull);
        std::mt19937_64 vrng(o.seed ^ 0xa1dull);
        std::vector<int32_t> win;
        while ((int64_t) val.size() < n_val && vs.next(win)) {
            run.check_abort();
            example ex;
            ex.win = win;
            draw_points(ex, vrng);
            val.push_back(std::move(ex));
        }
    }
    if (val.empty()) {
        fail("ERR_INVALID_OPTION", format("the corpus is too short: its validation split has no window of %u tokens or more (give more text)", min_len));
    }
    rep.val_datapoints = (uint64_t) (val.size() * D.G * D.NA);

    // the frozen decoder in F32 (gradients pass through it), the coprocessor's trainable tensors, the constants
    ggml_context * cp = run.weights();
    trainable_llama w;
    trainable_llama_declare(cp, *target, w, /*trainable =*/ false);
    std::vector<adapter> ad((size_t) hp.n_layer * COPROC_N_MATRICES);
    for (uint32_t il = 0; il < hp.n_layer; ++il) {
        for (int j = 0; j < COPROC_N_MATRICES; ++j) {
            const ggml_tensor * m = coproc_matrix(target->layers[il], j);
            adapter & a = ad[(size_t) il * COPROC_N_MATRICES + j];
            a.a = ggml_new_tensor_2d(cp, GGML_TYPE_F32, m->ne[0], rank);
            a.b = ggml_new_tensor_2d(cp, GGML_TYPE_F32, rank, m->ne[1]);
            ggml_set_param(a.a);
            ggml_set_param(a.b);
        }
    }
    ggml_tensor * soft = ggml_new_tensor_2d(cp, GGML_TYPE_F32, D.d, D.NL);  // [d, N_L]
    ggml_set_param(soft);
    ggml_tensor * gain = ggml_new_tensor_1d(cp, GGML_TYPE_F32, D.d);
    ggml_set_param(gain);
    pass_inputs p1 = declare_pass(cp, D, D.R1, hp.n_layer);
    pass_inputs p2 = declare_pass(cp, D, D.R2, hp.n_layer);
    ggml_tensor * tok2 = ggml_new_tensor_1d(cp, GGML_TYPE_I32, D.R2);        // pass 2's tokens (0 on latent rows)
    ggml_tensor * tok_keep = ggml_new_tensor_2d(cp, GGML_TYPE_F32, 1, D.R2);  // 1 on ahead rows
    ggml_tensor * eye = ggml_new_tensor_2d(cp, GGML_TYPE_F32, D.d, D.d);
    ggml_tensor * place_lat = ggml_new_tensor_2d(cp, GGML_TYPE_F32, D.R1, D.R2);  // latent (g, i) -> pass 2 row g (N_L + N_A) + i
    ggml_tensor * ahead_ids = ggml_new_tensor_1d(cp, GGML_TYPE_I32, D.G * D.NA);  // pass 2's ahead rows
    run.alloc_weights();
    trainable_llama_load(w, *target);

    // initial values: B = 0 (the coprocessor is the decoder), A ~ N(0, 1 / n_in), the soft tokens the
    // embeddings of tokens drawn from the corpus, the gain the embeddings' RMS
    {
        std::normal_distribution<float> nd(0.0f, 1.0f);
        std::vector<float> v;
        for (auto & a : ad) {
            v.resize((size_t) ggml_nelements(a.a));
            const float sd = 1.0f / sqrtf((float) a.a->ne[0]);
            for (float & x : v) x = nd(rng) * sd;
            ggml_backend_tensor_set(a.a, v.data(), 0, ggml_nbytes(a.a));
        }
        std::vector<float> emb;
        tensor_to_f32(target->tok_embd, emb);
        double ss = 0.0;
        for (int64_t i = 0; i < D.d * D.V; ++i) ss += (double) emb[(size_t) i] * emb[(size_t) i];
        const float rms = (float) std::sqrt(ss / (double) (D.d * D.V));
        v.assign((size_t) D.d, rms);
        ggml_backend_tensor_set(gain, v.data(), 0, ggml_nbytes(gain));
        v.resize((size_t) (D.d * D.NL));
        std::vector<int32_t> win;
        corpus_windows src(o.train_docs, 64, 1, /*random =*/ true, o.seed ^ 0x50f7ull);
        for (int64_t i = 0; i < D.NL; ++i) {
            int32_t t = 0;
            if (src.next(win) && !win.empty()) t = win[(size_t) std::uniform_int_distribution<size_t>(0, win.size() - 1)(rng)];
            if (t < 0 || t >= (int32_t) D.V) t = 0;
            std::memcpy(v.data() + (size_t) (i * D.d), emb.data() + (size_t) t * D.d, (size_t) D.d * sizeof(float));
        }
        ggml_backend_tensor_set(soft, v.data(), 0, ggml_nbytes(soft));
        std::vector<float> e((size_t) (D.d * D.d), 0.0f);
        for (int64_t i = 0; i < D.d; ++i) e[(size_t) (i * D.d + i)] = 1.0f;
        ggml_backend_tensor_set(eye, e.data(), 0, ggml_nbytes(eye));
        std::vector<float> pl((size_t) (D.R1 * D.R2), 0.0f);
        std::vector<int32_t> ids((size_t) (D.G * D.NA));
        std::vector<float> keep((size_t) D.R2, 0.0f);
        for (int64_t g = 0; g < D.G; ++g) {
            for (int64_t i = 0; i < D.NL; ++i) pl[(size_t) ((g * D.NL + i) + D.R1 * (g * (D.NL + D.NA) + i))] = 1.0f;
            for (int64_t j = 0; j < D.NA; ++j) {
                ids[(size_t) (g * D.NA + j)] = (int32_t) (g * (D.NL + D.NA) + D.NL + j);
                keep[(size_t) (g * (D.NL + D.NA) + D.NL + j)] = 1.0f;
            }
        }
        ggml_backend_tensor_set(place_lat, pl.data(), 0, ggml_nbytes(place_lat));
        ggml_backend_tensor_set(ahead_ids, ids.data(), 0, ggml_nbytes(ahead_ids));
        ggml_backend_tensor_set(tok_keep, keep.data(), 0, ggml_nbytes(tok_keep));
        fill_pass_fixed(p1, D);
        fill_pass_fixed(p2, D);
    }

    // the graph, built anew for each step (it outgrows ggml-opt's static graphs)
    const size_t max_nodes = 4096 + 640 * (size_t) hp.n_layer;
    run.init_opt_rebuilt([&](ggml_context * c, size_t n_nodes) {
        // pass 1: the soft tokens, repeated per group -> the latents
        ggml_tensor * x1 = ggml_repeat(c, ggml_reshape_3d(c, soft, D.d, D.NL, 1), ggml_new_tensor_3d(c, GGML_TYPE_F32, D.d, D.NL, D.G));
        x1 = build_rows(c, w, &ad, ggml_reshape_2d(c, x1, D.d, D.R1), p1, D);                // [d, R1]
        ggml_tensor * lat = ggml_mul(c, ggml_rms_norm(c, x1, hp.f_norm_rms_eps), gain);       // [d, R1]
        // pass 2: the latents and the ahead tokens' embeddings in their rows
        ggml_tensor * lat_rows = ggml_mul_mat(c, ggml_mul_mat(c, lat, eye), place_lat);       // [d, R2] (lat^T, then placed)
        ggml_tensor * x2 = ggml_add(c, ggml_mul(c, ggml_get_rows(c, w.tok_embd, tok2), tok_keep), lat_rows);
        x2 = build_rows(c, w, nullptr, x2, p2, D);                                            // [d, R2]
        ggml_tensor * out = ggml_get_rows(c, x2, ahead_ids);                                  // [d, G N_A]
        out = ggml_mul(c, ggml_rms_norm(c, out, hp.f_norm_rms_eps), w.output_norm);
        ggml_tensor * lg = ggml_mul_mat(c, w.output, out);                                    // [V, G N_A]
        train_run::built_graph g;
        g.gf = ggml_new_graph_custom(c, n_nodes, /*grads =*/ true);
        ggml_build_forward_expand(g.gf, lg);
        g.inputs = tok2;
        g.outputs = lg;
        return g;
    }, max_nodes);

    // one example's constants; `control`: the ahead rows do not see the latents
    std::vector<int32_t> toks((size_t) D.R2);
    std::vector<float> labels((size_t) (D.V * D.G * D.NA));
    auto place = [&](const example & ex, bool control) {
        const int64_t n = (int64_t) ex.win.size();
        fill_cache(sess, (uint32_t) n, D, p1, p2);
        std::vector<int32_t> pos1((size_t) D.R1), pos2((size_t) D.R2);
        std::vector<float> m1((size_t) ((D.W + D.R1) * D.R1), -INFINITY), m2((size_t) ((D.W + D.R2) * D.R2), -INFINITY);
        std::fill(labels.begin(), labels.end(), 0.0f);
        for (int64_t g = 0; g < D.G; ++g) {
            const int64_t s = ex.points[(size_t) g];
            for (int64_t i = 0; i < D.NL; ++i) {
                const int64_t r = g * D.NL + i;
                pos1[(size_t) r] = (int32_t) s;
                float * row = m1.data() + (size_t) (r * (D.W + D.R1));
                for (int64_t c = 0; c < s; ++c) row[c] = 0.0f;
                for (int64_t i2 = 0; i2 <= i; ++i2) row[D.W + g * D.NL + i2] = 0.0f;
            }
            for (int64_t t = 0; t < D.NL + D.NA; ++t) {
                const int64_t r = g * (D.NL + D.NA) + t;
                pos2[(size_t) r] = (int32_t) (t < D.NL ? s : s + t - D.NL);
                toks[(size_t) r] = t < D.NL ? 0 : ex.win[(size_t) (s + t - D.NL)];
                float * row = m2.data() + (size_t) (r * (D.W + D.R2));
                for (int64_t c = 0; c < s; ++c) row[c] = 0.0f;
                for (int64_t t2 = (control && t >= D.NL) ? D.NL : 0; t2 <= t; ++t2) row[D.W + g * (D.NL + D.NA) + t2] = 0.0f;
            }
            for (int64_t j = 0; j < D.NA; ++j) labels[(size_t) ((g * D.NA + j) * D.V + ex.win[(size_t) (s + j + 1)])] = 1.0f;
        }
        ggml_backend_tensor_set(p1.pos, pos1.data(), 0, ggml_nbytes(p1.pos));
        ggml_backend_tensor_set(p2.pos, pos2.data(), 0, ggml_nbytes(p2.pos));
        ggml_backend_tensor_set(p1.mask, m1.data(), 0, ggml_nbytes(p1.mask));
        ggml_backend_tensor_set(p2.mask, m2.data(), 0, ggml_nbytes(p2.mask));
    };
    auto fill = [&](ggml_tensor * in, ggml_tensor * lab) {
        ggml_backend_tensor_set(in, toks.data(), 0, ggml_nbytes(in));
        ggml_backend_tensor_set(lab, labels.data(), 0, ggml_nbytes(lab));
    };
    // held-out mean cross-entropy of the ahead tokens (augmented, or the control) and top-1 accuracy
    auto validate = [&](bool control, double & loss, double & acc) {
        double sum = 0.0, hit = 0.0;
        std::vector<int32_t> pred;
        for (auto & ex : val) {
            prefill(ex);
            place(ex, control);
            double l = 0.0;
            run.eval_with(fill, l, &pred);
            sum += l;
            for (int64_t r = 0; r < D.G * D.NA; ++r) {
                const int64_t g = r / D.NA, j = r % D.NA;
                hit += pred[(size_t) r] == ex.win[(size_t) (ex.points[(size_t) g] + j + 1)] ? 1.0 : 0.0;
            }
        }
        loss = sum / (double) val.size();
        acc = hit / (double) (val.size() * D.G * D.NA);
    };

    run.report("validate");
    {
        double base = 0.0;
        for (auto & ex : val) {
            prefill(ex);
            base += ex.base_loss;
        }
        rep.val_loss_base = base / (double) val.size();
        double acc;
        validate(/*control =*/ true, rep.val_loss_control, acc);
        validate(/*control =*/ false, rep.val_loss_before, rep.val_accuracy_before);
    }
    run.pr.val_loss = rep.val_loss_before;
    run.pr.val_accuracy = rep.val_accuracy_before;
    run.report("train");

    corpus_windows src(o.train_docs, (uint32_t) D.W, min_len, /*random =*/ true, o.seed);
    example ex;
    double loss_sum = 0.0, loss_n = 0.0;
    while (run.budget_left()) {
        if (!src.next(ex.win)) {
            fail("ERR_INVALID_OPTION", format("the corpus is too short: its training split has no window of %u tokens or more (give more text)", min_len));
        }
        run.check_abort();
        draw_points(ex, rng);
        prefill(ex);
        place(ex, false);
        run.reset_train_loss();
        run.step_with(fill, (uint64_t) (D.G * D.NA));
        loss_sum += run.train_loss();
        loss_n += 1.0;
        if (rep.steps % 4 == 0) {
            run.pr.train_loss = loss_sum / loss_n;
            loss_sum = loss_n = 0.0;
            run.report("train");
        }
        if (rep.steps % 50 == 0 && run.budget_left()) {
            run.report("validate");
            validate(false, run.pr.val_loss, run.pr.val_accuracy);
            run.report("train");
        }
    }

    run.report("validate");
    validate(false, rep.val_loss_after, rep.val_accuracy_after);
    run.pr.val_loss = rep.val_loss_after;
    run.pr.val_accuracy = rep.val_accuracy_after;
    run.check_abort();

    run.report("write");
    coproc_weights cw;
    cw.n_latents = (uint32_t) D.NL;
    cw.rank = (uint32_t) rank;
    cw.scale = 1.0f;
    cw.ahead = (uint32_t) D.NA;
    cw.trained_tokens = rep.tokens;
    auto get = [](ggml_tensor * t, std::vector<float> & v) {
        v.resize((size_t) ggml_nelements(t));
        ggml_backend_tensor_get(t, v.data(), 0, ggml_nbytes(t));
    };
    get(soft, cw.soft);
    get(gain, cw.latent_norm);
    cw.a.resize(ad.size());
    cw.b.resize(ad.size());
    for (size_t k = 0; k < ad.size(); ++k) {
        get(ad[k].a, cw.a[k]);
        get(ad[k].b, cw.b[k]);
    }
    coproc_write(o.out, *target, cw);
    rep.seconds = run.seconds();
    return rep;
}

} // namespace specdec
