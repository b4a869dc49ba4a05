// EAGLE-3 drafting with an EAGLE-2 dynamic tree (arXiv 2503.01840, 2406.16858): the draft layer
// (heads/eagle3_runner.h) keeps a cache of the sequence, each committed position P read as the pair
// (token P+1, fc(the target's taps at row P)), the taps coming from the target's own prefill and
// verification passes. A proposal first commits the pairs the last verification made known, then
// grows a tree level by level: the best `width` nodes of a level (by the product of their draft
// probabilities along the path) are evaluated together, each with its parent's pre-norm output
// standing in for the target's features, and their top-k tokens become the next level's
// candidates. The `budget` best nodes overall form the proposal (a child never scores above its
// parent, so they are a tree). Nodes are deterministic proposals (q one-hot): the verifier stays
// exact at any temperature.
#pragma once

#include "heads/eagle3_runner.h"
#include "runtime/session.h"
#include "spec/drafter.h"

#include <memory>

namespace specdec {

struct eagle_options {
    uint32_t top_k = 6;      // candidates per expanded node
    uint32_t width = 3;      // nodes expanded per level
    uint32_t depth = 5;      // levels at most
};

class eagle_drafter : public drafter {
public:
    eagle_drafter(std::shared_ptr<const eagle3_heads> heads, const session & target, const eagle_options & options = {});

    // The target taps this drafter reads (its heads' three layers, every evaluated row).
    static std::vector<uint32_t> tap_layers(const eagle3_heads & heads);

    void propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) override;
    void prepare(const std::vector<int32_t> & history) override;
    void observe(const verify_result & r) override;
    bool computes() const override { return true; }
    void abort() override { if (runner) runner->request_abort(); }
    void pause() override { if (runner) runner->pause_threads(); }

private:
    // The target's features of row `row` of its last evaluation, for position `p`.
    void take_features(uint32_t row, int32_t p);
    void add_pending(const float * f, int32_t p);

    static constexpr size_t RECENT = 64;  // positions whose features are kept after they are committed

    std::shared_ptr<const eagle3_heads> hd;
    const session &                     target;
    eagle_options                       opt;
    std::unique_ptr<eagle3_runner>      runner;   // made on first use, on the worker thread
    size_t                              feat_dim = 0;
    // features waiting to be committed: positions [pending_pos, pending_pos + pending.size() / feat_dim)
    std::vector<float>                  pending;
    int32_t                             pending_pos = -1;
    uint32_t                            last_n = 0;      // the history's length at the last proposal
    std::vector<int32_t>                cell_pos;        // the position of each committed cell of the runner
    std::vector<std::pair<int32_t, std::vector<float>>> recent;  // features of the last committed positions
    std::vector<float>                  h, logits;
};

} // namespace specdec
