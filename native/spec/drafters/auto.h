// 'auto': picks, every step, the drafter and the tree size with the best expected tokens per
// second on the running device, or no draft at all (plain decoding) when speculation loses.
//
// - Verify cost: the time of the target's forward pass over n tokens, measured on every step and
//   kept per n (a moving average, one outlier clipped); a size not measured yet is interpolated
//   between its measured neighbours, or extrapolated from the largest with a slope prior.
// - Acceptance, per drafter: at each depth k, how often the k-th token of a draft was accepted when
//   the k-1 before it were (decayed counts with a prior), so the expected accepted length of a
//   draft of depth d is sum_{k<=d} prod_{i<=k} p_i (a draft accepted whole says nothing about the
//   depth after it: survival counting, no guess).
// - Drafters that only look things up (retrieval, ADED's table) cost almost nothing, so they all
//   propose on every step, before the choice: their acceptance is kept per class of the depth they
//   proposed (a long retrieval match is another thing than a short one), their cost is the verify
//   cost of what they proposed, and the step's verification tells each of them, chosen or not, how
//   far its own proposal would have been accepted.
// - Drafters that run a model (draft model, heads) propose only when chosen: their cost is their
//   draft time per token plus the verify cost of a tree of the budget (times their usual fill), and
//   for a draft model, catching up with the tokens accepted since it last drafted.
// - Calibration: per drafter, what its chosen steps gave (tokens per ms) over what they were
//   expected to give scales its estimates (the cache a draft model evicts slows the verification
//   after it; a retrieval drafter's deep matches are seen more often where the text is easy).
// - Choice: maximize (E[accepted] + 1) / (draft time + t(1 + nodes)) over drafters and sizes,
//   against 1 / t(1) for plain decoding; every 32 steps, a model-running drafter that was not
//   chosen is tried at a random size (its estimates would otherwise never change).
// Every drafter that learns from verification (ADED) sees every step, whoever drafted.
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
// turns): the verify-cost curve of this device and thread count, and per drafter its acceptance by
// depth, draft cost and fill. Retrieval drafters have one entry per class of proposed depth, named
// "<drafter>@<class>" (depth 1, 2-3, 4-7, 8-15, 16+: classes 0-4). A new generation starts from it
// instead of the priors.
struct auto_memory {
    static constexpr int MAX_TOKENS = 257;  // verify costs kept for passes of 1 .. 256 tokens
    struct drafter_stats {
        std::vector<double> tried;  // [depth]: decayed counts of drafts whose token at that depth was checked
        std::vector<double> ok;     // [depth]: ... and accepted (index 0 unused)
        double ms_per_token = 0.0;  // draft time per proposed token (moving average)
        // a draft model catching up with the tokens it had not seen: time per token when they are few
        // (one at a time), time per catch-up when they are more (one batch); moving averages
        double catch_up_ms = 0.0, catch_up_batch_ms = 0.0;
        double fill = 1.0;          // proposed nodes / budget (moving average)
        double depth = 1.0;         // depth / proposed nodes (1: chains; moving average)
        double n = 0.0;
        // calibration, on a drafter's own entry: what its chosen steps were expected to give (tokens,
        // ms) and what they gave (decayed sums)
        double predicted_tokens = 0.0, realized_tokens = 0.0, predicted_ms = 0.0, realized_ms = 0.0;
    };
    std::vector<double> t_ms   = std::vector<double>(MAX_TOKENS, 0.0);  // [n tokens]: verify ms
    std::vector<double> t_seen = std::vector<double>(MAX_TOKENS, 0.0);  // [n tokens]: measurements (0: none)
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

    // The depth class of a retrieval proposal (its entry "<name>@<class>"), and the number of classes.
    static constexpr int N_DEPTH_CLASSES = 5;
    static int depth_class(uint32_t depth);

private:
    struct option {
        double   rate = 0.0;  // expected tokens per ms
        uint32_t nodes = 0;   // the size of the draft (0: plain decoding)
    };
    double verify_ms(uint32_t n) const;  // this step's estimate (estimate_verify_costs)
    void   estimate_verify_costs();      // t_est, from the measured sizes and their neighbours
    double expected_accepted(const auto_memory::drafter_stats & s, uint32_t depth, double prior) const;
    double calibration(const auto_memory::drafter_stats & s) const;  // realized over expected tokens per ms
    auto_memory::drafter_stats & stats_of(const std::string & key);
    auto_memory::drafter_stats & class_stats(size_t c) { return stats_of(class_keys[c][(size_t) klass[c]]); }
    void learn(auto_memory::drafter_stats & s, const draft_tree & tree, const verify_result & r) const;

    std::vector<candidate>       cands;
    std::vector<bool>            cheap;    // per candidate: proposes on every step (looks things up)
    std::vector<draft_tree>      preview;  // per cheap candidate: this step's proposal
    std::vector<double>          t_est;    // [n]: this step's verify cost estimates, n = 1 .. max_budget + 1
    std::vector<int>             klass;    // per cheap candidate: its depth class this step (-1: nothing)
    std::vector<std::vector<std::string>> class_keys;  // per cheap candidate: "<name>@<class>" by class
    std::vector<size_t>          known;    // per candidate: tokens of the sequence its model has seen (a prefix)
    size_t                       caught = 0;     // this step: tokens the chosen drafter caught up with,
    double                       catch_ms = 0.0; // ... the time that took,
    double                       own_ms = 0.0;   // ... and the time of its proposal after it
    double                       chosen_tokens = 0.0, chosen_ms = 0.0;  // what the choice was expected to give
    size_t                       history_len = 0;
    std::shared_ptr<auto_memory> mem;
    uint32_t                     max_budget;
    std::mt19937_64              rng;
    int                          chosen = -1;   // index into cands, -1: none
    uint32_t                     chosen_budget = 0;
    std::string                  last_name;
    uint64_t                     n_plain = 0;
    std::vector<uint64_t>        n_by;
};

} // namespace specdec
