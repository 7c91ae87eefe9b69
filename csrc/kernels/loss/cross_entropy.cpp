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
    // Four running sums (one per i mod 4) then their total: a fixed order, so
    // still independent of the thread count, without one add-latency chain of n.
    double sum(index_t n) const {
        double s[4] = {0.0, 0.0, 0.0, 0.0};
        index_t i = 0;
        for (; i + 4 <= n; i += 4)
            for (int k = 0; k < 4; ++k) s[k] += v[i + k];
        for (; i < n; ++i) s[i % 4] += v[i];
        return (s[0] + s[1]) + (s[2] + s[3]);
    }
    double* v;
};

#if NNK_VM_VECTOR
// ce_row_index for float32 with a gradient, eps == 0 or no weights (see row_exp_sum_online)
inline double ce_row_index_online(const CrossEntropyProblem<float>& p, index_t i, double scale, double wsum) {
    const index_t c = p.c;
    const float* x = p.logits + i * c;
    float* g = p.grad + i * c;
    const std::int64_t y = p.target_idx[i];
    const double eps = p.label_smoothing;
    const double wy = p.weight ? double(p.weight[y]) : 1.0;
    float shift[kMaxChunks];
    double m;
    const double s = row_exp_sum_online(g, shift, x, c, m);
    const double log_s = std::log(s);
    double loss = (1.0 - eps) * wy * ((m - double(x[y])) + log_s);
    if (eps != 0.0) loss += eps / double(c) * (wsum * (m + log_s) - row_dot<float>(x, nullptr, c));
    const double coef = scale * ((1.0 - eps) * wy + eps / double(c) * wsum) / s;
    const double off = scale * eps / double(c);
    index_t k = 0;
    for (index_t j0 = 0; j0 < c; j0 += kChunk, ++k) {
        const index_t len = j0 + kChunk < c ? kChunk : c - j0;
        // exp(M_k - m) = 1 for the chunks after the last rise of the max; NaN rows stay NaN
        row_scale(g + j0, len, double(shift[k]) == m ? coef : coef * std::exp(double(shift[k]) - m), off);
    }
    g[y] = float(double(g[y]) - scale * (1.0 - eps) * wy);
    return loss;
}
#endif

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
#if NNK_VM_VECTOR
    // float32 rows with a gradient and no per-class smoothing weights: one
    // pass over memory (g := exp(x - shift of its chunk), rescaled below)
    if constexpr (sizeof(T) == 4) {
        if (g && (eps == 0.0 || !p.weight) && c <= kChunk * kMaxChunks)
            return ce_row_index_online(p, i, scale, wsum);
    }
#endif
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

