#include "runtime/session.h"
#include "common/error.h"

#include "ggml-cpu.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

namespace specdec {

static bool abort_cb(void * data) {
    return static_cast<const session *>(data)->abort_requested();
}

session::session(std::shared_ptr<const model> model_, const session_params & params)
    : m(std::move(model_)), par(params), kv(*m, params.n_ctx) {
    if (par.draft_weights) m->prepare_draft_weights([this] { return abort_requested(); });
    backend_cpu = ggml_backend_dev_init(ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU), nullptr);
    if (!backend_cpu) {
        fail("ERR_BACKEND_UNAVAILABLE", "cannot start the CPU backend");
    }
    make_threadpool(par.n_threads);
    ggml_backend_cpu_set_abort_callback(backend_cpu, abort_cb, this);

    // the scheduler runs each node where its weights are; the CPU comes last (inputs, token embeddings)
    if (m->kind != BACKEND_CPU) {
        const std::vector<ggml_backend_dev_t> devs = m->devices.empty() ? std::vector<ggml_backend_dev_t> { m->device } : m->devices;
        for (ggml_backend_dev_t d : devs) {
            ggml_backend_t b = ggml_backend_dev_init(d, nullptr);
            if (!b) {
                for (ggml_backend_t x : backend_devs) ggml_backend_free(x);
                ggml_backend_free(backend_cpu);
                ggml_threadpool_free(threadpool);
                fail("ERR_BACKEND_UNAVAILABLE", format("cannot start backend %s", ggml_backend_dev_name(d)));
            }
            backend_devs.push_back(b);
        }
    }
    std::vector<ggml_backend_t> backends = backend_devs;
    backends.push_back(backend_cpu);

    // ggml's attention on the CPU (no specdec attention kernel for this session): verification rows may be gathered
    own_attn = m->kind == BACKEND_CPU && (par.own_attention < 0 ? m->specdec_attention : par.own_attention > 0);
    gather_rows = m->kind == BACKEND_CPU && !(own_attn && m->attn_available);
    // sized to the session's batch: graphs never hold more rows (compute() refuses them), and a small
    // batch (a draft session) then allocates a small scheduler and graph context
    const size_t max_nodes = llama_graph_max_nodes(*m, gather_rows, par.n_batch);
    sched = ggml_backend_sched_new(backends.data(), nullptr, (int) backends.size(), max_nodes, false, true);
    graph_buf.resize(ggml_tensor_overhead() * max_nodes * 2 + ggml_graph_overhead_custom(max_nodes, false));

    // measure the compute buffers once, from the worst-case graph
    ggml_init_params ip = { graph_buf.size(), graph_buf.data(), true };
    ggml_context * ctx0 = ggml_init(ip);
    graph_shape worst { par.n_batch, kv.size(), par.n_batch };
    graph_inputs in;
    ggml_cgraph * gf = build_llama_graph(ctx0, *m, kv, worst, in);
    bool ok = ggml_backend_sched_reserve(sched, gf);
    ggml_free(ctx0);
    if (ok) {
        // and from the worst batch-invariant graph (one attention node per row)
        const uint32_t n = std::min(par.n_batch, MAX_INVARIANT_BATCH);
        graph_shape inv { n, kv.size(), n, true, std::vector<uint32_t>(n, kv.size()) };
        inv.own_attention = own_attn;
        ctx0 = ggml_init(ip);
        gf = build_llama_graph(ctx0, *m, kv, inv, in);
        ok = ggml_backend_sched_reserve(sched, gf);
        ggml_free(ctx0);
        if (ok && gather_rows && kv.size() >= 512) {
            // and with every row gathered over the whole cache (their copies)
            inv.n_gather = n;
            inv.gather_n_kv = kv.size();
            inv.row_gather.resize(n);
            for (uint32_t i = 0; i < n; ++i) inv.row_gather[i] = (int32_t) i;
            ctx0 = ggml_init(ip);
            gf = build_llama_graph(ctx0, *m, kv, inv, in);
            ok = ggml_backend_sched_reserve(sched, gf);
            ggml_free(ctx0);
        }
    }
    if (!ok) {
        ggml_backend_sched_free(sched);
        for (ggml_backend_t b : backend_devs) ggml_backend_free(b);
        ggml_backend_free(backend_cpu);
        ggml_threadpool_free(threadpool);
        fail("ERR_BACKEND_UNAVAILABLE", "cannot allocate the compute buffers (context or batch size too large for the device?)");
    }
}

