// GEMM driver: the five BLIS loops around the microkernel (see nnk/gemm.h).
// Compiled once per ISA variant; tile and blocking from gemm_blocking.h.
//
//   for jc in [0, n) step NC:                 B panel  (KC x NC)
//     for pc in [0, k) step KC:               pack this thread's part of the B panel
//       for ic in [0, m) step MC:             pack A block (MC x KC) of this thread's rows
//         for jr in [0, nc) step NR:          B micro-panel (KC x NR) in L1
//           for ir in [0, mc) step MR:        microkernel on an MR x NR tile
//
// beta is applied on the first k-block only; bias and activation on the last,
// while the tile is stored. Threads: one OpenMP region per call; each thread
// owns a rectangle of C (a range of rows x a range of NR-panels), chosen so
// the busiest thread has the least work (choose_split; rows are preferred on ties).
// Threads share nothing but the inputs (no barriers), nobody writes another
// thread's C, and every element of C is summed in the same order whatever the
// thread count.
//
// Small problems (m*n*k <= small_work, unit column strides) skip packing and
// threads altogether: the direct microkernel reads A and B in place.
#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "gemm_epilogue.h"
#include "gemm_ukr.h"

#if defined(NNK_ISA_AVX512) || defined(NNK_ISA_AVX2)
#include <immintrin.h>
#endif

namespace nnk {
namespace NNK_NS {
namespace {

// ---- blocking from the cache sizes ----------------------------------------

index_t env_or(const char* name, index_t dflt) {
    const char* s = std::getenv(name);
    if (s && *s) {
        const long v = std::strtol(s, nullptr, 10);
        if (v > 0) return v;
    }
    return dflt;
}

index_t cache_bytes(int which, index_t dflt) {
    const long v = sysconf(which);
    return v > 0 ? static_cast<index_t>(v) : dflt;
}

template <class T>
BlockSizes compute_block_sizes() {
    constexpr index_t MR = Tile<T>::MR, NR = Tile<T>::NR;
    const index_t l1 = cache_bytes(_SC_LEVEL1_DCACHE_SIZE, 32 * 1024);
    const index_t l2 = cache_bytes(_SC_LEVEL2_CACHE_SIZE, 256 * 1024);
    index_t kc = static_cast<index_t>(static_cast<double>(l1) * kFractions.l1) /
                 (NR * static_cast<index_t>(sizeof(T)));
    kc = env_or("NNK_GEMM_KC", kc);
    kc = kc < 32 ? 32 : (kc > 2048 ? 2048 : kc / 8 * 8);
    index_t mc = static_cast<index_t>(static_cast<double>(l2) * kFractions.l2) /
                 (kc * static_cast<index_t>(sizeof(T)));
    mc = env_or("NNK_GEMM_MC", mc);
    mc = mc < MR ? MR : (mc > 4096 ? 4096 : mc) / MR * MR;
    index_t nc = env_or("NNK_GEMM_NC", kFractions.nc);
    nc = nc < NR ? NR : nc / NR * NR;
    return BlockSizes{mc, kc, nc, env_or("NNK_GEMM_SMALL", kFractions.small_work)};
}

// m*n*k (multiply-adds) below which the GEMM stays on the calling thread.
// Measured on the 2-core Sapphire Rapids (docs/gemm.md): a fork/join plus the
// shared B panel costs about what 2^20 FMAs do.
constexpr index_t kGemmParallelWork = index_t(1) << 21;

// ---- scratch ---------------------------------------------------------------

// Grow-only scratch buffer, one per thread. Buffers of 1 MiB or more are
// 2 MiB aligned and advised as transparent huge pages (Linux "madvise" THP
// mode), so a packed B panel is a few TLB entries instead of hundreds.
struct Scratch {
    void* ptr = nullptr;
    std::size_t bytes = 0;
    ~Scratch() { std::free(ptr); }
    template <class T>
    T* get(std::size_t count) {
        constexpr std::size_t kHuge = std::size_t(2) << 20;
        std::size_t need = (count * sizeof(T) + 63) / 64 * 64;
        if (need > bytes) {
            std::free(ptr);
            const bool huge = need >= kHuge / 2;
            if (huge) need = (need + kHuge - 1) / kHuge * kHuge;
            ptr = std::aligned_alloc(huge ? kHuge : 64, need);
            if (!ptr) {
                bytes = 0;
                throw std::bad_alloc();
            }
#if defined(MADV_HUGEPAGE)
            if (huge) madvise(ptr, need, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
            bytes = need;
        }
        return static_cast<T*>(ptr);
    }
};

// Each thread packs its A blocks and the B panels it needs into its own buffers.
thread_local Scratch tls_pack_a;
thread_local Scratch tls_pack_b;

// ---- packing ---------------------------------------------------------------

// Optional act'(z) factor applied to A while it is packed (backward pass).
template <class T>
struct Deriv {
    const T* z = nullptr;  // same shape as A, at the block's first element
    index_t rsz = 0, csz = 0;
    Epilogue op = Epilogue::none;
    T param = 0;
};

#if defined(NNK_ISA_AVX512) || defined(NNK_ISA_AVX2)
#if defined(NNK_ISA_AVX512)
// In-register transpose of a 16 x 16 block of floats, r[i] = row i on entry,
// column i on exit. Four stages of 16 shuffles each (64 in all, no memory):
//   1. unpack{lo,hi}_ps of rows (2i, 2i+1): 2x2 blocks of 32-bit elements
//   2. unpack{lo,hi}_pd of rows (4i + {0,1}, 4i + {2,3}): 4x4 blocks in each 128-bit lane
//   3. shuffle_f32x4 of rows (i, i + 4) within each group of 8: 128-bit lanes across rows
//   4. shuffle_f32x4 of rows (i, i + 8): the remaining 256-bit halves
// Every loop is fully unrolled so the 16 rows (and 16 temporaries) stay in
// zmm registers.
inline void transpose16(__m512 (&r)[16]) {
    __m512 t[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // t[4g + {0,1,2,3}] = lo(0,1), hi(0,1), lo(2,3), hi(2,3) of rows 4g..4g+3
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
        const __m512d a0 = _mm512_castps_pd(t[4 * g]), a1 = _mm512_castps_pd(t[4 * g + 1]);
        const __m512d b0 = _mm512_castps_pd(t[4 * g + 2]), b1 = _mm512_castps_pd(t[4 * g + 3]);
        r[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, b0));  // column 4l + 0 of each lane
        r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, b0));  // column 4l + 1
        r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, b1));  // column 4l + 2
        r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, b1));  // column 4l + 3
    }
    // r[4g + c], lane l: rows 4g..4g+3 of column 4l + c. Gather lanes across the 4 groups.
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
        // groups (0,1) and (2,3): lanes 0,2 / 1,3 of each
        t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);           // g0.l0 g0.l2 g1.l0 g1.l2
        t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);       // g0.l1 g0.l3 g1.l1 g1.l3
        t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);  // g2.l0 g2.l2 g3.l0 g3.l2
        t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
        r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);            // lane 0: column c
        r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xdd);        // lane 2: column 8 + c
        r[4 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88);   // lane 1: column 4 + c
        r[12 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xdd);  // lane 3: column 12 + c
    }
}

