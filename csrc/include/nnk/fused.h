// Fused MLP training step: forward, loss, backward and optimizer update of a
// plain stack of Linear layers + elementwise activations in one native call.
//
// Model (L layers, dims d[0..L]):
//   h[-1] = x                                  x: (N, d0), row stride ldx
//   z[l]  = h[l-1] @ W[l].T + b[l]             W[l]: (d[l+1], d[l]) row-major
//   h[l]  = act[l](z[l])                       (bias + act in the GEMM epilogue)
//   loss  = cross_entropy(h[L-1], labels) | mse(h[L-1], target)   (mean reduction)
// Backward (dz[l] = dloss/dz[l]):
//   dW[l] = dz[l].T @ h[l-1]       db[l] = sum_rows dz[l]
//   dh[l-1] = dz[l] @ W[l]  (not for l = 0)    dz[l-1] = dh[l-1] * act'[l-1]
// Then one pass of the optimizer over the flat buffer params[0, n_params).
//
// Layout: every parameter lives in ONE flat buffer `params`; the gradient
// buffer `grads` and the optimizer state buffers `state[0..2]` have the same
// layout (same offsets), so the update is a single elementwise pass.
// Weights are kept as ordinary (out, in) row-major arrays: that is already the
// B^T operand the forward GEMM reads (its packing streams rows of W), and it
// is exactly what Parameter.data views and state_dict() present. See
// docs/fused-step.md for the trade-off against keeping pre-packed panels.
//
// Workspace: `mlp_workspace_size(...)` elements, allocated by the caller once
// per (model, batch size) and reused: a step allocates nothing.
#pragma once

#include "nnk/common.h"

