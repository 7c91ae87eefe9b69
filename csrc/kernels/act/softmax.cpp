// Softmax and log-softmax over rows, forward and backward (nnk/act.h).
//   forward:  m = max, e = exp(x - m) stored into out, s = sum e,
//             out *= 1/s   (log: out = (x - m) - log s)
//   backward: softmax     grad_x = y * (g - sum(g * y))
//             log_softmax grad_x = g - exp(y) * sum(g)
// Rows are independent: large inputs are split by rows across threads.
#include <cmath>

#include "act_internal.h"
#include "nnk/act.h"
#include "nnk/parallel.h"
#include "rowops.h"

namespace nnk {
namespace NNK_NS {
namespace {

template <class T>
void softmax_row(T* y, const T* x, index_t c, bool log) {
    const double m = row_max(x, c);
    if (!log) {
        const double inv = 1.0 / row_exp_sum(y, x, c, m);
        row_scale(y, c, inv, 0.0);
    } else {
        const double ls = std::log(row_exp_sum(static_cast<T*>(nullptr), x, c, m));
        index_t j = 0;
        for (; j + W <= c; j += W) vm::store(y + j, (vm::load(x + j) - m) - ls);
        if (j < c) vm::store_part(y + j, (vm::load_part(x + j, c - j, 0.0) - m) - ls, c - j);
    }
}

#if NNK_VM_VECTOR
// float32 rows: one pass over memory for the max and sum (row_exp_sum_online),
// float lanes for the rest (sums in float64)
void softmax_row(float* y, const float* x, index_t c, bool log) {
    using vm::VF2;
    using vm::WF;
    if (c > kChunk * kMaxChunks) return softmax_row<float>(y, x, c, log);  // very long rows: two passes
    float shift[kMaxChunks];
    double m;
    const double s = row_exp_sum_online(log ? nullptr : y, shift, x, c, m);
    if (log) {  // y = (x - m) - log s
        const VF2 mf = vm::splatf(float(m)), ls = vm::splatf(float(std::log(s)));
        index_t j = 0;
        for (; j + WF <= c; j += WF) vm::storef(y + j, (vm::loadf(x + j) - mf) - ls);
        if (j < c) vm::store_partf(y + j, (vm::load_partf(x + j, c - j, 0.0f) - mf) - ls, c - j);
        return;
    }
    index_t k = 0;
    for (index_t j0 = 0; j0 < c; j0 += kChunk, ++k) {  // y = e exp(M_k - m) / s
        const index_t len = j0 + kChunk < c ? kChunk : c - j0;
        row_scale(y + j0, len, double(shift[k]) == m ? 1.0 / s : std::exp(double(shift[k]) - m) / s, 0.0);
    }
}

void softmax_backward_row(float* gx, const float* g, const float* y, index_t c, bool log) {
    using vm::VF2;
    using vm::WF;
    index_t j = 0;
    if (!log) {  // y (g - <g, y>)
        const VF2 dot = vm::splatf(float(row_dot(g, y, c)));
        for (; j + WF <= c; j += WF) vm::storef(gx + j, vm::loadf(y + j) * (vm::loadf(g + j) - dot));
        if (j < c)
            vm::store_partf(gx + j, vm::load_partf(y + j, c - j, 0.0f) * (vm::load_partf(g + j, c - j, 0.0f) - dot),
                            c - j);
    } else {  // g - exp(y) sum(g)  (y <= 0: exp_lo_f)
        const VF2 sg = vm::splatf(float(row_dot<float>(g, nullptr, c)));
        for (; j + WF <= c; j += WF) vm::storef(gx + j, vm::loadf(g + j) - vm::exp_lo_f(vm::loadf(y + j)) * sg);
        if (j < c)
            vm::store_partf(gx + j,
                            vm::load_partf(g + j, c - j, 0.0f) - vm::exp_lo_f(vm::load_partf(y + j, c - j, 0.0f)) * sg,
                            c - j);
    }
}
#endif

template <class T>
void softmax_backward_row(T* gx, const T* g, const T* y, index_t c, bool log) {
    index_t j = 0;
    if (!log) {  // y (g - <g, y>)
        const double dot = row_dot(g, y, c);
        for (; j + W <= c; j += W) vm::store(gx + j, vm::load(y + j) * (vm::load(g + j) - dot));
        if (j < c)
            vm::store_part(gx + j, vm::load_part(y + j, c - j, 0.0) * (vm::load_part(g + j, c - j, 0.0) - dot),
                           c - j);
    } else {  // g - exp(y) sum(g)
        const double sg = row_dot<T>(g, nullptr, c);
        for (; j + W <= c; j += W) vm::store(gx + j, vm::load(g + j) - vm::exp(vm::load(y + j)) * sg);
        if (j < c)
            vm::store_part(gx + j,
                           vm::load_part(g + j, c - j, 0.0) - vm::exp(vm::load_part(y + j, c - j, 0.0)) * sg,
                           c - j);
    }
}

template <class T>
void softmax_fwd(T* out, const T* x, index_t rows, index_t cols, bool log) {
    // out(rows, cols) := softmax(x) (or log_softmax) over each row
    parallel_chunks(rows, rows * cols * 8, 1, [&](index_t lo, index_t hi) {
        for (index_t i = lo; i < hi; ++i) softmax_row(out + i * cols, x + i * cols, cols, log);
    });
}

template <class T>
void softmax_bwd(T* gx, const T* g, const T* y, index_t rows, index_t cols, bool log) {
    // gx(rows, cols) := d/dx given grad_out g and forward output y
    parallel_chunks(rows, rows * cols * (log ? 8 : 2), 1, [&](index_t lo, index_t hi) {
        for (index_t i = lo; i < hi; ++i)
            softmax_backward_row(gx + i * cols, g + i * cols, y + i * cols, cols, log);
    });
}

}  // namespace

void softmax_forward_f32(float* out, const float* x, index_t rows, index_t cols, bool log) {
    softmax_fwd(out, x, rows, cols, log);
}
void softmax_forward_f64(double* out, const double* x, index_t rows, index_t cols, bool log) {
    softmax_fwd(out, x, rows, cols, log);
}
void softmax_backward_f32(float* gx, const float* g, const float* y, index_t rows, index_t cols, bool log) {
    softmax_bwd(gx, g, y, rows, cols, log);
}
void softmax_backward_f64(double* gx, const double* g, const double* y, index_t rows, index_t cols,
                          bool log) {
    softmax_bwd(gx, g, y, rows, cols, log);
}

}  // namespace NNK_NS
}  // namespace nnk
