// A session: the mutable state over an immutable model (KV cache, scheduler, compute
// threads, the committed token sequence). One evaluation at a time.
#pragma once

#include "graph/llama_graph.h"
#include "kv/kv_cache.h"
#include "model/model.h"

#include "ggml-backend.h"

#include <atomic>
#include <memory>
#include <vector>

namespace specdec {

struct session_params {
    uint32_t n_ctx     = 0;  // 0: the model's training context
    uint32_t n_batch   = 512;
    int      n_threads = 1;
    // Attention of decoding and verification: -1 the model's choice (specdec's kernel with its
    // CPU kernels), 1 specdec's kernel on the CPU whatever the model (draft-model sessions, whose
    // numerics do not touch the output), 0 ggml's.
    int      own_attention = -1;
    // A draft session: the model's matrices run as Q8_0 copies on specdec's kernels (model::prepare_draft_weights).
    bool     draft_weights = false;
    // Another flag that aborts this session as its own does (a draft session: its drafter's, which
    // the generation's abort sets); it must outlive the session. Also polled while the Q8_0 copies
    // of a draft model are made, in the constructor.
    const std::atomic<bool> * abort_also = nullptr;
};

// What a session holds, in bytes (session::memory()).
struct session_memory {
    size_t kv      = 0;  // the KV cache
    size_t compute = 0;  // the scheduler's compute buffers (sized from the worst-case graphs)
    size_t graph   = 0;  // graph metadata: tensor and graph objects of the graphs built
};

struct eval_timing {
    double   ms_total   = 0.0;
    uint64_t n_evals    = 0;
    uint64_t n_tokens   = 0;
};

class session {
public:
    session(std::shared_ptr<const model> m, const session_params & params);
    ~session();
    session(const session &) = delete;
    session & operator=(const session &) = delete;

    const model & mdl() const { return *m; }
    const std::shared_ptr<const model> & model_ptr() const { return m; }
    uint32_t n_ctx() const { return kv.size(); }
    uint32_t n_batch() const { return par.n_batch; }
    uint32_t n_vocab() const { return m->hp.n_vocab; }
    int n_threads() const { return par.n_threads; }
    void set_threads(int n);

    // The tokens whose K/V the cache holds, in order.
    const std::vector<int32_t> & tokens() const { return committed; }

    // Cells the cache holds: the tokens and the latent cells among them.
    uint32_t n_cells() const { return kv.used(); }

    // Drop the tokens at or after index n, with every latent span that follows token n - 1 (the spans
    // among the kept tokens stay). n >= tokens().size() changes nothing.
    void truncate(uint32_t n);

    // Latent cells (the KV-cache coprocessor, coproc/coprocessor.h). A latent span is a run of cells
    // whose input was a given vector (entering at layer 0) rather than a token embedding. Latents take
    // no position of their own: a token's position is its index in tokens() whatever cells precede
    // it, and every latent of a span sits at the position of the token after it (`before`, the number
    // of tokens before the span), told apart from the others by the causal mask only. So the tokens
    // after a span see the tokens before it at the distances a plain cache gives, and a span hidden by
    // the mask would change nothing. Latents are not tokens: tokens() never shows them.
    struct latent_span {
        uint32_t before = 0;
        uint32_t n      = 0;
    };
    const std::vector<latent_span> & latent_spans() const { return spans; }
    uint32_t n_latent_cells() const;
    // Evaluates n rows entering as vectors at layer 0 (`vecs`: [n][n_embd]) after the cells held, all at
    // position tokens().size(), causal among themselves, with the adapters `lora` (or none), and returns every row's last-layer
    // output (before the output norm) in `final_hidden` ([n][n_embd]). Their K/V go to the cells after
    // the held ones, uncommitted (a later evaluation overwrites them, or commit_latents keeps them).
    void eval_vectors(const float * vecs, uint32_t n, const lora_adapter * lora, std::vector<float> & final_hidden);
    // Commits the n cells of the last eval_vectors as a latent span after the last token.
    void commit_latents(uint32_t n);
    // The K and V rows of cells [0, n) of layer il, as f32: [n][n_embd_k_gqa] and [n][n_embd_v_gqa]
    // (training reads the frozen decoder's cache).
    void read_cells(uint32_t il, uint32_t n, std::vector<float> & k, std::vector<float> & v) const;
    // The logits of the last committed row, kept for prefix reuse when they follow latent cells
    // (coproc::augment re-evaluates the last token after the latents); cleared by any evaluation.
    void keep_tail_logits(const std::vector<float> & logits) { tail_logits = logits; }

