// nnkernels._C: the private native module. Each kernel family registers its
// functions from its own file (bind/<family>.cpp).
#include <omp.h>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "nnk/common.h"

namespace py = pybind11;

namespace nnk {
void init_isa_from_env();
void set_isa(const std::string& name);
namespace bind {
void register_gemm(py::module_& m);
void register_activations(py::module_& m);
void register_losses(py::module_& m);
void register_optim(py::module_& m);
void register_fused(py::module_& m);
void register_bench(py::module_& m);
}  // namespace bind
}  // namespace nnk

PYBIND11_MODULE(_C, m) {
    m.doc() = "nnkernels native kernels (private; use nnkernels.ops)";
    nnk::init_isa_from_env();  // raises on a bad NNKERNELS_ISA

    m.def("cpu_info", [] {
        py::dict d;
        d["isa"] = nnk::isa_name(nnk::current_isa());
        py::list compiled, supported;
        for (nnk::Isa isa : {nnk::Isa::generic, nnk::Isa::avx2, nnk::Isa::avx512}) {
            if (nnk::isa_compiled(isa)) compiled.append(nnk::isa_name(isa));
            if (nnk::isa_supported(isa)) supported.append(nnk::isa_name(isa));
        }
        d["compiled"] = compiled;
        d["supported"] = supported;
        d["threads"] = nnk::num_threads();
        d["omp_max_threads"] = omp_get_max_threads();
        return d;
    }, "ISA chosen, variants compiled in and supported by this CPU, thread count.");
    m.def("set_isa", &nnk::set_isa, py::arg("name"),
          "Switch the kernel variant (generic, avx2, avx512). For tests and benchmarks.");
    m.def("set_num_threads", [](int n) {
        if (n < 1) throw py::value_error("n: expected a positive thread count, got " + std::to_string(n));
        nnk::set_num_threads(n);
    }, py::arg("n"));
    m.def("get_num_threads", &nnk::num_threads);

    nnk::bind::register_gemm(m);
    nnk::bind::register_activations(m);
    nnk::bind::register_losses(m);
    nnk::bind::register_optim(m);
    nnk::bind::register_fused(m);
    nnk::bind::register_bench(m);
}
