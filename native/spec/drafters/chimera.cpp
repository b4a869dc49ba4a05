#include "spec/drafters/chimera.h"

#include "heads/chimera_runner.h"

namespace specdec {

chimera_drafter::chimera_drafter(std::shared_ptr<const chimera_heads> heads, const session & target, const dynamic_tree_options & options)
    : hidden_state_drafter(target, tap_layers(*heads), heads->n_embd, heads->n_embd, heads->n_vocab, options),
      hd(std::move(heads)), tgt(target) {
    hd->check_target(tgt.mdl(), "the Chimera heads");
}

std::unique_ptr<draft_layer_runner> chimera_drafter::make_runner() const {
    return std::make_unique<chimera_runner>(hd, tgt.model_ptr(), tgt.n_threads(), tgt.n_ctx() + 128);
}

} // namespace specdec
