#include "spec/methods.h"

#include "common/error.h"

#include <algorithm>
#include "spec/drafters/draft_model.h"
#include "spec/drafters/aded.h"
#include "spec/drafters/auto.h"
#include "spec/drafters/chimera.h"
#include "spec/drafters/eagle.h"
#include "spec/drafters/hidden_transfer.h"
#include "spec/drafters/lud.h"
#include "spec/drafters/medusa.h"
#include "spec/drafters/prompt_lookup.h"
#include "spec/drafters/rasd.h"
#include "spec/drafters/rsd.h"

namespace specdec {

static session_params draft_session_params(const session & target) {
    session_params dp;
    dp.n_ctx = target.n_ctx();
    // the target's batch: the trees a draft session evaluates are bounded by the draft budget, which
    // generation::speculate keeps below the target's n_batch, and its catch-up with the history
    // (session::eval_chain) runs in chunks of n_batch
    dp.n_batch = target.n_batch();
    dp.n_threads = target.n_threads();
    dp.own_attention = 1;    // the draft's numerics do not touch the output: take the faster kernels
    dp.draft_weights = true;
    return dp;
}

static void need_draft_model(const method_options & o, const session & target) {
    if (!o.draft_model) fail("ERR_INVALID_OPTION", format("method '%s' needs a draft model", o.method.c_str()));
    if (o.draft_model->hp.n_vocab != target.n_vocab()) {
        fail("ERR_VOCAB_MISMATCH", format("the draft model's vocabulary has %u tokens, the target's %u",
                o.draft_model->hp.n_vocab, target.n_vocab()));
    }
}

method_plan make_method(const method_options & o, const session & target, const sampling_params & sampling) {
    method_plan plan;
    if (o.online && o.method != "draft") {
        fail("ERR_INVALID_OPTION", format("option 'online' applies to method 'draft', not '%s'", o.method.c_str()));
    }
    auto budget = [&](uint32_t def) { return o.draft_max > 0 ? o.draft_max : def; };
    if (o.method == "autoregressive") {
        return plan;
    }
    if (o.method == "lookup") {
        plan.draft = std::make_shared<prompt_lookup_drafter>(o.lookup_max_ngram, 1);
        plan.draft_max = budget(8);
    } else if (o.method == "draft") {
        need_draft_model(o, target);
        draft_model_options dmo;
        dmo.slot = o.draft_slot;
        plan.draft = std::make_shared<draft_model_drafter>(o.draft_model, draft_session_params(target), sampling, dmo, o.online);
        plan.draft_max = budget(8);
    } else if (o.method == "rsd") {
        need_draft_model(o, target);
        rsd_options ro;
        ro.beam = o.rsd_beam;
        ro.slot = o.draft_slot;
        plan.draft = std::make_shared<rsd_drafter>(o.draft_model, draft_session_params(target), sampling, ro);
        // the first two levels of its tree: deeper trees cost more drafting and verification than
        // they gain on the CPU (code pair at T = 0.8: 1.24x our autoregressive decoding at 6, 1.0x at 12)
        plan.draft_max = budget(6);
    } else if (o.method == "aded") {
        if (!o.aded) fail("ERR_INTERNAL", "aded without its table");
        plan.draft = o.aded;
        plan.draft_max = budget(8);
    } else if (o.method == "rasd") {
        if (o.draft_model) need_draft_model(o, target);
        rasd_options ra;
        ra.slot = o.draft_slot;
        plan.draft = std::make_shared<rasd_drafter>(o.corpus, o.draft_model, draft_session_params(target), sampling, ra);
        plan.draft_max = budget(o.draft_model ? 16 : 12);
    } else if (o.method == "token-recycling") {
        if (!o.recycling) fail("ERR_INTERNAL", "token-recycling without its matrix");
        plan.draft_max = budget(8);
        plan.draft = std::make_shared<token_recycling_drafter>(o.recycling, std::max<size_t>(80, plan.draft_max));
    } else if (o.method == "medusa") {
        if (!o.heads) fail("ERR_INVALID_OPTION", o.eagle ? "method 'medusa' needs a Medusa head file; this one is EAGLE-3 (method 'eagle')"
                                               : o.chimera ? "method 'medusa' needs a Medusa head file; this one is Chimera (method 'chimera')"
                                                           : "method 'medusa' needs heads: { file }");
        o.heads->check_target(target.mdl(), "the heads");
        plan.taps = medusa_drafter::tap_layers(target.mdl());
        plan.draft = std::make_shared<medusa_drafter>(o.heads, target);
        plan.draft_max = budget(6);
    } else if (o.method == "eagle") {
        if (!o.eagle) fail("ERR_INVALID_OPTION", "method 'eagle' needs heads: { file } with an EAGLE-3 head file");
        plan.taps = eagle_drafter::tap_layers(*o.eagle);
        plan.taps_all_rows = true;
        plan.draft = o.eagle_state ? o.eagle_state : std::make_shared<eagle_drafter>(o.eagle, target);
        plan.draft_max = budget(16);
    } else if (o.method == "chimera") {
        if (!o.chimera) fail("ERR_INVALID_OPTION", "method 'chimera' needs heads: { file } with a Chimera file (train-drafter --kind chimera)");
        o.chimera->check_target(target.mdl(), "the Chimera heads");
        plan.taps = chimera_drafter::tap_layers(*o.chimera);
        plan.taps_all_rows = true;
        plan.draft = o.chimera_state ? o.chimera_state : std::make_shared<chimera_drafter>(o.chimera, target);
        plan.draft_max = budget(16);
    } else if (o.method == "hidden-transfer") {
        if (!o.transfer) fail("ERR_INVALID_OPTION", "method 'hidden-transfer' needs heads: { file } with a Hidden Transfer file (train-drafter --kind hidden-transfer)");
        o.transfer->check_target(target.mdl(), "the Hidden Transfer maps");
        plan.transfer = o.transfer;
        plan.draft = std::make_shared<hidden_transfer_drafter>(o.transfer, target);
        // every verified row carries k pseudo rows: on a CPU the smallest tree pays best
        // (bench/results/hidden-transfer-budget.json)
        plan.draft_max = budget(1);
    } else if (o.method == "ead") {
        need_draft_model(o, target);
        // the small model's tokens are the output: its session runs its own weights and the model's
        // own attention choice (no Q8_0 draft copies), as a session of that model alone would
        session_params sp = draft_session_params(target);
        sp.own_attention = -1;
        sp.draft_weights = false;
        plan.ead = std::make_shared<ead_decoder>(o.draft_model, sp, o.ead);
    } else if (o.method == "lud") {
        if (!o.lud_model) fail("ERR_INVALID_OPTION", "method 'lud' needs lud: { file }");
        lud_check_target(*o.lud_model, target.mdl());
        if (o.lud_verify) {
            session_params lp = draft_session_params(target);
            lp.draft_weights = false;  // the LUD model's own matrices (the target's types)
            plan.draft = std::make_shared<lud_drafter>(o.lud_model, lp, o.lud);
            plan.draft_max = budget(o.lud.k + 1);
        } else {
            plan.lossy_model = o.lud_model;
            plan.parallel = o.lud;
        }
    } else if (o.method == "auto") {
        if (o.transfer) {
            fail("ERR_INVALID_OPTION", "method 'auto' does not draft with Hidden Transfer maps (their pseudo rows ride on every verification pass); "
                 "use method 'hidden-transfer'");
        }
        std::vector<auto_drafter::candidate> c;
        // retrieval from the context (rasd without a draft model: prompt lookup's matches as a
        // tree, measured better than lookup alone) and ADED's learnt table; Token Recycling is left
        // out: it accepted least on the code pair and its learning costs every step
        c.push_back({ "rasd", std::make_shared<rasd_drafter>(o.corpus, nullptr, draft_session_params(target), sampling) });
        if (o.aded) c.push_back({ "aded", o.aded });
        if (o.draft_model) {
            need_draft_model(o, target);
            draft_model_options dmo;
            dmo.slot = o.draft_slot;
            c.push_back({ "draft", std::make_shared<draft_model_drafter>(o.draft_model, draft_session_params(target), sampling, dmo) });
        }
        if (o.heads) {
            o.heads->check_target(target.mdl(), "the heads");
            plan.taps = medusa_drafter::tap_layers(target.mdl());
            c.push_back({ "medusa", std::make_shared<medusa_drafter>(o.heads, target) });
        } else if (o.eagle) {
            plan.taps = eagle_drafter::tap_layers(*o.eagle);
            plan.taps_all_rows = true;
            c.push_back({ "eagle", o.eagle_state ? o.eagle_state : std::make_shared<eagle_drafter>(o.eagle, target) });
        } else if (o.chimera) {
            o.chimera->check_target(target.mdl(), "the Chimera heads");
            plan.taps = chimera_drafter::tap_layers(*o.chimera);
            plan.taps_all_rows = true;
            c.push_back({ "chimera", o.chimera_state ? o.chimera_state : std::make_shared<chimera_drafter>(o.chimera, target) });
        }
        plan.draft_max = budget(32);
        plan.draft = std::make_shared<auto_drafter>(std::move(c), plan.draft_max, sampling.seed, o.auto_mem, target.n_threads());
    } else {
        fail("ERR_INVALID_OPTION", format("unknown method '%s'", o.method.c_str()));
    }
    return plan;
}

} // namespace specdec
