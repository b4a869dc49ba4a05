// Chimera trained against a frozen target (train/chimera_train.cpp).
#pragma once

#include "train/train.h"

namespace specdec {

train_report train_chimera(std::shared_ptr<const model> target, const train_options & options);

} // namespace specdec
