// Fused MLP training step (see nnk/fused.h for the contract and the math).
// Compiled once per ISA variant; the GEMMs are this variant's GEMM driver
// (nnk::NNK_NS::gemm_kernels()), called with the bias/activation epilogue on
// the forward pass and transposed strides on the backward pass (packing reads
// the transposes; nothing is materialised).
//
// Data path of one step, batch n, layers l = 0..L-1:
//   forward   h[l] = act(h[l-1] @ W[l].T + b[l])     GEMM, bias+act in the epilogue
//             (activations whose derivative needs z: GEMM writes z, one pass makes h)
//   loss      rowloss[i], g0 = dloss/dh[L-1]           one pass over the logits
//   backward  dz[l] = g * act'(z or h)                 one pass (in place on g)
//             dW[l] = dz[l].T @ h[l-1]                 GEMM into grads (packing reads dz.T)
//             db[l] = colsum(dz[l])                    fixed row order
//             g'    = dz[l] @ W[l]   (l > 0 only)      GEMM, W read row-major
//   update    params/state/grads: one elementwise pass over the flat buffer
// Every reduction runs in a fixed order, so results do not depend on threads.
//
// Threads: the whole step is ONE OpenMP region (a Team, nnk/parallel.h). Every
// pass above takes its share of the work (GEMMs: a rectangle of C each, via
// sgemm_team; elementwise passes: a chunk; the bias column sums: a range of
// columns), and barriers separate the dependent phases: about ten barriers
// per step instead of one fork/join per GEMM and pass, and no pass is left
// on one thread while the other waits.
#include <omp.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "../gemm/gemm_epilogue.h"
#include "nnk/parallel.h"
#include "nnk/fpenv.h"
#include "nnk/fused.h"
#include "nnk/gemm.h"
#include "nnk/loss.h"

