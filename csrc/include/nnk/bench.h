// Machine measurements for the benchmark report (`nnkernels bench`):
// the fp32 FMA peak and the copy bandwidth of the ISA variant in use.
//
// fma_chains: `chains` independent chains acc_c := acc_c * mul + add, each on
// one vector register of `lanes` floats, run for `iters` iterations. One
// iteration is chains * lanes FMAs = 2 * chains * lanes flops. The chains are
// independent, so with chains >= FMA latency x FMA ports the loop is bound by
// FMA throughput alone: that is the peak a GEMM microkernel can approach.
// (The generic variant has no FMA instruction on x86-64: it issues a multiply
// and an add, still 2 flops per lane.) Returns a sum of the accumulators so
// the loop cannot be optimised away; with 0 < mul < 1 the values stay finite
// and normal (they converge to add / (1 - mul)).
//
// copy: dst(n) := src(n) with the variant's vector loads and ordinary
// (write-allocating) stores, the same kind of stores our kernels use.
//
// ukr_sweep: the variant's fp32 GEMM microkernel over `tiles` packed A
// micro-panels (k x mr each, consecutive) against one packed B micro-panel
// (k x nr), C += A_t @ B into c + t*mr*nr (row stride nr): the packed GEMM's
// innermost loop with no packing, edges or epilogue, i.e. the ceiling of the
// whole GEMM (kernels/bench/ukr_sweep.h). 2*mr*nr*k*tiles flops per call.
// No threading inside: the bindings split the buffer between threads.
#pragma once

#include "nnk/common.h"

namespace nnk {

struct BenchKernels {
    const char* name;
    int lanes;   // floats per vector register
    int chains;  // independent accumulator registers in fma_chains
    bool fma;    // true if a fused multiply-add instruction is used
    float (*fma_chains)(index_t iters, float mul, float add);
    void (*copy)(float* dst, const float* src, index_t n);
    int mr, nr;  // the fp32 GEMM microkernel's register tile
    void (*ukr_sweep)(index_t k, index_t tiles, const float* ap, const float* bp, float* c);
};

NNK_DECLARE_PER_ISA(const BenchKernels& bench_kernels())

#ifndef NNK_NS  // not inside a per-ISA translation unit
inline const BenchKernels& bench() { return NNK_DISPATCH(bench_kernels); }
#endif

}  // namespace nnk
