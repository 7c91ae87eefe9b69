// avx2 microkernels: fp32 6x16, fp64 6x8 (portable vector-extension version).
#include "ukr_portable.h"

namespace nnk {
namespace NNK_NS {

void ukr_f32(index_t k, const float* ap, const float* bp, float alpha, float beta, float* c,
             index_t rsc, index_t csc, int m, int n, const UkrEpilogue<float>& epi) {
    ukr_portable<float, Blocking<float>::MR, Blocking<float>::NR>(k, ap, bp, alpha, beta, c, rsc,
                                                                  csc, m, n, epi);
}

void ukr_f64(index_t k, const double* ap, const double* bp, double alpha, double beta, double* c,
             index_t rsc, index_t csc, int m, int n, const UkrEpilogue<double>& epi) {
    ukr_portable<double, Blocking<double>::MR, Blocking<double>::NR>(k, ap, bp, alpha, beta, c,
                                                                     rsc, csc, m, n, epi);
}

}  // namespace NNK_NS
}  // namespace nnk
