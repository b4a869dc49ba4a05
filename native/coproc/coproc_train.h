// Training the KV-cache coprocessor (coproc/coprocessor.h) on ggml-opt: coproc_train.cpp.
#pragma once

#include "train/train.h"

namespace specdec {

train_report train_coprocessor(std::shared_ptr<const model> target, const train_options & options);

} // namespace specdec
