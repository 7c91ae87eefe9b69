// Register-tiled x86 microkernel template, written with intrinsics through a
// small traits struct S (one per ISA and dtype, defined in ukr_<isa>_*.cpp):
//   S::V        register type (__m512, __m256, __m512d, __m256d)
//   S::W        lanes per register
//   S::zero(), S::load(p) (aligned), S::loadu(p), S::loadu_n(p, count),
//   S::bcast(p) (broadcast one element), S::fma(a, b, c) = a*b + c
//
// Tile: MR rows x NV registers of C stay in registers for the whole k loop
// (MR*NV accumulators + NV registers of B + 1 broadcast of A <= register
// file). Per k step: NV loads of B, MR broadcasts of A, MR*NV FMAs. C is
// loaded (only if beta != 0) and stored once per tile, through the fused
// epilogue of gemm_epilogue.h (alpha, beta, bias, activation).
#pragma once

#include <immintrin.h>

#include "gemm_epilogue.h"
#include "gemm_ukr.h"

namespace nnk {
namespace NNK_NS {
namespace {

template <class S, int MR, int NV>
inline void store_tile(const typename S::V (&acc)[MR][NV], typename S::T alpha, typename S::T beta,
                       typename S::T* c, index_t rsc, index_t csc, int m, int n,
                       const UkrEpilogue<typename S::T>& epi) {
    using T = typename S::T;
    using V = typename S::V;
    constexpr int W = S::W;
    if (csc == 1 && alpha == T(1) && !epi.bias && epi.op == Epilogue::none) {
        // The plain case (most backward GEMMs): C := acc [+ beta*C], whole or masked registers.
        const V vbeta = S::set1(beta);
        for (int r = 0; r < m; ++r) {
            T* crow = c + r * rsc;
#pragma GCC unroll 8
            for (int v = 0; v < NV; ++v) {
                const int count = n - v * W;
                if (count <= 0) break;
                V x = acc[r][v];
                if (count >= W) {
                    if (beta != T(0)) x = S::fma(vbeta, S::loadu(crow + v * W), x);
                    S::storeu(crow + v * W, x);
                } else {
                    if (beta != T(0)) x = S::fma(vbeta, S::loadu_n(crow + v * W, count), x);
                    S::storeu_n(crow + v * W, x, count);
                }
            }
        }
        return;
    }
    for (int r = 0; r < m; ++r) {
        T* crow = c + r * rsc;
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
            const int count = n - v * W < W ? n - v * W : W;
            if (count <= 0) break;
            store_vec<T>(crow + v * W * csc, csc, count, acc[r][v], alpha, beta,
                         epi.bias ? epi.bias + v * W : nullptr, epi.op, epi.param);
        }
    }
}

// The accumulators, copied (constant indices) into an array the store loop may
// index at run time. Passing `acc` itself would make it addressable, and GCC
// then keeps it in memory, storing every accumulator on every k step (seen on
// AVX2: 10 stack stores per 12 FMAs).
template <class S, int MR, int NV>
struct TileRegs {
    typename S::V v[MR][NV];
};
template <class S, int MR, int NV>
inline TileRegs<S, MR, NV> to_memory(const typename S::V (&acc)[MR][NV]) {
    TileRegs<S, MR, NV> t;
#pragma GCC unroll 64
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) t.v[r][v] = acc[r][v];
    return t;
}

// Packed operands: ap[p*MRP + r], bp[p*NVP*W + j], 64-byte aligned.
// MR rows and NV registers of columns are computed (MR <= MRP, NV <= NVP, the
// packing's interleaves): a partial last tile (m <= 8 of 14 rows, n <= 16 of
// 32 columns) can run a smaller instantiation instead of multiplying padding.
// B_ROWS: B is not packed but read in place, NVP*W full columns of rows ldb
// elements apart (any alignment), prefetched a few rows ahead.
template <class S, int MR, int NV, int MRP = MR, int NVP = NV, bool B_ROWS = false>
inline void ukr_packed(index_t k, const typename S::T* __restrict ap,
                       const typename S::T* __restrict bp, typename S::T alpha,
                       typename S::T beta, typename S::T* c, index_t rsc, index_t csc, int m, int n,
                       const UkrEpilogue<typename S::T>& epi, const typename S::T* a_next,
                       const typename S::T* b_next, index_t ldb = NVP * S::W) {
    using V = typename S::V;
    constexpr int W = S::W, NR = NVP * W;
    const index_t b_step = B_ROWS ? ldb : NR;
    constexpr index_t kPrefetchB = 8;  // rows ahead (B_ROWS only)
    // The C tile is touched once at the end: start bringing it in now.
    for (int r = 0; r < m; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(c + r * rsc), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(c + r * rsc + (n - 1) * csc), _MM_HINT_T0);
    }
    V acc[MR][NV];
#pragma GCC unroll 64
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[r][v] = S::zero();

