// Bindings for the loss family: fused softmax cross-entropy, NLL and the
// pointwise losses. Every argument (dtype, shape, contiguity, writeability,
// overlap, class-index range) is checked with the GIL held, then the kernel
// runs with it released and returns the reduced loss as a float.
#include <cstdint>
#include <string>

#include "nnk/bind_util.h"
#include "nnk/loss.h"

namespace nnk {
namespace bind {

namespace {

void require_shape(const py::array& a, const char* name, std::initializer_list<py::ssize_t> shape) {
    bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
    py::ssize_t i = 0;
    std::string want = "(";
    for (py::ssize_t s : shape) {
        if (ok && a.shape(i) != s) ok = false;
        want += (i ? ", " : "") + std::to_string(s);
        ++i;
    }
    want += shape.size() == 1 ? ",)" : ")";
    if (!ok) throw py::value_error(std::string(name) + ": expected shape " + want + ", got " + shape_str(a));
}

// An optional output: right dtype/shape, C-contiguous, writeable, not overlapping the inputs.
template <class T>
T* optional_out(const py::object& o, const char* name, const py::array& like,
                std::initializer_list<py::ssize_t> shape, std::initializer_list<const py::array*> inputs) {
    if (o.is_none()) return nullptr;
    if (!py::isinstance<py::array>(o)) throw py::type_error(std::string(name) + ": expected a numpy array or None");
    py::array a = o.cast<py::array>();
    same_dtype(like, "input", a, name);
    require_shape(a, name, shape);
    require_c_contiguous(a, name);
    require_writeable(a, name);
    for (const py::array* in : inputs) require_no_overlap(a, name, *in, "input");
    return static_cast<T*>(a.mutable_data());
}

template <class T>
const T* optional_in(const py::object& o, const char* name, const py::array& like,
                     std::initializer_list<py::ssize_t> shape) {
    if (o.is_none()) return nullptr;
    if (!py::isinstance<py::array>(o)) throw py::type_error(std::string(name) + ": expected a numpy array or None");
    py::array a = o.cast<py::array>();
    same_dtype(like, "input", a, name);
    require_shape(a, name, shape);
    require_c_contiguous(a, name);
    return static_cast<const T*>(a.data());
}

// int64 class indices (n,), each in [0, c) or == ignore_index
const std::int64_t* class_indices(const py::array& t, index_t n, index_t c, std::int64_t ignore_index) {
    if (!t.dtype().is(py::dtype::of<std::int64_t>()))
        throw py::type_error("target: expected int64 class indices, got dtype " + dtype_str(t));
    require_shape(t, "target", {static_cast<py::ssize_t>(n)});
    require_c_contiguous(t, "target");
    const auto* y = static_cast<const std::int64_t*>(t.data());
    for (index_t i = 0; i < n; ++i) {
        if ((y[i] < 0 || y[i] >= c) && y[i] != ignore_index)
            throw py::value_error("target: class index " + std::to_string(y[i]) + " at position " + std::to_string(i) +
                                  " is out of range [0, " + std::to_string(c) + ") (and is not ignore_index=" +
                                  std::to_string(ignore_index) + ")");
    }
    return y;
}

template <class T>
double run_ce(bool nll, py::object grad, py::object losses, const py::array& logits, const py::array& target,
              py::object weight, std::int64_t ignore_index, double label_smoothing, bool mean) {
    CrossEntropyProblem<T> p;
    p.n = logits.shape(0);
    p.c = logits.shape(1);
    p.logits = static_cast<const T*>(logits.data());
    if (!nll && target.ndim() == 2) {
        same_dtype(logits, "logits", target, "target");
        require_shape(target, "target", {logits.shape(0), logits.shape(1)});
        require_c_contiguous(target, "target");
        p.target_prob = static_cast<const T*>(target.data());
    } else {
        p.target_idx = class_indices(target, p.n, p.c, ignore_index);
    }
    p.weight = optional_in<T>(weight, "weight", logits, {logits.shape(1)});
    p.ignore_index = ignore_index;
    p.label_smoothing = label_smoothing;
    p.mean = mean;
    p.grad = optional_out<T>(grad, "grad", logits, {logits.shape(0), logits.shape(1)}, {&logits, &target});
    p.losses = optional_out<T>(losses, "losses", logits, {logits.shape(0)}, {&logits, &target});
    if (!weight.is_none()) {
        py::array w = weight.cast<py::array>();
        if (p.grad) require_no_overlap(grad.cast<py::array>(), "grad", w, "weight");
    }
    py::gil_scoped_release release;
    if constexpr (std::is_same<T, float>::value)
        return nll ? nnk::loss().nll_f32(p) : nnk::loss().cross_entropy_f32(p);
    else
        return nll ? nnk::loss().nll_f64(p) : nnk::loss().cross_entropy_f64(p);
}

double ce_entry(bool nll, py::object grad, py::object losses, py::array logits, py::array target, py::object weight,
                std::int64_t ignore_index, double label_smoothing, bool mean) {
    const char* lname = nll ? "log_probs" : "logits";
    const DType dt = float_dtype(logits, lname);
    require_ndim(logits, lname, 2);
    require_c_contiguous(logits, lname);
    if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
        throw py::value_error("label_smoothing: expected a value in [0, 1]");
    if (dt == DType::f32)
        return run_ce<float>(nll, grad, losses, logits, target, weight, ignore_index, label_smoothing, mean);
    return run_ce<double>(nll, grad, losses, logits, target, weight, ignore_index, label_smoothing, mean);
}

PointLoss parse_loss(const std::string& name) {
    static const char* names[] = {"mse", "l1", "huber", "bce", "bce_logits", "kl_div", "kl_div_log"};
    for (int i = 0; i < 7; ++i)
        if (name == names[i]) return static_cast<PointLoss>(i);
    throw py::value_error("name: unknown pointwise loss '" + name +
                          "' (expected mse, l1, huber, bce, bce_logits, kl_div, kl_div_log)");
}

template <class T>
double run_pointwise(py::object grad, py::object losses, const py::array& input, const py::array& target,
                     py::object pos_weight, PointLoss kind, double param, double scale) {
    PointwiseProblem<T> p;
    p.rows = input.shape(0);
    p.k = input.shape(1);
    p.input = static_cast<const T*>(input.data());
    p.target = static_cast<const T*>(target.data());
    p.pos_weight = optional_in<T>(pos_weight, "pos_weight", input, {input.shape(1)});
    p.loss = kind;
    p.param = param;
    p.scale = scale;
    p.grad = optional_out<T>(grad, "grad", input, {input.shape(0), input.shape(1)}, {&input, &target});
    p.losses = optional_out<T>(losses, "losses", input, {input.shape(0), input.shape(1)}, {&input, &target});
    py::gil_scoped_release release;
    if constexpr (std::is_same<T, float>::value)
        return nnk::loss().pointwise_f32(p);
    else
        return nnk::loss().pointwise_f64(p);
}

double pointwise_entry(py::object grad, py::object losses, py::array input, py::array target, py::object pos_weight,
                       const std::string& name, double param, double scale) {
    const DType dt = float_dtype(input, "input");
    require_ndim(input, "input", 2);
    require_c_contiguous(input, "input");
    same_dtype(input, "input", target, "target");
    require_shape(target, "target", {input.shape(0), input.shape(1)});
    require_c_contiguous(target, "target");
    const PointLoss kind = parse_loss(name);
    if (dt == DType::f32) return run_pointwise<float>(grad, losses, input, target, pos_weight, kind, param, scale);
    return run_pointwise<double>(grad, losses, input, target, pos_weight, kind, param, scale);
}

}  // namespace

void register_losses(py::module_& m) {
    m.def(
        "cross_entropy",
        [](py::object grad, py::object losses, py::array logits, py::array target, py::object weight,
           std::int64_t ignore_index, double label_smoothing, bool mean) {
            return ce_entry(false, grad, losses, logits, target, weight, ignore_index, label_smoothing, mean);
        },
        py::arg("grad"), py::arg("losses"), py::arg("logits"), py::arg("target"), py::arg("weight") = py::none(),
        py::arg("ignore_index") = -100, py::arg("label_smoothing") = 0.0, py::arg("mean") = true,
        "Fused softmax cross-entropy: writes grad (N, C) / losses (N,) if given, returns the reduced loss.");
    m.def(
        "nll_loss",
        [](py::object grad, py::object losses, py::array log_probs, py::array target, py::object weight,
           std::int64_t ignore_index, bool mean) {
            return ce_entry(true, grad, losses, log_probs, target, weight, ignore_index, 0.0, mean);
        },
        py::arg("grad"), py::arg("losses"), py::arg("log_probs"), py::arg("target"), py::arg("weight") = py::none(),
        py::arg("ignore_index") = -100, py::arg("mean") = true,
        "Negative log-likelihood loss and gradient; returns the reduced loss.");
    m.def("pointwise_loss", &pointwise_entry, py::arg("grad"), py::arg("losses"), py::arg("input"), py::arg("target"),
          py::arg("pos_weight"), py::arg("name"), py::arg("param") = 0.0, py::arg("scale") = 1.0,
          "Elementwise loss of (R, K) input/target: writes grad/losses if given, returns scale * sum(losses).");
    m.def(
        "check_class_indices",
        [](py::array target, std::int64_t c, std::int64_t ignore_index) {
            class_indices(target, target.ndim() == 1 ? target.shape(0) : -1, c, ignore_index);
        },
        py::arg("target"), py::arg("num_classes"), py::arg("ignore_index"),
        "Raise ValueError naming the first class index outside [0, num_classes) that is not ignore_index "
        "(target: C-contiguous int64 (N,)).");
    m.def("loss_info", [] { return std::string(nnk::loss().name); });
}

}  // namespace bind
}  // namespace nnk
