// Bindings for the activation family: elementwise activations (forward and
// backward), softmax / log_softmax over rows, and the elementary functions of
// vmath.h (for the accuracy tests). Arguments are checked with the GIL held;
// the kernels run with it released.
#include <string>

#include "nnk/act.h"
#include "nnk/bind_util.h"

namespace nnk {
namespace bind {

namespace {

Act parse_act(const std::string& name) {
    static const char* names[] = {"relu", "leaky_relu", "elu", "sigmoid", "tanh",
                                  "gelu", "gelu_tanh",  "silu", "softplus"};
    for (int i = 0; i < 9; ++i)
        if (name == names[i]) return static_cast<Act>(i);
    throw py::value_error("name: unknown activation '" + name +
                          "' (expected relu, leaky_relu, elu, sigmoid, tanh, gelu, gelu_tanh, silu, softplus)");
}

MathFn parse_fn(const std::string& name) {
    static const char* names[] = {"exp",   "expm1",   "log",   "log1p",   "tanh",   "erf",       "erfc",
                                  "sigmoid", "exp_f", "expm1_f", "log_f", "log1p_f", "tanh_f", "sigmoid_f",
                                  "erf_f", "erfc_f"};
    for (int i = 0; i < 16; ++i)
        if (name == names[i]) return static_cast<MathFn>(i);
    throw py::value_error("fn: unknown function '" + name + "'");
}

void same_shape(const py::array& a, const char* an, const py::array& b, const char* bn) {
    bool ok = a.ndim() == b.ndim();
    for (py::ssize_t i = 0; ok && i < a.ndim(); ++i) ok = a.shape(i) == b.shape(i);
    if (!ok)
        throw py::value_error(std::string(an) + ": expected the shape of " + bn + " " + shape_str(b) + ", got " +
                              shape_str(a));
}

// out written, inputs read: common checks for elementwise kernels
DType check_elementwise(const py::array& out, const char* on, std::initializer_list<std::pair<const py::array*, const char*>> ins) {
    const DType dt = float_dtype(out, on);
    for (auto& in : ins) {
        same_dtype(*in.first, in.second, out, on);
        same_shape(*in.first, in.second, out, on);
        require_c_contiguous(*in.first, in.second);
    }
    require_c_contiguous(out, on);
    require_writeable(out, on);
    for (auto& in : ins) require_no_overlap(out, on, *in.first, in.second);
    return dt;
}

void act_forward_entry(py::array out, py::array x, const std::string& name, double p0, double p1) {
    const DType dt = check_elementwise(out, "out", {{&x, "x"}});
    const Act act = parse_act(name);
    const index_t n = x.size();
    if (dt == DType::f32) {
        auto* o = static_cast<float*>(out.mutable_data());
        auto* xi = static_cast<const float*>(x.data());
        py::gil_scoped_release release;
        nnk::act().forward_f32(o, xi, n, act, p0, p1);
    } else {
        auto* o = static_cast<double*>(out.mutable_data());
        auto* xi = static_cast<const double*>(x.data());
        py::gil_scoped_release release;
        nnk::act().forward_f64(o, xi, n, act, p0, p1);
    }
}

void act_backward_entry(py::array grad_x, py::array grad_out, py::array x, const std::string& name, double p0,
                        double p1) {
    const DType dt = check_elementwise(grad_x, "grad_x", {{&grad_out, "grad_out"}, {&x, "x"}});
    const Act act = parse_act(name);
    const index_t n = x.size();
    if (dt == DType::f32) {
        auto* o = static_cast<float*>(grad_x.mutable_data());
        auto* g = static_cast<const float*>(grad_out.data());
        auto* xi = static_cast<const float*>(x.data());
        py::gil_scoped_release release;
        nnk::act().backward_f32(o, g, xi, n, act, p0, p1);
    } else {
        auto* o = static_cast<double*>(grad_x.mutable_data());
        auto* g = static_cast<const double*>(grad_out.data());
        auto* xi = static_cast<const double*>(x.data());
        py::gil_scoped_release release;
        nnk::act().backward_f64(o, g, xi, n, act, p0, p1);
    }
}

void softmax_forward_entry(py::array out, py::array x, bool log) {
    const DType dt = check_elementwise(out, "out", {{&x, "x"}});
    require_ndim(x, "x", 2);
    const index_t rows = x.shape(0), cols = x.shape(1);
    if (dt == DType::f32) {
        auto* o = static_cast<float*>(out.mutable_data());
        auto* xi = static_cast<const float*>(x.data());
        py::gil_scoped_release release;
        nnk::act().softmax_forward_f32(o, xi, rows, cols, log);
    } else {
        auto* o = static_cast<double*>(out.mutable_data());
        auto* xi = static_cast<const double*>(x.data());
        py::gil_scoped_release release;
        nnk::act().softmax_forward_f64(o, xi, rows, cols, log);
    }
}

void softmax_backward_entry(py::array grad_x, py::array grad_out, py::array y, bool log) {
    const DType dt = check_elementwise(grad_x, "grad_x", {{&grad_out, "grad_out"}, {&y, "out"}});
    require_ndim(y, "out", 2);
    const index_t rows = y.shape(0), cols = y.shape(1);
    if (dt == DType::f32) {
        auto* o = static_cast<float*>(grad_x.mutable_data());
        auto* g = static_cast<const float*>(grad_out.data());
        auto* yi = static_cast<const float*>(y.data());
        py::gil_scoped_release release;
        nnk::act().softmax_backward_f32(o, g, yi, rows, cols, log);
    } else {
        auto* o = static_cast<double*>(grad_x.mutable_data());
        auto* g = static_cast<const double*>(grad_out.data());
        auto* yi = static_cast<const double*>(y.data());
        py::gil_scoped_release release;
        nnk::act().softmax_backward_f64(o, g, yi, rows, cols, log);
    }
}

void math_entry(py::array out, py::array x, const std::string& fn) {
    const DType dt = check_elementwise(out, "out", {{&x, "x"}});
    const MathFn f = parse_fn(fn);
    const index_t n = x.size();
    if (dt == DType::f32) {
        auto* o = static_cast<float*>(out.mutable_data());
        auto* xi = static_cast<const float*>(x.data());
        py::gil_scoped_release release;
        nnk::act().math_f32(o, xi, n, f);
    } else {
        auto* o = static_cast<double*>(out.mutable_data());
        auto* xi = static_cast<const double*>(x.data());
        py::gil_scoped_release release;
        nnk::act().math_f64(o, xi, n, f);
    }
}

}  // namespace

void register_activations(py::module_& m) {
    m.def("act_forward", &act_forward_entry, py::arg("out"), py::arg("x"), py::arg("name"),
          py::arg("param0") = 0.0, py::arg("param1") = 0.0,
          "out := act(x) elementwise (C-contiguous, same shape), written in place.");
    m.def("act_backward", &act_backward_entry, py::arg("grad_x"), py::arg("grad_out"), py::arg("x"),
          py::arg("name"), py::arg("param0") = 0.0, py::arg("param1") = 0.0,
          "grad_x := grad_out * act'(x) elementwise, written in place.");
    m.def("softmax_forward", &softmax_forward_entry, py::arg("out"), py::arg("x"), py::arg("log") = false,
          "out(R, C) := softmax(x) (log_softmax if log) over each row.");
    m.def("softmax_backward", &softmax_backward_entry, py::arg("grad_x"), py::arg("grad_out"), py::arg("out"),
          py::arg("log") = false, "Gradient of (log_)softmax given grad_out and the forward output.");
    m.def("vmath", &math_entry, py::arg("out"), py::arg("x"), py::arg("fn"),
          "out := fn(x) with the vectorised elementary functions (exp, expm1, log, log1p, tanh, erf, "
          "erfc, sigmoid); for accuracy tests.");
    m.def("act_info", [] { return std::string(nnk::act().name); });
}

}  // namespace bind
}  // namespace nnk
