#include "spec/drafters/auto.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace specdec {

namespace {

constexpr double PRIOR_WEIGHT    = 1.0;   // pseudo-observations behind each depth's prior
constexpr double PRIOR_MODEL     = 0.7;   // acceptance prior of a drafter that runs a model (optimistic: it gets tried)
constexpr double PRIOR_RETRIEVAL = 0.5;   // ... of a retrieval proposal
constexpr double DECAY           = 0.98;  // per observation: the text changes
constexpr double SLOPE_PRIOR     = 0.1;   // verify cost per extra token, as a share of the smallest pass measured
constexpr int    EXPLORE_EVERY   = 32;    // steps between tries of a model-running drafter not chosen
constexpr uint32_t LOOKUP_MAX    = 16;    // nodes a lookup proposes at most (larger retrieval trees cost more than they gain)
constexpr double CALIBRATION_DECAY = 0.95;  // per chosen step
constexpr double CALIBRATION_PRIOR = 3.0;   // pseudo-steps behind a calibration of 1

// A moving average: one observation moves it a fifth of the way.
double ema(double avg, double x) { return 0.8 * avg + 0.2 * x; }

// depth[i] of each node (a child of the root: 1)
std::vector<uint32_t> node_depths(const draft_tree & t) {
    std::vector<uint32_t> d(t.size());
    for (size_t i = 0; i < t.size(); ++i) d[i] = t.parents[i] < 0 ? 1 : d[(size_t) t.parents[i]] + 1;
    return d;
}

// The node under `parent` (-1: the root) whose token is `token`, -1 if none; `any` says whether it has children at all.
int32_t child_with(const draft_tree & t, int32_t parent, int32_t token, bool & any) {
    any = false;
    for (size_t i = 0; i < t.size(); ++i) {
        if (t.parents[i] != parent) continue;
        any = true;
        if (t.tokens[i] == token) return (int32_t) i;
    }
    return -1;
}

} // namespace

int auto_drafter::depth_class(uint32_t depth) {
    int c = 0;
    while (depth > 1 && c < N_DEPTH_CLASSES - 1) {
        depth >>= 1;
        c++;
    }
    return c;
}

auto_drafter::auto_drafter(std::vector<candidate> drafters, uint32_t max_budget_, uint64_t seed,
                           std::shared_ptr<auto_memory> memory, int n_threads)
    : cands(std::move(drafters)), mem(memory ? std::move(memory) : std::make_shared<auto_memory>()),
      max_budget(std::max<uint32_t>(1, std::min<uint32_t>(max_budget_, auto_memory::MAX_TOKENS - 2))),  // a pass of 1 + budget tokens has its entry
      rng(seed ^ 0x5851F42D4C957F2Dull), n_by(cands.size(), 0) {
    if (mem->n_threads != n_threads) {  // verify costs of another thread count: measure again
        std::fill(mem->t_ms.begin(), mem->t_ms.end(), 0.0);
        std::fill(mem->t_seen.begin(), mem->t_seen.end(), 0.0);
        mem->n_threads = n_threads;
    }
    mem->t_ms.resize(auto_memory::MAX_TOKENS, 0.0);
    mem->t_seen.resize(auto_memory::MAX_TOKENS, 0.0);
    for (const auto & c : cands) cheap.push_back(!c.d->computes());
    preview.resize(cands.size());
    klass.assign(cands.size(), -1);
    class_keys.resize(cands.size());
    for (size_t c = 0; c < cands.size(); ++c) {
        for (int k = 0; cheap[c] && k < N_DEPTH_CLASSES; ++k) class_keys[c].push_back(cands[c].name + "@" + std::to_string(k));
    }
    known.assign(cands.size(), 0);
}

double auto_drafter::verify_ms(uint32_t n) const {
    n = std::clamp<uint32_t>(n, 1, (uint32_t) t_est.size() - 1);
    return t_est[n];
}

