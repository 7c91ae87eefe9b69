// GEMM driver: the five BLIS loops around the microkernel (see nnk/gemm.h).
// Compiled once per ISA variant; the blocking comes from gemm_blocking.h.
//
//   for jc in [0, n) step NC:                 B panel  (KC x NC)  -> L3/L2
//     for pc in [0, k) step KC:               pack B panel (shared by threads)
//       for ic in [0, m) step MC:   (threads) pack A block (MC x KC) -> L2
//         for jr in [0, nc) step NR:
//           for ir in [0, mc) step MR:        microkernel on MR x NR tile of C
//
// beta is applied on the first k-block only; bias and activation on the last,
// while the tile is stored.
#include <omp.h>

#include <cstdlib>
#include <cstring>

#include "gemm_epilogue.h"
#include "gemm_ukr.h"

namespace nnk {
namespace NNK_NS {
namespace {

// Grow-only, 64-byte aligned scratch buffer, one per thread and dtype.
struct Scratch {
    void* ptr = nullptr;
    std::size_t bytes = 0;
    ~Scratch() { std::free(ptr); }
    template <class T>
    T* get(std::size_t count) {
        std::size_t need = (count * sizeof(T) + 63) / 64 * 64;
        if (need > bytes) {
            std::free(ptr);
            ptr = std::aligned_alloc(64, need);
            if (!ptr) throw std::bad_alloc();
            bytes = need;
        }
        return static_cast<T*>(ptr);
    }
};

// A blocks are packed by each worker thread; the B panel is packed into the
// calling thread's buffer and shared (read-only) with the workers.
thread_local Scratch tls_pack_a;
thread_local Scratch tls_pack_b;

// Pack rows [0, mc) x depth [0, kc) of A into MR-row micro-panels:
// ap[(i / MR) * kc * MR + p * MR + i % MR], zero padded to a multiple of MR.
template <class T, int MR>
void pack_a(index_t mc, index_t kc, const T* a, index_t rsa, index_t csa, T* ap) {
    for (index_t i0 = 0; i0 < mc; i0 += MR) {
        const int mr = static_cast<int>(mc - i0 < MR ? mc - i0 : MR);
        T* dst = ap + i0 * kc;
        const T* src = a + i0 * rsa;
        if (mr == MR && csa == 1) {
            for (index_t p = 0; p < kc; ++p)
                for (int r = 0; r < MR; ++r) dst[p * MR + r] = src[r * rsa + p];
        } else {
            for (index_t p = 0; p < kc; ++p) {
                for (int r = 0; r < mr; ++r) dst[p * MR + r] = src[r * rsa + p * csa];
                for (int r = mr; r < MR; ++r) dst[p * MR + r] = T(0);
            }
        }
    }
}

// Pack depth [0, kc) x columns [0, nc) of B into NR-column micro-panels:
// bp[(j / NR) * kc * NR + p * NR + j % NR], zero padded to a multiple of NR.
template <class T, int NR>
void pack_b_panel(index_t j0, index_t nc, index_t kc, const T* b, index_t rsb, index_t csb, T* bp) {
    const int nr = static_cast<int>(nc - j0 < NR ? nc - j0 : NR);
    T* dst = bp + j0 * kc;
    const T* src = b + j0 * csb;
    if (nr == NR && csb == 1) {
        for (index_t p = 0; p < kc; ++p) std::memcpy(dst + p * NR, src + p * rsb, NR * sizeof(T));
    } else {
        for (index_t p = 0; p < kc; ++p) {
            for (int j = 0; j < nr; ++j) dst[p * NR + j] = src[p * rsb + j * csb];
            for (int j = nr; j < NR; ++j) dst[p * NR + j] = T(0);
        }
    }
}

// C := beta*C (+ epilogue) when k == 0 or alpha == 0: no product to add.
template <class T>
void scale_only(const GemmProblem<T>& p) {
    for (index_t i = 0; i < p.m; ++i)
        for (index_t j = 0; j < p.n; ++j) {
            T* cp = p.c + i * p.rsc + j * p.csc;
            T x = p.beta == T(0) ? T(0) : p.beta * *cp;
            if (p.bias) x += p.bias[j];
            if (p.epilogue != Epilogue::none) x = apply_epilogue(x, p.epilogue, p.epilogue_param);
            *cp = x;
        }
}

template <class T>
void gemm_impl(const GemmProblem<T>& P,
               void (*ukr)(index_t, const T*, const T*, T, T, T*, index_t, index_t, int, int,
                           const UkrEpilogue<T>&)) {
    constexpr int MR = Blocking<T>::MR, NR = Blocking<T>::NR;
    constexpr index_t KC = Blocking<T>::KC, NC = Blocking<T>::NC;
    const index_t m = P.m, n = P.n, k = P.k;
    if (m == 0 || n == 0) return;
    if (k == 0 || P.alpha == T(0)) {
        scale_only(P);
        return;
    }
    const int nt = threads_for(m * n * k / 16);
    index_t MC = Blocking<T>::MC;
    if (nt > 1) {  // enough row blocks for every thread
        index_t per = (m + nt - 1) / nt;
        per = (per + MR - 1) / MR * MR;
        if (per < MC) MC = per;
    }
    const index_t nc_max = n < NC ? n : NC;
    const index_t kc_max = k < KC ? k : KC;
    T* bp = tls_pack_b.get<T>(static_cast<std::size_t>(((nc_max + NR - 1) / NR) * NR * kc_max));
    OmpErrors errors;

    for (index_t jc = 0; jc < n; jc += NC) {
        const index_t nc = n - jc < NC ? n - jc : NC;
        for (index_t pc = 0; pc < k; pc += KC) {
            const index_t kc = k - pc < KC ? k - pc : KC;
            const bool first = pc == 0, last = pc + kc == k;
            const T beta = first ? P.beta : T(1);
            const T* bsrc = P.b + pc * P.rsb + jc * P.csb;
            const index_t n_panels = (nc + NR - 1) / NR;
            const index_t n_blocks = (m + MC - 1) / MC;
#pragma omp parallel num_threads(nt)
            errors.run([&] {
#pragma omp for schedule(static)
                for (index_t jp = 0; jp < n_panels; ++jp)
                    pack_b_panel<T, NR>(jp * NR, nc, kc, bsrc, P.rsb, P.csb, bp);
#pragma omp for schedule(static)
                for (index_t ib = 0; ib < n_blocks; ++ib) {
                    const index_t ic = ib * MC;
                    const index_t mc = m - ic < MC ? m - ic : MC;
                    T* ap = tls_pack_a.get<T>(static_cast<std::size_t>(((mc + MR - 1) / MR) * MR * kc));
                    pack_a<T, MR>(mc, kc, P.a + ic * P.rsa + pc * P.csa, P.rsa, P.csa, ap);
                    for (index_t jr = 0; jr < nc; jr += NR) {
                        const int nr = static_cast<int>(nc - jr < NR ? nc - jr : NR);
                        UkrEpilogue<T> epi;
                        if (last) {
                            epi.bias = P.bias ? P.bias + jc + jr : nullptr;
                            epi.op = P.epilogue;
                            epi.param = P.epilogue_param;
                        }
                        for (index_t ir = 0; ir < mc; ir += MR) {
                            const int mr = static_cast<int>(mc - ir < MR ? mc - ir : MR);
                            T* c = P.c + (ic + ir) * P.rsc + (jc + jr) * P.csc;
                            ukr(kc, ap + ir * kc, bp + jr * kc, P.alpha, beta, c, P.rsc, P.csc, mr,
                                nr, epi);
                        }
                    }
                }
            });
            errors.rethrow();
        }
    }
}

void sgemm(const GemmProblem<float>& p) { gemm_impl<float>(p, &ukr_f32); }
void dgemm(const GemmProblem<double>& p) { gemm_impl<double>(p, &ukr_f64); }

}  // namespace

const GemmKernels& gemm_kernels() {
    static const GemmKernels table{
#if defined(NNK_ISA_AVX512)
        "avx512",
#elif defined(NNK_ISA_AVX2)
        "avx2",
#else
        "generic",
#endif
        Blocking<float>::MR, Blocking<float>::NR, Blocking<double>::MR, Blocking<double>::NR,
        &sgemm, &dgemm, &colsum_f32, &colsum_f64};
    return table;
}

}  // namespace NNK_NS
}  // namespace nnk
