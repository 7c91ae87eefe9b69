// generic microkernels: fp32 4x8, fp64 4x4 (portable vector-extension version;
// no direct path: small problems are packed too).
#include "ukr_portable.h"

namespace nnk {
namespace NNK_NS {

void ukr_f32(index_t k, const float* ap, const float* bp, float alpha, float beta, float* c,
             index_t rsc, index_t csc, int m, int n, const UkrEpilogue<float>& epi, const float*,
             const float*) {
    ukr_portable<float, Tile<float>::MR, Tile<float>::NR>(k, ap, bp, alpha, beta, c, rsc, csc, m,
                                                          n, epi);
}

void ukr_f64(index_t k, const double* ap, const double* bp, double alpha, double beta, double* c,
             index_t rsc, index_t csc, int m, int n, const UkrEpilogue<double>& epi, const double*,
             const double*) {
    ukr_portable<double, Tile<double>::MR, Tile<double>::NR>(k, ap, bp, alpha, beta, c, rsc, csc,
                                                             m, n, epi);
}

}  // namespace NNK_NS
}  // namespace nnk
