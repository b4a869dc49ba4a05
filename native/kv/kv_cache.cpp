#include "kv/kv_cache.h"
#include "common/error.h"

#include <algorithm>

namespace specdec {

kv_cache::kv_cache(const model & m, uint32_t n_ctx) : hp(m.hp), n_size(n_ctx) {
    ggml_init_params ip = { /*mem_size =*/ 2 * hp.n_layer * ggml_tensor_overhead() + 1024, /*mem_buffer =*/ nullptr, /*no_alloc =*/ true };
    ctx = ggml_init(ip);
    if (!ctx) {
        fail("ERR_INTERNAL", "cannot create the KV cache context");
    }
    for (uint32_t il = 0; il < hp.n_layer; ++il) {
        ggml_tensor * tk = ggml_new_tensor_2d(ctx, GGML_TYPE_F16, hp.n_embd_k_gqa(), n_size);
        ggml_tensor * tv = ggml_new_tensor_2d(ctx, GGML_TYPE_F16, hp.n_embd_v_gqa(), n_size);
        ggml_format_name(tk, "cache_k_l%u", il);
        ggml_format_name(tv, "cache_v_l%u", il);
        k.push_back(tk);
        v.push_back(tv);
    }
    // per device, buffers for the layers whose weights are there
    std::vector<ggml_backend_dev_t> devs;
    for (uint32_t il = 0; il < hp.n_layer; ++il) {
        ggml_backend_dev_t d = m.device_of_layer((int) il);
        if (std::find(devs.begin(), devs.end(), d) == devs.end()) devs.push_back(d);
    }
    for (ggml_backend_dev_t d : devs) {
        std::vector<ggml_tensor *> ts;
        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            if (m.device_of_layer((int) il) == d) ts.insert(ts.end(), { k[il], v[il] });
        }
        if (!place_tensors(ggml_backend_dev_buffer_type(d), ts, GGML_BACKEND_BUFFER_USAGE_COMPUTE, bufs)) {
            for (ggml_backend_buffer_t x : bufs) ggml_backend_buffer_free(x);
            ggml_free(ctx);
            fail("ERR_CONTEXT_OVERFLOW", format("cannot allocate a KV cache of %u cells on %s", n_size, ggml_backend_dev_name(d)));
        }
    }
    // masked cells are never read by flash attention, but keep them finite anyway
    for (ggml_backend_buffer_t b : bufs) ggml_backend_buffer_clear(b, 0);
}

kv_cache::~kv_cache() {
    for (ggml_backend_buffer_t b : bufs) ggml_backend_buffer_free(b);
    if (ctx) ggml_free(ctx);
}

size_t kv_cache::bytes() const {
    size_t n = 0;
    for (ggml_backend_buffer_t b : bufs) n += ggml_backend_buffer_get_size(b);
    return n;
}

void kv_cache::truncate(uint32_t n) { n_used = std::min(n_used, n); }

void kv_cache::commit(uint32_t n) {
    if (n_used + n > n_size) {
        fail("ERR_INTERNAL", "KV cache commit past its size");
    }
    n_used += n;
}

void kv_cache::keep(uint32_t n_keep_before, const std::vector<uint32_t> & cells) {
    if (n_keep_before > n_size) {
        fail("ERR_INTERNAL", "KV cache keep past its size");
    }
    std::vector<uint8_t> row;
    for (size_t i = 0; i < cells.size(); ++i) {
        const uint32_t src = cells[i];
        const uint32_t dst = n_keep_before + (uint32_t) i;
        if (src >= n_size || src < dst) {
            fail("ERR_INTERNAL", "KV cache keep: bad cell list");
        }
        if (src == dst) continue;
        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            for (ggml_tensor * t : { k[il], v[il] }) {
                const size_t nb = t->nb[1];
                row.resize(nb);
                ggml_backend_tensor_get(t, row.data(), src * nb, nb);
                ggml_backend_tensor_set(t, row.data(), dst * nb, nb);
            }
        }
    }
    n_used = n_keep_before + (uint32_t) cells.size();
}

ggml_tensor * kv_cache::view_k(ggml_context * c, int il, uint32_t n_kv) const {
    ggml_tensor * t = k[il];
    return ggml_view_3d(c, t, hp.n_embd_head_k, hp.n_head_kv, n_kv,
            ggml_row_size(t->type, hp.n_embd_head_k), ggml_row_size(t->type, hp.n_embd_k_gqa()), 0);
}

ggml_tensor * kv_cache::view_v(ggml_context * c, int il, uint32_t n_kv) const {
    ggml_tensor * t = v[il];
    return ggml_view_3d(c, t, hp.n_embd_head_v, hp.n_head_kv, n_kv,
            ggml_row_size(t->type, hp.n_embd_head_v), ggml_row_size(t->type, hp.n_embd_v_gqa()), 0);
}

} // namespace specdec
