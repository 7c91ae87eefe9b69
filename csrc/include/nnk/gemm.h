// GEMM: the contract shared by the driver, the microkernels and the bindings.
//
//   C(m, n) := beta * C + alpha * A(m, k) * B(k, n)   [+ bias(n) on every row]
//
// Operands are given by pointer and general strides in elements (BLIS style):
// element (i, p) of A is a[i * rsa + p * csa]. A transposed operand is just
// swapped strides; packing reads any strides (negative too), so callers never
// materialise a transpose or a contiguous copy.
// beta == 0 means C is not read (NaN/garbage in C is ignored), as in BLAS.
//
// Driver (gemm_driver.cpp): the five BLIS loops
//   jc over n in NC | pc over k in KC (pack B panel) | ic over m in MC (pack A)
//   | jr over NR | ir over MR -> microkernel
// Small problems skip packing (direct microkernel reading A and B in place).
// Few rows of A and a row-major B: B is read in place (ukr_brows_*).
// Microkernel contract (ukr_<isa>_<MR>x<NR>.cpp):
//   given packed micro-panels Ap (k x MR, column-major by MR) and
//   Bp (k x NR, row-major by NR), compute the MR x NR product and
//   C[0:m, 0:n] := beta * C + alpha * Ap * Bp  with m <= MR, n <= NR,
//   C addressed through (rsc, csc).
#pragma once

#include "nnk/common.h"

namespace nnk {

enum class Epilogue : int { none = 0, relu = 1, gelu_tanh = 2, gelu = 3, silu = 4, leaky_relu = 5 };

template <class T>
struct GemmProblem {
    index_t m = 0, n = 0, k = 0;
    T alpha = 1;
    const T* a = nullptr;
    index_t rsa = 0, csa = 0;
    const T* b = nullptr;
    index_t rsb = 0, csb = 0;
    T beta = 0;
    T* c = nullptr;
    index_t rsc = 0, csc = 0;
    const T* bias = nullptr;  // optional, length n, added after alpha*AB + beta*C
    Epilogue epilogue = Epilogue::none;  // applied after the bias
    T epilogue_param = 0;                // e.g. negative_slope for leaky_relu
    // Backward pass: A is read as A(i, p) * act'(aux(i, p)) (the derivative
    // applied while A is packed). aux has A's shape, strides (rs_aux, cs_aux).
    const T* a_aux = nullptr;
    index_t rs_aux = 0, cs_aux = 0;
    Epilogue a_deriv = Epilogue::none;
    T a_deriv_param = 0;
};

struct GemmKernels {
    const char* name;
    int mr_f32, nr_f32, mr_f64, nr_f64;  // register tile of the microkernels
    void (*sgemm)(const GemmProblem<float>& p);
    void (*dgemm)(const GemmProblem<double>& p);
    // Thread `tid`'s share of the same GEMM, called by every thread of a team
    // that is already running inside one OpenMP region (nnk/parallel.h Team),
    // with the same problem: no region is opened and there is no barrier
    // inside, so C is complete only after the caller's barrier. Each thread
    // computes a rectangle of C; results are bitwise those of sgemm/dgemm.
    void (*sgemm_team)(const GemmProblem<float>& p, int tid, int nth);
    void (*dgemm_team)(const GemmProblem<double>& p, int tid, int nth);
    // The rows of C thread `tid` writes in that call, when every thread of
    // the team writes whole rows: *r0..*r1 (possibly empty), true; false when
    // the team splits C by columns too. (The fused step updates the weights
    // whose gradient rows a thread computed on that thread.)
    bool (*sgemm_team_rows)(const GemmProblem<float>& p, int tid, int nth, index_t* r0, index_t* r1);
    bool (*dgemm_team_rows)(const GemmProblem<double>& p, int tid, int nth, index_t* r0, index_t* r1);
    // out(n) (+)= sum over rows of x(m, n) (row stride rsx): the bias gradient.
    // Rows are summed in order, so the result does not depend on threads.
    void (*colsum_f32)(float* out, const float* x, index_t m, index_t n, index_t rsx, bool accumulate);
    void (*colsum_f64)(double* out, const double* x, index_t m, index_t n, index_t rsx, bool accumulate);
    // out(n) (+)= sum over rows of x(i, :) * act'(z(i, :)) (z row stride rsz):
    // the bias gradient through an activation.
    void (*colsum_deriv_f32)(float* out, const float* x, index_t m, index_t n, index_t rsx,
                             bool accumulate, const float* z, index_t rsz, Epilogue act, float param);
    void (*colsum_deriv_f64)(double* out, const double* x, index_t m, index_t n, index_t rsx,
                             bool accumulate, const double* z, index_t rsz, Epilogue act, double param);
    // Cache blocking in use for a dtype of `elem_bytes` (4 or 8):
    // out = {MC, KC, NC, small_work (m*n*k of the unpacked direct path)}.
    void (*block_sizes)(int elem_bytes, index_t out[4]);
};

NNK_DECLARE_PER_ISA(const GemmKernels& gemm_kernels())

#ifndef NNK_NS  // not inside a per-ISA translation unit
inline const GemmKernels& gemm() { return NNK_DISPATCH(gemm_kernels); }
#endif

}  // namespace nnk