    // Loop order jr/ir: the B micro-panel stays in L1 across calls, the A
    // micro-panel streams from L2: prefetch A a few hundred bytes ahead (one
    // line per k step covers MR*sizeof(T) <= 64 bytes per step).
    constexpr index_t kPrefetchA = 16;  // k steps ahead
#pragma GCC unroll 4
    for (index_t p = 0; p < k; ++p) {
        _mm_prefetch(reinterpret_cast<const char*>(ap + kPrefetchA * MRP), _MM_HINT_T0);
        if (B_ROWS) {
            _mm_prefetch(reinterpret_cast<const char*>(bp + kPrefetchB * b_step), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(bp + kPrefetchB * b_step + NR - 1), _MM_HINT_T0);
        }
        V b[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) b[v] = B_ROWS ? S::loadu(bp + v * W) : S::load(bp + v * W);
#pragma GCC unroll 64
        for (int r = 0; r < MR; ++r) {
            const V a = S::bcast(ap + r);
#pragma GCC unroll 8
            for (int v = 0; v < NV; ++v) acc[r][v] = S::fma(a, b[v], acc[r][v]);
        }
        ap += MRP;
        bp += b_step;
    }
    _mm_prefetch(reinterpret_cast<const char*>(a_next), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(b_next), _MM_HINT_T0);
    store_tile<S, MR, NV>(to_memory<S, MR, NV>(acc).v, alpha, beta, c, rsc, csc, m, n, epi);
}

// Narrow column panels (n <= NC columns of a packed B micro-panel, MRP <= W):
// the tile is computed transposed. One register holds a column of C (the
// MRP rows of the A micro-panel, one masked load per k step), and each of
// the NC columns costs one broadcast of B and one FMA per k step. The full
// tile would pay MR broadcasts and MR*NV FMAs per k step for those few
// columns: the 4 columns left of n = 100 in 32-wide panels cost 7.5 cycles
// per k step that way, against about 4 here (one FMA chain per column, so
// the FMA latency bounds it). Every element is the same chain of FMAs in k
// order as in ukr_packed, so C is bitwise the same as the wide kernel's.
// The columns are then moved into rows and stored by store_tile.
template <class S, int MRP, int NC>
inline void ukr_packed_cols(index_t k, const typename S::T* __restrict ap,
                            const typename S::T* __restrict bp, index_t nrp, typename S::T alpha,
                            typename S::T beta, typename S::T* c, index_t rsc, index_t csc, int m,
                            int n, const UkrEpilogue<typename S::T>& epi, const typename S::T* a_next,
                            const typename S::T* b_next) {
    using T = typename S::T;
    using V = typename S::V;
    constexpr int W = S::W;
    static_assert(MRP <= W, "a column of the tile must fit one register");
    for (int r = 0; r < m; ++r) _mm_prefetch(reinterpret_cast<const char*>(c + r * rsc), _MM_HINT_T0);
    V acc[NC];
#pragma GCC unroll 16
    for (int j = 0; j < NC; ++j) acc[j] = S::zero();
    constexpr index_t kPrefetchA = 16;  // k steps ahead, as ukr_packed
#pragma GCC unroll 4
    for (index_t p = 0; p < k; ++p) {
        _mm_prefetch(reinterpret_cast<const char*>(ap + kPrefetchA * MRP), _MM_HINT_T0);
        const V a = S::loadu_n(ap, MRP);
#pragma GCC unroll 16
        for (int j = 0; j < NC; ++j) acc[j] = S::fma(a, S::bcast(bp + j), acc[j]);
        ap += MRP;
        bp += nrp;
    }
    _mm_prefetch(reinterpret_cast<const char*>(a_next), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(b_next), _MM_HINT_T0);
    alignas(64) T cols[NC][W];
#pragma GCC unroll 16
    for (int j = 0; j < NC; ++j) S::storeu(cols[j], acc[j]);
    alignas(64) T rows[MRP][W] = {};
    for (int r = 0; r < MRP; ++r)
        for (int j = 0; j < NC; ++j) rows[r][j] = cols[j][r];
    TileRegs<S, MRP, 1> t;
    for (int r = 0; r < MRP; ++r) t.v[r][0] = S::loadu(rows[r]);
    store_tile<S, MRP, 1>(t.v, alpha, beta, c, rsc, csc, m, n, epi);
}

