// The Chimera draft network at inference (heads/chimera_heads.h for the network): its weights (the
// large matrices as Q8_0 copies on specdec's kernels), the target's token embeddings as f32, its
// own KV cache of one layer, and the graph that evaluates a batch of elements on the CPU. The cells
// hold the sequence's committed elements first, then, while a tree is drafted, its nodes;
// truncate() drops the nodes again.
#pragma once

#include "heads/chimera_heads.h"
#include "kernels/gemm.h"

#include "ggml-backend.h"
#include "ggml-alloc.h"
#include "ggml-cpu.h"

#include <atomic>
#include <memory>
#include <vector>

namespace specdec {

class chimera_runner {
public:
    chimera_runner(std::shared_ptr<const chimera_heads> heads, std::shared_ptr<const model> target, int n_threads, uint32_t n_ctx);
    ~chimera_runner();
    chimera_runner(const chimera_runner &) = delete;
    chimera_runner & operator=(const chimera_runner &) = delete;

    struct rows {
        std::vector<int32_t>  tri;     // [n][3]: tokens P - 1, P, P + 1 of each element (-1: none, zeros)
        std::vector<int32_t>  pos;     // RoPE positions
        const float *         h = nullptr;  // [n][n_embd]: the target's hidden state, or a stand-in (a previous o)
        // row i attends cells [0, prefix[i]) and the cells in attend[i] (a tree's ancestors and itself)
        std::vector<uint32_t>              prefix;
        std::vector<std::vector<uint32_t>> attend;
    };

    // Evaluates `r` into cells [used(), used() + n) and keeps them. Writes the layer outputs o
    // [n][n_embd] (the stand-ins) and, for the rows in `logit_rows`, logits [logit_rows.size()][n_vocab].
    void eval(const rows & r, const std::vector<uint32_t> & logit_rows, std::vector<float> & o, std::vector<float> & logits);

    uint32_t used() const { return n_used; }
    uint32_t size() const { return n_cells; }
    void truncate(uint32_t n) { if (n < n_used) n_used = n; }

    void request_abort() { abort_flag.store(true); }
    void clear_abort() { abort_flag.store(false); }
    void pause_threads();

    const chimera_heads & heads() const { return *hd; }

private:
    std::shared_ptr<const chimera_heads> hd;
    std::shared_ptr<const model>         tgt;
    ggml_backend_t          backend = nullptr;
    ggml_threadpool *       threadpool = nullptr;
    ggml_context *          ctx_w = nullptr;
    ggml_backend_buffer_t   buf_w = nullptr;
    ggml_gallocr_t          galloc = nullptr;
    std::vector<uint8_t>    graph_buf;
    std::atomic<bool>       abort_flag { false };
    std::vector<float>      tok_embd;  // the target's token embeddings, f32 [n_vocab][n_embd]
    std::vector<float>      tri_in;    // scratch: [n][3 n_embd]
    std::vector<std::pair<const ggml_tensor *, std::unique_ptr<kernels::packed_weights>>> packed;
    uint32_t                n_cells = 0, n_used = 0;

    struct {
        ggml_tensor * tri_w, * tri_b, * tri_out, * hidden_norm, * attn_norm, * wq, * wk, * wv, * wo, * ffn_norm, * gate, * up, * down;
        ggml_tensor * head_h, * head_o, * head_b, * out_norm;
        ggml_tensor * k_cache, * v_cache;  // f16 [n_kv, n_cells]
    } w;
};

} // namespace specdec
