// Reading option objects that lib/ has already validated (types and ranges): numbers with their
// defaults, and the sampling options that generate() and the sampler test hook share.
#pragma once

#include "sampling/sampler.h"

#include <napi.h>

#include <cstdint>

namespace specdec {

// o[key] as a number; `def` when it is absent, undefined or null.
uint32_t get_u32(const Napi::Object & o, const char * key, uint32_t def);
double   get_f64(const Napi::Object & o, const char * key, double def);

// temperature, topK, topP, minP, repeatPenalty, frequencyPenalty, presencePenalty, penaltyLastN,
// seed (lib/session.ts's defaults where absent).
sampling_params sampling_options(const Napi::Object & o);

} // namespace specdec
