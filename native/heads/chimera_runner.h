// The Chimera draft network at inference (heads/chimera_heads.h for the network; heads/draft_layer_runner.h
// for the backend, weights, cache and evaluation it shares with EAGLE-3's): element P reads the
// trigram of tokens P - 1 .. P + 1 (the target's token embeddings, kept as f32) and the target's
// hidden state at P or, in a tree, its parent's layer output.
#pragma once

#include "heads/chimera_heads.h"
#include "heads/draft_layer_runner.h"

#include <memory>
#include <vector>

namespace specdec {

class chimera_runner : public draft_layer_runner {
public:
    chimera_runner(std::shared_ptr<const chimera_heads> heads, std::shared_ptr<const model> target, int n_threads, uint32_t n_ctx);

    // draft_layer_runner::eval: `in` is [n][n_embd] either way; the outputs are the layer outputs o.
    void eval(const draft_rows & r, const std::vector<uint32_t> & logit_rows, std::vector<float> & o,
              std::vector<float> & logits) override;

    const chimera_heads & heads() const { return *hd; }

private:
    std::shared_ptr<const chimera_heads> hd;
    std::shared_ptr<const model>         tgt;
    std::vector<float>      tok_embd;  // the target's token embeddings, f32 [n_vocab][n_embd]
    std::vector<float>      tri_in;    // scratch: [n][3 n_embd]

    struct {
        ggml_tensor * tri_w, * tri_b, * tri_out, * hidden_norm, * attn_norm, * wq, * wk, * wv, * wo, * ffn_norm, * gate, * up, * down;
        ggml_tensor * head_h, * head_o, * head_b, * out_norm;
    } w;
};

} // namespace specdec
