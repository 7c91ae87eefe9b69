// Bindings for the machine measurements of `nnkernels bench`:
//   fma_peak(seconds, threads)             -> GFLOP/s (fp32, the ISA in use)
//   copy_bandwidth(nbytes, seconds, threads) -> GB/s   (read + write bytes)
//   ukr_peak(seconds, threads, k, tiles)   -> GFLOP/s of the GEMM microkernel alone
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
#include "nnk/gemm.h"
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

// The fp32 GEMM microkernel on packed panels, as the driver runs it (one B
// micro-panel, `tiles` A micro-panels, k deep; k = 0 and tiles = 0 take KC and
// MC / MR from the GEMM's blocking): the ceiling of the packed GEMM, since
// packing, edge tiles and epilogues only add time. Each thread has its own
// panels (64-byte aligned) and C.
double ukr_peak(double seconds, int threads, index_t k, index_t tiles) {
    check_args(seconds, threads);
    const BenchKernels& kern = bench();
    if (k < 0 || k > 65536)
        throw py::value_error("k: expected 0 (the GEMM's KC) or a depth in [1, 65536], got " + std::to_string(k));
    if (tiles < 0 || tiles > 4096)
        throw py::value_error("tiles: expected 0 (the GEMM's MC / MR) or a count in [1, 4096], got " + std::to_string(tiles));
    index_t blk[4];
    gemm().block_sizes(4, blk);
    if (k == 0) k = blk[1];
    if (tiles == 0) tiles = blk[0] / kern.mr > 0 ? blk[0] / kern.mr : 1;
    const index_t mr = kern.mr, nr = kern.nr;
    const double flops_per_sweep = 2.0 * static_cast<double>(mr * nr) * static_cast<double>(k * tiles);
    auto round64 = [](index_t floats) { return static_cast<size_t>((floats * 4 + 63) / 64 * 64); };
    double rate_sum = 0.0;
    float sink = 0.0f;
    {
        py::gil_scoped_release release;
        OmpErrors errors;
#pragma omp parallel num_threads(threads) reduction(+ : rate_sum, sink)
        {
            float* ap = nullptr;
            float* bp = nullptr;
            float* c = nullptr;
            errors.run([&] {
                ap = static_cast<float*>(std::aligned_alloc(64, round64(tiles * k * mr)));
                bp = static_cast<float*>(std::aligned_alloc(64, round64(k * nr)));
                c = static_cast<float*>(std::aligned_alloc(64, round64(tiles * mr * nr)));
                if (!ap || !bp || !c) throw std::bad_alloc();
                // Small values: each sweep adds at most 0.006 * 0.04 * k to an element of
                // C, far from overflow in the at most 60 s a call may run.
                for (index_t i = 0; i < tiles * k * mr; ++i) ap[i] = 0.001f * static_cast<float>(i % 7);
                for (index_t i = 0; i < k * nr; ++i) bp[i] = 0.01f * static_cast<float>(i % 5);
                for (index_t i = 0; i < tiles * mr * nr; ++i) c[i] = 0.0f;
                kern.ukr_sweep(k, tiles, ap, bp, c);  // warm-up: caches and the vector unit
            });
#pragma omp barrier
            errors.run([&] {
                if (!ap || !bp || !c) return;
                const double t0 = omp_get_wtime(), c0 = thread_cpu_seconds();
                index_t sweeps = 0;
                do {
                    kern.ukr_sweep(k, tiles, ap, bp, c);
                    ++sweeps;
                } while (omp_get_wtime() - t0 < seconds);
                const double cpu = thread_cpu_seconds() - c0;
                rate_sum += sweeps * flops_per_sweep / (cpu > 0.0 ? cpu : seconds);
                sink += c[0];
            });
            std::free(ap);
            std::free(bp);
            std::free(c);
        }
        errors.rethrow();
    }
    if (!(sink == sink)) throw std::runtime_error("ukr_peak: the microkernel produced NaN");
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
    m.def("ukr_peak", &ukr_peak, py::arg("seconds"), py::arg("threads"), py::arg("k") = 0,
          py::arg("tiles") = 0,
          "GFLOP/s of the fp32 GEMM microkernel alone (ISA variant in use) on cache-resident packed "
          "panels: one k x NR B micro-panel against `tiles` MR x k A micro-panels, as the packed "
          "driver runs it but with no packing, edges or epilogue; the ceiling of the whole GEMM. "
          "k = 0 / tiles = 0: the GEMM's KC and MC / MR.");
    m.def("bench_info", [] {
        const BenchKernels& k = bench();
        py::dict d;
        d["isa"] = k.name;
        d["lanes"] = k.lanes;
        d["chains"] = k.chains;
        d["fma"] = k.fma;
        d["flops_per_iteration"] = 2 * k.lanes * k.chains;
        d["ukr_mr"] = k.mr;
        d["ukr_nr"] = k.nr;
        return d;
    }, "Shape of the peak loop of the ISA variant in use.");
}

}  // namespace bind
}  // namespace nnk