#if NNK_VM_VECTOR
// ce_row_prob for float32 on float lanes: the online max/exp-sum pass, one pass
// for sum_j w_j t_j and sum_j w_j t_j x_j (float within a chunk, float64
// across chunks), one gradient pass per chunk.
inline double ce_row_prob_f32(const CrossEntropyProblem<float>& p, index_t i, double scale, double wsum) {
    using vm::VF2;
    using vm::WF;
    const index_t c = p.c;
    const float* x = p.logits + i * c;
    const float* t = p.target_prob + i * c;
    const float* w = p.weight;
    float* g = p.grad ? p.grad + i * c : nullptr;
    const double eps = p.label_smoothing, u = eps / double(c);
    float shift[kMaxChunks];
    double m;
    const double s = row_exp_sum_online(g, shift, x, c, m);
    const double lse = m + std::log(s);
    double swt = 0.0, swtx = 0.0, swx = 0.0;  // sum w t, sum w t x, sum w x (w = 1 without weights)
    for (index_t j0 = 0; j0 < c; j0 += kChunk) {
        const index_t j1 = j0 + kChunk < c ? j0 + kChunk : c;
        VF2 a_wt = vm::splatf(0.0f), a_wtx = vm::splatf(0.0f), a_wx = vm::splatf(0.0f);
        for (index_t j = j0; j < j1; j += WF) {
            const index_t k = j1 - j < WF ? j1 - j : WF;  // (k < WF: masked tail, zeros)
            const VF2 xv = k == WF ? vm::loadf(x + j) : vm::load_partf(x + j, k, 0.0f);
            const VF2 wv = w ? (k == WF ? vm::loadf(w + j) : vm::load_partf(w + j, k, 0.0f)) : vm::splatf(1.0f);
            const VF2 wt = (k == WF ? vm::loadf(t + j) : vm::load_partf(t + j, k, 0.0f)) * wv;
            a_wt += wt;
            a_wtx += wt * xv;
            if (eps != 0.0) a_wx += wv * xv;
        }
        V lo, hi;
        widen(a_wt, lo, hi), swt += vm::hsum(lo + hi);
        widen(a_wtx, lo, hi), swtx += vm::hsum(lo + hi);
        if (eps != 0.0) widen(a_wx, lo, hi), swx += vm::hsum(lo + hi);
    }
    const double sw_t = (1.0 - eps) * swt + u * wsum;  // sum w t', t' = (1-eps) t + eps/c
    const double sw_tx = (1.0 - eps) * swtx + u * swx;
    if (g) {  // g = scale [(sum w t') e/s - w t']
        const double coef = scale * sw_t / s;
        const VF2 a = vm::splatf(float(scale * (1.0 - eps))), b = vm::splatf(float(scale * u));
        index_t kc = 0;
        for (index_t j0 = 0; j0 < c; j0 += kChunk, ++kc) {
            const index_t j1 = j0 + kChunk < c ? j0 + kChunk : c;
            const VF2 cf = vm::splatf(float(double(shift[kc]) == m ? coef : coef * std::exp(double(shift[kc]) - m)));
            for (index_t j = j0; j < j1; j += WF) {
                const index_t k = j1 - j < WF ? j1 - j : WF;
                const VF2 wv = w ? (k == WF ? vm::loadf(w + j) : vm::load_partf(w + j, k, 0.0f)) : vm::splatf(1.0f);
                const VF2 tv = k == WF ? vm::loadf(t + j) : vm::load_partf(t + j, k, 0.0f);
                const VF2 ev = k == WF ? vm::loadf(g + j) : vm::load_partf(g + j, k, 0.0f);
                const VF2 gv = ev * cf - (a * tv + b) * wv;
                if (k == WF)
                    vm::storef(g + j, gv);
                else
                    vm::store_partf(g + j, gv, k);
            }
        }
    }
    return lse * sw_t - sw_tx;
}
#endif

template <class T>
double ce_row_prob(const CrossEntropyProblem<T>& p, index_t i, double scale, double wsum) {
#if NNK_VM_VECTOR
    if constexpr (sizeof(T) == 4) {
        if (p.c <= kChunk * kMaxChunks) return ce_row_prob_f32(p, i, scale, wsum);
    }
#endif
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

#if defined(NNK_ISA_AVX512)
// Rows of c <= 16 classes, float32, index targets: one row per register
// (masked loads; lanes c..15 padded), 16 rows per block. The per-row max and
// sum are taken for all 16 rows at once by a reduction tree (45 shuffles/ops
// for 16 rows instead of 16 serial horizontal reductions, whose latency
// chains would leave the core idle), and so are log(sum) and 1/sum.
constexpr index_t kRowLanes = 16;

// lane r of the result = op-reduction of the 16 lanes of v[r]
template <class Op>
inline __m512 reduce_rows16(const __m512* v, Op op) {
    __m512 w[8], z[4], q[2];
    for (int k = 0; k < 8; ++k)  // 256-bit halves
        w[k] = op(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0x44), _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0xEE));
    for (int k = 0; k < 4; ++k)  // 128-bit quarters
        z[k] = op(_mm512_shuffle_f32x4(w[2 * k], w[2 * k + 1], 0x88), _mm512_shuffle_f32x4(w[2 * k], w[2 * k + 1], 0xDD));
    for (int k = 0; k < 2; ++k)  // pairs of lanes
        q[k] = op(_mm512_shuffle_ps(z[2 * k], z[2 * k + 1], 0x44), _mm512_shuffle_ps(z[2 * k], z[2 * k + 1], 0xEE));
    const __m512 t = op(_mm512_shuffle_ps(q[0], q[1], 0x88), _mm512_shuffle_ps(q[0], q[1], 0xDD));
    // t's lane q holds row (q % 4) * 4 + q / 4
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), t);
}

