// Blocking for the GEMM: one table, one row per ISA variant and dtype (this
// header is included by per-ISA translation units, so NNK_ISA_* picks the row).
//
//   MR x NR : register tile of the microkernel (rows of A x columns of B)
//   KC      : depth of a packed panel, as a multiple of L1: the KC x NR
//             micro-panel of B (in L1 when the multiple is < 1; on AVX-512 it
//             is 1.34 x L1 and streams from L2 with the A micro-panels: fewer
//             passes over C measured faster than an L1-resident B panel)
//   MC      : rows of A per packed block: the MC x KC block of A stays in L2
//   NC      : columns of B per packed panel: the KC x NC panel of B (shared by
//             the threads) stays in the outer cache
//
// MR/NR are compile-time (they shape the microkernel); KC, MC, NC are derived
// once, at the first call, from the cache sizes the OS reports
// (sysconf _SC_LEVEL1_DCACHE_SIZE / _SC_LEVEL2_CACHE_SIZE), with the fractions
// below, and can be overridden for tuning with NNK_GEMM_KC/MC/NC.
#pragma once

#include "nnk/common.h"

namespace nnk {
namespace NNK_NS {

template <class T>
struct Tile;

struct BlockFractions {
    double l1;    // size of the KC x NR micro-panel of B in units of L1
    double l2;    // share of L2 for the MC x KC block of A
    index_t nc;   // columns of the B panel (multiple of NR)
    index_t small_work;  // m*n*k at or below which the direct (unpacked) path is used
    index_t brows_rows;  // rows of A per thread up to which a row-major B is read in place
};

#if defined(NNK_ISA_AVX512)
template <> struct Tile<float>  { static constexpr int MR = 14, NR = 32; };
template <> struct Tile<double> { static constexpr int MR = 14, NR = 16; };
constexpr BlockFractions kFractions{1.34, 0.25, 3072, 1 << 21, 96};
#elif defined(NNK_ISA_AVX2)
template <> struct Tile<float>  { static constexpr int MR = 6, NR = 16; };
template <> struct Tile<double> { static constexpr int MR = 6, NR = 8; };
constexpr BlockFractions kFractions{0.5, 0.25, 3072, 1 << 21, 48};
#else
template <> struct Tile<float>  { static constexpr int MR = 4, NR = 8; };
template <> struct Tile<double> { static constexpr int MR = 4, NR = 4; };
constexpr BlockFractions kFractions{0.5, 0.5, 2048, 0, 0};
#endif

struct BlockSizes {
    index_t MC, KC, NC;
    index_t small_work;
};

// Computed once per dtype (gemm_driver.cpp).
template <class T>
const BlockSizes& block_sizes();

}  // namespace NNK_NS
}  // namespace nnk