// The fast packers' register block: W x W floats, transposed in registers.
struct PackRegs {
    using V = __m512;
    static constexpr int W = 16;
    static V loadu(const float* p) { return _mm512_loadu_ps(p); }
    static V zero() { return _mm512_setzero_ps(); }
    static void store(float* p, V v) { _mm512_store_ps(p, v); }  // 64-byte aligned
    template <int N>
    static void store_first(float* p, V v) {  // lanes [0, N) only
        _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << N) - 1u), v);
    }
    static void transpose(V (&r)[W]) { transpose16(r); }
};
#else
// In-register transpose of an 8 x 8 block of floats (AVX2), r[i] = row i on
// entry, column i on exit: unpack{lo,hi}_ps, shuffle_ps, permute2f128 (24
// shuffles, fully unrolled).
inline void transpose8(__m256 (&r)[8]) {
    __m256 t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4h + c], lane l: rows 4h..4h+3 of column 4l + c
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
        u[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
        u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
        u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
        u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
        r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);      // column c
        r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);  // column 4 + c
    }
}

struct PackRegs {
    using V = __m256;
    static constexpr int W = 8;
    static V loadu(const float* p) { return _mm256_loadu_ps(p); }
    static V zero() { return _mm256_setzero_ps(); }
    static void store(float* p, V v) { _mm256_store_ps(p, v); }  // 32-byte aligned
    template <int N>
    static void store_first(float* p, V v) {  // lanes [0, N) only
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(N), lane), v);
    }
    static void transpose(V (&r)[W]) { transpose8(r); }
};
#endif

