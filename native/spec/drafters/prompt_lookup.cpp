#include "spec/drafters/prompt_lookup.h"

#include <algorithm>

namespace specdec {

void prompt_lookup_drafter::propose(const std::vector<int32_t> & h, uint32_t budget, draft_tree & out) {
    out.clear();
    const size_t n = h.size();
    if (budget == 0 || n < 2) return;
    for (uint32_t g = std::min<uint32_t>(max_ngram, (uint32_t) n - 1); g >= min_ngram && g > 0; --g) {
        // the most recent earlier occurrence of the last g tokens
        const int32_t * suffix = h.data() + n - g;
        for (size_t start = n - g; start-- > 0;) {
            if (std::equal(suffix, suffix + g, h.data() + start)) {
                for (size_t j = start + g; j < n && out.size() < budget; ++j) out.add(h[j], (int32_t) out.size() - 1);
                if (!out.empty()) return;
            }
        }
    }
}

} // namespace specdec
