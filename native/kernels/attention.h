// Attention of a batch of query rows over the KV cache, each row over exactly the cells its mask
// allows (the committed context, its tree ancestors and itself), for decoding and verification
// with specdec's kernels.
//
// A row's result is computed by the same sequence of float operations whatever the batch: the
// allowed cells are visited in cell order (for a tree node: the context, then its ancestors by
// depth, as in autoregressive decoding), so a token's attention output is bit-identical alone and
// inside a verification tree. Cells the mask excludes cost nothing, unlike ggml's CPU flash
// attention, which walks every cell of the view (and converts Q and the output through F16).
//
// Per row and query head:
//   s_c   = dot(q, k_c) * scale            (16 partial sums, fixed pairwise reduction)
//   e_c   = exp(s_c - max_c s_c)
//   out   = (sum_c e_c * v_c) * (1 / sum_c e_c)   (sums in cell order)
#pragma once

#include "kernels/cpu_features.h"

#include "ggml.h"

#include <cstdint>

namespace specdec::kernels {

struct attn_shape {
    int64_t head_dim  = 0;  // K and V head size
    int64_t n_head    = 0;  // query heads
    int64_t n_head_kv = 0;  // K/V heads (GQA: n_head / n_head_kv query heads share one)
    float   scale     = 1.0f;
};

// Query rows sharing a work item. Their cell lists (ascending) agree on their first `n_shared`
// entries (the committed context; tree rows then differ in their ancestors): those cells' K and V
// rows are loaded and widened once for all the rows' query heads, which changes no row's
// arithmetic.
struct attn_rows {
    int64_t                n_rows   = 0;
    const float * const *  q        = nullptr;  // per row: [head_dim * n_head] query
    float * const *        out      = nullptr;  // per row: [head_dim * n_head] output
    const int32_t * const * cells   = nullptr;  // per row: its allowed cells, ascending
    const int64_t *        n_cells  = nullptr;  // per row: length of its list
    int64_t                n_shared = 0;        // leading entries equal in every row's list
};

// One work item: query rows `rows` against K/V head `h`, each over its own cells.
// k, v: the layer's cache (F16, one row of n_head_kv * head_dim values per cell, `stride` bytes
// apart). Writes the outputs of query heads h*g .. h*g+g-1 of every row.
void attention_rows(isa kernel, const attn_shape & sh, const ggml_fp16_t * k, size_t k_stride, const ggml_fp16_t * v,
                    size_t v_stride, const attn_rows & rows, int64_t h);

} // namespace specdec::kernels