// Row-major A (csa == 1), fp32, a full MR-row micro-panel (MR <= W): W x W
// blocks, rows beyond MR zero, are transposed in registers; column q of a
// block is depth p0 + q of the panel, stored as MR floats (masked store).
// Returns how many depths were packed (a multiple of W).
inline index_t pack_a_rows_simd(index_t kc, const float* src, index_t rsa, float* dst) {
    using R = PackRegs;
    constexpr int MR = Tile<float>::MR, W = R::W;
    static_assert(MR <= W, "MR must fit one register");
    index_t p0 = 0;
    for (; p0 + W <= kc; p0 += W) {
        R::V r[W];
#pragma GCC unroll 16
        for (int i = 0; i < W; ++i) r[i] = i < MR ? R::loadu(src + i * rsa + p0) : R::zero();
        R::transpose(r);
#pragma GCC unroll 16
        for (int q = 0; q < W; ++q) R::store_first<MR>(dst + (p0 + q) * MR, r[q]);
    }
    return p0;
}

// Transposed B (rsb == 1), fp32, a full NR-column micro-panel: W x W blocks
// are loaded as W columns of B (contiguous in p), transposed, stored as rows.
// Returns how many depths were packed (a multiple of W).
inline index_t pack_b_transposed_simd(index_t kc, const float* src, index_t csb, float* dst) {
    using R = PackRegs;
    constexpr int NR = Tile<float>::NR, W = R::W;
    static_assert(NR % W == 0, "NR must be a multiple of the register width");
    index_t p0 = 0;
    for (; p0 + W <= kc; p0 += W) {
        for (int j0 = 0; j0 < NR; j0 += W) {
            R::V r[W];
#pragma GCC unroll 16
            for (int jj = 0; jj < W; ++jj) r[jj] = R::loadu(src + (j0 + jj) * csb + p0);
            R::transpose(r);
#pragma GCC unroll 16
            for (int q = 0; q < W; ++q) R::store(dst + (p0 + q) * NR + j0, r[q]);
        }
    }
    return p0;
}
#endif

// Fast packers where the ISA has them (they return how many depths they
// packed; the scalar loops do the rest).
template <class T, int MR>
inline index_t pack_a_rows_fast(index_t, const T*, index_t, T*) {
    return 0;
}
template <class T, int NR>
inline index_t pack_b_transposed_fast(index_t, const T*, index_t, T*) {
    return 0;
}
#if defined(NNK_ISA_AVX512) || defined(NNK_ISA_AVX2)
template <>
inline index_t pack_a_rows_fast<float, Tile<float>::MR>(index_t kc, const float* src, index_t rsa,
                                                        float* dst) {
    return pack_a_rows_simd(kc, src, rsa, dst);
}
template <>
inline index_t pack_b_transposed_fast<float, Tile<float>::NR>(index_t kc, const float* src,
                                                              index_t csb, float* dst) {
    return pack_b_transposed_simd(kc, src, csb, dst);
}
#endif


// Pack rows [0, mc) x depth [0, kc) of A into MR-row micro-panels:
// ap[(i / MR) * kc * MR + p * MR + i % MR], zero padded to a multiple of MR.
template <class T, int MR>
void pack_a(index_t mc, index_t kc, const T* a, index_t rsa, index_t csa, T* ap,
            const Deriv<T>& d) {
    for (index_t i0 = 0; i0 < mc; i0 += MR) {
        const int mr = static_cast<int>(mc - i0 < MR ? mc - i0 : MR);
        T* dst = ap + i0 * kc;
        const T* src = a + i0 * rsa;
        if (d.op != Epilogue::none) {
            const T* z = d.z + i0 * d.rsz;
            for (index_t p = 0; p < kc; ++p) {
                for (int r = 0; r < mr; ++r)
                    dst[p * MR + r] = src[r * rsa + p * csa] *
                                      activation_deriv(z[r * d.rsz + p * d.csz], d.op, d.param);
                for (int r = mr; r < MR; ++r) dst[p * MR + r] = T(0);
            }
        } else if (mr == MR && csa == 1) {
            // Row-major A: in-register transposes where available, else read
            // each row 16 columns at a time and write interleaved.
            index_t p0 = pack_a_rows_fast<T, MR>(kc, src, rsa, dst);
            for (; p0 + 16 <= kc; p0 += 16)
                for (int r = 0; r < MR; ++r) {
                    const T* s = src + r * rsa + p0;
#pragma GCC unroll 16
                    for (int q = 0; q < 16; ++q) dst[(p0 + q) * MR + r] = s[q];
                }
            for (index_t p = p0; p < kc; ++p)
                for (int r = 0; r < MR; ++r) dst[p * MR + r] = src[r * rsa + p];
        } else if (rsa == 1) {
            // Column-major A (a transposed view): MR contiguous elements per p.
            for (index_t p = 0; p < kc; ++p) {
                std::memcpy(dst + p * MR, src + p * csa, mr * sizeof(T));
                for (int r = mr; r < MR; ++r) dst[p * MR + r] = T(0);
            }
        } else {
            for (index_t p = 0; p < kc; ++p) {
                for (int r = 0; r < mr; ++r) dst[p * MR + r] = src[r * rsa + p * csa];
                for (int r = mr; r < MR; ++r) dst[p * MR + r] = T(0);
            }
        }
    }
}

