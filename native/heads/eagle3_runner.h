// The EAGLE-3 draft layer at inference (heads/eagle3_heads.h for the network; heads/draft_layer_runner.h
// for the backend, weights, cache and evaluation it shares with Chimera's): element P reads the pair
// (token P + 1, g), g = fc(the target's three taps at P) or, in a tree, its parent's pre-norm output.
#pragma once

#include "heads/draft_layer_runner.h"
#include "heads/eagle3_heads.h"

#include <memory>
#include <vector>

namespace specdec {

class eagle3_runner : public draft_layer_runner {
public:
    eagle3_runner(std::shared_ptr<const eagle3_heads> heads, std::shared_ptr<const model> target, int n_threads, uint32_t n_ctx);

    // draft_layer_runner::eval: `in` is [n][3 * target hidden] (the taps) from the target, else [n][n_embd];
    // the outputs are the pre-norm outputs, the logits over the target's vocabulary (a draft vocabulary is
    // spread out through d2t, -inf elsewhere).
    void eval(const draft_rows & r, const std::vector<uint32_t> & logit_rows, std::vector<float> & h_out,
              std::vector<float> & logits) override;

    const eagle3_heads & heads() const { return *hd; }

private:
    std::shared_ptr<const eagle3_heads> hd;
    std::shared_ptr<const model>        tgt;

    struct {
        ggml_tensor * fc, * attn_norm, * hidden_norm, * wq, * wk, * wv, * wo, * ffn_norm, * gate, * up, * down, * out_norm;
        ggml_tensor * output = nullptr, * tok_embd = nullptr;
    } w;
};

} // namespace specdec