// A size measured is its measurement; a size between two measured ones is interpolated; beyond them,
// an optimistic slope from the nearest one (a larger tree gets tried, then measured). The cost of a
// pass is then taken as non-decreasing in its size: where a smaller pass measured more than a larger
// one (an early, slow measurement that nothing refreshed, as the one-token pass when every step
// drafts), the larger one's bounds it. Being optimistic is safe: the size then gets chosen, and
// measured again.
void auto_drafter::estimate_verify_costs() {
    const int top = (int) max_budget + 1;
    const std::vector<double> & seen = mem->t_seen;
    const std::vector<double> & ms = mem->t_ms;
    // the nearest measured size below each size (-1: none) and the smallest measured one
    std::vector<int> lo((size_t) top + 1, -1);
    int smallest = -1;
    for (int n = 1; n <= top; ++n) {
        lo[(size_t) n] = n > 1 && seen[(size_t) n - 1] > 0 ? n - 1 : (n > 1 ? lo[(size_t) n - 1] : -1);
        if (smallest < 0 && seen[(size_t) n] > 0) smallest = n;
    }
    int hi = -1;  // the nearest measured size above n (measured sizes past the budget count too)
    for (int m = top + 1; m < auto_memory::MAX_TOKENS && hi < 0; ++m) {
        if (seen[(size_t) m] > 0) hi = m;
    }
    if (smallest < 0) smallest = hi;
    t_est.assign((size_t) top + 1, 0.0);
    for (int n = top; n >= 1; --n) {
        const int l = lo[(size_t) n];
        double t;
        if (seen[(size_t) n] > 0) {
            t = ms[(size_t) n];
        } else if (l > 0 && hi > 0) {  // between two measured sizes
            const double a = ms[(size_t) l], b = std::max(a, ms[(size_t) hi]);
            t = a + (b - a) * (double) (n - l) / (double) (hi - l);
        } else if (l > 0) {  // above the measured sizes
            t = ms[(size_t) l] + SLOPE_PRIOR * ms[(size_t) smallest] * (double) (n - l);
        } else if (hi > 0) {  // below the smallest measured: the slope prior down from it
            t = ms[(size_t) hi] * std::max(0.5, 1.0 - SLOPE_PRIOR * (double) (hi - n));
        } else {  // nothing measured yet: any unit, only ratios matter until then
            t = 1.0 + SLOPE_PRIOR * (double) (n - 1);
        }
        t_est[(size_t) n] = n < top ? std::min(t, t_est[(size_t) n + 1]) : t;
        if (seen[(size_t) n] > 0) hi = n;
    }
}

double auto_drafter::expected_accepted(const auto_memory::drafter_stats & s, uint32_t depth, double prior) const {
    double e = 0.0, survive = 1.0;
    for (uint32_t k = 1; k <= depth; ++k) {
        const double tried = k < s.tried.size() ? s.tried[k] : 0.0;
        const double ok    = k < s.ok.size() ? s.ok[k] : 0.0;
        survive *= (ok + prior * PRIOR_WEIGHT) / (tried + PRIOR_WEIGHT);
        e += survive;
        if (survive < 1e-4) break;
    }
    return e;
}

double auto_drafter::calibration(const auto_memory::drafter_stats & s) const {
    const double step = 2.0 * verify_ms(1);  // a pseudo-step's time
    const double tokens = (s.realized_tokens + CALIBRATION_PRIOR) / (s.predicted_tokens + CALIBRATION_PRIOR);
    const double ms = (s.realized_ms + CALIBRATION_PRIOR * step) / (s.predicted_ms + CALIBRATION_PRIOR * step);
    return std::clamp(tokens / ms, 0.5, 2.0);
}

auto_memory::drafter_stats & auto_drafter::stats_of(const std::string & key) {
    auto_memory::drafter_stats & s = mem->by_name[key];
    if (s.tried.size() < max_budget + 1) {
        s.tried.resize(max_budget + 1, 0.0);
        s.ok.resize(max_budget + 1, 0.0);
    }
    return s;
}

