// Elementwise losses, value and gradient in one pass (nnk/loss.h). The flat
// index range is cut into fixed blocks of kBlock elements whose sums are kept
// and added in order, so the total does not depend on the thread count.
#include <cmath>

#include "../act/act_internal.h"
#include "nnk/parallel.h"
#include "loss_internal.h"
#include "nnk/vmath.h"

namespace nnk {
namespace NNK_NS {
namespace {

using vm::splat;
using vm::V;
using vm::W;

constexpr index_t kBlock = 4096;  // a multiple of every W
// PyTorch's floor of the BCE gradient denominator is the float constant 1e-12f
constexpr double kBceEps = static_cast<double>(1e-12f);

// loss and d loss / d x of one lane group; pw = pos_weight (bce_logits)
struct LossGrad {
    V loss, grad;
};

inline LossGrad point_loss(PointLoss kind, V x, V t, V pw, double param) {
    switch (kind) {
        case PointLoss::mse: {
            V d = x - t;
            return {d * d, 2.0 * d};
        }
        case PointLoss::l1: {  // sign(d), 0 at d == 0, NaN for NaN
            V d = x - t;
            V s = d > 0.0 ? splat(1.0) : (d < 0.0 ? splat(-1.0) : d * 0.0);
            return {vm::vabs(d), s};
        }
        case PointLoss::huber: {
            V d = x - t, a = vm::vabs(d);
            V quad = 0.5 * d * d, lin = param * (a - 0.5 * param);
            V g = d < -param ? splat(-param) : (d > param ? splat(param) : d);
            return {a < param ? quad : lin, g};
        }
        case PointLoss::bce: {  // logs clamped at -100; grad (x - t) / max(x (1 - x), 1e-12)
            V lx = vm::log(x), l1x = vm::log1p(-x);
            lx = lx < -100.0 ? splat(-100.0) : lx;
            l1x = l1x < -100.0 ? splat(-100.0) : l1x;
            V den = (1.0 - x) * x;
            den = den < kBceEps ? splat(kBceEps) : den;
            return {-(t * lx + (1.0 - t) * l1x), (x - t) / den};
        }
        case PointLoss::bce_logits: {  // (1 - t) x + lw softplus(-x), lw = 1 + (pw - 1) t
            V lw = 1.0 + (pw - 1.0) * t;
            return {(1.0 - t) * x + lw * vm::softplus(-x), lw * vm::sigmoid(x) - pw * t};
        }
        case PointLoss::kl_div: {  // xlogy(t, t) - t x
            V tlogt = t == 0.0 ? splat(0.0) : t * vm::log(t);
            return {tlogt - t * x, -t};
        }
        case PointLoss::kl_div_log: {
            V et = vm::exp(t);
            return {et * (t - x), -et};
        }
    }
    return {x, x};
}

template <class T>
double pointwise(const PointwiseProblem<T>& p) {
    const index_t n = p.rows * p.k, k = p.k;
    const index_t nblocks = (n + kBlock - 1) / kBlock;
    double* sums = new double[nblocks > 0 ? nblocks : 1];
    const double scale = p.scale;
    auto lanes = [&](index_t i, index_t cnt) {  // elements [i, i + cnt), cnt <= W
        V x, t, pw = splat(1.0);
        if (cnt == W) {
            x = vm::load(p.input + i);
            t = vm::load(p.target + i);
        } else {
            x = vm::load_part(p.input + i, cnt, 0.5);
            t = vm::load_part(p.target + i, cnt, 0.5);
        }
        if (p.pos_weight) {
            double b[W];
            for (int j = 0; j < W; ++j) b[j] = j < cnt ? double(p.pos_weight[(i + j) % k]) : 1.0;
            pw = vm::load(b);
        }
        LossGrad r = point_loss(p.loss, x, t, pw, p.param);
        if (cnt == W) {
            if (p.grad) vm::store(p.grad + i, r.grad * scale);
            if (p.losses) vm::store(p.losses + i, r.loss);
            return r.loss;
        }
        if (p.grad) vm::store_part(p.grad + i, r.grad * scale, cnt);
        if (p.losses) vm::store_part(p.losses + i, r.loss, cnt);
        double b[W];
        vm::store(b, r.loss);
        for (int j = int(cnt); j < W; ++j) b[j] = 0.0;
        return vm::load(b);
    };
    parallel_chunks(nblocks, n * 4, 1, [&](index_t lo, index_t hi) {
        for (index_t b = lo; b < hi; ++b) {
            const index_t i0 = b * kBlock, i1 = i0 + kBlock < n ? i0 + kBlock : n;
            V s = splat(0.0);
            index_t i = i0;
            for (; i + W <= i1; i += W) s += lanes(i, W);
            if (i < i1) s += lanes(i, i1 - i);
            sums[b] = vm::hsum(s);
        }
    });
    double total = 0.0;
    for (index_t b = 0; b < nblocks; ++b) total += sums[b];
    delete[] sums;
    return scale * total;
}

}  // namespace

const LossKernels& loss_kernels() {
    static const LossKernels k = {
        NNK_VARIANT_NAME,
        &cross_entropy_f32,
        &cross_entropy_f64,
        &nll_f32,
        &nll_f64,
        &pointwise<float>,
        &pointwise<double>,
    };
    return k;
}

}  // namespace NNK_NS
}  // namespace nnk