session::~session() {
    drop_decode_graph();
    if (sched) ggml_backend_sched_free(sched);
    for (ggml_backend_t b : backend_devs) ggml_backend_free(b);
    if (backend_cpu) ggml_backend_free(backend_cpu);
    if (threadpool) ggml_threadpool_free(threadpool);
}

void session::drop_decode_graph() {
    if (decode.ctx) ggml_free(decode.ctx);
    decode.ctx = nullptr;
    decode.gf = nullptr;
    decode.n_kv = 0;
}

void session::make_threadpool(int n) {
    // One persistent pool per session: threads are created once, not per graph.
    ggml_threadpool_params tpp = ggml_threadpool_params_default(n);
    ggml_threadpool * tp = ggml_threadpool_new(&tpp);
    if (!tp) {
        fail("ERR_BACKEND_UNAVAILABLE", format("cannot start %d compute threads", n));
    }
    ggml_backend_cpu_set_n_threads(backend_cpu, n);
    ggml_backend_cpu_set_threadpool(backend_cpu, tp);
    if (threadpool) ggml_threadpool_free(threadpool);
    threadpool = tp;
    par.n_threads = n;
}

void session::set_threads(int n) {
    if (n != par.n_threads) make_threadpool(n);
}

int session::calibrate_threads(const std::vector<int> & candidates, std::vector<double> & ms_per_token) {
    if (!committed.empty()) {
        fail("ERR_INTERNAL", "thread calibration needs an empty session");
    }
    std::vector<float> logits;
    const std::vector<int32_t> tok = { 0 };
    int best = par.n_threads;
    double best_ms = 1e30;
    ms_per_token.clear();
    for (int n : candidates) {
        set_threads(n);
        std::vector<double> times;
        for (int rep = 0; rep < 8; ++rep) {
            const auto t0 = std::chrono::steady_clock::now();
            compute(tok, { -1 }, { 0 }, false, logits);
            const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            if (rep >= 2) times.push_back(ms);  // the first runs warm caches and threads
        }
        std::sort(times.begin(), times.end());
        const double med = times[times.size() / 2];
        ms_per_token.push_back(med);
        if (med < best_ms * 0.95) {
            best_ms = med;
            best = n;
        }
    }
    set_threads(best);
    timing = eval_timing();
    return best;
}

session_memory session::memory() const {
    session_memory mem;
    mem.kv = kv.bytes();
    mem.compute = ggml_backend_sched_get_buffer_size(sched, backend_cpu);
    for (ggml_backend_t b : backend_devs) mem.compute += ggml_backend_sched_get_buffer_size(sched, b);
    mem.graph = graph_buf.capacity();
    return mem;
}

void session::set_taps(const std::vector<uint32_t> & layers, bool all_rows) {
    for (uint32_t l : layers) {
        if (l > m->hp.n_layer || (all_rows && l == m->hp.n_layer)) {
            fail("ERR_INVALID_OPTION", format("hidden-state layer %u is out of range [0, %u]", l, all_rows ? m->hp.n_layer - 1 : m->hp.n_layer));
        }
    }
    if (layers != taps_ || all_rows != taps_all_) drop_decode_graph();  // the cached one-token graph has the old taps
    taps_ = layers;
    taps_all_ = all_rows;
    hidden_.clear();
}

void session::set_transfer(const ggml_tensor * maps, uint32_t layer) {
    if (maps && (layer == 0 || layer >= m->hp.n_layer || maps->type != GGML_TYPE_F32 || maps->ne[0] != m->hp.n_embd ||
                 maps->ne[1] != m->hp.n_embd || maps->ne[2] < 1)) {
        fail("ERR_INTERNAL", "hidden-transfer maps do not fit this model");
    }
    transfer_maps_ = maps;
    transfer_layer_ = layer;
    pseudo_logits_.clear();
}

