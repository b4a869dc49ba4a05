// What the one-layer draft networks that read the target's hidden states share at inference
// (EAGLE-3: heads/eagle3_runner.h, Chimera: heads/chimera_runner.h): a CPU backend with its own
// threads and abort flag, the weights (the large matrices as Q8_0 copies, repacked for specdec's
// kernels), a KV cache of one layer, and the evaluation of a batch of rows, each an element of the
// sequence at position P. The cells hold the sequence's committed elements first, then, while a
// tree is drafted, its nodes; truncate() drops the nodes again.
#pragma once

#include "kernels/gemm.h"

#include "ggml-backend.h"
#include "ggml-alloc.h"
#include "ggml-cpu.h"

#include <atomic>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

namespace specdec {

// The rows of one evaluation.
struct draft_rows {
    std::vector<int32_t> tri;  // [n][3]: the tokens at P - 1, P, P + 1 (-1: none). EAGLE-3 reads P + 1, Chimera all three.
    std::vector<int32_t> pos;  // P, the RoPE position
    // [n][dim]: the target's features at P (from_target), or the network's own outputs standing in for
    // them (a tree node reads its parent's)
    const float * in = nullptr;
    bool          from_target = true;
    // row i attends cells [0, prefix[i]) and the cells in attend[i] (a tree's ancestors and itself)
    std::vector<uint32_t>              prefix;
    std::vector<std::vector<uint32_t>> attend;
};

class draft_layer_runner {
public:
    // The layer's attention shape and RoPE.
    struct layer_shape {
        int64_t n_embd_head = 0, n_head = 0, n_head_kv = 0;
        int     n_ctx = 0;
        float   rope_base = 10000.0f;
        int64_t n_q() const { return n_embd_head * n_head; }
        int64_t n_kv() const { return n_embd_head * n_head_kv; }
    };

    virtual ~draft_layer_runner();
    draft_layer_runner(const draft_layer_runner &) = delete;
    draft_layer_runner & operator=(const draft_layer_runner &) = delete;

    // Evaluates `r` into cells [used(), used() + n) and keeps them. Writes each row's output
    // [n][n_embd] (what stands in for the target's features in a child) and, for the rows in
    // `logit_rows`, logits over the target's vocabulary [logit_rows.size()][n_vocab].
    virtual void eval(const draft_rows & r, const std::vector<uint32_t> & logit_rows, std::vector<float> & out,
                      std::vector<float> & logits) = 0;

    uint32_t used() const { return n_used; }
    uint32_t size() const { return n_cells; }
    void truncate(uint32_t n) { if (n < n_used) n_used = n; }

    void request_abort() { abort_flag.store(true); }
    void clear_abort() { abort_flag.store(false); }
    void pause_threads();

protected:
    // `what` names the network in errors ("EAGLE-3"); the cache holds n_cells cells.
    draft_layer_runner(const char * what, const layer_shape & shape, int n_threads, uint32_t n_cells);

    // The weights: declared with mat() and vec() in the subclass's constructor, then alloc_weights()
    // (which adds the cache) and set() each.
    ggml_tensor * mat(int64_t k, int64_t m);  // Q8_0 where the rows allow (a one-token step reads a quarter of the bytes)
    ggml_tensor * vec(int64_t k);
    ggml_tensor * f32(int64_t k, int64_t m);
    void alloc_weights();
    void set(ggml_tensor * t, const std::vector<float> & v);

    // One evaluation's graph. begin() checks the rows (tokens below n_vocab, -1 allowed where
    // `allow_none`) and opens the graph with the inputs every evaluation has; mm() multiplies by a
    // weight (on specdec's kernels when it was repacked, each activation quantized once);
    // attention() writes K and V into the cache and attends over it under the rows' mask; run()
    // allocates, sets the common inputs and the subclass's (set_inputs), and computes.
    struct graph {
        ggml_context * c  = nullptr;
        ggml_cgraph *  gf = nullptr;
        int64_t        n = 0, n_kv = 0;  // rows, cells attended (the used ones and the rows')
        uint32_t       cell0 = 0;
        ggml_tensor *  pos = nullptr, * idx = nullptr, * mask = nullptr, * out_ids = nullptr;
        std::vector<std::pair<ggml_tensor *, ggml_tensor *>> qacts;  // activations quantized for the kernels
        ~graph() { if (c) ggml_free(c); }
    };
    void begin(graph & g, const draft_rows & r, const std::vector<uint32_t> & logit_rows, uint32_t n_vocab, bool allow_none);
    ggml_tensor * mm(graph & g, ggml_tensor * w, ggml_tensor * x);
    ggml_tensor * attention(graph & g, ggml_tensor * q, ggml_tensor * k, ggml_tensor * v);  // q [nq, n], k, v [nkv, n] -> [nq, n]
    void run(graph & g, const draft_rows & r, const std::vector<uint32_t> & logit_rows, const std::function<void()> & set_inputs);

    const char * what;
    layer_shape  shape;

private:
    ggml_backend_t          backend = nullptr;
    ggml_threadpool *       threadpool = nullptr;
    ggml_context *          ctx_w = nullptr;
    ggml_backend_buffer_t   buf_w = nullptr;
    ggml_gallocr_t          galloc = nullptr;
    std::vector<uint8_t>    graph_buf;
    std::atomic<bool>       abort_flag { false };
    std::vector<std::pair<const ggml_tensor *, std::unique_ptr<kernels::packed_weights>>> packed;
    ggml_tensor *           k_cache = nullptr, * v_cache = nullptr;  // f16 [n_kv, n_cells]
    uint32_t                n_cells = 0, n_used = 0;
};

} // namespace specdec
