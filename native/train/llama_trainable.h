// A llama/qwen2/qwen3 model as a differentiable ggml graph: trainable F32 copies of a model's
// weights and the forward pass over windows of tokens, built only from ops that have a backward
// pass in ggml (attention as mul_mat + soft_max_ext + mul_mat; no flash attention, no concat).
//
// Used where a whole model (or part of it) learns: Online Speculative Decoding's draft model.
#pragma once

#include "model/model.h"

#include "ggml.h"

#include <cstdint>
#include <vector>

namespace specdec {

struct trainable_llama {
    hparams hp;
    ggml_tensor * tok_embd    = nullptr;  // [n_embd, n_vocab]
    ggml_tensor * output_norm = nullptr;  // [n_embd]
    ggml_tensor * output      = nullptr;  // [n_embd, n_vocab] (tok_embd when tied)
    ggml_tensor * rope_freqs  = nullptr;  // frozen, optional
    std::vector<layer_weights> layers;
    // every trainable tensor with the model tensor it copies, in a fixed order (the save format)
    std::vector<std::pair<ggml_tensor *, const ggml_tensor *>> params;
};

// Declares F32 tensors for every weight of `src` in `ctx` (no_alloc), trainable (ggml_set_param)
// except rope_freqs. Tied embeddings stay tied (one tensor, both uses). `trainable` false: frozen
// F32 copies (listed in `params` all the same, for trainable_llama_load), that gradients pass through.
void trainable_llama_declare(ggml_context * ctx, const model & src, trainable_llama & out, bool trainable = true);

// Copies the model's weights (any type, dequantized) into the allocated trainable tensors.
void trainable_llama_load(const trainable_llama & w, const model & src);

// Copies the trainable tensors into `dst`'s weights, which must be F32 tensors in host memory of
// the same shapes (a model_clone_f32 of the same source).
void trainable_llama_store(const trainable_llama & w, model & dst);

// Number of trainable values.
int64_t trainable_llama_size(const trainable_llama & w);

// The forward pass over B windows of T tokens each (causal within its window, positions 0..T-1).
//   tokens: [T * B] i32, window-major; pos: [T] i32 = 0..T-1; mask: [T, T] f32 (0 / -inf, causal);
//   returns the logits [n_vocab, T * B].
ggml_tensor * build_llama_train_logits(ggml_context * c, const trainable_llama & w, ggml_tensor * tokens,
                                       ggml_tensor * pos, ggml_tensor * mask, int64_t T, int64_t B);

} // namespace specdec
