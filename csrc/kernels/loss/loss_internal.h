// Declarations shared by the loss/ TUs of one ISA variant.
#pragma once

#include "nnk/loss.h"

namespace nnk {
namespace NNK_NS {

double cross_entropy_f32(const CrossEntropyProblem<float>& p);
double cross_entropy_f64(const CrossEntropyProblem<double>& p);
double nll_f32(const CrossEntropyProblem<float>& p);
double nll_f64(const CrossEntropyProblem<double>& p);

}  // namespace NNK_NS
}  // namespace nnk