void session::pause_threads() {
    if (threadpool) ggml_threadpool_pause(threadpool);
}

uint32_t session::n_latent_cells() const {
    uint32_t n = 0;
    for (const latent_span & sp : spans) n += sp.n;
    return n;
}

void session::truncate(uint32_t n) {
    if (n >= committed.size()) return;
    committed.resize(n);
    // the spans after token n - 1 go with the tokens after them
    while (!spans.empty() && spans.back().before >= n) spans.pop_back();
    kv.truncate((uint32_t) committed.size() + n_latent_cells());
    tail_logits.clear();
    if (n < fresh_n) {
        // what is left of a chunk is not what a fresh prefill of the shorter prompt computes
        fresh_n = n / par.n_batch * par.n_batch;
        fresh_logits.clear();
    }
}

uint32_t session::fresh_prefix(const std::vector<int32_t> & prompt, std::vector<float> & logits, bool rows_wanted,
                               bool keep_latents) const {
    logits.clear();
    size_t common = 0;
    while (common < committed.size() && common < prompt.size() && committed[common] == prompt[common]) common++;
    if (!spans.empty() && keep_latents && !rows_wanted && !prompt.empty()) {
        // the prompt goes on after the augmented cache when it holds every token the last span follows
        const size_t need = spans.back().before;
        if (common == prompt.size() && common == committed.size() && !tail_logits.empty()) {
            logits = tail_logits;
            return (uint32_t) common;
        }
        const size_t keep = std::min(common, prompt.size() - 1);
        if (keep > need || (keep == need && keep == committed.size())) return (uint32_t) keep;
    }
    if (spans.empty() && !rows_wanted && !prompt.empty() && common == prompt.size() && fresh_n == prompt.size() && !fresh_logits.empty()) {
        logits = fresh_logits;
        return fresh_n;
    }
    // at least one token is evaluated, for the logits; the reuse stops before the first span
    size_t limit = std::min({ common, (size_t) fresh_n, prompt.empty() ? 0 : prompt.size() - 1 });
    if (!spans.empty() && limit >= spans.front().before) limit = spans.front().before > 0 ? spans.front().before - 1 : 0;
    return (uint32_t) (limit / par.n_batch * par.n_batch);
}

void session::eval_vectors(const float * vecs, uint32_t n, const lora_adapter * lora, std::vector<float> & final_hidden) {
    if (n == 0) fail("ERR_INTERNAL", "no vectors to evaluate");
    std::vector<int32_t> tokens(n, 0), parents(n);
    std::vector<uint32_t> outputs(n);
    for (uint32_t i = 0; i < n; ++i) {
        parents[i] = (int32_t) i - 1;
        outputs[i] = i;
    }
    vector_rows vr { vecs, lora, &final_hidden };
    std::vector<float> logits;
    compute(tokens, parents, outputs, false, logits, 0, &vr);
}

void session::read_cells(uint32_t il, uint32_t n, std::vector<float> & k, std::vector<float> & v) const {
    if (il >= m->hp.n_layer || n > kv.used()) fail("ERR_INTERNAL", "read_cells out of range");
    std::vector<ggml_fp16_t> h;
    auto get = [&](ggml_tensor * t, std::vector<float> & out) {
        const size_t nv = (size_t) t->ne[0] * n;
        h.resize(nv);
        out.resize(nv);
        if (nv) ggml_backend_tensor_get(t, h.data(), 0, nv * sizeof(ggml_fp16_t));
        ggml_fp16_to_fp32_row(h.data(), out.data(), (int64_t) nv);
    };
    get(kv.k_layer((int) il), k);
    get(kv.v_layer((int) il), v);
}

