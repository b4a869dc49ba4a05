// N-API glue of the training subsystem (native/train): trainDrafter() runs on a worker thread,
// reports progress to a JS callback and can be aborted.
#pragma once

#include <napi.h>

namespace specdec {

// trainDrafter(model, options, onProgress?) -> { promise: Promise<report>, abort(): void }
Napi::Value train_drafter_js(const Napi::CallbackInfo & info);

} // namespace specdec
