// The immutable model: hyper-parameters and weights placed on a backend.
// Many sessions (mutable state) can run over one model at once.
#pragma once

#include "kernels/ggml_ops.h"
#include "model/hparams.h"

#include "ggml.h"
#include "ggml-backend.h"
#include "gguf.h"

#include <atomic>
#include <mutex>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace specdec {

struct layer_weights {
    ggml_tensor * attn_norm = nullptr;  // [n_embd]
    ggml_tensor * wq = nullptr;         // [n_embd, n_embd_q]
    ggml_tensor * wk = nullptr;         // [n_embd, n_embd_k_gqa]
    ggml_tensor * wv = nullptr;         // [n_embd, n_embd_v_gqa]
    ggml_tensor * wo = nullptr;         // [n_embd_q, n_embd]
    ggml_tensor * bq = nullptr;         // qwen2: [n_embd_q]
    ggml_tensor * bk = nullptr;         // qwen2: [n_embd_k_gqa]
    ggml_tensor * bv = nullptr;         // qwen2: [n_embd_v_gqa]
    ggml_tensor * bo = nullptr;         // optional: [n_embd]
    ggml_tensor * q_norm = nullptr;     // qwen3: [n_embd_head_k]
    ggml_tensor * k_norm = nullptr;     // qwen3: [n_embd_head_k]
    ggml_tensor * ffn_norm = nullptr;   // [n_embd]
    ggml_tensor * ffn_gate = nullptr;   // [n_embd, n_ff]
    ggml_tensor * ffn_up = nullptr;     // [n_embd, n_ff]
    ggml_tensor * ffn_down = nullptr;   // [n_ff, n_embd]
};

// BACKEND_RPC: the layers on ggml RPC servers (load_params::rpc), the token embeddings on the CPU.
enum backend_kind { BACKEND_AUTO, BACKEND_CPU, BACKEND_CUDA, BACKEND_METAL, BACKEND_RPC };

struct load_params {
    std::string  path;
    backend_kind backend = BACKEND_AUTO;
    // On the CPU, run the Q8_0, Q4_0, Q4_K, Q6_K, F16 and BF16 matrix products of decoding,
    // verification and prompt prefill with specdec's batch-invariant kernels (kernels/gemm.h)
    // instead of ggml's.
    bool specdec_kernels = true;
    // called with a fraction in [0, 1]; return false to cancel the load
    std::function<bool(float)> progress;
    // "host:port" of ggml RPC servers: the layers are split across their devices, in order, by
    // tensor_split (one share per device) or, when it is empty, by each device's free memory.
    std::vector<std::string> rpc;
    std::vector<float>       tensor_split;
};

struct model {
    hparams hp;

    ggml_tensor * tok_embd    = nullptr;  // [n_embd, n_vocab]
    ggml_tensor * output_norm = nullptr;  // [n_embd]
    ggml_tensor * output      = nullptr;  // [n_embd, n_vocab] (tok_embd when tied)
    ggml_tensor * rope_freqs  = nullptr;  // optional [n_rot/2] (Llama 3)
    std::vector<layer_weights> layers;

    bool     tied_embeddings = false;
    uint64_t n_params        = 0;
    uint64_t n_bytes         = 0;
    std::string file_type;            // dominant weight type, e.g. "q8_0"

    ggml_backend_dev_t device = nullptr;  // where the weights live (with RPC: the output layer's device)
    std::string        device_name;
    backend_kind       kind = BACKEND_CPU;
    // With RPC: every device that holds layers, in order, and each layer's index into it.
    std::vector<ggml_backend_dev_t> devices;
    std::vector<int>                layer_device;
    ggml_backend_dev_t device_of_layer(int il) const { return devices.empty() ? device : devices[layer_device[il]]; }
    std::vector<std::shared_ptr<void>> rpc_leases;  // runtime/rpc.h rpc_devices: the servers this model uses

    // Weights repacked for specdec's CPU kernels (empty on GPUs or with ggml's kernels).
    std::unordered_map<const ggml_tensor *, std::unique_ptr<kernels::packed_weights>> packed;
    std::string cpu_kernels = "ggml";  // "ggml", or "specdec-<instruction set>"
    // With specdec's kernels, attention of decoding and verification runs on them too.
    bool specdec_attention = false;
    kernels::attention_params attn;
    bool attn_available = false;  // the attention kernel can run this model (CPU; sessions may opt in)

private:
    mutable std::mutex        draft_mutex;
    mutable std::atomic<bool> draft_ready { false };
    mutable std::unordered_map<const ggml_tensor *, std::unique_ptr<kernels::packed_weights>> draft_packed;

public:
    const kernels::packed_weights * packed_for(const ggml_tensor * w) const {
        auto it = packed.find(w);
        return it == packed.end() ? nullptr : it->second.get();
    }

    // A model that drafts for another runs its F16/BF16/F32 matrices as Q8_0 on specdec's kernels
    // (a draft's numerics do not touch the output; Q8_0 halves what a one-token step reads). The
    // copies are made the first time a draft session needs them (thread-safe) and kept. `aborted`
    // is polled between slices of at most DRAFT_COPY_SLICE values: when it says so, the copy stops
    // with ERR_ABORTED, keeping the matrices already done, and the next call resumes it.
    static constexpr int64_t DRAFT_COPY_SLICE = 1 << 20;
    void prepare_draft_weights(const std::function<bool()> & aborted = {}) const;
    // Drops the Q8_0 draft copies, so that the next prepare_draft_weights() makes them again from the
    // current weights. Only for a model no session is evaluating at the time: Online Speculative
    // Decoding's private copy, between the steps of the one session that drafts with it.
    void refresh_draft_weights();
    const kernels::packed_weights * draft_packed_for(const ggml_tensor * w) const {
        auto it = draft_packed.find(w);
        return it == draft_packed.end() ? nullptr : it->second.get();
    }

    model();
    ~model();
    model(const model &) = delete;
    model & operator=(const model &) = delete;

    ggml_context *                     ctx_w   = nullptr;  // tensor metadata (no_alloc)
    gguf_context *                     gguf    = nullptr;
    std::vector<ggml_backend_buffer_t> buffers;
    void *                             mapping = nullptr;
    size_t                             mapping_size = 0;
};

// Models alive in this process (constructed, not yet destroyed): a test hook that shows when a
// model's memory is really freed (the addon's _liveModels()).
int64_t model_live_count();

// Allocates buffers of `buft` for `tensors` (no_alloc tensors, in order) and places them: as few
// buffers as the buffer type's largest allocation allows, each with usage `usage`, appended to `out`.
// Returns false when an allocation fails (the buffers made so far stay in `out`, for the caller to free).
bool place_tensors(ggml_backend_buffer_type_t buft, const std::vector<ggml_tensor *> & tensors,
                   ggml_backend_buffer_usage usage, std::vector<ggml_backend_buffer_t> & out);

// A private, writable copy of a CPU model with every weight in F32 in host memory (the trainable
// copy Online Speculative Decoding drafts with). No packed copies: it runs as a draft model, on its
// Q8_0 draft copies (prepare_draft_weights). Throws ERR_BACKEND_UNAVAILABLE for a model on a GPU.
std::shared_ptr<model> model_clone_f32(const model & src);

// Loads and validates a model file. Throws specdec::error with a code on any problem.
std::shared_ptr<model> model_load(const load_params & params);

} // namespace specdec
