#include "heads/eagle3_heads.h"

#include "common/error.h"
#include "heads/head_file.h"
#include "heads/medusa_heads.h"

namespace specdec {

static const std::string A = "eagle3.";

void eagle3_heads::check_target(const model & target, const std::string & what) const {
    const hparams & hp = target.hp;
    if (target_hidden != hp.n_embd || target_vocab != hp.n_vocab) {
        fail("ERR_HEADS_MISMATCH", format("%s was made for another target (hidden size %u, vocabulary %u); this model has hidden size %u, "
                "vocabulary %u", what.c_str(), target_hidden, target_vocab, hp.n_embd, hp.n_vocab));
    }
    for (int32_t l : target_layers) {
        if (l < 0 || (uint32_t) l >= hp.n_layer) {
            fail("ERR_HEADS_MISMATCH", format("%s taps target layer %d, but this model has %u layers", what.c_str(), l, hp.n_layer));
        }
    }
    if (output.empty() && n_embd != hp.n_embd) {
        fail("ERR_HEADS_MISMATCH", format("%s has no output head of its own and a hidden size %u unlike the target's %u", what.c_str(), n_embd, hp.n_embd));
    }
    if (tok_embd.empty() && n_embd != hp.n_embd) {
        fail("ERR_HEADS_MISMATCH", format("%s has no token embeddings of its own and a hidden size %u unlike the target's %u", what.c_str(), n_embd, hp.n_embd));
    }
    for (int64_t t : d2t) {
        if (t < 0 || t >= (int64_t) hp.n_vocab) fail("ERR_HEADS_MISMATCH", format("%s maps a draft token to %lld, outside the target's vocabulary", what.c_str(), (long long) t));
    }
}

std::shared_ptr<eagle3_heads> eagle3_heads::load(const std::string & path, const model & target) {
    head_file f(path, "EAGLE-3 head file");
    f.expect_arch("eagle3");
    auto h = std::make_shared<eagle3_heads>();
    h->n_embd    = f.u32(A + "embedding_length", 1, 1u << 16);
    h->n_ff      = f.u32(A + "feed_forward_length", 1, 1u << 20);
    f.u32(A + "block_count", 1, 1);
    h->n_head    = f.u32(A + "attention.head_count", 1, 1024);
    h->n_head_kv = f.has(A + "attention.head_count_kv") ? f.u32(A + "attention.head_count_kv", 1, h->n_head) : h->n_head;
    if (h->n_embd % h->n_head != 0 || h->n_head % h->n_head_kv != 0) {
        fail("ERR_BAD_METADATA", format("EAGLE-3 head file %s: inconsistent head counts (%u, %u) for hidden size %u", path.c_str(), h->n_head, h->n_head_kv, h->n_embd));
    }
    h->n_embd_head = h->n_embd / h->n_head;
    if (h->n_embd_head % 2 != 0) fail("ERR_BAD_METADATA", format("EAGLE-3 head file %s: odd head dimension", path.c_str()));
    h->eps       = f.f32_or(A + "attention.layer_norm_rms_epsilon", 1e-5f);
    if (!(h->eps > 0.0f) || h->eps > 1.0f) fail("ERR_BAD_METADATA", format("EAGLE-3 head file %s: RMS epsilon out of range", path.c_str()));
    h->rope_base = f.f32_or(A + "rope.freq_base", 10000.0f);
    if (!(h->rope_base > 0.0f)) fail("ERR_BAD_METADATA", format("EAGLE-3 head file %s: rope.freq_base must be positive", path.c_str()));
    h->n_ctx     = f.has(A + "context_length") ? f.u32(A + "context_length", 1, 1u << 24) : target.hp.n_ctx_train;
    h->target_hidden = f.u32(A + "target_hidden_size", 1, 1u << 20);
    h->norm_before_residual = f.bool_or(A + "norm_before_residual", false);
    if (f.bool_or(A + "norm_before_fc", false)) {
        fail("ERR_UNSUPPORTED_ARCHITECTURE", format("EAGLE-3 head file %s uses norm_before_fc, which specdec does not support yet", path.c_str()));
    }
    for (int64_t l : f.ints(A + "target_layers")) h->target_layers.push_back((int32_t) std::max<int64_t>(-1, std::min<int64_t>(l, INT32_MAX)));
    if (h->target_layers.size() != 3) fail("ERR_BAD_METADATA", format("EAGLE-3 head file %s: target_layers must hold 3 layer indices", path.c_str()));
    h->trained_tokens = f.u64_or(A + "training.tokens", 0);
    h->target_vocab = target.hp.n_vocab;
    const int64_t d = h->n_embd, dt = h->target_hidden, ff = h->n_ff, nq = h->n_q(), nkv = h->n_kv();
    // the draft vocabulary: its own head (with d2t when smaller than the target's) or the target's
    if (const ggml_tensor * o = f.tensor("output.weight")) {
        h->n_draft_vocab = (uint32_t) o->ne[1];
        if (h->n_draft_vocab == 0 || h->n_draft_vocab > target.hp.n_vocab) {
            fail("ERR_TENSOR_SHAPE", format("EAGLE-3 head file %s: output.weight has %u rows", path.c_str(), h->n_draft_vocab));
        }
        f.read_f32("output.weight", { d, h->n_draft_vocab }, h->output);
        if (f.tensor("d2t")) f.read_i64("d2t", h->n_draft_vocab, h->d2t);
        else if (h->n_draft_vocab != target.hp.n_vocab) {
            fail("ERR_MISSING_TENSOR", format("EAGLE-3 head file %s: a draft vocabulary of %u tokens needs d2t", path.c_str(), h->n_draft_vocab));
        }
    } else {
        h->n_draft_vocab = target.hp.n_vocab;
    }
    if (f.tensor("token_embd.weight")) f.read_f32("token_embd.weight", { d, (int64_t) target.hp.n_vocab }, h->tok_embd);
    h->check_target(target, "the EAGLE-3 head file " + path);
    f.read_f32("fc.weight", { 3 * dt, d }, h->fc);
    f.read_f32("blk.0.attn_norm.weight", { d }, h->attn_norm);
    f.read_f32("blk.0.attn_norm_2.weight", { d }, h->hidden_norm);
    f.read_f32("blk.0.attn_q.weight", { 2 * d, nq }, h->wq);
    f.read_f32("blk.0.attn_k.weight", { 2 * d, nkv }, h->wk);
    f.read_f32("blk.0.attn_v.weight", { 2 * d, nkv }, h->wv);
    f.read_f32("blk.0.attn_output.weight", { nq, d }, h->wo);
    f.read_f32("blk.0.ffn_norm.weight", { d }, h->ffn_norm);
    f.read_f32("blk.0.ffn_gate.weight", { d, ff }, h->ffn_gate);
    f.read_f32("blk.0.ffn_up.weight", { d, ff }, h->ffn_up);
    f.read_f32("blk.0.ffn_down.weight", { ff, d }, h->ffn_down);
    f.read_f32("output_norm.weight", { d }, h->out_norm);
    return h;
}

void eagle3_heads::save(const std::string & path, const model & target) const {
    head_file_writer wr("eagle3");
    wr.set_str("general.name", "specdec EAGLE-3 head");
    wr.set_u32(A + "context_length", n_ctx);
    wr.set_u32(A + "embedding_length", n_embd);
    wr.set_u32(A + "feed_forward_length", n_ff);
    wr.set_u32(A + "block_count", 1);
    wr.set_u32(A + "attention.head_count", n_head);
    wr.set_u32(A + "attention.head_count_kv", n_head_kv);
    wr.set_f32(A + "attention.layer_norm_rms_epsilon", eps);
    wr.set_f32(A + "rope.freq_base", rope_base);
    wr.set_u32(A + "rope.dimension_count", n_embd_head);
    wr.set_u32(A + "vocab_size", target.hp.n_vocab);
    wr.set_i32_array(A + "target_layers", target_layers);
    wr.set_u32(A + "target_hidden_size", target_hidden);
    wr.set_u64(A + "training.tokens", trained_tokens);
    if (target.gguf) wr.copy_keys(target.gguf, "tokenizer.");
    const int64_t d = n_embd, dt = target_hidden, ff = n_ff, nq = n_q(), nkv = n_kv();
    wr.add_f32("fc.weight", { 3 * dt, d }, fc.data());
    wr.add_f32("blk.0.attn_norm.weight", { d }, attn_norm.data());
    wr.add_f32("blk.0.attn_norm_2.weight", { d }, hidden_norm.data());
    wr.add_f32("blk.0.attn_q.weight", { 2 * d, nq }, wq.data());
    wr.add_f32("blk.0.attn_k.weight", { 2 * d, nkv }, wk.data());
    wr.add_f32("blk.0.attn_v.weight", { 2 * d, nkv }, wv.data());
    wr.add_f32("blk.0.attn_output.weight", { nq, d }, wo.data());
    wr.add_f32("blk.0.ffn_norm.weight", { d }, ffn_norm.data());
    wr.add_f32("blk.0.ffn_gate.weight", { d, ff }, ffn_gate.data());
    wr.add_f32("blk.0.ffn_up.weight", { d, ff }, ffn_up.data());
    wr.add_f32("blk.0.ffn_down.weight", { ff, d }, ffn_down.data());
    wr.add_f32("output_norm.weight", { d }, out_norm.data());
    wr.write(path);
}

} // namespace specdec
