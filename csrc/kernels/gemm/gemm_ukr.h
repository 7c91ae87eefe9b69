// Microkernel declarations for this ISA variant (see nnk/gemm.h for the
// contract). Implemented in ukr_<isa>_<MR>x<NR>.cpp.
#pragma once

#include "gemm_blocking.h"
#include "nnk/gemm.h"

namespace nnk {
namespace NNK_NS {

// Epilogue data for the final k-block of a tile (bias, activation).
template <class T>
struct UkrEpilogue {
    const T* bias = nullptr;  // at the tile's first column, or nullptr
    Epilogue op = Epilogue::none;
    T param = 0;
};

// C[0:m,0:n] := beta*C + alpha * Ap(k x MR) * Bp(k x NR) [then epilogue]
void ukr_f32(index_t k, const float* ap, const float* bp, float alpha, float beta, float* c,
             index_t rsc, index_t csc, int m, int n, const UkrEpilogue<float>& epi);
void ukr_f64(index_t k, const double* ap, const double* bp, double alpha, double beta, double* c,
             index_t rsc, index_t csc, int m, int n, const UkrEpilogue<double>& epi);

// Column sums (bias gradient), colsum.cpp.
void colsum_f32(float* out, const float* x, index_t m, index_t n, index_t rsx, bool accumulate);
void colsum_f64(double* out, const double* x, index_t m, index_t n, index_t rsx, bool accumulate);

}  // namespace NNK_NS
}  // namespace nnk
