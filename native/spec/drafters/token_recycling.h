// Token Recycling (Luo et al., 2024): candidate tokens that verification computes and then throws
// away are recycled as drafts. An adjacency matrix keeps, for every token, the top-k tokens the
// target last predicted after it; every verification refreshes the rows of all the tokens it
// evaluated. Each step a static tree template, filled from the matrix breadth-first from the last
// token, is the draft.
//
// The matrix lives with the session (it learns across generate() calls), can be saved and loaded,
// and takes n_vocab x 8 x 4 bytes (1 MiB for a 32k vocabulary).
#pragma once

#include "spec/drafter.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace specdec {

struct adjacency_matrix {
    static constexpr int32_t K = 8;

    explicit adjacency_matrix(int32_t n_vocab) : n_vocab(n_vocab), next((size_t) n_vocab * K, -1) {}

    int32_t n_vocab;
    std::vector<int32_t> next;  // [n_vocab][K]: candidates after a token, best first; -1: none yet

    const int32_t * row(int32_t token) const { return next.data() + (size_t) token * K; }
    // Refreshes token's row with the top K of the logits that followed it.
    void update(int32_t token, const float * logits);
    size_t bytes() const { return next.size() * sizeof(int32_t); }

    // "SDTR", version 1, n_vocab, K, then the rows (little-endian int32).
    std::vector<uint8_t> save() const;
    // Throws specdec::error (ERR_INVALID_OPTION) on a bad buffer or another vocabulary size.
    void load(const uint8_t * data, size_t size);
};

// A static draft tree: node i is the rank[i]-th candidate after its parent's token.
struct tree_template {
    std::vector<int32_t> parent;  // -1: a child of the root
    std::vector<int32_t> rank;    // 0 .. K-1
    // The best `n` nodes by prior acceptance (each rank accepted with a fixed, decreasing chance;
    // a node's score is the product along its path), parents before children. Any prefix of
    // the list is itself a tree, so a budget just cuts it.
    static tree_template best_first(size_t n);
};

class token_recycling_drafter : public drafter {
public:
    token_recycling_drafter(std::shared_ptr<adjacency_matrix> matrix, size_t template_size = 80);
    void propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) override;
    void observe(const verify_result & r) override;

private:
    std::shared_ptr<adjacency_matrix> adj;
    tree_template tpl;
    std::vector<int32_t> node_of;  // template node -> draft node (or -1 when unfilled)
};

} // namespace specdec