namespace nnk {
namespace NNK_NS {
namespace {

// Two ways to run a step (train_step below):
// * a team of nth > 1 threads in one region: every pass takes this thread's
//   share (the helpers below), barriers between dependent passes;
// * solo (Team{0, 1}, the caller alone, no region open): every pass may open
//   its own region when it is big enough (parallel_chunks, the plain GEMM),
//   and stays on the caller otherwise. Small batches (n <= kSmallBatch) run
//   solo: their passes are mostly too small to split, and a team's ten
//   barriers cost more than the two regions they need (batch 1 measured
//   4.5% slower as a team on 2 threads).

// This thread's share of a GEMM (every thread of the team calls it).
template <class T>
void call_gemm(const Team& t, const GemmProblem<T>& p);
template <>
void call_gemm<float>(const Team& t, const GemmProblem<float>& p) {
    if (t.nth == 1)
        gemm_kernels().sgemm(p);
    else
        gemm_kernels().sgemm_team(p, t.tid, t.nth);
}
template <>
void call_gemm<double>(const Team& t, const GemmProblem<double>& p) {
    if (t.nth == 1)
        gemm_kernels().dgemm(p);
    else
        gemm_kernels().dgemm_team(p, t.tid, t.nth);
}

// The rows of C this thread writes in call_gemm (whole rows), or false.
inline bool gemm_rows(const Team& t, const GemmProblem<float>& p, index_t& r0, index_t& r1) {
    return gemm_kernels().sgemm_team_rows(p, t.tid, t.nth, &r0, &r1);
}
inline bool gemm_rows(const Team& t, const GemmProblem<double>& p, index_t& r0, index_t& r1) {
    return gemm_kernels().dgemm_team_rows(p, t.tid, t.nth, &r0, &r1);
}

// out(n) = column sums of x(m, n): this thread's range of columns (each
// column summed over the rows in order whatever the split).
template <class T>
void colsum_cols(T* out, const T* x, index_t m, index_t n, index_t lo, index_t hi);
template <>
void colsum_cols<float>(float* out, const float* x, index_t m, index_t n, index_t lo, index_t hi) {
    gemm_kernels().colsum_f32(out + lo, x + lo, m, hi - lo, n, false);
}
template <>
void colsum_cols<double>(double* out, const double* x, index_t m, index_t n, index_t lo, index_t hi) {
    gemm_kernels().colsum_f64(out + lo, x + lo, m, hi - lo, n, false);
}

// Elements per thread below which a cheap elementwise pass is not split
// inside a team (a split costs no fork/join there, only the false sharing at
// a chunk edge; transcendental passes use an eighth of it). Solo, a pass
// opens its own region only from 16 times as many (a fork/join costs ~2-5 us).
constexpr index_t kElemMinWork = 1 << 11;
constexpr int kSoloFactorLog2 = 4;

// body(lo, hi) on this thread's chunk of an elementwise pass over [0, n).
template <class F>
void team_elems(const Team& t, index_t n, index_t min_items, F&& body) {
    if (t.nth == 1) {
        parallel_elems(n, min_items << kSoloFactorLog2, static_cast<F&&>(body));
        return;
    }
    index_t lo, hi;
    t.share(n, 16, min_items, lo, hi);
    if (lo < hi) body(lo, hi);
}


Epilogue epilogue_of(FusedAct a) {
    switch (a) {
        case FusedAct::relu: return Epilogue::relu;
        case FusedAct::leaky_relu: return Epilogue::leaky_relu;
        case FusedAct::gelu: return Epilogue::gelu;
        case FusedAct::gelu_tanh: return Epilogue::gelu_tanh;
        case FusedAct::silu: return Epilogue::silu;
        default: return Epilogue::none;
    }
}

// Activations the GEMM epilogue cannot apply (done in a pass after the GEMM).
template <class T>
inline T act_forward(FusedAct a, T x, T param) {
    switch (a) {
        case FusedAct::tanh: return std::tanh(x);
        case FusedAct::sigmoid: return T(1) / (T(1) + std::exp(-x));
        case FusedAct::none: return x;
        default: return apply_epilogue(x, epilogue_of(a), param);
    }
}

// g := g * act'(.) in place (PyTorch's backward formulas); z may alias h.
template <class T>
void act_backward(const Team& t, FusedAct a, T param, T* g, const T* z, const T* h, index_t count) {
    switch (a) {
        case FusedAct::none:
            return;
        case FusedAct::relu:  // threshold_backward on the result: h <= 0 -> 0
            team_elems(t, count, kElemMinWork, [&](index_t b, index_t e) {
#pragma omp simd
                for (index_t i = b; i < e; ++i) g[i] = h[i] <= T(0) ? T(0) : g[i];
            });
            return;
        case FusedAct::leaky_relu: {  // x > 0 ? g : g * slope (sign of z == sign of h if slope > 0)
            const T* s = param > T(0) ? h : z;
            team_elems(t, count, kElemMinWork, [&](index_t b, index_t e) {
#pragma omp simd
                for (index_t i = b; i < e; ++i) g[i] = s[i] > T(0) ? g[i] : g[i] * param;
            });
            return;
        }
        case FusedAct::tanh:
            team_elems(t, count, kElemMinWork, [&](index_t b, index_t e) {
#pragma omp simd
                for (index_t i = b; i < e; ++i) g[i] = g[i] * (T(1) - h[i] * h[i]);
            });
            return;
        case FusedAct::sigmoid:
            team_elems(t, count, kElemMinWork, [&](index_t b, index_t e) {
#pragma omp simd
                for (index_t i = b; i < e; ++i) g[i] = g[i] * (T(1) - h[i]) * h[i];
            });
            return;
        case FusedAct::gelu:
            team_elems(t, count, kElemMinWork / 8, [&](index_t b, index_t e) {
                const T kAlpha = T(0.70710678118654752440), kBeta = T(0.39894228040143267794);
                for (index_t i = b; i < e; ++i) {
                    const T x = z[i];
                    const T cdf = T(0.5) * (T(1) + std::erf(x * kAlpha));
                    const T pdf = std::exp(T(-0.5) * x * x) * kBeta;
                    g[i] = g[i] * (cdf + x * pdf);
                }
            });
            return;
        case FusedAct::gelu_tanh:
            team_elems(t, count, kElemMinWork / 8, [&](index_t b, index_t e) {
                const T kBeta = T(0.79788456080286535588), kKappa = T(0.044715);
                for (index_t i = b; i < e; ++i) {
                    const T x = z[i];
                    const T x_sq = x * x, x_cube = x_sq * x;
                    const T inner = kBeta * (x + kKappa * x_cube);
                    const T t = std::tanh(inner);
                    const T left = T(0.5) * x, right = T(1) + t;
                    const T left_d = T(0.5) * right;
                    const T tanh_d = T(1) - t * t;
                    const T inner_d = kBeta * (T(1) + T(3) * kKappa * x_sq);
                    g[i] = g[i] * (left_d + left * tanh_d * inner_d);
                }
            });
            return;
        case FusedAct::silu:
            team_elems(t, count, kElemMinWork / 8, [&](index_t b, index_t e) {
                for (index_t i = b; i < e; ++i) {
                    const T x = z[i];
                    const T s = T(1) / (T(1) + std::exp(-x));
                    g[i] = g[i] * (s * (T(1) + x * (T(1) - s)));
                }
            });
            return;
    }
}

// ---- small batches ------------------------------------------------------------
// For n <= kSmallBatch the three products are matrix-vector products: they read
// W in place (the packed GEMM would copy every weight into panels once more per
// GEMM, which at n = 1 costs as much as the arithmetic). Threads split the
// independent outputs only; every dot product / axpy chain runs in a fixed
// order, so results do not depend on the thread count.
constexpr index_t kSmallBatch = 4;

// f(begin, end) on this thread's chunk of [0, count) items of `item_work`
// each, chunks aligned to 16 items.
template <class F>
void team_items(const Team& t, index_t count, index_t item_work, F&& f) {
    if (t.nth == 1) {
        parallel_chunks(count, count * item_work, kParallelMinWork, 16, static_cast<F&&>(f));
        return;
    }
    const index_t min_items = item_work > 0 ? kParallelMinWork / item_work : 1;
    index_t lo, hi;
    t.share(count, 16, min_items > 0 ? min_items : 1, lo, hi);
    if (lo < hi) f(lo, hi);
}

// dst(n, dout) = epi(x(n, di; row stride ldx) @ W(dout, di).T + bias)
template <class T>
void small_forward(const Team& t, T* dst, const T* x, index_t ldx, const T* W, const T* bias, index_t n, index_t di,
                   index_t dout, Epilogue epi, T param) {
    team_items(t, dout, n * di, [&](index_t b, index_t e) {
        for (index_t j = b; j < e; ++j) {
            const T* __restrict wj = W + j * di;
            for (index_t i = 0; i < n; ++i) {
                const T* __restrict xi = x + i * ldx;
                T s = 0;
#pragma omp simd reduction(+ : s)
                for (index_t p = 0; p < di; ++p) s += xi[p] * wj[p];
                if (bias) s += bias[j];
                dst[i * dout + j] = epi != Epilogue::none ? apply_epilogue(s, epi, param) : s;
            }
        }
    });
}

// dW(dout, di) = dz(n, dout).T @ h(n, di; row stride ldh). With `update`,
// each row of the weights (params[w_off + j*di, +di)) is updated right after
// its gradient row is written, while that row is still in L1 (small batches
// are bound by the memory traffic of the update, not by arithmetic).
template <class T, class Update>
void small_weight_grad(const Team& t, T* dW, const T* dz, const T* h, index_t ldh, index_t n, index_t di, index_t dout,
                       const Update* update, index_t w_off) {
    team_items(t, dout, n * di, [&](index_t b, index_t e) {
        for (index_t j = b; j < e; ++j) {
            T* __restrict w = dW + j * di;
            const T d0 = dz[j];
            const T* __restrict h0 = h;
#pragma omp simd
            for (index_t p = 0; p < di; ++p) w[p] = d0 * h0[p];
            for (index_t i = 1; i < n; ++i) {
                const T d = dz[i * dout + j];
                const T* __restrict hi = h + i * ldh;
#pragma omp simd
                for (index_t p = 0; p < di; ++p) w[p] += d * hi[p];
            }
            if (update) update->range(w_off + j * di, w_off + (j + 1) * di);
        }
    });
}

// dh(n, di) = dz(n, dout) @ W(dout, di)
template <class T>
void small_input_grad(const Team& t, T* dh, const T* dz, const T* W, index_t n, index_t di, index_t dout) {
    team_items(t, di, n * dout, [&](index_t b, index_t e) {
        for (index_t i = 0; i < n; ++i) {
            T* __restrict o = dh + i * di;
            for (index_t p = b; p < e; ++p) o[p] = T(0);
            for (index_t j = 0; j < dout; ++j) {
                const T d = dz[i * dout + j];
                const T* __restrict wj = W + j * di;
#pragma omp simd
                for (index_t p = b; p < e; ++p) o[p] += d * wj[p];
            }
        }
    });
}

// ---- the team's shared state ---------------------------------------------------
// What the threads of one step share besides the model and the workspace.
// The flags are written only in phases before a barrier and read only after
// it, so every thread reads the same value and takes the same branch (a
// thread that left early would leave the others waiting at a barrier).
struct StepShared {
    OmpErrors errors;                     // first exception, rethrown after the region
    std::atomic<bool> failed{false};      // an exception was caught (e.g. bad_alloc)
    std::atomic<bool> bad_label{false};   // a class index out of range
    std::atomic<index_t> next_chunk{0};   // the optimizer pass hands out chunks dynamically
    double loss = 0;                      // written by the leader

