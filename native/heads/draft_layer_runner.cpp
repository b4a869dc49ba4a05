#include "heads/draft_layer_runner.h"

#include "common/error.h"
#include "kernels/ggml_ops.h"

#include <cmath>

namespace specdec {

static bool abort_cb(void * data) { return static_cast<std::atomic<bool> *>(data)->load(std::memory_order_relaxed); }

draft_layer_runner::draft_layer_runner(const char * what_, const layer_shape & shape_, int n_threads, uint32_t n_cells_)
    : what(what_), shape(shape_), n_cells(n_cells_) {
    backend = ggml_backend_cpu_init();
    if (!backend) fail("ERR_BACKEND_UNAVAILABLE", "cannot start the CPU backend");
    ggml_threadpool_params tpp = ggml_threadpool_params_default(n_threads);
    threadpool = ggml_threadpool_new(&tpp);
    if (!threadpool) {
        ggml_backend_free(backend);
        backend = nullptr;
        fail("ERR_BACKEND_UNAVAILABLE", format("cannot start %d compute threads", n_threads));
    }
    ggml_backend_cpu_set_n_threads(backend, n_threads);
    ggml_backend_cpu_set_threadpool(backend, threadpool);
    ggml_backend_cpu_set_abort_callback(backend, abort_cb, &abort_flag);
    ctx_w = ggml_init({ ggml_tensor_overhead() * 40, nullptr, true });
    galloc = ggml_gallocr_new(ggml_backend_get_default_buffer_type(backend));
    graph_buf.resize(ggml_tensor_overhead() * 256 + ggml_graph_overhead());
}

draft_layer_runner::~draft_layer_runner() {
    if (galloc) ggml_gallocr_free(galloc);
    if (buf_w) ggml_backend_buffer_free(buf_w);
    if (ctx_w) ggml_free(ctx_w);
    if (backend) ggml_backend_free(backend);
    if (threadpool) ggml_threadpool_free(threadpool);
}

void draft_layer_runner::pause_threads() {
    if (threadpool) ggml_threadpool_pause(threadpool);
}

ggml_tensor * draft_layer_runner::mat(int64_t k, int64_t m) {
    return ggml_new_tensor_2d(ctx_w, k % 32 == 0 ? GGML_TYPE_Q8_0 : GGML_TYPE_F32, k, m);
}

ggml_tensor * draft_layer_runner::vec(int64_t k) { return ggml_new_tensor_1d(ctx_w, GGML_TYPE_F32, k); }

ggml_tensor * draft_layer_runner::f32(int64_t k, int64_t m) { return ggml_new_tensor_2d(ctx_w, GGML_TYPE_F32, k, m); }

void draft_layer_runner::alloc_weights() {
    k_cache = ggml_new_tensor_2d(ctx_w, GGML_TYPE_F16, shape.n_kv(), n_cells);
    v_cache = ggml_new_tensor_2d(ctx_w, GGML_TYPE_F16, shape.n_kv(), n_cells);
    buf_w = ggml_backend_alloc_ctx_tensors(ctx_w, backend);
    if (!buf_w) fail("ERR_BACKEND_UNAVAILABLE", format("cannot allocate the %s weights and cache", what));
}

void draft_layer_runner::set(ggml_tensor * t, const std::vector<float> & v) {
    if (t->type == GGML_TYPE_F32) {
        ggml_backend_tensor_set(t, v.data(), 0, ggml_nbytes(t));
        return;
    }
    std::vector<uint8_t> q(ggml_nbytes(t));
    ggml_quantize_chunk(t->type, v.data(), q.data(), 0, t->ne[1], t->ne[0], nullptr);
    ggml_backend_tensor_set(t, q.data(), 0, q.size());
    // and repacked for specdec's kernels (small batches: a draft step evaluates 1-4 rows)
    if (auto p = kernels::pack_weights(kernels::wtype::q8_0, q.data(), t->ne[1], t->ne[0], kernels::default_isa())) {
        packed.emplace_back(t, std::move(p));
    }
}

void draft_layer_runner::begin(graph & g, const draft_rows & r, const std::vector<uint32_t> & logit_rows, uint32_t n_vocab,
                               bool allow_none) {
    const int64_t n = (int64_t) r.pos.size();
    if (n == 0 || logit_rows.empty() || r.tri.size() != (size_t) n * 3 || r.prefix.size() != (size_t) n || !r.in) {
        fail("ERR_INTERNAL", format("a %s evaluation needs rows, their tokens, positions, prefixes and inputs, and outputs", what));
    }
    for (uint32_t o : logit_rows) {
        if (o >= n) fail("ERR_INTERNAL", format("%s output row out of range", what));
    }
    for (int32_t t : r.tri) {
        if ((t < 0 && !(allow_none && t == -1)) || (t >= 0 && (uint32_t) t >= n_vocab)) {
            fail("ERR_TOKEN_OUT_OF_RANGE", format("token id %d is out of range", t));
        }
    }
    if (n_used + n > n_cells) fail("ERR_CONTEXT_OVERFLOW", format("the %s draft cache is full", what));
    g.n = n;
    g.cell0 = n_used;
    g.n_kv = n_used + n;
    g.c = ggml_init({ graph_buf.size(), graph_buf.data(), true });
    g.gf = ggml_new_graph(g.c);
    g.pos     = ggml_new_tensor_1d(g.c, GGML_TYPE_I32, n);
    g.idx     = ggml_new_tensor_1d(g.c, GGML_TYPE_I64, n);
    g.mask    = ggml_new_tensor_2d(g.c, GGML_TYPE_F16, g.n_kv, n);
    g.out_ids = ggml_new_tensor_1d(g.c, GGML_TYPE_I32, (int64_t) logit_rows.size());
    for (ggml_tensor * t : { g.pos, g.idx, g.mask, g.out_ids }) ggml_set_input(t);
}

ggml_tensor * draft_layer_runner::mm(graph & g, ggml_tensor * w, ggml_tensor * x) {
    for (const auto & p : packed) {
        if (p.first != w) continue;
        ggml_tensor * qx = nullptr;
        for (const auto & e : g.qacts) if (e.first == x) qx = e.second;
        if (!qx) {
            qx = kernels::op_quantize_act(g.c, x, kernels::act_type_for(p.second->type));
            g.qacts.push_back({ x, qx });
        }
        return kernels::op_gemm(g.c, p.second.get(), qx);
    }
    return ggml_mul_mat(g.c, w, x);
}

ggml_tensor * draft_layer_runner::attention(graph & g, ggml_tensor * q, ggml_tensor * k, ggml_tensor * v) {
    ggml_context * c = g.c;
    const int64_t hd = shape.n_embd_head, nkv = shape.n_kv(), n = g.n;
    q = ggml_reshape_3d(c, q, hd, shape.n_head, n);                                                 // [hd, H, n]
    k = ggml_reshape_3d(c, k, hd, shape.n_head_kv, n);                                              // [hd, Hkv, n]
    q = ggml_rope_ext(c, q, g.pos, nullptr, (int) hd, 0 /* NORM */, shape.n_ctx, shape.rope_base, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f);
    k = ggml_rope_ext(c, k, g.pos, nullptr, (int) hd, 0, shape.n_ctx, shape.rope_base, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f);
    ggml_tensor * k_st = ggml_set_rows(c, k_cache, ggml_reshape_2d(c, k, nkv, n), g.idx);          // the cache, written
    ggml_tensor * v_st = ggml_set_rows(c, v_cache, v, g.idx);
    ggml_build_forward_expand(g.gf, k_st);
    ggml_build_forward_expand(g.gf, v_st);
    // attention over cells [0, n_kv) under the mask (flash attention: no backward pass is needed here)
    const size_t eb = ggml_element_size(k_cache);
    ggml_tensor * K = ggml_permute(c, ggml_view_3d(c, k_st, hd, shape.n_head_kv, g.n_kv, hd * eb, nkv * eb, 0), 0, 2, 1, 3);  // [hd, n_kv, Hkv]
    ggml_tensor * V = ggml_permute(c, ggml_view_3d(c, v_st, hd, shape.n_head_kv, g.n_kv, hd * eb, nkv * eb, 0), 0, 2, 1, 3);  // [hd, n_kv, Hkv]
    ggml_tensor * Q = ggml_permute(c, q, 0, 2, 1, 3);                                                                       // [hd, n, H]
    ggml_tensor * fa = ggml_flash_attn_ext(c, Q, K, V, g.mask, 1.0f / sqrtf((float) hd), 0.0f, 0.0f);                     // [hd, H, n]
    ggml_flash_attn_ext_set_prec(fa, GGML_PREC_F32);
    return ggml_cont(c, ggml_reshape_2d(c, fa, shape.n_q(), n));                                                          // [nq, n]
}

void draft_layer_runner::run(graph & g, const draft_rows & r, const std::vector<uint32_t> & logit_rows,
                             const std::function<void()> & set_inputs) {
    if (!ggml_gallocr_alloc_graph(galloc, g.gf)) fail("ERR_INTERNAL", format("cannot allocate the %s graph", what));
    const int64_t n = g.n;
    std::vector<int32_t> outs(logit_rows.begin(), logit_rows.end());
    std::vector<int64_t> cells((size_t) n);
    for (int64_t i = 0; i < n; ++i) cells[(size_t) i] = g.cell0 + i;
    ggml_backend_tensor_set(g.pos, r.pos.data(), 0, (size_t) n * sizeof(int32_t));
    ggml_backend_tensor_set(g.idx, cells.data(), 0, (size_t) n * sizeof(int64_t));
    ggml_backend_tensor_set(g.out_ids, outs.data(), 0, outs.size() * sizeof(int32_t));
    const ggml_fp16_t zero = ggml_fp32_to_fp16(0.0f), ninf = ggml_fp32_to_fp16(-INFINITY);
    std::vector<ggml_fp16_t> m((size_t) (g.n_kv * n), ninf);
    for (int64_t i = 0; i < n; ++i) {
        ggml_fp16_t * row = m.data() + (size_t) (i * g.n_kv);
        for (uint32_t j = 0; j < r.prefix[(size_t) i] && j < g.n_kv; ++j) row[j] = zero;
        if (i < (int64_t) r.attend.size()) {
            for (uint32_t j : r.attend[(size_t) i]) if (j < g.n_kv) row[j] = zero;
        }
    }
    ggml_backend_tensor_set(g.mask, m.data(), 0, m.size() * sizeof(ggml_fp16_t));
    set_inputs();
    const ggml_status st = ggml_backend_graph_compute(backend, g.gf);
    if (st != GGML_STATUS_SUCCESS) {
        fail(st == GGML_STATUS_ABORTED ? "ERR_ABORTED" : "ERR_INTERNAL", format("the %s draft evaluation failed", what));
    }
    n_used = g.cell0 + (uint32_t) n;
}

} // namespace specdec
