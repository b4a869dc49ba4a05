#include "heads/chimera_heads.h"

#include "common/error.h"
#include "heads/head_file.h"

namespace specdec {

static const std::string ARCH = "specdec-chimera";
static const std::string A = ARCH + ".";

std::shared_ptr<chimera_heads> chimera_heads::shape_for(const model & target) {
    const hparams & hp = target.hp;
    auto h = std::make_shared<chimera_heads>();
    h->n_embd = hp.n_embd;
    h->n_ff = hp.n_ff;
    h->n_head = hp.n_head;
    h->n_head_kv = hp.n_head;
    h->n_embd_head = hp.n_embd / std::max<uint32_t>(1, hp.n_head);
    h->n_ctx = hp.n_ctx_train;
    h->eps = hp.f_norm_rms_eps;
    h->rope_base = 10000.0f;
    h->n_vocab = hp.n_vocab;
    h->target_layers = hp.n_layer;
    h->target_layer = hp.n_layer - 1;
    h->target_arch = hp.arch_name;
    return h;
}

void chimera_heads::check_target(const model & target, const std::string & what) const {
    const hparams & hp = target.hp;
    if (n_embd != hp.n_embd || n_vocab != hp.n_vocab || target_layers != hp.n_layer) {
        fail("ERR_HEADS_MISMATCH", format("%s was trained for another target (hidden size %u, %u layers, vocabulary %u); this model has "
                "hidden size %u, %u layers, vocabulary %u", what.c_str(), n_embd, target_layers, n_vocab, hp.n_embd, hp.n_layer, hp.n_vocab));
    }
    if (target_layer >= hp.n_layer) {
        fail("ERR_HEADS_MISMATCH", format("%s taps target layer %u, but this model has %u layers", what.c_str(), target_layer, hp.n_layer));
    }
}

std::shared_ptr<chimera_heads> chimera_heads::load(const std::string & path, const model & target) {
    head_file f(path, "Chimera head file");
    f.expect_arch(ARCH);
    auto h = std::make_shared<chimera_heads>();
    h->n_embd        = f.u32(A + "embedding_length", 1, 1u << 16);
    h->n_ff          = f.u32(A + "feed_forward_length", 1, 1u << 20);
    h->n_head        = f.u32(A + "attention.head_count", 1, 1024);
    h->n_head_kv     = f.u32(A + "attention.head_count_kv", 1, h->n_head);
    if (h->n_embd % h->n_head != 0 || h->n_head % h->n_head_kv != 0) {
        fail("ERR_BAD_METADATA", format("Chimera head file %s: inconsistent head counts (%u, %u) for hidden size %u", path.c_str(), h->n_head, h->n_head_kv, h->n_embd));
    }
    h->n_embd_head   = h->n_embd / h->n_head;
    if (h->n_embd_head % 2 != 0) fail("ERR_BAD_METADATA", format("Chimera head file %s: odd head dimension", path.c_str()));
    h->eps           = f.f32_or(A + "attention.layer_norm_rms_epsilon", 1e-5f);
    if (!(h->eps > 0.0f) || h->eps > 1.0f) fail("ERR_BAD_METADATA", format("Chimera head file %s: RMS epsilon out of range", path.c_str()));
    h->rope_base     = f.f32_or(A + "rope.freq_base", 10000.0f);
    if (!(h->rope_base > 0.0f)) fail("ERR_BAD_METADATA", format("Chimera head file %s: rope.freq_base must be positive", path.c_str()));
    h->n_ctx         = f.u32(A + "context_length", 1, 1u << 24);
    h->n_vocab       = f.u32(A + "vocab_size", 1, 1u << 24);
    h->target_layers = f.u32(A + "target.block_count", 1, 4096);
    h->target_layer  = f.u32(A + "target.layer", 0, 4095);
    h->target_arch   = f.str(A + "target.architecture", "");
    h->trained_tokens = f.u64_or(A + "training.tokens", 0);
    h->check_target(target, "the Chimera head file " + path);
    const int64_t d = h->n_embd, ff = h->n_ff, nq = h->n_q(), nkv = h->n_kv();
    f.read_f32("trigram.weight", { 3 * d, 3 * d }, h->tri_w);
    f.read_f32("trigram.bias", { 3 * d }, h->tri_b);
    f.read_f32("trigram_out.weight", { 3 * d, d }, h->tri_out);
    f.read_f32("hidden_norm.weight", { d }, h->hidden_norm);
    f.read_f32("blk.0.attn_norm.weight", { d }, h->attn_norm);
    f.read_f32("blk.0.attn_q.weight", { d, nq }, h->wq);
    f.read_f32("blk.0.attn_k.weight", { d, nkv }, h->wk);
    f.read_f32("blk.0.attn_v.weight", { d, nkv }, h->wv);
    f.read_f32("blk.0.attn_output.weight", { nq, d }, h->wo);
    f.read_f32("blk.0.ffn_norm.weight", { d }, h->ffn_norm);
    f.read_f32("blk.0.ffn_gate.weight", { d, ff }, h->ffn_gate);
    f.read_f32("blk.0.ffn_up.weight", { d, ff }, h->ffn_up);
    f.read_f32("blk.0.ffn_down.weight", { ff, d }, h->ffn_down);
    f.read_f32("head_hidden.weight", { d, d }, h->head_h);
    f.read_f32("head_layer.weight", { d, d }, h->head_o);
    f.read_f32("head.bias", { d }, h->head_b);
    f.read_f32("output_norm.weight", { d }, h->out_norm);
    return h;
}

void chimera_heads::save(const std::string & path) const {
    head_file_writer wr(ARCH);
    wr.set_str("general.name", "specdec Chimera drafter");
    wr.set_u32(A + "embedding_length", n_embd);
    wr.set_u32(A + "feed_forward_length", n_ff);
    wr.set_u32(A + "attention.head_count", n_head);
    wr.set_u32(A + "attention.head_count_kv", n_head_kv);
    wr.set_f32(A + "attention.layer_norm_rms_epsilon", eps);
    wr.set_f32(A + "rope.freq_base", rope_base);
    wr.set_u32(A + "context_length", n_ctx);
    wr.set_u32(A + "vocab_size", n_vocab);
    wr.set_u32(A + "target.block_count", target_layers);
    wr.set_u32(A + "target.layer", target_layer);
    wr.set_str(A + "target.architecture", target_arch);
    wr.set_u64(A + "training.tokens", trained_tokens);
    const int64_t d = n_embd, ff = n_ff, nq = n_q(), nkv = n_kv();
    wr.add_f32("trigram.weight", { 3 * d, 3 * d }, tri_w.data());
    wr.add_f32("trigram.bias", { 3 * d }, tri_b.data());
    wr.add_f32("trigram_out.weight", { 3 * d, d }, tri_out.data());
    wr.add_f32("hidden_norm.weight", { d }, hidden_norm.data());
    wr.add_f32("blk.0.attn_norm.weight", { d }, attn_norm.data());
    wr.add_f32("blk.0.attn_q.weight", { d, nq }, wq.data());
    wr.add_f32("blk.0.attn_k.weight", { d, nkv }, wk.data());
    wr.add_f32("blk.0.attn_v.weight", { d, nkv }, wv.data());
    wr.add_f32("blk.0.attn_output.weight", { nq, d }, wo.data());
    wr.add_f32("blk.0.ffn_norm.weight", { d }, ffn_norm.data());
    wr.add_f32("blk.0.ffn_gate.weight", { d, ff }, ffn_gate.data());
    wr.add_f32("blk.0.ffn_up.weight", { d, ff }, ffn_up.data());
    wr.add_f32("blk.0.ffn_down.weight", { ff, d }, ffn_down.data());
    wr.add_f32("head_hidden.weight", { d, d }, head_h.data());
    wr.add_f32("head_layer.weight", { d, d }, head_o.data());
    wr.add_f32("head.bias", { d }, head_b.data());
    wr.add_f32("output_norm.weight", { d }, out_norm.data());
    wr.write(path);
}

} // namespace specdec
