#include "spec/drafters/lud.h"

#include "common/error.h"
#include "graph/llama_graph.h"  // MAX_INVARIANT_BATCH
#include "spec/drafters/draft_model.h"  // DRAFT_CATCH_UP

#include <algorithm>
#include <cmath>

namespace specdec {

lud_params lud_params_of(const model & m) {
    const gguf_context * g = m.gguf;
    const int64_t ik = g ? gguf_find_key(g, "lud.k") : -1;
    const int64_t ia = g ? gguf_find_key(g, "lud.alpha") : -1;
    if (m.hp.n_vocab_extra != 1 || ik < 0 || ia < 0 || gguf_get_kv_type(g, ik) != GGUF_TYPE_UINT32 || gguf_get_kv_type(g, ia) != GGUF_TYPE_FLOAT32) {
        fail("ERR_INVALID_OPTION", "this is not a Lexical Unit Decoding model (no lud.k, lud.alpha and lud.placeholder keys): "
                "train one with trainDrafter(model, { kind: 'lud' })");
    }
    lud_params p;
    p.k = gguf_get_val_u32(g, ik);
    p.alpha = gguf_get_val_f32(g, ia);
    p.placeholder = (int32_t) m.hp.n_vocab;
    if (p.k < 1 || p.k > 16 || !(p.alpha > 0.0f && p.alpha <= 1.0f)) {
        fail("ERR_BAD_METADATA", format("lud.k %u or lud.alpha %g out of range (1..16, (0, 1])", p.k, (double) p.alpha));
    }
    return p;
}

void lud_check_target(const model & lud, const model & target) {
    const hparams & a = lud.hp, & b = target.hp;
    if (a.n_vocab != b.n_vocab) {
        fail("ERR_VOCAB_MISMATCH", format("the LUD model's vocabulary has %u tokens, the target's %u", a.n_vocab, b.n_vocab));
    }
    if (a.n_embd != b.n_embd || a.n_layer != b.n_layer || a.arch != b.arch) {
        fail("ERR_VOCAB_MISMATCH", format("the LUD model (%s, %u layers of %u) was not made from this target (%s, %u layers of %u)",
                a.arch_name.c_str(), a.n_layer, a.n_embd, b.arch_name.c_str(), b.n_layer, b.n_embd));
    }
}

void lud_parallel_pass(session & s, const std::vector<int32_t> & pending, uint32_t k, int32_t placeholder,
                       std::vector<float> & logits) {
    const size_t U = pending.size();
    if (U == 0) fail("ERR_INTERNAL", "a LUD pass needs at least one token");
    std::vector<int32_t> batch(pending);
    batch.insert(batch.end(), k, placeholder);
    std::vector<int32_t> parents(batch.size());
    std::vector<uint32_t> outputs;
    for (size_t i = 0; i < batch.size(); ++i) {
        parents[i] = (int32_t) i - 1;  // a chain
        if (i + 1 >= U) outputs.push_back((uint32_t) i);
    }
    s.eval_tree(batch, parents, outputs, logits);
    s.commit_chain(batch, (uint32_t) U);
}

void lud_confident_run(const float * logits, uint32_t k, int32_t n_vocab, float alpha, std::vector<int32_t> & out) {
    out.clear();
    for (uint32_t j = 1; j <= k; ++j) {
        const float * row = logits + (size_t) j * n_vocab;
        const int32_t best = (int32_t) (std::max_element(row, row + n_vocab) - row);
        double sum = 0.0;
        for (int32_t v = 0; v < n_vocab; ++v) sum += std::exp((double) (row[v] - row[best]));
        if (1.0 / sum < (double) alpha) break;  // the argmax's probability
        out.push_back(best);
    }
}

lud_drafter::lud_drafter(std::shared_ptr<const model> lud, const session_params & params, const lud_params & lp_)
    : mdl(std::move(lud)), par(params), lp(lp_) {
    par.abort_also = &aborted;
}

session & lud_drafter::ensure_session() {
    if (!sess) sess = std::make_unique<session>(mdl, par);  // on the worker thread
    return *sess;
}

std::vector<int32_t> lud_drafter::catch_up(const std::vector<int32_t> & history, size_t max_pending) {
    ensure_session();
    const auto & held = sess->tokens();
    size_t common = 0;
    while (common < held.size() && common < history.size() && held[common] == history[common]) common++;
    common = std::min(common, history.size() - 1);  // at least one token left for the pass
    sess->truncate((uint32_t) common);
    // a long rest (the prompt) in chunks, short graph nodes: an abort is seen quickly
    const size_t end = history.size() - std::min(std::max<size_t>(1, max_pending), history.size() - common);
    std::vector<float> scratch;
    for (size_t at = common; at < end; at += DRAFT_CATCH_UP) {
        const size_t e = std::min(end, at + DRAFT_CATCH_UP);
        sess->eval_chain(std::vector<int32_t>(history.begin() + (std::ptrdiff_t) at, history.begin() + (std::ptrdiff_t) e), false, false, scratch);
    }
    return std::vector<int32_t>(history.begin() + (std::ptrdiff_t) sess->tokens().size(), history.end());
}

void lud_drafter::prepare(const std::vector<int32_t> & history) {
    catch_up(history, 1);  // the prompt but its last token, which the first proposal evaluates
}

void lud_drafter::propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) {
    out.clear();
    if (budget == 0 || history.empty()) return;
    ensure_session();
    // the pass holds the tokens the cache lacks (usually the root and the accepted ones) and k placeholders
    const uint32_t batch = std::min<uint32_t>(sess->n_batch(), MAX_INVARIANT_BATCH);
    if (batch < 2) return;
    const std::vector<int32_t> pending = catch_up(history, std::min<size_t>(batch / 2, DRAFT_CATCH_UP));
    const uint32_t cells = sess->n_ctx() - (uint32_t) sess->tokens().size();
    if (pending.empty() || pending.size() > cells) return;
    const uint32_t fit = batch - (uint32_t) pending.size();
    const uint32_t k = std::min({ lp.k, budget - 1, cells - (uint32_t) pending.size(), fit });
    lud_parallel_pass(*sess, pending, k, lp.placeholder, logits);
    const int32_t V = (int32_t) mdl->hp.n_vocab;
    const int32_t first = (int32_t) (std::max_element(logits.begin(), logits.begin() + V) - logits.begin());
    std::vector<int32_t> run;
    lud_confident_run(logits.data(), k, V, lp.alpha, run);
    int32_t parent = out.add(first, -1);
    for (int32_t t : run) parent = out.add(t, parent);
}

} // namespace specdec
