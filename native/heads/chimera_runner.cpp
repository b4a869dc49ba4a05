#include "heads/chimera_runner.h"

#include "common/error.h"
#include "heads/medusa_heads.h"
#include "kernels/ggml_ops.h"

#include "ggml-alloc.h"

#include <cmath>
#include <cstring>

namespace specdec {

static bool abort_cb(void * data) { return static_cast<std::atomic<bool> *>(data)->load(std::memory_order_relaxed); }

chimera_runner::chimera_runner(std::shared_ptr<const chimera_heads> heads, std::shared_ptr<const model> target, int n_threads, uint32_t n_ctx)
    : hd(std::move(heads)), tgt(std::move(target)), n_cells(n_ctx) {
    const chimera_heads & h = *hd;
    h.check_target(*tgt, "the Chimera heads");
    tensor_to_f32(tgt->tok_embd, tok_embd);
    backend = ggml_backend_cpu_init();
    if (!backend) fail("ERR_BACKEND_UNAVAILABLE", "cannot start the CPU backend");
    ggml_threadpool_params tpp = ggml_threadpool_params_default(n_threads);
    threadpool = ggml_threadpool_new(&tpp);
    if (!threadpool) {
        ggml_backend_free(backend);
        fail("ERR_BACKEND_UNAVAILABLE", format("cannot start %d compute threads", n_threads));
    }
    ggml_backend_cpu_set_n_threads(backend, n_threads);
    ggml_backend_cpu_set_threadpool(backend, threadpool);
    ggml_backend_cpu_set_abort_callback(backend, abort_cb, &abort_flag);

    const int64_t d = h.n_embd, ff = h.n_ff, nq = h.n_q(), nkv = h.n_kv();
    ctx_w = ggml_init({ ggml_tensor_overhead() * 32, nullptr, true });
    // the matrices as Q8_0 (a draft step reads a quarter of the bytes), vectors f32
    auto mat = [&](int64_t k, int64_t m) { return ggml_new_tensor_2d(ctx_w, k % 32 == 0 ? GGML_TYPE_Q8_0 : GGML_TYPE_F32, k, m); };
    auto vec = [&](int64_t k) { return ggml_new_tensor_1d(ctx_w, GGML_TYPE_F32, k); };
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
    w.k_cache = ggml_new_tensor_2d(ctx_w, GGML_TYPE_F16, nkv, n_cells);
    w.v_cache = ggml_new_tensor_2d(ctx_w, GGML_TYPE_F16, nkv, n_cells);
    buf_w = ggml_backend_alloc_ctx_tensors(ctx_w, backend);
    if (!buf_w) {
        ggml_free(ctx_w);
        ggml_threadpool_free(threadpool);
        ggml_backend_free(backend);
        fail("ERR_BACKEND_UNAVAILABLE", "cannot allocate the Chimera weights and cache");
    }
    auto set = [&](ggml_tensor * t, const std::vector<float> & v) {
        if (t->type == GGML_TYPE_F32) {
            ggml_backend_tensor_set(t, v.data(), 0, ggml_nbytes(t));
            return;
        }
        std::vector<uint8_t> q(ggml_nbytes(t));
        ggml_quantize_chunk(t->type, v.data(), q.data(), 0, t->ne[1], t->ne[0], nullptr);
        ggml_backend_tensor_set(t, q.data(), 0, q.size());
        if (auto p = kernels::pack_weights(kernels::wtype::q8_0, q.data(), t->ne[1], t->ne[0], kernels::default_isa())) {
            packed.emplace_back(t, std::move(p));
        }
    };
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
    galloc = ggml_gallocr_new(ggml_backend_get_default_buffer_type(backend));
    graph_buf.resize(ggml_tensor_overhead() * 256 + ggml_graph_overhead());
}

chimera_runner::~chimera_runner() {
    if (galloc) ggml_gallocr_free(galloc);
    if (buf_w) ggml_backend_buffer_free(buf_w);
    if (ctx_w) ggml_free(ctx_w);
    if (backend) ggml_backend_free(backend);
    if (threadpool) ggml_threadpool_free(threadpool);
}

void chimera_runner::pause_threads() {
    if (threadpool) ggml_threadpool_pause(threadpool);
}

void chimera_runner::eval(const rows & r, const std::vector<uint32_t> & logit_rows, std::vector<float> & o_out, std::vector<float> & logits) {
    const chimera_heads & h = *hd;
    const int64_t n = (int64_t) r.pos.size();
    const int64_t d = h.n_embd, nq = h.n_q(), nkv = h.n_kv(), hd_ = h.n_embd_head;
    const uint32_t cell0 = n_used;
    if (n == 0 || logit_rows.empty() || r.tri.size() != (size_t) n * 3 || r.prefix.size() != (size_t) n || !r.h) {
        fail("ERR_INTERNAL", "a Chimera evaluation needs rows, their trigrams, positions, prefixes and hidden states, and outputs");
    }
    if (cell0 + n > n_cells) fail("ERR_CONTEXT_OVERFLOW", "the Chimera draft cache is full");
    const int64_t n_kv = cell0 + n;
    // the trigram's embeddings, side by side (the target's embeddings are frozen: no gradient needs them in a graph)
    tri_in.assign((size_t) n * 3 * d, 0.0f);
    for (int64_t i = 0; i < n; ++i) {
        for (int j = 0; j < 3; ++j) {
            const int32_t t = r.tri[(size_t) i * 3 + j];
            if (t < 0) continue;
            if ((uint32_t) t >= h.n_vocab) fail("ERR_TOKEN_OUT_OF_RANGE", format("token id %d is out of range", t));
            std::memcpy(tri_in.data() + ((size_t) i * 3 + j) * d, tok_embd.data() + (size_t) t * d, d * sizeof(float));
        }
    }

    ggml_context * c = ggml_init({ graph_buf.size(), graph_buf.data(), true });
    struct guard_t { ggml_context * c; ~guard_t() { ggml_free(c); } } guard { c };
    ggml_cgraph * gf = ggml_new_graph(c);

    ggml_tensor * tri     = ggml_new_tensor_2d(c, GGML_TYPE_F32, 3 * d, n);
    ggml_tensor * hin     = ggml_new_tensor_2d(c, GGML_TYPE_F32, d, n);
    ggml_tensor * pos     = ggml_new_tensor_1d(c, GGML_TYPE_I32, n);
    ggml_tensor * idx     = ggml_new_tensor_1d(c, GGML_TYPE_I64, n);
    ggml_tensor * mask    = ggml_new_tensor_2d(c, GGML_TYPE_F16, n_kv, n);
    ggml_tensor * out_ids = ggml_new_tensor_1d(c, GGML_TYPE_I32, (int64_t) logit_rows.size());
    for (ggml_tensor * t : { tri, hin, pos, idx, mask, out_ids }) ggml_set_input(t);

    const float eps = h.eps;
    std::vector<std::pair<ggml_tensor *, ggml_tensor *>> qacts;
    auto mm = [&](ggml_tensor * wt, ggml_tensor * x) -> ggml_tensor * {
        for (const auto & p : packed) {
            if (p.first != wt) continue;
            ggml_tensor * qx = nullptr;
            for (const auto & e : qacts) if (e.first == x) qx = e.second;
            if (!qx) {
                qx = kernels::op_quantize_act(c, x, kernels::act_type_for(p.second->type));
                qacts.push_back({ x, qx });
            }
            return kernels::op_gemm(c, p.second.get(), qx);
        }
        return ggml_mul_mat(c, wt, x);
    };
    auto norm = [&](ggml_tensor * x, ggml_tensor * wn) { return ggml_mul(c, ggml_rms_norm(c, x, eps), wn); };
    // trigram encoder
    ggml_tensor * c2 = ggml_add(c, tri, ggml_silu(c, ggml_add(c, mm(w.tri_w, tri), w.tri_b)));     // [3d, n]
    ggml_tensor * g  = mm(w.tri_out, c2);                                                           // [d, n]
    ggml_tensor * hn = norm(hin, w.hidden_norm);                                                    // [d, n]
    ggml_tensor * u  = ggml_add(c, hn, g);                                                          // [d, n]
    // the decoder layer
    ggml_tensor * an = norm(u, w.attn_norm);
    ggml_tensor * q = ggml_reshape_3d(c, mm(w.wq, an), hd_, h.n_head, n);                          // [hd, H, n]
    ggml_tensor * k = ggml_reshape_3d(c, mm(w.wk, an), hd_, h.n_head_kv, n);                       // [hd, Hkv, n]
    ggml_tensor * v = mm(w.wv, an);                                                                 // [nkv, n]
    q = ggml_rope_ext(c, q, pos, nullptr, (int) hd_, 0 /* NORM */, (int) h.n_ctx, h.rope_base, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f);
    k = ggml_rope_ext(c, k, pos, nullptr, (int) hd_, 0, (int) h.n_ctx, h.rope_base, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f);
    ggml_tensor * k_st = ggml_set_rows(c, w.k_cache, ggml_reshape_2d(c, k, nkv, n), idx);          // the cache, written
    ggml_tensor * v_st = ggml_set_rows(c, w.v_cache, v, idx);
    ggml_build_forward_expand(gf, k_st);
    ggml_build_forward_expand(gf, v_st);
    const size_t eb = ggml_element_size(w.k_cache);
    ggml_tensor * K = ggml_permute(c, ggml_view_3d(c, k_st, hd_, h.n_head_kv, n_kv, hd_ * eb, nkv * eb, 0), 0, 2, 1, 3);  // [hd, n_kv, Hkv]
    ggml_tensor * V = ggml_permute(c, ggml_view_3d(c, v_st, hd_, h.n_head_kv, n_kv, hd_ * eb, nkv * eb, 0), 0, 2, 1, 3);  // [hd, n_kv, Hkv]
    ggml_tensor * Q = ggml_permute(c, q, 0, 2, 1, 3);                                                                 // [hd, n, H]
    ggml_tensor * fa = ggml_flash_attn_ext(c, Q, K, V, mask, 1.0f / sqrtf((float) hd_), 0.0f, 0.0f);                // [hd, H, n]
    ggml_flash_attn_ext_set_prec(fa, GGML_PREC_F32);
    ggml_tensor * x = ggml_add(c, mm(w.wo, ggml_cont(c, ggml_reshape_2d(c, fa, nq, n))), u);     // [d, n]
    ggml_tensor * f = norm(x, w.ffn_norm);
    f = mm(w.down, ggml_swiglu_split(c, mm(w.gate, f), mm(w.up, f)));
    ggml_tensor * o = ggml_add(c, f, x);                                                           // [d, n]: the layer output (stand-in)
    ggml_set_output(o);
    ggml_build_forward_expand(gf, o);
    // the residual decoding head over [hn; o], on the rows whose logits are wanted
    ggml_tensor * hn_r = ggml_get_rows(c, hn, out_ids);                                            // [d, n_out]
    ggml_tensor * o_r  = ggml_get_rows(c, o, out_ids);
    ggml_tensor * z = ggml_add(c, o_r, ggml_silu(c, ggml_add(c, ggml_add(c, mm(w.head_h, hn_r), mm(w.head_o, o_r)), w.head_b)));
    ggml_tensor * y = norm(z, w.out_norm);                                                          // [d, n_out]
    const kernels::packed_weights * pw = tgt->kind == BACKEND_CPU ? tgt->packed_for(tgt->output) : nullptr;
    ggml_tensor * lg = pw ? kernels::op_gemm(c, pw, kernels::op_quantize_act(c, y, kernels::act_type_for(pw->type)))
                          : ggml_mul_mat(c, tgt->output, y);                                       // [V, n_out]
    ggml_set_output(lg);
    ggml_build_forward_expand(gf, lg);

    if (!ggml_gallocr_alloc_graph(galloc, gf)) fail("ERR_INTERNAL", "cannot allocate the Chimera graph");
    std::vector<int32_t> outs(logit_rows.begin(), logit_rows.end());
    for (int32_t oi : outs) if (oi < 0 || oi >= n) fail("ERR_INTERNAL", "Chimera output row out of range");
    std::vector<int64_t> cells(n);
    for (int64_t i = 0; i < n; ++i) cells[i] = cell0 + i;
    ggml_backend_tensor_set(tri, tri_in.data(), 0, ggml_nbytes(tri));
    ggml_backend_tensor_set(hin, r.h, 0, ggml_nbytes(hin));
    ggml_backend_tensor_set(pos, r.pos.data(), 0, n * sizeof(int32_t));
    ggml_backend_tensor_set(idx, cells.data(), 0, n * sizeof(int64_t));
    ggml_backend_tensor_set(out_ids, outs.data(), 0, outs.size() * sizeof(int32_t));
    const ggml_fp16_t zero = ggml_fp32_to_fp16(0.0f), ninf = ggml_fp32_to_fp16(-INFINITY);
    std::vector<ggml_fp16_t> m((size_t) n_kv * n, ninf);
    for (int64_t i = 0; i < n; ++i) {
        ggml_fp16_t * row = m.data() + (size_t) i * n_kv;
        for (uint32_t j = 0; j < r.prefix[i] && j < n_kv; ++j) row[j] = zero;
        if (i < (int64_t) r.attend.size()) {
            for (uint32_t j : r.attend[i]) if (j < n_kv) row[j] = zero;
        }
    }
    ggml_backend_tensor_set(mask, m.data(), 0, m.size() * sizeof(ggml_fp16_t));
    const ggml_status st = ggml_backend_graph_compute(backend, gf);
    if (st != GGML_STATUS_SUCCESS) fail(st == GGML_STATUS_ABORTED ? "ERR_ABORTED" : "ERR_INTERNAL", "the Chimera draft evaluation failed");
    n_used = cell0 + (uint32_t) n;

    o_out.resize((size_t) n * d);
    ggml_backend_tensor_get(o, o_out.data(), 0, o_out.size() * sizeof(float));
    logits.resize(outs.size() * (size_t) h.n_vocab);
    ggml_backend_tensor_get(lg, logits.data(), 0, logits.size() * sizeof(float));
}

} // namespace specdec