// Packed B micro-panels are kc*NR elements plus one cache line of padding
// apart: with exactly kc*NR (a multiple of 4 KiB for kc = 256), the rows of
// all panels written by pack_b_rows would map to the same L1 set.
template <class T, int NR>
constexpr index_t panel_stride(index_t kc) {
    return kc * NR + 64 / static_cast<index_t>(sizeof(T));
}

// Pack depth [0, kc) x columns [j0, j0 + NR) of B into one NR-column
// micro-panel at dst: dst[p*NR + j], zero padded.
template <class T, int NR>
void pack_b_panel(index_t j0, index_t nc, index_t kc, const T* b, index_t rsb, index_t csb, T* dst) {
    const int nr = static_cast<int>(nc - j0 < NR ? nc - j0 : NR);
    const T* src = b + j0 * csb;
    if (nr == NR && csb == 1) {
        for (index_t p = 0; p < kc; ++p) std::memcpy(dst + p * NR, src + p * rsb, NR * sizeof(T));
    } else if (rsb == 1) {
        // Transposed B (e.g. weight.T in Linear): each column is contiguous in
        // p; read 16 of it (one cache line), write them NR apart.
        index_t p0 = nr == NR ? pack_b_transposed_fast<T, NR>(kc, src, csb, dst) : 0;
        for (; p0 + 16 <= kc; p0 += 16) {
            for (int j = 0; j < nr; ++j) {
                const T* s = src + j * csb + p0;
#pragma GCC unroll 16
                for (int q = 0; q < 16; ++q) dst[(p0 + q) * NR + j] = s[q];
            }
            for (int j = nr; j < NR; ++j)
                for (int q = 0; q < 16; ++q) dst[(p0 + q) * NR + j] = T(0);
        }
        for (index_t p = p0; p < kc; ++p) {
            for (int j = 0; j < nr; ++j) dst[p * NR + j] = src[j * csb + p];
            for (int j = nr; j < NR; ++j) dst[p * NR + j] = T(0);
        }
    } else {
        for (index_t p = 0; p < kc; ++p) {
            for (int j = 0; j < nr; ++j) dst[p * NR + j] = src[p * rsb + j * csb];
            for (int j = nr; j < NR; ++j) dst[p * NR + j] = T(0);
        }
    }
}

// Pack the micro-panels [q0, q1) of a row-major B (csb == 1) into
// bp + jp * panel_stride: row by row, so B is read sequentially (one stream)
// and written to q1 - q0 panel streams, instead of one NR-wide strided column
// per panel (a cache line per row of B).
template <class T, int NR>
void pack_b_rows(index_t q0, index_t q1, index_t nc, index_t kc, const T* b, index_t rsb, T* bp) {
    const index_t j_end = q1 * NR < nc ? q1 * NR : nc;
    const index_t full_end = (j_end - q0 * NR) / NR * NR + q0 * NR;  // end of the full panels
    const index_t ps = panel_stride<T, NR>(kc);
    for (index_t p = 0; p < kc; ++p) {
        const T* src = b + p * rsb;
        for (index_t j0 = q0 * NR; j0 < full_end; j0 += NR)
            std::memcpy(bp + (j0 / NR) * ps + p * NR, src + j0, NR * sizeof(T));
        if (full_end < j_end) {
            const index_t nr = j_end - full_end;
            T* dst = bp + (full_end / NR) * ps + p * NR;
            for (index_t j = 0; j < nr; ++j) dst[j] = src[full_end + j];
            for (index_t j = nr; j < NR; ++j) dst[j] = T(0);
        }
    }
}

// C := beta*C (+ epilogue) when k == 0 or alpha == 0: no product to add.
template <class T>
void scale_only(const GemmProblem<T>& p) {
    for (index_t i = 0; i < p.m; ++i)
        for (index_t j = 0; j < p.n; ++j) {
            T* cp = p.c + i * p.rsc + j * p.csc;
            T x = p.beta == T(0) ? T(0) : p.beta * *cp;
            if (p.bias) x += p.bias[j];
            if (p.epilogue != Epilogue::none) x = apply_epilogue(x, p.epilogue, p.epilogue_param);
            *cp = x;
        }
}

