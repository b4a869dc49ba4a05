#include "train/online_learner.h"

#include "common/error.h"
#include "heads/medusa_heads.h"  // tensor_to_f32

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-opt.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

namespace specdec {

namespace {

constexpr char ONLINE_MAGIC[8] = { 'S', 'D', 'O', 'S', 'D', '0', '0', '1' };
constexpr size_t ONLINE_HEADER = 8 + 6 * 4 + 2 * 8;  // magic, shape (6 u32), values, steps

// Trainable values of a model, counted as trainable_llama_declare counts them (tied embeddings once).
uint64_t trainable_count(const model & m) {
    uint64_t n = 0;
    auto add = [&](const ggml_tensor * t) { if (t) n += (uint64_t) ggml_nelements(t); };
    add(m.tok_embd);
    add(m.output_norm);
    if (m.output != m.tok_embd) add(m.output);
    for (const layer_weights & l : m.layers) {
        for (const ggml_tensor * t : { l.attn_norm, l.wq, l.wk, l.wv, l.wo, l.bq, l.bk, l.bv, l.bo, l.q_norm, l.k_norm,
                                       l.ffn_norm, l.ffn_gate, l.ffn_up, l.ffn_down }) add(t);
    }
    return n;
}

void shape_of(const hparams & hp, uint32_t out[6]) {
    out[0] = hp.n_vocab;
    out[1] = hp.n_embd;
    out[2] = hp.n_layer;
    out[3] = hp.n_head;
    out[4] = hp.n_head_kv;
    out[5] = hp.n_ff;
}

} // namespace

online_learner::online_learner(std::shared_ptr<const model> source, const online_options & o) : src(std::move(source)) {
    set_options(o);
    topt.kind = "online";
    topt.max_tokens = UINT64_MAX / 4;  // no budget: the learning rate stays at its base value
    topt.abort = &abort_flag;
}

online_learner::~online_learner() = default;

void online_learner::set_options(const online_options & o) {
    const uint32_t window = opt.window;
    opt = o;
    if (clone) opt.window = window;  // the graph is built for one window length
    topt.lr = o.lr;
    topt.n_threads = std::max(1, o.n_threads);
    if (run) {
        run->set_lr(o.lr);
        run->set_threads(topt.n_threads);
    }
    while (buf.size() > opt.buffer) buf.pop_front();
}

std::shared_ptr<const model> online_learner::drafting_model() {
    if (!clone) init();
    return clone;
}

void online_learner::init() {
    const hparams & hp = src->hp;
    if (16 * (size_t) hp.n_layer + 16 > 1024) {
        fail("ERR_INVALID_OPTION", format("online learning takes draft models of at most 63 layers; this one has %u", hp.n_layer));
    }
    const int64_t T = opt.window;
    auto c = model_clone_f32(*src);
    auto r = std::make_unique<train_run>(topt);
    ggml_context * cp = r->weights();
    trainable_llama_declare(cp, *src, w);
    in_tokens = ggml_new_tensor_1d(cp, GGML_TYPE_I32, T);
    ggml_set_input(in_tokens);
    in_pos = ggml_new_tensor_1d(cp, GGML_TYPE_I32, T);
    in_mask = ggml_new_tensor_2d(cp, GGML_TYPE_F32, T, T);
    in_rows = ggml_new_tensor_2d(cp, GGML_TYPE_F32, 1, T);
    r->alloc_weights();
    trainable_llama_load(w, *src);
    {
        std::vector<int32_t> ps((size_t) T);
        for (int64_t i = 0; i < T; ++i) ps[(size_t) i] = (int32_t) i;
        ggml_backend_tensor_set(in_pos, ps.data(), 0, ggml_nbytes(in_pos));
        std::vector<float> m((size_t) (T * T), -INFINITY);
        for (int64_t p = 0; p < T; ++p) {
            for (int64_t k = 0; k <= p; ++k) m[(size_t) (p * T + k)] = 0.0f;  // row p attends keys <= p
        }
        ggml_backend_tensor_set(in_mask, m.data(), 0, ggml_nbytes(in_mask));
    }
    ggml_context * cc = r->compute(96 * (size_t) hp.n_layer + 64);
    // ggml's cross-entropy gradient, softmax - labels, takes every row's labels to sum to 1: rows
    // without a label (zero) would be pushed away from their own prediction. Their logits are
    // multiplied by 0 (in_rows), which cuts their gradient.
    ggml_tensor * logits = ggml_mul(cc, build_llama_train_logits(cc, w, in_tokens, in_pos, in_mask, T, 1), in_rows);  // [n_vocab, T]
    ggml_set_output(logits);
    r->init_opt(in_tokens, logits);
    run = std::move(r);
    clone = std::move(c);
    if (!to_load.empty()) {
        const std::vector<uint8_t> blob = std::move(to_load);
        to_load.clear();
        load(blob.data(), blob.size());
    }
}

void online_learner::flush(const std::vector<int32_t> & tokens) {
    if (pending.empty()) return;
    window_ex ex;
    const size_t end = tokens.size(), start = end > opt.window ? end - opt.window : 0;
    ex.tokens.assign(tokens.begin() + (std::ptrdiff_t) start, tokens.end());
    for (auto & l : pending) {
        if (l.pos >= start && l.pos + 1 < end) ex.labels.push_back({ (uint32_t) (l.pos - start), std::move(l.probs) });
    }
    pending.clear();
    if (ex.labels.empty()) return;
    buf.push_back(std::move(ex));
    while (buf.size() > opt.buffer) buf.pop_front();
}

void online_learner::before_propose(const std::vector<int32_t> & history) {
    drafting_model();
    size_t common = 0;
    while (common < seq.size() && common < history.size() && seq[common] == history[common]) common++;
    // seq is the sequence the last verification left: within a generation the history goes on from
    // it; otherwise (a new prompt, a truncation) the wrong positions collected on it go to the
    // buffer as a window of their own
    if (common < seq.size()) flush(seq);
    seq = history;
    if (fresh < opt.every) return;
    flush(seq);
    fresh = 0;
    update();
}

void online_learner::observe(const verify_result & r) {
    if (!r.tree || r.tree->empty() || !r.logits || seq.empty()) return;
    const int32_t last = r.path.empty() ? -1 : (int32_t) r.path.back();
    // the draft proposed a continuation of the accepted path (a child of its last node) and the
    // target took none of them: a wrong position
    bool proposed = false;
    for (size_t i = 0; i < r.tree->size() && !proposed; ++i) proposed = r.tree->parents[i] == last;
    if (proposed) {
        fresh++;
        std::lock_guard<std::mutex> lock(stats_mutex);
        st.mistakes++;
    }
    // the target's distribution at the wrong position, and (all_positions) at the accepted ones
    // before it: rows 0 (after the root) and 1 + each node of the path
    const size_t n_rows = r.path.size() + 1;
    for (size_t j = opt.all_positions ? 0 : n_rows - 1; j < n_rows; ++j) {
        if (j + 1 == n_rows && !proposed) break;  // the last row's token was not drafted: no draft to learn from there
        const size_t row = j == 0 ? 0 : 1 + (size_t) r.path[j - 1];
        pending_label l;
        l.pos = seq.size() - 1 + j;
        top_candidates(r.logits + row * (size_t) r.n_vocab, r.n_vocab, (int32_t) std::max<uint32_t>(1, opt.top_k), l.probs);
        double sum = 0.0;
        for (const auto & t : l.probs) sum += t.p;
        for (auto & t : l.probs) t.p = (float) (t.p / sum);
        pending.push_back(std::move(l));
    }
    extend(r);
}

void online_learner::extend(const verify_result & r) {
    // the sequence the next proposal will see: the accepted path and the target's own token
    for (uint32_t i : r.path) seq.push_back(r.tree->tokens[i]);
    if (r.next >= 0) seq.push_back(r.next);
}

void online_learner::update() {
    if (buf.empty()) return;
    const auto t0 = std::chrono::steady_clock::now();
    train_on(buf.back());
    for (uint32_t s = 1; s < opt.steps; ++s) train_on(buf[std::uniform_int_distribution<size_t>(0, buf.size() - 1)(rng)]);
    trainable_llama_store(w, *clone);
    clone->refresh_draft_weights();
    std::lock_guard<std::mutex> lock(stats_mutex);
    st.updates++;
    st.windows = buf.size();
    st.train_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void online_learner::train_on(const window_ex & ex) {
    const int64_t T = opt.window, V = src->hp.n_vocab;
    std::vector<int32_t> toks((size_t) T, 0);  // rows past the window's tokens have no label; causal: they change nothing before them
    std::copy(ex.tokens.begin(), ex.tokens.end(), toks.begin());
    std::vector<float> lab((size_t) (V * T), 0.0f), rows((size_t) T, 0.0f);
    for (const auto & l : ex.labels) {
        for (const auto & t : l.probs) lab[(size_t) l.row * V + t.id] = t.p;
        rows[l.row] = 1.0f;
    }
    ggml_backend_tensor_set(in_rows, rows.data(), 0, ggml_nbytes(in_rows));
    run->step_with([&](ggml_tensor * in, ggml_tensor * labels) {
        ggml_backend_tensor_set(in, toks.data(), 0, ggml_nbytes(in));
        ggml_backend_tensor_set(labels, lab.data(), 0, ggml_nbytes(labels));
    }, ex.labels.size());
    std::lock_guard<std::mutex> lock(stats_mutex);
    st.steps++;
    // ggml's cross-entropy is a mean over the window's rows: per wrong position
    st.last_loss = run->train_loss() * (double) T / (double) ex.labels.size();
}

std::vector<uint8_t> online_learner::save() {
    const uint64_t n = trainable_count(*src);
    std::vector<uint8_t> out(ONLINE_HEADER + n * sizeof(float));
    uint8_t * p = out.data();
    std::memcpy(p, ONLINE_MAGIC, 8);
    uint32_t shape[6];
    shape_of(src->hp, shape);
    std::memcpy(p + 8, shape, sizeof(shape));
    const uint64_t steps = stats().steps;
    std::memcpy(p + 32, &n, 8);
    std::memcpy(p + 40, &steps, 8);
    float * f = (float *) (p + ONLINE_HEADER);
    if (!clone) {
        // never used: the source's weights (or a blob loaded before first use)
        if (!to_load.empty()) return to_load;
        trainable_llama tmp;
        ggml_context * ctx = ggml_init({ ggml_tensor_overhead() * 1024, nullptr, true });
        trainable_llama_declare(ctx, *src, tmp);
        std::vector<float> v;
        for (const auto & [x, t] : tmp.params) {
            tensor_to_f32(t, v);
            std::memcpy(f, v.data(), v.size() * sizeof(float));
            f += v.size();
        }
        ggml_free(ctx);
        return out;
    }
    for (const auto & [x, t] : w.params) {
        ggml_backend_tensor_get(x, f, 0, ggml_nbytes(x));
        f += ggml_nelements(x);
    }
    return out;
}

void online_learner::load(const uint8_t * data, size_t n) {
    if (n < ONLINE_HEADER || std::memcmp(data, ONLINE_MAGIC, 8) != 0) {
        fail("ERR_INVALID_OPTION", "this is not a specdec online-learning state (saveOnline())");
    }
    uint32_t shape[6], want[6];
    std::memcpy(shape, data + 8, sizeof(shape));
    shape_of(src->hp, want);
    uint64_t values = 0, steps = 0;
    std::memcpy(&values, data + 32, 8);
    std::memcpy(&steps, data + 40, 8);
    if (std::memcmp(shape, want, sizeof(shape)) != 0 || values != trainable_count(*src)) {
        fail("ERR_INVALID_OPTION", format("this online-learning state is for another draft model (vocabulary %u, %u layers of %u; "
                "this one: vocabulary %u, %u layers of %u)", shape[0], shape[2], shape[1], want[0], want[2], want[1]));
    }
    if (n != ONLINE_HEADER + values * sizeof(float)) {
        fail("ERR_INVALID_OPTION", format("the online-learning state is truncated or has trailing bytes (%zu bytes, %llu expected)",
                n, (unsigned long long) (ONLINE_HEADER + values * sizeof(float))));
    }
    const float * f = (const float *) (data + ONLINE_HEADER);
    for (uint64_t i = 0; i < values; ++i) {
        if (!std::isfinite(f[i])) fail("ERR_INVALID_OPTION", "the online-learning state holds a value that is not finite");
    }
    if (!clone) {
        to_load.assign(data, data + n);
        return;
    }
    for (const auto & [x, t] : w.params) {
        ggml_backend_tensor_set(x, f, 0, ggml_nbytes(x));
        f += ggml_nelements(x);
    }
    trainable_llama_store(w, *clone);
    clone->refresh_draft_weights();
    std::lock_guard<std::mutex> lock(stats_mutex);
    st.steps = steps;
}

std::vector<float> online_learner::forward(const std::vector<int32_t> & tokens) {
    drafting_model();
    const int64_t n = (int64_t) tokens.size(), V = src->hp.n_vocab;
    if (n == 0 || n > (int64_t) opt.window) fail("ERR_INVALID_OPTION", format("forward() takes 1 to %u tokens", opt.window));
    // a graph of its own over the trainable weights (ggml-opt keeps its outputs in its graph copy)
    ggml_context * ctx = ggml_init({ ggml_tensor_overhead() * (96 * (size_t) src->hp.n_layer + 64) + ggml_graph_overhead(), nullptr, true });
    ggml_tensor * toks = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n);
    ggml_set_input(toks);
    ggml_tensor * pos = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n);
    ggml_set_input(pos);
    ggml_tensor * mask = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n, n);
    ggml_set_input(mask);
    ggml_tensor * logits = build_llama_train_logits(ctx, w, toks, pos, mask, n, 1);
    ggml_set_output(logits);
    ggml_cgraph * gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, logits);
    ggml_gallocr_t ga = ggml_gallocr_new(ggml_backend_get_default_buffer_type(run->backend()));
    std::vector<float> out;
    const bool ok = ggml_gallocr_alloc_graph(ga, gf);
    if (ok) {
        ggml_backend_tensor_set(toks, tokens.data(), 0, ggml_nbytes(toks));
        std::vector<int32_t> ps((size_t) n);
        std::vector<float> m((size_t) (n * n), -INFINITY);
        for (int64_t p = 0; p < n; ++p) {
            ps[(size_t) p] = (int32_t) p;
            for (int64_t k = 0; k <= p; ++k) m[(size_t) (p * n + k)] = 0.0f;
        }
        ggml_backend_tensor_set(pos, ps.data(), 0, ggml_nbytes(pos));
        ggml_backend_tensor_set(mask, m.data(), 0, ggml_nbytes(mask));
        ggml_backend_graph_compute(run->backend(), gf);
        out.resize((size_t) (V * n));
        ggml_backend_tensor_get(logits, out.data(), 0, out.size() * sizeof(float));
    }
    ggml_gallocr_free(ga);
    ggml_free(ctx);
    if (!ok) fail("ERR_BACKEND_UNAVAILABLE", "cannot allocate the forward pass");
    return out;
}

online_stats online_learner::stats() const {
    std::lock_guard<std::mutex> lock(stats_mutex);
    return st;
}

} // namespace specdec
