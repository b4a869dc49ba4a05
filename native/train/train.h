// The training subsystem: drafters learnt against a frozen target on ggml-opt.
//
//   corpus (token sequences) -> the frozen target's hidden states and soft labels
//   (target_features) -> a training graph of the drafter's trainable tensors -> ggml-opt
//   (AdamW, the dataset, batches) -> a GGUF file written through a temporary file.
//
// Labels are the target's own distributions (distillation), never the corpus's next token. A
// validation split is held out and evaluated before training, every few chunks and at the end.
#pragma once

#include "model/model.h"
#include "runtime/session.h"

#include "ggml-backend.h"
#include "ggml-opt.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace specdec {

struct train_progress {
    const char * phase = "train";  // "features", "train", "validate", "write"
    uint64_t tokens        = 0;    // corpus tokens trained on so far
    uint64_t tokens_budget = 0;    // 0: no token budget
    double   elapsed_s     = 0.0;
    double   budget_s      = 0.0;  // 0: no time budget
    double   tokens_per_s  = 0.0;
    double   train_loss    = -1.0; // mean over the last chunk (-1: none yet)
    double   val_loss      = -1.0; // the last validation (-1: none yet)
    double   val_accuracy  = -1.0; // top-1 agreement with the target on the validation split
};

struct train_options {
    std::string kind = "medusa";  // "medusa", "eagle3", "chimera", "hidden-transfer", "lud" or "coprocessor"
    uint32_t n_heads   = 4;     // medusa: heads
    uint32_t ttt_steps = 3;     // eagle3: steps of the training-time test (draft depths trained)
    float    reg_weight = 1.0f; // chimera: weight of the hidden-state regression next to the distillation
    uint32_t ht_layer  = 0;     // hidden-transfer: the transfer layer (0: n_layer / 2)
    uint32_t ht_k      = 3;     // hidden-transfer: pseudo rows (positions drafted per pass)
    uint32_t lud_k     = 4;     // lud: placeholders appended (parallel positions trained)
    float    lud_alpha = 0.8f;  // lud: confidence that marks a lexical unit
    uint32_t lud_groups = 24;   // lud: placeholder groups per window
    uint32_t coproc_latents = 16;  // coprocessor: N_L latent embeddings
    uint32_t coproc_ahead   = 16;  // coprocessor: N_A tokens after each augmentation point whose loss trains it
    uint32_t coproc_rank    = 8;   // coprocessor: rank of the adapters
    uint32_t coproc_points  = 8;   // coprocessor: augmentation points per window (one pass, masked)
    uint32_t seq_len   = 256;   // tokens per window the target reads
    uint32_t batch     = 32;    // datapoints per optimizer step (medusa: positions; eagle3: windows)
    uint32_t chunk     = 1024;  // datapoints per dataset (features computed together)
    uint32_t val_max   = 1024;  // validation datapoints at most
    float    lr        = 1e-3f; // AdamW learning rate (decays linearly to 10 % over the budget)
    uint64_t seed      = 42;    // the order training windows are drawn in
    double   max_seconds = 0;   // 0: none
    uint64_t max_tokens  = 0;   // 0: none (one of the two must be set)
    int      n_threads = 1;
    std::string out;
    std::vector<std::vector<int32_t>> train_docs, val_docs;
    std::function<void(const train_progress &)> progress;
    const std::atomic<bool> * abort = nullptr;
};