inline __m512 lane_bcast(__m512 v, int r) { return _mm512_permutexvar_ps(_mm512_set1_epi32(r), v); }

void ce_rows_lane16(const CrossEntropyProblem<float>& p, index_t lo, index_t hi, double scale, double wsum,
                    double* row_loss) {
    using vm::VF2;
    const index_t c = p.c;
    const double eps = p.label_smoothing, u = eps / double(c);
    const __mmask16 kc = __mmask16((1u << c) - 1u);
    const __m512 neg_inf = _mm512_set1_ps(-INFINITY), zero = _mm512_setzero_ps();
    const __m512 wv = p.weight ? _mm512_maskz_loadu_ps(kc, p.weight) : _mm512_maskz_mov_ps(kc, _mm512_set1_ps(1.0f));
    const __m512 offw = _mm512_mul_ps(_mm512_set1_ps(float(scale * u)), wv);  // eps/c w_j scale
    const auto vmax = [](__m512 a, __m512 b) { return _mm512_max_ps(a, b); };
    const auto vadd = [](__m512 a, __m512 b) { return _mm512_add_ps(a, b); };
    const __m512 c_loss = _mm512_set1_ps(float(1.0 - eps)), c_smooth = _mm512_set1_ps(float(u));
    const __m512 c_coef_a = _mm512_set1_ps(float(scale * (1.0 - eps))), c_coef_b = _mm512_set1_ps(float(scale * u * wsum));
    alignas(64) float wyb[kRowLanes], xyb[kRowLanes];
    alignas(64) std::int32_t yb[kRowLanes];
    for (index_t i0 = lo; i0 < hi; i0 += kRowLanes) {
        const index_t nr = hi - i0 < kRowLanes ? hi - i0 : kRowLanes;
        __m512 v[kRowLanes];
        unsigned ign = 0;  // bit r: row i0 + r is ignored (or padding)
        for (index_t r = 0; r < kRowLanes; ++r) {
            const index_t i = i0 + (r < nr ? r : 0);  // padding rows repeat row i0 (discarded)
            const float* x = p.logits + i * c;
            v[r] = _mm512_mask_loadu_ps(neg_inf, kc, x);
            const std::int64_t y = p.target_idx[i];
            const bool skip = y == p.ignore_index || r >= nr;
            ign |= unsigned(skip) << r;
            const std::int64_t ys = skip ? 0 : y;
            yb[r] = std::int32_t(ys);
            wyb[r] = skip ? 0.0f : (p.weight ? p.weight[ys] : 1.0f);
            xyb[r] = x[ys];
        }
        // a NaN lane may be dropped by the max: the sum below is NaN then.
        // While a row is all -inf, its max is taken as 0 (exp = 0, sum 0: NaN later, as PyTorch)
        __m512 m = reduce_rows16(v, vmax);
        m = _mm512_mask_mov_ps(m, _mm512_cmp_ps_mask(m, neg_inf, _CMP_EQ_OQ), zero);
        __m512 wx = zero;
        if (eps != 0.0) {  // sum_j w_j (x_j - m)
            __m512 t[kRowLanes];
            for (index_t r = 0; r < kRowLanes; ++r) t[r] = _mm512_mul_ps(_mm512_maskz_sub_ps(kc, v[r], lane_bcast(m, int(r))), wv);
            wx = reduce_rows16(t, vadd);
        }
        for (index_t r = 0; r < kRowLanes; ++r) {
            // lanes c..15: exp(0), then zeroed (exp(-inf) would underflow: a slow microcode assist)
            const __m512 d = _mm512_maskz_sub_ps(kc, v[r], lane_bcast(m, int(r)));
            v[r] = _mm512_maskz_mov_ps(kc, (__m512)vm::exp_lo_f((VF2)d));  // v := e
        }
        const __m512 s = reduce_rows16(v, vadd);
        const __m512 log_s = (__m512)vm::log_f((VF2)s);
        const __m512 wy = _mm512_load_ps(wyb);
        // per row: (1-eps) w_y (lse - x_y) + eps/c sum_j w_j (lse - x_j), lse = m + log s
        __m512 loss = _mm512_mul_ps(_mm512_mul_ps(c_loss, wy), _mm512_add_ps(_mm512_sub_ps(m, _mm512_load_ps(xyb)), log_s));
        if (eps != 0.0) loss = _mm512_fmadd_ps(c_smooth, _mm512_fmsub_ps(_mm512_set1_ps(float(wsum)), log_s, wx), loss);
        loss = _mm512_maskz_mov_ps(__mmask16(~ign), loss);  // ignored rows: 0 (even for NaN logits)
        alignas(64) float lb[kRowLanes];
        _mm512_store_ps(lb, loss);
        for (index_t r = 0; r < nr; ++r) row_loss[i0 + r] = double(lb[r]);
        if (!p.grad) continue;
        const __m512 coef = _mm512_div_ps(_mm512_fmadd_ps(c_coef_a, wy, c_coef_b), s);
        const __m512 hot = _mm512_mul_ps(c_coef_a, wy);  // subtracted at (i, y)
        for (index_t r = 0; r < nr; ++r) {
            float* g = p.grad + (i0 + r) * c;
            if (ign >> r & 1u) {
                _mm512_mask_storeu_ps(g, kc, zero);
                continue;
            }
            __m512 gv = _mm512_fmsub_ps(v[r], lane_bcast(coef, int(r)), offw);
            gv = _mm512_mask_sub_ps(gv, __mmask16(1u << yb[r]), gv, lane_bcast(hot, int(r)));
            _mm512_mask_storeu_ps(g, kc, gv);
        }
    }
}
#endif

