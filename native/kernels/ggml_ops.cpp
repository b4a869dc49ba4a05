#include "kernels/ggml_ops.h"

#include <algorithm>
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

// rows per work item at most: their query heads share each load of their common cells' K and V
static constexpr int64_t ATTN_GROUP_ROWS = 16;

// the cells a mask row allows (entries other than -inf), ascending, from cell `from` on;
// returns their number
static int64_t allowed_cells(const ggml_fp16_t * m, int64_t from, int64_t n_kv, int32_t * cells) {
    const ggml_fp16_t ninf_h = ggml_fp32_to_fp16(-INFINITY);
    int64_t n = 0;
    for (int64_t c = from; c < n_kv; ++c) {
        cells[n] = (int32_t) c;
        n += m[c] != ninf_h;
    }
    return n;
}

// the first entry where two mask rows differ (n_kv if none)
static int64_t first_difference(const ggml_fp16_t * a, const ggml_fp16_t * b, int64_t n_kv) {
    constexpr int64_t chunk = 64;
    int64_t c = 0;
    while (c + chunk <= n_kv && std::memcmp(a + c, b + c, chunk * sizeof(ggml_fp16_t)) == 0) c += chunk;
    while (c < n_kv && a[c] == b[c]) ++c;
    return c;
}

static void attention_forward(ggml_tensor * dst, int ith, int nth, void * userdata) {
    const attention_params & p = *(const attention_params *) userdata;
    const ggml_tensor * q    = dst->src[0];
    const ggml_tensor * k    = dst->src[1];
    const ggml_tensor * v    = dst->src[2];
    const ggml_tensor * mask = dst->src[3];
    const int64_t n_tokens  = q->ne[2];
    const int64_t n_kv      = mask->ne[0];
    const int64_t n_head_kv = p.shape.n_head_kv;
    // groups of consecutive rows, as even as possible, at least enough for one (group, head) item
    // per thread
    const int64_t n_groups = std::min(n_tokens, std::max((n_tokens + ATTN_GROUP_ROWS - 1) / ATTN_GROUP_ROWS,
                                                         (nth + n_head_kv - 1) / n_head_kv));
    thread_local std::vector<int32_t> cell_lists;
    thread_local std::vector<const int32_t *> cells;
    thread_local std::vector<int64_t> n_cells;
    thread_local std::vector<const float *> qs;
    thread_local std::vector<float *> outs;
    attn_rows rows;
    int64_t rows_group = -1;
    // work items (group, K/V head), dealt round-robin: each output is computed whole by one thread
    for (int64_t w = ith; w < n_groups * n_head_kv; w += nth) {
        const int64_t group = w / n_head_kv;
        const int64_t h     = w % n_head_kv;
        if (group != rows_group) {
            const int64_t r0 = n_tokens * group / n_groups;
            const int64_t nr = n_tokens * (group + 1) / n_groups - r0;
            cell_lists.resize((size_t) (nr * n_kv));
            cells.resize((size_t) nr);
            n_cells.resize((size_t) nr);
            qs.resize((size_t) nr);
            outs.resize((size_t) nr);
            // a row's list is the first row's up to where their masks first differ, then its own scan;
            // shared: the leading entries common to the lists so far
            const ggml_fp16_t * m0 = (const ggml_fp16_t *) ((const char *) mask->data + r0 * mask->nb[1]);
            int64_t shared = 0;
            for (int64_t r = 0; r < nr; ++r) {
                const ggml_fp16_t * m = (const ggml_fp16_t *) ((const char *) mask->data + (r0 + r) * mask->nb[1]);
                int32_t * list = cell_lists.data() + r * n_kv;
                cells[r] = list;
                qs[r]    = (const float *) ((const char *) q->data + (r0 + r) * q->nb[2]);
                outs[r]  = (float *) ((char *) dst->data + (r0 + r) * dst->nb[1]);
                if (r == 0) {
                    n_cells[0] = allowed_cells(m, 0, n_kv, list);
                    shared = n_cells[0];
                    continue;
                }
                const int64_t same   = first_difference(m, m0, n_kv);
                const int64_t n_same = std::lower_bound(cells[0], cells[0] + n_cells[0], (int32_t) same) - cells[0];
                std::copy(cells[0], cells[0] + n_same, list);
                n_cells[r] = n_same + allowed_cells(m, same, n_kv, list + n_same);
                int64_t i = std::min(shared, n_same);
                while (i < std::min(shared, n_cells[r]) && list[i] == cells[0][i]) ++i;
                shared = i;
            }
            rows = { nr, qs.data(), outs.data(), cells.data(), n_cells.data(), shared };
            rows_group = group;
        }
        attention_rows(p.kernel, p.shape, (const ggml_fp16_t *) k->data, k->nb[1], (const ggml_fp16_t *) v->data,
                       v->nb[1], rows, h);
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