struct train_report {
    uint64_t tokens = 0;         // corpus tokens trained on (datapoints)
    uint64_t feature_tokens = 0; // tokens the target evaluated
    uint64_t steps = 0;          // optimizer steps
    double   seconds = 0.0;
    double   val_loss_before = 0.0, val_loss_after = 0.0;
    double   val_accuracy_before = 0.0, val_accuracy_after = 0.0;
    // per head (medusa) or per draft depth (eagle3: training-time-test step), top-1 agreement with the target
    std::vector<double> head_accuracy_before, head_accuracy_after;
    // expected tokens per step of a greedy chain (medusa: measured on the held-out rows; eagle3:
    // 1 + a0 + a0 a1 + ..., the depths taken as independent)
    double   tau_before = 0.0, tau_after = 0.0;
    uint64_t val_datapoints = 0;
    // coprocessor: the held-out ahead tokens' loss without augmentation (the frozen decoder alone) and
    // the negative control's (latents in the cache but hidden from the ahead tokens)
    double   val_loss_base = 0.0, val_loss_control = 0.0;
    std::string out;
};

// The frozen target's hidden states and logits over token windows (prefill with all rows out).
class target_features {
public:
    target_features(std::shared_ptr<const model> target, uint32_t seq_len, int n_threads, const std::vector<uint32_t> & taps);
    // Evaluates `window` (at most seq_len tokens) from an empty cache:
    // hidden [n][taps][n_embd], logits [n][n_vocab].
    void run(const std::vector<int32_t> & window, std::vector<float> & hidden, std::vector<float> & logits);
    session & sess() { return *s; }

private:
    std::unique_ptr<session> s;
};

// Windows of the corpus for the target to read. Training windows are drawn at random (seeded):
// a document with probability proportional to its length, then an offset in it, so that the
// positions of one chunk come from many documents (consecutive windows of one file give
// correlated batches). Sequential windows run through the documents in order, once, overlapping
// by min_len - 1 tokens.
class corpus_windows {
public:
    corpus_windows(const std::vector<std::vector<int32_t>> & docs, uint32_t max_len, uint32_t min_len, bool random, uint64_t seed);
    // The next window of min_len to max_len tokens; false when there is none (left).
    bool next(std::vector<int32_t> & w);

private:
    const std::vector<std::vector<int32_t>> & docs;
    uint32_t L, min_len;
    bool random;
    std::mt19937_64 rng;
    std::vector<uint64_t> cum;
    uint64_t total = 0;
    size_t doc = 0, off = 0;
};

// What every kind of drafter's training shares: the CPU backend (threads, abort), the lifetimes of
// the ggml objects, ggml-opt over a static graph with AdamW and a linear learning-rate decay, the
// budgets, progress reports, and the step and evaluation loops.
class train_run {
public:
    explicit train_run(const train_options & o);
    ~train_run();
    train_run(const train_run &) = delete;
    train_run & operator=(const train_run &) = delete;

    double seconds() const;
    void   set_lr(float lr_) { lr.lr = lr_; }   // the base learning rate from the next step on
    void   set_threads(int n);
    bool   aborted() const { return opt_.abort && opt_.abort->load(); }
    void   check_abort() const;           // throws ERR_ABORTED
    bool   budget_left() const;           // the time and token budgets
    void   report(const char * phase);    // progress to the caller

    // The weights' context (no_alloc): trainable tensors (ggml_set_param), frozen ones and the
    // graph's inputs, allocated together by alloc_weights().
    ggml_context * weights() { return ctx_p; }
    void           alloc_weights();      // zeroed
    // The context the training graph is built in.
    ggml_context * compute(size_t n_tensors);
    // ggml-opt over the graph inputs -> outputs, cross-entropy against the dataset's labels; or, with
    // GGML_OPT_LOSS_TYPE_MEAN, outputs a loss the graph builds itself (a mixed loss: one scalar; its
    // labels are part of the inputs, and the datasets have none).
    void init_opt(ggml_tensor * inputs, ggml_tensor * outputs, ggml_opt_loss_type loss = GGML_OPT_LOSS_TYPE_CROSS_ENTROPY);
    // ggml-opt over a graph built anew for every step and evaluation (graphs larger than ggml-opt's
    // static graphs hold, GGML_DEFAULT_GRAPH_SIZE nodes with the backward pass): `build` makes the
    // forward graph of at most max_nodes nodes in the context it is given and names its inputs and
    // outputs; step_with / eval_with then build before they fill.
    struct built_graph {
        ggml_cgraph * gf = nullptr;
        ggml_tensor * inputs = nullptr;
        ggml_tensor * outputs = nullptr;
    };
    void init_opt_rebuilt(std::function<built_graph(ggml_context * ctx, size_t max_nodes)> build, size_t max_nodes);
    // A dataset of n datapoints (data and labels f32), owned by this run.
    ggml_opt_dataset_t dataset(int64_t ne_data, int64_t ne_label, int64_t n);

