#include "train/llama_trainable.h"

#include "common/error.h"
#include "heads/medusa_heads.h"  // tensor_to_f32

#include "ggml-backend.h"

#include <cmath>
#include <cstring>

namespace specdec {

void trainable_llama_declare(ggml_context * ctx, const model & src, trainable_llama & out, bool trainable_copy) {
    out.hp = src.hp;
    out.params.clear();
    auto dup = [&](const ggml_tensor * t, bool trainable) -> ggml_tensor * {
        if (!t) return nullptr;
        ggml_tensor * x = ggml_new_tensor(ctx, GGML_TYPE_F32, ggml_n_dims(t), t->ne);
        ggml_set_name(x, t->name);
        if (trainable) {
            if (trainable_copy) ggml_set_param(x);
            out.params.push_back({ x, t });
        }
        return x;
    };
    out.tok_embd = dup(src.tok_embd, true);
    out.layers.resize(src.layers.size());
    for (size_t il = 0; il < src.layers.size(); ++il) {
        const layer_weights & s = src.layers[il];
        layer_weights & d = out.layers[il];
        d.attn_norm = dup(s.attn_norm, true);
        d.wq = dup(s.wq, true);
        d.wk = dup(s.wk, true);
        d.wv = dup(s.wv, true);
        d.wo = dup(s.wo, true);
        d.bq = dup(s.bq, true);
        d.bk = dup(s.bk, true);
        d.bv = dup(s.bv, true);
        d.bo = dup(s.bo, true);
        d.q_norm = dup(s.q_norm, true);
        d.k_norm = dup(s.k_norm, true);
        d.ffn_norm = dup(s.ffn_norm, true);
        d.ffn_gate = dup(s.ffn_gate, true);
        d.ffn_up = dup(s.ffn_up, true);
        d.ffn_down = dup(s.ffn_down, true);
    }
    out.output_norm = dup(src.output_norm, true);
    out.output = src.output == src.tok_embd ? out.tok_embd : dup(src.output, true);
    out.rope_freqs = dup(src.rope_freqs, false);
}

void trainable_llama_load(const trainable_llama & w, const model & src) {
    std::vector<float> v;
    for (const auto & [x, t] : w.params) {
        tensor_to_f32(t, v);
        ggml_backend_tensor_set(x, v.data(), 0, ggml_nbytes(x));
    }
    if (w.rope_freqs) {
        tensor_to_f32(src.rope_freqs, v);
        ggml_backend_tensor_set(w.rope_freqs, v.data(), 0, ggml_nbytes(w.rope_freqs));
    }
}

void trainable_llama_store(const trainable_llama & w, model & dst) {
    // the clone's tensors are the same weights in the same order (model_clone_f32 of the source)
    auto find = [&](const ggml_tensor * src_t) -> ggml_tensor * {
        ggml_tensor * t = ggml_get_tensor(dst.ctx_w, src_t->name);
        if (!t || t->type != GGML_TYPE_F32 || !ggml_are_same_shape(t, src_t)) {
            fail("ERR_INTERNAL", format("the online copy has no F32 tensor '%s'", src_t->name));
        }
        return t;
    };
    for (const auto & [x, t] : w.params) ggml_backend_tensor_get(x, find(x)->data, 0, ggml_nbytes(x));
}

int64_t trainable_llama_size(const trainable_llama & w) {
    int64_t n = 0;
    for (const auto & p : w.params) n += ggml_nelements(p.first);
    return n;
}

ggml_tensor * build_llama_train_logits(ggml_context * c, const trainable_llama & w, ggml_tensor * tokens,
                                       ggml_tensor * pos, ggml_tensor * mask, int64_t T, int64_t B) {
    const hparams & hp = w.hp;
    const int64_t d = hp.n_embd, hd = hp.n_embd_head_k, H = hp.n_head, Hkv = hp.n_head_kv;
    const int64_t TB = T * B;
    const float eps = hp.f_norm_rms_eps;
    const float scale = hp.f_attn_scale != 0.0f ? hp.f_attn_scale : 1.0f / sqrtf((float) hd);
    auto norm = [&](ggml_tensor * x, ggml_tensor * g) { return ggml_mul(c, ggml_rms_norm(c, x, eps), g); };
    auto rope = [&](ggml_tensor * x) {  // x: [hd, heads, T, B]
        return ggml_rope_ext(c, x, pos, w.rope_freqs, (int) hp.n_rot, hp.rope_type, (int) hp.n_ctx_orig, hp.rope_freq_base,
                             hp.rope_freq_scale, hp.yarn_ext_factor, hp.yarn_attn_factor, hp.yarn_beta_fast, hp.yarn_beta_slow);
    };
    // per-head layout [hd, T, heads, B], contiguous (ggml's CPU backward kernels read rows by nb[1])
    auto heads_of = [&](ggml_tensor * x, ggml_tensor * g_norm, int64_t nh) {
        ggml_tensor * t = ggml_reshape_4d(c, x, hd, nh, T, B);  // [hd, nh, T, B]
        if (g_norm) t = norm(t, g_norm);
        t = rope(t);
        return ggml_cont(c, ggml_permute(c, t, 0, 2, 1, 3));    // [hd, T, nh, B]
    };

    ggml_tensor * x = ggml_get_rows(c, w.tok_embd, tokens);  // [d, T B]
    for (const layer_weights & L : w.layers) {
        ggml_tensor * h = norm(x, L.attn_norm);  // [d, T B]
        ggml_tensor * q = ggml_mul_mat(c, L.wq, h);  // [hd H, T B]
        if (L.bq) q = ggml_add(c, q, L.bq);
        ggml_tensor * k = ggml_mul_mat(c, L.wk, h);  // [hd Hkv, T B]
        if (L.bk) k = ggml_add(c, k, L.bk);
        q = heads_of(q, L.q_norm, H);    // [hd, T, H, B]
        k = heads_of(k, L.k_norm, Hkv);  // [hd, T, Hkv, B]
        // V transposed per window, as h^T Wv (a transposing permute would reach a binary op in the
        // backward pass, which ggml's CPU kernels refuse): [T, hd Hkv, B]
        ggml_tensor * h3 = ggml_reshape_3d(c, h, d, T, B);
        ggml_tensor * wv = L.wv;
        if (B > 1) wv = ggml_repeat(c, ggml_reshape_3d(c, wv, wv->ne[0], wv->ne[1], 1), ggml_new_tensor_3d(c, GGML_TYPE_F32, wv->ne[0], wv->ne[1], B));
        ggml_tensor * vt = ggml_mul_mat(c, h3, wv);  // [T, hd Hkv, B]
        if (L.bv) vt = ggml_add(c, vt, ggml_reshape_3d(c, L.bv, 1, L.bv->ne[0], 1));
        vt = ggml_reshape_4d(c, vt, T, hd, Hkv, B);  // [T, hd, Hkv, B]
        // attention: the query heads of a group share their key/value head (mul_mat broadcasts dim 2)
        ggml_tensor * kq = ggml_soft_max_ext(c, ggml_mul_mat(c, k, q), mask, scale, 0.0f);  // [T keys, T rows, H, B]
        ggml_tensor * att = ggml_mul_mat(c, vt, kq);                                         // [hd, T, H, B]
        att = ggml_reshape_2d(c, ggml_cont(c, ggml_permute(c, att, 0, 2, 1, 3)), hd * H, TB);  // [hd H, T B]
        ggml_tensor * o = ggml_mul_mat(c, L.wo, att);  // [d, T B]
        if (L.bo) o = ggml_add(c, o, L.bo);
        x = ggml_add(c, o, x);
        ggml_tensor * f = norm(x, L.ffn_norm);
        f = ggml_mul_mat(c, L.ffn_down, ggml_swiglu_split(c, ggml_mul_mat(c, L.ffn_gate, f), ggml_mul_mat(c, L.ffn_up, f)));
        x = ggml_add(c, f, x);  // [d, T B]
    }
    return ggml_mul_mat(c, w.output, norm(x, w.output_norm));  // [n_vocab, T B]
}

} // namespace specdec
