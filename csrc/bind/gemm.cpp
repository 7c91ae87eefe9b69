// Bindings for the GEMM family: gemm (with bias/activation epilogue) and
// colsum (bias gradient). Shapes, dtypes, strides and writeability are
// checked here with the GIL held; the kernels run with it released.
#include <string>

#include "nnk/bind_util.h"
#include "nnk/gemm.h"

namespace nnk {
namespace bind {

namespace {

Epilogue parse_epilogue(const std::string& name) {
    if (name == "none") return Epilogue::none;
    if (name == "relu") return Epilogue::relu;
    if (name == "gelu") return Epilogue::gelu;
    if (name == "gelu_tanh") return Epilogue::gelu_tanh;
    if (name == "silu") return Epilogue::silu;
    if (name == "leaky_relu") return Epilogue::leaky_relu;
    throw py::value_error("epilogue: unknown activation '" + name +
                          "' (expected none, relu, gelu, gelu_tanh, silu, leaky_relu)");
}

template <class T>
void run_gemm(py::array& c, const py::array& a, const py::array& b, double alpha, double beta,
              const py::object& bias, Epilogue epi, double epi_param, Epilogue deriv,
              const py::object& aux, double deriv_param) {
    GemmProblem<T> p;
    p.m = a.shape(0);
    p.k = a.shape(1);
    p.n = b.shape(1);
    p.alpha = static_cast<T>(alpha);
    p.beta = static_cast<T>(beta);
    p.a = static_cast<const T*>(a.data());
    p.rsa = elem_stride(a, "a", 0);
    p.csa = elem_stride(a, "a", 1);
    p.b = static_cast<const T*>(b.data());
    p.rsb = elem_stride(b, "b", 0);
    p.csb = elem_stride(b, "b", 1);
    p.c = static_cast<T*>(c.mutable_data());
    p.rsc = elem_stride(c, "out", 0);
    p.csc = elem_stride(c, "out", 1);
    if (!bias.is_none()) p.bias = static_cast<const T*>(bias.cast<py::array>().data());
    p.epilogue = epi;
    p.epilogue_param = static_cast<T>(epi_param);
    if (deriv != Epilogue::none) {
        py::array z = aux.cast<py::array>();
        p.a_aux = static_cast<const T*>(z.data());
        p.rs_aux = elem_stride(z, "aux", 0);
        p.cs_aux = elem_stride(z, "aux", 1);
        p.a_deriv = deriv;
        p.a_deriv_param = static_cast<T>(deriv_param);
    }
    py::gil_scoped_release release;
    if constexpr (std::is_same<T, float>::value)
        gemm().sgemm(p);
    else
        gemm().dgemm(p);
}

void gemm_entry(py::array c, py::array a, py::array b, double alpha, double beta, py::object bias,
                const std::string& epilogue, double epilogue_param, const std::string& a_deriv,
                py::object aux, double a_deriv_param) {
    const DType dt = float_dtype(a, "a");
    same_dtype(a, "a", b, "b");
    same_dtype(a, "a", c, "out");
    require_ndim(a, "a", 2);
    require_ndim(b, "b", 2);
    require_ndim(c, "out", 2);
    if (a.shape(1) != b.shape(0))
        throw py::value_error("matmul: shapes " + shape_str(a) + " and " + shape_str(b) +
                              " are not aligned (inner dimensions differ)");
    if (c.shape(0) != a.shape(0) || c.shape(1) != b.shape(1))
        throw py::value_error("out: expected shape (" + std::to_string(a.shape(0)) + ", " +
                              std::to_string(b.shape(1)) + "), got " + shape_str(c));
    require_writeable(c, "out");
    require_no_overlap(c, "out", a, "a");
    require_no_overlap(c, "out", b, "b");
    if (!bias.is_none()) {
        py::array bb = bias.cast<py::array>();
        same_dtype(a, "a", bb, "bias");
        require_ndim(bb, "bias", 1);
        require_c_contiguous(bb, "bias");
        if (bb.shape(0) != b.shape(1))
            throw py::value_error("bias: expected shape (" + std::to_string(b.shape(1)) + ",), got " +
                                  shape_str(bb));
    }
    const Epilogue epi = parse_epilogue(epilogue);
    const Epilogue deriv = parse_epilogue(a_deriv);
    if (deriv != Epilogue::none) {
        if (aux.is_none())
            throw py::value_error("aux: required when a_deriv is given (the activation's input)");
        py::array z = aux.cast<py::array>();
        same_dtype(a, "a", z, "aux");
        require_ndim(z, "aux", 2);
        if (z.shape(0) != a.shape(0) || z.shape(1) != a.shape(1))
            throw py::value_error("aux: expected shape " + shape_str(a) + ", got " + shape_str(z));
        require_no_overlap(c, "out", z, "aux");
    }
    if (dt == DType::f32)
        run_gemm<float>(c, a, b, alpha, beta, bias, epi, epilogue_param, deriv, aux, a_deriv_param);
    else
        run_gemm<double>(c, a, b, alpha, beta, bias, epi, epilogue_param, deriv, aux, a_deriv_param);
}

void colsum_entry(py::array out, py::array x, bool accumulate, const std::string& deriv_name,
                  py::object z_obj, double deriv_param) {
    const DType dt = float_dtype(x, "x");
    same_dtype(x, "x", out, "out");
    require_ndim(x, "x", 2);
    require_ndim(out, "out", 1);
    if (out.shape(0) != x.shape(1))
        throw py::value_error("out: expected shape (" + std::to_string(x.shape(1)) + ",), got " +
                              shape_str(out));
    require_c_contiguous(out, "out");
    require_writeable(out, "out");
    // An empty x may have any strides (NumPy gives (0, 0) to some empty arrays).
    if (x.shape(0) > 0 && x.shape(1) > 1 && x.strides(1) != x.itemsize())
        throw py::value_error("x: expected unit stride along the last axis");
    const index_t m = x.shape(0), n = x.shape(1);
    const index_t rsx = m > 1 ? elem_stride(x, "x", 0) : n;
    const Epilogue deriv = parse_epilogue(deriv_name);
    if (deriv != Epilogue::none) {
        if (z_obj.is_none()) throw py::value_error("z: required when deriv is given");
        py::array z = z_obj.cast<py::array>();
        same_dtype(x, "x", z, "z");
        require_ndim(z, "z", 2);
        if (z.shape(0) != m || z.shape(1) != n)
            throw py::value_error("z: expected shape " + shape_str(x) + ", got " + shape_str(z));
        if (m > 0 && n > 1 && z.strides(1) != z.itemsize())
            throw py::value_error("z: expected unit stride along the last axis");
        const index_t rsz = m > 1 ? elem_stride(z, "z", 0) : n;
        if (dt == DType::f32) {
            auto* o = static_cast<float*>(out.mutable_data());
            auto* xi = static_cast<const float*>(x.data());
            auto* zi = static_cast<const float*>(z.data());
            const float prm = static_cast<float>(deriv_param);
            py::gil_scoped_release release;
            gemm().colsum_deriv_f32(o, xi, m, n, rsx, accumulate, zi, rsz, deriv, prm);
        } else {
            auto* o = static_cast<double*>(out.mutable_data());
            auto* xi = static_cast<const double*>(x.data());
            auto* zi = static_cast<const double*>(z.data());
            py::gil_scoped_release release;
            gemm().colsum_deriv_f64(o, xi, m, n, rsx, accumulate, zi, rsz, deriv, deriv_param);
        }
        return;
    }
    if (dt == DType::f32) {
        auto* o = static_cast<float*>(out.mutable_data());
        auto* xi = static_cast<const float*>(x.data());
        py::gil_scoped_release release;
        gemm().colsum_f32(o, xi, m, n, rsx, accumulate);
    } else {
        auto* o = static_cast<double*>(out.mutable_data());
        auto* xi = static_cast<const double*>(x.data());
        py::gil_scoped_release release;
        gemm().colsum_f64(o, xi, m, n, rsx, accumulate);
    }
}

}  // namespace

void register_gemm(py::module_& m) {
    m.def("gemm", &gemm_entry, py::arg("out"), py::arg("a"), py::arg("b"), py::arg("alpha") = 1.0,
          py::arg("beta") = 0.0, py::arg("bias") = py::none(), py::arg("epilogue") = "none",
          py::arg("epilogue_param") = 0.0, py::arg("a_deriv") = "none", py::arg("aux") = py::none(),
          py::arg("a_deriv_param") = 0.0,
          "out := epilogue(alpha * a' @ b + beta * out + bias); any strides, written in place.\n"
          "a' = a * act'(aux) with act = a_deriv (applied while a is packed), else a.");
    m.def("colsum", &colsum_entry, py::arg("out"), py::arg("x"), py::arg("accumulate") = false,
          py::arg("deriv") = "none", py::arg("z") = py::none(), py::arg("deriv_param") = 0.0,
          "out (+)= (x * act'(z)).sum(axis=0) in a fixed order (bias gradient); act = deriv.");
    m.def("gemm_info", [] {
        const GemmKernels& g = gemm();
        py::dict d;
        d["variant"] = g.name;
        d["mr_f32"] = g.mr_f32;
        d["nr_f32"] = g.nr_f32;
        d["mr_f64"] = g.mr_f64;
        d["nr_f64"] = g.nr_f64;
        for (int bytes : {4, 8}) {
            index_t b[4];
            g.block_sizes(bytes, b);
            py::dict bd;
            bd["MC"] = b[0];
            bd["KC"] = b[1];
            bd["NC"] = b[2];
            bd["small_work"] = b[3];
            d[bytes == 4 ? "blocking_f32" : "blocking_f64"] = bd;
        }
        return d;
    });
}

}  // namespace bind
}  // namespace nnk
