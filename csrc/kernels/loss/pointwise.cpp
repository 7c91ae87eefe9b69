// Elementwise losses, value and gradient in one pass (nnk/loss.h). The flat
// index range is cut into fixed blocks of kBlock elements whose sums are kept
// and added in order, so the total does not depend on the thread count.
#include <cmath>

#include "../act/act_internal.h"
#include "../act/rowops.h"
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

#if NNK_VM_VECTOR
// bce_logits on float32 without pos_weight, on float lanes: one exp per
// element, e = exp(-|x|), shared by softplus(-x) = max(-x, 0) + log1p(e) and
// sigmoid(x) = 1/(1+e) (x >= 0) or e/(1+e). Same fixed blocks as pointwise().
double bce_logits_f32(const PointwiseProblem<float>& p) {
    using vm::VF2;
    using vm::WF;
    const index_t n = p.rows * p.k;
    const index_t nblocks = (n + kBlock - 1) / kBlock;
    double* sums = new double[nblocks > 0 ? nblocks : 1];
    const float scale = float(p.scale);
    auto lanes = [&](index_t i, index_t cnt, V& acc) {  // elements [i, i + cnt), cnt <= WF
        const VF2 x = cnt == WF ? vm::loadf(p.input + i) : vm::load_partf(p.input + i, cnt, 0.0f);
        const VF2 t = cnt == WF ? vm::loadf(p.target + i) : vm::load_partf(p.target + i, cnt, 0.0f);
        const VF2 e = vm::exp_lo_f(-vm::vabsf(x));
        const VF2 r = vm::recip_f(1.0f + e);
        const VF2 sig = x < 0.0f ? e * r : r;  // NaN x: e, r, sig NaN
        VF2 sp = (x < 0.0f ? -x : vm::splatf(0.0f)) + vm::log1p_unit_f(e);  // softplus(-x)
        sp = x != x ? x : sp;
        VF2 loss = (1.0f - t) * x + sp;
        const VF2 grad = (sig - t) * scale;
        if (cnt == WF) {
            if (p.grad) vm::storef(p.grad + i, grad);
            if (p.losses) vm::storef(p.losses + i, loss);
        } else {
            if (p.grad) vm::store_partf(p.grad + i, grad, cnt);
            if (p.losses) vm::store_partf(p.losses + i, loss, cnt);
            loss = vm::keep_firstf(loss, cnt);
        }
        V lo, hi;
        widen(loss, lo, hi);
        acc += lo + hi;
    };
    parallel_chunks(nblocks, n * 4, 1, [&](index_t lo, index_t hi) {
        for (index_t b = lo; b < hi; ++b) {
            const index_t i0 = b * kBlock, i1 = i0 + kBlock < n ? i0 + kBlock : n;
            V s = splat(0.0);
            index_t i = i0;
            for (; i + WF <= i1; i += WF) lanes(i, WF, s);
            if (i < i1) lanes(i, i1 - i, s);
            sums[b] = vm::hsum(s);
        }
    });
    double total = 0.0;
    for (index_t b = 0; b < nblocks; ++b) total += sums[b];
    delete[] sums;
    return p.scale * total;
}
#endif

template <class T>
double pointwise(const PointwiseProblem<T>& p) {
#if NNK_VM_VECTOR
    if constexpr (sizeof(T) == 4) {
        if (p.loss == PointLoss::bce_logits && !p.pos_weight) return bce_logits_f32(p);
    }
#endif
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