template <class T>
using UkrFn = void (*)(index_t, const T*, const T*, T, T, T*, index_t, index_t, int, int,
                       const UkrEpilogue<T>&, const T*, const T*);
template <class T>
using BRowsFn = void (*)(index_t, const T*, const T*, index_t, T, T, T*, index_t, index_t, int,
                         const UkrEpilogue<T>&, const T*);
template <class T>
using DirectFn = void (*)(index_t, const T*, index_t, const T*, index_t, T, T, T*, index_t, index_t,
                          int, int, const UkrEpilogue<T>&);

// Cut `count` elements, in tiles of `tile`, into `parts` ranges of whole
// tiles; part i gets tiles [lo, hi). The edges are the tile edges nearest to
// equal shares of the elements, so a partial last tile counts for what it
// holds: 784 columns in 32-wide panels split 12 + 12.5 panels (384 + 400
// columns), not 13 + 11.5. A part may be empty.
inline void split_tiles(index_t count, index_t tile, int parts, int i, index_t& lo, index_t& hi) {
    const index_t tiles = (count + tile - 1) / tile;
    auto edge = [&](int j) -> index_t {
        if (j >= parts) return tiles;
        const index_t e = (2 * j * count + parts * tile) / (2 * parts * tile);
        return e < tiles ? e : tiles;
    };
    lo = edge(i);
    hi = edge(i + 1);
}

// Elements in part i of such a split.
inline index_t split_elems(index_t count, index_t tile, int parts, int i) {
    index_t lo, hi;
    split_tiles(count, tile, parts, i, lo, hi);
    if (hi <= lo) return 0;
    return (hi * tile < count ? hi * tile : count) - lo * tile;
}

// Factor nt = tm * tn (threads over rows x over columns) for an m x n C of
// MR x NR tiles, minimising the busiest thread's cost: rows x columns of its
// rectangle (the multiply-adds per k) plus ~3 per row and per column it packs
// (a packed element costs a few multiply-adds). Ties: split rows.
inline void choose_split(index_t m, index_t n, index_t MR, index_t NR, int nt, int& tm, int& tn) {
    index_t best = -1;
    for (int d = nt; d >= 1; --d) {
        if (nt % d) continue;
        const int e = nt / d;
        index_t rows = 0, cols = 0;
        for (int i = 0; i < d; ++i) {
            const index_t r = split_elems(m, MR, d, i);
            rows = r > rows ? r : rows;
        }
        for (int j = 0; j < e; ++j) {
            const index_t c = split_elems(n, NR, e, j);
            cols = c > cols ? c : cols;
        }
        const index_t cost = rows * cols + 3 * (rows + cols);
        if (best < 0 || cost < best) {
            best = cost;
            tm = d;
            tn = e;
        }
    }
}

// The split of C among `nth` threads (a team's share, or a plain call's
// region): tm row parts x tn column parts (choose_split); thread tid computes
// the row tiles [t0, t1) of its row part. The direct path splits all n
// columns, the packed path the columns of each NC panel.
template <class T>
void team_split(const GemmProblem<T>& P, bool direct_path, int tid, int nth, int& tm, int& tn, index_t& t0,
                index_t& t1) {
    constexpr int MR = Tile<T>::MR, NR = Tile<T>::NR;
    const index_t NC = block_sizes<T>().NC;
    const index_t ncols = direct_path || P.n < NC ? P.n : NC;
    tm = tn = 1;
    choose_split(P.m, ncols, MR, NR, nth, tm, tn);
    split_tiles(P.m, MR, tm, tid / tn, t0, t1);
}

// Small problems: no packing. jr outer so a k x NR column panel of B is
// reused from L1 by every row tile. Thread `tid` of `nth` (a team's share;
// the plain call is 0 of 1) computes one rectangle of tiles.
template <class T>
void gemm_direct(const GemmProblem<T>& P, DirectFn<T> direct, int tid = 0, int nth = 1) {
    constexpr int MR = Tile<T>::MR, NR = Tile<T>::NR;
    int tm, tn;
    index_t t0, t1, q0, q1;
    team_split(P, true, tid, nth, tm, tn, t0, t1);
    split_tiles(P.n, NR, tn, tid % tn, q0, q1);
    for (index_t jr = q0 * NR; jr < q1 * NR && jr < P.n; jr += NR) {
        const int nr = static_cast<int>(P.n - jr < NR ? P.n - jr : NR);
        UkrEpilogue<T> epi;
        epi.bias = P.bias ? P.bias + jr : nullptr;
        epi.op = P.epilogue;
        epi.param = P.epilogue_param;
        for (index_t ir = t0 * MR; ir < t1 * MR && ir < P.m; ir += MR) {
            const int mr = static_cast<int>(P.m - ir < MR ? P.m - ir : MR);
            direct(P.k, P.a + ir * P.rsa, P.rsa, P.b + jr, P.rsb, P.alpha, P.beta,
                   P.c + ir * P.rsc + jr * P.csc, P.rsc, P.csc, mr, nr, epi);
        }
    }
}

