// Bindings for the machine measurements of `nnkernels bench`:
//   fma_peak(seconds, threads)             -> GFLOP/s (fp32, the ISA in use)
//   copy_bandwidth(nbytes, seconds, threads) -> GB/s   (read + write bytes)
//   bench_info()                           -> the peak loop's shape
// Each thread runs the kernel on its own data for about `seconds` of wall
// time; the result is the sum of the threads' rates, each rate computed over
// that thread's own CPU time (CLOCK_THREAD_CPUTIME_ID). On a quiet machine
// CPU time equals wall time; on a shared one the CPU-time rate is still what
// the core delivers while it runs our thread (time-slices given to other
// processes are not counted), so the peak does not drop with the load.
// Timing is done here, outside the per-ISA kernels, with the GIL released.
#include <omp.h>
#include <time.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "nnk/bench.h"
#include "nnk/bind_util.h"

namespace nnk {
namespace bind {

namespace {

double thread_cpu_seconds() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

void check_args(double seconds, int threads) {
    if (!(seconds > 0.0) || seconds > 60.0)
        throw py::value_error("seconds: expected a duration in (0, 60], got " + std::to_string(seconds));
    if (threads < 1)
        throw py::value_error("threads: expected a positive thread count, got " + std::to_string(threads));
}

double fma_peak(double seconds, int threads) {
    check_args(seconds, threads);
    const BenchKernels& k = bench();
    // ~16k iterations is ~30 us at AVX-512 peak: fine-grained enough to stop on time.
    constexpr index_t kChunk = 1 << 14;
    const double flops_per_chunk = 2.0 * k.lanes * k.chains * static_cast<double>(kChunk);
    double rate_sum = 0.0;
    float sink = 0.0f;
    {
        py::gil_scoped_release release;
        OmpErrors errors;
#pragma omp parallel num_threads(threads) reduction(+ : rate_sum, sink)
        {
            errors.run([&] {
                sink += k.fma_chains(kChunk, 0.999f, 0.001f);  // warm-up: wake the core/vector unit
            });
#pragma omp barrier
            errors.run([&] {
                const double t0 = omp_get_wtime(), c0 = thread_cpu_seconds();
                index_t chunks = 0;
                do {
                    sink += k.fma_chains(kChunk, 0.999f, 0.001f);
                    ++chunks;
                } while (omp_get_wtime() - t0 < seconds);
                const double cpu = thread_cpu_seconds() - c0;
                rate_sum += chunks * flops_per_chunk / (cpu > 0.0 ? cpu : seconds);
            });
        }
        errors.rethrow();
    }
    if (!(sink == sink)) throw std::runtime_error("fma_peak: loop produced NaN");  // keeps `sink` live
    return rate_sum * 1e-9;
}

double copy_bandwidth(index_t nbytes, double seconds, int threads) {
    check_args(seconds, threads);
    if (nbytes < 4096 || nbytes > (index_t(1) << 34))
        throw py::value_error("nbytes: expected a buffer size between 4 KiB and 16 GiB, got " +
                              std::to_string(nbytes));
    const BenchKernels& k = bench();
    const index_t n = nbytes / static_cast<index_t>(sizeof(float));
    const size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    float* src = static_cast<float*>(std::aligned_alloc(64, bytes));
    float* dst = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!src || !dst) {
        std::free(src);
        std::free(dst);
        throw std::bad_alloc();
    }
    double rate_sum = 0.0;
    {
        py::gil_scoped_release release;
        OmpErrors errors;
#pragma omp parallel num_threads(threads) reduction(+ : rate_sum)
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            // Contiguous slice per thread, 64-float aligned.
            const index_t per = ((n / nt + 63) / 64) * 64;
            const index_t lo = t * per < n ? t * per : n;
            const index_t hi = lo + per < n ? lo + per : n;
            errors.run([&] {
                // First touch by the thread that copies the slice, then one warm-up pass.
                for (index_t i = lo; i < hi; ++i) src[i] = static_cast<float>(i & 1023);
                std::memset(dst + lo, 0, (hi - lo) * sizeof(float));
                k.copy(dst + lo, src + lo, hi - lo);
            });
#pragma omp barrier
            errors.run([&] {
                const double t0 = omp_get_wtime(), c0 = thread_cpu_seconds();
                index_t passes = 0;
                do {
                    k.copy(dst + lo, src + lo, hi - lo);
                    ++passes;
                } while (omp_get_wtime() - t0 < seconds);
                const double cpu = thread_cpu_seconds() - c0;
                // STREAM convention: bytes read + bytes written (write-allocate not counted).
                rate_sum += 2.0 * static_cast<double>(hi - lo) * sizeof(float) * passes /
                            (cpu > 0.0 ? cpu : seconds);
            });
        }
        errors.rethrow();
    }
    const float check = dst[n - 1];
    std::free(src);
    std::free(dst);
    if (check != static_cast<float>((n - 1) & 1023)) throw std::runtime_error("copy_bandwidth: copy check failed");
    return rate_sum * 1e-9;
}

}  // namespace

void register_bench(py::module_& m) {
    m.def("fma_peak", &fma_peak, py::arg("seconds"), py::arg("threads"),
          "fp32 FMA peak in GFLOP/s of the ISA variant in use: every one of `threads` threads "
          "runs independent FMA chains on vector registers for about `seconds`; rates are summed.");
    m.def("copy_bandwidth", &copy_bandwidth, py::arg("nbytes"), py::arg("seconds"), py::arg("threads"),
          "Copy bandwidth in GB/s (bytes read + bytes written) of the ISA variant in use: "
          "`threads` threads copy their slices of an `nbytes` float32 buffer for about `seconds`.");
    m.def("bench_info", [] {
        const BenchKernels& k = bench();
        py::dict d;
        d["isa"] = k.name;
        d["lanes"] = k.lanes;
        d["chains"] = k.chains;
        d["fma"] = k.fma;
        d["flops_per_iteration"] = 2 * k.lanes * k.chains;
        return d;
    }, "Shape of the peak loop of the ISA variant in use.");
}

}  // namespace bind
}  // namespace nnk