    // Run one phase's work; never throws (exceptions are kept for later).
    template <class F>
    void run(F&& f) {
        errors.run([&] {
            try {
                f();
            } catch (...) {
                failed.store(true, std::memory_order_relaxed);
                throw;
            }
        });
    }
};

// ---- forward ----------------------------------------------------------------
// Ends with a barrier: the output is complete on return, on every thread.
template <class T>
const T* forward(const Team& t, StepShared& sh, const MlpModel<T>& M, const MlpBatch<T>& B,
                 const MlpWorkspaceLayout& W, T* final_out) {
    const index_t n = B.n;
    const T* in = B.x;
    index_t ld_in = B.ldx;
    for (int l = 0; l < M.n_layers; ++l) {
        const index_t di = M.dims[l], dout = M.dims[l + 1];
        const bool last = l + 1 == M.n_layers;
        T* h = (last && final_out) ? final_out : B.workspace + W.h[l];
        const FusedAct a = M.act[l];
        const bool via_z = W.z[l] >= 0 || a == FusedAct::tanh || a == FusedAct::sigmoid;
        T* dst = W.z[l] >= 0 ? B.workspace + W.z[l] : h;
        GemmProblem<T> p;
        p.m = n;
        p.n = dout;
        p.k = di;
        p.a = in;
        p.rsa = ld_in;
        p.csa = 1;
        p.b = M.params + M.w_off[l];  // W.T: element (p, j) = W[j, p]
        p.rsb = 1;
        p.csb = di;
        p.c = dst;
        p.rsc = dout;
        p.csc = 1;
        p.bias = M.b_off[l] >= 0 ? M.params + M.b_off[l] : nullptr;
        p.epilogue = via_z ? Epilogue::none : epilogue_of(a);
        p.epilogue_param = M.act_param[l];
        sh.run([&] {
            if (n <= kSmallBatch)
                small_forward<T>(t, dst, in, ld_in, M.params + M.w_off[l], p.bias, n, di, dout,
                                 p.epilogue, p.epilogue_param);
            else
                call_gemm<T>(t, p);
        });
        if (via_z) {
            t.barrier();
            const T param = M.act_param[l];
            team_elems(t, n * dout, kElemMinWork / 8, [&](index_t b, index_t e) {
                for (index_t i = b; i < e; ++i) h[i] = act_forward(a, dst[i], param);
            });
        }
        t.barrier();
        in = h;
        ld_in = dout;
    }
    return in;
}

// ---- loss -------------------------------------------------------------------
inline void cross_entropy_rows(const CrossEntropyProblem<float>& p) { loss_kernels().cross_entropy_f32(p); }
inline void cross_entropy_rows(const CrossEntropyProblem<double>& p) { loss_kernels().cross_entropy_f64(p); }

// Writes g = dloss/dout (n, c) and the per-row loss terms for this thread's
// rows; then, after a barrier (so g is complete on return), the leader sums
// them in row order (double accumulator) into sh.loss, the mean loss.
template <class T>
void loss_and_grad(const Team& t, StepShared& sh, const MlpBatch<T>& B, const T* out, index_t c, T* g,
                   T* rowloss) {
    const index_t n = B.n;
    const index_t min_rows = (index_t(1) << 8) / (c > 0 ? c : 1) + 1;
    if (B.loss == FusedLoss::cross_entropy) {
        // The labels are checked here (a bad one fails the step; its row gets
        // zeros); the rows go to this ISA's cross-entropy kernel (nnk/loss.h:
        // the vectorised short-row paths), with the whole batch's mean.
        team_elems(t, n, min_rows, [&](index_t b, index_t e) {
            bool ok = true;
            for (index_t i = b; i < e; ++i) {
                const std::int64_t y = B.labels[i];
                if (y < 0 || y >= c) {
                    ok = false;
                    for (index_t j = 0; j < c; ++j) g[i * c + j] = T(0);
                    rowloss[i] = T(0);
                }
            }
            if (!ok) {
                sh.bad_label.store(true, std::memory_order_relaxed);
                return;
            }
            CrossEntropyProblem<T> p;
            p.n = e - b;
            p.c = c;
            p.logits = out + b * c;
            p.target_idx = B.labels + b;
            p.mean = true;
            p.mean_count = double(n);
            p.grad = g + b * c;
            p.losses = rowloss + b;
            cross_entropy_rows(p);
        });
    } else {
        const T scale = T(2) / T(n * c);
        team_elems(t, n, min_rows, [&](index_t b, index_t e) {
            for (index_t i = b; i < e; ++i) {
                const T* o = out + i * c;
                const T* t = B.target + i * c;
                T* gi = g + i * c;
                T s = 0;
                for (index_t j = 0; j < c; ++j) {
                    const T d = o[j] - t[j];
                    s += d * d;
                    gi[j] = scale * d;
                }
                rowloss[i] = s;
            }
        });
    }
    t.barrier();
    if (t.leader()) {
        double total = 0;
        for (index_t i = 0; i < n; ++i) total += static_cast<double>(rowloss[i]);
        sh.loss = B.loss == FusedLoss::cross_entropy ? total / double(n) : total / double(n * c);
    }
}

// ---- optimizer ----------------------------------------------------------------
// One pass over [0, count) of params/grads/state; PyTorch's single-tensor
// formulas, operation for operation. Each loop is a separate function with
// restrict pointers, scalars by value and the options as template flags, so
// the compiler vectorises it (no aliasing, no branches in the loop body).
// Denormals: the update passes run in a FlushDenormals scope (nnk/fpenv.h).

template <class T, bool WD, bool MOMENTUM, bool NESTEROV>
void sgd_chunk(T* __restrict p, const T* __restrict gr, T* __restrict buf, index_t b, index_t e, T gs,
               T lr, T wd, T mom, T damp1, bool first) {
#pragma omp simd
    for (index_t i = b; i < e; ++i) {
        T g = gs * gr[i];
        if (WD) g = g + wd * p[i];
        if (MOMENTUM) {
            const T bi = first ? g : mom * buf[i] + damp1 * g;
            buf[i] = bi;
            g = NESTEROV ? g + mom * bi : bi;
        }
        p[i] = p[i] + (-lr) * g;
    }
}

template <class T, int WD>  // WD: 0 none, 1 L2 (adam), 2 decoupled (adamw)
void adam_chunk(T* __restrict p, const T* __restrict gr, T* __restrict m, T* __restrict v, index_t b,
                index_t e, T gs, T wd, T decay, T b2, T w1, T w2, T eps, T step_size, T inv_bc2_sqrt) {
#pragma omp simd
    for (index_t i = b; i < e; ++i) {
        T g = gs * gr[i];
        T pi = p[i];
        if (WD == 1) g = g + wd * pi;
        if (WD == 2) pi = pi * decay;
        // exp_avg.lerp_(grad, 1 - beta1) (weight < 0.5 form; w1 >= 0.5 handled by the caller)
        const T mi = m[i] + w1 * (g - m[i]);
        const T vi = v[i] * b2 + w2 * (g * g);
        m[i] = mi;
        v[i] = vi;
        const T denom = std::sqrt(vi) * inv_bc2_sqrt + eps;  // x 1/sqrt(bc2): see optim.cpp
        p[i] = pi + (-step_size) * (mi / denom);
    }
}

template <class T, bool WD, bool CENTERED, bool MOMENTUM>
void rmsprop_chunk(T* __restrict p, const T* __restrict gr, T* __restrict sq, T* __restrict buf,
                   T* __restrict ga, index_t b, index_t e, T gs, T lr, T wd, T alpha, T w, T eps, T mom) {
#pragma omp simd
    for (index_t i = b; i < e; ++i) {
        T g = gs * gr[i];
        if (WD) g = g + wd * p[i];
        const T s = sq[i] * alpha + w * (g * g);
        sq[i] = s;
        T avg;
        if (CENTERED) {
            const T a = ga[i] + w * (g - ga[i]);
            ga[i] = a;
            avg = std::sqrt(s + (-(a * a))) + eps;
        } else {
            avg = std::sqrt(s) + eps;
        }
        if (MOMENTUM) {
            const T bi = buf[i] * mom + g / avg;
            buf[i] = bi;
            p[i] = p[i] + (-lr) * bi;
        } else {
            p[i] = p[i] + (-lr) * (g / avg);
        }
    }
}

// Scalar fallback for lerp weights >= 0.5 (beta1 or alpha <= 0.5): PyTorch's other lerp form.
template <class T>
inline T lerp_torch(T a, T b, T w) {
    return w < T(0.5) ? a + w * (b - a) : b - (b - a) * (T(1) - w);
}

// The optimizer's update of params[lo, hi), scalars computed once per step
// (the constructor), so that it can run on any ranges: the whole buffer
// split across threads (optimizer_update), or one row of a weight matrix
// right after its gradient is computed (small batches, train_step).
template <class T>
class OptimUpdate {
  public:
    OptimUpdate(const MlpModel<T>& M, const FusedOptim& o)
        : o_(o), p_(M.params), gr_(M.grads), s0_(M.state[0]), s1_(M.state[1]), s2_(M.state[2]) {
        lr_ = T(o.lr);
        wd_ = T(o.weight_decay);
        gs_ = o.maximize ? T(-1) : T(1);
        has_wd_ = o.weight_decay != 0.0;
        switch (o.kind) {
            case FusedOpt::sgd:
                mom_ = T(o.momentum);
                damp1_ = T(1.0 - o.dampening);
                break;
            case FusedOpt::adam:
            case FusedOpt::adamw: {
                b2_ = T(o.beta2);
                eps_ = T(o.eps);
                w1_ = T(1.0 - o.beta1);
                w2_ = T(1.0 - o.beta2);
                const double bc1 = 1.0 - std::pow(o.beta1, double(o.step));
                const double bc2 = 1.0 - std::pow(o.beta2, double(o.step));
                step_size_ = T(o.lr / bc1);
                inv_bc2_sqrt_ = T(1.0 / std::sqrt(bc2));
                decay_ = T(1.0 - o.lr * o.weight_decay);
                wdk_ = !has_wd_ ? 0 : o.kind == FusedOpt::adamw ? 2 : 1;
                break;
            }
            case FusedOpt::rmsprop:
                alpha_ = T(o.alpha);
                w_ = T(1.0 - o.alpha);
                eps_ = T(o.eps);
                mom_ = T(o.momentum);
                break;
            case FusedOpt::none:
                break;
        }
    }

