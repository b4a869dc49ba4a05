// The KV-cache coprocessor ("Deliberation in Latent Space via Differentiable Cache Augmentation",
// arXiv 2412.17747): a network that reads a frozen decoder's KV cache and writes N_L latent
// embeddings; the decoder evaluates them as rows entering at layer 0 and keeps their K/V in its
// cache, where every later token attends to them.
//
// specdec's coprocessor is the decoder itself with low-rank adapters on the matrices of every layer
// (attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down), run over N_L trainable soft
// tokens that attend to the decoder's cached cells and to each other (causal); latent i is the
// coprocessor's last-layer output of soft token i through an RMS norm with a trained gain
// (latent_norm). With the adapters' B at zero the coprocessor is the decoder (as the paper
// initialises it). The first n <= N_L latents of a file are well defined on their own (soft token i
// sees soft tokens 0..i only), so a session may use fewer.
//
// The file (GGUF, general.architecture "specdec-coprocessor"):
//   keys   specdec-coprocessor.latents, .lora_rank (u32), .lora_scale (f32), .ahead (u32, trained),
//          .trained_tokens (u64), .target.architecture (str), .target.embedding_length,
//          .target.block_count, .target.vocab_size (u32), .target.checksum (u64: FNV-1a of the
//          target's norm weights, coproc_target_checksum)
//   tensors soft_tokens [n_embd, N_L], latent_norm.weight [n_embd],
//           blk.<l>.<matrix>.lora_a [n_in, rank], blk.<l>.<matrix>.lora_b [rank, n_out] (f32)
#pragma once

#include "graph/llama_graph.h"
#include "model/model.h"
#include "runtime/session.h"

#include <memory>
#include <string>
#include <vector>

namespace specdec {

static constexpr const char * COPROC_ARCH = "specdec-coprocessor";
static constexpr uint32_t COPROC_MAX_LATENTS = 256;
static constexpr uint32_t COPROC_MAX_RANK = 256;
static constexpr int COPROC_N_MATRICES = 7;

// The matrices of a layer that carry adapters, in file order.
const char * coproc_matrix_name(int j);
ggml_tensor * coproc_matrix(const layer_weights & L, int j);

// FNV-1a over the target's norm weights (output_norm, each layer's attn_norm and ffn_norm) as f32:
// a coprocessor trained on one model refuses another of the same shape.
uint64_t coproc_target_checksum(const model & m);

// A coprocessor's weights in host memory (f32), as the file holds them.
struct coproc_weights {
    uint32_t n_latents = 0, rank = 0, ahead = 0;
    float    scale = 1.0f;
    uint64_t trained_tokens = 0;
    std::vector<float> soft;         // [N_L][n_embd]
    std::vector<float> latent_norm;  // [n_embd]
    // per layer, per matrix j: A [rank][n_in] (ggml [n_in, rank]) and B [n_out][rank] (ggml [rank, n_out])
    std::vector<std::vector<float>> a, b;  // index l * COPROC_N_MATRICES + j
};

// Writes `w` for `target` to `path` (through a temporary file).
void coproc_write(const std::string & path, const model & target, const coproc_weights & w);

class coprocessor {
public:
    // Loads and checks a file against `target`: ERR_UNSUPPORTED_ARCHITECTURE (not a coprocessor),
    // ERR_HEADS_MISMATCH (another model's), ERR_TRUNCATED_FILE / ERR_NOT_GGUF / ERR_BAD_METADATA /
    // ERR_TENSOR_SHAPE (a corrupt file).
    coprocessor(const std::string & path, std::shared_ptr<const model> target);
    ~coprocessor();
    coprocessor(const coprocessor &) = delete;
    coprocessor & operator=(const coprocessor &) = delete;

    uint32_t n_latents() const { return w.n_latents; }
    uint32_t rank() const { return w.rank; }
    const model & target() const { return *tgt; }

    // The first n latents for the session's cache as it stands ([n][n_embd]). The coprocessor's
    // soft rows use the cells after the held ones as scratch (uncommitted).
    void latents(session & s, uint32_t n, std::vector<float> & out) const;

private:
    std::shared_ptr<const model> tgt;
    coproc_weights w;
    ggml_context *        ctx = nullptr;
    ggml_backend_buffer_t buf = nullptr;
    lora_adapter          lora;
};

// Checks n against the file (ERR_INVALID_OPTION unless 1 <= n <= its latents) and the room left.
void coproc_check(const session & s, const coprocessor & c, uint32_t n);

// Appends n latent cells after the session's last cell (the tokens evaluated next follow them).
void coproc_append(session & s, const coprocessor & c, uint32_t n);

// Augments the session before its last token: that token is dropped from the cache, the coprocessor
// reads the cells before it, its n latents go after them and the token is evaluated again after the
// latents. `logits`: the token's logits then (what the next token comes from); the session keeps them
// for prefix reuse. An earlier span right before that token is replaced.
void coproc_augment(session & s, const coprocessor & c, uint32_t n, std::vector<float> & logits);

} // namespace specdec
