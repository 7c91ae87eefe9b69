// The GEMM microkernel as the packed driver runs it, minus everything else:
// the ceiling of the packed GEMM of this ISA variant (included by each
// peak_<isa>.cpp).
//
// ukr_sweep: `tiles` packed A micro-panels (k x MR each, one after the other,
// as the driver's packed MC x KC block) against one packed B micro-panel
// (k x NR), each tile accumulated into its own MR x NR block of c (row stride
// NR, beta = 1): exactly the driver's innermost loop over one B micro-panel
// (gemm_driver.cpp), with no packing, no edge tiles and no epilogue.
// 2 * MR * NR * k * tiles flops per call.
#pragma once

#include "../gemm/gemm_ukr.h"

namespace nnk {
namespace NNK_NS {
namespace {

void ukr_sweep(index_t k, index_t tiles, const float* ap, const float* bp, float* c) {
    constexpr int MR = Tile<float>::MR, NR = Tile<float>::NR;
    const UkrEpilogue<float> none{};
    for (index_t t = 0; t < tiles; ++t) {
        const float* a = ap + t * k * MR;
        const float* a_next = t + 1 < tiles ? a + k * MR : ap;
        ukr_f32(k, a, bp, 1.0f, 1.0f, c + t * MR * NR, NR, 1, MR, NR, none, a_next, bp);
    }
}

}  // namespace
}  // namespace NNK_NS
}  // namespace nnk