#if NNK_VM_VECTOR
// ce_block_small for float32 on float lanes: WF rows per block (16 on
// AVX-512, 8 on AVX2), one row per lane, exp_lo_f instead of the float64 exp.
void ce_block_small_f32(const CrossEntropyProblem<float>& p, index_t i0, index_t nr, double scale, double wsum,
                        double* row_loss) {
    using vm::VF2;
    using vm::WF;
    const index_t c = p.c;
    const double eps = p.label_smoothing, u = eps / double(c);
    alignas(64) float xb[kSmallC * WF];
    alignas(64) float wyb[WF], xyb[WF], lb[WF];
    unsigned ign = 0;  // bit r: row i0 + r ignored or padding
    for (index_t r = 0; r < WF; ++r) {
        const index_t rr = r < nr ? r : 0;  // padding lanes repeat row 0 (results discarded)
        const float* x = p.logits + (i0 + rr) * c;
        for (index_t j = 0; j < c; ++j) xb[j * WF + r] = x[j];
        const std::int64_t y = p.target_idx[i0 + rr];
        const bool skip = y == p.ignore_index || r >= nr;
        ign |= unsigned(skip) << r;
        const std::int64_t ys = skip ? 0 : y;
        wyb[r] = skip ? 0.0f : (p.weight ? p.weight[ys] : 1.0f);
        xyb[r] = x[ys];
    }
    VF2 m = vm::splatf(-INFINITY);
    for (index_t j = 0; j < c; ++j) m = vmax_f(m, vm::loadf(xb + j * WF));  // NaN: the sum is NaN
    m = m == -INFINITY ? vm::splatf(0.0f) : m;  // an all -inf row: sum 0, NaN later (PyTorch)
    VF2 s = vm::splatf(0.0f), wx = vm::splatf(0.0f);  // wx = sum_j w_j (x_j - m)
    for (index_t j = 0; j < c; ++j) {
        const VF2 d = vm::loadf(xb + j * WF) - m;
        if (eps != 0.0) wx += d * (p.weight ? p.weight[j] : 1.0f);
        const VF2 e = vm::exp_lo_f(d);
        vm::storef(xb + j * WF, e);  // xb now holds e
        s += e;
    }
    const VF2 logs = vm::log_f(s), wy = vm::loadf(wyb);
    VF2 loss = float(1.0 - eps) * wy * ((m - vm::loadf(xyb)) + logs);
    if (eps != 0.0) loss += float(u) * (float(wsum) * logs - wx);
    vm::storef(lb, loss);
    for (index_t r = 0; r < nr; ++r) row_loss[r] = (ign >> r & 1u) ? 0.0 : double(lb[r]);  // row_loss: this block's
    if (!p.grad) return;
    const VF2 coef = (float(scale * (1.0 - eps)) * wy + float(scale * u * wsum)) / s;
    const float off = float(scale * u);
    for (index_t j = 0; j < c; ++j)
        vm::storef(xb + j * WF, vm::loadf(xb + j * WF) * coef - off * (p.weight ? p.weight[j] : 1.0f));
    for (index_t r = 0; r < nr; ++r) {
        float* g = p.grad + (i0 + r) * c;
        if (ign >> r & 1u) {
            for (index_t j = 0; j < c; ++j) g[j] = 0.0f;
            continue;
        }
        for (index_t j = 0; j < c; ++j) g[j] = xb[j * WF + r];
        const std::int64_t y = p.target_idx[i0 + r];
        g[y] = float(double(g[y]) - scale * (1.0 - eps) * double(wyb[r]));
    }
}
#endif

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
    if (!p.weight) {  // a count (integer adds: no float-add latency chain)
        index_t k = 0;
        for (index_t i = 0; i < p.n; ++i) k += p.target_idx[i] != p.ignore_index;
        return double(k);
    }
    double d[4] = {0.0, 0.0, 0.0, 0.0};  // fixed order, as RowLosses::sum
    for (index_t i = 0; i < p.n; ++i) {
        const std::int64_t y = p.target_idx[i];
        if (y != p.ignore_index) d[i % 4] += double(p.weight[y]);
    }
    return (d[0] + d[1]) + (d[2] + d[3]);
}

