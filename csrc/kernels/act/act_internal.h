// Declarations shared by the act/ and loss/ TUs of one ISA variant.
#pragma once

#include "nnk/common.h"

namespace nnk {
namespace NNK_NS {

void softmax_forward_f32(float* out, const float* x, index_t rows, index_t cols, bool log);
void softmax_forward_f64(double* out, const double* x, index_t rows, index_t cols, bool log);
void softmax_backward_f32(float* grad_x, const float* grad_out, const float* y, index_t rows,
                          index_t cols, bool log);
void softmax_backward_f64(double* grad_x, const double* grad_out, const double* y, index_t rows,
                          index_t cols, bool log);

}  // namespace NNK_NS
}  // namespace nnk
