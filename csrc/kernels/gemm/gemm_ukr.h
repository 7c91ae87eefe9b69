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

// Packed microkernel (the BLIS one):
//   C[0:m,0:n] := beta*C + alpha * Ap(k x MR) * Bp(k x NR)  [then epilogue]
// Ap: MR-interleaved micro-panel (ap[p*MR + r]); Bp: NR-wide rows (bp[p*NR + j]),
// both zero padded, 64-byte aligned. beta == 0: C is not read.
// a_next/b_next: the micro-panels of the next call, prefetched near the end.
void ukr_f32(index_t k, const float* ap, const float* bp, float alpha, float beta, float* c,
             index_t rsc, index_t csc, int m, int n, const UkrEpilogue<float>& epi,
             const float* a_next, const float* b_next);
void ukr_f64(index_t k, const double* ap, const double* bp, double alpha, double beta, double* c,
             index_t rsc, index_t csc, int m, int n, const UkrEpilogue<double>& epi,
             const double* a_next, const double* b_next);

// The packed microkernel with B read in place (x86 variants only): full
// NR-column panels of a B with unit column stride, rows ldb elements apart.
// For few rows of A, where packing B (read it, write it, read it again)
// costs more than the microkernel's strided reads.
void ukr_brows_f32(index_t k, const float* ap, const float* b, index_t ldb, float alpha, float beta,
                   float* c, index_t rsc, index_t csc, int m, const UkrEpilogue<float>& epi,
                   const float* a_next);
void ukr_brows_f64(index_t k, const double* ap, const double* b, index_t ldb, double alpha, double beta,
                   double* c, index_t rsc, index_t csc, int m, const UkrEpilogue<double>& epi,
                   const double* a_next);

// Direct microkernel (small problems, no packing): A read in place with row
// stride rsa and unit column stride, B read in place with row stride rsb and
// unit column stride. Rows >= m of A and columns >= n of B are never read.
void ukr_direct_f32(index_t k, const float* a, index_t rsa, const float* b, index_t rsb, float alpha,
                    float beta, float* c, index_t rsc, index_t csc, int m, int n,
                    const UkrEpilogue<float>& epi);
void ukr_direct_f64(index_t k, const double* a, index_t rsa, const double* b, index_t rsb,
                    double alpha, double beta, double* c, index_t rsc, index_t csc, int m, int n,
                    const UkrEpilogue<double>& epi);

// Column sums (bias gradient), colsum.cpp.
void colsum_f32(float* out, const float* x, index_t m, index_t n, index_t rsx, bool accumulate);
void colsum_f64(double* out, const double* x, index_t m, index_t n, index_t rsx, bool accumulate);
void colsum_deriv_f32(float* out, const float* x, index_t m, index_t n, index_t rsx,
                      bool accumulate, const float* z, index_t rsz, Epilogue act, float param);
void colsum_deriv_f64(double* out, const double* x, index_t m, index_t n, index_t rsx,
                      bool accumulate, const double* z, index_t rsz, Epilogue act, double param);

}  // namespace NNK_NS
}  // namespace nnk
