// nnkernels: shared definitions for every translation unit.
//
// Sources under csrc/kernels/ are compiled once per ISA variant with
// NNK_NS defined to the variant's name (generic, avx2, avx512). Kernel code
// lives in namespace nnk::NNK_NS so each variant has distinct symbols.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>

#include <omp.h>

namespace nnk {

using index_t = std::int64_t;

enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };

// ---- threads ---------------------------------------------------------------
// One process-wide thread count for every OpenMP region of ours (OpenMP's own
// nthreads ICV is per calling thread, so Python threads would not share it).
// Every parallel region passes num_threads(nnk::num_threads()).
int num_threads();
void set_num_threads(int n);

// Work (in "element operations") below which a kernel stays on the calling
// thread: measured on Sapphire Rapids, an OpenMP fork/join costs ~2-5 us.
constexpr index_t kParallelMinWork = 1 << 16;

// Name of the variant a per-ISA translation unit is compiled for ("avx512", ...).
#ifdef NNK_NS
#define NNK_STRINGIFY_(x) #x
#define NNK_STRINGIFY(x) NNK_STRINGIFY_(x)
#define NNK_VARIANT_NAME NNK_STRINGIFY(NNK_NS)
#endif

// Header-defined helpers live in an anonymous namespace inside the variant's
// namespace (nnk::<isa>:: in per-ISA units, nnk::common:: elsewhere): every
// translation unit keeps its own copy, so the linker can never pick an
// AVX-512-compiled copy for the generic path, and the symbol names say which
// variant a copy belongs to (tests/test_build.py checks the machine code).
#ifdef NNK_NS
#define NNK_HELPER_NS NNK_NS
#else
#define NNK_HELPER_NS common
#endif
namespace NNK_HELPER_NS {
namespace {

// Number of threads worth using for `work` units of work. Inside a running
// OpenMP region (e.g. the fused step's team, or a caller's own region) it is
// 1: a kernel called there runs on the calling thread instead of opening a
// nested region.
inline int threads_for(index_t work, index_t min_work_per_thread = kParallelMinWork) {
    if (omp_in_parallel()) return 1;
    int nt = num_threads();
    if (work < 2 * min_work_per_thread) return 1;
    index_t useful = work / min_work_per_thread;
    return useful < nt ? static_cast<int>(useful) : nt;
}

// Exceptions must never escape an OpenMP region (std::terminate). Wrap the
// body of every region: the first exception is kept and rethrown afterwards.
class OmpErrors {
  public:
    template <class F>
    void run(F&& f) noexcept {
        try {
            f();
        } catch (...) {
            std::lock_guard<std::mutex> lock(mu_);
            if (!err_) err_ = std::current_exception();
        }
    }
    void rethrow() {
        if (err_) std::rethrow_exception(err_);
    }

  private:
    std::mutex mu_;
    std::exception_ptr err_;
};

// Gathers of rows in a shuffled order (minibatches) wait on DRAM: every
// 64-byte line of the row kGatherAhead positions further on is prefetched
// before a row is copied (a distance of 0-8 rows measured within +-1.5%).
constexpr index_t kGatherAhead = 4;
inline void prefetch_lines(const void* p, std::size_t bytes) {
    const char* c = static_cast<const char*>(p);
    for (std::size_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off);
}

}  // namespace
}  // namespace NNK_HELPER_NS
using NNK_HELPER_NS::kGatherAhead;
using NNK_HELPER_NS::OmpErrors;
using NNK_HELPER_NS::prefetch_lines;
using NNK_HELPER_NS::threads_for;

// ---- ISA dispatch ----------------------------------------------------------
Isa current_isa();
bool isa_supported(Isa isa);  // CPU supports it and it was compiled in
bool isa_compiled(Isa isa);
const char* isa_name(Isa isa);

// Declare the same function in every variant namespace.
#define NNK_DECLARE_PER_ISA(decl) \
    namespace generic {           \
    decl;                         \
    }                             \
    namespace avx2 {              \
    decl;                         \
    }                             \
    namespace avx512 {            \
    decl;                         \
    }

// Pick a variant's kernel table: `NNK_DISPATCH(gemm_kernels)` calls
// nnk::<current isa>::gemm_kernels(). Variants not compiled in fall back.
template <class T>
struct TableGetter {
    using type = const T& (*)();
};
template <class T>
const T& dispatch_table(const T& (*g)(), typename TableGetter<T>::type a2,
                        typename TableGetter<T>::type a5) {
    switch (current_isa()) {
        case Isa::avx512:
            if (a5) return a5();
            [[fallthrough]];
        case Isa::avx2:
            if (a2) return a2();
            [[fallthrough]];
        default:
            return g();
    }
}

}  // namespace nnk

// Dispatch is done only outside the per-ISA translation units (bindings,
// runtime): kernel code never dispatches, and NNK_HAVE_* is defined only there.
#if defined(NNK_HAVE_AVX512)
#define NNK_PTR_AVX512(fn) &::nnk::avx512::fn
#else
#define NNK_PTR_AVX512(fn) nullptr
#endif
#if defined(NNK_HAVE_AVX2)
#define NNK_PTR_AVX2(fn) &::nnk::avx2::fn
#else
#define NNK_PTR_AVX2(fn) nullptr
#endif
#define NNK_DISPATCH(fn) \
    ::nnk::dispatch_table(&::nnk::generic::fn, NNK_PTR_AVX2(fn), NNK_PTR_AVX512(fn))