    // Prefix reuse that changes no bit. A prompt prefill evaluates chunks of n_batch tokens from
    // cell 0 with batched kernels, whose rows differ in the last bits from one-token decoding (and
    // from other chunkings). The session remembers how many leading cells hold exactly what a fresh
    // prefill of those tokens computes, and the logits of its last row. For `prompt`, returns how
    // many cells to keep so that prefilling the rest in chunks of n_batch gives a fresh prefill's
    // bits: the whole prompt when the cache holds its fresh prefill (then `logits` gets that
    // prefill's last row), else the held fresh prefill's full chunks that the prompt shares.
    // `rows_wanted`: the prompt's last chunk is evaluated in any case (a drafter reads its hidden-state
    // rows, set_taps), with the same bits.
    //
    // With latent spans: when `keep_latents` and the prompt starts with every token held up to (and
    // including) the one before the last span, the cache is kept up to the common tokens (at most
    // prompt.size() - 1; the whole prompt when it equals the held tokens and their last logits are kept),
    // latents included: the prompt goes on after the augmented cache. Otherwise the reuse stops before
    // the first span (a fresh prefill's chunks only), so truncate() drops the latents.
    uint32_t fresh_prefix(const std::vector<int32_t> & prompt, std::vector<float> & logits, bool rows_wanted = false,
                          bool keep_latents = true) const;

    // Evaluates `tokens` as a tree hanging off the committed sequence: parents[i] is the
    // index of token i's parent in this batch, or -1 for a child of the last committed
    // token. Token i gets position n_past + depth(i) and attends to the committed cells,
    // its ancestors and itself. Writes logits for `outputs` (indices into tokens) to
    // `logits` ([outputs.size()][n_vocab]). Nothing is committed: call commit_chain or
    // commit_path afterwards. At most n_batch tokens.
    void eval_tree(const std::vector<int32_t> & tokens, const std::vector<int32_t> & parents,
                   const std::vector<uint32_t> & outputs, std::vector<float> & logits);

    // Evaluates a chain and commits it; logits of the last token (or of all tokens when
    // all_logits) go to `logits`. `invariant`: every token's logits equal those of a
    // one-token decode (batches of at most MAX_INVARIANT_BATCH); otherwise batches of
    // n_batch with llama.cpp's batched attention kernels (prompt prefill).
    void eval_chain(const std::vector<int32_t> & tokens, bool all_logits, bool invariant, std::vector<float> & logits);

    // Commits the first n tokens of the last eval_tree batch, which must be a chain prefix.
    void commit_chain(const std::vector<int32_t> & tokens, uint32_t n);
    // Commits the batch tokens at `path` (indices of the last eval_tree batch, root first).
    void commit_path(const std::vector<int32_t> & tokens, const std::vector<uint32_t> & path);

    // Times one-token decoding at each thread count in `candidates` (the cache must be
    // empty) and switches to the fastest; fewer threads win ties within 5 %.
    int calibrate_threads(const std::vector<int> & candidates, std::vector<double> & ms_per_token);

    // Hidden-state taps (graph_shape::taps): every later evaluation also copies the tapped
    // layers' rows of its outputs to hidden(): [n_outputs][taps.size()][n_embd], or with
    // `all_rows` every evaluated row's: [n_tokens][taps.size()][n_embd] (layers < n_layer only).
    // Layers in [0, n_layer]; an empty list turns them off. The logits do not change by a bit.
    void set_taps(const std::vector<uint32_t> & layers, bool all_rows = false);
    const std::vector<uint32_t> & taps() const { return taps_; }
    bool taps_all_rows() const { return taps_all_; }
    // The tapped rows of the last evaluation (of eval_chain: its last chunk's outputs).
    const std::vector<float> & hidden() const { return hidden_; }