void session::commit_latents(uint32_t n) {
    if (kv.used() + n > kv.size()) fail("ERR_CONTEXT_OVERFLOW", "the latent cells do not fit the context");
    kv.commit(n);
    if (!spans.empty() && spans.back().before == committed.size()) {
        spans.back().n += n;
    } else {
        spans.push_back({ (uint32_t) committed.size(), n });
    }
    // the cells after the first span are no fresh prefill
    fresh_n = std::min<uint32_t>(fresh_n, spans.front().before);
    if (fresh_n != committed.size()) fresh_logits.clear();
    tail_logits.clear();
}

void session::compute(const std::vector<int32_t> & tokens, const std::vector<int32_t> & parents,
                      const std::vector<uint32_t> & outputs, bool invariant, std::vector<float> & logits, uint32_t pseudo,
                      const vector_rows * vr) {
    const auto t0 = std::chrono::steady_clock::now();
    const uint32_t n_tokens = (uint32_t) tokens.size();
    const uint32_t n_past   = kv.used();
    const uint32_t n_vocab  = m->hp.n_vocab;

    if (n_tokens == 0 || n_tokens > par.n_batch || (invariant && n_tokens > MAX_INVARIANT_BATCH)) {
        fail("ERR_INTERNAL", format("batch of %u tokens (batch size %u)", n_tokens, par.n_batch));
    }
    if (n_past + n_tokens > kv.size()) {
        fail("ERR_CONTEXT_OVERFLOW", format("the context is full: %u cells used + %u new > context size %u", n_past, n_tokens, kv.size()));
    }
    const uint32_t n_in = m->hp.n_vocab_in();  // a LUD model's placeholder (id n_vocab) is an input too
    for (int32_t t : tokens) {
        if (t < 0 || (uint32_t) t >= n_in) {
            fail("ERR_TOKEN_OUT_OF_RANGE", format("token id %d is out of range [0, %u)", t, n_in));
        }
    }

    // depth in the tree
    depth.resize(n_tokens);
    for (uint32_t i = 0; i < n_tokens; ++i) {
        const int32_t p = parents[i];
        if (p >= (int32_t) i) {
            fail("ERR_INTERNAL", "tree parents must precede their children");
        }
        depth[i] = p < 0 ? 0 : depth[p] + 1;
    }

    graph_shape shape { n_tokens, decode_n_kv(n_past + n_tokens, kv.size()), (uint32_t) outputs.size() };
    shape.own_attention = own_attn;
    shape.draft_weights = par.draft_weights && m->kind == BACKEND_CPU;
    shape.taps = taps_;
    shape.tap_all_rows = taps_all_;
    if (vr) {
        // every row enters as a vector at layer 0; their last-layer rows come out
        shape.entry_layer = 0;
        shape.entry_rows.resize(n_tokens);
        for (uint32_t i = 0; i < n_tokens; ++i) shape.entry_rows[i] = i;
        shape.lora = vr->lora;
        shape.taps = { m->hp.n_layer };
        shape.tap_all_rows = false;
    }
    if (invariant) {
        shape.invariant = true;
        plan_invariant_rows(shape, n_past, depth, kv.size(), gather_rows);
    }
    if (pseudo > 0) {
        // Hidden Transfer: the last `pseudo` rows enter at the transfer layer, map j of row a at k * ... (map-major)
        const uint32_t n_real = n_tokens - pseudo;
        shape.entry_layer = transfer_layer_;
        shape.entry_maps = transfer_maps_;
        for (uint32_t a = 0; a < n_real; ++a) shape.entry_from.push_back(a);
        for (uint32_t i = n_real; i < n_tokens; ++i) shape.entry_rows.push_back(i);
    }
    bool identity_outputs = outputs.size() == n_tokens;
    for (uint32_t i = 0; identity_outputs && i < n_tokens; ++i) identity_outputs = outputs[i] == i;
    if (identity_outputs) shape.n_outputs = n_tokens;

    // a one-token decode (a batch of one is the same graph whether invariant or not) reuses its graph
    const bool one_token = n_tokens == 1 && shape.n_outputs == 1 && !vr;
    ggml_context * ctx0 = nullptr;  // freed at the end when the graph is not kept
    ggml_cgraph *  gf   = nullptr;
    graph_inputs   in;
    if (one_token && decode.gf && decode.n_kv == shape.n_kv) {
        gf = decode.gf;
        in = decode.in;
    } else {
        drop_decode_graph();  // graph_buf holds one graph at a time: the kept decode graph goes first
        ggml_init_params ip = { graph_buf.size(), graph_buf.data(), true };
        ggml_context * ctx = ggml_init(ip);
        gf = build_llama_graph(ctx, *m, kv, shape, in);
        if (!identity_outputs && !in.out_ids) {
            ggml_free(ctx);
            fail("ERR_INTERNAL", "outputs must be given as a selection");
        }
        if (pseudo > 0 && !in.entry_from) {
            ggml_free(ctx);
            fail("ERR_INTERNAL", "the pseudo rows were not built");
        }
        ggml_backend_sched_reset(sched);
        if (!ggml_backend_sched_alloc_graph(sched, gf)) {
            ggml_free(ctx);
            fail("ERR_INTERNAL", "cannot allocate the graph");
        }
        if (one_token) {
            decode.ctx = ctx;
            decode.gf = gf;
            decode.in = in;
            decode.n_kv = shape.n_kv;
        } else {
            ctx0 = ctx;
        }
    }
    struct ctx_guard {
        ggml_context * c;
        ~ctx_guard() { if (c) ggml_free(c); }
    } guard { ctx0 };

    std::vector<int32_t> pos(n_tokens);
    std::vector<int64_t> idxs(n_tokens);
    // positions: a token's is its index in the sequence (latent cells take none); vector rows all sit
    // at the position of the token after them
    const int32_t pos_base = (int32_t) committed.size();
    for (uint32_t i = 0; i < n_tokens; ++i) {
        pos[i]  = vr ? pos_base : pos_base + depth[i];
        idxs[i] = (int64_t) n_past + i;
    }
    if (in.tokens) ggml_backend_tensor_set(in.tokens, tokens.data(), 0, n_tokens * sizeof(int32_t));
    // rows given as vectors (eval_vectors); Hidden Transfer's entering vectors are computed in the graph
    if (vr && in.entry) ggml_backend_tensor_set(in.entry, vr->vecs, 0, ggml_nbytes(in.entry));
    ggml_backend_tensor_set(in.pos, pos.data(), 0, n_tokens * sizeof(int32_t));
    ggml_backend_tensor_set(in.kv_idxs, idxs.data(), 0, n_tokens * sizeof(int64_t));

    // mask: row i may see the committed cells, its ancestors and itself
    const ggml_fp16_t zero = ggml_fp32_to_fp16(0.0f);
    const ggml_fp16_t ninf = ggml_fp32_to_fp16(-INFINITY);
    const uint32_t n_kv = shape.n_kv;
    mask.assign((size_t) n_kv * n_tokens, ninf);
    for (uint32_t i = 0; i < n_tokens; ++i) {
        ggml_fp16_t * row = mask.data() + (size_t) i * n_kv;
        for (uint32_t j = 0; j < n_past; ++j) row[j] = zero;
        for (int32_t a = (int32_t) i; a >= 0; a = parents[a]) row[n_past + a] = zero;
    }
    ggml_backend_tensor_set(in.mask, mask.data(), 0, mask.size() * sizeof(ggml_fp16_t));
    fill_entry_sel(shape, in);
    if (in.gather_idx) {
        // a gathered row's view: the context, then its ancestors (root first) in the cells after it,
        // then cells it does not see (masked), as its one-token decode lays them out
        const uint32_t n_g = shape.gather_n_kv;
        std::vector<int32_t> gidx((size_t) n_g * shape.n_gather, 0);
        std::vector<ggml_fp16_t> gmask((size_t) n_g * shape.n_gather, ninf);
        std::vector<int32_t> path;
        for (uint32_t i = 0; i < n_tokens; ++i) {
            const int32_t g = shape.row_gather[i];
            if (g < 0) continue;
            int32_t * idx = gidx.data() + (size_t) g * n_g;
            ggml_fp16_t * row = gmask.data() + (size_t) g * n_g;
            path.clear();
            for (int32_t a = (int32_t) i; a >= 0; a = parents[a]) path.push_back(a);
            std::reverse(path.begin(), path.end());
            for (uint32_t j = 0; j < n_g; ++j) idx[j] = (int32_t) std::min(j, kv.size() - 1);
            for (uint32_t j = 0; j < n_past; ++j) row[j] = zero;
            for (size_t d = 0; d < path.size(); ++d) {
                idx[n_past + d] = (int32_t) (n_past + (uint32_t) path[d]);
                row[n_past + d] = zero;
            }
        }
        ggml_backend_tensor_set(in.gather_idx, gidx.data(), 0, gidx.size() * sizeof(int32_t));
        ggml_backend_tensor_set(in.gather_mask, gmask.data(), 0, gmask.size() * sizeof(ggml_fp16_t));
    }
    if (in.out_ids) {
        std::vector<int32_t> out_ids(outputs.begin(), outputs.end());
        for (int32_t o : out_ids) {
            if (o < 0 || (uint32_t) o >= n_tokens) {
                fail("ERR_INTERNAL", "output index out of range");
            }
        }
        ggml_backend_tensor_set(in.out_ids, out_ids.data(), 0, out_ids.size() * sizeof(int32_t));
    }

    const ggml_status st = ggml_backend_sched_graph_compute(sched, gf);
    if (st != GGML_STATUS_SUCCESS) {
        if (st == GGML_STATUS_ABORTED) {
            fail("ERR_ABORTED", "evaluation aborted");
        }
        fail("ERR_INTERNAL", format("graph computation failed (status %d)", (int) st));
    }

    logits.resize((size_t) outputs.size() * n_vocab);
    ggml_backend_tensor_get(in.logits, logits.data(), 0, logits.size() * sizeof(float));
    tail_logits.clear();
    if (vr) {
        // [n_tokens][n_embd]: the last layer's rows
        const size_t n_embd = m->hp.n_embd;
        vr->final_hidden->resize((size_t) n_tokens * n_embd);
        ggml_tensor * t = in.taps[0];
        for (size_t r = 0; r < n_tokens; ++r) {
            ggml_backend_tensor_get(t, vr->final_hidden->data() + r * n_embd, r * t->nb[1], n_embd * sizeof(float));
        }
    } else if (!taps_.empty()) {
        // [rows][n_taps][n_embd]: one copy per row and tap
        const size_t n_embd = m->hp.n_embd, n_taps = taps_.size(), n_out = taps_all_ ? n_tokens : outputs.size();
        hidden_.resize(n_out * n_taps * n_embd);
        for (size_t j = 0; j < n_taps; ++j) {
            ggml_tensor * t = in.taps[j];
            for (size_t r = 0; r < n_out; ++r) {
                ggml_backend_tensor_get(t, hidden_.data() + (r * n_taps + j) * n_embd, r * t->nb[1], n_embd * sizeof(float));
            }
        }
    }

    timing.ms_total += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    timing.n_evals  += 1;
    timing.n_tokens += n_tokens;
}

