// Losses: the contract shared by the kernels and the bindings. Every kernel
// computes the loss and its gradient w.r.t. the input in one call and returns
// the reduced loss, scale * sum(per-sample losses), accumulated in float64 in
// row order (independent of the thread count).
//
// Softmax cross-entropy (fused), logits (n, c) C-contiguous, lp = log_softmax:
//   index targets (target_idx, int64, each in [0, c) or == ignore_index):
//     loss_i = (1-eps) w[y] (-lp[y]) + eps/c sum_j w[j] (-lp[j]);  0 if ignored
//     mean: scale = 1 / sum of w[y_i] over non-ignored rows
//   probability targets (target_prob, (n, c)):
//     loss_i = -sum_j w[j] t'[j] lp[j],  t' = (1-eps) t + eps/c;  mean: scale = 1/n
//   grad (n, c) (optional) := scale * d loss_i / d logits, written once per row;
//   losses (n) (optional) := loss_i. One pass over the logits per row: max
//   (+ weighted sums), exp stored into grad, then grad scaled in place.
// NLL: loss_i = -w[y] lp[i, y]; grad (optional) zero except -scale w[y] at (i, y).
// Pointwise losses of input/target (rows, k) C-contiguous (see PointLoss).
#pragma once

#include <cstdint>

#include "nnk/common.h"

namespace nnk {

template <class T>
struct CrossEntropyProblem {
    index_t n = 0, c = 0;
    const T* logits = nullptr;
    const std::int64_t* target_idx = nullptr;  // one of target_idx / target_prob
    const T* target_prob = nullptr;
    const T* weight = nullptr;  // (c) or null
    std::int64_t ignore_index = -100;
    double label_smoothing = 0.0;
    bool mean = true;
    // > 0: the mean's denominator instead of this problem's own (index targets,
    // no weights): the rows are one thread's share of a larger batch
    double mean_count = 0.0;
    T* grad = nullptr;    // (n, c) or null
    T* losses = nullptr;  // (n) or null
};

// mse (x-t)^2 | l1 |x-t| | huber (param = delta) | bce (logs clamped at -100) |
// bce_logits (pos_weight (k) or null) | kl_div t (log t - x) | kl_div_log exp(t) (t - x)
enum class PointLoss : int { mse = 0, l1, huber, bce, bce_logits, kl_div, kl_div_log };

template <class T>
struct PointwiseProblem {
    index_t rows = 0, k = 0;
    const T* input = nullptr;
    const T* target = nullptr;
    const T* pos_weight = nullptr;
    PointLoss loss = PointLoss::mse;
    double param = 0.0;
    double scale = 1.0;
    T* grad = nullptr;    // (rows, k) or null: scale * d loss / d input
    T* losses = nullptr;  // (rows, k) or null
};

struct LossKernels {
    const char* name;
    double (*cross_entropy_f32)(const CrossEntropyProblem<float>& p);
    double (*cross_entropy_f64)(const CrossEntropyProblem<double>& p);
    // nll: same problem (logits = log-probabilities, target_idx, label_smoothing unused)
    double (*nll_f32)(const CrossEntropyProblem<float>& p);
    double (*nll_f64)(const CrossEntropyProblem<double>& p);
    double (*pointwise_f32)(const PointwiseProblem<float>& p);
    double (*pointwise_f64)(const PointwiseProblem<double>& p);
};

NNK_DECLARE_PER_ISA(const LossKernels& loss_kernels())

#ifndef NNK_NS
inline const LossKernels& loss() { return NNK_DISPATCH(loss_kernels); }
#endif

}  // namespace nnk
