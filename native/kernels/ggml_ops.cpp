#include "kernels/ggml_ops.h"

namespace specdec::kernels {

static void quantize_act_forward(ggml_tensor * dst, int ith, int nth, void * /*userdata*/) {
    const ggml_tensor * x = dst->src[0];
    const int64_t k = x->ne[0];
    for (int64_t c = ith; c < x->ne[1]; c += nth) {
        quantize_act_q8_0((const float *) ((const char *) x->data + c * x->nb[1]), k,
                          (act_block *) ((char *) dst->data + c * dst->nb[1]));
    }
}

ggml_tensor * op_quantize_act_q8_0(ggml_context * ctx, ggml_tensor * x) {
    ggml_tensor * args[] = { x };
    ggml_tensor * q = ggml_custom_4d(ctx, GGML_TYPE_I8, x->ne[0] / QK8_0 * (int64_t) sizeof(act_block), x->ne[1], 1, 1,
                                     args, 1, quantize_act_forward, GGML_N_TASKS_MAX, nullptr);
    ggml_set_name(q, "specdec_q8_act");
    return q;
}

static void gemm_forward(ggml_tensor * dst, int ith, int nth, void * userdata) {
    const packed_q8_0 & w  = *(const packed_q8_0 *) userdata;
    const ggml_tensor * qx = dst->src[0];
    // rows split by tiles: each output element is computed whole by one thread
    const int64_t t0 = w.n_tiles * ith / nth;
    const int64_t t1 = w.n_tiles * (ith + 1) / nth;
    gemm_q8_0(w.kernel, w, (const act_block *) qx->data, qx->ne[1], (float *) dst->data, dst->ne[0], t0, t1);
}

ggml_tensor * op_gemm_q8_0(ggml_context * ctx, const packed_q8_0 * w, ggml_tensor * qx) {
    ggml_tensor * args[] = { qx };
    ggml_tensor * y = ggml_custom_4d(ctx, GGML_TYPE_F32, w->rows, qx->ne[1], 1, 1, args, 1, gemm_forward,
                                     GGML_N_TASKS_MAX, (void *) w);
    return y;
}

} // namespace specdec::kernels
