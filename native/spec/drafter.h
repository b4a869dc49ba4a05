// The drafter interface: a drafter proposes a token tree that the target model then verifies in
// one forward pass. The decode loop, the verifier and the KV cache never know which drafter they
// serve; a chain is a tree with one branch.
#pragma once

#include "sampling/sampler.h"

#include <cstdint>
#include <vector>

namespace specdec {

// A draft: a token tree hanging off the root, the token about to be verified.
struct draft_tree {
    std::vector<int32_t> tokens;
    std::vector<int32_t> parents;  // -1: a child of the root; otherwise the index of an earlier node
    // The distribution q each node was drawn from (an index into dists), or -1 for a deterministic
    // proposal (q = one-hot on the node's token). Siblings that share a q were drawn from it
    // independently, or, with `without_replacement`, as a sample without replacement (RSD).
    std::vector<int32_t>                 q_index;
    std::vector<std::vector<token_prob>> dists;  // each the most likely first (sampler_chain::distribution), summing to 1
    bool without_replacement = false;

    size_t size() const { return tokens.size(); }
    bool   empty() const { return tokens.empty(); }
    void clear() {
        tokens.clear();
        parents.clear();
        q_index.clear();
        dists.clear();
        without_replacement = false;
    }
    // Appends a node; returns its index.
    int32_t add(int32_t token, int32_t parent, int32_t q = -1) {
        tokens.push_back(token);
        parents.push_back(parent);
        q_index.push_back(q);
        return (int32_t) tokens.size() - 1;
    }
    // Keeps the first n nodes (parents come before children, so the rest is still a tree).
    void truncate(size_t n) {
        if (n >= tokens.size()) return;
        tokens.resize(n);
        parents.resize(n);
        q_index.resize(n);
    }
};

// What one verification decided, for drafters that learn from it.
struct verify_result {
    int32_t                 root = -1;     // the token at the root
    int32_t                 before_root = -1;  // the token before it (-1 at the start)
    const draft_tree *      tree = nullptr;
    std::vector<uint32_t>   path;          // accepted nodes, root-first (the root itself not included)
    int32_t                 next = -1;     // the target's own token after the path
    const float *           logits = nullptr;  // [1 + tree->size()][n_vocab]: row 0 follows the root, row 1 + i node i
    int32_t                 n_vocab = 0;
    double                  draft_ms = 0.0;   // time the proposal took
    double                  verify_ms = 0.0;  // time of the target's forward pass over root + tree
};

class drafter {
public:
    virtual ~drafter() = default;

    // Proposes a tree of at most `budget` nodes that may follow `history` (the whole sequence so
    // far, the root included).
    virtual void propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) = 0;

    // Called once the prompt is in the target's cache (counted as prompt processing): drafters
    // that run a model evaluate the prompt on it here.
    virtual void prepare(const std::vector<int32_t> & history) { (void) history; }

    // Told what the verification of the last proposal decided.
    virtual void observe(const verify_result & r) { (void) r; }

    // Whether proposing runs a model (then the target's compute threads sleep meanwhile, so that
    // the two never compete for the cores; drafters that only look things up skip that pause).
    virtual bool computes() const { return false; }

    // Drafters that follow the sequence with a model of their own (a draft model): evaluate the
    // tokens of `history` but the last that they have not seen yet, and say how many (up to
    // CATCH_UP_ONE_BY_ONE one at a time, on the one-token graph; more in batches). propose() would
    // do it first; 'auto' calls it apart, to tell catching up from drafting in its costs.
    static constexpr size_t CATCH_UP_ONE_BY_ONE = 4;
    virtual size_t catch_up(const std::vector<int32_t> & history) { (void) history; return 0; }

    // Drafters that run models: stop at the next step / let their compute threads sleep.
    virtual void abort() {}
    virtual void pause() {}
};

} // namespace specdec
