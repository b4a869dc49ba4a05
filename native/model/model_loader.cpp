// GGUF loading and validation. Every check runs before ggml sees the data: a bad file
// becomes a typed error ("[ERR_...] ...") and never a GGML_ASSERT in the host process.
#include "model/model.h"
#include "common/error.h"
#include "runtime/backends.h"
#include "runtime/rpc.h"

#include "ggml-alloc.h"
#include "ggml-cpu.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sys/stat.h>

#if !defined(_WIN32)
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace specdec {

static std::atomic<int64_t> g_live_models { 0 };

int64_t model_live_count() { return g_live_models.load(); }

model::model() { g_live_models.fetch_add(1); }

model::~model() {
    g_live_models.fetch_sub(1);
    for (auto * b : buffers) {
        ggml_backend_buffer_free(b);
    }
    if (ctx_w) {
        ggml_free(ctx_w);
    }
    if (gguf) {
        gguf_free(gguf);
    }
#if !defined(_WIN32)
    if (mapping) {
        munmap(mapping, mapping_size);
    }
#endif
}

namespace {

// Metadata access with the type conversions llama.cpp accepts.
struct meta_reader {
    const gguf_context * g;
    std::string          prefix;  // "<arch>."

    int64_t find(const std::string & key) const { return gguf_find_key(g, key.c_str()); }

    bool get_u32(const std::string & key, uint32_t & out, bool required) const {
        const int64_t id = find(key);
        if (id < 0) {
            if (required) {
                fail("ERR_BAD_METADATA", format("missing metadata key '%s'", key.c_str()));
            }
            return false;
        }
        switch (gguf_get_kv_type(g, id)) {
            case GGUF_TYPE_UINT8:  out = gguf_get_val_u8(g, id);  return true;
            case GGUF_TYPE_UINT16: out = gguf_get_val_u16(g, id); return true;
            case GGUF_TYPE_UINT32: out = gguf_get_val_u32(g, id); return true;
            case GGUF_TYPE_INT32: {
                const int32_t v = gguf_get_val_i32(g, id);
                if (v < 0) break;
                out = (uint32_t) v;
                return true;
            }
            case GGUF_TYPE_UINT64: {
                const uint64_t v = gguf_get_val_u64(g, id);
                if (v > UINT32_MAX) break;
                out = (uint32_t) v;
                return true;
            }
            case GGUF_TYPE_INT64: {
                const int64_t v = gguf_get_val_i64(g, id);
                if (v < 0 || v > UINT32_MAX) break;
                out = (uint32_t) v;
                return true;
            }
            case GGUF_TYPE_ARRAY: {
                // per-layer arrays (n_head, n_ff): accept when every entry is equal
                const size_t n = gguf_get_arr_n(g, id);
                const gguf_type t = gguf_get_arr_type(g, id);
                if (n == 0 || (t != GGUF_TYPE_UINT32 && t != GGUF_TYPE_INT32)) break;
                const uint32_t * data = (const uint32_t *) gguf_get_arr_data(g, id);
                for (size_t i = 1; i < n; ++i) {
                    if (data[i] != data[0]) {
                        fail("ERR_BAD_METADATA", format("metadata '%s' varies per layer, which specdec does not support", key.c_str()));
                    }
                }
                out = data[0];
                return true;
            }
            default: break;
        }
        fail("ERR_BAD_METADATA", format("metadata key '%s' has an unexpected type or value", key.c_str()));
    }

    bool get_f32(const std::string & key, float & out) const {
        const int64_t id = find(key);
        if (id < 0) return false;
        switch (gguf_get_kv_type(g, id)) {
            case GGUF_TYPE_FLOAT32: out = gguf_get_val_f32(g, id); return true;
            case GGUF_TYPE_FLOAT64: out = (float) gguf_get_val_f64(g, id); return true;
            default: fail("ERR_BAD_METADATA", format("metadata key '%s' should be a float", key.c_str()));
        }
    }

    bool get_str(const std::string & key, std::string & out) const {
        const int64_t id = find(key);
        if (id < 0) return false;
        if (gguf_get_kv_type(g, id) != GGUF_TYPE_STRING) {
            fail("ERR_BAD_METADATA", format("metadata key '%s' should be a string", key.c_str()));
        }
        out = gguf_get_val_str(g, id);
        return true;
    }

    bool get_bool(const std::string & key, bool & out) const {
        const int64_t id = find(key);
        if (id < 0) return false;
        if (gguf_get_kv_type(g, id) != GGUF_TYPE_BOOL) {
            fail("ERR_BAD_METADATA", format("metadata key '%s' should be a bool", key.c_str()));
        }
        out = gguf_get_val_bool(g, id);
        return true;
    }

    uint32_t arch_u32(const char * key, bool required, uint32_t def = 0) const {
        uint32_t v = def;
        get_u32(prefix + key, v, required);
        return v;
    }
};

std::string shape_str(const ggml_tensor * t) {
    std::string s = "[";
    const int nd = ggml_n_dims(t);
    for (int i = 0; i < nd; ++i) {
        s += std::to_string(t->ne[i]);
        if (i + 1 < nd) s += ", ";
    }
    return s + "]";
}

std::string shape_str(const std::vector<int64_t> & ne) {
    std::string s = "[";
    for (size_t i = 0; i < ne.size(); ++i) {
        s += std::to_string(ne[i]);
        if (i + 1 < ne.size()) s += ", ";
    }
    return s + "]";
}

enum tensor_role { ROLE_MATRIX, ROLE_EMBEDDING, ROLE_NORM, ROLE_BIAS };

struct tensor_finder {
    ggml_context * ctx;

    ggml_tensor * get(const std::string & name, std::vector<int64_t> ne, tensor_role role, bool required) const {
        ggml_tensor * t = ggml_get_tensor(ctx, name.c_str());
        if (!t) {
            if (required) {
                fail("ERR_MISSING_TENSOR", format("missing tensor '%s'", name.c_str()));
            }
            return nullptr;
        }
        bool ok = ggml_n_dims(t) <= (int) ne.size();
        for (size_t i = 0; ok && i < 4; ++i) {
            const int64_t want = i < ne.size() ? ne[i] : 1;
            ok = t->ne[i] == want;
        }
        if (!ok) {
            fail("ERR_TENSOR_SHAPE", format("tensor '%s' has wrong shape: expected %s, found %s",
                    name.c_str(), shape_str(ne).c_str(), shape_str(t).c_str()));
        }
        const auto * traits     = ggml_get_type_traits(t->type);
        const auto * cpu_traits = ggml_get_type_traits_cpu(t->type);
        switch (role) {
            case ROLE_NORM:
            case ROLE_BIAS:
                if (t->type != GGML_TYPE_F32) {
                    fail("ERR_TENSOR_TYPE", format("tensor '%s' has type %s, expected f32", name.c_str(), ggml_type_name(t->type)));
                }
                break;
            case ROLE_EMBEDDING:
            case ROLE_MATRIX:
                if ((t->type != GGML_TYPE_F32 && !traits->to_float) || !cpu_traits->vec_dot || t->type == GGML_TYPE_F64 || ggml_blck_size(t->type) == 0) {
                    fail("ERR_TENSOR_TYPE", format("tensor '%s' has type %s, which specdec cannot multiply",
                            name.c_str(), ggml_type_name(t->type)));
                }
                break;
        }
        return t;
    }
};

std::string blk(int il, const char * name) { return format("blk.%d.%s", il, name); }

thread_local std::string g_last_gguf_error;

// Upper limits of the hyper-parameters: far above any published model, low enough that every size the
// graph and the KV cache derive from them (products taken in 64 bits) stays far from overflow.
constexpr uint32_t MAX_CTX_TRAIN = 1u << 28;  // 268M positions
constexpr uint32_t MAX_EMBD      = 1u << 20;  // also the bound of head_dim * head_count
constexpr uint32_t MAX_LAYER     = 4096;
constexpr uint32_t MAX_FF        = 1u << 22;
constexpr uint32_t MAX_HEAD      = 1u << 14;
constexpr uint32_t MAX_HEAD_DIM  = 1u << 12;

// A float hyper-parameter the graph uses: finite and inside [lo, hi] (NaN fails every comparison, so a
// NaN epsilon would otherwise reach ggml's GGML_ASSERT(eps >= 0.0f) and abort the process).
void check_f32(const std::string & key, float v, float lo, float hi) {
    if (!std::isfinite(v) || v < lo || v > hi) {
        fail("ERR_BAD_METADATA", format("metadata key '%s' is %g, expected a finite value in [%g, %g]", key.c_str(), v, lo, hi));
    }
}

void check_u32(const std::string & key, uint32_t v, uint32_t lo, uint32_t hi) {
    if (v < lo || v > hi) {
        fail("ERR_BAD_METADATA", format("metadata key '%s' is %u, expected a value in [%u, %u]", key.c_str(), v, lo, hi));
    }
}

// Reads and validates every hyper-parameter the graph, the KV cache and RoPE use: each finite and in
// range, the head layout consistent, every derived size bounded (ERR_BAD_METADATA naming the key).
void read_hparams(const meta_reader & meta, hparams & hp) {
    const std::string & p = meta.prefix;
    hp.n_ctx_train = meta.arch_u32("context_length", true);
    hp.n_embd      = meta.arch_u32("embedding_length", true);
    hp.n_layer     = meta.arch_u32("block_count", true);
    hp.n_ff        = meta.arch_u32("feed_forward_length", true);
    hp.n_head      = meta.arch_u32("attention.head_count", true);
    hp.n_head_kv   = meta.arch_u32("attention.head_count_kv", false, hp.n_head);
    // a context length of 0 is the file's fault, not the session options'
    check_u32(p + "context_length",          hp.n_ctx_train, 1, MAX_CTX_TRAIN);
    check_u32(p + "embedding_length",        hp.n_embd,      1, MAX_EMBD);
    check_u32(p + "block_count",             hp.n_layer,     1, MAX_LAYER);
    check_u32(p + "feed_forward_length",     hp.n_ff,        1, MAX_FF);
    check_u32(p + "attention.head_count",    hp.n_head,      1, MAX_HEAD);
    check_u32(p + "attention.head_count_kv", hp.n_head_kv,   1, hp.n_head);
    if (hp.n_head % hp.n_head_kv != 0) {
        fail("ERR_BAD_METADATA", format("metadata key '%sattention.head_count' (%u) is not a multiple of '%sattention.head_count_kv' (%u)",
                p.c_str(), hp.n_head, p.c_str(), hp.n_head_kv));
    }
    if (hp.n_embd % hp.n_head != 0) {
        fail("ERR_BAD_METADATA", format("embedding_length %u is not a multiple of head_count %u", hp.n_embd, hp.n_head));
    }
    hp.n_embd_head_k = meta.arch_u32("attention.key_length", false, hp.n_embd / hp.n_head);
    hp.n_embd_head_v = meta.arch_u32("attention.value_length", false, hp.n_embd / hp.n_head);
    hp.n_rot         = meta.arch_u32("rope.dimension_count", false, hp.n_embd_head_k);
    check_u32(p + "attention.key_length",   hp.n_embd_head_k, 2, MAX_HEAD_DIM);
    check_u32(p + "attention.value_length", hp.n_embd_head_v, 2, MAX_HEAD_DIM);
    if (hp.n_embd_head_k != hp.n_embd_head_v || hp.n_rot != hp.n_embd_head_k || hp.n_rot % 2 != 0) {
        fail("ERR_BAD_METADATA", format("unsupported head dimensions: key %u, value %u, rope %u",
                hp.n_embd_head_k, hp.n_embd_head_v, hp.n_rot));
    }
    // the query rows: head dim x head count, a 64-bit product (two u32 file values)
    if (hp.n_embd_q() > (int64_t) MAX_EMBD) {
        fail("ERR_BAD_METADATA", format("metadata key '%sattention.key_length' (%u) x head_count (%u) = %" PRId64 " is above %u",
                p.c_str(), hp.n_embd_head_k, hp.n_head, hp.n_embd_q(), MAX_EMBD));
    }
    if (!meta.get_f32(p + "attention.layer_norm_rms_epsilon", hp.f_norm_rms_eps)) {
        fail("ERR_BAD_METADATA", format("missing metadata key '%sattention.layer_norm_rms_epsilon'", p.c_str()));
    }
    check_f32(p + "attention.layer_norm_rms_epsilon", hp.f_norm_rms_eps, 0.0f, 1.0f);
    meta.get_f32(p + "attention.scale", hp.f_attn_scale);
    check_f32(p + "attention.scale", hp.f_attn_scale, 0.0f, 1e6f);  // 0: 1/sqrt(head dim)

    // RoPE (llama-model.cpp load_hparams + llama-context.cpp cparams resolution)
    hp.rope_type = hp.arch == ARCH_LLAMA ? 0 /* GGML_ROPE_TYPE_NORMAL */ : GGML_ROPE_TYPE_NEOX;
    meta.get_f32(p + "rope.freq_base", hp.rope_freq_base);
    check_f32(p + "rope.freq_base", hp.rope_freq_base, 1e-6f, 1e30f);
    std::string scaling = "linear";
    meta.get_str(p + "rope.scaling.type", scaling);
    float ropescale = 0.0f;
    std::string ropescale_key = p + "rope.scaling.factor";
    if (!meta.get_f32(ropescale_key, ropescale)) {
        ropescale_key = p + "rope.scale_linear";
        meta.get_f32(ropescale_key, ropescale);
    }
    check_f32(ropescale_key, ropescale, 0.0f, 1e6f);  // 0: no scaling; a factor below 1 compresses
    if (ropescale != 0.0f && ropescale < 1e-6f) {
        fail("ERR_BAD_METADATA", format("metadata key '%s' is %g, too small a scaling factor", ropescale_key.c_str(), ropescale));
    }
    hp.rope_freq_scale = ropescale == 0.0f ? 1.0f : 1.0f / ropescale;
    hp.n_ctx_orig = hp.n_ctx_train;
    meta.get_u32(p + "rope.scaling.original_context_length", hp.n_ctx_orig, false);
    check_u32(p + "rope.scaling.original_context_length", hp.n_ctx_orig, 1, MAX_CTX_TRAIN);
    if (scaling == "none") {
        hp.rope_freq_scale = 1.0f;
    } else if (scaling != "linear" && scaling != "yarn") {
        fail("ERR_BAD_METADATA", format("unsupported rope scaling type '%s' (supported: none, linear, yarn)", scaling.c_str()));
    }
    hp.rope_scaling = scaling;
    float rope_attn_factor = 1.0f;
    meta.get_f32(p + "rope.scaling.attn_factor", rope_attn_factor);
    check_f32(p + "rope.scaling.attn_factor", rope_attn_factor, 1e-6f, 1e6f);
    hp.yarn_ext_factor  = scaling == "yarn" ? 1.0f : 0.0f;
    hp.yarn_attn_factor = 1.0f;
    if (hp.yarn_ext_factor != 0.0f) {
        auto mscale = [](float scale, float m) { return scale <= 1.0f ? 1.0f : (0.1f * m * logf(scale) + 1.0f); };
        const float factor = 1.0f / hp.rope_freq_scale;
        float log_mul = 0.0f;
        meta.get_f32(p + "rope.scaling.yarn_log_multiplier", log_mul);
        check_f32(p + "rope.scaling.yarn_log_multiplier", log_mul, -1e6f, 1e6f);
        hp.yarn_attn_factor = log_mul != 0.0f ? mscale(factor, 1.0f) / mscale(factor, log_mul) : mscale(factor, 1.0f);
        hp.yarn_attn_factor *= 1.0f / (1.0f + 0.1f * logf(factor));
    }
    hp.yarn_attn_factor *= rope_attn_factor;
    // the derived factors from valid keys can still meet a pole (a yarn log multiplier that zeroes mscale)
    if (!std::isfinite(hp.yarn_attn_factor) || !std::isfinite(hp.rope_freq_scale) || hp.rope_freq_scale <= 0.0f) {
        fail("ERR_BAD_METADATA", format("metadata keys '%srope.scaling.*' give a non-finite RoPE attention factor (%g) or frequency scale (%g)",
                p.c_str(), hp.yarn_attn_factor, hp.rope_freq_scale));
    }
}

std::string dominant_type(const model & m) {
    std::vector<uint64_t> bytes(GGML_TYPE_COUNT, 0);
    for (const auto & l : m.layers) {
        for (ggml_tensor * t : {l.wq, l.wk, l.wv, l.wo, l.ffn_gate, l.ffn_up, l.ffn_down}) {
            bytes[t->type] += ggml_nbytes(t);
        }
    }
    const size_t best = std::max_element(bytes.begin(), bytes.end()) - bytes.begin();
    return ggml_type_name((ggml_type) best);
}

// The weights of the matrix products, in graph order.
std::vector<ggml_tensor *> matrix_weights(const model & m) {
    std::vector<ggml_tensor *> out;
    for (const layer_weights & l : m.layers) {
        for (ggml_tensor * t : { l.wq, l.wk, l.wv, l.wo, l.ffn_gate, l.ffn_up, l.ffn_down }) out.push_back(t);
    }
    out.push_back(m.output);
    return out;
}

// A matrix specdec's kernels can run: a type they know, rows a whole number of 32-value blocks.
bool packable(const ggml_tensor * t) {
    kernels::wtype wt;
    return t && kernels::wtype_from_ggml(t->type, wt) && t->ne[0] % kernels::QK8_0 == 0;
}

bool has_packable_matrices(const model & m) {
    for (ggml_tensor * t : matrix_weights(m)) {
        if (packable(t)) return true;
    }
    return false;
}

// Repacks the matrices of the types specdec's CPU kernels run (Q8_0, Q4_0, Q4_K, Q6_K, F16, BF16)
// (kernels/gemm.h). Decoding, verification and prompt prefill then read the packed copies; the
// mapped file's pages of those matrices are handed back afterwards (release_packed_pages).
void pack_weights(model & m, const load_params & params, const std::function<void(float)> & report) {
    m.attn.kernel = kernels::default_isa();
    m.attn.shape.head_dim  = m.hp.n_embd_head_k;
    m.attn.shape.n_head    = m.hp.n_head;
    m.attn.shape.n_head_kv = m.hp.n_head_kv;
    m.attn.shape.scale     = m.hp.f_attn_scale != 0.0f ? m.hp.f_attn_scale : 1.0f / sqrtf((float) m.hp.n_embd_head_k);
    m.attn_available = m.hp.n_embd_head_k == m.hp.n_embd_head_v;
    if (!params.specdec_kernels || !has_packable_matrices(m)) return;
    const kernels::isa isa = kernels::default_isa();
    std::vector<ggml_tensor *> todo;
    uint64_t total = 0;
    for (ggml_tensor * t : matrix_weights(m)) {
        if (packable(t) && !m.packed.count(t)) {
            todo.push_back(t);
            m.packed[t] = nullptr;
            total += ggml_nbytes(t);
        }
    }
    uint64_t done = 0;
    for (ggml_tensor * t : todo) {
        kernels::wtype wt;
        kernels::wtype_from_ggml(t->type, wt);
        auto p = kernels::pack_weights(wt, t->data, t->ne[1], t->ne[0], isa);
        if (!p) {
            fail("ERR_BACKEND_UNAVAILABLE", format("cannot allocate %.1f MiB to repack '%s' for the CPU kernels",
                    ggml_nbytes(t) / 1048576.0, t->name));
        }
        m.packed[t] = std::move(p);
        done += ggml_nbytes(t);
        report((float) done / (float) std::max<uint64_t>(1, total));
    }
    m.cpu_kernels = std::string("specdec-") + kernels::isa_name(isa);
    m.specdec_attention = true;
}

#if !defined(_WIN32)
// Once packed, a matrix's bytes in the mapped file are not read again (decoding, verification and
// prompt prefill all run on the packed copy), except the token embeddings that get_rows reads:
// hand those pages back so that the process does not hold its weights twice. The mapping is
// file-backed, so a later read (a draft's Q8_0 copy) faults them in again from the file.
void release_pages(const ggml_tensor * t) {
    const uintptr_t page = (uintptr_t) sysconf(_SC_PAGESIZE);
    const uintptr_t b = ((uintptr_t) t->data + page - 1) / page * page;   // whole pages inside the tensor
    const uintptr_t e = ((uintptr_t) t->data + ggml_nbytes(t)) / page * page;
    if (e > b) madvise((void *) b, e - b, MADV_DONTNEED);
}

void release_packed_pages(const model & m) {
    for (const auto & [t, p] : m.packed) {
        if (p && t != m.tok_embd) release_pages(t);
    }
}
#endif

} // namespace

void model::prepare_draft_weights(const std::function<bool()> & aborted) const {
    if (kind != BACKEND_CPU || draft_ready.load()) return;
    // one copy at a time; an aborted copy keeps the matrices it finished and the next call goes on
    std::lock_guard<std::mutex> lock(draft_mutex);
    if (draft_ready.load()) return;
    const kernels::isa isa = kernels::default_isa();
    std::vector<float> rowsf;
    std::vector<uint8_t> q;
    for (ggml_tensor * t : matrix_weights(*this)) {
        // F16/BF16 matrices may be packed for the target's own kernels too; a draft reads Q8_0
        if (!t || draft_packed.count(t) || t->ne[0] % kernels::QK8_0 != 0) continue;
        if (t->type != GGML_TYPE_F16 && t->type != GGML_TYPE_BF16 && t->type != GGML_TYPE_F32) continue;
        const int64_t k = t->ne[0], rows = t->ne[1];
        const auto * tr = ggml_get_type_traits(t->type);
        const size_t q_row = ggml_row_size(GGML_TYPE_Q8_0, k);
        q.resize(q_row * (size_t) rows);
        // in slices of about DRAFT_COPY_SLICE values, so that an abort is seen within one slice
        const int64_t slice = std::max<int64_t>(1, DRAFT_COPY_SLICE / k);
        for (int64_t r0 = 0; r0 < rows; r0 += slice) {
            if (aborted && aborted()) fail("ERR_ABORTED", "evaluation aborted");
            const int64_t n = std::min(slice, rows - r0);
            rowsf.resize((size_t) (k * n));
            for (int64_t r = 0; r < n; ++r) {
                const char * src = (const char *) t->data + (r0 + r) * t->nb[1];
                if (t->type == GGML_TYPE_F32) std::memcpy(rowsf.data() + r * k, src, (size_t) k * sizeof(float));
                else tr->to_float(src, rowsf.data() + r * k, k);
            }
            ggml_quantize_chunk(GGML_TYPE_Q8_0, rowsf.data(), q.data() + q_row * (size_t) r0, 0, n, k, nullptr);
        }
        auto p = kernels::pack_weights(kernels::wtype::q8_0, q.data(), rows, k, isa);
        if (p) draft_packed[t] = std::move(p);  // out of memory: that matrix stays on ggml
#if !defined(_WIN32)
        // reading the matrix faulted its released pages back in: hand them back again
        if (mapping && packed.count(t) && t != tok_embd) release_pages(t);
#endif
    }
    draft_ready.store(true);
}

const std::string & last_gguf_error() { return g_last_gguf_error; }
void set_last_gguf_error(const std::string & s) { g_last_gguf_error = s; }

bool place_tensors(ggml_backend_buffer_type_t buft, const std::vector<ggml_tensor *> & tensors,
                   ggml_backend_buffer_usage usage, std::vector<ggml_backend_buffer_t> & out) {
    const size_t align = ggml_backend_buft_get_alignment(buft);
    const size_t max_size = ggml_backend_buft_get_max_size(buft);
    size_t first = 0;
    while (first < tensors.size()) {
        // the next run of tensors that fits one buffer (at least one tensor)
        size_t size = 0, last = first;
        for (; last < tensors.size(); ++last) {
            const size_t n = GGML_PAD(ggml_backend_buft_get_alloc_size(buft, tensors[last]), align);
            if (last > first && size + n > max_size) break;
            size += n;
        }
        ggml_backend_buffer_t buf = ggml_backend_buft_alloc_buffer(buft, size);
        if (!buf) return false;
        out.push_back(buf);
        ggml_backend_buffer_set_usage(buf, usage);
        ggml_tallocr talloc = ggml_tallocr_new(buf);
        for (size_t i = first; i < last; ++i) {
            if (ggml_tallocr_alloc(&talloc, tensors[i]) != GGML_STATUS_SUCCESS) return false;
        }
        first = last;
    }
    return true;
}

// The layers' devices for a model on RPC servers: layer il goes to the first device whose
// cumulative share of the layers (tensor_split, or free memory) reaches past it.
static std::vector<int> split_layers(uint32_t n_layer, const std::vector<double> & shares) {
    double total = 0;
    for (double x : shares) total += x;
    std::vector<int> out(n_layer, (int) shares.size() - 1);
    for (uint32_t il = 0; il < n_layer; ++il) {
        double cum = 0;
        for (size_t d = 0; d < shares.size(); ++d) {
            cum += shares[d];
            if (shares[d] > 0 && (il + 0.5) < cum / total * n_layer) {
                out[il] = (int) d;
                break;
            }
        }
    }
    return out;
}

// Places the weights on the RPC servers' devices: each block's tensors on its layer's device, the
// output norm and matrix with the last layer, the token embeddings (a row lookup) on the CPU.
static void place_on_rpc(model & m, const load_params & params) {
    m.devices = rpc_devices(params.rpc, m.rpc_leases);
    std::vector<double> shares;
    if (!params.tensor_split.empty()) {
        if (params.tensor_split.size() != m.devices.size()) {
            fail("ERR_INVALID_OPTION", format("tensorSplit has %zu shares for %zu RPC devices (one per device, in the order of `rpc`)",
                    params.tensor_split.size(), m.devices.size()));
        }
        for (float x : params.tensor_split) shares.push_back(x);
    } else {
        for (ggml_backend_dev_t d : m.devices) {
            size_t free = 0, total = 0;
            ggml_backend_dev_memory(d, &free, &total);
            shares.push_back((double) free);
        }
    }
    double sum = 0;
    for (double x : shares) {
        if (!(x >= 0) || !std::isfinite(x)) fail("ERR_INVALID_OPTION", "tensorSplit shares must be finite and >= 0");
        sum += x;
    }
    if (!(sum > 0)) fail("ERR_INVALID_OPTION", "tensorSplit (or the RPC devices' free memory) gives every device a share of 0");
    m.layer_device = split_layers(m.hp.n_layer, shares);
    m.kind = BACKEND_RPC;
    m.device = m.devices[m.layer_device.empty() ? 0 : m.layer_device.back()];
    m.device_name.clear();
    for (size_t d = 0; d < m.devices.size(); ++d) {
        int n = 0;
        for (int x : m.layer_device) n += x == (int) d;
        m.device_name += format("%s%s %s (%d layers)", d ? ", " : "", ggml_backend_dev_name(m.devices[d]),
                ggml_backend_dev_description(m.devices[d]), n);
    }

    // which buffer type each tensor goes to
    ggml_backend_buffer_type_t cpu_buft = ggml_backend_cpu_buffer_type();
    std::vector<ggml_backend_buffer_type_t> bufts = { cpu_buft };
    for (ggml_backend_dev_t d : m.devices) bufts.push_back(ggml_backend_dev_buffer_type(d));
    auto target = [&](const ggml_tensor * t) -> size_t {
        int il = -1;
        if (sscanf(t->name, "blk.%d.", &il) == 1 && il >= 0 && il < (int) m.hp.n_layer) return 1 + (size_t) m.layer_device[il];
        if (t == m.tok_embd) return 0;
        return 1 + (size_t) (m.layer_device.empty() ? 0 : m.layer_device.back());  // output, output norm, rope factors
    };
    for (size_t b = 0; b < bufts.size(); ++b) {
        std::vector<ggml_tensor *> ts;
        size_t bytes = 0;
        for (ggml_tensor * t = ggml_get_first_tensor(m.ctx_w); t; t = ggml_get_next_tensor(m.ctx_w, t)) {
            if (target(t) == b) {
                ts.push_back(t);
                bytes += ggml_nbytes(t);
            }
        }
        if (!place_tensors(bufts[b], ts, GGML_BACKEND_BUFFER_USAGE_WEIGHTS, m.buffers)) {
            fail("ERR_BACKEND_UNAVAILABLE", format("cannot allocate %.1f MiB for the weights on %s", bytes / 1048576.0,
                    b == 0 ? "the CPU" : ggml_backend_dev_name(m.devices[b - 1])));
        }
    }
}

std::shared_ptr<model> model_load(const load_params & params) {
    const std::string & path = params.path;

    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
        fail("ERR_FILE_NOT_FOUND", format("model file not found: %s", path.c_str()));
    }
    if (!S_ISREG(st.st_mode)) {
        fail("ERR_FILE_NOT_FOUND", format("not a regular file: %s", path.c_str()));
    }
    const uint64_t file_size = (uint64_t) st.st_size;
    {
        FILE * f = fopen(path.c_str(), "rb");
        if (!f) {
            fail("ERR_FILE_NOT_FOUND", format("cannot open model file %s: %s", path.c_str(), strerror(errno)));
        }
        char magic[4] = {0};
        const size_t n = fread(magic, 1, 4, f);
        fclose(f);
        if (n < 4 || memcmp(magic, "GGUF", 4) != 0) {
            fail("ERR_NOT_GGUF", format("%s is not a GGUF file (bad magic)", path.c_str()));
        }
    }

    auto m = std::make_shared<model>();

    set_last_gguf_error("");
    gguf_init_params gp = { /*no_alloc =*/ true, /*ctx =*/ &m->ctx_w };
    m->gguf = gguf_init_from_file(path.c_str(), gp);
    if (!m->gguf) {
        const std::string & why = last_gguf_error();
        const bool truncated = why.find("failed to read") != std::string::npos || why.find("end of file") != std::string::npos;
        fail(truncated ? "ERR_TRUNCATED_FILE" : "ERR_BAD_METADATA",
             format("cannot parse the GGUF header of %s%s%s", path.c_str(), why.empty() ? "" : ": ", why.c_str()));
    }
    const gguf_context * g = m->gguf;

    // every tensor's data must lie inside the file
    const uint64_t data_offset = gguf_get_data_offset(g);
    for (int64_t i = 0; i < gguf_get_n_tensors(g); ++i) {
        const uint64_t end = data_offset + gguf_get_tensor_offset(g, i) + gguf_get_tensor_size(g, i);
        if (end > file_size) {
            fail("ERR_TRUNCATED_FILE", format("%s is truncated: tensor '%s' ends at byte %" PRIu64 " but the file has %" PRIu64 " bytes",
                    path.c_str(), gguf_get_tensor_name(g, i), end, file_size));
        }
    }

    meta_reader meta { g, "" };
    std::string arch;
    if (!meta.get_str("general.architecture", arch)) {
        fail("ERR_BAD_METADATA", "missing metadata key 'general.architecture'");
    }
    hparams & hp = m->hp;
    if (arch == "llama") {
        hp.arch = ARCH_LLAMA;
    } else if (arch == "qwen2") {
        hp.arch = ARCH_QWEN2;
    } else if (arch == "qwen3") {
        hp.arch = ARCH_QWEN3;
    } else {
        fail("ERR_UNSUPPORTED_ARCHITECTURE", format("unsupported architecture '%s' (supported: llama, qwen2, qwen3)", arch.c_str()));
    }
    hp.arch_name = arch;
    meta.prefix  = arch + ".";
    read_hparams(meta, hp);

    if (gguf_get_n_tensors(g) == 0) {
        fail("ERR_MISSING_TENSOR", "missing tensor 'token_embd.weight' (the file holds no tensors: a vocabulary-only GGUF?)");
    }

    // vocabulary size: the tokenizer's token list, else the embedding matrix
    const int64_t tok_id = gguf_find_key(g, "tokenizer.ggml.tokens");
    if (tok_id >= 0 && gguf_get_kv_type(g, tok_id) == GGUF_TYPE_ARRAY) {
        hp.n_vocab = (uint32_t) gguf_get_arr_n(g, tok_id);
    } else if (!meta.get_u32(meta.prefix + "vocab_size", hp.n_vocab, false)) {
        ggml_tensor * te = ggml_get_tensor(m->ctx_w, "token_embd.weight");
        hp.n_vocab = te ? (uint32_t) te->ne[1] : 0;
    }
    if (hp.n_vocab == 0) {
        fail("ERR_BAD_METADATA", "cannot determine the vocabulary size");
    }
    // token ids are int32 everywhere; 16M is ~60x the largest published vocabulary
    if (hp.n_vocab > (1u << 24)) {
        fail("ERR_BAD_METADATA", format("vocabulary size %u is above %u", hp.n_vocab, 1u << 24));
    }

    // tensors: names and shapes as llama.cpp's llama/qwen2/qwen3 loaders expect them
    const int64_t n_embd = hp.n_embd, n_vocab = hp.n_vocab, n_ff = hp.n_ff;
    const int64_t n_q = hp.n_embd_q(), n_k = hp.n_embd_k_gqa(), n_v = hp.n_embd_v_gqa();
    tensor_finder tf { m->ctx_w };
    // a Lexical Unit Decoding model (lud.* keys, train/lud_train.cpp): its placeholder is the input-only
    // id n_vocab, one embedding row more than the output head
    uint32_t placeholder = 0;
    if (meta.get_u32("lud.placeholder", placeholder, false)) {
        if (placeholder != hp.n_vocab) {
            fail("ERR_BAD_METADATA", format("lud.placeholder is %u; it must be the vocabulary size %u (an input-only token)", placeholder, hp.n_vocab));
        }
        hp.n_vocab_extra = 1;
    }
    m->tok_embd    = tf.get("token_embd.weight", {n_embd, n_vocab + (int64_t) hp.n_vocab_extra}, ROLE_EMBEDDING, true);
    m->output_norm = tf.get("output_norm.weight", {n_embd}, ROLE_NORM, true);
    m->output      = tf.get("output.weight", {n_embd, n_vocab}, ROLE_MATRIX, hp.n_vocab_extra > 0);
    if (!m->output) {
        m->output = m->tok_embd;
        m->tied_embeddings = true;
    }
    if (hp.arch == ARCH_LLAMA) {
        m->rope_freqs = tf.get("rope_freqs.weight", {hp.n_rot / 2}, ROLE_NORM, false);
    }
    m->layers.resize(hp.n_layer);
    for (int il = 0; il < (int) hp.n_layer; ++il) {
        layer_weights & l = m->layers[il];
        l.attn_norm = tf.get(blk(il, "attn_norm.weight"),   {n_embd},         ROLE_NORM,   true);
        l.wq        = tf.get(blk(il, "attn_q.weight"),      {n_embd, n_q},    ROLE_MATRIX, true);
        l.wk        = tf.get(blk(il, "attn_k.weight"),      {n_embd, n_k},    ROLE_MATRIX, true);
        l.wv        = tf.get(blk(il, "attn_v.weight"),      {n_embd, n_v},    ROLE_MATRIX, true);
        l.wo        = tf.get(blk(il, "attn_output.weight"), {n_q, n_embd},    ROLE_MATRIX, true);
        l.bo        = tf.get(blk(il, "attn_output.bias"),   {n_embd},         ROLE_BIAS,   false);
        const bool qkv_bias_required = hp.arch == ARCH_QWEN2;
        l.bq = tf.get(blk(il, "attn_q.bias"), {n_q}, ROLE_BIAS, qkv_bias_required);
        l.bk = tf.get(blk(il, "attn_k.bias"), {n_k}, ROLE_BIAS, qkv_bias_required);
        l.bv = tf.get(blk(il, "attn_v.bias"), {n_v}, ROLE_BIAS, qkv_bias_required);
        if (hp.arch == ARCH_QWEN3) {
            l.q_norm = tf.get(blk(il, "attn_q_norm.weight"), {(int64_t) hp.n_embd_head_k}, ROLE_NORM, true);
            l.k_norm = tf.get(blk(il, "attn_k_norm.weight"), {(int64_t) hp.n_embd_head_k}, ROLE_NORM, true);
        }
        l.ffn_norm = tf.get(blk(il, "ffn_norm.weight"), {n_embd},       ROLE_NORM,   true);
        l.ffn_gate = tf.get(blk(il, "ffn_gate.weight"), {n_embd, n_ff}, ROLE_MATRIX, true);
        l.ffn_up   = tf.get(blk(il, "ffn_up.weight"),   {n_embd, n_ff}, ROLE_MATRIX, true);
        l.ffn_down = tf.get(blk(il, "ffn_down.weight"), {n_ff, n_embd}, ROLE_MATRIX, true);
    }
    for (ggml_tensor * t = ggml_get_first_tensor(m->ctx_w); t; t = ggml_get_next_tensor(m->ctx_w, t)) {
        m->n_params += ggml_nelements(t);
        m->n_bytes  += ggml_nbytes(t);
    }
    m->file_type = dominant_type(*m);

    // place the weights
    const bool rpc = !params.rpc.empty();
    if (rpc) {
        if (params.backend != BACKEND_AUTO && params.backend != BACKEND_CPU) {
            fail("ERR_INVALID_OPTION", "the rpc option places the layers on RPC servers: it goes with backend 'auto' or 'cpu' only");
        }
        place_on_rpc(*m, params);
    } else {
        m->device = select_device(params.backend, m->kind);
        m->device_name = ggml_backend_dev_name(m->device);
    }
    const bool cpu = m->kind == BACKEND_CPU;

    // progress: reading the weights, then (on the CPU) repacking them for specdec's kernels
    const float load_share = cpu && params.specdec_kernels && has_packable_matrices(*m) ? 0.85f : 1.0f;
    auto report_raw = [&](float f) {
        if (params.progress && !params.progress(f)) {
            fail("ERR_ABORTED", "model loading was cancelled");
        }
    };
    auto report = [&](float f) { report_raw(f * load_share); };
    std::function<void(float)> report_packing = [&](float f) { report_raw(load_share + f * (1.0f - load_share)); };
    report(0.0f);

#if !defined(_WIN32)
    if (cpu && data_offset % 64 == 0) {
        // mmap the file and point the tensors into it: no copy; pages are read ahead with progress
        const int fd = open(path.c_str(), O_RDONLY);
        if (fd < 0) {
            fail("ERR_FILE_NOT_FOUND", format("cannot open %s: %s", path.c_str(), strerror(errno)));
        }
        void * addr = mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (addr == MAP_FAILED) {
            fail("ERR_INTERNAL", format("mmap of %s failed: %s", path.c_str(), strerror(errno)));
        }
        m->mapping = addr;
        m->mapping_size = file_size;
        madvise(addr, file_size, MADV_WILLNEED);
        char * base = (char *) addr + data_offset;
        const size_t data_size = file_size - data_offset;
        ggml_backend_buffer_t buf = ggml_backend_cpu_buffer_from_ptr(base, data_size);
        if (!buf) {
            fail("ERR_INTERNAL", "cannot create a CPU buffer over the mapped file");
        }
        ggml_backend_buffer_set_usage(buf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
        m->buffers.push_back(buf);
        for (int64_t i = 0; i < gguf_get_n_tensors(g); ++i) {
            ggml_tensor * t = ggml_get_tensor(m->ctx_w, gguf_get_tensor_name(g, i));
            if (ggml_backend_tensor_alloc(buf, t, base + gguf_get_tensor_offset(g, i)) != GGML_STATUS_SUCCESS) {
                fail("ERR_INTERNAL", format("cannot place tensor '%s'", t->name));
            }
        }
        // fault the pages in now (reading them) so that the first tokens do not pay for it
        const size_t page = 1 << 16;
        volatile char sink = 0;
        const size_t step = std::max<size_t>(page, data_size / 100);
        for (size_t off = 0; off < data_size; off += page) {
            sink = sink + base[off];
            if (off % step < page) {
                report((float) off / (float) data_size);
            }
        }
        (void) sink;
        report(1.0f);
        pack_weights(*m, params, report_packing);
        release_packed_pages(*m);
        report_raw(1.0f);
        return m;
    }
#endif

    // read the tensors into backend buffers (GPU, RPC servers, or CPU without mmap)
    if (!rpc) {
        ggml_backend_buffer_type_t buft = ggml_backend_dev_buffer_type(m->device);
        ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors_from_buft(m->ctx_w, buft);
        if (!buf) {
            fail("ERR_BACKEND_UNAVAILABLE", format("cannot allocate %.1f MiB for the weights on %s",
                    m->n_bytes / 1048576.0, m->device_name.c_str()));
        }
        ggml_backend_buffer_set_usage(buf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
        m->buffers.push_back(buf);
    }
    FILE * f = fopen(path.c_str(), "rb");
    if (!f) {
        fail("ERR_FILE_NOT_FOUND", format("cannot open %s: %s", path.c_str(), strerror(errno)));
    }
    std::vector<uint8_t> staging;
    uint64_t done = 0;
    try {
        for (int64_t i = 0; i < gguf_get_n_tensors(g); ++i) {
            ggml_tensor * t = ggml_get_tensor(m->ctx_w, gguf_get_tensor_name(g, i));
            const size_t n = ggml_nbytes(t);
            staging.resize(n);
            if (fseeko(f, (off_t) (data_offset + gguf_get_tensor_offset(g, i)), SEEK_SET) != 0 || fread(staging.data(), 1, n, f) != n) {
                fail("ERR_TRUNCATED_FILE", format("cannot read tensor '%s' from %s", t->name, path.c_str()));
            }
            ggml_backend_tensor_set(t, staging.data(), 0, n);
            done += n;
            report((float) done / (float) std::max<uint64_t>(1, m->n_bytes));
        }
    } catch (...) {
        fclose(f);
        throw;
    }
    fclose(f);
    report(1.0f);
    if (cpu) {
        pack_weights(*m, params, report_packing);
    }
    report_raw(1.0f);
    return m;
}

} // namespace specdec
