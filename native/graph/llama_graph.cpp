// The forward graph, op for op as llama.cpp builds it for these architectures
// (src/models/llama.cpp, qwen2.cpp, qwen3.cpp; llm_graph_context::build_attn with
// flash attention, which llama.cpp's "auto" setting selects on the CPU): same ops in
// the same order give the same numbers.
#include "graph/llama_graph.h"

#include "kernels/ggml_ops.h"

#include <algorithm>
#include <cmath>

namespace specdec {

// ggml's CPU flash attention picks its kernel from the shapes: one query row over
// >= 512 cells splits the KV range across threads; >= 64 query rows use a tiled kernel;
// anything else runs row by row over the whole range. Each gives different rounding.
static constexpr uint32_t FA_SPLIT_KV_MIN = 512;
static constexpr uint32_t FA_TILED_MIN_ROWS = 64;

size_t llama_graph_max_nodes(const model & m, bool gathered_rows, uint32_t max_rows) {
    // worst case: invariant attention with its views, one flash-attention node and one concat per row
    // (a gathered row: its K and V copies besides); at least 16 rows' worth, which leaves room per
    // layer for what does not grow with the rows (adapters, taps, entry rows)
    const size_t rows = std::max<uint32_t>(16, std::min(max_rows, MAX_INVARIANT_BATCH));
    return 64 + (64 + (gathered_rows ? 14 : 10) * rows) * m.hp.n_layer;
}

void plan_invariant_rows(graph_shape & shape, uint32_t n_past, const std::vector<int32_t> & depth, uint32_t kv_size,
                         bool ggml_cpu_attention) {
    const uint32_t n = shape.n_tokens;
    shape.row_n_kv.assign(n, 0);
    shape.row_gather.assign(n, -1);
    shape.n_gather = 0;
    shape.gather_n_kv = 0;
    for (uint32_t i = 0; i < n; ++i) {
        const uint32_t decode_view = decode_n_kv(n_past + (uint32_t) depth[i] + 1, kv_size);
        // a tree node stored past its decode view (a later sibling) needs a longer view to see itself
        const uint32_t own_view = decode_n_kv(n_past + i + 1, kv_size);
        const bool in_place = (uint32_t) depth[i] == i;  // on the first branch: its ancestors are in their decode cells
        if (ggml_cpu_attention && !in_place && std::max(decode_view, own_view) >= FA_SPLIT_KV_MIN) {
            shape.row_n_kv[i] = decode_view;
            shape.row_gather[i] = (int32_t) shape.n_gather++;
            shape.gather_n_kv = std::max(shape.gather_n_kv, decode_view);
        } else {
            shape.row_n_kv[i] = std::max(decode_view, own_view);
        }
    }
}

void fill_entry_sel(const graph_shape & shape, const graph_inputs & in) {
    if (!in.entry_sel) return;
    std::vector<int32_t> sel(shape.n_tokens);
    for (uint32_t i = 0; i < shape.n_tokens; ++i) sel[i] = (int32_t) i;
    for (size_t j = 0; j < shape.entry_rows.size(); ++j) sel[shape.entry_rows[j]] = (int32_t) (shape.n_tokens + j);
    ggml_backend_tensor_set(in.entry_sel, sel.data(), 0, sel.size() * sizeof(int32_t));
    if (in.entry_from) {
        std::vector<int32_t> from(shape.entry_from.begin(), shape.entry_from.end());
        ggml_backend_tensor_set(in.entry_from, from.data(), 0, from.size() * sizeof(int32_t));
    }
}

uint32_t decode_n_kv(uint32_t n_total, uint32_t kv_size) {
    const uint32_t pad = 256;
    const uint32_t padded = ((n_total + pad - 1) / pad) * pad;
    return std::min(kv_size, std::max(pad, padded));
}

// Attention of a batch whose rows must each match a one-token decode bit for bit.
//   q: [head_dim, n_tokens, n_head] (permuted view), mask: [n_kv, n_tokens]
//   returns [head_dim, n_head, n_tokens]
// One gathered row's K or V: the cache rows of the cells `idx` lists, copied (F16 -> F32 -> F16, exact)
// into a view laid out as the row's one-token decode sees it.
//   stored: the layer's cache after this batch's rows were written ([n_embd_gqa, n_cells]),
//   returns [head_dim, n_kv, n_head_kv] (permuted, as kv_cache views are)
static ggml_tensor * gather_cells(ggml_context * ctx0, ggml_tensor * stored, ggml_tensor * idx, int64_t head_dim, int64_t n_head_kv) {
    ggml_tensor * rows = ggml_get_rows(ctx0, stored, idx);  // [n_embd_gqa, n_kv] f32
    ggml_tensor * f16  = ggml_new_tensor_3d(ctx0, GGML_TYPE_F16, head_dim, n_head_kv, idx->ne[0]);
    return ggml_permute(ctx0, ggml_cpy(ctx0, rows, f16), 0, 2, 1, 3);
}

static ggml_tensor * build_attn_invariant(ggml_context * ctx0, const model & m, const kv_cache & kv, int il,
                                          ggml_tensor * q, ggml_tensor * mask, const graph_shape & shape, float kq_scale,
                                          ggml_tensor * k_stored, ggml_tensor * v_stored, const graph_inputs & in) {
    const int64_t n_tokens = shape.n_tokens;
    std::vector<ggml_tensor *> parts;
    int64_t i = 0;
    while (i < n_tokens) {
        const int32_t g = shape.row_gather.empty() ? -1 : shape.row_gather[i];
        if (g >= 0) {
            // the row over its cells as its one-token decode lays them out, same view length
            const uint32_t n_kv = shape.row_n_kv[i];
            ggml_tensor * idx = ggml_view_1d(ctx0, in.gather_idx, n_kv, (size_t) g * in.gather_idx->nb[1]);
            ggml_tensor * m_row = ggml_view_2d(ctx0, in.gather_mask, n_kv, 1, in.gather_mask->nb[1], (size_t) g * in.gather_mask->nb[1]);
            ggml_tensor * q_row = ggml_view_3d(ctx0, q, q->ne[0], 1, q->ne[2], q->nb[1], q->nb[2], i * q->nb[1]);
            ggml_tensor * k = gather_cells(ctx0, k_stored, idx, m.hp.n_embd_head_k, m.hp.n_head_kv);
            ggml_tensor * v = gather_cells(ctx0, v_stored, idx, m.hp.n_embd_head_v, m.hp.n_head_kv);
            ggml_tensor * cur = ggml_flash_attn_ext(ctx0, q_row, k, v, m_row, kq_scale, 0.0f, 0.0f);  // [head_dim, n_head, 1]
            ggml_flash_attn_ext_set_prec(cur, GGML_PREC_F32);
            parts.push_back(cur);
            i += 1;
            continue;
        }
        const uint32_t nkv_i = shape.row_n_kv[i];
        int64_t n_rows = 1;
        uint32_t n_kv = nkv_i;
        auto groupable = [&](int64_t r) {
            return shape.row_n_kv[r] < FA_SPLIT_KV_MIN && (shape.row_gather.empty() || shape.row_gather[r] < 0);
        };
        if (nkv_i < FA_SPLIT_KV_MIN) {
            // rows decoded by the row-by-row kernel: group them (any KV length gives the
            // same result, masked cells are skipped), below the tiled kernel's threshold
            while (i + n_rows < n_tokens && n_rows < FA_TILED_MIN_ROWS - 1 && groupable(i + n_rows)) {
                n_rows++;
            }
            if (n_rows > 1) {
                n_kv = shape.n_kv;
            }
        }
        ggml_tensor * q_rows = ggml_view_3d(ctx0, q, q->ne[0], n_rows, q->ne[2], q->nb[1], q->nb[2], i * q->nb[1]);
        ggml_tensor * m_rows = n_kv == shape.n_kv
            ? ggml_view_2d(ctx0, mask, n_kv, n_rows, mask->nb[1], i * mask->nb[1])
            : ggml_view_2d(ctx0, mask, n_kv, 1, mask->nb[1], i * mask->nb[1]);
        ggml_tensor * k = ggml_permute(ctx0, kv.view_k(ctx0, il, n_kv), 0, 2, 1, 3);
        ggml_tensor * v = ggml_permute(ctx0, kv.view_v(ctx0, il, n_kv), 0, 2, 1, 3);
        ggml_tensor * cur = ggml_flash_attn_ext(ctx0, q_rows, k, v, m_rows, kq_scale, 0.0f, 0.0f);  // [head_dim, n_head, n_rows]
        ggml_flash_attn_ext_set_prec(cur, GGML_PREC_F32);
        parts.push_back(cur);
        i += n_rows;
    }
    // join the parts along the token dimension (pairwise, so copies stay O(n log n))
    while (parts.size() > 1) {
        std::vector<ggml_tensor *> next;
        for (size_t j = 0; j + 1 < parts.size(); j += 2) {
            next.push_back(ggml_concat(ctx0, parts[j], parts[j + 1], 2));
        }
        if (parts.size() % 2) next.push_back(parts.back());
        parts.swap(next);
    }
    return parts[0];
}

// Matrix product with the weights.
//
// Weights repacked for specdec's CPU kernels (model::packed: Q8_0, Q4_0, Q4_K, Q6_K, F16, BF16) go
// through them in every graph (decoding, verification, prompt prefill): their arithmetic per output
// element does not depend on the batch, and the mapped originals are not kept (model_loader). The
// prepared activations are shared by the products that read the same input (Q/K/V, gate/up), as
// ggml shares them inside one product.
//
// Otherwise, in a batch-invariant graph the tokens go as a batch of one-column products
// ([K, 1, n] broadcast against the [K, M] weights): ggml then computes each column with the same
// per-row dot products as a one-token decode, instead of the batched llamafile kernels it uses
// for prompt prefill (as llama.cpp does).
struct mm_builder {
    ggml_context * ctx0;
    const model &  m;
    bool           invariant;
    bool           draft_weights;
    const lora_adapter * lora;
    struct quantized_input {
        ggml_tensor *     x;
        kernels::act_type type;
        ggml_tensor *     qx;
    };
    std::vector<quantized_input> quantized;  // input -> its quantized columns

