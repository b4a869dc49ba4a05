// Chimera (arXiv 2402.15758) for a frozen target: a draft network that fuses all tokens, in a GGUF
// architecture of specdec's own, "specdec-chimera" (README, "Chimera").
//
// Element P of the draft sequence reads the target's hidden state h_P at row P (the input of the
// target's last layer, tap n_layer - 1: every row of every pass has it, the prompt's too) and the
// trigram of tokens P - 1, P, P + 1 (P + 1 is the token row P predicted); its outputs predict token
// P + 2 and stand in for h_{P+1} at the next draft step:
//
//   c  = [e(x_{P-1}); e(x_P); e(x_{P+1})]          e: the target's token embeddings (a missing token: zeros)  [3d]
//   c' = c + silu(W_t c + b_t)                      trigram encoder: zero-initialised residual block          [3d]
//   g  = W_d c'                                     down to d                                                 [d]
//   hn = rms_norm(h_P) * hidden_norm                                                                          [d]
//   u  = hn + g                                     the element's input
//   o  = layer(u)                                   one llama decoder layer (pre-norm attention with RoPE over
//                                                   the elements before it, SwiGLU FFN), full context          [d]
//   z  = o + silu(W_h hn + W_o o + b_h)             residual decoding head over [target hidden; layer output]
//                                                   (two matmuls where the paper concatenates)                [d]
//   logits = output . (rms_norm(z) * output_norm)   the target's own output head
//
// o is trained to stand in for the target's next hidden state (regression of rms_norm(o) on
// rms_norm(h_{P+1})): at the next draft step a drafted position's h is the previous element's o.
//
// File: general.architecture = "specdec-chimera";
//   specdec-chimera.embedding_length, .feed_forward_length, .attention.head_count,
//   .attention.head_count_kv, .attention.layer_norm_rms_epsilon, .rope.freq_base, .context_length,
//   .vocab_size, .target.block_count, .target.layer (the tapped layer), .target.architecture (str),
//   .training.tokens (u64);
//   tensors (f32, ggml order: input dimension first): trigram.weight [3d, 3d], trigram.bias [3d],
//   trigram_out.weight [3d, d], hidden_norm.weight [d], blk.0.attn_norm.weight [d],
//   blk.0.attn_q/k/v.weight [d, n_head * hd] / [d, n_head_kv * hd], blk.0.attn_output.weight,
//   blk.0.ffn_norm.weight, blk.0.ffn_gate/up.weight [d, ff], blk.0.ffn_down.weight [ff, d],
//   head_hidden.weight [d, d], head_layer.weight [d, d], head.bias [d], output_norm.weight [d].
#pragma once

#include "model/model.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace specdec {

struct chimera_heads {
    uint32_t n_embd = 0, n_ff = 0, n_head = 0, n_head_kv = 0, n_embd_head = 0, n_ctx = 0;
    float    eps = 1e-5f, rope_base = 10000.0f;
    uint32_t n_vocab = 0;         // the target's
    uint32_t target_layers = 0;   // the target's n_layer
    uint32_t target_layer = 0;    // the tap: the input of this target layer
    std::string target_arch;
    uint64_t trained_tokens = 0;

    // f32 weights, ggml order (ne0 first)
    std::vector<float> tri_w, tri_b, tri_out, hidden_norm;
    std::vector<float> attn_norm, wq, wk, wv, wo, ffn_norm, ffn_gate, ffn_up, ffn_down;
    std::vector<float> head_h, head_o, head_b, out_norm;

    uint32_t n_q()  const { return n_embd_head * n_head; }
    uint32_t n_kv() const { return n_embd_head * n_head_kv; }

    // The shape for `target` (its hidden size, heads, FFN width; tap n_layer - 1), weights empty.
    static std::shared_ptr<chimera_heads> shape_for(const model & target);

    // Loads and validates a file against its target. Typed errors as medusa_heads::load
    // (ERR_HEADS_MISMATCH for a file of another target).
    static std::shared_ptr<chimera_heads> load(const std::string & path, const model & target);

    // Writes the file through a temporary file renamed into place.
    void save(const std::string & path) const;

    void check_target(const model & target, const std::string & what) const;
};

} // namespace specdec
