// Hyper-parameters of a llama-family model, read from GGUF metadata.
#pragma once

#include <cstdint>
#include <string>

namespace specdec {

enum arch_type {
    ARCH_LLAMA,  // Llama 2/3.x, TinyLlama, SmolLM, Mistral-style: RoPE NORM
    ARCH_QWEN2,  // Q/K/V biases, RoPE NEOX
    ARCH_QWEN3,  // per-head Q/K RMSNorm, RoPE NEOX
};

struct hparams {
    arch_type   arch = ARCH_LLAMA;
    std::string arch_name;

    uint32_t n_vocab       = 0;
    // Input-only token ids past the vocabulary: rows of token_embd that the output head has no
    // row for and no text tokenizes to (a Lexical Unit Decoding model's placeholder, id n_vocab).
    uint32_t n_vocab_extra = 0;
    uint32_t n_vocab_in() const { return n_vocab + n_vocab_extra; }
    uint32_t n_ctx_train   = 0;
    uint32_t n_embd        = 0;
    uint32_t n_layer       = 0;
    uint32_t n_head        = 0;
    uint32_t n_head_kv     = 0;
    uint32_t n_ff          = 0;
    uint32_t n_embd_head_k = 0;
    uint32_t n_embd_head_v = 0;
    uint32_t n_rot         = 0;

    float f_norm_rms_eps = 1e-5f;
    float f_attn_scale   = 0.0f;  // 0: 1/sqrt(head dim)

    // RoPE, as llama.cpp resolves it for a context (llama-context.cpp)
    int      rope_type       = 0;  // GGML_ROPE_TYPE_NORMAL or GGML_ROPE_TYPE_NEOX
    float    rope_freq_base  = 10000.0f;
    float    rope_freq_scale = 1.0f;
    uint32_t n_ctx_orig      = 0;
    float    yarn_ext_factor = 0.0f;
    float    yarn_attn_factor = 1.0f;
    float    yarn_beta_fast  = 32.0f;
    float    yarn_beta_slow  = 1.0f;
    std::string rope_scaling = "none";

    // 64-bit products: the loader bounds them (model_loader.cpp read_hparams), but a product of two
    // file values must never wrap before it is checked
    int64_t n_embd_k_gqa() const { return (int64_t) n_embd_head_k * n_head_kv; }
    int64_t n_embd_v_gqa() const { return (int64_t) n_embd_head_v * n_head_kv; }
    int64_t n_embd_q()     const { return (int64_t) n_embd_head_k * n_head; }
};

} // namespace specdec
