// specdec's CPU kernels as ggml graph operations (GGML_OP_CUSTOM nodes run by ggml's CPU
// backend on the session's thread pool).
#pragma once

#include "kernels/attention.h"
#include "kernels/gemm.h"

#include "ggml.h"

namespace specdec::kernels {

// Quantizes the columns of x (F32 [K, n], rows contiguous) for gemm() with weights whose
// activations are of type t (act_type_for).
//   returns: I8 [act_column_bytes(t, K), n]
ggml_tensor * op_quantize_act(ggml_context * ctx, ggml_tensor * x, act_type t);

// w . x for the repacked weights w ([K, M] in ggml's terms) and quantized activations qx.
//   qx: op_quantize_act of [K, n] (act_type_for(w->type)); returns F32 [M, n]
ggml_tensor * op_gemm(ggml_context * ctx, const packed_weights * w, ggml_tensor * qx);

struct attention_params {
    attn_shape shape;
    isa        kernel = isa::generic;
};

// Attention of the batch's query rows over the cells their mask allows (kernels/attention.h).
//   q:    F32 [head_dim, n_head, n_tokens] (contiguous, after RoPE)
//   k, v: the layer's F16 cache [n_head_kv * head_dim, kv_size] (pass the results of the
//         set_rows that stored this batch, so the graph orders the writes first)
//   mask: F16 [n_kv, n_tokens], 0 where a row may attend, -inf elsewhere
//   returns F32 [head_dim * n_head, n_tokens]
ggml_tensor * op_attention(ggml_context * ctx, const attention_params * p, ggml_tensor * q, ggml_tensor * k,
                           ggml_tensor * v, ggml_tensor * mask);

} // namespace specdec::kernels
