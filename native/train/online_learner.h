// Online Speculative Decoding (arXiv 2310.07177) for the draft-model method: the draft model keeps
// learning from the target while it serves.
//
//   verification -> the positions where the draft was wrong, with the target's distribution there
//   (verification computed it already) -> a bounded buffer of windows -> now and then a small
//   distillation step (soft cross-entropy to the target's distribution at those positions) on an
//   F32 copy of the draft model (ggml-opt, AdamW; train/llama_trainable.h) -> the copy's Q8_0
//   draft weights refreshed in place -> the next drafts.
//
// The target and its verification are untouched: the output stays exactly the autoregressive
// output (greedy) or the target's distribution (sampling). The learner belongs to one session and
// lives across its generations; the user's draft model is never written. Drafting continues on
// the draft session's cache after an update (its older rows were computed by the weights before
// the update: they only shape the drafts).
#pragma once

#include "model/model.h"
#include "spec/drafter.h"
#include "train/llama_trainable.h"
#include "train/train.h"

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <vector>

namespace specdec {

struct online_options {
    float    lr     = 1e-4f;  // AdamW learning rate
    uint32_t every  = 16;     // wrong positions collected between two updates
    uint32_t steps  = 1;      // optimizer steps per update (the newest window first, then windows of the buffer)
    uint32_t window = 128;    // tokens per training window (fixed when the learner is made)
    uint32_t buffer = 64;     // windows kept; the oldest goes first
    uint32_t top_k  = 32;     // the target's distribution is kept as its top-k probabilities
    bool     all_positions = true;  // label the accepted positions of a verification too, not only the wrong one
    int      n_threads = 1;
};

struct online_stats {
    uint64_t mistakes = 0;   // wrong draft positions seen
    uint64_t updates  = 0;   // updates made
    uint64_t steps    = 0;   // optimizer steps
    double   last_loss = -1; // training loss of the last step (-1: none yet)
    double   train_ms = 0;   // time spent training
    uint64_t windows  = 0;   // windows in the buffer now
};

class online_learner {
public:
    online_learner(std::shared_ptr<const model> source, const online_options & o);
    ~online_learner();

    // The user's draft model this learner copies (a generation reuses the learner for the same model).
    const std::shared_ptr<const model> & source() const { return src; }
    // Options that can change between generations (lr, every, steps, buffer, top_k, threads).
    void set_options(const online_options & o);
    const online_options & options() const { return opt; }

    // The model the drafter runs: the F32 copy (made on first use, on the calling worker thread).
    std::shared_ptr<const model> drafting_model();

    // A new generation: clears a previous abort.
    void begin() { abort_flag.store(false); }
    // From another thread: stops a running update (the step is dropped, the weights stay finite).
    void abort() { abort_flag.store(true); }

    // Before each proposal: `history` is the sequence so far. When enough wrong positions were
    // collected, forms a window and trains (throws ERR_ABORTED when aborted).
    void before_propose(const std::vector<int32_t> & history);
    // After each verification: records the position where the draft was wrong, if any.
    void observe(const verify_result & r);

    // The learnt weights (F32, in a fixed order, after a header naming the model's shape) and back.
    std::vector<uint8_t> save();
    void load(const uint8_t * data, size_t n);  // throws ERR_INVALID_OPTION for another model or a corrupt blob

    online_stats stats() const;

    // The trainable graph's logits for `tokens` (at most one window), [n][n_vocab]: a check that the
    // differentiable forward pass computes what the model computes (test hook).
    std::vector<float> forward(const std::vector<int32_t> & tokens);

private:
    struct label {
        uint32_t row;                   // the window row whose next token it predicts
        std::vector<token_prob> probs;  // the target's top-k, renormalized
    };
    struct window_ex {
        std::vector<int32_t> tokens;
        std::vector<label>   labels;
    };
    struct pending_label {
        uint64_t pos;                   // position in the sequence whose next token it predicts
        std::vector<token_prob> probs;
    };

    void init();        // the copy, the trainable weights, the graph, the optimizer
    void update();      // `steps` optimizer steps
    void extend(const verify_result & r);
    void flush(const std::vector<int32_t> & tokens);  // the pending labels on `tokens` -> a window in the buffer
    void train_on(const window_ex & w);

    std::shared_ptr<const model> src;
    online_options opt;
    train_options  topt;       // what train_run reads (threads, abort, lr)
    std::atomic<bool> abort_flag { false };

    std::shared_ptr<model> clone;
    std::unique_ptr<train_run> run;
    trainable_llama w;
    ggml_tensor * in_tokens = nullptr, * in_pos = nullptr, * in_mask = nullptr, * in_rows = nullptr;
    std::vector<uint8_t> to_load;  // a loaded blob, applied at init

    std::vector<int32_t> seq;      // the sequence at the last proposal
    std::vector<pending_label> pending;
    uint32_t fresh = 0;            // wrong positions since the last update
    std::deque<window_ex> buf;
    std::mt19937_64 rng { 0x05D05Dull };
    mutable std::mutex stats_mutex;
    online_stats st;
};

} // namespace specdec
