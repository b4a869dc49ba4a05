// Method selection: the decoding method a generation runs, built from its options. Each
// speculative method is a drafter; autoregressive decoding has none.
#pragma once

#include "model/model.h"
#include "runtime/session.h"
#include "sampling/sampler.h"
#include "spec/drafter.h"
#include "spec/ead.h"
#include "heads/chimera_heads.h"
#include "heads/eagle3_heads.h"
#include "heads/medusa_heads.h"
#include "heads/transfer_heads.h"
#include "spec/drafters/auto.h"
#include "spec/drafters/draft_model.h"
#include "spec/drafters/lud.h"
#include "spec/drafters/token_recycling.h"
#include "train/online_learner.h"

#include <memory>
#include <string>
#include <vector>

namespace specdec {

struct method_options {
    std::string method = "autoregressive";
    uint32_t    draft_max = 0;          // tree budget (nodes); 0: the method's default
    uint32_t    lookup_max_ngram = 4;
    std::shared_ptr<const model> draft_model;            // draft, rsd, rasd (optional), auto (optional)
    std::shared_ptr<adjacency_matrix> recycling;         // token-recycling, auto: the session's matrix
    std::shared_ptr<drafter> aded;                       // aded: the session's tri-gram drafter
    std::vector<std::vector<int32_t>> corpus;            // rasd: the user's datastore, tokenized
    bool        rsd_beam = false;                        // rsd: Stochastic Beam Search trees
    std::shared_ptr<const medusa_heads> heads;           // medusa (required), auto (optional)
    std::shared_ptr<const eagle3_heads> eagle;           // eagle (required), auto (optional)
    std::shared_ptr<drafter> eagle_state;                // the session's EAGLE-3 drafter for those heads (kept across generations)
    std::shared_ptr<const chimera_heads> chimera;        // chimera (required), auto (optional)
    std::shared_ptr<drafter> chimera_state;              // the session's Chimera drafter for them (kept across generations)
    std::shared_ptr<const transfer_heads> transfer;      // hidden-transfer (required)
    std::shared_ptr<online_learner> online;              // draft: Online Speculative Decoding (the session's learner)
    ead_options ead;                                     // ead: threshold, window, dwell (the small model: draft_model)
    std::shared_ptr<const model> lud_model;              // lud: a LUD model of the target (lud_train.cpp)
    lud_params  lud;                                     // lud: k, alpha, its placeholder
    bool        lud_verify = false;                      // lud: the target verifies (lossless) or not (lossy)
    bool        biased_verifier = false;                 // test only
    std::shared_ptr<auto_memory> auto_mem;               // auto: what the session's earlier generations learnt
    std::shared_ptr<draft_session_slot> draft_slot;      // draft, rsd, rasd, auto: the session's draft session slot
};

struct method_plan {
    std::shared_ptr<drafter> draft;  // null: autoregressive
    uint32_t draft_max = 0;
    std::vector<uint32_t> taps;      // hidden-state taps the drafter reads from the target (session::set_taps)
    bool taps_all_rows = false;
    // Hidden Transfer: the maps the target's verification passes carry pseudo rows of (session::set_transfer);
    // null: none. The plan keeps them alive.
    std::shared_ptr<const transfer_heads> transfer;
    std::shared_ptr<ead_decoder> ead;  // 'ead' (lossy): no drafter, the decoder takes turns with the small model
    // Lossy Lexical Unit Decoding: the generation runs on a session of this model (not the target's),
    // parallel_k > 0 (generation_params::parallel_k).
    std::shared_ptr<const model> lossy_model;
    lud_params parallel;
};

// Throws specdec::error (ERR_INVALID_OPTION) for an unknown method or missing model.
// The target's taps must be set to plan.taps before the generation runs.
method_plan make_method(const method_options & o, const session & target, const sampling_params & sampling);

} // namespace specdec
