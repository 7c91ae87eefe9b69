// Runtime ISA selection: once at import by CPUID, overridable by
// NNKERNELS_ISA=generic|avx2|avx512 (an error if this CPU lacks it).
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "nnk/common.h"

namespace nnk {

namespace {

bool cpu_has(Isa isa) {
    switch (isa) {
        case Isa::generic:
            return true;
#if defined(__x86_64__) || defined(_M_X64)
        case Isa::avx2:
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        case Isa::avx512:
            return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                   __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
        default:
            return false;
    }
}

Isa best_isa() {
    for (Isa isa : {Isa::avx512, Isa::avx2}) {
        if (isa_supported(isa)) return isa;
    }
    return Isa::generic;
}

Isa isa_from_name(const std::string& name) {
    if (name == "generic") return Isa::generic;
    if (name == "avx2") return Isa::avx2;
    if (name == "avx512") return Isa::avx512;
    throw std::invalid_argument("NNKERNELS_ISA: unknown ISA '" + name +
                                "' (expected one of: generic, avx2, avx512)");
}

std::atomic<int>& isa_slot() {
    static std::atomic<int> slot{-1};
    return slot;
}

}  // namespace

bool isa_compiled(Isa isa) {
    switch (isa) {
        case Isa::generic:
            return true;
        case Isa::avx2:
#if defined(NNK_HAVE_AVX2)
            return true;
#else
            return false;
#endif
        case Isa::avx512:
#if defined(NNK_HAVE_AVX512)
            return true;
#else
            return false;
#endif
    }
    return false;
}

bool isa_supported(Isa isa) { return isa_compiled(isa) && cpu_has(isa); }

const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::avx2:
            return "avx2";
        case Isa::avx512:
            return "avx512";
        default:
            return "generic";
    }
}

// Called once from the module initialiser; throws on a bad NNKERNELS_ISA.
void init_isa_from_env() {
    const char* env = std::getenv("NNKERNELS_ISA");
    Isa isa = best_isa();
    if (env && *env) {
        isa = isa_from_name(env);
        if (!isa_compiled(isa))
            throw std::runtime_error(std::string("NNKERNELS_ISA=") + env +
                                     ": this build of nnkernels does not include that variant");
        if (!cpu_has(isa))
            throw std::runtime_error(std::string("NNKERNELS_ISA=") + env +
                                     ": this CPU does not support that instruction set");
    }
    isa_slot().store(static_cast<int>(isa));
}

void set_isa(const std::string& name) {
    Isa isa = isa_from_name(name);
    if (!isa_supported(isa))
        throw std::invalid_argument("ISA '" + name + "' is not available on this CPU/build");
    isa_slot().store(static_cast<int>(isa));
}

Isa current_isa() {
    int v = isa_slot().load(std::memory_order_relaxed);
    if (v < 0) {
        init_isa_from_env();
        v = isa_slot().load();
    }
    return static_cast<Isa>(v);
}

}  // namespace nnk
