#pragma once

#include <napi.h>

namespace specdec {

// Registers _kernelIsas() and _kernelCheck() (test hooks of the CPU kernels).
void kernels_init(Napi::Env env, Napi::Object exports);

} // namespace specdec
