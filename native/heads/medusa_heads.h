// Medusa heads (arXiv 2401.10774) for a frozen target: K residual blocks over the target's last
// hidden state, each followed by the target's own output norm and output head. Head k (0-based)
// reads the hidden state of the row that predicted token t+1 and predicts token t+2+k.
//
//   x      = rms_norm(h) * output_norm          h: the last layer's output (tap n_layer), [n_embd]
//   z_k    = x + silu(W_k x + b_k)              W_k: [n_embd, n_embd], b_k: [n_embd]
//   logits = output . z_k                       the target's output matrix, [n_vocab]
//
// File: a GGUF of specdec's own architecture "specdec-medusa" (README, "Draft heads"):
//   general.architecture            = "specdec-medusa"
//   specdec-medusa.head_count       u32  K
//   specdec-medusa.embedding_length u32  the target's n_embd
//   specdec-medusa.vocab_size       u32  the target's n_vocab
//   specdec-medusa.target.block_count   u32  the target's n_layer
//   specdec-medusa.target.architecture  str  the target's architecture
//   specdec-medusa.training.tokens  u64  corpus tokens trained on (informative)
//   tensors: medusa.weight f32 [n_embd, n_embd, K] (ggml order: input dim first), medusa.bias f32 [n_embd, K]
#pragma once

#include "model/model.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace specdec {

struct medusa_heads {
    uint32_t n_heads = 0;
    uint32_t n_embd  = 0;
    uint32_t n_vocab = 0;
    uint32_t target_layers = 0;
    std::string target_arch;
    uint64_t trained_tokens = 0;
    std::vector<float> w;  // [K][n_embd out][n_embd in]: row o of head k at (k * n_embd + o) * n_embd
    std::vector<float> b;  // [K][n_embd]

    // Zero heads (the paper's initialisation: each head starts as the target's own head).
    static std::shared_ptr<medusa_heads> zeros(const model & target, uint32_t n_heads);

    // Loads and validates a head file against its target. Typed errors: ERR_FILE_NOT_FOUND,
    // ERR_NOT_GGUF, ERR_TRUNCATED_FILE, ERR_BAD_METADATA, ERR_MISSING_TENSOR, ERR_TENSOR_SHAPE,
    // ERR_TENSOR_TYPE, ERR_UNSUPPORTED_ARCHITECTURE, and ERR_HEADS_MISMATCH for heads of another target.
    static std::shared_ptr<medusa_heads> load(const std::string & path, const model & target);

    // Writes the heads to `path` through a temporary file renamed into place.
    void save(const std::string & path) const;

    // Checks that these heads fit `target` (ERR_HEADS_MISMATCH otherwise).
    void check_target(const model & target, const std::string & what) const;
};

// Runs heads over one hidden state with the target's output norm and head. Not thread-safe
// (scratch buffers); one per drafter.
class medusa_runner {
public:
    medusa_runner(std::shared_ptr<const medusa_heads> heads, std::shared_ptr<const model> target);

    // h: the tapped hidden state [n_embd]; writes logits [K][n_vocab].
    void run(const float * h, std::vector<float> & logits);

    const medusa_heads & heads() const { return *hd; }

private:
    std::shared_ptr<const medusa_heads> hd;
    std::shared_ptr<const model>        tgt;
    const kernels::packed_weights *     packed = nullptr;  // the target's packed output matrix, if any
    std::vector<float>                  out_f32;           // otherwise an f32 copy [n_vocab][n_embd]
    std::vector<float>                  norm_w;
    std::vector<float>                  x, z;              // [n_embd], [K][n_embd]
    std::vector<uint8_t>                act;
};

// Copies a CPU tensor of any type ggml can convert to f32 (rows of ne[0]).
void tensor_to_f32(const ggml_tensor * t, std::vector<float> & out);

} // namespace specdec
