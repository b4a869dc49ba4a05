#include "spec/drafters/draft_model.h"

#include <cmath>

namespace specdec {

draft_model_drafter::draft_model_drafter(std::shared_ptr<const model> draft, const session_params & params,
                                         const sampling_params & sampling, const draft_model_options & options,
                                         std::shared_ptr<online_learner> learner_)
    : learner(std::move(learner_)), mdl(std::move(draft)), par(params), chain([&] {
          sampling_params sp = sampling;
          // its own random stream, or (seed-exact verification) the target's keyed one
          if (!sampling.coupled_drafts) sp.seed = sampling.seed ^ 0x9E3779B97F4A7C15ull;
          return sp;
      }()), opt(options) {
    if (learner) opt.slot.reset();  // Online Speculative Decoding drafts with the learner's copy: a session of its own
    if (opt.slot) {
        abort_flag = &opt.slot->aborted;
        abort_flag->store(false);  // made on the JS thread while no generation runs
    }
    par.abort_also = abort_flag;
    if (learner) learner->begin();
}

session & draft_model_drafter::ensure_session() {
    if (sess) return *sess;
    if (opt.slot) {
        // the slot's session, unless it is another model's or of another size
        std::unique_ptr<session> & held = opt.slot->sess;
        if (held && (held->model_ptr() != mdl || held->n_ctx() != par.n_ctx || held->n_batch() != par.n_batch)) held.reset();
        if (!held) held = std::make_unique<session>(mdl, par);
        else if (held->n_threads() != par.n_threads) held->set_threads(par.n_threads);
        // emptied: the draft reads the prompt as a new session would, so its drafts (which decide the
        // output of rejection sampling) are a function of this generation alone, not of the ones before
        held->truncate(0);
        sess = held.get();
    } else {
        if (learner) mdl = learner->drafting_model();  // the copy is made here, on the worker thread
        own = std::make_unique<session>(mdl, par);
        sess = own.get();
    }
    return *sess;
}

session & draft_model_drafter::follow(const std::vector<int32_t> & history, std::vector<float> & out_logits) {
    evaluate(history, history.size(), true, out_logits);
    return *sess;
}

size_t draft_model_drafter::catch_up(const std::vector<int32_t> & history) {
    ensure_session();
    if (history.size() < 2 || history.size() >= sess->n_ctx()) return 0;
    return evaluate(history, history.size() - 1, false, logits);
}

size_t draft_model_drafter::evaluate(const std::vector<int32_t> & history, size_t n, bool need_logits,
                                     std::vector<float> & out_logits) {
    ensure_session();
    // keep the common prefix, evaluate the rest of history[0, n)
    const auto & held = sess->tokens();
    size_t common = 0;
    while (common < held.size() && common < n && held[common] == history[common]) common++;
    if (common == n) {
        if (!need_logits || n == 0) return 0;
        common--;  // re-evaluate the last token for its logits
    }
    sess->truncate((uint32_t) common);
    // usually one or two tokens (the drafts the target accepted are in the cache already): one at
    // a time, they reuse the session's one-token graph instead of building a batch graph
    if (n - common <= CATCH_UP_ONE_BY_ONE) {
        for (size_t i = common; i < n; ++i) sess->eval_chain({ history[i] }, false, false, out_logits);
    } else {
        // a long catch-up (the prompt) in chunks of at most DRAFT_CATCH_UP tokens: each graph node
        // stays short, so an abort (seen between nodes) stops it quickly
        for (size_t at = common; at < n; at += DRAFT_CATCH_UP) {
            const size_t end = std::min(n, at + DRAFT_CATCH_UP);
            sess->eval_chain(std::vector<int32_t>(history.begin() + (std::ptrdiff_t) at, history.begin() + (std::ptrdiff_t) end),
                             false, false, out_logits);
        }
    }
    return n - common;
}

void draft_model_drafter::propose(const std::vector<int32_t> & history, uint32_t budget, draft_tree & out) {
    out.clear();
    if (learner) learner->before_propose(history);  // may train (wrong positions collected)
    ensure_session();
    if (history.size() >= sess->n_ctx()) return;
    budget = std::min<uint32_t>(budget, sess->n_ctx() - (uint32_t) history.size());
    if (budget == 0) return;
    follow(history, logits);
    const int32_t n_vocab = (int32_t) sess->n_vocab();
    std::vector<int32_t> ctx = history;
    std::vector<token_prob> dist, top;
    int32_t parent = -1;
    while (out.size() < budget) {
        int32_t x;
        if (chain.greedy()) {
            top_candidates(logits.data(), n_vocab, 16, top, true);  // confidence among the top 16
            chain.distribution(logits.data(), n_vocab, ctx, dist);  // the argmax after penalties
            x = dist[0].id;
            if (!out.empty() && top[0].p < opt.stop_below) break;
            const int32_t node = out.add(x, parent);
            if (top[0].p < opt.branch_below && top.size() > 1 && out.size() < budget) {
                const int32_t alt = top[0].id == x ? top[1].id : top[0].id;
                out.add(alt, parent);  // the runner-up, as a leaf
            }
            parent = node;
        } else if (chain.params().coupled_drafts) {
            // seed-exact verification: the target's keyed draw at this position repeated on q (the best
            // perturbed log q), and the runner-up as a sibling leaf where the two are close
            chain.distribution(logits.data(), n_vocab, ctx, dist);
            const uint64_t pos = (uint64_t) ctx.size();
            int32_t x2 = -1;
            double k1 = -INFINITY, k2 = -INFINITY;
            x = dist[0].id;
            for (const auto & c : dist) {
                if (!(c.p > 0.0f)) continue;
                const double key = std::log((double) c.p) + keyed_gumbel(chain.params().seed, pos, c.id);
                if (key > k1) {
                    if (k1 > -INFINITY) { k2 = k1; x2 = x; }
                    k1 = key;
                    x = c.id;
                } else if (key > k2) {
                    k2 = key;
                    x2 = c.id;
                }
            }
            const int32_t node = out.add(x, parent);
            if (x2 >= 0 && k1 - k2 < opt.coupled_branch_margin && out.size() < budget) out.add(x2, parent);
            parent = node;
        } else {
            chain.distribution(logits.data(), n_vocab, ctx, dist);
            x = chain.sample_from(dist);
            out.dists.push_back(dist);
            parent = out.add(x, parent, (int32_t) out.dists.size() - 1);
        }
        ctx.push_back(x);
        if (out.size() >= budget) break;
        sess->eval_chain({ x }, false, false, logits);
    }
}

} // namespace specdec