// Block size for cutting `count` into ceil(count / limit) nearly equal
// blocks, rounded up to a multiple of `step` (so it may exceed limit by < step).
inline index_t even_block(index_t count, index_t limit, index_t step) {
    if (count <= limit) return count;
    const index_t blocks = (count + limit - 1) / limit;
    const index_t size = (count + blocks - 1) / blocks;
    return (size + step - 1) / step * step;
}

// Thread `tid` of `nth` computes its rectangle of C (may throw: callers
// inside an OpenMP region catch). Each thread packs the B panels it needs
// into its own buffer: no barriers, so a descheduled thread never stalls the
// other (the machine may be shared), at the price of packing B once per
// row-split thread (k*n copies for m*n*k/nth multiply-adds).
// Rows of A per thread up to which a row-major B (unit column stride) is
// read in place by the microkernel instead of packed: packing B reads it,
// writes it and reads it again, which only pays off when many row tiles reuse
// each packed panel. NNK_GEMM_BROWS overrides it (tuning; 0 disables).
inline index_t brows_max_rows() {
    static const index_t v = [] {
        const char* s = std::getenv("NNK_GEMM_BROWS");
        if (s && *s) return static_cast<index_t>(std::strtol(s, nullptr, 10));
        return kFractions.brows_rows;
    }();
    return v;
}

template <class T>
void gemm_packed_part(const GemmProblem<T>& P, UkrFn<T> ukr, BRowsFn<T> brows, int tid, int nth) {
    constexpr int MR = Tile<T>::MR, NR = Tile<T>::NR;
    const BlockSizes& bs = block_sizes<T>();
    const index_t m = P.m, n = P.n, k = P.k;
    // k is cut into equal blocks of at most about KC (a multiple of 16, the
    // transposed packing's step): 784 = 4 x 196 rather than 3 x 256 + 16, so
    // no block is a sliver that pays the C tile's load and store for little work.
    const index_t NC = bs.NC, KC = even_block(k, bs.KC, 16);
    const index_t nc_max = n < NC ? n : NC;
    const index_t kc_max = k < KC ? k : KC;
    Deriv<T> deriv_all;
    deriv_all.z = P.a_aux;
    deriv_all.rsz = P.rs_aux;
    deriv_all.csz = P.cs_aux;
    deriv_all.op = P.a_deriv;
    deriv_all.param = P.a_deriv_param;
    // This thread's rectangle of C: rows [m0, m1), NR-panels [q0, q1) of each NC panel.
    int tm, tn;
    index_t t0, t1;
    team_split(P, false, tid, nth, tm, tn, t0, t1);
    const index_t m0 = t0 * MR, m1 = t1 * MR < m ? t1 * MR : m;
    if (m0 >= m1) return;
    const bool b_rows = brows && P.csb == 1 && m1 - m0 <= brows_max_rows();
    const index_t MC = even_block(m1 - m0, bs.MC, MR);
    const index_t mc_max = m1 - m0 < MC ? m1 - m0 : MC;
    T* ap = tls_pack_a.get<T>(static_cast<std::size_t>(((mc_max + MR - 1) / MR) * MR * kc_max));
    T* bp = tls_pack_b.get<T>(
        static_cast<std::size_t>(((nc_max + NR - 1) / NR) * panel_stride<T, NR>(kc_max)));

    for (index_t jc = 0; jc < n; jc += NC) {
        const index_t nc = n - jc < NC ? n - jc : NC;
        index_t q0, q1;
        split_tiles(nc, NR, tn, tid % tn, q0, q1);
        if (q0 >= q1) continue;
        for (index_t pc = 0; pc < k; pc += KC) {
            const index_t kc = k - pc < KC ? k - pc : KC;
            const bool first = pc == 0, last = pc + kc == k;
            const T beta = first ? P.beta : T(1);
            const T* bsrc = P.b + pc * P.rsb + jc * P.csb;
            if (b_rows) {  // full panels are read in place; pack a partial last one
                if (q1 * NR > nc) pack_b_rows<T, NR>(q1 - 1, q1, nc, kc, bsrc, P.rsb, bp);
            } else if (P.csb == 1)
                pack_b_rows<T, NR>(q0, q1, nc, kc, bsrc, P.rsb, bp);
            else
                for (index_t jp = q0; jp < q1; ++jp)
                    pack_b_panel<T, NR>(jp * NR, nc, kc, bsrc, P.rsb, P.csb,
                                        bp + jp * panel_stride<T, NR>(kc));
            for (index_t ic = m0; ic < m1; ic += MC) {
                const index_t mc = m1 - ic < MC ? m1 - ic : MC;
                Deriv<T> d = deriv_all;
                if (d.op != Epilogue::none) d.z += ic * d.rsz + pc * d.csz;
                pack_a<T, MR>(mc, kc, P.a + ic * P.rsa + pc * P.csa, P.rsa, P.csa, ap, d);
                for (index_t jp = q0; jp < q1; ++jp) {
                    const index_t jr = jp * NR;
                    const int nr = static_cast<int>(nc - jr < NR ? nc - jr : NR);
                    UkrEpilogue<T> epi;
                    if (last) {
                        epi.bias = P.bias ? P.bias + jc + jr : nullptr;
                        epi.op = P.epilogue;
                        epi.param = P.epilogue_param;
                    }
                    const T* bmp = bp + jp * panel_stride<T, NR>(kc);
                    for (index_t ir = 0; ir < mc; ir += MR) {
                        const int mr = static_cast<int>(mc - ir < MR ? mc - ir : MR);
                        T* c = P.c + (ic + ir) * P.rsc + (jc + jr) * P.csc;
                        const bool last_ir = ir + MR >= mc;
                        if (b_rows && nr == NR)
                            brows(kc, ap + ir * kc, bsrc + jr, P.rsb, P.alpha, beta, c, P.rsc, P.csc,
                                  mr, epi, last_ir ? ap : ap + (ir + MR) * kc);
                        else
                            ukr(kc, ap + ir * kc, bmp, P.alpha, beta, c, P.rsc, P.csc, mr, nr,
                                epi, last_ir ? ap : ap + (ir + MR) * kc,
                                last_ir ? bmp + panel_stride<T, NR>(kc) : bmp);
                    }
                }
            }
        }
    }
}