template <class T>
double cross_entropy(const CrossEntropyProblem<T>& p) {
    const index_t n = p.n, c = p.c;
    double scale = 1.0;
    if (p.mean)
        scale = p.mean_count > 0 ? 1.0 / p.mean_count
                : p.target_idx   ? 1.0 / index_denominator(p)
                                 : 1.0 / double(n);
    const double wsum = weight_sum(p.weight, c);
    RowLosses rl(n);
#if defined(NNK_ISA_AVX512)
    if constexpr (sizeof(T) == 4) {
        if (p.target_idx && c <= kRowLanes) {
            parallel_chunks(n, n * c * 6, kRowLanes, [&](index_t lo, index_t hi) {
                ce_rows_lane16(p, lo, hi, scale, wsum, rl.v);
                if (p.losses)
                    for (index_t i = lo; i < hi; ++i) p.losses[i] = float(rl.v[i]);
            });
            return scale * rl.sum(n);
        }
    }
#endif
#if NNK_VM_VECTOR
    if constexpr (sizeof(T) == 4) {
        if (p.target_idx && c <= kSmallC) {
            parallel_chunks(n, n * c * 6, vm::WF, [&](index_t lo, index_t hi) {
                for (index_t i = lo; i < hi; i += vm::WF) {
                    const index_t nr = hi - i < vm::WF ? hi - i : vm::WF;
                    ce_block_small_f32(p, i, nr, scale, wsum, rl.v + i);
                    if (p.losses)
                        for (index_t r = 0; r < nr; ++r) p.losses[i + r] = float(rl.v[i + r]);
                }
            });
            return scale * rl.sum(n);
        }
    }
#endif
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
