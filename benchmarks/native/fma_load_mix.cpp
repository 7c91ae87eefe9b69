// How close can an AVX-512 fp32 GEMM inner loop get to the FMA peak on this
// CPU? A stand-alone probe (not part of the package), for docs/gemm.md:
//
//   g++ -O3 -mavx512f -mfma benchmarks/native/fma_load_mix.cpp -o /tmp/fma_load_mix
//   taskset -c 0 /tmp/fma_load_mix
//
// It times, in one process, alternately (rounds), median of 15 samples each:
//   peak    24 independent FMA chains on registers (no memory operand)
//   regs    the 14x32 microkernel's 28 FMAs per k step, A and B in registers
//   MRxNV   the microkernel's full instruction mix: NV vector loads of B and MR
//           broadcast loads of A per k step, MR*NV FMAs, pointers fixed (every
//           load hits the same L1 lines: the best case for the loads)
//   stream  the 14x32 mix with A and B advancing through a packed 14 x 512 and
//           512 x 32 panel (16 A panels, as the GEMM's inner loops see them)
// and prints each as GFLOP/s and % of `peak` from the same round.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

using clk = std::chrono::steady_clock;

__attribute__((noinline)) float peak(long iters) {
    __m512 acc[24];
    __m512 m = _mm512_set1_ps(0.999f);
    const __m512 c = _mm512_set1_ps(0.001f);
    for (int i = 0; i < 24; ++i) acc[i] = _mm512_set1_ps(0.01f * i);
    for (long t = 0; t < iters; ++t) {
        asm volatile("" : "+v"(m));  // keeps the loop from being folded
#pragma GCC unroll 24
        for (int i = 0; i < 24; ++i) acc[i] = _mm512_fmadd_ps(acc[i], m, c);
    }
    __m512 s = acc[0];
    for (int i = 1; i < 24; ++i) s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}

// MR x NV vectors; LOADS: operands from memory at fixed addresses, else registers.
template <int MR, int NV, bool LOADS>
__attribute__((noinline)) float mix(long iters, const float* a, const float* b) {
    __m512 acc[MR * NV];
    for (int i = 0; i < MR * NV; ++i) acc[i] = _mm512_set1_ps(0.01f * i);
    __m512 breg[NV];
    for (int j = 0; j < NV; ++j) breg[j] = _mm512_set1_ps(0.5f);
    __m512 areg = _mm512_set1_ps(0.999f);
    for (long t = 0; t < iters; ++t) {
        asm volatile("" : "+r"(a), "+r"(b), "+v"(areg));
        __m512 bv[NV];
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j) bv[j] = LOADS ? _mm512_load_ps(b + 16 * j) : breg[j];
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) {
            const __m512 av = LOADS ? _mm512_set1_ps(a[i]) : areg;
#pragma GCC unroll 8
            for (int j = 0; j < NV; ++j) acc[i * NV + j] = _mm512_fmadd_ps(av, bv[j], acc[i * NV + j]);
        }
    }
    __m512 s = acc[0];
    for (int i = 1; i < MR * NV; ++i) s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}

// The 14x32 mix streaming through packed panels: k steps over one A panel (14
// floats per step) and the B panel (32 floats per step), C tile stored once.
__attribute__((noinline)) void stream(long k, const float* a, const float* b, float* c) {
    __m512 acc[28];
    for (int i = 0; i < 28; ++i) acc[i] = _mm512_setzero_ps();
    for (long p = 0; p < k; ++p) {
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 14
        for (int i = 0; i < 14; ++i) {
            const __m512 av = _mm512_set1_ps(a[i]);
            acc[2 * i] = _mm512_fmadd_ps(av, b0, acc[2 * i]);
            acc[2 * i + 1] = _mm512_fmadd_ps(av, b1, acc[2 * i + 1]);
        }
        a += 14;
        b += 32;
    }
    for (int i = 0; i < 28; ++i) _mm512_storeu_ps(c + 16 * i, _mm512_add_ps(_mm512_loadu_ps(c + 16 * i), acc[i]));
}

template <class F>
double median_rate(double flops_per_call, F&& call) {
    std::vector<double> r;
    for (int rep = 0; rep < 15; ++rep) {
        long calls = 0;
        const auto t0 = clk::now();
        double el;
        do {
            call();
            ++calls;
            el = std::chrono::duration<double>(clk::now() - t0).count();
        } while (el < 0.02);
        r.push_back(flops_per_call * calls / el * 1e-9);
    }
    std::sort(r.begin(), r.end());
    return r[r.size() / 2];
}

volatile float g_sink;

}  // namespace

int main() {
    alignas(64) static float a_fixed[16], b_fixed[128];
    for (int i = 0; i < 16; ++i) a_fixed[i] = 0.001f * i;
    for (int i = 0; i < 128; ++i) b_fixed[i] = 0.001f * (i % 5);
    constexpr long K = 512, TILES = 16, IT = 200000;
    float* ap = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * 14 * K * TILES));
    float* bp = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * 32 * K));
    std::vector<float> c(14 * 32 * TILES, 0.0f);
    for (long i = 0; i < 14 * K * TILES; ++i) ap[i] = 0.001f * (i % 7);
    for (long i = 0; i < 32 * K; ++i) bp[i] = 0.001f * (i % 5);
    const double f24 = 2.0 * 16 * 24 * IT, f28 = 2.0 * 16 * 28 * IT, f24m = 2.0 * 16 * 24 * IT;
    for (int round = 0; round < 3; ++round) {
        const double pk = median_rate(f24, [&] { g_sink = peak(IT); });
        struct Row { const char* name; double rate; };
        const Row rows[] = {
            {"regs 14x32", median_rate(f28, [&] { g_sink = mix<14, 2, false>(IT, a_fixed, b_fixed); })},
            {"mix 14x32", median_rate(f28, [&] { g_sink = mix<14, 2, true>(IT, a_fixed, b_fixed); })},
            {"mix 12x32", median_rate(f24m, [&] { g_sink = mix<12, 2, true>(IT, a_fixed, b_fixed); })},
            {"mix 8x48", median_rate(f24m, [&] { g_sink = mix<8, 3, true>(IT, a_fixed, b_fixed); })},
            {"mix 6x64", median_rate(f24m, [&] { g_sink = mix<6, 4, true>(IT, a_fixed, b_fixed); })},
            {"stream 14x32", median_rate(2.0 * 14 * 32 * K * TILES, [&] {
                 for (long t = 0; t < TILES; ++t) stream(K, ap + t * 14 * K, bp, c.data() + t * 14 * 32);
             })},
        };
        std::printf("round %d: peak %.1f GFLOP/s\n", round, pk);
        for (const Row& r : rows) std::printf("  %-13s %6.1f GFLOP/s  %5.1f%% of peak\n", r.name, r.rate, 100.0 * r.rate / pk);
    }
    std::free(ap);
    std::free(bp);
    return 0;
}