    // Update params[lo, hi) (serial; every element independently).
    void range(index_t lo, index_t hi) const {
        if (lo >= hi) return;
        FlushDenormals ftz;
        T* p = p_;
        const T* gr = gr_;
        const T gs = gs_, lr = lr_, wd = wd_;
        const bool has_wd = has_wd_;
        switch (o_.kind) {
            case FusedOpt::none:
                return;
            case FusedOpt::sgd: {
                const T mom = mom_, damp1 = damp1_;
                T* buf = s0_;
                const bool first = o_.step <= 1, has_m = o_.momentum != 0.0, nest = o_.nesterov;
                if (has_m) {
                    if (nest) {
                        if (has_wd) sgd_chunk<T, true, true, true>(p, gr, buf, lo, hi, gs, lr, wd, mom, damp1, first);
                        else sgd_chunk<T, false, true, true>(p, gr, buf, lo, hi, gs, lr, wd, mom, damp1, first);
                    } else {
                        if (has_wd) sgd_chunk<T, true, true, false>(p, gr, buf, lo, hi, gs, lr, wd, mom, damp1, first);
                        else sgd_chunk<T, false, true, false>(p, gr, buf, lo, hi, gs, lr, wd, mom, damp1, first);
                    }
                } else {
                    if (has_wd) sgd_chunk<T, true, false, false>(p, gr, buf, lo, hi, gs, lr, wd, mom, damp1, first);
                    else sgd_chunk<T, false, false, false>(p, gr, buf, lo, hi, gs, lr, wd, mom, damp1, first);
                }
                return;
            }
            case FusedOpt::adam:
            case FusedOpt::adamw: {
                const T b2 = b2_, eps = eps_, w1 = w1_, w2 = w2_, step_size = step_size_;
                const T inv_bc2_sqrt = inv_bc2_sqrt_, decay = decay_;
                const int wdk = wdk_;
                T* m = s0_;
                T* v = s1_;
                if (!(w1 < T(0.5))) {  // rare (beta1 <= 0.5): scalar loop with the other lerp form
                    for (index_t i = lo; i < hi; ++i) {
                        T g = gs * gr[i], pi = p[i];
                        if (wdk == 1) g = g + wd * pi;
                        if (wdk == 2) pi = pi * decay;
                        m[i] = lerp_torch(m[i], g, w1);
                        v[i] = v[i] * b2 + w2 * (g * g);
                        p[i] = pi + (-step_size) * (m[i] / (std::sqrt(v[i]) * inv_bc2_sqrt + eps));
                    }
                    return;
                }
                if (wdk == 0) adam_chunk<T, 0>(p, gr, m, v, lo, hi, gs, wd, decay, b2, w1, w2, eps, step_size, inv_bc2_sqrt);
                else if (wdk == 1) adam_chunk<T, 1>(p, gr, m, v, lo, hi, gs, wd, decay, b2, w1, w2, eps, step_size, inv_bc2_sqrt);
                else adam_chunk<T, 2>(p, gr, m, v, lo, hi, gs, wd, decay, b2, w1, w2, eps, step_size, inv_bc2_sqrt);
                return;
            }
            case FusedOpt::rmsprop: {
                const T alpha = alpha_, w = w_, eps = eps_, mom = mom_;
                const bool centered = o_.centered, has_m = o_.momentum > 0.0;
                T* sq = s0_;
                T* buf = s1_;
                T* ga = s2_;
                if (centered && !(w < T(0.5))) {  // rare (alpha <= 0.5): scalar, other lerp form
                    for (index_t i = lo; i < hi; ++i) {
                        T g = gs * gr[i];
                        if (has_wd) g = g + wd * p[i];
                        sq[i] = sq[i] * alpha + w * (g * g);
                        ga[i] = lerp_torch(ga[i], g, w);
                        const T avg = std::sqrt(sq[i] + (-(ga[i] * ga[i]))) + eps;
                        if (has_m) {
                            buf[i] = buf[i] * mom + g / avg;
                            p[i] = p[i] + (-lr) * buf[i];
                        } else {
                            p[i] = p[i] + (-lr) * (g / avg);
                        }
                    }
                    return;
                }
#define NNK_RMS(WDF, CF, MF) rmsprop_chunk<T, WDF, CF, MF>(p, gr, sq, buf, ga, lo, hi, gs, lr, wd, alpha, w, eps, mom)
                if (has_wd) {
                    if (centered) { if (has_m) NNK_RMS(true, true, true); else NNK_RMS(true, true, false); }
                    else { if (has_m) NNK_RMS(true, false, true); else NNK_RMS(true, false, false); }
                } else {
                    if (centered) { if (has_m) NNK_RMS(false, true, true); else NNK_RMS(false, true, false); }
                    else { if (has_m) NNK_RMS(false, false, true); else NNK_RMS(false, false, false); }
                }
#undef NNK_RMS
                return;
            }
        }
    }

