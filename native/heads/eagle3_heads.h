// EAGLE-3 heads (arXiv 2503.01840) in llama.cpp's own `eagle3` GGUF layout (the pinned llama.cpp's
// src/models/eagle3.cpp and llama-arch.cpp; written by its convert_hf_to_gguf.py):
//
//   general.architecture = "eagle3"; eagle3.embedding_length, .feed_forward_length, .block_count (1),
//   .attention.head_count, .attention.head_count_kv, .attention.layer_norm_rms_epsilon,
//   .rope.freq_base, .context_length, .target_layers (3 ints), .target_hidden_size,
//   .norm_before_residual (optional bool); the target's tokenizer.* keys.
//   tensors: fc.weight [3 * d_tgt, d]; blk.0.attn_norm.weight [d] (on the token embedding),
//   blk.0.attn_norm_2.weight [d] (on the fused features g), blk.0.attn_q/k/v.weight [2d, ...] over
//   [norm(emb); norm(g)], blk.0.attn_output.weight, blk.0.ffn_norm/gate/up/down.weight,
//   output_norm.weight [d]; optional output.weight [d, n_draft_vocab] with d2t (i64 target ids) and
//   token_embd.weight (otherwise the target's own are used).
//
// The draft layer at memory position P reads the pair (token[P+1], g[P]), g = fc([h_l0; h_l1; h_l2])
// from the target's taps (inputs of the three target layers) at row P, attends to the positions
// before it, and its pre-norm output both predicts token P+2 (output norm + head) and stands in for g
// at the next draft step.
#pragma once

#include "model/model.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace specdec {

struct eagle3_heads {
    uint32_t n_embd = 0, n_ff = 0, n_head = 0, n_head_kv = 0, n_embd_head = 0, n_ctx = 0;
    float    eps = 1e-5f, rope_base = 10000.0f;
    std::vector<int32_t> target_layers;  // 3 layer indices of the target, inputs tapped
    uint32_t target_hidden = 0;
    uint32_t target_vocab = 0;
    bool     norm_before_residual = false;
    uint64_t trained_tokens = 0;

    // f32 weights, ggml order (ne0 first)
    std::vector<float> fc, attn_norm, hidden_norm, wq, wk, wv, wo, ffn_norm, ffn_gate, ffn_up, ffn_down, out_norm;
    std::vector<float> output;    // [d, n_draft_vocab] or empty: the target's output head
    std::vector<float> tok_embd;  // [d, n_vocab] or empty: the target's token embeddings
    std::vector<int64_t> d2t;     // draft vocabulary id -> target id (empty: identity)
    uint32_t n_draft_vocab = 0;

    uint32_t n_q()  const { return n_embd_head * n_head; }
    uint32_t n_kv() const { return n_embd_head * n_head_kv; }

    // Loads and validates a head file against its target (typed errors as medusa_heads::load).
    static std::shared_ptr<eagle3_heads> load(const std::string & path, const model & target);

    // Writes llama.cpp's layout (with the target's tokenizer keys) through a temporary file.
    void save(const std::string & path, const model & target) const;

    void check_target(const model & target, const std::string & what) const;
};

} // namespace specdec