namespace nnk {

enum class FusedAct : int { none = 0, relu = 1, leaky_relu = 2, gelu = 3, gelu_tanh = 4, silu = 5,
                            tanh = 6, sigmoid = 7 };
enum class FusedLoss : int { cross_entropy = 0, mse = 1 };
enum class FusedOpt : int { none = 0, sgd = 1, adam = 2, adamw = 3, rmsprop = 4 };

constexpr int kFusedMaxLayers = 32;

// Optimizer hyper-parameters, PyTorch semantics (torch.optim.*, single-tensor
// path). `step` is the 1-based step count after this update (Adam bias
// correction; SGD momentum buffer initialised from the gradient at step 1).
struct FusedOptim {
    FusedOpt kind = FusedOpt::none;
    double lr = 0.0, weight_decay = 0.0;
    double momentum = 0.0, dampening = 0.0;  // sgd, rmsprop (momentum)
    bool nesterov = false, maximize = false;
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adam, adamw (eps also rmsprop)
    double alpha = 0.99;                              // rmsprop smoothing
    bool centered = false;                            // rmsprop
    bool decay_bias = true;  // false: weight_decay on the weights only (scikit-learn's L2 term)
    long long step = 1;
};

// State buffers used per optimizer (each n_params long, same layout as params):
//   sgd:     state[0] = momentum buffer (if momentum != 0)
//   adam(w): state[0] = exp_avg, state[1] = exp_avg_sq
//   rmsprop: state[0] = square_avg, state[1] = momentum buffer (if momentum),
//            state[2] = grad_avg (if centered)
template <class T>
struct MlpModel {
    int n_layers = 0;
    index_t dims[kFusedMaxLayers + 1] = {};
    FusedAct act[kFusedMaxLayers] = {};
    T act_param[kFusedMaxLayers] = {};   // leaky_relu negative slope
    index_t w_off[kFusedMaxLayers] = {}; // offsets into params/grads/state
    index_t b_off[kFusedMaxLayers] = {}; // -1: layer has no bias
    T* params = nullptr;
    T* grads = nullptr;
    T* state[3] = {nullptr, nullptr, nullptr};
    index_t n_params = 0;
    // The weight and bias blocks cover [0, n_params) exactly once (no gaps,
    // no shared or overlapping blocks): set once the offsets are filled in
    // (mlp_blocks_tile_params). Lets a team update each block by the thread
    // that computed its gradient; false only costs that locality.
    bool blocks_tile = false;
};

// Whether M's weight and bias blocks tile its parameter buffer exactly (see
// MlpModel::blocks_tile): taken in order of offset, they must follow each
// other from 0 to n_params.
template <class T>
bool mlp_blocks_tile_params(const MlpModel<T>& M) {
    index_t lo[2 * kFusedMaxLayers], hi[2 * kFusedMaxLayers];
    int nb = 0;
    for (int l = 0; l < M.n_layers; ++l) {
        lo[nb] = M.w_off[l];
        hi[nb++] = M.w_off[l] + M.dims[l] * M.dims[l + 1];
        if (M.b_off[l] >= 0) {
            lo[nb] = M.b_off[l];
            hi[nb++] = M.b_off[l] + M.dims[l + 1];
        }
    }
    index_t covered = 0;
    for (int done = 0; done < nb; ++done) {
        int next = -1;
        for (int i = 0; i < nb; ++i)
            if (lo[i] == covered && hi[i] > lo[i]) next = i;
        if (next < 0) return false;
        covered = hi[next];
        hi[next] = lo[next];  // used
    }
    return covered == M.n_params;
}

template <class T>
struct MlpBatch {
    index_t n = 0;             // batch size
    const T* x = nullptr;      // (n, dims[0]), row stride ldx
    index_t ldx = 0;
    FusedLoss loss = FusedLoss::cross_entropy;
    const std::int64_t* labels = nullptr;  // cross_entropy: (n,) class indices
    const T* target = nullptr;             // mse: (n, dims[L]) C-contiguous
    T* workspace = nullptr;                // mlp_workspace_size elements, 64-byte aligned
};

// Does the backward of `act` need the pre-activation z (else it uses h)?
inline bool fused_act_needs_z(FusedAct a, double param) {
    return a == FusedAct::gelu || a == FusedAct::gelu_tanh || a == FusedAct::silu ||
           (a == FusedAct::leaky_relu && !(param > 0));
}

// Workspace layout (elements; every region starts on a 64-byte boundary):
//   h[l]  (n, dims[l+1])  for each layer l           outputs of each layer
//   z[l]  (n, dims[l+1])  for layers whose act needs z (see above)
//   g0, g1 (n, max dims[1..L])                         gradient ping-pong
//   rowloss (n)                                        per-row loss terms
struct MlpWorkspaceLayout {
    index_t h[kFusedMaxLayers] = {};
    index_t z[kFusedMaxLayers] = {};  // -1: z not stored (z == h for act none)
    index_t g0 = 0, g1 = 0, rowloss = 0, total = 0;
};

inline MlpWorkspaceLayout mlp_workspace_layout(int n_layers, const index_t* dims, const FusedAct* act,
                                               const double* act_param, index_t n) {
    MlpWorkspaceLayout w;
    const index_t align = 16;  // elements (64 bytes for float)
    auto take = [&](index_t count) {
        const index_t off = w.total;
        w.total += (count + align - 1) / align * align;
        return off;
    };
    index_t dmax = 1;
    for (int l = 0; l < n_layers; ++l) {
        w.h[l] = take(n * dims[l + 1]);
        if (dims[l + 1] > dmax) dmax = dims[l + 1];
    }
    for (int l = 0; l < n_layers; ++l)
        w.z[l] = fused_act_needs_z(act[l], act_param[l]) ? take(n * dims[l + 1]) : -1;
    w.g0 = take(n * dmax);
    w.g1 = take(n * dmax);
    w.rowloss = take(n);
    return w;
}

// A run of minibatches in one call: an epoch of a (shuffled) training loop.
// Batch b is rows order[b*batch, min((b+1)*batch, count)) of the data set
// (x and labels or target): the team gathers them into the epoch workspace,
// then takes one train step on them, with the optimizer's lr, weight_decay
// and eps replaced by lr[b], weight_decay[b], eps[b] and the step count
// t0 + b + 1. Outputs per batch: losses[b], its mean loss, and (if sq_norms
// is not null) sq_norms[b], the sum of squares of every weight matrix (not
// the biases) before that batch's update: each row summed in double by one
// thread, the rows added in order, so it does not depend on the threads.
// Rows of order are trusted (the caller checks them: 0 <= order[i] < rows,
// and labels in [0, C) for the rows visited).
template <class T>
struct MlpEpoch {
    const T* x = nullptr;                   // (rows, dims[0]), row stride ldx
    index_t ldx = 0;
    FusedLoss loss = FusedLoss::cross_entropy;
    const std::int64_t* labels = nullptr;  // cross_entropy: (rows,) class indices
    const T* target = nullptr;             // mse: (rows, dims[L]) C-contiguous
    const std::int64_t* order = nullptr;   // (count,) rows in the order visited
    index_t count = 0, batch = 0;          // batches: ceil(count / batch)
    const double* lr = nullptr;            // per batch
    const double* weight_decay = nullptr;  // per batch
    const double* eps = nullptr;           // per batch
    long long t0 = 0;                      // step count before the first batch
    double* losses = nullptr;              // out, per batch
    double* sq_norms = nullptr;            // out, per batch (optional)
    T* workspace = nullptr;                // mlp_epoch_layout(model, batch).total elements, 64-byte aligned
};

// The epoch's workspace: a step's (for `batch` rows) followed by the gather
// buffers and the per-row squared norms (every region 64-byte aligned;
// offsets in elements of T).
struct MlpEpochLayout {
    MlpWorkspaceLayout step;
    index_t xbuf = 0, ybuf = 0, tbuf = 0, row_sq = 0, total = 0;
};

template <class T>
MlpEpochLayout mlp_epoch_layout(const MlpModel<T>& M, index_t batch) {
    const int n_layers = M.n_layers;
    const index_t* dims = M.dims;
    double act_param[kFusedMaxLayers];
    for (int l = 0; l < n_layers; ++l) act_param[l] = static_cast<double>(M.act_param[l]);
    MlpEpochLayout e;
    e.step = mlp_workspace_layout(n_layers, dims, M.act, act_param, batch);
    const index_t align = 64 / static_cast<index_t>(sizeof(T));
    index_t total = (e.step.total + align - 1) / align * align;
    auto take = [&](index_t count) {
        const index_t off = total;
        total += (count + align - 1) / align * align;
        return off;
    };
    index_t rows_w = 0;
    for (int l = 0; l < n_layers; ++l) rows_w += dims[l + 1];
    e.xbuf = take(batch * dims[0]);
    e.ybuf = take((batch * index_t(sizeof(std::int64_t)) + index_t(sizeof(T)) - 1) / index_t(sizeof(T)));
    e.tbuf = take(batch * dims[n_layers]);
    e.row_sq = take((rows_w * index_t(sizeof(double)) + index_t(sizeof(T)) - 1) / index_t(sizeof(T)));
    e.total = total;
    return e;
}

struct FusedKernels {
    const char* name;
    // One training step; returns the loss (mean over the batch). Gradients
    // are written (overwritten) to model.grads, then the optimizer updates
    // model.params and model.state in place (skipped for FusedOpt::none).
    double (*mlp_train_step_f32)(const MlpModel<float>& model, const MlpBatch<float>& batch,
                                 const FusedOptim& opt);
    double (*mlp_train_step_f64)(const MlpModel<double>& model, const MlpBatch<double>& batch,
                                 const FusedOptim& opt);
    // An epoch of train steps (see MlpEpoch); `opt` gives everything but
    // lr, weight_decay, eps and the step count. A failed step throws; the
    // batches before it have been applied.
    void (*mlp_train_epoch_f32)(const MlpModel<float>& model, const MlpEpoch<float>& epoch, const FusedOptim& opt);
    void (*mlp_train_epoch_f64)(const MlpModel<double>& model, const MlpEpoch<double>& epoch,
                                const FusedOptim& opt);
    // Inference: out(n, dims[L]) := the network's output (no loss).
    void (*mlp_forward_f32)(float* out, const MlpModel<float>& model, const MlpBatch<float>& batch);
    void (*mlp_forward_f64)(double* out, const MlpModel<double>& model, const MlpBatch<double>& batch);
};

NNK_DECLARE_PER_ISA(const FusedKernels& fused_kernels())

#ifndef NNK_NS
inline const FusedKernels& fused() { return NNK_DISPATCH(fused_kernels); }
#endif

}  // namespace nnk