  private:
    const FusedOptim& o_;
    T* p_;
    const T* gr_;
    T* s0_;
    T* s1_;
    T* s2_;
    T lr_ = 0, wd_ = 0, gs_ = 1, mom_ = 0, damp1_ = 1;
    T b2_ = 0, eps_ = 0, w1_ = 0, w2_ = 0, step_size_ = 0, inv_bc2_sqrt_ = 1, decay_ = 1;
    T alpha_ = 0, w_ = 0;
    int wdk_ = 0;
    bool has_wd_ = false;
};

// The optimizer's hyper-parameters for the biases: no weight decay when
// decay_bias is false (scikit-learn's L2 penalty covers the weights only).
inline FusedOptim bias_optim(const FusedOptim& o) {
    FusedOptim b = o;
    if (!o.decay_bias) b.weight_decay = 0.0;
    return b;
}

// The optimizer's update of params[b, e). With decay_bias false the range is
// cut at the bias vectors, which get the update without weight decay (ub).
template <class T>
void optimizer_update_range(const MlpModel<T>& M, const FusedOptim& o, const OptimUpdate<T>& u,
                            const OptimUpdate<T>& ub, index_t b, index_t e) {
    if (o.decay_bias || o.weight_decay == 0.0) {
        u.range(b, e);
        return;
    }
    index_t i = b;
    while (i < e) {
        // the bias vector containing i, or the next one after it
        index_t bs = e, be = e;
        for (int l = 0; l < M.n_layers; ++l) {
            const index_t lo = M.b_off[l], hi = lo + M.dims[l + 1];
            if (lo >= 0 && hi > i && lo < bs) {
                bs = lo;
                be = hi;
            }
        }
        if (bs > i) {  // weights up to the bias vector
            const index_t stop = bs < e ? bs : e;
            u.range(i, stop);
            i = stop;
            continue;
        }
        const index_t stop = be < e ? be : e;  // i lies in [bs, be)
        ub.range(i, stop);
        i = stop;
    }
}

// The optimizer pass over the whole buffer: the team takes chunks of
// kUpdateChunk elements from a shared counter (elementwise, so the order
// does not matter), which balances the pass when one thread is slowed
// (a static half each measured 8.9% vs 5.3% of the cycles at batch 64).
constexpr index_t kUpdateChunk = 8192;
template <class T>
void optimizer_update(const Team& t, StepShared& sh, const MlpModel<T>& M, const FusedOptim& o,
                      const OptimUpdate<T>& u, const OptimUpdate<T>& ub) {
    if (o.kind == FusedOpt::none) return;
    if (t.nth == 1) {
        parallel_elems(M.n_params, kElemMinWork << kSoloFactorLog2,
                       [&](index_t b, index_t e) { optimizer_update_range(M, o, u, ub, b, e); });
        return;
    }
    for (;;) {
        const index_t b = sh.next_chunk.fetch_add(kUpdateChunk, std::memory_order_relaxed);
        if (b >= M.n_params) return;
        const index_t e = b + kUpdateChunk < M.n_params ? b + kUpdateChunk : M.n_params;
        optimizer_update_range(M, o, u, ub, b, e);
    }
}

template <class T>
MlpWorkspaceLayout layout_of(const MlpModel<T>& M, index_t n) {
    double ap[kFusedMaxLayers];
    for (int l = 0; l < M.n_layers; ++l) ap[l] = double(M.act_param[l]);
    return mlp_workspace_layout(M.n_layers, M.dims, M.act, ap, n);
}

// One step, run by every thread of the team (see the top of this file).
// With `owner_update` (a team, and weights and biases that tile the
// parameter buffer exactly), the optimizer pass at the end is split by who
// computed the gradients instead of by chunks from a shared counter: each
// thread updates its rows of every W[l] (its share of the dW GEMM) and its
// columns of every b[l] (its column sums). Those gradients are still in its
// cache, and a row's parameters and optimizer state stay with one core from
// step to step (2 threads, batch 200, 784-100-10: 1.5-2.5% faster steps).
// When a dW GEMM splits columns too, the rows of that W[l] are shared out
// statically instead. Every element gets the same update either way, and
// nothing is updated before the last barrier: a failed step changes nothing.
template <class T>
void train_step_team(const Team& t, StepShared& sh, const MlpModel<T>& M, const MlpBatch<T>& B,
                     const FusedOptim& opt, const MlpWorkspaceLayout& W, bool owner_update) {
    const index_t n = B.n;
    const int L = M.n_layers;
    T* ws = B.workspace;
    const T* out = forward<T>(t, sh, M, B, W, static_cast<T*>(nullptr));
    const index_t c = M.dims[L];
    T* g = ws + W.g0;     // dloss/dh[l]  -> dz[l] in place
    T* gnext = ws + W.g1;  // dloss/dh[l-1]
    loss_and_grad(t, sh, B, out, c, g, ws + W.rowloss);
    if (sh.bad_label.load(std::memory_order_relaxed)) return;  // written before the barrier: all agree
    // Small batches: the optimizer runs inside the backward pass, row by row
    // (see small_weight_grad), so each layer's input gradient is computed
    // before its weights change.
    const bool fused_update = n <= kSmallBatch && opt.kind != FusedOpt::none;
    const bool owner = owner_update && !fused_update && opt.kind != FusedOpt::none && t.nth > 1;
    index_t w_rows[kFusedMaxLayers][2] = {}, b_cols[kFusedMaxLayers][2] = {};  // owner: this thread's
    const OptimUpdate<T> update(M, opt);
    const FusedOptim opt_bias = bias_optim(opt);  // OptimUpdate keeps a reference to it
    const OptimUpdate<T> update_bias(M, opt_bias);
    for (int l = L - 1; l >= 0; --l) {
        const index_t di = M.dims[l], dout = M.dims[l + 1];
        const T* h = ws + W.h[l];
        const T* z = W.z[l] >= 0 ? ws + W.z[l] : h;
        if (M.act[l] != FusedAct::none) {
            act_backward<T>(t, M.act[l], M.act_param[l], g, z, h, n * dout);
            t.barrier();
        }
        const T* hin = l > 0 ? ws + W.h[l - 1] : B.x;
        const index_t ld_in = l > 0 ? di : B.ldx;
        // dX, dW and db of this layer are independent: no barrier between
        // them, except that the small-batch update changes W[l] in dW's pass
        // while dX reads it.
        if (l > 0) {  // dh[l-1](n, di) = dz @ W[l]
            GemmProblem<T> p;
            p.m = n;
            p.n = di;
            p.k = dout;
            p.a = g;
            p.rsa = dout;
            p.csa = 1;
            p.b = M.params + M.w_off[l];
            p.rsb = di;
            p.csb = 1;
            p.c = gnext;
            p.rsc = di;
            p.csc = 1;
            sh.run([&] {
                if (n <= kSmallBatch)
                    small_input_grad<T>(t, gnext, g, M.params + M.w_off[l], n, di, dout);
                else
                    call_gemm<T>(t, p);
            });
            if (fused_update) t.barrier();
        }
        {  // dW[l](dout, di) = dz.T @ h[l-1]
            GemmProblem<T> p;
            p.m = dout;
            p.n = di;
            p.k = n;
            p.a = g;
            p.rsa = 1;
            p.csa = dout;
            p.b = hin;
            p.rsb = ld_in;
            p.csb = 1;
            p.c = M.grads + M.w_off[l];
            p.rsc = di;
            p.csc = 1;
            sh.run([&] {
                if (n <= kSmallBatch)
                    small_weight_grad<T>(t, p.c, g, hin, ld_in, n, di, dout,
                                         fused_update ? &update : nullptr, M.w_off[l]);
                else
                    call_gemm<T>(t, p);
            });
            if (owner && !gemm_rows(t, p, w_rows[l][0], w_rows[l][1]))
                t.share(dout, 1, 1, w_rows[l][0], w_rows[l][1]);
        }
        if (M.b_off[l] >= 0) {  // db[l] = colsum(dz), this thread's columns (then their update)
            sh.run([&] {
                index_t lo, hi;
                t.share(dout, 16, 1, lo, hi);
                if (lo < hi) {
                    colsum_cols<T>(M.grads + M.b_off[l], g, n, dout, lo, hi);
                    if (fused_update) update_bias.range(M.b_off[l] + lo, M.b_off[l] + hi);
                    b_cols[l][0] = lo;
                    b_cols[l][1] = hi;
                }
            });
        }
        t.barrier();
        if (l > 0) {
            T* tmp = g;
            g = gnext;
            gnext = tmp;
        }
    }
    // every exception was raised before the last barrier: all threads agree
    if (fused_update || sh.failed.load(std::memory_order_relaxed)) return;
    if (!owner) {
        optimizer_update(t, sh, M, opt, update, update_bias);
        return;
    }
    for (int l = 0; l < L; ++l) {
        const index_t di = M.dims[l];
        update.range(M.w_off[l] + w_rows[l][0] * di, M.w_off[l] + w_rows[l][1] * di);
        if (M.b_off[l] >= 0) update_bias.range(M.b_off[l] + b_cols[l][0], M.b_off[l] + b_cols[l][1]);
    }
}

// Threads of the step's team: one per 2^19 multiply-adds and update elements
// (a region costs a fork/join plus ~10 barriers); 1 = solo (see above).
template <class T>
int step_threads(const MlpModel<T>& M, index_t n) {
    if (n <= kSmallBatch) return 1;
    index_t macs = 0;
    for (int l = 0; l < M.n_layers; ++l) macs += M.dims[l] * M.dims[l + 1];
    return threads_for(3 * n * macs + 4 * M.n_params, index_t(1) << 19);
}

// Run body(team) solo (nt <= 1) or on a team of nt threads in one region;
// the first exception of any thread is rethrown afterwards.
template <class F>
void run_team(int nt, StepShared& sh, F&& body) {
    if (nt <= 1) {
        body(Team{0, 1});
    } else {
#pragma omp parallel num_threads(nt)
        body(Team{omp_get_thread_num(), omp_get_num_threads()});
    }
    sh.errors.rethrow();
}

template <class T>
double train_step(const MlpModel<T>& M, const MlpBatch<T>& B, const FusedOptim& opt) {
    const MlpWorkspaceLayout W = layout_of(M, B.n);
    StepShared sh;
    run_team(step_threads(M, B.n), sh,
             [&](const Team& t) { train_step_team<T>(t, sh, M, B, opt, W, M.blocks_tile); });
    if (sh.bad_label.load()) throw std::invalid_argument("y: a class index is out of range [0, C)");
    return sh.loss;
}

// ---- epochs ---------------------------------------------------------------------
// An epoch (nnk/fused.h, MlpEpoch) is ONE region for all its batches: per
// batch, the team gathers the rows, then runs train_step_team on them. What
// that saves over a step per call: the caller's per-step work (Python: ~40
// us at batch 200 on 2 threads, half of it the L2 penalty's np.dot), a
// fork/join for the gather and one for the step.

// dst(rows lo..hi, d) := x[order[i], :], each row's lines prefetched
// kGatherAhead rows ahead (nnk/common.h; as _C.take_rows does).
template <class T>
void gather_rows(T* dst, const T* x, index_t ldx, const std::int64_t* order, index_t lo, index_t hi,
                 index_t d) {
    const std::size_t bytes = static_cast<std::size_t>(d) * sizeof(T);
    for (index_t i = lo; i < hi; ++i) {
        if (i + kGatherAhead < hi) prefetch_lines(x + order[i + kGatherAhead] * ldx, bytes);
        std::memcpy(dst + i * d, x + order[i] * ldx, bytes);
    }
}

// row_sq[r] := sum of squares of row r of the weight matrices (W[0]'s rows,
// then W[1]'s, ...), in double; this thread's rows of each matrix.
template <class T>
void weight_sq_rows(const Team& t, const MlpModel<T>& M, double* row_sq) {
    for (int l = 0; l < M.n_layers; ++l) {
        const index_t di = M.dims[l], dout = M.dims[l + 1];
        index_t lo, hi;
        t.share(dout, 1, 1, lo, hi);
        for (index_t j = lo; j < hi; ++j) {
            const T* __restrict w = M.params + M.w_off[l] + j * di;
            double s = 0;
#pragma omp simd reduction(+ : s)
            for (index_t p = 0; p < di; ++p) s += static_cast<double>(w[p]) * static_cast<double>(w[p]);
            row_sq[j] = s;
        }
        row_sq += dout;
    }
}

template <class T>
void train_epoch_team(const Team& t, StepShared& sh, const MlpModel<T>& M, const MlpEpoch<T>& E,
                      const FusedOptim& base, const MlpEpochLayout& EL) {
    const int L = M.n_layers;
    const index_t d0 = M.dims[0], c = M.dims[L];
    const index_t nb = (E.count + E.batch - 1) / E.batch;
    T* xbuf = E.workspace + EL.xbuf;
    std::int64_t* ybuf = reinterpret_cast<std::int64_t*>(E.workspace + EL.ybuf);
    T* tbuf = E.workspace + EL.tbuf;
    double* row_sq = reinterpret_cast<double*>(E.workspace + EL.row_sq);
    index_t rows_w = 0;
    for (int l = 0; l < L; ++l) rows_w += M.dims[l + 1];
    for (index_t b = 0; b < nb; ++b) {
        const index_t r0 = b * E.batch;
        const index_t n = E.count - r0 < E.batch ? E.count - r0 : E.batch;
        const std::int64_t* order = E.order + r0;
        {  // this thread's rows of the batch (the last step's GEMMs no longer read xbuf)
            index_t lo, hi;
            t.share(n, 1, 1, lo, hi);
            gather_rows(xbuf, E.x, E.ldx, order, lo, hi, d0);
            for (index_t i = lo; i < hi; ++i) {
                if (E.loss == FusedLoss::cross_entropy)
                    ybuf[i] = E.labels[order[i]];
                else
                    std::memcpy(tbuf + i * c, E.target + order[i] * c, static_cast<std::size_t>(c) * sizeof(T));
            }
        }
        t.barrier();  // the batch is gathered and the last step's update is complete
        if (t.leader()) sh.next_chunk.store(0, std::memory_order_relaxed);  // next read after a barrier
        if (E.sq_norms) weight_sq_rows(t, M, row_sq);  // read by the leader below, after the step's barriers
        MlpBatch<T> B;
        B.n = n;
        B.x = xbuf;
        B.ldx = d0;
        B.loss = E.loss;
        B.labels = ybuf;
        B.target = tbuf;
        B.workspace = E.workspace;
        FusedOptim o = base;
        o.lr = E.lr[b];
        o.weight_decay = E.weight_decay[b];
        o.eps = E.eps[b];
        o.step = E.t0 + b + 1;
        const MlpWorkspaceLayout W = n == E.batch ? EL.step : layout_of(M, n);
        train_step_team<T>(t, sh, M, B, o, W, M.blocks_tile);
        // both flags are written before the step's last barrier: every thread stops here alike
        if (sh.failed.load(std::memory_order_relaxed) || sh.bad_label.load(std::memory_order_relaxed)) return;
        if (t.leader()) {
            E.losses[b] = sh.loss;
            if (E.sq_norms) {
                double s = 0;
                for (index_t r = 0; r < rows_w; ++r) s += row_sq[r];
                E.sq_norms[b] = s;
            }
        }
    }
}

template <class T>
void train_epoch(const MlpModel<T>& M, const MlpEpoch<T>& E, const FusedOptim& opt) {
    if (E.count <= 0) return;
    const MlpEpochLayout EL = mlp_epoch_layout(M, E.batch);
    StepShared sh;
    run_team(step_threads(M, E.batch), sh, [&](const Team& t) { train_epoch_team<T>(t, sh, M, E, opt, EL); });
    if (sh.bad_label.load()) throw std::invalid_argument("y: a class index is out of range [0, C)");
}

template <class T>
void forward_only(T* out, const MlpModel<T>& M, const MlpBatch<T>& B) {
    const MlpWorkspaceLayout W = layout_of(M, B.n);
    StepShared sh;
    run_team(step_threads(M, B.n), sh, [&](const Team& t) { forward<T>(t, sh, M, B, W, out); });
}

double train_step_f32(const MlpModel<float>& M, const MlpBatch<float>& B, const FusedOptim& o) {
    return train_step<float>(M, B, o);
}
double train_step_f64(const MlpModel<double>& M, const MlpBatch<double>& B, const FusedOptim& o) {
    return train_step<double>(M, B, o);
}
void train_epoch_f32(const MlpModel<float>& M, const MlpEpoch<float>& E, const FusedOptim& o) {
    train_epoch<float>(M, E, o);
}
void train_epoch_f64(const MlpModel<double>& M, const MlpEpoch<double>& E, const FusedOptim& o) {
    train_epoch<double>(M, E, o);
}
void forward_f32(float* out, const MlpModel<float>& M, const MlpBatch<float>& B) {
    forward_only<float>(out, M, B);
}
void forward_f64(double* out, const MlpModel<double>& M, const MlpBatch<double>& B) {
    forward_only<double>(out, M, B);
}

}  // namespace

const FusedKernels& fused_kernels() {
    static const FusedKernels table{
        NNK_VARIANT_NAME,
        &train_step_f32, &train_step_f64, &train_epoch_f32, &train_epoch_f64, &forward_f32, &forward_f64};
    return table;
}

}  // namespace NNK_NS
}  // namespace nnk