void auto_drafter::propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) {
    out.clear();
    const uint64_t steps = ++mem->steps;
    budget = std::min(budget, max_budget);
    estimate_verify_costs();
    double best = 1.0 / verify_ms(1);  // plain decoding: one token per one-token pass
    chosen = -1;
    chosen_budget = 0;
    // an option: drafter c at `size`, expected to give `tokens` in `ms`, its rate scaled by its calibration
    auto consider = [&](size_t c, uint32_t size, double tokens, double ms, double cal) {
        if (cal * tokens / ms <= best) return;
        best = cal * tokens / ms;
        chosen = (int) c;
        chosen_budget = size;
        chosen_tokens = tokens;
        chosen_ms = ms;
    };
    for (size_t c = 0; c < cands.size(); ++c) {
        if (cheap[c]) {
            // it looks things up: it proposes now, and is judged on what it proposed
            preview[c].clear();
            klass[c] = -1;
            const uint32_t cap = std::min(budget, LOOKUP_MAX);
            if (cap > 0) cands[c].d->propose(history, cap, preview[c]);
            preview[c].truncate(cap);
            if (preview[c].empty()) continue;
            const std::vector<uint32_t> depth = node_depths(preview[c]);
            uint32_t deepest = 0;
            std::vector<uint32_t> depth_upto(depth.size());  // the depth of the first i + 1 nodes
            for (size_t i = 0; i < depth.size(); ++i) depth_upto[i] = deepest = std::max(deepest, depth[i]);
            klass[c] = depth_class(deepest);
            const auto_memory::drafter_stats & s = class_stats(c);
            const double cal = calibration(stats_of(cands[c].name));
            // sizes worth a look: the last node before the tree gets deeper, and the whole tree
            for (size_t i = 0; i < depth.size(); ++i) {
                if (i + 1 < depth.size() && depth_upto[i + 1] == depth_upto[i]) continue;
                const uint32_t nodes = (uint32_t) i + 1;
                consider(c, nodes, expected_accepted(s, depth_upto[i], PRIOR_RETRIEVAL) + 1.0, verify_ms(1 + nodes), cal);
            }
        } else {
            const auto_memory::drafter_stats & s = stats_of(cands[c].name);
            const double cal = calibration(s);
            // the tokens accepted since it last drafted, but the last: to evaluate before it drafts
            const size_t lag = history.size() - 1 - std::min(known[c], history.size() - 1);
            const double catch_ms = lag <= CATCH_UP_ONE_BY_ONE ? s.catch_up_ms * (double) lag
                                  : s.catch_up_batch_ms > 0 ? s.catch_up_batch_ms : s.catch_up_ms * (double) CATCH_UP_ONE_BY_ONE;
            for (uint32_t b = 1; b <= budget; ++b) {
                // drafters may propose fewer nodes than allowed, and trees are shallower than they are wide
                const double nodes = s.n > 0 ? std::max(1.0, s.fill * b) : (double) b;
                const uint32_t depth = (uint32_t) std::max(1L, std::lround(s.depth * nodes));
                const double ms = catch_ms + s.ms_per_token * nodes + verify_ms(1 + (uint32_t) std::lround(nodes));
                consider(c, b, expected_accepted(s, depth, PRIOR_MODEL) + 1.0, ms, cal);
            }
        }
    }
    if (steps % EXPLORE_EVERY == 0 && budget > 0) {
        // explore: a model-running drafter not chosen, at a random size up to 8
        std::vector<size_t> others;
        for (size_t c = 0; c < cands.size(); ++c) {
            if (!cheap[c] && (int) c != chosen) others.push_back(c);
        }
        if (!others.empty()) {
            chosen = (int) others[std::uniform_int_distribution<size_t>(0, others.size() - 1)(rng)];
            chosen_budget = std::uniform_int_distribution<uint32_t>(1, std::min<uint32_t>(8, budget))(rng);
            chosen_tokens = chosen_ms = 0.0;  // not a choice by the estimates: not a calibration sample
        }
    }
    last_name = chosen >= 0 ? cands[(size_t) chosen].name : "";
    if (chosen < 0 || chosen_budget == 0) {
        n_plain++;
        return;
    }
    n_by[(size_t) chosen]++;
    history_len = history.size();
    if (cheap[(size_t) chosen]) {
        out = preview[(size_t) chosen];
    } else {
        using clk = std::chrono::steady_clock;
        drafter & d = *cands[(size_t) chosen].d;
        const auto t0 = clk::now();
        caught = d.catch_up(history);
        const auto t1 = clk::now();
        d.propose(history, chosen_budget, out);
        catch_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
        own_ms = std::chrono::duration<double, std::milli>(clk::now() - t1).count();
    }
    out.truncate(chosen_budget);
}

