// Portable register-blocked microkernel written with GCC vector extensions
// (the generic variant: SSE2 on x86-64, whatever the target has elsewhere).
#pragma once

#include <cstring>

#include "gemm_epilogue.h"
#include "gemm_ukr.h"

namespace nnk {
namespace NNK_NS {
namespace {

template <class T, int MR, int NR>
inline void ukr_portable(index_t k, const T* __restrict ap, const T* __restrict bp, T alpha, T beta,
                         T* c, index_t rsc, index_t csc, int m, int n, const UkrEpilogue<T>& epi) {
    using V = typename EpiVec<T>::type;
    constexpr int W = kEpiVecBytes / sizeof(T);
    constexpr int NV = NR / W;
    static_assert(NR % W == 0, "NR must be a multiple of the vector width");
    V acc[MR][NV];
#pragma GCC unroll 64
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[r][v] = V{};
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
    for (int r = 0; r < m; ++r)
        for (int v = 0; v < NV; ++v) {
            const int count = n - v * W < W ? n - v * W : W;
            if (count <= 0) break;
            store_vec<T>(c + r * rsc + v * W * csc, csc, count, acc[r][v], alpha, beta,
                         epi.bias ? epi.bias + v * W : nullptr, epi.op, epi.param);
        }
}

}  // namespace
}  // namespace NNK_NS
}  // namespace nnk
