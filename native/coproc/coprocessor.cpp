#include "coproc/coprocessor.h"

#include "common/error.h"
#include "heads/head_file.h"
#include "heads/medusa_heads.h"  // tensor_to_f32

#include "ggml-backend.h"
#include "ggml-cpu.h"

#include <cmath>
#include <cstring>

namespace specdec {

namespace {

const char * const MATRIX_NAMES[COPROC_N_MATRICES] = { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down" };

std::string key(const char * k) { return std::string(COPROC_ARCH) + "." + k; }

std::string tensor_name(uint32_t il, int j, const char * ab) {
    return format("blk.%u.%s.lora_%s", il, MATRIX_NAMES[j], ab);
}

} // namespace

const char * coproc_matrix_name(int j) { return MATRIX_NAMES[j]; }

ggml_tensor * coproc_matrix(const layer_weights & L, int j) {
    switch (j) {
        case 0: return L.wq;
        case 1: return L.wk;
        case 2: return L.wv;
        case 3: return L.wo;
        case 4: return L.ffn_gate;
        case 5: return L.ffn_up;
        default: return L.ffn_down;
    }
}

uint64_t coproc_target_checksum(const model & m) {
    uint64_t h = 1469598103934665603ull;
    std::vector<float> v;
    auto mix = [&](const ggml_tensor * t) {
        if (!t) return;
        tensor_to_f32(t, v);
        const uint8_t * p = (const uint8_t *) v.data();
        for (size_t i = 0; i < v.size() * sizeof(float); ++i) {
            h ^= p[i];
            h *= 1099511628211ull;
        }
    };
    mix(m.output_norm);
    for (const layer_weights & L : m.layers) {
        mix(L.attn_norm);
        mix(L.ffn_norm);
    }
    return h;
}

void coproc_write(const std::string & path, const model & target, const coproc_weights & w) {
    const hparams & hp = target.hp;
    const int64_t d = hp.n_embd, r = w.rank;
    head_file_writer wr(COPROC_ARCH);
    wr.set_u32(key("latents"), w.n_latents);
    wr.set_u32(key("lora_rank"), w.rank);
    wr.set_f32(key("lora_scale"), w.scale);
    wr.set_u32(key("ahead"), w.ahead);
    wr.set_u64(key("trained_tokens"), w.trained_tokens);
    wr.set_str(key("target.architecture"), hp.arch_name);
    wr.set_u32(key("target.embedding_length"), hp.n_embd);
    wr.set_u32(key("target.block_count"), hp.n_layer);
    wr.set_u32(key("target.vocab_size"), hp.n_vocab);
    wr.set_u64(key("target.checksum"), coproc_target_checksum(target));
    wr.add_f32("soft_tokens", { d, (int64_t) w.n_latents }, w.soft.data());
    wr.add_f32("latent_norm.weight", { d }, w.latent_norm.data());
    for (uint32_t il = 0; il < hp.n_layer; ++il) {
        for (int j = 0; j < COPROC_N_MATRICES; ++j) {
            const ggml_tensor * m = coproc_matrix(target.layers[il], j);
            const size_t k = (size_t) il * COPROC_N_MATRICES + j;
            wr.add_f32(tensor_name(il, j, "a"), { m->ne[0], r }, w.a[k].data());
            wr.add_f32(tensor_name(il, j, "b"), { r, m->ne[1] }, w.b[k].data());
        }
    }
    wr.write(path);
}

coprocessor::coprocessor(const std::string & path, std::shared_ptr<const model> target) : tgt(std::move(target)) {
    const hparams & hp = tgt->hp;
    head_file f(path, "coprocessor");
    f.expect_arch(COPROC_ARCH);
    const std::string arch = f.str(key("target.architecture"), "");
    const uint32_t n_embd = f.u32(key("target.embedding_length"), 1, 1u << 20);
    const uint32_t n_layer = f.u32(key("target.block_count"), 1, 4096);
    const uint32_t n_vocab = f.u32(key("target.vocab_size"), 1, 1u << 30);
    const uint64_t sum = f.u64_or(key("target.checksum"), 0);
    if (arch != hp.arch_name || n_embd != hp.n_embd || n_layer != hp.n_layer || n_vocab != hp.n_vocab) {
        fail("ERR_COPROCESSOR_MISMATCH", format("the coprocessor %s was trained for a %s model (hidden size %u, %u layers, vocabulary %u); "
                "this model is %s (hidden size %u, %u layers, vocabulary %u)", path.c_str(), arch.c_str(), n_embd, n_layer, n_vocab,
                hp.arch_name.c_str(), hp.n_embd, hp.n_layer, hp.n_vocab));
    }
    if (sum != coproc_target_checksum(*tgt)) {
        fail("ERR_COPROCESSOR_MISMATCH", format("the coprocessor %s was trained for another model of this shape (its weights differ)", path.c_str()));
    }
    w.n_latents = f.u32(key("latents"), 1, COPROC_MAX_LATENTS);
    w.rank = f.u32(key("lora_rank"), 1, COPROC_MAX_RANK);
    w.scale = f.f32_or(key("lora_scale"), 1.0f);
    w.ahead = f.has(key("ahead")) ? f.u32(key("ahead"), 0, 1u << 20) : 0;
    w.trained_tokens = f.u64_or(key("trained_tokens"), 0);
    const int64_t d = hp.n_embd, r = w.rank;
    f.read_f32("soft_tokens", { d, (int64_t) w.n_latents }, w.soft);
    f.read_f32("latent_norm.weight", { d }, w.latent_norm);
    const size_t n_pairs = (size_t) hp.n_layer * COPROC_N_MATRICES;
    w.a.resize(n_pairs);
    w.b.resize(n_pairs);
    for (uint32_t il = 0; il < hp.n_layer; ++il) {
        for (int j = 0; j < COPROC_N_MATRICES; ++j) {
            const ggml_tensor * m = coproc_matrix(tgt->layers[il], j);
            const size_t k = (size_t) il * COPROC_N_MATRICES + j;
            f.read_f32(tensor_name(il, j, "a"), { m->ne[0], r }, w.a[k]);
            f.read_f32(tensor_name(il, j, "b"), { r, m->ne[1] }, w.b[k]);
        }
    }

    // the adapters on the CPU, next to the session's inputs
    ctx = ggml_init({ ggml_tensor_overhead() * (2 * n_pairs + 8), nullptr, true });
    lora.scale = w.scale;
    for (uint32_t il = 0; il < hp.n_layer; ++il) {
        for (int j = 0; j < COPROC_N_MATRICES; ++j) {
            const ggml_tensor * m = coproc_matrix(tgt->layers[il], j);
            lora_adapter::pair p;
            p.w = m;
            p.a = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, m->ne[0], r);
            p.b = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, r, m->ne[1]);
            lora.pairs.push_back(p);
        }
    }
    buf = ggml_backend_alloc_ctx_tensors_from_buft(ctx, ggml_backend_cpu_buffer_type());
    if (!buf) {
        ggml_free(ctx);
        fail("ERR_BACKEND_UNAVAILABLE", "cannot allocate the coprocessor's adapters");
    }
    for (size_t k = 0; k < n_pairs; ++k) {
        ggml_backend_tensor_set(lora.pairs[k].a, w.a[k].data(), 0, ggml_nbytes(lora.pairs[k].a));
        ggml_backend_tensor_set(lora.pairs[k].b, w.b[k].data(), 0, ggml_nbytes(lora.pairs[k].b));
    }
    w.a.clear();
    w.b.clear();
}