// One OpenMP region per call (none for nt_req <= 1).
template <class T>
void gemm_packed(const GemmProblem<T>& P, UkrFn<T> ukr, BRowsFn<T> brows, int nt_req) {
    if (nt_req <= 1) {
        gemm_packed_part(P, ukr, brows, 0, 1);
        return;
    }
    OmpErrors errors;
#pragma omp parallel num_threads(nt_req)
    errors.run([&] { gemm_packed_part(P, ukr, brows, omp_get_thread_num(), omp_get_num_threads()); });
    errors.rethrow();
}

// The direct (unpacked) path: small problems whose A and B have unit column
// stride. Plain calls and team calls both decide here, so they take the same
// path and give bitwise the same C.
template <class T>
bool use_direct(const GemmProblem<T>& P, DirectFn<T> direct) {
    return direct && P.m * P.n * P.k <= block_sizes<T>().small_work && P.csa == 1 && P.csb == 1 &&
           P.a_deriv == Epilogue::none;
}

template <class T>
void gemm_impl(const GemmProblem<T>& P, UkrFn<T> ukr, BRowsFn<T> brows, DirectFn<T> direct) {
    const index_t m = P.m, n = P.n, k = P.k;
    if (m == 0 || n == 0) return;
    if (k == 0 || P.alpha == T(0)) {
        scale_only(P);
        return;
    }
    const index_t work = m * n * k;
    if (use_direct(P, direct)) {
        gemm_direct(P, direct);
        return;
    }
    int nt = 1;
    if (work >= kGemmParallelWork) {
        nt = num_threads();
        const index_t useful = work / (kGemmParallelWork / 2);
        if (useful < nt) nt = static_cast<int>(useful);
    }
    gemm_packed(P, ukr, brows, nt);
}

// Multiply-adds per thread below which a team GEMM leaves the extra threads
// idle (splitting costs a second packing of the shared operand and partial
// tiles; there is no fork/join to pay inside a team).
constexpr index_t kTeamMinWork = index_t(1) << 15;

// Threads of a team of nth that take part in a team GEMM (the others idle).
template <class T>
int team_useful(const GemmProblem<T>& P, int nth) {
    const index_t work = P.m * P.n * P.k;
    if (work / kTeamMinWork >= nth) return nth;
    return work / kTeamMinWork > 1 ? static_cast<int>(work / kTeamMinWork) : 1;
}

