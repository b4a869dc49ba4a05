// EAGLE-3 drafting with an EAGLE-2 dynamic tree (arXiv 2503.01840, 2406.16858): the draft layer
// (heads/eagle3_runner.h) reads, for each position P, the pair (token P + 1, fc(the target's taps
// at row P)); the caching, the commits and the tree are hidden_state_drafter's.
#pragma once

#include "heads/eagle3_heads.h"
#include "spec/drafters/hidden_state_drafter.h"

#include <memory>

namespace specdec {

class eagle_drafter : public hidden_state_drafter {
public:
    eagle_drafter(std::shared_ptr<const eagle3_heads> heads, const session & target, const dynamic_tree_options & options = {});

    // The target taps this drafter reads (its heads' three layers, every evaluated row).
    static std::vector<uint32_t> tap_layers(const eagle3_heads & heads);

private:
    std::unique_ptr<draft_layer_runner> make_runner() const override;

    std::shared_ptr<const eagle3_heads> hd;
    const session &                     tgt;
};

} // namespace specdec
