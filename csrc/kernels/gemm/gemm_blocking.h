// Blocking table for the GEMM: one row per ISA variant (this header is
// included by per-ISA translation units, so NNK_ISA_* selects the row).
//   MR x NR : register tile of the microkernel (rows of A x columns of B)
//   KC      : depth of a packed panel (A micro-panel + B micro-panel in L1)
//   MC      : rows of A per packed block (MC x KC block of A in L2)
//   NC      : columns of B per packed panel (KC x NC panel of B in L3/L2)
#pragma once

namespace nnk {
namespace NNK_NS {

#if defined(NNK_ISA_AVX512)
constexpr int kVecBytes = 64;
#elif defined(NNK_ISA_AVX2)
constexpr int kVecBytes = 32;
#else
constexpr int kVecBytes = 16;
#endif

template <class T>
struct Blocking;

#if defined(NNK_ISA_AVX512)
template <> struct Blocking<float>  { static constexpr int MR = 8, NR = 32, KC = 384, MC = 96,  NC = 4096; };
template <> struct Blocking<double> { static constexpr int MR = 8, NR = 16, KC = 256, MC = 96,  NC = 2048; };
#elif defined(NNK_ISA_AVX2)
template <> struct Blocking<float>  { static constexpr int MR = 6, NR = 16, KC = 256, MC = 72,  NC = 4080; };
template <> struct Blocking<double> { static constexpr int MR = 6, NR = 8,  KC = 256, MC = 72,  NC = 2040; };
#else
template <> struct Blocking<float>  { static constexpr int MR = 4, NR = 8,  KC = 256, MC = 64,  NC = 2048; };
template <> struct Blocking<double> { static constexpr int MR = 4, NR = 4,  KC = 256, MC = 64,  NC = 2048; };
#endif

}  // namespace NNK_NS
}  // namespace nnk
