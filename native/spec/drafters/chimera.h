// Chimera drafting (arXiv 2402.15758; heads/chimera_heads.h for the network): the draft network reads,
// for each position P, the target's hidden state at row P (the input of its last layer, tapped from
// the target's own prefill and verification passes, every row) and the trigram of tokens
// P - 1 .. P + 1; in a tree, a node's parent's layer output stands in for the hidden state. The
// caching, the commits and the EAGLE-2 tree are hidden_state_drafter's.
#pragma once

#include "heads/chimera_heads.h"
#include "spec/drafters/hidden_state_drafter.h"

#include <memory>

namespace specdec {

class chimera_drafter : public hidden_state_drafter {
public:
    chimera_drafter(std::shared_ptr<const chimera_heads> heads, const session & target, const dynamic_tree_options & options = {});

    // The target tap this drafter reads (every evaluated row).
    static std::vector<uint32_t> tap_layers(const chimera_heads & heads) { return { heads.target_layer }; }

private:
    std::unique_ptr<draft_layer_runner> make_runner() const override;

    std::shared_ptr<const chimera_heads> hd;
    const session &                      tgt;
};

} // namespace specdec