// Survival counts of one draft against what verification decided: depth k was tried when the node
// reached at depth k - 1 (the root at first) had children, and accepted when one of them was the
// token the target kept there. The walk stops at the first miss, or after the last token verified
// (the depth after it was not tried by this verification).
void auto_drafter::learn(auto_memory::drafter_stats & s, const draft_tree & tree, const verify_result & r) const {
    for (auto & x : s.tried) x *= DECAY;
    for (auto & x : s.ok) x *= DECAY;
    const size_t n_known = r.path.size() + 1;  // the accepted tokens, then the target's own
    int32_t node = -1;
    for (size_t k = 1; k <= n_known && k < s.tried.size(); ++k) {
        const int32_t token = k <= r.path.size() ? r.tree->tokens[r.path[k - 1]] : r.next;
        bool any = false;
        const int32_t child = child_with(tree, node, token, any);
        if (!any) break;
        s.tried[k] += 1.0;
        if (child < 0) break;
        s.ok[k] += 1.0;
        node = child;
    }
    s.n += 1.0;
}

void auto_drafter::observe(const verify_result & r) {
    // the cost of a pass over 1 + tree nodes; one slow measurement (a preempted thread) moves it at most 2x
    const uint32_t n = std::min<uint32_t>(1 + (uint32_t) r.tree->size(), auto_memory::MAX_TOKENS - 1);
    if (mem->t_seen[n] > 0) {
        mem->t_ms[n] = ema(mem->t_ms[n], std::min(r.verify_ms, 2.0 * mem->t_ms[n]));
    } else {
        mem->t_ms[n] = r.verify_ms;
    }
    mem->t_seen[n] += 1.0;
    for (size_t c = 0; c < cands.size(); ++c) {
        if ((int) c == chosen && chosen_budget > 0 && chosen_tokens > 0.0) {
            auto_memory::drafter_stats & own = stats_of(cands[c].name);
            own.predicted_tokens = CALIBRATION_DECAY * own.predicted_tokens + chosen_tokens;
            own.realized_tokens  = CALIBRATION_DECAY * own.realized_tokens + (double) (r.path.size() + 1);
            own.predicted_ms     = CALIBRATION_DECAY * own.predicted_ms + chosen_ms;
            own.realized_ms      = CALIBRATION_DECAY * own.realized_ms + r.draft_ms + r.verify_ms;
        }
        if ((int) c == chosen && chosen_budget > 0) {
            auto_memory::drafter_stats & s = cheap[c] ? class_stats(c) : stats_of(cands[c].name);
            learn(s, *r.tree, r);
            if (!cheap[c]) {
                const double size = (double) r.tree->size();
                const double per = size > 0 ? own_ms / size : own_ms;
                if (caught > CATCH_UP_ONE_BY_ONE) {
                    s.catch_up_batch_ms = s.catch_up_batch_ms > 0 ? ema(s.catch_up_batch_ms, catch_ms) : catch_ms;
                } else if (caught > 0) {
                    const double cu = catch_ms / (double) caught;
                    s.catch_up_ms = s.catch_up_ms > 0 ? ema(s.catch_up_ms, cu) : cu;
                }
                known[c] = history_len + r.path.size();  // its drafts that were accepted are in its cache
                const double fill = size / (double) chosen_budget;
                uint32_t deepest = 0;
                for (uint32_t d : node_depths(*r.tree)) deepest = std::max(deepest, d);
                const double depth = size > 0 ? (double) deepest / size : 1.0;
                const bool first = s.n <= 1.0;
                s.ms_per_token = first ? per : ema(s.ms_per_token, per);
                s.fill = first ? fill : ema(s.fill, fill);
                s.depth = first ? depth : ema(s.depth, depth);
            }
        } else if (cheap[c] && klass[c] >= 0) {
            // not chosen: how far its own proposal would have gone
            learn(class_stats(c), preview[c], r);
        }
    }
    for (auto & cd : cands) cd.d->observe(r);  // learners see every verification
}

bool auto_drafter::computes() const {
    for (const auto & cd : cands) {
        if (cd.d->computes()) return true;
    }
    return false;
}

void auto_drafter::prepare(const std::vector<int32_t> & history) {
    for (auto & cd : cands) cd.d->prepare(history);
    known.assign(cands.size(), history.size());
}

void auto_drafter::abort() {
    for (auto & cd : cands) cd.d->abort();
}

void auto_drafter::pause() {
    for (auto & cd : cands) cd.d->pause();
}

} // namespace specdec