    ggml_tensor * operator()(ggml_tensor * w, ggml_tensor * x) {
        ggml_tensor * y = product(w, x);
        const lora_adapter::pair * p = lora ? lora->find(w) : nullptr;
        if (p) {
            // the adapter: + scale * B (A x)
            ggml_tensor * ax = ggml_mul_mat(ctx0, p->a, x);                         // [rank, n]
            y = ggml_add(ctx0, y, ggml_scale(ctx0, ggml_mul_mat(ctx0, p->b, ax), lora->scale));  // [M, n]
        }
        return y;
    }

    ggml_tensor * product(ggml_tensor * w, ggml_tensor * x) {
        const int64_t n = x->ne[1];
        const kernels::packed_weights * pw = draft_weights ? m.draft_packed_for(w) : nullptr;
        if (!pw) pw = m.packed_for(w);
        if (pw && x->type == GGML_TYPE_F32 && x->nb[0] == sizeof(float) &&
                x->ne[2] == 1 && x->ne[3] == 1) {
            const kernels::act_type at = kernels::act_type_for(pw->type);
            ggml_tensor * qx = nullptr;
            for (auto & e : quantized) {
                if (e.x == x && e.type == at) qx = e.qx;
            }
            if (!qx) {
                qx = kernels::op_quantize_act(ctx0, x, at);  // [act_column_bytes(at, K), n]
                quantized.push_back({ x, at, qx });
            }
            return kernels::op_gemm(ctx0, pw, qx);  // [M, n]
        }
        if (!invariant || n == 1) {
            return ggml_mul_mat(ctx0, w, x);  // [M, n]
        }
        ggml_tensor * cols = ggml_reshape_3d(ctx0, x, x->ne[0], 1, n);  // [K, 1, n]
        ggml_tensor * y = ggml_mul_mat(ctx0, w, cols);                   // [M, 1, n]
        return ggml_reshape_2d(ctx0, y, y->ne[0], n);                    // [M, n]
    }
};

static ggml_tensor * build_norm(ggml_context * ctx0, ggml_tensor * cur, ggml_tensor * w, float eps) {
    cur = ggml_rms_norm(ctx0, cur, eps);
    return ggml_mul(ctx0, cur, w);
}

static ggml_tensor * build_rope(ggml_context * ctx0, const model & m, ggml_tensor * x, ggml_tensor * pos) {
    const hparams & hp = m.hp;
    return ggml_rope_ext(ctx0, x, pos, m.rope_freqs,
            hp.n_rot, hp.rope_type, hp.n_ctx_orig, hp.rope_freq_base, hp.rope_freq_scale,
            hp.yarn_ext_factor, hp.yarn_attn_factor, hp.yarn_beta_fast, hp.yarn_beta_slow);
}

ggml_cgraph * build_llama_graph(ggml_context * ctx0, const model & m, const kv_cache & kv,
                                const graph_shape & shape, graph_inputs & in) {
    const hparams & hp = m.hp;
    const int64_t n_tokens    = shape.n_tokens;
    const int64_t n_embd_head = hp.n_embd_head_k;
    const float   kq_scale    = hp.f_attn_scale != 0.0f ? hp.f_attn_scale : 1.0f / sqrtf((float) n_embd_head);
    mm_builder    build_mm { ctx0, m, shape.invariant, shape.draft_weights, shape.lora, {} };

    ggml_cgraph * gf = ggml_new_graph_custom(ctx0, llama_graph_max_nodes(m, shape.n_gather > 0, shape.n_tokens), false);

    in.pos = ggml_new_tensor_1d(ctx0, GGML_TYPE_I32, n_tokens);
    ggml_set_name(in.pos, "inp_pos");
    ggml_set_input(in.pos);
    in.kv_idxs = ggml_new_tensor_1d(ctx0, GGML_TYPE_I64, n_tokens);
    ggml_set_name(in.kv_idxs, "inp_kv_idxs");
    ggml_set_input(in.kv_idxs);
    in.mask = ggml_new_tensor_2d(ctx0, GGML_TYPE_F16, shape.n_kv, n_tokens);
    ggml_set_name(in.mask, "inp_kq_mask");
    ggml_set_input(in.mask);
    in.gather_idx = in.gather_mask = nullptr;
    if (shape.invariant && shape.n_gather > 0) {
        in.gather_idx = ggml_new_tensor_2d(ctx0, GGML_TYPE_I32, shape.gather_n_kv, shape.n_gather);
        ggml_set_name(in.gather_idx, "inp_gather_idx");
        ggml_set_input(in.gather_idx);
        in.gather_mask = ggml_new_tensor_2d(ctx0, GGML_TYPE_F16, shape.gather_n_kv, shape.n_gather);
        ggml_set_name(in.gather_mask, "inp_gather_mask");
        ggml_set_input(in.gather_mask);
    }
    in.out_ids = nullptr;
    if (shape.n_outputs != n_tokens) {
        in.out_ids = ggml_new_tensor_1d(ctx0, GGML_TYPE_I32, shape.n_outputs);
        ggml_set_name(in.out_ids, "inp_out_ids");
        ggml_set_input(in.out_ids);
    }

    // rows that enter as given vectors
    const int64_t n_entry = (int64_t) shape.entry_rows.size();
    const bool all_enter_at_0 = n_entry == n_tokens && shape.entry_layer == 0;
    in.tokens = nullptr;
    if (!all_enter_at_0) {
        in.tokens = ggml_new_tensor_1d(ctx0, GGML_TYPE_I32, n_tokens);
        ggml_set_name(in.tokens, "inp_tokens");
        ggml_set_input(in.tokens);
    }
    in.entry = in.entry_sel = in.entry_from = nullptr;
    const bool entry_mapped = n_entry > 0 && shape.entry_maps && !all_enter_at_0;
    if (entry_mapped) {
        in.entry_from = ggml_new_tensor_1d(ctx0, GGML_TYPE_I32, (int64_t) shape.entry_from.size());
        ggml_set_name(in.entry_from, "inp_entry_from");
        ggml_set_input(in.entry_from);
    }
    if (n_entry > 0) {
        if (!entry_mapped) {
            in.entry = ggml_new_tensor_2d(ctx0, GGML_TYPE_F32, hp.n_embd, n_entry);
            ggml_set_name(in.entry, "inp_entry");
            ggml_set_input(in.entry);
        }
        if (!all_enter_at_0) {
            in.entry_sel = ggml_new_tensor_1d(ctx0, GGML_TYPE_I32, n_tokens);
            ggml_set_name(in.entry_sel, "inp_entry_sel");
            ggml_set_input(in.entry_sel);
        }
    }
    // the residual stream with the entering rows replaced: rows of [stream ; entry] by entry_sel
    auto enter = [&](ggml_tensor * stream) -> ggml_tensor * {
        if (entry_mapped) {
            // every map applied to every source row: [n_embd, n_from, M], map-major once flattened
            ggml_tensor * maps = const_cast<ggml_tensor *>(shape.entry_maps);
            const int64_t n_from = (int64_t) shape.entry_from.size(), n_maps = maps->ne[2];
            ggml_tensor * src = ggml_get_rows(ctx0, stream, in.entry_from);                            // [n_embd, n_from]
            ggml_tensor * rep = ggml_repeat(ctx0, ggml_reshape_3d(ctx0, src, hp.n_embd, n_from, 1),
                                            ggml_new_tensor_3d(ctx0, GGML_TYPE_F32, hp.n_embd, n_from, n_maps));  // [n_embd, n_from, M]
            in.entry = ggml_reshape_2d(ctx0, ggml_mul_mat(ctx0, maps, rep), hp.n_embd, n_from * n_maps);  // [n_embd, n_entry]
            ggml_set_name(in.entry, "entry_mapped");
        }
        ggml_tensor * both = ggml_concat(ctx0, stream, in.entry, 1);  // [n_embd, n_tokens + n_entry]
        return ggml_get_rows(ctx0, both, in.entry_sel);               // [n_embd, n_tokens]
    };

    ggml_tensor * inpL = all_enter_at_0 ? in.entry : ggml_get_rows(ctx0, m.tok_embd, in.tokens);  // [n_embd, n_tokens]
    ggml_tensor * cur  = nullptr;

    // a hidden-state tap: the residual stream's rows of the outputs, kept as a graph output
    in.taps.assign(shape.taps.size(), nullptr);
    auto tap = [&](uint32_t l, ggml_tensor * x, bool rows_are_outputs) {
        for (size_t j = 0; j < shape.taps.size(); ++j) {
            if (shape.taps[j] != l) continue;
            ggml_tensor * t = (in.out_ids && !rows_are_outputs && !shape.tap_all_rows)
                ? ggml_get_rows(ctx0, x, in.out_ids)  // [n_embd, n_outputs]
                : ggml_cont(ctx0, x);                 // [n_embd, n_outputs or n_tokens]
            ggml_set_output(t);
            ggml_build_forward_expand(gf, t);
            in.taps[j] = t;
        }
    };

    for (int il = 0; il < (int) hp.n_layer; ++il) {
        const layer_weights & L = m.layers[il];
        if (n_entry > 0 && !all_enter_at_0 && (uint32_t) il == shape.entry_layer) {
            inpL = enter(inpL);  // [n_embd, n_tokens]
        }
        ggml_tensor * inpSA = inpL;
        tap((uint32_t) il, inpL, false);

        cur = build_norm(ctx0, inpL, L.attn_norm, hp.f_norm_rms_eps);  // [n_embd, n_tokens]

        // self-attention
        {
            ggml_tensor * Qcur = build_mm(L.wq, cur);  // [n_embd_q, n_tokens]
            if (L.bq) Qcur = ggml_add(ctx0, Qcur, L.bq);
            ggml_tensor * Kcur = build_mm(L.wk, cur);  // [n_embd_k_gqa, n_tokens]
            if (L.bk) Kcur = ggml_add(ctx0, Kcur, L.bk);
            ggml_tensor * Vcur = build_mm(L.wv, cur);  // [n_embd_v_gqa, n_tokens]
            if (L.bv) Vcur = ggml_add(ctx0, Vcur, L.bv);

            Qcur = ggml_reshape_3d(ctx0, Qcur, n_embd_head, hp.n_head,    n_tokens);  // [head_dim, n_head, n_tokens]
            Kcur = ggml_reshape_3d(ctx0, Kcur, n_embd_head, hp.n_head_kv, n_tokens);  // [head_dim, n_head_kv, n_tokens]
            Vcur = ggml_reshape_3d(ctx0, Vcur, n_embd_head, hp.n_head_kv, n_tokens);

            if (L.q_norm) Qcur = build_norm(ctx0, Qcur, L.q_norm, hp.f_norm_rms_eps);
            Qcur = build_rope(ctx0, m, Qcur, in.pos);
            if (L.k_norm) Kcur = build_norm(ctx0, Kcur, L.k_norm, hp.f_norm_rms_eps);
            Kcur = build_rope(ctx0, m, Kcur, in.pos);

            ggml_build_forward_expand(gf, Qcur);
            ggml_build_forward_expand(gf, Vcur);
            ggml_build_forward_expand(gf, Kcur);

            // store K and V of the batch into their cells
            ggml_tensor * k_rows = ggml_view_2d(ctx0, Kcur, hp.n_embd_k_gqa(), n_tokens, Kcur->nb[2], 0);  // [n_embd_k_gqa, n_tokens]
            ggml_tensor * v_rows = ggml_view_2d(ctx0, Vcur, hp.n_embd_v_gqa(), n_tokens, Vcur->nb[2], 0);
            ggml_tensor * k_stored = ggml_set_rows(ctx0, kv.k_layer(il), k_rows, in.kv_idxs);  // the cache, written
            ggml_tensor * v_stored = ggml_set_rows(ctx0, kv.v_layer(il), v_rows, in.kv_idxs);
            ggml_build_forward_expand(gf, k_stored);
            ggml_build_forward_expand(gf, v_stored);

            ggml_tensor * q = ggml_permute(ctx0, Qcur, 0, 2, 1, 3);  // [head_dim, n_tokens, n_head]
            const bool own_attention = shape.own_attention && m.attn_available && (shape.invariant || n_tokens == 1);
            if (own_attention) {
                // specdec's attention: each row over exactly its allowed cells (decode and verification)
                cur = kernels::op_attention(ctx0, &m.attn, Qcur, k_stored, v_stored, in.mask);  // [n_embd_q, n_tokens]
            } else if (shape.invariant && n_tokens > 1) {
                cur = build_attn_invariant(ctx0, m, kv, il, q, in.mask, shape, kq_scale, k_stored, v_stored, in);  // [head_dim, n_head, n_tokens]
            } else {
                ggml_tensor * k = ggml_permute(ctx0, kv.view_k(ctx0, il, shape.n_kv), 0, 2, 1, 3);  // [head_dim, n_kv, n_head_kv]
                ggml_tensor * v = ggml_permute(ctx0, kv.view_v(ctx0, il, shape.n_kv), 0, 2, 1, 3);  // [head_dim, n_kv, n_head_kv]
                cur = ggml_flash_attn_ext(ctx0, q, k, v, in.mask, kq_scale, 0.0f, 0.0f);  // [head_dim, n_head, n_tokens]
                ggml_flash_attn_ext_set_prec(cur, GGML_PREC_F32);
            }
            if (!own_attention) {
                cur = ggml_reshape_2d(ctx0, cur, cur->ne[0] * cur->ne[1], cur->ne[2] * cur->ne[3]);  // [n_embd_q, n_tokens]
            }

            cur = build_mm(L.wo, cur);  // [n_embd, n_tokens]
            if (L.bo) cur = ggml_add(ctx0, cur, L.bo);
        }

        if (il == (int) hp.n_layer - 1 && in.out_ids) {
            // only the rows whose logits are wanted go on
            cur   = ggml_get_rows(ctx0, cur,   in.out_ids);  // [n_embd, n_outputs]
            inpSA = ggml_get_rows(ctx0, inpSA, in.out_ids);
        }

        ggml_tensor * ffn_inp = ggml_add(ctx0, cur, inpSA);

        // feed-forward: down(silu(gate(x)) * up(x))
        cur = build_norm(ctx0, ffn_inp, L.ffn_norm, hp.f_norm_rms_eps);
        ggml_tensor * up   = build_mm(L.ffn_up, cur);    // [n_ff, n]
        ggml_tensor * gate = build_mm(L.ffn_gate, cur);  // [n_ff, n]
        cur = ggml_swiglu_split(ctx0, gate, up);
        cur = build_mm(L.ffn_down, cur);                // [n_embd, n]

        cur  = ggml_add(ctx0, cur, ffn_inp);
        inpL = cur;
    }

    tap(hp.n_layer, inpL, true);
    cur = build_norm(ctx0, inpL, m.output_norm, hp.f_norm_rms_eps);  // [n_embd, n_outputs]
    cur = build_mm(m.output, cur);                         // [n_vocab, n_outputs]
    ggml_set_name(cur, "result_output");
    ggml_set_output(cur);
    in.logits = cur;

    ggml_build_forward_expand(gf, cur);
    return gf;
}

} // namespace specdec
