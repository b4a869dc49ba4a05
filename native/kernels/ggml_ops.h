// specdec's CPU kernels as ggml graph operations (GGML_OP_CUSTOM nodes run by ggml's CPU
// backend on the session's thread pool).
#pragma once

#include "kernels/q8_0_gemm.h"

#include "ggml.h"

namespace specdec::kernels {

// Quantizes the columns of x (F32 [K, n], rows contiguous) for gemm_q8_0.
//   returns: I8 [K / 32 * sizeof(act_block), n]
ggml_tensor * op_quantize_act_q8_0(ggml_context * ctx, ggml_tensor * x);

// w . x for the repacked weights w ([K, M] in ggml's terms) and quantized activations qx.
//   qx: op_quantize_act_q8_0 of [K, n]; returns F32 [M, n]
ggml_tensor * op_gemm_q8_0(ggml_context * ctx, const packed_q8_0 * w, ggml_tensor * qx);

} // namespace specdec::kernels
