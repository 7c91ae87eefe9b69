// FlushDenormals: a scope with FTZ/DAZ set on the calling thread (restored at
// its end), for the optimizer update passes (kernels/optim, kernels/fused).
//
// Optimizer state decays geometrically where gradients are zero (dead ReLU
// units, inputs that are always 0) and reaches the denormal range after ~800
// Adam steps; x86 then takes a microcode assist per operation (measured: an
// Adam pass over 200k parameters 137 us with normal state, 1637 us with a
// denormal exp_avg). Inside the scope values below FLT_MIN (1.2e-38; DBL_MIN
// for float64) are read and written as zero, as XLA's CPU code does; NaN and
// infinity are unaffected. torch.set_flush_denormal(True) is the PyTorch
// equivalent. Each OpenMP thread has its own MXCSR: open the scope inside the
// parallel chunk, not around the region.
#pragma once

#if defined(__x86_64__) || defined(__SSE2__)
#include <xmmintrin.h>
#define NNK_HAVE_MXCSR 1
#endif

namespace nnk {
// internal linkage: each ISA variant keeps its own copy (the linker must not
// merge an AVX-512-encoded copy into the generic variant)
namespace {

class FlushDenormals {
  public:
#if defined(NNK_HAVE_MXCSR)
    FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }
    ~FlushDenormals() { _mm_setcsr(saved_); }
    FlushDenormals(const FlushDenormals&) = delete;
    FlushDenormals& operator=(const FlushDenormals&) = delete;

  private:
    unsigned saved_;
#endif
};

}  // namespace
}  // namespace nnk
