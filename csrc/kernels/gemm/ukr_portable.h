// Portable register-blocked microkernel written with GCC vector extensions:
// the same source becomes zmm, ymm or xmm code depending on the variant's
// flags. Used by the ukr_<isa>_<tile>.cpp files of this directory.
#pragma once

#include <cstring>

#include "gemm_epilogue.h"
#include "gemm_ukr.h"

namespace nnk {
namespace NNK_NS {
namespace {

template <class T>
struct Vec;
template <>
struct Vec<float> {
    typedef float type __attribute__((vector_size(kVecBytes)));
};
template <>
struct Vec<double> {
    typedef double type __attribute__((vector_size(kVecBytes)));
};

template <class T, int MR, int NR>
inline void ukr_portable(index_t k, const T* __restrict ap, const T* __restrict bp, T alpha, T beta,
                         T* c, index_t rsc, index_t csc, int m, int n, const UkrEpilogue<T>& epi) {
    using V = typename Vec<T>::type;
    constexpr int W = kVecBytes / sizeof(T);
    constexpr int NV = NR / W;
    static_assert(NR % W == 0, "NR must be a multiple of the vector width");
    V acc[MR][NV];
#pragma GCC unroll 64
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[r][v] = V{} ;
    for (index_t p = 0; p < k; ++p) {
        V b[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) std::memcpy(&b[v], bp + p * NR + v * W, sizeof(V));
#pragma GCC unroll 64
        for (int r = 0; r < MR; ++r) {
            const T a = ap[p * MR + r];
#pragma GCC unroll 8
            for (int v = 0; v < NV; ++v) acc[r][v] += a * b[v];
        }
    }
    // Store: C loaded and stored once per tile, epilogue fused.
    T tile[MR][NR];
    std::memcpy(tile, acc, sizeof(tile));
    for (int r = 0; r < m; ++r) {
        for (int j = 0; j < n; ++j) {
            T* cp = c + r * rsc + j * csc;
            T x = alpha * tile[r][j];
            if (beta != T(0)) x += beta * *cp;
            if (epi.bias) x += epi.bias[j];
            if (epi.op != Epilogue::none) x = apply_epilogue(x, epi.op, epi.param);
            *cp = x;
        }
    }
}

}  // namespace
}  // namespace NNK_NS
}  // namespace nnk
