// Lexical Unit Decoding (arXiv 2405.15208): a fine-tune of the target that, given k placeholder
// tokens appended to the context, predicts the next k + 1 tokens in one pass (lud_train.cpp).
#pragma once

#include "train/train.h"

namespace specdec {

train_report train_lud(std::shared_ptr<const model> target, const train_options & options);

} // namespace specdec
