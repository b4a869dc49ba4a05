// One graph builder for every evaluation of a llama/qwen2/qwen3 model: a one-token
// decode is a batch of one, a prefill is a chain, a verification is a tree. The
// positions and the attention mask are inputs, so any token tree fits the same graph.
#pragma once

#include "kv/kv_cache.h"
#include "model/model.h"

#include <vector>

namespace specdec {

// The largest batch evaluated with batch-invariant attention (tree verification, evaluate()).
static constexpr uint32_t MAX_INVARIANT_BATCH = 256;

// Low-rank adapters: W x + scale * B (A x) for the weights listed (A: [n_in, rank], B: [rank, n_out]).
struct lora_adapter {
    struct pair {
        const ggml_tensor * w = nullptr;  // the model's weight it adapts
        ggml_tensor *       a = nullptr;  // [n_in, rank]
        ggml_tensor *       b = nullptr;  // [rank, n_out]
    };
    std::vector<pair> pairs;
    float             scale = 1.0f;
    const pair * find(const ggml_tensor * w) const {
        for (const pair & p : pairs) if (p.w == w) return &p;
        return nullptr;
    }
};

struct graph_shape {
    uint32_t n_tokens  = 0;  // tokens evaluated (written to cells [kv_head, kv_head + n_tokens))
    uint32_t n_kv      = 0;  // cells attended over (>= kv_head + n_tokens, padded)
    uint32_t n_outputs = 0;  // rows of logits wanted (selected by out_ids)

