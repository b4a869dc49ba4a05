// The KV cache of one sequence: per layer, K and V rows (F16, as llama.cpp's default),
// one cell per evaluated token. Cells [0, n_used) hold the committed sequence in order;
// a batch being evaluated writes to cells [n_used, n_used + n_tokens).
#pragma once

#include "model/model.h"

#include "ggml-backend.h"

#include <cstdint>
#include <vector>

namespace specdec {

struct kv_cache {
    // Each layer's K and V on the device of that layer's weights (model::device_of_layer).
    kv_cache(const model & m, uint32_t n_ctx);
    ~kv_cache();
    kv_cache(const kv_cache &) = delete;
    kv_cache & operator=(const kv_cache &) = delete;

    uint32_t size() const { return n_size; }
    uint32_t used() const { return n_used; }
    size_t   bytes() const;  // K and V of every layer

    // Forget every cell at or after `n`.
    void truncate(uint32_t n);
    // Mark `n` more cells as committed (after their K/V were written by a graph).
    void commit(uint32_t n);
    // Keep cells `cells[i]` (each >= n_keep_before, strictly increasing) and move them to
    // positions n_keep_before + i; drop the rest after n_keep_before. Used after tree
    // verification to compact the accepted path.
    void keep(uint32_t n_keep_before, const std::vector<uint32_t> & cells);

    // Views for a graph: [head_dim, n_head_kv, n_kv] over the first n_kv cells of layer il.
    ggml_tensor * view_k(ggml_context * ctx, int il, uint32_t n_kv) const;
    ggml_tensor * view_v(ggml_context * ctx, int il, uint32_t n_kv) const;
    ggml_tensor * k_layer(int il) const { return k[il]; }
    ggml_tensor * v_layer(int il) const { return v[il]; }

private:
    const hparams &            hp;
    uint32_t                   n_size = 0;
    uint32_t                   n_used = 0;
    ggml_context *             ctx = nullptr;
    std::vector<ggml_backend_buffer_t> bufs;  // one per device
    std::vector<ggml_tensor *> k;  // [n_embd_k_gqa, n_size] per layer
    std::vector<ggml_tensor *> v;  // [n_embd_v_gqa, n_size] per layer
};

} // namespace specdec
