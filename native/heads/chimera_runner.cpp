#include "heads/chimera_runner.h"

#include "common/error.h"
#include "heads/medusa_heads.h"
#include "kernels/ggml_ops.h"

#include <cstring>

namespace specdec {

static draft_layer_runner::layer_shape shape_of(const chimera_heads & h) {
    return { h.n_embd_head, h.n_head, h.n_head_kv, (int) h.n_ctx, h.rope_base };
}

chimera_runner::chimera_runner(std::shared_ptr<const chimera_heads> heads, std::shared_ptr<const model> target, int n_threads, uint32_t n_ctx)
    : draft_layer_runner("Chimera", shape_of(*heads), n_threads, n_ctx), hd(std::move(heads)), tgt(std::move(target)) {
    const chimera_heads & h = *hd;
    h.check_target(*tgt, "the Chimera heads");
    tensor_to_f32(tgt->tok_embd, tok_embd);
    const int64_t d = h.n_embd, ff = h.n_ff, nq = h.n_q(), nkv = h.n_kv();
    w.tri_w = mat(3 * d, 3 * d);
    w.tri_b = vec(3 * d);
    w.tri_out = mat(3 * d, d);
    w.hidden_norm = vec(d);
    w.attn_norm = vec(d);
    w.wq = mat(d, nq);
    w.wk = mat(d, nkv);
    w.wv = mat(d, nkv);
    w.wo = mat(nq, d);
    w.ffn_norm = vec(d);
    w.gate = mat(d, ff);
    w.up = mat(d, ff);
    w.down = mat(ff, d);
    w.head_h = mat(d, d);
    w.head_o = mat(d, d);
    w.head_b = vec(d);
    w.out_norm = vec(d);
    alloc_weights();
    set(w.tri_w, h.tri_w);
    set(w.tri_b, h.tri_b);
    set(w.tri_out, h.tri_out);
    set(w.hidden_norm, h.hidden_norm);
    set(w.attn_norm, h.attn_norm);
    set(w.wq, h.wq);
    set(w.wk, h.wk);
    set(w.wv, h.wv);
    set(w.wo, h.wo);
    set(w.ffn_norm, h.ffn_norm);
    set(w.gate, h.ffn_gate);
    set(w.up, h.ffn_up);
    set(w.down, h.ffn_down);
    set(w.head_h, h.head_h);
    set(w.head_o, h.head_o);
    set(w.head_b, h.head_b);
    set(w.out_norm, h.out_norm);
}

void chimera_runner::eval(const draft_rows & r, const std::vector<uint32_t> & logit_rows, std::vector<float> & o_out, std::vector<float> & logits) {
    const chimera_heads & h = *hd;
    graph gr;
    begin(gr, r, logit_rows, h.n_vocab, true);
    const int64_t n = gr.n;
    const int64_t d = h.n_embd;
    // the trigram's embeddings, side by side (the target's embeddings are frozen: no gradient needs them in a graph)
    tri_in.assign((size_t) n * 3 * d, 0.0f);
    for (int64_t i = 0; i < n; ++i) {
        for (int j = 0; j < 3; ++j) {
            const int32_t t = r.tri[(size_t) i * 3 + j];
            if (t >= 0) std::memcpy(tri_in.data() + ((size_t) i * 3 + j) * d, tok_embd.data() + (size_t) t * d, d * sizeof(float));
        }
    }
    ggml_context * c = gr.c;
    ggml_tensor * tri = ggml_new_tensor_2d(c, GGML_TYPE_F32, 3 * d, n);
    ggml_tensor * hin = ggml_new_tensor_2d(c, GGML_TYPE_F32, d, n);
    ggml_set_input(tri);
    ggml_set_input(hin);
    const float eps = h.eps;
    auto norm = [&](ggml_tensor * x, ggml_tensor * wn) { return ggml_mul(c, ggml_rms_norm(c, x, eps), wn); };
    // trigram encoder
    ggml_tensor * c2 = ggml_add(c, tri, ggml_silu(c, ggml_add(c, mm(gr, w.tri_w, tri), w.tri_b)));  // [3d, n]
    ggml_tensor * g  = mm(gr, w.tri_out, c2);                                                        // [d, n]
    ggml_tensor * hn = norm(hin, w.hidden_norm);                                                     // [d, n]
    ggml_tensor * u  = ggml_add(c, hn, g);                                                           // [d, n]
    // the decoder layer
    ggml_tensor * an = norm(u, w.attn_norm);
    ggml_tensor * q  = mm(gr, w.wq, an);                                                             // [nq, n]
    ggml_tensor * k  = mm(gr, w.wk, an);                                                             // [nkv, n]
    ggml_tensor * v  = mm(gr, w.wv, an);                                                             // [nkv, n]
    ggml_tensor * x  = ggml_add(c, mm(gr, w.wo, attention(gr, q, k, v)), u);                        // [d, n]
    ggml_tensor * f  = norm(x, w.ffn_norm);
    f = mm(gr, w.down, ggml_swiglu_split(c, mm(gr, w.gate, f), mm(gr, w.up, f)));
    ggml_tensor * o = ggml_add(c, f, x);                                                            // [d, n]: the layer output (stand-in)
    ggml_set_output(o);
    ggml_build_forward_expand(gr.gf, o);
    // the residual decoding head over [hn; o], on the rows whose logits are wanted
    ggml_tensor * hn_r = ggml_get_rows(c, hn, gr.out_ids);                                          // [d, n_out]
    ggml_tensor * o_r  = ggml_get_rows(c, o, gr.out_ids);
    ggml_tensor * z = ggml_add(c, o_r, ggml_silu(c, ggml_add(c, ggml_add(c, mm(gr, w.head_h, hn_r), mm(gr, w.head_o, o_r)), w.head_b)));
    ggml_tensor * y = norm(z, w.out_norm);                                                          // [d, n_out]
    const kernels::packed_weights * pw = tgt->kind == BACKEND_CPU ? tgt->packed_for(tgt->output) : nullptr;
    ggml_tensor * lg = pw ? kernels::op_gemm(c, pw, kernels::op_quantize_act(c, y, kernels::act_type_for(pw->type)))
                          : ggml_mul_mat(c, tgt->output, y);                                       // [V, n_out]
    ggml_set_output(lg);
    ggml_build_forward_expand(gr.gf, lg);
    run(gr, r, logit_rows, [&] {
        ggml_backend_tensor_set(tri, tri_in.data(), 0, ggml_nbytes(tri));
        ggml_backend_tensor_set(hin, r.in, 0, ggml_nbytes(hin));
    });

    o_out.resize((size_t) n * d);
    ggml_backend_tensor_get(o, o_out.data(), 0, o_out.size() * sizeof(float));
    logits.resize(logit_rows.size() * (size_t) h.n_vocab);
    ggml_backend_tensor_get(lg, logits.data(), 0, logits.size() * sizeof(float));
}

} // namespace specdec
