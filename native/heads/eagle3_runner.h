// The EAGLE-3 draft layer at inference (heads/eagle3_heads.h for the network): its weights (the
// large matrices as Q8_0 copies), its own KV cache of one layer, and the graph that evaluates a
// batch of rows on the CPU. The cells hold the sequence's committed positions first, then, while
// a tree is drafted, its nodes; truncate() drops the nodes again.
#pragma once

#include "heads/eagle3_heads.h"
#include "kernels/gemm.h"

#include "ggml-backend.h"
#include "ggml-alloc.h"
#include "ggml-cpu.h"

#include <atomic>
#include <memory>
#include <vector>

namespace specdec {

class eagle3_runner {
public:
    eagle3_runner(std::shared_ptr<const eagle3_heads> heads, std::shared_ptr<const model> target, int n_threads, uint32_t n_ctx);
    ~eagle3_runner();
    eagle3_runner(const eagle3_runner &) = delete;
    eagle3_runner & operator=(const eagle3_runner &) = delete;

    struct rows {
        std::vector<int32_t>  tokens;     // the token of each pair
        std::vector<int32_t>  pos;        // RoPE positions
        const float *         feats = nullptr;  // [n][3 * target hidden]: the target's taps (g = fc(feats))
        const float *         g = nullptr;      // [n][n_embd]: the draft's own outputs, when feats is null
        // row i attends cells [0, prefix[i]) and the cells in attend[i] (a tree's ancestors and itself)
        std::vector<uint32_t>              prefix;
        std::vector<std::vector<uint32_t>> attend;
    };

    // Evaluates `r` into cells [used(), used() + n) and keeps them. Writes the pre-norm outputs
    // [n][n_embd] and, for the rows in `logit_rows`, logits over the target's vocabulary
    // [logit_rows.size()][n_vocab] (a draft vocabulary is spread out through d2t, -inf elsewhere).
    void eval(const rows & r, const std::vector<uint32_t> & logit_rows, std::vector<float> & h, std::vector<float> & logits);

    uint32_t used() const { return n_used; }
    uint32_t size() const { return n_cells; }
    void truncate(uint32_t n) { if (n < n_used) n_used = n; }

    void request_abort() { abort_flag.store(true); }
    void pause_threads();

    const eagle3_heads & heads() const { return *hd; }

private:
    std::shared_ptr<const eagle3_heads> hd;
    std::shared_ptr<const model>        tgt;
    ggml_backend_t          backend = nullptr;
    ggml_threadpool *       threadpool = nullptr;
    ggml_context *          ctx_w = nullptr;
    ggml_backend_buffer_t   buf_w = nullptr;
    ggml_gallocr_t          galloc = nullptr;
    std::vector<uint8_t>    graph_buf;
    std::atomic<bool>       abort_flag { false };
    // the Q8_0 matrices repacked for specdec's CPU kernels (kernels/gemm.h), by tensor
    std::vector<std::pair<const ggml_tensor *, std::unique_ptr<kernels::packed_weights>>> packed;
    uint32_t                n_cells = 0, n_used = 0;

    struct {
        ggml_tensor * fc, * attn_norm, * hidden_norm, * wq, * wk, * wv, * wo, * ffn_norm, * gate, * up, * down, * out_norm;
        ggml_tensor * output = nullptr, * tok_embd = nullptr;
        ggml_tensor * k_cache, * v_cache;  // f16 [n_kv, n_cells]
    } w;
};

} // namespace specdec
