// A private F32 copy of a model (model.h model_clone_f32) and the refresh of its draft copies.
#include "model/model.h"
#include "common/error.h"
#include "heads/medusa_heads.h"  // tensor_to_f32

#include "ggml-cpu.h"

#include <cstring>

namespace specdec {

std::shared_ptr<model> model_clone_f32(const model & src) {
    if (src.kind != BACKEND_CPU) {
        fail("ERR_BACKEND_UNAVAILABLE", "online learning runs on the CPU backend only: load the draft model with backend 'cpu'");
    }
    auto m = std::make_shared<model>();
    m->hp = src.hp;
    m->tied_embeddings = src.tied_embeddings;
    m->device = src.device;
    m->device_name = src.device_name;
    m->kind = BACKEND_CPU;
    m->attn = src.attn;
    m->attn_available = src.attn_available;
    m->specdec_attention = src.specdec_attention;
    m->cpu_kernels = src.cpu_kernels;

    const size_t n_tensors = 16 * src.layers.size() + 8;
    m->ctx_w = ggml_init({ ggml_tensor_overhead() * n_tensors, nullptr, true });
    if (!m->ctx_w) fail("ERR_INTERNAL", "cannot create the online copy's context");
    std::vector<std::pair<ggml_tensor *, const ggml_tensor *>> copies;
    auto dup = [&](const ggml_tensor * t) -> ggml_tensor * {
        if (!t) return nullptr;
        ggml_tensor * x = ggml_new_tensor(m->ctx_w, GGML_TYPE_F32, ggml_n_dims(t), t->ne);
        ggml_set_name(x, t->name);
        copies.push_back({ x, t });
        return x;
    };
    m->tok_embd = dup(src.tok_embd);
    m->output_norm = dup(src.output_norm);
    m->output = src.output == src.tok_embd ? m->tok_embd : dup(src.output);
    m->rope_freqs = dup(src.rope_freqs);
    m->layers.resize(src.layers.size());
    for (size_t il = 0; il < src.layers.size(); ++il) {
        const layer_weights & s = src.layers[il];
        layer_weights & d = m->layers[il];
        d.attn_norm = dup(s.attn_norm);
        d.wq = dup(s.wq);
        d.wk = dup(s.wk);
        d.wv = dup(s.wv);
        d.wo = dup(s.wo);
        d.bq = dup(s.bq);
        d.bk = dup(s.bk);
        d.bv = dup(s.bv);
        d.bo = dup(s.bo);
        d.q_norm = dup(s.q_norm);
        d.k_norm = dup(s.k_norm);
        d.ffn_norm = dup(s.ffn_norm);
        d.ffn_gate = dup(s.ffn_gate);
        d.ffn_up = dup(s.ffn_up);
        d.ffn_down = dup(s.ffn_down);
    }
    ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors_from_buft(m->ctx_w, ggml_backend_cpu_buffer_type());
    if (!buf) fail("ERR_BACKEND_UNAVAILABLE", "cannot allocate the online copy of the draft model");
    m->buffers.push_back(buf);
    std::vector<float> v;
    for (const auto & [x, t] : copies) {
        tensor_to_f32(t, v);
        ggml_backend_tensor_set(x, v.data(), 0, ggml_nbytes(x));
        m->n_params += ggml_nelements(x);
        m->n_bytes += ggml_nbytes(x);
    }
    m->file_type = "f32";
    return m;
}

void model::refresh_draft_weights() {
    // in place: the sessions' cached graphs point at these packed_weights objects
    std::lock_guard<std::mutex> lock(draft_mutex);
    std::vector<float> rowsf;
    std::vector<uint8_t> q;
    for (auto & [t, p] : draft_packed) {
        if (!p) continue;
        const int64_t k = t->ne[0], rows = t->ne[1];
        const auto * tr = ggml_get_type_traits(t->type);
        rowsf.resize((size_t) (k * rows));
        for (int64_t r = 0; r < rows; ++r) {
            const char * src = (const char *) t->data + r * t->nb[1];
            if (t->type == GGML_TYPE_F32) std::memcpy(rowsf.data() + r * k, src, (size_t) k * sizeof(float));
            else tr->to_float(src, rowsf.data() + r * k, k);
        }
        q.resize(ggml_row_size(GGML_TYPE_Q8_0, k) * (size_t) rows);
        ggml_quantize_chunk(GGML_TYPE_Q8_0, rowsf.data(), q.data(), 0, rows, k, nullptr);
        auto np = kernels::pack_weights(kernels::wtype::q8_0, q.data(), rows, k, p->kernel);
        if (!np || np->bytes() != p->bytes()) fail("ERR_INTERNAL", "cannot refresh the draft copy of the online model");
        std::memcpy(p->data, np->data, p->bytes());
    }
}

} // namespace specdec