    // Batch-invariant attention: when set, row i's attention is computed exactly as a
    // one-token decode of that token computes it (same kernel path, same KV length
    // row_n_kv[i]), so its logits equal one-token decoding bit for bit. Off for prompt
    // prefill, which follows llama.cpp's batched kernels.
    bool                  invariant = false;
    std::vector<uint32_t> row_n_kv;  // [n_tokens] when invariant
    // ggml's attention (not specdec's): rows attended over a gathered copy of their cells, laid out
    // as a one-token decode of that token lays them out (the context, then its ancestors in the
    // cells after it, over the same view length row_n_kv[i]). plan_invariant_rows sets them.
    // row_gather[i] >= 0: the row's column in graph_inputs::gather_idx / gather_mask.
    std::vector<int32_t>  row_gather;
    uint32_t              n_gather    = 0;  // gathered rows
    uint32_t              gather_n_kv = 0;  // the longest gathered view (the inputs' column length)
    // Attention of decoding and verification on specdec's kernel (kernels/attention.h).
    bool                  own_attention = false;
    // A draft session: one-token and batch-invariant products also take the model's Q8_0 draft copies.
    bool                  draft_weights = false;
    // Hidden-state taps: layer l < n_layer is the input of layer l (the residual stream before
    // its attention norm), l == n_layer the last layer's output before the output norm. Each tap
    // yields the rows of the outputs. Taps only add output nodes: the logits keep every bit.
    std::vector<uint32_t> taps;
    // Taps of every evaluated row rather than the outputs' (layers < n_layer only): drafters that
    // keep a cache of their own over the whole sequence (EAGLE-3) read the prompt's rows.
    bool                  tap_all_rows = false;
    // Rows that enter as given vectors: at the input of layer entry_layer (the residual stream before
    // its attention norm, where a tap of that layer reads), batch rows entry_rows[j] take the given
    // hidden vector j (graph_inputs::entry, [n_embd, entry_rows.size()]) instead of what the layers
    // below computed. entry_layer 0: instead of their token embedding (the token id is not read; the
    // coprocessor's soft tokens and latents). entry_layer l > 0: below l such a row is computed from its
    // token as any row (its K/V in those layers too; the mask decides who attends them), from l on
    // from the vector (Hidden Transfer's pseudo rows). Empty: the graph is the same as without.
    uint32_t              entry_layer = 0;
    std::vector<uint32_t> entry_rows;  // strictly increasing batch rows
    // The entering vectors computed in the graph rather than given (entry_layer > 0): linear maps of
    // the stream's rows at entry_layer. With M = entry_maps->ne[2] maps and the source rows entry_from,
    // vector j * entry_from.size() + a is map j applied to row entry_from[a] (map-major); entry_rows
    // then holds M * entry_from.size() rows. Hidden Transfer's pseudo rows: maps of a context row's
    // hidden state stand in for the hidden states of the positions after it.
    const ggml_tensor *   entry_maps = nullptr;  // [n_embd, n_embd, M] f32 (input dimension first)
    std::vector<uint32_t> entry_from;            // batch rows the maps read
    // Low-rank adapters on the weights (a coprocessor's): null for none.
    const lora_adapter * lora = nullptr;
};


// Length of the KV view a one-token decode uses when the cache holds n_total cells
// (llama.cpp pads to 256 so that graph shapes repeat).
uint32_t decode_n_kv(uint32_t n_total, uint32_t kv_size);

// Sets row_n_kv (and, on ggml's CPU attention, row_gather, n_gather, gather_n_kv) of an invariant
// shape for a tree whose row i sits in cell n_past + i at depth depth[i] (position n_past + depth[i]).
// A one-token decode of row i's token sees the view decode_n_kv(n_past + depth[i] + 1) with its
// ancestors in the cells right after the context. ggml's row-by-row kernel (views < 512 cells) skips
// masked cells, so a longer view or ancestors in later cells change no bit; its split kernel (one
// row over >= 512 cells, the range cut in one chunk per thread) does change them: such a row, when
// its ancestors are not in their decode cells (a node off the first branch) or its own cell lies
// past its decode view, is gathered.
void plan_invariant_rows(graph_shape & shape, uint32_t n_past, const std::vector<int32_t> & depth, uint32_t kv_size,
                         bool ggml_cpu_attention);

struct graph_inputs {
    ggml_tensor * tokens  = nullptr;  // [n_tokens] i32 (null when every row enters as a vector at layer 0)
    ggml_tensor * pos     = nullptr;  // [n_tokens] i32: RoPE positions
    ggml_tensor * kv_idxs = nullptr;  // [n_tokens] i64: the cache cell each token's K/V goes to
    ggml_tensor * mask    = nullptr;  // [n_kv, n_tokens] f16: 0 where a token may attend, -inf elsewhere
    ggml_tensor * out_ids = nullptr;  // [n_outputs] i32: which tokens produce logits (null: all)
    ggml_tensor * logits  = nullptr;  // [n_vocab, n_outputs] f32
    std::vector<ggml_tensor *> taps;  // per graph_shape::taps: [n_embd, n_outputs] f32 ([n_embd, n_tokens] with tap_all_rows)
    ggml_tensor * gather_idx  = nullptr;  // [gather_n_kv, n_gather] i32: per gathered row, the cell of each view cell
    ggml_tensor * gather_mask = nullptr;  // [gather_n_kv, n_gather] f16: its mask in that layout
    ggml_tensor * entry     = nullptr;  // [n_embd, entry_rows.size()] f32: the vectors of rows that enter at entry_layer (computed with entry_maps)
    ggml_tensor * entry_from = nullptr; // [entry_from.size()] i32: the rows the entry maps read (with entry_maps)
    ggml_tensor * entry_sel = nullptr;  // [n_tokens] i32: row i's source in [stream ; entry] (absent when every row enters at layer 0)
};

// Fills graph_inputs::entry_sel for a shape with entry rows (row i: i, or n_tokens + j for entry_rows[j]),
// and entry_from when the entering vectors are computed by maps.
void fill_entry_sel(const graph_shape & shape, const graph_inputs & in);

ggml_cgraph * build_llama_graph(ggml_context * ctx0, const model & m, const kv_cache & kv,
                                const graph_shape & shape, graph_inputs & in);

// Upper bound of graph nodes for the given model (for ggml_new_graph_custom and the compute context);
// `gathered_rows`: invariant graphs may gather rows (ggml's CPU attention), which takes more nodes;
// `max_rows`: the most rows a graph has (a session's batch size), which bounds the per-row nodes.
size_t llama_graph_max_nodes(const model & m, bool gathered_rows = false, uint32_t max_rows = MAX_INVARIANT_BATCH);

} // namespace specdec
