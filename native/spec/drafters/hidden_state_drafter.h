// What EAGLE-3 and Chimera drafting share (spec/drafters/eagle.h, chimera.h): a one-layer draft
// network (heads/draft_layer_runner.h) keeps a cache of the sequence, element P reading the target's
// features at row P (tapped from the target's own prefill and verification passes) and the tokens
// around P. A proposal first commits the elements the last verification made known, then grows a
// tree level by level as EAGLE-2 does (arXiv 2406.16858): the best `width` nodes of a level (by the
// product of their draft probabilities along the path) are evaluated together, each with its
// parent's output standing in for the target's features, and their top-k tokens become the next
// level's candidates. The `budget` best nodes overall form the proposal (a child never scores above
// its parent, so they are a tree). Nodes are deterministic proposals (q one-hot): the verifier stays
// exact at any temperature.
#pragma once

#include "heads/draft_layer_runner.h"
#include "runtime/session.h"
#include "spec/drafter.h"

#include <memory>
#include <utility>
#include <vector>

namespace specdec {

struct dynamic_tree_options {
    uint32_t top_k = 6;      // candidates per expanded node
    uint32_t width = 3;      // nodes expanded per level
    uint32_t depth = 5;      // levels at most
};

class hidden_state_drafter : public drafter {
public:
    void propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) override;
    void prepare(const std::vector<int32_t> & history) override;
    void observe(const verify_result & r) override;
    bool computes() const override { return true; }
    void abort() override { if (runner) runner->request_abort(); }
    void pause() override { if (runner) runner->pause_threads(); }

protected:
    // `taps`: the target layers whose inputs it reads, every evaluated row; a row of features is
    // feat_dim floats; the network's outputs are out_dim floats, its logits n_vocab per row.
    hidden_state_drafter(const session & target, std::vector<uint32_t> taps, size_t feat_dim, size_t out_dim,
                         uint32_t n_vocab, const dynamic_tree_options & options);

    // The network, made on first use (on the worker thread).
    virtual std::unique_ptr<draft_layer_runner> make_runner() const = 0;

private:
    // The target's features of row `row` of its last evaluation, for position `p`.
    void take_features(uint32_t row, int32_t p);
    void add_pending(const float * f, int32_t p);

    static constexpr size_t RECENT = 64;  // positions whose features are kept after they are committed

    const session &                     target;
    std::vector<uint32_t>               taps;
    size_t                              feat_dim, out_dim;
    uint32_t                            n_vocab;
    dynamic_tree_options                opt;
    std::unique_ptr<draft_layer_runner> runner;
    // features waiting to be committed: positions [pending_pos, pending_pos + pending.size() / feat_dim)
    std::vector<float>                  pending;
    int32_t                             pending_pos = -1;
    uint32_t                            last_n = 0;   // the history's length at the last proposal
    std::vector<int32_t>                cell_pos;     // the position of each committed cell of the runner
    std::vector<std::pair<int32_t, std::vector<float>>> recent;  // features of the last committed positions
    std::vector<float>                  out_rows, logits;
};

} // namespace specdec
