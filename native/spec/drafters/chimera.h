// Chimera drafting (arXiv 2402.15758; heads/chimera_heads.h for the network): the draft network
// keeps a cache of the sequence, element P reading the target's hidden state at row P (the input of
// its last layer, tapped from the target's own prefill and verification passes, every row) and the
// trigram of tokens P - 1 .. P + 1. A proposal first commits the elements the last verification made
// known, then grows a tree level by level as EAGLE-2 does: the best `width` nodes of a level (by the
// product of their draft probabilities along the path) are evaluated together, each with its
// parent's layer output standing in for the target's hidden state and the trigram ending with its
// own token, and their top-k tokens become the next level's candidates. The `budget` best nodes form
// the proposal. Nodes are deterministic proposals (q one-hot): verification stays exact at any
// temperature.
#pragma once

#include "heads/chimera_runner.h"
#include "runtime/session.h"
#include "spec/drafter.h"

#include <memory>

namespace specdec {

struct chimera_options {
    uint32_t top_k = 6;      // candidates per expanded node
    uint32_t width = 3;      // nodes expanded per level
    uint32_t depth = 5;      // levels at most
};

class chimera_drafter : public drafter {
public:
    chimera_drafter(std::shared_ptr<const chimera_heads> heads, const session & target, const chimera_options & options = {});

    // The target tap this drafter reads (every evaluated row).
    static std::vector<uint32_t> tap_layers(const chimera_heads & heads) { return { heads.target_layer }; }

    void propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) override;
    void prepare(const std::vector<int32_t> & history) override;
    void observe(const verify_result & r) override;
    bool computes() const override { return true; }
    void abort() override { if (runner) runner->request_abort(); }
    void pause() override { if (runner) runner->pause_threads(); }

private:
    void take_features(uint32_t row, int32_t p);
    void add_pending(const float * f, int32_t p);

    static constexpr size_t RECENT = 64;

    std::shared_ptr<const chimera_heads> hd;
    const session &                      target;
    chimera_options                      opt;
    std::unique_ptr<chimera_runner>      runner;   // made on first use, on the worker thread
    size_t                               feat_dim = 0;
    // hidden states waiting to be committed: positions [pending_pos, pending_pos + pending.size() / feat_dim)
    std::vector<float>                   pending;
    int32_t                              pending_pos = -1;
    uint32_t                             last_n = 0;
    std::vector<int32_t>                 cell_pos;  // the position of each committed element of the runner
    std::vector<std::pair<int32_t, std::vector<float>>> recent;
    std::vector<float>                   o, logits;
};

} // namespace specdec
