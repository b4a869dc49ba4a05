#include "spec/drafters/hidden_state_drafter.h"

#include <algorithm>
#include <cmath>
#include <functional>

namespace specdec {

hidden_state_drafter::hidden_state_drafter(const session & target_, std::vector<uint32_t> taps_, size_t feat_dim_, size_t out_dim_,
                                           uint32_t n_vocab_, const dynamic_tree_options & options)
    : target(target_), taps(std::move(taps_)), feat_dim(feat_dim_), out_dim(out_dim_), n_vocab(n_vocab_), opt(options) {}

void hidden_state_drafter::add_pending(const float * f, int32_t p) {
    if (pending.empty() || pending_pos + (int32_t) (pending.size() / feat_dim) != p) {
        pending.clear();  // a gap: the positions before p are not drafted from
        pending_pos = p;
    }
    pending.insert(pending.end(), f, f + feat_dim);
}

void hidden_state_drafter::take_features(uint32_t row, int32_t p) {
    // the session's taps are [rows][taps][n_embd] in the network's layer order: a row is its input as it is
    const auto & hid = target.hidden();
    const size_t at = (size_t) row * feat_dim;
    if (target.taps() != taps || !target.taps_all_rows() || at + feat_dim > hid.size()) return;
    add_pending(hid.data() + at, p);
}

void hidden_state_drafter::prepare(const std::vector<int32_t> & history) {
    // an abort of an earlier generation does not stop this one
    if (runner) runner->clear_abort();
    // prefill's rows: the prompt's last rows the target evaluated (its last chunk); the prefix before
    // them is what the target kept from the previous generation
    const size_t rows = target.taps() == taps ? target.hidden().size() / feat_dim : 0;
    const int32_t n = (int32_t) history.size();
    const int32_t common = n - (int32_t) rows;
    pending.clear();
    pending_pos = -1;
    // the cells whose elements lie inside that prefix stay (element P reads row P and tokens up to P + 1)
    size_t keep = 0;
    while (keep < cell_pos.size() && cell_pos[keep] <= common - 2 && (keep == 0 || cell_pos[keep] > cell_pos[keep - 1])) keep++;
    cell_pos.resize(keep);
    if (runner) runner->truncate((uint32_t) keep);
    // the element at common - 1 needs that row's features: kept from before when recent enough
    if (keep > 0 && cell_pos.back() == common - 2) {
        for (const auto & r : recent) {
            if (r.first == common - 1) add_pending(r.second.data(), common - 1);
        }
    }
    for (size_t i = 0; i < rows; ++i) take_features((uint32_t) i, common + (int32_t) i);
}

void hidden_state_drafter::observe(const verify_result & r) {
    // the verified rows whose tokens are now the sequence's: the root, then the accepted path
    const int32_t root_pos = (int32_t) last_n - 1;
    take_features(0, root_pos);
    for (size_t i = 0; i < r.path.size(); ++i) take_features(1 + r.path[i], root_pos + 1 + (int32_t) i);
}

void hidden_state_drafter::propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) {
    out.clear();
    const int32_t n = (int32_t) history.size();
    last_n = (uint32_t) n;
    if (pending.empty() || pending_pos < 0) return;
    if (!runner) runner = make_runner();
    // 1. commit the elements P up to n - 2 (the last one predicts the token after the root)
    const int32_t have = (int32_t) (pending.size() / feat_dim);
    const int32_t m = std::min(have, n - 1 - pending_pos);
    if (m <= 0 || pending_pos + m != n - 1) return;  // the features of the root's predecessor are missing
    const uint32_t c0 = runner->used();
    if (c0 + (uint32_t) m + budget + 1 > runner->size()) return;  // the draft cache is full: no more drafting
    auto hist = [&](int32_t q) { return q >= 0 && q < n ? history[q] : -1; };
    draft_rows rw;
    for (int32_t i = 0; i < m; ++i) {
        const int32_t p = pending_pos + i;
        rw.tri.insert(rw.tri.end(), { hist(p - 1), hist(p), hist(p + 1) });
        rw.pos.push_back(p);
        rw.prefix.push_back(c0 + (uint32_t) i + 1);
    }
    rw.in = pending.data();
    runner->eval(rw, { (uint32_t) m - 1 }, out_rows, logits);
    for (int32_t i = 0; i < m; ++i) {
        cell_pos.push_back(pending_pos + i);
        if (i + RECENT >= (size_t) m) {
            recent.emplace_back(pending_pos + i, std::vector<float>(pending.begin() + (size_t) i * feat_dim, pending.begin() + (size_t) (i + 1) * feat_dim));
        }
    }
    if (recent.size() > RECENT) recent.erase(recent.begin(), recent.end() - RECENT);
    pending.erase(pending.begin(), pending.begin() + (size_t) m * feat_dim);
    pending_pos += m;
    const uint32_t committed = runner->used();
    const size_t d = out_dim;
    const int32_t V = (int32_t) n_vocab;

    // 2. the tree, level by level
    struct node {
        int32_t token, parent;  // parent: index into nodes, -1 the root
        float   score;          // log-probability of the path
        int32_t depth;
        int32_t cell = -1;      // its cell once evaluated
    };
    std::vector<node> nodes;
    std::vector<std::vector<float>> node_out;  // outputs of evaluated nodes, by node index
    std::vector<token_prob> top;
    auto add_children = [&](const float * lg, int32_t parent, float base, int32_t depth) {
        top_candidates(lg, V, (int32_t) opt.top_k, top);
        for (const auto & t : top) {
            if (t.p <= 0.0f) continue;
            nodes.push_back({ t.id, parent, base + logf(t.p), depth });
        }
    };
    add_children(logits.data(), -1, 0.0f, 1);
    std::vector<float> root_out(out_rows.end() - (std::ptrdiff_t) d, out_rows.end());  // the commit's last element stands in at depth 1
    for (int32_t depth = 1; depth < (int32_t) opt.depth; ++depth) {
        // the best unexpanded nodes of this level
        std::vector<int32_t> level;
        for (int32_t i = 0; i < (int32_t) nodes.size(); ++i) if (nodes[i].depth == depth) level.push_back(i);
        std::sort(level.begin(), level.end(), [&](int32_t a, int32_t b) { return nodes[a].score > nodes[b].score; });
        if (level.size() > opt.width) level.resize(opt.width);
        // a level whose best node would not make the budget is not worth evaluating
        std::vector<float> scores;
        for (const auto & nd : nodes) scores.push_back(nd.score);
        if (scores.size() >= budget) {
            std::nth_element(scores.begin(), scores.begin() + (budget - 1), scores.end(), std::greater<float>());
            if (level.empty() || nodes[level[0]].score < scores[budget - 1]) break;
        }
        if (level.empty() || runner->used() + level.size() > runner->size()) break;
        draft_rows lr;
        std::vector<float> in;
        const uint32_t cell0 = runner->used();
        // the level's nodes sit at position n - 1 + depth: element P = n - 2 + depth reads tokens P - 1 .. P + 1
        const int32_t p = n - 2 + depth;
        for (size_t j = 0; j < level.size(); ++j) {
            node & nd = nodes[level[j]];
            nd.cell = (int32_t) (cell0 + j);
            int32_t tok[3];
            int32_t a = level[j];
            for (int k = 2; k >= 0; --k) {
                const int32_t q = p - 1 + k;  // position of tok[k]
                if (q >= n) {
                    tok[k] = nodes[a].token;
                    a = nodes[a].parent;
                } else {
                    tok[k] = hist(q);
                }
            }
            lr.tri.insert(lr.tri.end(), { tok[0], tok[1], tok[2] });
            lr.pos.push_back(p);
            lr.prefix.push_back(committed);
            std::vector<uint32_t> cells;
            for (int32_t b = level[j]; b >= 0; b = nodes[b].parent) cells.push_back((uint32_t) nodes[b].cell);
            lr.attend.push_back(cells);
            const std::vector<float> & stand_in = nd.parent < 0 ? root_out : node_out[nd.parent];
            in.insert(in.end(), stand_in.begin(), stand_in.end());
        }
        lr.in = in.data();
        lr.from_target = false;
        std::vector<uint32_t> outs(level.size());
        for (size_t j = 0; j < outs.size(); ++j) outs[j] = (uint32_t) j;
        std::vector<float> lo, lg;
        runner->eval(lr, outs, lo, lg);
        node_out.resize(nodes.size());
        for (size_t j = 0; j < level.size(); ++j) {
            node_out[level[j]].assign(lo.begin() + j * d, lo.begin() + (j + 1) * d);
            add_children(lg.data() + j * (size_t) V, level[j], nodes[level[j]].score, depth + 1);
        }
        node_out.resize(nodes.size());
    }
    runner->truncate(committed);  // the tree's cells go; the committed elements stay

    // 3. the budget's best nodes: parents score at least as high as their children, and ties go
    // to the shallower node, so the chosen set is closed under parents
    std::vector<int32_t> order(nodes.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = (int32_t) i;
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
        if (nodes[a].score != nodes[b].score) return nodes[a].score > nodes[b].score;
        if (nodes[a].depth != nodes[b].depth) return nodes[a].depth < nodes[b].depth;
        return a < b;
    });
    if (order.size() > budget) order.resize(budget);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
        return nodes[a].depth != nodes[b].depth ? nodes[a].depth < nodes[b].depth : a < b;
    });
    std::vector<int32_t> tree_index(nodes.size(), -1);
    for (int32_t i : order) {
        const int32_t par = nodes[i].parent;
        if (par >= 0 && tree_index[par] < 0) continue;  // (cannot happen: parents rank first)
        tree_index[i] = out.add(nodes[i].token, par < 0 ? -1 : tree_index[par]);
    }
}

} // namespace specdec
