#include "sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

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

double keyed_uniform(uint64_t seed, uint64_t position, uint64_t index) {
    const uint64_t bits = splitmix64(splitmix64(splitmix64(seed) ^ position) ^ index);
    return ((double) (bits >> 11) + 0.5) * 0x1.0p-53;  // in (0, 1): never 0, never 1
}

double keyed_gumbel(uint64_t seed, uint64_t position, int32_t token) {
    return -std::log(-std::log(keyed_uniform(seed, position, (uint64_t) (uint32_t) token)));
}

int32_t keyed_draw(const std::vector<token_prob> & dist, uint64_t seed, uint64_t position) {
    int32_t best = dist.empty() ? -1 : dist[0].id;
    double best_key = -INFINITY;
    for (const auto & c : dist) {
        if (!(c.p > 0.0f)) continue;
        const double key = std::log((double) c.p) + keyed_gumbel(seed, position, c.id);
        if (key > best_key) {
            best_key = key;
            best = c.id;
        }
    }
    return best;
}

sampler_chain::sampler_chain(const sampling_params & params) : par(params), rng(params.seed) {}

void sampler_chain::apply_penalties(std::vector<float> & logits, const std::vector<int32_t> & history) const {
    const bool any = par.repeat_penalty != 1.0f || par.frequency_penalty != 0.0f || par.presence_penalty != 0.0f;
    if (!any || par.penalty_last_n == 0 || history.empty()) {
        return;
    }
    const size_t n = par.penalty_last_n < 0 ? history.size() : std::min(history.size(), (size_t) par.penalty_last_n);
    std::unordered_map<int32_t, int> counts;
    for (size_t i = history.size() - n; i < history.size(); ++i) {
        counts[history[i]]++;
    }
    for (const auto & [id, count] : counts) {
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

void sampler_chain::distribution(const float * logits, int32_t n_vocab, const std::vector<int32_t> & history,
                                 std::vector<token_prob> & out) const {
    scratch.assign(logits, logits + n_vocab);
    apply_penalties(scratch, history);
    for (float & l : scratch) l = sane_logit(l);

    out.clear();
    if (greedy()) {
        int32_t best = 0;
        for (int32_t i = 1; i < n_vocab; ++i) {
            if (scratch[i] > scratch[best]) best = i;
        }
        out.push_back({ best, scratch[best], 1.0f });
        return;
    }

    cands.resize(n_vocab);
    for (int32_t i = 0; i < n_vocab; ++i) {
        cands[i] = { i, scratch[i], 0.0f };
    }
    auto by_logit = [](const token_prob & a, const token_prob & b) {
        return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
    };
    size_t n = cands.size();
    // top-k
    if (par.top_k > 0 && (size_t) par.top_k < n) {
        std::partial_sort(cands.begin(), cands.begin() + par.top_k, cands.end(), by_logit);
        n = par.top_k;
    } else {
        std::sort(cands.begin(), cands.end(), by_logit);
    }
    cands.resize(n);

    auto softmax = [&](float temp) {
        const float max_l = cands[0].logit;
        double sum = 0.0;
        for (auto & c : cands) {
            c.p = weight_f(c.logit, max_l, temp);
            sum += c.p;
        }
        for (auto & c : cands) {
            c.p = (float) (c.p / sum);
        }
    };

    // top-p on the untempered distribution
    if (par.top_p < 1.0f) {
        softmax(1.0f);
        double cum = 0.0;
        size_t keep = cands.size();
        for (size_t i = 0; i < cands.size(); ++i) {
            cum += cands[i].p;
            if (cum >= par.top_p) {
                keep = i + 1;
                break;
            }
        }
        cands.resize(std::max<size_t>(1, keep));
    }
    // min-p: keep tokens with p >= min_p * p_max, i.e. logit >= max + log(min_p)
    if (par.min_p > 0.0f) {
        const float threshold = cands[0].logit + logf(par.min_p);
        size_t keep = 1;
        while (keep < cands.size() && cands[keep].logit >= threshold) keep++;
        cands.resize(keep);
    }
    // temperature + softmax
    softmax(par.temperature);
    out = cands;
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
    std::vector<token_prob> dist;
    distribution(logits, n_vocab, history, dist);
    return draw(dist, (uint64_t) history.size());
}

} // namespace specdec
