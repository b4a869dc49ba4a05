// EAGLE-3 heads trained against a frozen target with the training-time test (train/eagle3_train.cpp).
#pragma once

#include "train/train.h"

namespace specdec {

train_report train_eagle3(std::shared_ptr<const model> target, const train_options & options);

} // namespace specdec
