#include "spec/drafters/eagle.h"

#include "heads/eagle3_runner.h"

namespace specdec {

eagle_drafter::eagle_drafter(std::shared_ptr<const eagle3_heads> heads, const session & target, const dynamic_tree_options & options)
    : hidden_state_drafter(target, tap_layers(*heads), (size_t) 3 * heads->target_hidden, heads->n_embd, heads->target_vocab, options),
      hd(std::move(heads)), tgt(target) {
    hd->check_target(tgt.mdl(), "the EAGLE-3 heads");
}

std::vector<uint32_t> eagle_drafter::tap_layers(const eagle3_heads & heads) {
    return { (uint32_t) heads.target_layers[0], (uint32_t) heads.target_layers[1], (uint32_t) heads.target_layers[2] };
}

std::unique_ptr<draft_layer_runner> eagle_drafter::make_runner() const {
    return std::make_unique<eagle3_runner>(hd, tgt.model_ptr(), tgt.n_threads(), tgt.n_ctx() + 128);
}

} // namespace specdec
