#include "sampling/sampler.h"

#include <algorithm>
#include <cmath>

namespace specdec {

namespace {

// NaN compares false with everything, so one NaN logit makes the sorting comparators below no strict
// weak order (undefined behaviour in std::sort) and an argmax stick to it; a NaN logit is read as
// -inf instead: that token is never chosen while any other is possible.
inline float sane_logit(float l) { return std::isnan(l) ? -INFINITY : l; }

// The unnormalized softmax weight of logit l under the maximum mx, total on infinite logits (inf - inf
// would be NaN): a +inf maximum gives the +inf logits equal weight and the rest none; a -inf maximum
// (every logit -inf) gives all equal weight. Finite maxima keep the arithmetic each caller had
// (float for the chain, double for top_candidates), so sampled sequences do not move.
inline bool infinite_max_weight(float l, float mx, float & w) {
    if (!std::isinf(mx)) return false;
    w = l == mx ? 1.0f : 0.0f;
    return true;
}

inline double weight_d(float l, float mx) {
    float w;
    return infinite_max_weight(l, mx, w) ? (double) w : std::exp((double) (l - mx));
}

inline float weight_f(float l, float mx, float temp) {
    float w;
    return infinite_max_weight(l, mx, w) ? w : expf((l - mx) / temp);
}

inline uint64_t splitmix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

} // namespace

// keyed_uniform's stream: the first two finalizers depend on (seed, position) alone, the last on the index
static inline uint64_t keyed_base(uint64_t seed, uint64_t position) { return splitmix64(splitmix64(seed) ^ position); }
static inline double keyed_uniform_at(uint64_t base, uint64_t index) {
    return ((double) (splitmix64(base ^ index) >> 11) + 0.5) * 0x1.0p-53;  // in (0, 1): never 0, never 1
}

double keyed_uniform(uint64_t seed, uint64_t position, uint64_t index) {
    return keyed_uniform_at(keyed_base(seed, position), index);
}

double keyed_gumbel(uint64_t seed, uint64_t position, int32_t token) {
    return -std::log(-std::log(keyed_uniform(seed, position, (uint64_t) (uint32_t) token)));
}

int32_t keyed_draw(const std::vector<token_prob> & dist, uint64_t seed, uint64_t position) {
    int32_t best = dist.empty() ? -1 : dist[0].id;
    double best_key = -INFINITY;
    double c = INFINITY;  // exp(-best_key)
    const uint64_t base = keyed_base(seed, position);
    for (const auto & t : dist) {
        if (!(t.p > 0.0f)) continue;
        const double u = keyed_uniform_at(base, (uint64_t) (uint32_t) t.id);
        // key = log p - log(-log u) beats best_key only if -log u < p c, i.e. u > exp(-p c) >= 1 - p c:
        // most tokens of a large vocabulary are ruled out without a logarithm (the margin covers rounding)
        if (u <= 1.0 - (double) t.p * c * (1.0 + 1e-9)) continue;
        const double key = std::log((double) t.p) - std::log(-std::log(u));
        if (key > best_key) {
            best_key = key;
            best = t.id;
            c = std::exp(-best_key);
        }
    }
    return best;
}

sampler_chain::sampler_chain(const sampling_params & params) : par(params), rng(params.seed) {}

bool sampler_chain::penalties_apply(const std::vector<int32_t> & history) const {
    const bool any = par.repeat_penalty != 1.0f || par.frequency_penalty != 0.0f || par.presence_penalty != 0.0f;
    return any && par.penalty_last_n != 0 && !history.empty();
}

void sampler_chain::apply_penalties(std::vector<float> & logits, const std::vector<int32_t> & history) const {
    if (!penalties_apply(history)) return;
    const size_t n = par.penalty_last_n < 0 ? history.size() : std::min(history.size(), (size_t) par.penalty_last_n);
    // the counts of the tokens in the window: a sorted copy, read as runs (no allocation once warm)
    penalty_ids.assign(history.end() - (std::ptrdiff_t) n, history.end());
    std::sort(penalty_ids.begin(), penalty_ids.end());
    for (size_t i = 0; i < penalty_ids.size();) {
        const int32_t id = penalty_ids[i];
        size_t j = i;
        while (j < penalty_ids.size() && penalty_ids[j] == id) ++j;
        const int count = (int) (j - i);
        i = j;
        if (id < 0 || (size_t) id >= logits.size()) continue;
        float & l = logits[id];
        // as llama.cpp's penalties sampler: divide positive logits, multiply negative ones
        if (l <= 0.0f) {
            l *= par.repeat_penalty;
        } else {
            l /= par.repeat_penalty;
        }
        l -= (float) count * par.frequency_penalty + (count > 0 ? 1.0f : 0.0f) * par.presence_penalty;
    }
}

void top_candidates(const float * logits, int32_t n_vocab, int32_t k, std::vector<token_prob> & out, bool among_k) {
    k = std::max(1, std::min(k, n_vocab));
    out.clear();
    // a small heap would do; k is small, so keep the best k in a sorted list
    for (int32_t i = 0; i < n_vocab; ++i) {
        const float l = sane_logit(logits[i]);
        if ((int32_t) out.size() == k && l <= out.back().logit) continue;
        token_prob c { i, l, 0.0f };
        auto pos = std::upper_bound(out.begin(), out.end(), c, [](const token_prob & a, const token_prob & b) { return a.logit > b.logit; });
        out.insert(pos, c);
        if ((int32_t) out.size() > k) out.pop_back();
    }
    const float mx = out[0].logit;
    double z = 0.0;
    if (among_k) {
        for (const auto & c : out) z += weight_d(c.logit, mx);
    } else {
        for (int32_t i = 0; i < n_vocab; ++i) z += weight_d(sane_logit(logits[i]), mx);
    }
    for (auto & c : out) c.p = (float) (weight_d(c.logit, mx) / z);
}

// The top-p set without sorting: a quickselect on probability mass over cands[0, n) (the vocabulary,
// or the tokens that can be in the set with their p over the whole vocabulary: p_set): partitions around a pivot until the smallest set of the best tokens
// (by logit, ties by id) whose mass reaches top_p sits at the front; returns its size. Expected O(n).
size_t sampler_chain::top_p_select(size_t n, float mx, bool p_set) const {
    if (!p_set) {  // p of each candidate over cands[0, n), else set by the caller over the whole vocabulary
        double z = 0.0;
        for (size_t i = 0; i < n; ++i) {
            cands[i].p = weight_f(cands[i].logit, mx, 1.0f);
            z += cands[i].p;
        }
        for (size_t i = 0; i < n; ++i) cands[i].p = (float) (cands[i].p / z);
    }
    auto better = [](const token_prob & a, const token_prob & b) {
        return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
    };
    // invariant: every token in [0, lo) is better than every token in [lo, n); acc, their mass, is
    // below top_p; the mass of [0, hi) reaches it (or hi == n)
    size_t lo = 0, hi = n;
    double acc = 0.0;
    while (lo < hi) {
        // median of three as the pivot
        const size_t mid = lo + (hi - lo) / 2;
        token_prob a = cands[lo], b = cands[mid], c = cands[hi - 1];
        if (better(b, a)) std::swap(a, b);
        if (better(c, b)) std::swap(b, c);
        if (better(b, a)) std::swap(a, b);
        const token_prob pivot = b;
        auto it = std::partition(cands.begin() + (std::ptrdiff_t) lo, cands.begin() + (std::ptrdiff_t) hi,
                                 [&](const token_prob & x) { return better(x, pivot); });
        const size_t m = (size_t) (it - cands.begin());
        double mass = 0.0;
        for (size_t i = lo; i < m; ++i) mass += cands[i].p;
        if (acc + mass >= par.top_p) {  // the cut lies among the tokens better than the pivot
            hi = m;
            continue;
        }
        acc += mass;
        // the pivot itself is the best of [m, hi): bring it to m
        auto pv = std::find_if(it, cands.begin() + (std::ptrdiff_t) hi, [&](const token_prob & x) { return x.id == pivot.id; });
        std::iter_swap(it, pv);
        acc += cands[m].p;
        if (acc >= par.top_p) return m + 1;
        lo = m + 1;
    }
    return n;  // the whole mass falls short of top_p by rounding: every token stays
}

void sampler_chain::distribution(const float * logits, int32_t n_vocab, const std::vector<int32_t> & history,
                                 std::vector<token_prob> & out) const {
    // the logits after penalties (a copy only when a penalty is on), NaN read as -inf
    const float * L = logits;
    if (penalties_apply(history)) {
        scratch.assign(logits, logits + n_vocab);
        apply_penalties(scratch, history);
        L = scratch.data();
    }

    out.clear();
    if (greedy()) {
        int32_t best = 0;
        float best_l = sane_logit(L[0]);
        for (int32_t i = 1; i < n_vocab; ++i) {
            const float l = sane_logit(L[i]);
            if (l > best_l) { best = i; best_l = l; }
        }
        out.push_back({ best, best_l, 1.0f });
        return;
    }

    float mx = -INFINITY;
    for (int32_t i = 0; i < n_vocab; ++i) mx = std::max(mx, sane_logit(L[i]));
    // top-k on a large vocabulary: a histogram of the distances below the maximum finds a logit that at
    // least k tokens reach; only those become candidates (the selection below runs on them alone)
    const bool top_k_on = par.top_k > 0 && par.top_k < n_vocab;
    int bucket_cut = -1;  // candidates: tokens whose bucket is <= bucket_cut (-1: every token)
    constexpr int   N_BUCKETS = 256;
    constexpr float SPAN = 32.0f;  // logits within SPAN of the maximum get buckets; the rest share the last
    const float to_bucket = (float) (N_BUCKETS - 1) / SPAN;
    auto bucket_of = [&](float l) {
        const float d = (mx - l) * to_bucket;  // >= 0; -inf logits give +inf
        return d < (float) (N_BUCKETS - 1) ? (int) d : N_BUCKETS - 1;
    };
    if (top_k_on && n_vocab > 4 * par.top_k && std::isfinite(mx)) {
        uint32_t hist[N_BUCKETS] = {};
        for (int32_t i = 0; i < n_vocab; ++i) hist[bucket_of(sane_logit(L[i]))]++;
        uint32_t cum = 0;
        for (int b = 0; b < N_BUCKETS - 1; ++b) {
            cum += hist[b];
            if (cum >= (uint32_t) par.top_k) { bucket_cut = b; break; }
        }
    }
    // top-p without top-k: the weights of every token give the whole mass z and a histogram of mass by
    // distance below the maximum; the candidates are the tokens of the buckets that reach top_p (one
    // bucket more, against rounding) and, with min-p on, above its threshold (both sets are prefixes
    // of the sorted order, so the final set is the shorter); the quickselect runs on them alone
    const bool top_p_prefilter = !top_k_on && par.top_p < 1.0f && std::isfinite(mx);
    if (top_p_prefilter) {
        double hist_mass[N_BUCKETS] = {};
        double z = 0.0;
        weights.resize((size_t) n_vocab);
        for (int32_t i = 0; i < n_vocab; ++i) {
            const float l = sane_logit(L[i]);
            const float w = weight_f(l, mx, 1.0f);
            weights[(size_t) i] = w;
            z += w;
            hist_mass[bucket_of(l)] += w;
        }
        int cut = N_BUCKETS - 1;
        double cum = 0.0;
        for (int b = 0; b < N_BUCKETS - 1; ++b) {
            cum += hist_mass[b];
            if (cum >= par.top_p * z) { cut = std::min(b + 1, N_BUCKETS - 1); break; }
        }
        const float min_p_threshold = par.min_p > 0.0f ? mx + logf(par.min_p) : -INFINITY;
        cands.clear();
        for (int32_t i = 0; i < n_vocab; ++i) {
            const float l = sane_logit(L[i]);
            if ((bucket_of(l) <= cut && l >= min_p_threshold) || l == mx) cands.push_back({ i, l, (float) (weights[(size_t) i] / z) });
        }
    } else if (bucket_cut >= 0) {
        cands.clear();
        for (int32_t i = 0; i < n_vocab; ++i) {
            const float l = sane_logit(L[i]);
            if (bucket_of(l) <= bucket_cut) cands.push_back({ i, l, 0.0f });
        }
    } else {
        cands.resize(n_vocab);
        for (int32_t i = 0; i < n_vocab; ++i) cands[i] = { i, sane_logit(L[i]), 0.0f };
    }
    auto by_logit = [](const token_prob & a, const token_prob & b) {
        return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
    };
    // softmax weights of the first n candidates at `temp`, normalized by their sum
    auto softmax = [&](size_t n, float temp) {
        const float max_l = cands[0].logit;
        double sum = 0.0;
        for (size_t i = 0; i < n; ++i) {
            cands[i].p = weight_f(cands[i].logit, max_l, temp);
            sum += cands[i].p;
        }
        for (size_t i = 0; i < n; ++i) cands[i].p = (float) (cands[i].p / sum);
    };

    // top-k: a partial sort of the k best
    size_t n = cands.size();
    bool sorted = false;
    if (top_k_on) {
        n = std::min(cands.size(), (size_t) par.top_k);
        if (n < cands.size()) std::nth_element(cands.begin(), cands.begin() + (std::ptrdiff_t) n, cands.end(), by_logit);
        std::sort(cands.begin(), cands.begin() + (std::ptrdiff_t) n, by_logit);
        cands.resize(n);
        sorted = true;
    }

    // top-p on the untempered distribution: the smallest set of the most likely tokens whose mass
    // reaches top_p (ties in order of id)
    if (par.top_p < 1.0f) {
        size_t keep = n;
        if (sorted) {
            softmax(n, 1.0f);
            double cum = 0.0;
            for (size_t i = 0; i < n; ++i) {
                cum += cands[i].p;
                if (cum >= par.top_p) { keep = i + 1; break; }
            }
        } else {
            keep = top_p_select(n, mx, top_p_prefilter);
        }
        n = std::max<size_t>(1, keep);
        cands.resize(n);
    }
    // min-p: keep tokens with p >= min_p * p_max, i.e. logit >= max + log(min_p)
    if (par.min_p > 0.0f) {
        const float threshold = mx + logf(par.min_p);
        if (sorted) {
            size_t keep = 1;
            while (keep < n && cands[keep].logit >= threshold) keep++;
            n = keep;
        } else {
            auto end = std::partition(cands.begin(), cands.begin() + (std::ptrdiff_t) n,
                                      [&](const token_prob & c) { return c.logit >= threshold; });
            if (end == cands.begin()) {  // min_p > 1: only the most likely token stays
                std::iter_swap(cands.begin(), std::min_element(cands.begin(), cands.begin() + (std::ptrdiff_t) n, by_logit));
                end = cands.begin() + 1;
            }
            n = (size_t) (end - cands.begin());
        }
        cands.resize(n);
    }
    // unsorted sets (no top-k): only the most likely token moves to the front
    if (!sorted) std::iter_swap(cands.begin(), std::min_element(cands.begin(), cands.begin() + (std::ptrdiff_t) n, by_logit));
    // temperature + softmax
    softmax(n, par.temperature);
    out.swap(cands);
}

int32_t sampler_chain::sample_from(const std::vector<token_prob> & dist) {
    if (dist.size() == 1) {
        return dist[0].id;
    }
    const double u = uniform();
    double cum = 0.0;
    for (const auto & c : dist) {
        cum += c.p;
        if (u < cum) return c.id;
    }
    return dist.back().id;
}

double sampler_chain::uniform() {
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

int32_t sampler_chain::draw(const std::vector<token_prob> & dist, uint64_t position) const {
    return greedy() || dist.size() == 1 ? dist[0].id : keyed_draw(dist, par.seed, position);
}

int32_t sampler_chain::sample(const float * logits, int32_t n_vocab, const std::vector<int32_t> & history) {
    distribution(logits, n_vocab, history, sample_dist);
    return draw(sample_dist, (uint64_t) history.size());
}

} // namespace specdec
