#include "heads/transfer_heads.h"

#include "common/error.h"
#include "heads/head_file.h"

#include "ggml-cpu.h"

namespace specdec {

static const std::string ARCH = "specdec-hidden-transfer";
static const std::string A = ARCH + ".";

transfer_heads::~transfer_heads() {
    if (buf) ggml_backend_buffer_free(buf);
    if (ctx) ggml_free(ctx);
}

void transfer_heads::check_target(const model & target, const std::string & what) const {
    const hparams & hp = target.hp;
    if (n_embd != hp.n_embd || n_vocab != hp.n_vocab || target_layers != hp.n_layer) {
        fail("ERR_HEADS_MISMATCH", format("%s was trained for another target (hidden size %u, %u layers, vocabulary %u); this model has "
                "hidden size %u, %u layers, vocabulary %u", what.c_str(), n_embd, target_layers, n_vocab, hp.n_embd, hp.n_layer, hp.n_vocab));
    }
    if (layer < 1 || layer >= hp.n_layer) {
        fail("ERR_HEADS_MISMATCH", format("%s transfers at layer %u, outside [1, %u] of this model", what.c_str(), layer, hp.n_layer - 1));
    }
}

std::shared_ptr<transfer_heads> transfer_heads::load(const std::string & path, const model & target) {
    head_file f(path, "Hidden Transfer file");
    f.expect_arch(ARCH);
    auto h = std::make_shared<transfer_heads>();
    h->n_embd         = f.u32(A + "embedding_length", 1, 1u << 16);
    h->n_vocab        = f.u32(A + "vocab_size", 1, 1u << 24);
    h->target_layers  = f.u32(A + "target.block_count", 1, 4096);
    h->layer          = f.u32(A + "transfer_layer", 0, 4095);
    h->k              = f.u32(A + "pseudo_count", 1, 16);
    h->target_arch    = f.str(A + "target.architecture", "");
    h->trained_tokens = f.u64_or(A + "training.tokens", 0);
    h->check_target(target, "the Hidden Transfer file " + path);
    const int64_t d = h->n_embd;
    f.read_f32("transfer.weight", { d, d, (int64_t) h->k }, h->maps);
    h->maps_tensor();  // now, on the loading thread
    return h;
}

void transfer_heads::save(const std::string & path) const {
    head_file_writer wr(ARCH);
    wr.set_str("general.name", "specdec Hidden Transfer maps");
    wr.set_u32(A + "embedding_length", n_embd);
    wr.set_u32(A + "vocab_size", n_vocab);
    wr.set_u32(A + "target.block_count", target_layers);
    wr.set_str(A + "target.architecture", target_arch);
    wr.set_u32(A + "transfer_layer", layer);
    wr.set_u32(A + "pseudo_count", k);
    wr.set_u64(A + "training.tokens", trained_tokens);
    const int64_t d = n_embd;
    wr.add_f32("transfer.weight", { d, d, (int64_t) k }, maps.data());
    wr.write(path);
}

const ggml_tensor * transfer_heads::maps_tensor() const {
    if (t) return t;
    ctx = ggml_init({ ggml_tensor_overhead() * 2, nullptr, true });
    t = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, n_embd, n_embd, k);
    ggml_set_name(t, "transfer.weight");
    buf = ggml_backend_alloc_ctx_tensors_from_buft(ctx, ggml_backend_cpu_buffer_type());
    if (!buf) fail("ERR_BACKEND_UNAVAILABLE", "cannot allocate the Hidden Transfer maps");
    ggml_backend_tensor_set(t, maps.data(), 0, ggml_nbytes(t));
    return t;
}

} // namespace specdec
