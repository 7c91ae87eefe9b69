// Row reductions and row maps over float64 lanes, shared by softmax and the
// cross-entropy kernels. Lane sums are reduced in a fixed order.
#pragma once

#include <cmath>

#include "nnk/vmath.h"

namespace nnk {
namespace NNK_NS {
namespace {

using vm::V;
using vm::W;

// max of x[0:c], NaN if any element is NaN
template <class T>
inline double row_max(const T* x, index_t c) {
    V m = vm::splat(-INFINITY);
    index_t j = 0;
    for (; j + W <= c; j += W) m = vm::vmax_nan(m, vm::load(x + j));
    if (j < c) m = vm::vmax_nan(m, vm::load_part(x + j, c - j, -INFINITY));
    return vm::hmax_nan(m);
}

// e[j] := exp(x[j] - m) (e may be null: not stored); returns sum_j e[j]
template <class T>
inline double row_exp_sum(T* e, const T* x, index_t c, double m) {
    V s = vm::splat(0.0);
    index_t j = 0;
    for (; j + W <= c; j += W) {
        V v = vm::exp(vm::load(x + j) - m);
        if (e) vm::store(e + j, v);
        s += v;
    }
    if (j < c) {
        V v = vm::exp(vm::load_part(x + j, c - j, -INFINITY) - m);
        if (e) vm::store_part(e + j, v, c - j);
        s += v;
    }
    return vm::hsum(s);
}

// sum_j a[j] * b[j] (b null: sum_j a[j])
template <class T>
inline double row_dot(const T* a, const T* b, index_t c) {
    V s = vm::splat(0.0);
    index_t j = 0;
    for (; j + W <= c; j += W) s += b ? vm::load(a + j) * vm::load(b + j) : vm::load(a + j);
    if (j < c) s += b ? vm::load_part(a + j, c - j, 0.0) * vm::load_part(b + j, c - j, 0.0)
                      : vm::load_part(a + j, c - j, 0.0);
    return vm::hsum(s);
}

}  // namespace
}  // namespace NNK_NS
}  // namespace nnk
