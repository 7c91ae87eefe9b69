// Fused softmax + cross-entropy and NLL, loss and gradient in one call (nnk/loss.h).
//
// Per row of logits x (c classes), one pass for the max, one computing
// e = exp(x - m) into the gradient row while summing it, one scaling the
// gradient in place (the row stays in cache between passes):
//   m = max x, s = sum e, lse = m + log s
//   loss = (1-eps) w_y (lse - x_y) + eps/c sum_j w_j (lse - x_j)
//   grad = scale * [((1-eps) w_y + eps/c W) e/s - (1-eps) w_y 1[j=y] - eps/c w_j],  W = sum w
// Probability targets t (t' = (1-eps) t + eps/c):
//   loss = lse sum_j w_j t'_j - sum_j w_j t'_j x_j,   grad = scale * [(sum w t') e/s - w t']
// Huge logits (1e4) are fine: only x - m reaches exp. NaN/inf propagate as in PyTorch.
#include <cmath>
#include <cstdint>

#include "../act/act_internal.h"
#include "nnk/parallel.h"
#include "../act/rowops.h"
#include "loss_internal.h"

namespace nnk {
namespace NNK_NS {
namespace {

using vm::splat;

// Row losses are kept and summed in row order after the (possibly parallel)
// loop, so the total does not depend on the thread count.
struct RowLosses {
    explicit RowLosses(index_t n) : v(new double[n > 0 ? n : 1]) {}
    ~RowLosses() { delete[] v; }
    RowLosses(const RowLosses&) = delete;
    RowLosses& operator=(const RowLosses&) = delete;
    double sum(index_t n) const {
        double s = 0.0;
        for (index_t i = 0; i < n; ++i) s += v[i];
        return s;
    }
    double* v;
};

template <class T>
double ce_row_index(const CrossEntropyProblem<T>& p, index_t i, double scale, double wsum) {
    const index_t c = p.c;
    const T* x = p.logits + i * c;
    T* g = p.grad ? p.grad + i * c : nullptr;
    const std::int64_t y = p.target_idx[i];
    if (y == p.ignore_index) {
        if (g)
            for (index_t j = 0; j < c; ++j) g[j] = T(0);
        return 0.0;
    }
    const double eps = p.label_smoothing;
    const double wy = p.weight ? double(p.weight[y]) : 1.0;
    const double m = row_max(x, c);
    const double s = row_exp_sum(g, x, c, m);  // g := exp(x - m)
    const double log_s = std::log(s);
    double loss = (1.0 - eps) * wy * ((m - double(x[y])) + log_s);
    if (eps != 0.0) {  // sum_j w_j (lse - x_j) = W (m + log s) - sum_j w_j x_j
        const double wx = row_dot<T>(x, p.weight, c);
        loss += eps / double(c) * (wsum * (m + log_s) - wx);
    }
    if (g) {
        const double coef = scale * ((1.0 - eps) * wy + eps / double(c) * wsum) / s;
        const double off = scale * eps / double(c);
        index_t j = 0;
        if (eps == 0.0 || !p.weight) {
            row_scale(g, c, coef, off);
        } else {
            for (; j + W <= c; j += W) vm::store(g + j, vm::load(g + j) * coef - off * vm::load(p.weight + j));
            if (j < c)
                vm::store_part(g + j,
                               vm::load_part(g + j, c - j, 0.0) * coef - off * vm::load_part(p.weight + j, c - j, 0.0),
                               c - j);
        }
        g[y] = T(double(g[y]) - scale * (1.0 - eps) * wy);
    }
    return loss;
}

template <class T>
double ce_row_prob(const CrossEntropyProblem<T>& p, index_t i, double scale, double wsum) {
    const index_t c = p.c;
    const T* x = p.logits + i * c;
    const T* t = p.target_prob + i * c;
    T* g = p.grad ? p.grad + i * c : nullptr;
    const double eps = p.label_smoothing, u = eps / double(c);
    const double m = row_max(x, c);
    const double s = row_exp_sum(g, x, c, m);
    const double lse = m + std::log(s);
    // sum_j w_j t_j and sum_j w_j t_j x_j (w = 1 when there are no weights)
    V swt = splat(0.0), swtx = splat(0.0);
    index_t j = 0;
    for (; j + W <= c; j += W) {
        V wt = vm::load(t + j);
        if (p.weight) wt *= vm::load(p.weight + j);
        swt += wt;
        swtx += wt * vm::load(x + j);
    }
    if (j < c) {
        V wt = vm::load_part(t + j, c - j, 0.0);
        if (p.weight) wt *= vm::load_part(p.weight + j, c - j, 0.0);
        swt += wt;
        swtx += wt * vm::load_part(x + j, c - j, 0.0);
    }
    double sw_t = (1.0 - eps) * vm::hsum(swt) + u * wsum;  // sum w t'
    double sw_tx = (1.0 - eps) * vm::hsum(swtx);
    if (eps != 0.0) sw_tx += u * row_dot<T>(x, p.weight, c);
    const double loss = lse * sw_t - sw_tx;
    if (g) {
        const double coef = scale * sw_t / s;
        j = 0;
        for (; j + W <= c; j += W) {
            V wt = vm::load(t + j) * (1.0 - eps) + u;
            if (p.weight) wt *= vm::load(p.weight + j);
            vm::store(g + j, vm::load(g + j) * coef - scale * wt);
        }
        if (j < c) {
            V wt = vm::load_part(t + j, c - j, 0.0) * (1.0 - eps) + u;
            if (p.weight) wt *= vm::load_part(p.weight + j, c - j, 0.0);
            vm::store_part(g + j, vm::load_part(g + j, c - j, 0.0) * coef - scale * wt, c - j);
        }
    }
    return loss;
}

// Short rows (c <= kSmallC, index targets): W rows at once, one row per lane.
// The block is transposed into xb[j * W + r] so every vector op works on W
// full lanes (a row of 10 classes would otherwise fill 10 of 16 lanes and
// pay the horizontal reductions for each row).
constexpr index_t kSmallC = 32;

template <class T>
void ce_block_small(const CrossEntropyProblem<T>& p, index_t i0, index_t nr, double scale, double wsum,
                    double* row_loss) {
    const index_t c = p.c;
    const double eps = p.label_smoothing, u = eps / double(c);
    alignas(64) double xb[kSmallC * W];
    alignas(64) double yb[W], wyb[W], xyb[W], lb[W];
    for (index_t r = 0; r < W; ++r) {
        const index_t rr = r < nr ? r : 0;  // padding lanes repeat row 0 (results discarded)
        const T* x = p.logits + (i0 + rr) * c;
        for (index_t j = 0; j < c; ++j) xb[j * W + r] = double(x[j]);
        const std::int64_t y = p.target_idx[i0 + rr];
        const bool ign = y == p.ignore_index;
        yb[r] = ign ? 0.0 : 1.0;
        wyb[r] = ign ? 0.0 : (p.weight ? double(p.weight[y]) : 1.0);
        xyb[r] = ign ? 0.0 : double(x[y]);
    }
    V m = splat(-INFINITY);
    for (index_t j = 0; j < c; ++j) m = vm::vmax_nan(m, vm::load(xb + j * W));
    V s = splat(0.0), wx = splat(0.0);
    for (index_t j = 0; j < c; ++j) {
        V xj = vm::load(xb + j * W);
        if (eps != 0.0) wx += xj * (p.weight ? double(p.weight[j]) : 1.0);
        V e = vm::exp_t<T>(xj - m);
        vm::store(xb + j * W, e);  // xb now holds e
        s += e;
    }
    const V logs = vm::log(s);
    const V valid = vm::load(yb), wy = vm::load(wyb);
    V loss = (1.0 - eps) * wy * ((m - vm::load(xyb)) + logs);
    if (eps != 0.0) loss += u * (wsum * (m + logs) - wx);
    loss = valid != 0.0 ? loss : splat(0.0);
    vm::store(lb, loss);
    for (index_t r = 0; r < nr; ++r) row_loss[r] = lb[r];
    if (!p.grad) return;
    const V coef = scale * ((1.0 - eps) * wy + u * wsum) / s;
    const double off = scale * u;
    for (index_t j = 0; j < c; ++j) {
        V g = vm::load(xb + j * W) * coef - off * (p.weight ? double(p.weight[j]) : 1.0);
        vm::store(xb + j * W, g);
    }
    for (index_t r = 0; r < nr; ++r) {
        T* g = p.grad + (i0 + r) * c;
        const std::int64_t y = p.target_idx[i0 + r];
        if (y == p.ignore_index) {
            for (index_t j = 0; j < c; ++j) g[j] = T(0);
            continue;
        }
        for (index_t j = 0; j < c; ++j) g[j] = T(xb[j * W + r]);
        g[y] = T(xb[y * W + r] - scale * (1.0 - eps) * wyb[r]);
    }
}

template <class T>
double weight_sum(const T* w, index_t c) {
    if (!w) return double(c);
    double s = 0.0;
    for (index_t j = 0; j < c; ++j) s += double(w[j]);
    return s;
}

template <class T>
double index_denominator(const CrossEntropyProblem<T>& p) {
    // sum of w[y_i] over the non-ignored rows (PyTorch's weighted mean)
    double d = 0.0;
    for (index_t i = 0; i < p.n; ++i) {
        const std::int64_t y = p.target_idx[i];
        if (y != p.ignore_index) d += p.weight ? double(p.weight[y]) : 1.0;
    }
    return d;
}

template <class T>
double cross_entropy(const CrossEntropyProblem<T>& p) {
    const index_t n = p.n, c = p.c;
    double scale = 1.0;
    if (p.mean) scale = p.target_idx ? 1.0 / index_denominator(p) : 1.0 / double(n);
    const double wsum = weight_sum(p.weight, c);
    RowLosses rl(n);
    if (p.target_idx && c <= kSmallC && W > 1) {
        parallel_chunks(n, n * c * 6, W, [&](index_t lo, index_t hi) {
            for (index_t i = lo; i < hi; i += W) {
                const index_t nr = hi - i < W ? hi - i : W;
                ce_block_small(p, i, nr, scale, wsum, rl.v + i);
                if (p.losses)
                    for (index_t r = 0; r < nr; ++r) p.losses[i + r] = T(rl.v[i + r]);
            }
        });
        return scale * rl.sum(n);
    }
    parallel_chunks(n, n * c * 6, 1, [&](index_t lo, index_t hi) {
        for (index_t i = lo; i < hi; ++i) {
            const double l = p.target_idx ? ce_row_index(p, i, scale, wsum) : ce_row_prob(p, i, scale, wsum);
            rl.v[i] = l;
            if (p.losses) p.losses[i] = T(l);
        }
    });
    return scale * rl.sum(n);
}

template <class T>
double nll(const CrossEntropyProblem<T>& p) {
    // loss_i = -w[y] lp[i, y]; grad = -scale w[y] at (i, y), 0 elsewhere
    const index_t n = p.n, c = p.c;
    const double scale = p.mean ? 1.0 / index_denominator(p) : 1.0;
    double total = 0.0;
    if (p.grad)
        for (index_t k = 0; k < n * c; ++k) p.grad[k] = T(0);
    for (index_t i = 0; i < n; ++i) {
        const std::int64_t y = p.target_idx[i];
        double l = 0.0;
        if (y != p.ignore_index) {
            const double wy = p.weight ? double(p.weight[y]) : 1.0;
            l = -wy * double(p.logits[i * c + y]);
            if (p.grad) p.grad[i * c + y] = T(-scale * wy);
        }
        if (p.losses) p.losses[i] = T(l);
        total += l;
    }
    return scale * total;
}

}  // namespace

double cross_entropy_f32(const CrossEntropyProblem<float>& p) { return cross_entropy(p); }
double cross_entropy_f64(const CrossEntropyProblem<double>& p) { return cross_entropy(p); }
double nll_f32(const CrossEntropyProblem<float>& p) { return nll(p); }
double nll_f64(const CrossEntropyProblem<double>& p) { return nll(p); }

}  // namespace NNK_NS
}  // namespace nnk