void session::eval_tree(const std::vector<int32_t> & tokens, const std::vector<int32_t> & parents,
                        const std::vector<uint32_t> & outputs, std::vector<float> & logits) {
    if (parents.size() != tokens.size()) {
        fail("ERR_INTERNAL", "tokens and parents differ in length");
    }
    pseudo_logits_.clear();
    const uint32_t k = transfer_maps_ ? (uint32_t) transfer_maps_->ne[2] : 0;
    const uint32_t n = (uint32_t) tokens.size();
    const uint32_t n_all = n * (1 + k);
    if (k == 0 || n_all > std::min(par.n_batch, MAX_INVARIANT_BATCH) || kv.used() + n_all > kv.size()) {
        compute(tokens, parents, outputs, true, logits);
        return;
    }
    // each row's k pseudo rows after the batch, map-major (map j of row a at n + j * n + a): a chain
    // hanging off its row (positions after it; it attends the row's ancestors, the row, and itself's
    // predecessors in the chain), its token a placeholder (the row's: below the transfer layer the
    // pseudo rows' states are replaced anyway, and no real row attends them)
    std::vector<int32_t> t2(tokens), p2(parents);
    std::vector<uint32_t> o2(outputs);
    t2.resize(n_all);
    p2.resize(n_all);
    for (uint32_t j = 0; j < k; ++j) {
        for (uint32_t a = 0; a < n; ++a) {
            const uint32_t i = n + j * n + a;
            t2[i] = tokens[a];
            p2[i] = (int32_t) (j == 0 ? a : n + (j - 1) * n + a);
            o2.push_back(i);
        }
    }
    std::vector<float> all;
    compute(t2, p2, o2, true, all, n_all - n);
    const size_t V = m->hp.n_vocab;
    logits.assign(all.begin(), all.begin() + outputs.size() * V);
    // [rows][k][n_vocab] from the map-major output order
    pseudo_logits_.resize((size_t) n * k * V);
    for (uint32_t j = 0; j < k; ++j) {
        for (uint32_t a = 0; a < n; ++a) {
            const float * src = all.data() + (outputs.size() + (size_t) j * n + a) * V;
            std::copy(src, src + V, pseudo_logits_.data() + ((size_t) a * k + j) * V);
        }
    }
}

