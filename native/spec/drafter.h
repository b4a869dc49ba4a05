// The drafter interface: a drafter proposes tokens that the target model then verifies in one
// forward pass. The decode loop, the verifier and the KV cache never know which drafter they serve.
#pragma once

#include "sampling/sampler.h"

#include <cstdint>
#include <vector>

namespace specdec {

class drafter {
public:
    virtual ~drafter() = default;

    // Proposes up to `budget` tokens that may follow `history` (the whole sequence so far, the
    // token about to be verified included). Deterministic drafters propose with q = one-hot.
    virtual void propose(const std::vector<int32_t> & history, uint32_t budget, std::vector<int32_t> & out) = 0;

    // Told how many of the last proposal were accepted.
    virtual void observe(uint32_t n_proposed, uint32_t n_accepted) { (void) n_proposed; (void) n_accepted; }

    // The distribution q the i-th proposed token was drawn from (sorted, p summing to 1), or
    // null for a deterministic proposal (q = one-hot).
    virtual const std::vector<token_prob> * draft_dist(size_t i) const { (void) i; return nullptr; }

    // Drafters that run models: stop at the next step / let their compute threads sleep.
    virtual void abort() {}
    virtual void pause() {}
};

} // namespace specdec
