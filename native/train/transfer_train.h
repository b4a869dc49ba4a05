// Hidden Transfer maps trained against a frozen target (train/transfer_train.cpp).
#pragma once

#include "train/train.h"

namespace specdec {

train_report train_transfer(std::shared_ptr<const model> target, const train_options & options);

} // namespace specdec