    // Hidden Transfer's pseudo rows (arXiv 2404.12022): while set, every eval_tree appends to each of
    // its rows r the k = maps->ne[2] rows of r's next positions, which enter at `layer` as maps of r's
    // hidden state there (graph_shape::entry_maps), attend the context, r's ancestors, r and the pseudo
    // rows of r before them, and are decoded by the target's own output head: pseudo_logits() then holds
    // [rows][k][n_vocab], row r's pseudo row j predicting the token j + 1 places after r's own
    // prediction. The rows' own logits do not change by a bit; the pseudo rows' cells are dropped at
    // the commit. Skipped (pseudo_logits() empty) when they would not fit the batch or the context.
    // `maps` (f32 [n_embd, n_embd, k], in a host buffer) must outlive the setting; null turns it off.
    void set_transfer(const ggml_tensor * maps, uint32_t layer);
    const std::vector<float> & pseudo_logits() const { return pseudo_logits_; }

    // The compute threads spin between graphs; pause them while the session is idle.
    void pause_threads();

    // Abort: checked between steps and inside graph computation.
    void request_abort() { abort_flag.store(true); }
    void clear_abort() { abort_flag.store(false); }
    bool abort_requested() const {
        return abort_flag.load(std::memory_order_relaxed) || (par.abort_also && par.abort_also->load(std::memory_order_relaxed));
    }

    session_memory memory() const;

    eval_timing timing;

private:
    // What an evaluation of vectors adds (eval_vectors): every row enters at layer 0, with adapters,
    // the last layer's rows copied out.
    struct vector_rows {
        const float *        vecs = nullptr;  // [n_tokens][n_embd]
        const lora_adapter * lora = nullptr;
        std::vector<float> * final_hidden = nullptr;
    };
    // `pseudo`: the number of trailing rows of `tokens` that are Hidden Transfer pseudo rows (set_transfer),
    // the maps reading the rows before them; `vr`: rows given as vectors (eval_vectors).
    void compute(const std::vector<int32_t> & tokens, const std::vector<int32_t> & parents,
                 const std::vector<uint32_t> & outputs, bool invariant, std::vector<float> & logits, uint32_t pseudo = 0,
                 const vector_rows * vr = nullptr);
    void make_threadpool(int n);

    std::shared_ptr<const model> m;
    session_params par;
    kv_cache kv;
    std::vector<int32_t> committed;
    uint32_t             fresh_n = 0;       // cells [0, fresh_n) hold a fresh prefill of committed[0, fresh_n)
    std::vector<float>   fresh_logits;      // the logits of its last row (empty: not kept)
    std::vector<latent_span> spans;         // the latent spans, in order
    std::vector<float>   tail_logits;       // the last row's logits after an augmentation (empty: not kept)

    ggml_backend_t backend_cpu = nullptr;
    ggml_threadpool * threadpool = nullptr;  // persistent compute threads of this session
    std::vector<ggml_backend_t> backend_devs;  // the model's devices (GPU, RPC servers); empty on the CPU
    ggml_backend_sched_t sched = nullptr;
    std::vector<uint8_t> graph_buf;

    // The one-token decode graph is built once per KV length and reused while nothing else
    // was allocated in between (as llama.cpp reuses graphs): no per-token rebuild. It lives in
    // graph_buf like every other graph: any other graph drops it first.
    struct decode_graph {
        ggml_context *       ctx = nullptr;
        ggml_cgraph *        gf = nullptr;
        graph_inputs         in;
        uint32_t             n_kv = 0;
    } decode;
    void drop_decode_graph();
    std::atomic<bool> abort_flag { false };
    bool own_attn    = false;  // decoding and verification on specdec's attention kernel
    bool gather_rows = false;  // ggml's CPU attention: verification rows may be gathered (plan_invariant_rows)

    const ggml_tensor *   transfer_maps_ = nullptr;
    uint32_t              transfer_layer_ = 0;
    std::vector<float>    pseudo_logits_;

    std::vector<uint32_t> taps_;
    bool                  taps_all_ = false;
    std::vector<float>    hidden_;

    // scratch
    std::vector<int32_t> depth;
    std::vector<ggml_fp16_t> mask;
};

} // namespace specdec
