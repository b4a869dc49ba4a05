#include "heads/eagle3_runner.h"

#include "common/error.h"
#include "kernels/ggml_ops.h"

#include <cmath>

namespace specdec {

static draft_layer_runner::layer_shape shape_of(const eagle3_heads & h) {
    return { h.n_embd_head, h.n_head, h.n_head_kv, (int) h.n_ctx, h.rope_base };
}

eagle3_runner::eagle3_runner(std::shared_ptr<const eagle3_heads> heads, std::shared_ptr<const model> target, int n_threads, uint32_t n_ctx)
    : draft_layer_runner("EAGLE-3", shape_of(*heads), n_threads, n_ctx), hd(std::move(heads)), tgt(std::move(target)) {
    const eagle3_heads & h = *hd;
    h.check_target(*tgt, "the EAGLE-3 heads");
    const int64_t d = h.n_embd, dt = h.target_hidden, ff = h.n_ff, nq = h.n_q(), nkv = h.n_kv();
    w.fc = mat(3 * dt, d);
    w.attn_norm = vec(d);
    w.hidden_norm = vec(d);
    w.wq = mat(2 * d, nq);
    w.wk = mat(2 * d, nkv);
    w.wv = mat(2 * d, nkv);
    w.wo = mat(nq, d);
    w.ffn_norm = vec(d);
    w.gate = mat(d, ff);
    w.up = mat(d, ff);
    w.down = mat(ff, d);
    w.out_norm = vec(d);
    if (!h.output.empty()) w.output = mat(d, h.n_draft_vocab);
    if (!h.tok_embd.empty()) w.tok_embd = f32(d, h.target_vocab);
    alloc_weights();
    set(w.fc, h.fc);
    set(w.attn_norm, h.attn_norm);
    set(w.hidden_norm, h.hidden_norm);
    set(w.wq, h.wq);
    set(w.wk, h.wk);
    set(w.wv, h.wv);
    set(w.wo, h.wo);
    set(w.ffn_norm, h.ffn_norm);
    set(w.gate, h.ffn_gate);
    set(w.up, h.ffn_up);
    set(w.down, h.ffn_down);
    set(w.out_norm, h.out_norm);
    if (w.output) set(w.output, h.output);
    if (w.tok_embd) set(w.tok_embd, h.tok_embd);
}

void eagle3_runner::eval(const draft_rows & r, const std::vector<uint32_t> & logit_rows, std::vector<float> & h_out, std::vector<float> & logits) {
    const eagle3_heads & h = *hd;
    graph gr;
    begin(gr, r, logit_rows, h.target_vocab, true);
    const int64_t n = gr.n;
    const int64_t d = h.n_embd, dt = h.target_hidden;
    std::vector<int32_t> toks((size_t) n);  // token P + 1 of each element
    for (int64_t i = 0; i < n; ++i) {
        toks[(size_t) i] = r.tri[(size_t) i * 3 + 2];
        if (toks[(size_t) i] < 0) fail("ERR_TOKEN_OUT_OF_RANGE", "an EAGLE-3 element needs its token P + 1");
    }
    ggml_context * c = gr.c;
    ggml_tensor * tokens = ggml_new_tensor_1d(c, GGML_TYPE_I32, n);
    ggml_tensor * in = ggml_new_tensor_2d(c, GGML_TYPE_F32, r.from_target ? 3 * dt : d, n);
    ggml_set_input(tokens);
    ggml_set_input(in);
    const float eps = h.eps;
    ggml_tensor * g   = r.from_target ? mm(gr, w.fc, in) : in;                                     // [d, n]
    ggml_tensor * emb = ggml_get_rows(c, w.tok_embd ? w.tok_embd : tgt->tok_embd, tokens);          // [d, n]
    ggml_tensor * en  = ggml_mul(c, ggml_rms_norm(c, emb, eps), w.attn_norm);
    ggml_tensor * gn  = ggml_mul(c, ggml_rms_norm(c, g, eps), w.hidden_norm);
    ggml_tensor * cat = ggml_cont(c, ggml_concat(c, en, gn, 0));                                   // [2d, n]
    ggml_tensor * q   = mm(gr, w.wq, cat);                                                         // [nq, n]
    ggml_tensor * k   = mm(gr, w.wk, cat);                                                         // [nkv, n]
    ggml_tensor * v   = mm(gr, w.wv, cat);                                                         // [nkv, n]
    ggml_tensor * o   = mm(gr, w.wo, attention(gr, q, k, v));                                      // [d, n]
    ggml_tensor * x = ggml_add(c, o, h.norm_before_residual ? gn : g);
    ggml_tensor * f = ggml_mul(c, ggml_rms_norm(c, x, eps), w.ffn_norm);
    f = mm(gr, w.down, ggml_swiglu_split(c, mm(gr, w.gate, f), mm(gr, w.up, f)));
    ggml_tensor * hp = ggml_add(c, f, x);                                                          // [d, n]: pre-norm output
    ggml_set_output(hp);
    ggml_build_forward_expand(gr.gf, hp);
    ggml_tensor * y = ggml_mul(c, ggml_rms_norm(c, ggml_get_rows(c, hp, gr.out_ids), eps), w.out_norm);  // [d, n_out]
    ggml_tensor * lg;
    const kernels::packed_weights * pw = (!w.output && tgt->kind == BACKEND_CPU) ? tgt->packed_for(tgt->output) : nullptr;
    if (w.output) {
        lg = mm(gr, w.output, y);
    } else if (pw) {
        lg = kernels::op_gemm(c, pw, kernels::op_quantize_act(c, y, kernels::act_type_for(pw->type)));
    } else {
        lg = ggml_mul_mat(c, tgt->output, y);
    }
    ggml_set_output(lg);
    ggml_build_forward_expand(gr.gf, lg);
    run(gr, r, logit_rows, [&] {
        ggml_backend_tensor_set(tokens, toks.data(), 0, (size_t) n * sizeof(int32_t));
        ggml_backend_tensor_set(in, r.in, 0, ggml_nbytes(in));
    });

    h_out.resize((size_t) n * d);
    ggml_backend_tensor_get(hp, h_out.data(), 0, h_out.size() * sizeof(float));
    const int64_t nv = h.target_vocab, Vd = h.n_draft_vocab;
    if (h.d2t.empty()) {
        logits.resize(logit_rows.size() * nv);
        ggml_backend_tensor_get(lg, logits.data(), 0, logits.size() * sizeof(float));
    } else {
        std::vector<float> raw(logit_rows.size() * Vd);
        ggml_backend_tensor_get(lg, raw.data(), 0, raw.size() * sizeof(float));
        logits.assign(logit_rows.size() * nv, -INFINITY);
        for (size_t o = 0; o < logit_rows.size(); ++o) {
            for (int64_t j = 0; j < Vd; ++j) logits[o * nv + h.d2t[j]] = raw[o * Vd + j];
        }
    }
}

} // namespace specdec