void session::eval_chain(const std::vector<int32_t> & tokens, bool all_logits, bool invariant, std::vector<float> & logits) {
    const uint32_t n_vocab = m->hp.n_vocab;
    if (kv.used() + tokens.size() > kv.size()) {
        fail("ERR_CONTEXT_OVERFLOW", format("%zu tokens do not fit the context: %u cells already used of %u",
                tokens.size(), kv.used(), kv.size()));
    }
    logits.clear();
    std::vector<float> chunk_logits;
    const size_t batch = invariant ? std::min(par.n_batch, MAX_INVARIANT_BATCH) : par.n_batch;
    for (size_t start = 0; start < tokens.size(); start += batch) {
        if (abort_requested()) {
            fail("ERR_ABORTED", "evaluation aborted");
        }
        const size_t n = std::min<size_t>(batch, tokens.size() - start);
        std::vector<int32_t> chunk(tokens.begin() + start, tokens.begin() + start + n);
        std::vector<int32_t> parents(n);
        for (size_t i = 0; i < n; ++i) parents[i] = (int32_t) i - 1;
        std::vector<uint32_t> outputs;
        if (all_logits) {
            for (size_t i = 0; i < n; ++i) outputs.push_back((uint32_t) i);
        } else if (start + n == tokens.size()) {
            outputs.push_back((uint32_t) n - 1);
        } else {
            outputs.push_back((uint32_t) n - 1);  // a graph needs one output; discarded
        }
        compute(chunk, parents, outputs, invariant, chunk_logits);
        // a batched chunk that starts a fresh prefill's next chunk extends it (a chunk after a shorter
        // one is not: a fresh prefill of the longer prompt would have chunked it otherwise)
        const bool fresh = !invariant && spans.empty() && committed.size() == fresh_n && fresh_n % par.n_batch == 0;
        commit_chain(chunk, (uint32_t) n);
        if (fresh) {
            fresh_n = (uint32_t) committed.size();
            fresh_logits.assign(chunk_logits.end() - n_vocab, chunk_logits.end());
        }
        if (all_logits) {
            logits.insert(logits.end(), chunk_logits.begin(), chunk_logits.end());
        } else if (start + n == tokens.size()) {
            logits.assign(chunk_logits.end() - n_vocab, chunk_logits.end());
        }
    }
}

void session::commit_chain(const std::vector<int32_t> & tokens, uint32_t n) {
    kv.commit(n);
    committed.insert(committed.end(), tokens.begin(), tokens.begin() + n);
}

void session::commit_path(const std::vector<int32_t> & tokens, const std::vector<uint32_t> & path) {
    const uint32_t n_past = kv.used();
    std::vector<uint32_t> cells;
    for (uint32_t idx : path) {
        cells.push_back(n_past + idx);
        committed.push_back(tokens[idx]);
    }
    kv.keep(n_past, cells);
}

} // namespace specdec