// Thread tid's share inside a running team (nnk/gemm.h, sgemm_team). The
// path (direct or packed) is chosen by use_direct, as for a plain call, so the
// result is bitwise the same.
template <class T>
void gemm_team(const GemmProblem<T>& P, UkrFn<T> ukr, BRowsFn<T> brows, DirectFn<T> direct, int tid,
               int nth) {
    const index_t m = P.m, n = P.n, k = P.k;
    if (m == 0 || n == 0) return;
    if (k == 0 || P.alpha == T(0)) {
        if (tid == 0) scale_only(P);
        return;
    }
    const int useful = team_useful(P, nth);
    if (tid >= useful) return;
    if (use_direct(P, direct)) {
        gemm_direct(P, direct, tid, useful);
        return;
    }
    gemm_packed_part(P, ukr, brows, tid, useful);
}

// The rows of C that thread tid writes in gemm_team(P, tid, nth), when every
// thread of the team writes whole rows: [r0, r1), possibly empty. false when
// the split cuts the columns too. The same decisions as gemm_team, in order.
template <class T>
bool team_rows(const GemmProblem<T>& P, DirectFn<T> direct, int tid, int nth, index_t* r0, index_t* r1) {
    constexpr int MR = Tile<T>::MR;
    *r0 = *r1 = 0;
    if (P.m == 0 || P.n == 0) return true;
    if (P.k == 0 || P.alpha == T(0)) {
        if (tid == 0) *r1 = P.m;
        return true;
    }
    const int useful = team_useful(P, nth);
    int tm = 1, tn = 1;
    index_t t0 = 0, t1 = 0;
    team_split(P, use_direct(P, direct), tid < useful ? tid : 0, useful, tm, tn, t0, t1);
    if (tn != 1) return false;
    if (tid >= useful) return true;
    *r0 = t0 * MR < P.m ? t0 * MR : P.m;
    *r1 = t1 * MR < P.m ? t1 * MR : P.m;
    return true;
}

#if defined(NNK_ISA_GENERIC)
constexpr DirectFn<float> kDirectF32 = nullptr;
constexpr DirectFn<double> kDirectF64 = nullptr;
constexpr BRowsFn<float> kBRowsF32 = nullptr;
constexpr BRowsFn<double> kBRowsF64 = nullptr;
#else
constexpr DirectFn<float> kDirectF32 = &ukr_direct_f32;
constexpr DirectFn<double> kDirectF64 = &ukr_direct_f64;
constexpr BRowsFn<float> kBRowsF32 = &ukr_brows_f32;
constexpr BRowsFn<double> kBRowsF64 = &ukr_brows_f64;
#endif

void block_sizes_of(int elem_bytes, index_t out[4]) {
    const BlockSizes& b = elem_bytes == 8 ? block_sizes<double>() : block_sizes<float>();
    out[0] = b.MC;
    out[1] = b.KC;
    out[2] = b.NC;
    out[3] = b.small_work;
}

void sgemm(const GemmProblem<float>& p) { gemm_impl<float>(p, &ukr_f32, kBRowsF32, kDirectF32); }
void dgemm(const GemmProblem<double>& p) { gemm_impl<double>(p, &ukr_f64, kBRowsF64, kDirectF64); }
void sgemm_team(const GemmProblem<float>& p, int tid, int nth) {
    gemm_team<float>(p, &ukr_f32, kBRowsF32, kDirectF32, tid, nth);
}
void dgemm_team(const GemmProblem<double>& p, int tid, int nth) {
    gemm_team<double>(p, &ukr_f64, kBRowsF64, kDirectF64, tid, nth);
}
bool sgemm_team_rows(const GemmProblem<float>& p, int tid, int nth, index_t* r0, index_t* r1) {
    return team_rows<float>(p, kDirectF32, tid, nth, r0, r1);
}
bool dgemm_team_rows(const GemmProblem<double>& p, int tid, int nth, index_t* r0, index_t* r1) {
    return team_rows<double>(p, kDirectF64, tid, nth, r0, r1);
}

}  // namespace

template <class T>
const BlockSizes& block_sizes() {
    static const BlockSizes b = compute_block_sizes<T>();
    return b;
}
template const BlockSizes& block_sizes<float>();
template const BlockSizes& block_sizes<double>();

const GemmKernels& gemm_kernels() {
    static const GemmKernels table{
        NNK_VARIANT_NAME,
        Tile<float>::MR, Tile<float>::NR, Tile<double>::MR, Tile<double>::NR,
        &sgemm, &dgemm, &sgemm_team, &dgemm_team, &sgemm_team_rows, &dgemm_team_rows,
        &colsum_f32, &colsum_f64, &colsum_deriv_f32, &colsum_deriv_f64, &block_sizes_of};
    return table;
}

}  // namespace NNK_NS
}  // namespace nnk
