// 'auto': picks, every step, the drafter and the tree size with the best expected tokens per
// second on the running device, or no draft at all (plain decoding) when speculation loses.
//
// - Verify cost: the time of the target's forward pass is measured on every step and kept per
//   size class (1, 2-3, 4-7, ... tokens), a moving average; sizes not seen yet start from a
//   prior and are tried now and then.
// - Acceptance: per drafter, a histogram of how many of its tokens each verification accepted,
//   with the budget it had (a fully accepted proposal counts as "at least that many"), gives the
//   expected accepted length for any budget; draft time per proposed token likewise.
// - Choice: maximize (E[accepted | drafter, budget] + 1) / (draft time + t(budget + 1)), against
//   1 / t(1) for plain decoding (the cost counts the nodes a drafter actually proposes); an
//   exploration step every 32 tries a random drafter at up to twice the current size.
// Every drafter that learns from verification (Token Recycling, ADED) sees every step, whoever drafted.
// What it learns stays with the session (auto_memory): later generations start where it left off.
#pragma once

#include "spec/drafter.h"

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace specdec {

// What 'auto' has learnt, kept by the session across its generations (a server's requests, a chat's
// turns): the verify-cost curve of this device and thread count, and per drafter (by name) its
// acceptance histogram, draft cost and fill. A new generation starts from it instead of the priors.
struct auto_memory {
    static constexpr int N_CLASSES = 9;  // tree sizes 1, 2-3, 4-7, ..., 256
    struct drafter_stats {
        std::vector<double> accepted_hist;  // [budget + 1]: decayed counts of accepted = i (censored ones spread)
        double ms_per_token = 0.0;          // draft time per proposed token (moving average)
        double fill = 1.0;                  // proposed nodes / budget (moving average)
        double n = 0.0;
    };
    double t_class[N_CLASSES] = {};
    double t_seen[N_CLASSES]  = {};
    int    n_threads = 0;  // the verify costs are this thread count's
    uint64_t steps = 0;
    std::map<std::string, drafter_stats> by_name;
    // Which draft model and heads the "draft" and "medusa"/"eagle" entries were learnt with (identity
    // only, never dereferenced): another one starts those entries afresh.
    const void * draft_model = nullptr;
    const void * heads = nullptr;
    // Loaded from a saved state (Session.loadAutoMemory): the next draft model and heads take the
    // saved entries as theirs.
    bool adopt_draft = false;
    bool adopt_heads = false;
};

class auto_drafter : public drafter {
public:
    struct candidate {
        std::string              name;  // also its entry in auto_memory
        std::shared_ptr<drafter> d;
    };
    // `memory`: the session's (null: a fresh one); `n_threads`: the target's, whose verify costs it learns.
    auto_drafter(std::vector<candidate> drafters, uint32_t max_budget, uint64_t seed,
                 std::shared_ptr<auto_memory> memory = nullptr, int n_threads = 0);
    void propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) override;
    void observe(const verify_result & r) override;
    void prepare(const std::vector<int32_t> & history) override;
    bool computes() const override;
    void abort() override;
    void pause() override;

    // What was chosen, for stats: the name of the drafter of the last step ("" for none).
    const std::string & last_choice() const { return last_name; }
    // This generation's decisions: steps with no draft (plain decoding), and steps per drafter.
    uint64_t plain_steps() const { return n_plain; }
    const std::vector<candidate> & candidates() const { return cands; }
    const std::vector<uint64_t> & steps_by_candidate() const { return n_by; }

private:
    static constexpr int N_CLASSES = auto_memory::N_CLASSES;
    using drafter_stats = auto_memory::drafter_stats;
    static int size_class(uint32_t n);
    double verify_ms(uint32_t n) const;
    double expected_accepted(size_t d, uint32_t budget) const;

    std::vector<candidate>       cands;
    std::shared_ptr<auto_memory> mem;
    std::vector<drafter_stats *> st;  // per candidate: its entry in mem->by_name
    uint32_t                     max_budget;
    std::vector<uint32_t>        budgets;  // the sizes considered
    std::mt19937_64              rng;
    int                          chosen = -1;   // index into cands, -1: none
    uint32_t                     chosen_budget = 0;
    std::string                  last_name;
    uint64_t                     n_plain = 0;
    std::vector<uint64_t>        n_by;
};

} // namespace specdec