// Unpacked operands (small problems): rows of A at a + r*rsa (unit column
// stride), rows of B at b + p*rsb (unit column stride). Rows of A beyond m
// reuse row m-1 (computed, never stored); columns of B beyond n are masked.
template <class S, int MR, int NV>
inline void ukr_direct(index_t k, const typename S::T* a, index_t rsa, const typename S::T* b,
                       index_t rsb, typename S::T alpha, typename S::T beta, typename S::T* c,
                       index_t rsc, index_t csc, int m, int n,
                       const UkrEpilogue<typename S::T>& epi) {
    using T = typename S::T;
    using V = typename S::V;
    constexpr int W = S::W;
    V acc[MR][NV];
#pragma GCC unroll 64
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[r][v] = S::zero();
    const T* arow[MR];
    for (int r = 0; r < MR; ++r) arow[r] = a + (r < m ? r : m - 1) * rsa;
    // Rows of B are rsb apart, often more than the 2 KiB the hardware stride
    // prefetcher follows: fetch them a few steps ahead (full-width panels).
    constexpr index_t kPrefetchB = 8;
    if (n == NV * W) {
        for (index_t p = 0; p < k; ++p) {
            V bv[NV];
            _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchB * rsb), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchB * rsb + NV * W - 1), _MM_HINT_T0);
#pragma GCC unroll 8
            for (int v = 0; v < NV; ++v) bv[v] = S::loadu(b + v * W);
#pragma GCC unroll 64
            for (int r = 0; r < MR; ++r) {
                const V av = S::bcast(arow[r] + p);
#pragma GCC unroll 8
                for (int v = 0; v < NV; ++v) acc[r][v] = S::fma(av, bv[v], acc[r][v]);
            }
            b += rsb;
        }
    } else {
        int cnt[NV];
        for (int v = 0; v < NV; ++v) {
            const int c0 = n - v * W;
            cnt[v] = c0 < 0 ? 0 : (c0 > W ? W : c0);
        }
        for (index_t p = 0; p < k; ++p) {
            V bv[NV];
#pragma GCC unroll 8
            for (int v = 0; v < NV; ++v) bv[v] = S::loadu_n(b + v * W, cnt[v]);
#pragma GCC unroll 64
            for (int r = 0; r < MR; ++r) {
                const V av = S::bcast(arow[r] + p);
#pragma GCC unroll 8
                for (int v = 0; v < NV; ++v) acc[r][v] = S::fma(av, bv[v], acc[r][v]);
            }
            b += rsb;
        }
    }
    store_tile<S, MR, NV>(to_memory<S, MR, NV>(acc).v, alpha, beta, c, rsc, csc, m, n, epi);
}

}  // namespace
}  // namespace NNK_NS
}  // namespace nnk
