#include "spec/drafters/auto.h"

#include <algorithm>
#include <cmath>

namespace specdec {

auto_drafter::auto_drafter(std::vector<candidate> drafters, uint32_t max_budget_, uint64_t seed,
                           std::shared_ptr<auto_memory> memory, int n_threads)
    : cands(std::move(drafters)), mem(memory ? std::move(memory) : std::make_shared<auto_memory>()),
      max_budget(std::max<uint32_t>(1, max_budget_)), rng(seed ^ 0x5851F42D4C957F2Dull), n_by(cands.size(), 0) {
    if (mem->n_threads != n_threads) {  // verify costs of another thread count: measure again
        for (int c = 0; c < N_CLASSES; ++c) {
            mem->t_class[c] = 0.0;
            mem->t_seen[c] = 0.0;
        }
        mem->n_threads = n_threads;
    }
    for (uint32_t b = 1; b <= max_budget; b *= 2) budgets.push_back(b);
    for (const auto & c : cands) {
        drafter_stats & s = mem->by_name[c.name];
        if (s.accepted_hist.size() < max_budget + 1) s.accepted_hist.resize(max_budget + 1, 0.0);
        st.push_back(&s);
    }
}

int auto_drafter::size_class(uint32_t n) {
    int c = 0;
    while (n > 1 && c < N_CLASSES - 1) {
        n >>= 1;
        c++;
    }
    return c;
}

double auto_drafter::verify_ms(uint32_t n) const {
    const int c = size_class(n);
    if (mem->t_seen[c] > 0) return mem->t_class[c];
    // not measured yet: from the nearest smaller measured class, a prior of +25 % per doubling
    // (optimistic, so that larger trees get tried and measured)
    for (int k = c - 1; k >= 0; --k) {
        if (mem->t_seen[k] > 0) return mem->t_class[k] * std::pow(1.25, c - k);
    }
    return 1.0 * std::pow(1.25, c);
}

double auto_drafter::expected_accepted(size_t d, uint32_t budget) const {
    const drafter_stats & s = *st[d];
    double tot = 0.0, e = 0.0;
    for (size_t a = 0; a < s.accepted_hist.size(); ++a) {
        tot += s.accepted_hist[a];
        e += s.accepted_hist[a] * (double) std::min<size_t>(a, budget);
    }
    if (tot <= 0.0) return 0.5 * budget;  // unknown: an optimistic prior so that it gets tried
    return e / tot;
}

void auto_drafter::propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) {
    out.clear();
    const uint64_t steps = ++mem->steps;
    const double t1 = verify_ms(1);
    double best = 1.0 / t1;  // plain decoding: one token per one-token pass
    chosen = -1;
    chosen_budget = 0;
    for (size_t d = 0; d < cands.size(); ++d) {
        for (uint32_t b : budgets) {
            if (b > budget) break;
            // drafters often propose fewer nodes than allowed (lookup without a match): the pass
            // costs what is proposed
            const double nodes = st[d]->n > 0 ? std::min<double>(b, st[d]->fill * b) : b;
            const double tokens = expected_accepted(d, b) + 1.0;
            const double ms = st[d]->ms_per_token * nodes + verify_ms(1 + (uint32_t) std::lround(nodes));
            if (tokens / ms > best) {
                best = tokens / ms;
                chosen = (int) d;
                chosen_budget = b;
            }
        }
    }
    if (steps % 32 == 0 && !cands.empty()) {
        // explore: a random drafter, at most twice the current size
        std::uniform_int_distribution<size_t> pick_d(0, cands.size() - 1);
        const uint32_t cap = std::max<uint32_t>(4, 2 * chosen_budget);
        std::vector<uint32_t> sizes;
        for (uint32_t b : budgets) {
            if (b <= cap && b <= budget) sizes.push_back(b);
        }
        if (!sizes.empty()) {
            std::uniform_int_distribution<size_t> pick_b(0, sizes.size() - 1);
            chosen = (int) pick_d(rng);
            chosen_budget = sizes[pick_b(rng)];
        }
    }
    last_name = chosen >= 0 ? cands[(size_t) chosen].name : "";
    if (chosen < 0 || chosen_budget == 0) {
        n_plain++;
        return;
    }
    n_by[(size_t) chosen]++;
    cands[(size_t) chosen].d->propose(history, chosen_budget, out);
    out.truncate(chosen_budget);
}

void auto_drafter::observe(const verify_result & r) {
    // the cost of a pass over 1 + tree nodes
    const int c = size_class(1 + (uint32_t) r.tree->size());
    mem->t_class[c] = mem->t_seen[c] > 0 ? 0.8 * mem->t_class[c] + 0.2 * r.verify_ms : r.verify_ms;
    mem->t_seen[c] += 1.0;
    if (chosen >= 0 && chosen_budget > 0) {
        drafter_stats & s = *st[(size_t) chosen];
        for (auto & h : s.accepted_hist) h *= 0.98;  // forget slowly: the text changes
        const uint32_t a = (uint32_t) r.path.size();
        if (a >= chosen_budget || (r.tree->size() > 0 && a == r.tree->size())) {
            // censored (everything accepted): at least a; spread over a .. max
            const size_t lo = std::min<size_t>(a, max_budget);
            const double w = 1.0 / (double) (max_budget + 1 - lo);
            for (size_t k = lo; k <= max_budget; ++k) s.accepted_hist[k] += w;
        } else {
            s.accepted_hist[std::min<size_t>(a, max_budget)] += 1.0;
        }
        const double per = r.tree->size() > 0 ? r.draft_ms / (double) r.tree->size() : r.draft_ms;
        s.ms_per_token = s.n > 0 ? 0.8 * s.ms_per_token + 0.2 * per : per;
        const double fill = (double) r.tree->size() / (double) chosen_budget;
        s.fill = s.n > 0 ? 0.8 * s.fill + 0.2 * fill : fill;
        s.n += 1.0;
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
}

void auto_drafter::abort() {
    for (auto & cd : cands) cd.d->abort();
}

void auto_drafter::pause() {
    for (auto & cd : cands) cd.d->pause();
}

} // namespace specdec
