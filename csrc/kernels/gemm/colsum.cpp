// Column sums of a row-major matrix: the bias gradient of Linear.
//   out(n) (+)= sum_i x(i, :)                  x: (m, n), row stride rsx, unit column stride
//   out(n) (+)= sum_i x(i, :) * act'(z(i, :))  the same through an activation
// Threads split the columns (never the rows), so every column is summed in
// the same order whatever the thread count: results are bitwise reproducible.
#include "gemm_epilogue.h"
#include "gemm_ukr.h"

namespace nnk {
namespace NNK_NS {
namespace {

template <class T>
void colsum(T* out, const T* x, index_t m, index_t n, index_t rsx, bool accumulate, const T* z,
            index_t rsz, Epilogue act, T param) {
    constexpr index_t CB = 256;  // columns per chunk: a chunk of sums stays in registers/L1
    const index_t n_chunks = (n + CB - 1) / CB;
    const int nt = threads_for(m * n);
    OmpErrors errors;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (index_t cb = 0; cb < n_chunks; ++cb) {
        errors.run([&] {
            const index_t j0 = cb * CB, j1 = j0 + CB < n ? j0 + CB : n;
            T acc[CB];
            for (index_t j = j0; j < j1; ++j) acc[j - j0] = accumulate ? out[j] : T(0);
            if (act == Epilogue::none) {
                for (index_t i = 0; i < m; ++i) {
                    const T* row = x + i * rsx;
#pragma omp simd
                    for (index_t j = j0; j < j1; ++j) acc[j - j0] += row[j];
                }
            } else {
                for (index_t i = 0; i < m; ++i) {
                    const T* row = x + i * rsx;
                    const T* zr = z + i * rsz;
                    for (index_t j = j0; j < j1; ++j)
                        acc[j - j0] += row[j] * activation_deriv(zr[j], act, param);
                }
            }
            for (index_t j = j0; j < j1; ++j) out[j] = acc[j - j0];
        });
    }
    errors.rethrow();
}

}  // namespace

void colsum_f32(float* out, const float* x, index_t m, index_t n, index_t rsx, bool accumulate) {
    colsum<float>(out, x, m, n, rsx, accumulate, nullptr, 0, Epilogue::none, 0.f);
}
void colsum_f64(double* out, const double* x, index_t m, index_t n, index_t rsx, bool accumulate) {
    colsum<double>(out, x, m, n, rsx, accumulate, nullptr, 0, Epilogue::none, 0.0);
}
void colsum_deriv_f32(float* out, const float* x, index_t m, index_t n, index_t rsx,
                      bool accumulate, const float* z, index_t rsz, Epilogue act, float param) {
    colsum<float>(out, x, m, n, rsx, accumulate, z, rsz, act, param);
}
void colsum_deriv_f64(double* out, const double* x, index_t m, index_t n, index_t rsx,
                      bool accumulate, const double* z, index_t rsz, Epilogue act, double param) {
    colsum<double>(out, x, m, n, rsx, accumulate, z, rsz, act, param);
}

}  // namespace NNK_NS
}  // namespace nnk