coprocessor::~coprocessor() {
    if (buf) ggml_backend_buffer_free(buf);
    if (ctx) ggml_free(ctx);
}

void coprocessor::latents(session & s, uint32_t n, std::vector<float> & out) const {
    const int64_t d = tgt->hp.n_embd;
    std::vector<float> h;
    s.eval_vectors(w.soft.data(), n, &lora, h);  // [n][d]: the soft rows' last-layer outputs
    out.resize((size_t) n * d);
    const float eps = tgt->hp.f_norm_rms_eps;
    for (uint32_t i = 0; i < n; ++i) {
        const float * x = h.data() + (size_t) i * d;
        double ss = 0.0;
        for (int64_t k = 0; k < d; ++k) ss += (double) x[k] * x[k];
        const float inv = 1.0f / sqrtf((float) (ss / d) + eps);
        for (int64_t k = 0; k < d; ++k) out[(size_t) i * d + k] = x[k] * inv * w.latent_norm[k];
    }
}

void coproc_check(const session & s, const coprocessor & c, uint32_t n) {
    if (&s.mdl() != &c.target()) {
        fail("ERR_COPROCESSOR_MISMATCH", "the coprocessor was loaded for another model than this session's");
    }
    if (n < 1 || n > c.n_latents()) {
        fail("ERR_INVALID_OPTION", format("latents must be 1..%u (the coprocessor's), got %u", c.n_latents(), n));
    }
    if (n > s.n_batch()) {
        fail("ERR_INVALID_OPTION", format("latents (%u) must not exceed the session's batch size %u", n, s.n_batch()));
    }
}

void coproc_append(session & s, const coprocessor & c, uint32_t n) {
    coproc_check(s, c, n);
    if (s.n_cells() + n > s.n_ctx()) {
        fail("ERR_CONTEXT_OVERFLOW", format("%u latent cells do not fit the context: %u cells used of %u", n, s.n_cells(), s.n_ctx()));
    }
    std::vector<float> lat, h;
    c.latents(s, n, lat);
    s.eval_vectors(lat.data(), n, nullptr, h);  // the decoder over the latents: their K/V into the cells
    s.commit_latents(n);
}

void coproc_augment(session & s, const coprocessor & c, uint32_t n, std::vector<float> & logits) {
    coproc_check(s, c, n);
    const std::vector<int32_t> held = s.tokens();
    if (held.empty()) fail("ERR_INVALID_OPTION", "augment needs at least one token in the session");
    const int32_t last = held.back();
    // the cells after: those held less a span right before the last token, plus the n latents
    const auto & sp = s.latent_spans();
    const uint32_t replaced = !sp.empty() && sp.back().before == held.size() - 1 ? sp.back().n : 0;
    if (s.n_cells() - replaced + n > s.n_ctx()) {
        fail("ERR_CONTEXT_OVERFLOW", format("%u latent cells do not fit the context: %u cells used of %u", n, s.n_cells() - replaced, s.n_ctx()));
    }
    s.truncate((uint32_t) held.size() - 1);
    coproc_append(s, c, n);
    s.eval_chain({ last }, false, false, logits);
    s.keep_tail_logits(logits);
}

} // namespace specdec
