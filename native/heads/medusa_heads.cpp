#include "heads/medusa_heads.h"

#include "common/error.h"
#include "heads/head_file.h"

#include "ggml-backend.h"

#include <cmath>
#include <cstring>

namespace specdec {

static const char * ARCH = "specdec-medusa";

// A dot product in 16 independent lanes (vectorized by the compiler without reassociation flags).
static float dot(const float * a, const float * b, int64_t n) {
    float lanes[16] = { 0 };
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (int j = 0; j < 16; ++j) lanes[j] += a[i + j] * b[i + j];
    }
    float acc = 0.0f;
    for (; i < n; ++i) acc += a[i] * b[i];
    for (int j = 0; j < 16; ++j) acc += lanes[j];
    return acc;
}

void tensor_to_f32(const ggml_tensor * t, std::vector<float> & out) {
    const int64_t n = ggml_nelements(t);
    std::vector<uint8_t> raw(ggml_nbytes(t));
    if (t->buffer) {
        ggml_backend_tensor_get(t, raw.data(), 0, raw.size());
    } else {
        std::memcpy(raw.data(), t->data, raw.size());
    }
    out.resize(n);
    if (t->type == GGML_TYPE_F32) {
        std::memcpy(out.data(), raw.data(), n * sizeof(float));
        return;
    }
    const auto * traits = ggml_get_type_traits(t->type);
    if (!traits->to_float) fail("ERR_TENSOR_TYPE", format("cannot convert tensor '%s' of type %s to f32", t->name, ggml_type_name(t->type)));
    const int64_t nrows = n / t->ne[0];
    const size_t row_bytes = ggml_row_size(t->type, t->ne[0]);
    for (int64_t r = 0; r < nrows; ++r) {
        traits->to_float(raw.data() + r * row_bytes, out.data() + r * t->ne[0], t->ne[0]);
    }
}

std::shared_ptr<medusa_heads> medusa_heads::zeros(const model & target, uint32_t n_heads) {
    auto h = std::make_shared<medusa_heads>();
    h->n_heads = n_heads;
    h->n_embd = target.hp.n_embd;
    h->n_vocab = target.hp.n_vocab;
    h->target_layers = target.hp.n_layer;
    h->target_arch = target.hp.arch_name;
    h->w.assign((size_t) n_heads * h->n_embd * h->n_embd, 0.0f);
    h->b.assign((size_t) n_heads * h->n_embd, 0.0f);
    return h;
}

void medusa_heads::check_target(const model & target, const std::string & what) const {
    if (n_embd != target.hp.n_embd || n_vocab != target.hp.n_vocab || target_layers != target.hp.n_layer) {
        fail("ERR_HEADS_MISMATCH", format("%s was trained for another target (hidden size %u, %u layers, vocabulary %u); this model has "
                "hidden size %u, %u layers, vocabulary %u", what.c_str(), n_embd, target_layers, n_vocab,
                target.hp.n_embd, target.hp.n_layer, target.hp.n_vocab));
    }
}

std::shared_ptr<medusa_heads> medusa_heads::load(const std::string & path, const model & target) {
    head_file f(path, "head file");
    f.expect_arch(ARCH);
    auto h = std::make_shared<medusa_heads>();
    h->n_heads        = f.u32(std::string(ARCH) + ".head_count", 1, 64);
    h->n_embd         = f.u32(std::string(ARCH) + ".embedding_length", 1, 1u << 20);
    h->n_vocab        = f.u32(std::string(ARCH) + ".vocab_size", 1, 1u << 24);
    h->target_layers  = f.u32(std::string(ARCH) + ".target.block_count", 1, 4096);
    h->target_arch    = f.str(std::string(ARCH) + ".target.architecture", "");
    h->trained_tokens = f.u64_or(std::string(ARCH) + ".training.tokens", 0);
    h->check_target(target, "the head file " + path);
    const int64_t d = h->n_embd, K = h->n_heads;
    f.read_f32("medusa.weight", { d, d, K }, h->w);
    f.read_f32("medusa.bias", { d, K }, h->b);
    return h;
}

void medusa_heads::save(const std::string & path) const {
    head_file_writer wr(ARCH);
    wr.set_u32(std::string(ARCH) + ".head_count", n_heads);
    wr.set_u32(std::string(ARCH) + ".embedding_length", n_embd);
    wr.set_u32(std::string(ARCH) + ".vocab_size", n_vocab);
    wr.set_u32(std::string(ARCH) + ".target.block_count", target_layers);
    wr.set_str(std::string(ARCH) + ".target.architecture", target_arch);
    wr.set_u64(std::string(ARCH) + ".training.tokens", trained_tokens);
    const int64_t d = n_embd, K = n_heads;
    wr.add_f32("medusa.weight", { d, d, K }, w.data());
    wr.add_f32("medusa.bias", { d, K }, b.data());
    wr.write(path);
}

medusa_runner::medusa_runner(std::shared_ptr<const medusa_heads> heads, std::shared_ptr<const model> target)
    : hd(std::move(heads)), tgt(std::move(target)) {
    hd->check_target(*tgt, "the heads");
    if (tgt->kind == BACKEND_CPU) packed = tgt->packed_for(tgt->output);
    if (!packed) tensor_to_f32(tgt->output, out_f32);
    tensor_to_f32(tgt->output_norm, norm_w);
    x.resize(hd->n_embd);
    z.resize((size_t) hd->n_heads * hd->n_embd);
    if (packed) act.resize(kernels::act_column_bytes(kernels::act_type_for(packed->type), hd->n_embd) * hd->n_heads);
}

void medusa_runner::run(const float * h, std::vector<float> & logits) {
    const int64_t d = hd->n_embd, K = hd->n_heads, V = hd->n_vocab;
    // x = rms_norm(h) * output_norm
    double ss = 0.0;
    for (int64_t i = 0; i < d; ++i) ss += (double) h[i] * h[i];
    const float scale = 1.0f / sqrtf((float) (ss / d) + tgt->hp.f_norm_rms_eps);
    for (int64_t i = 0; i < d; ++i) x[i] = h[i] * scale * norm_w[i];
    // z_k = x + silu(W_k x + b_k)
    for (int64_t k = 0; k < K; ++k) {
        const float * W = hd->w.data() + (size_t) k * d * d;
        const float * B = hd->b.data() + (size_t) k * d;
        float * zk = z.data() + k * d;
        for (int64_t o = 0; o < d; ++o) {
            const float y = dot(W + o * d, x.data(), d) + B[o];
            zk[o] = x[o] + y / (1.0f + expf(-y));
        }
    }
    // logits_k = output . z_k
    logits.resize((size_t) K * V);
    if (packed) {
        const kernels::act_type at = kernels::act_type_for(packed->type);
        const size_t col = kernels::act_column_bytes(at, d);
        for (int64_t k = 0; k < K; ++k) kernels::quantize_act(at, z.data() + k * d, d, act.data() + k * col);
        kernels::gemm(packed->kernel, *packed, act.data(), K, logits.data(), V, 0, packed->n_tiles);
    } else {
        for (int64_t k = 0; k < K; ++k) {
            const float * zk = z.data() + k * d;
            for (int64_t v = 0; v < V; ++v) logits[(size_t) k * V + v] = dot(out_f32.data() + (size_t) v * d, zk, d);
        }
    }
}

} // namespace specdec
