// Hidden Transfer (arXiv 2404.12022) for a frozen target: k linear maps at a transfer layer l turn
// the hidden state of a context row (the input of layer l) into pseudo hidden states of the k
// positions after it; those pass the target's layers l .. n_layer - 1 as rows of the target's own
// forward pass (session::set_transfer, graph_shape::entry_maps) and its output head decodes them.
//
// File: a GGUF of specdec's own architecture "specdec-hidden-transfer" (README, "Hidden Transfer"):
//   general.architecture = "specdec-hidden-transfer"
//   specdec-hidden-transfer.embedding_length     u32  the target's n_embd
//   specdec-hidden-transfer.vocab_size           u32  the target's n_vocab
//   specdec-hidden-transfer.target.block_count   u32  the target's n_layer
//   specdec-hidden-transfer.target.architecture  str
//   specdec-hidden-transfer.transfer_layer       u32  l, in [1, n_layer - 1]
//   specdec-hidden-transfer.pseudo_count         u32  k
//   specdec-hidden-transfer.training.tokens      u64
//   tensor transfer.weight f32 [n_embd, n_embd, k] (ggml order: input dimension first; map j at [:, :, j])
#pragma once

#include "model/model.h"

#include "ggml.h"
#include "ggml-backend.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace specdec {

struct transfer_heads {
    uint32_t n_embd = 0, n_vocab = 0, target_layers = 0, layer = 0, k = 0;
    std::string target_arch;
    uint64_t trained_tokens = 0;
    std::vector<float> maps;  // [k][n_embd out][n_embd in]

    transfer_heads() = default;
    ~transfer_heads();
    transfer_heads(const transfer_heads &) = delete;
    transfer_heads & operator=(const transfer_heads &) = delete;

    // Loads and validates a file against its target (typed errors as medusa_heads::load;
    // ERR_HEADS_MISMATCH for a file of another target).
    static std::shared_ptr<transfer_heads> load(const std::string & path, const model & target);
    void save(const std::string & path) const;
    void check_target(const model & target, const std::string & what) const;

    // The maps as a ggml tensor in a host buffer (made on first use), for session::set_transfer.
    const ggml_tensor * maps_tensor() const;

private:
    mutable ggml_context *        ctx = nullptr;
    mutable ggml_backend_buffer_t buf = nullptr;
    mutable ggml_tensor *         t = nullptr;
};

} // namespace specdec
