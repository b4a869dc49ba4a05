#include "kernels/ggml_ops.h"

#include <cmath>
#include <cstring>
#include <vector>

namespace specdec::kernels {

static void quantize_act_forward(ggml_tensor * dst, int ith, int nth, void * userdata) {
    const act_type t = *(const act_type *) userdata;
    const ggml_tensor * x = dst->src[0];
    const int64_t k = x->ne[0];
    for (int64_t c = ith; c < x->ne[1]; c += nth) {
        quantize_act(t, (const float *) ((const char *) x->data + c * x->nb[1]), k, (char *) dst->data + c * dst->nb[1]);
    }
}

ggml_tensor * op_quantize_act(ggml_context * ctx, ggml_tensor * x, act_type t) {
    static const act_type types[] = { act_type::q8_0, act_type::q8_k, act_type::f16, act_type::bf16 };
    static const char * const names[] = { "specdec_q8_0_act", "specdec_q8_k_act", "specdec_f16_act", "specdec_bf16_act" };
    ggml_tensor * args[] = { x };
    ggml_tensor * q = ggml_custom_4d(ctx, GGML_TYPE_I8, (int64_t) act_column_bytes(t, x->ne[0]), x->ne[1], 1, 1,
                                     args, 1, quantize_act_forward, GGML_N_TASKS_MAX, (void *) &types[(int) t]);
    ggml_set_name(q, names[(int) t]);
    return q;
}

static void gemm_forward(ggml_tensor * dst, int ith, int nth, void * userdata) {
    const packed_weights & w = *(const packed_weights *) userdata;
    const ggml_tensor * qx = dst->src[0];
    // rows split by tiles: each output element is computed whole by one thread
    const int64_t t0 = w.n_tiles * ith / nth;
    const int64_t t1 = w.n_tiles * (ith + 1) / nth;
    gemm(w.kernel, w, qx->data, qx->ne[1], (float *) dst->data, dst->ne[0], t0, t1);
}

ggml_tensor * op_gemm(ggml_context * ctx, const packed_weights * w, ggml_tensor * qx) {
    ggml_tensor * args[] = { qx };
    ggml_tensor * y = ggml_custom_4d(ctx, GGML_TYPE_F32, w->rows, qx->ne[1], 1, 1, args, 1, gemm_forward,
                                     GGML_N_TASKS_MAX, (void *) w);
    return y;
}

static void attention_forward(ggml_tensor * dst, int ith, int nth, void * userdata) {
    const attention_params & p = *(const attention_params *) userdata;
    const ggml_tensor * q    = dst->src[0];
    const ggml_tensor * k    = dst->src[1];
    const ggml_tensor * v    = dst->src[2];
    const ggml_tensor * mask = dst->src[3];
    const int64_t n_tokens = q->ne[2];
    const int64_t n_kv     = mask->ne[0];
    ggml_fp16_t ninf_h = ggml_fp32_to_fp16(-INFINITY);
    thread_local std::vector<int32_t> cells;
    int64_t cells_row = -1;
    // work items (row, K/V head), dealt round-robin: each output is computed whole by one thread
    for (int64_t w = ith; w < n_tokens * p.shape.n_head_kv; w += nth) {
        const int64_t row = w / p.shape.n_head_kv;
        const int64_t h   = w % p.shape.n_head_kv;
        if (row != cells_row) {
            const ggml_fp16_t * m = (const ggml_fp16_t *) ((const char *) mask->data + row * mask->nb[1]);
            cells.clear();
            for (int64_t c = 0; c < n_kv; ++c) {
                if (std::memcmp(&m[c], &ninf_h, sizeof(ggml_fp16_t)) != 0) cells.push_back((int32_t) c);
            }
            cells_row = row;
        }
        attention_item(p.kernel, p.shape, (const float *) ((const char *) q->data + row * q->nb[2]),
                       (const ggml_fp16_t *) k->data, k->nb[1], (const ggml_fp16_t *) v->data, v->nb[1],
                       cells.data(), (int64_t) cells.size(), h, (float *) ((char *) dst->data + row * dst->nb[1]));
    }
}

ggml_tensor * op_attention(ggml_context * ctx, const attention_params * p, ggml_tensor * q, ggml_tensor * k,
                           ggml_tensor * v, ggml_tensor * mask) {
    ggml_tensor * args[] = { q, k, v, mask };
    ggml_tensor * out = ggml_custom_4d(ctx, GGML_TYPE_F32, q->ne[0] * q->ne[1], q->ne[2], 1, 1, args, 4,
                                       attention_forward, GGML_N_TASKS_MAX, (void *) p);
    ggml_set_name(out, "specdec_attn");
    return out;
}

} // namespace specdec::kernels
