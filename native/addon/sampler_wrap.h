#pragma once

#include <napi.h>

namespace specdec {

// Registers _samplerDistribution() (test hook and micro-benchmark of the sampler chain).
void sampler_init(Napi::Env env, Napi::Object exports);

} // namespace specdec