    // One AdamW step on batch ib of ds; `positions` corpus positions count towards the budget.
    void step(ggml_opt_dataset_t ds, int64_t ib, uint64_t positions);
    // One AdamW step on inputs and labels the caller writes into the graph's tensors (no dataset).
    void step_with(const std::function<void(ggml_tensor * inputs, ggml_tensor * labels)> & fill, uint64_t positions);
    // A forward pass (no step) on inputs and labels the caller writes: the loss (ggml's mean over the
    // output rows) and each row's prediction (argmax) in `pred` when given.
    void eval_with(const std::function<void(ggml_tensor * inputs, ggml_tensor * labels)> & fill, double & loss,
                   std::vector<int32_t> * pred = nullptr);
    // Trains on the first n datapoints of ds (copied in from data and labels, shuffled), batch by
    // batch while the budget lasts, reporting the training loss every `report_every` batches.
    void train_chunk(ggml_opt_dataset_t ds, const float * data, const float * labels, int64_t n, int64_t batch,
                     uint64_t positions_per_batch, int64_t report_every);
    // After the n-th chunk of training: every `every` chunks, while the budget lasts, `validate`
    // (into the progress's validation loss and accuracy), reported as the "validate" phase.
    void validate_every(int64_t n_chunks, int64_t every, const std::function<void(double & loss, double & accuracy)> & validate);
    // The mean training loss since reset_train_loss().
    double train_loss();
    void   reset_train_loss();
    // Forward passes over the first nb batches of ds: the loss, the top-1 accuracy, and the
    // prediction of every output row (in batch order) in `pred` when given.
    void evaluate(ggml_opt_dataset_t ds, int64_t nb, double & loss, double & acc, std::vector<int32_t> * pred = nullptr);

    ggml_opt_context_t opt() const { return opt_ctx; }
    ggml_backend_t     backend() const { return cpu; }
    train_report   rep;
    train_progress pr;

private:
    const train_options & opt_;
    std::chrono::steady_clock::time_point t0;
    struct lr_state { float lr = 1e-3f; float frac = 0.0f; } lr;
    static ggml_opt_optimizer_params lr_pars(void * ud);
    ggml_backend_t        cpu = nullptr;
    ggml_backend_sched_t  sched = nullptr;
    ggml_context *        ctx_p = nullptr, * ctx_c = nullptr;
    ggml_backend_buffer_t buf = nullptr;
    ggml_opt_context_t    opt_ctx = nullptr;
    std::vector<ggml_opt_dataset_t> datasets;
    ggml_opt_result_t     res = nullptr, res_eval = nullptr;
    std::function<built_graph(ggml_context *, size_t)> rebuild;  // set: graphs built per step
    size_t                rebuild_nodes = 0;
    ggml_context *        ctx_step = nullptr;  // the context of the graph built for this step
    void                  alloc_step(bool backward);
    void                  end_step();
};

// Softmax of `n` logits into `out` (the distillation labels).
void softmax_row(const float * logits, int64_t n, float * out);

// Trains a drafter of options.kind ("medusa") and writes it to options.out. Throws
// ERR_ABORTED (nothing written) when options.abort is set, ERR_INVALID_OPTION for a corpus too
// short to train on or a bad output path.
train_report train_drafter(std::shared_ptr<const model> target, const train_options & options);

} // namespace specdec
