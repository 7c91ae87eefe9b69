// Bindings for the fused optimizer updates (nnk/optim.h). Every array is
// written or read in place and is never converted: each must have exactly
// param's dtype and size, be C-contiguous, and (if written) writeable; no two
// arrays may overlap. Checked with the GIL held; the update runs without it.
#include <string>
#include <utility>
#include <vector>

#include "nnk/bind_util.h"
#include "nnk/optim.h"

namespace nnk {
namespace bind {

namespace {

struct Arr {
    const char* name;
    py::array* a;  // null: not used by this configuration
    bool written;
};

// Validate a set of arrays against the first one (param); returns its dtype.
DType check_arrays(const std::vector<Arr>& arrs) {
    const py::array& p = *arrs[0].a;
    const DType dt = float_dtype(p, arrs[0].name);
    for (const Arr& x : arrs) {
        if (!x.a) continue;
        same_dtype(p, arrs[0].name, *x.a, x.name);
        if (x.a->size() != p.size())
            throw py::value_error(std::string(x.name) + ": expected " + std::to_string(p.size()) +
                                  " elements (like " + arrs[0].name + "), got shape " + shape_str(*x.a));
        require_c_contiguous(*x.a, x.name);
        if (x.written) require_writeable(*x.a, x.name);
    }
    for (size_t i = 0; i < arrs.size(); ++i)
        for (size_t j = i + 1; j < arrs.size(); ++j)
            if (arrs[i].a && arrs[j].a && (arrs[i].written || arrs[j].written) && p.size() > 0) {
                const Arr& w = arrs[i].written ? arrs[i] : arrs[j];
                const Arr& o = arrs[i].written ? arrs[j] : arrs[i];
                require_no_overlap(*w.a, w.name, *o.a, o.name);
            }
    return dt;
}

py::array* opt(py::object& o, py::array& holder, bool used, const char* name) {
    if (!used) return nullptr;
    if (o.is_none()) throw py::value_error(std::string(name) + ": required by this configuration, got None");
    if (!py::isinstance<py::array>(o))
        throw py::type_error(std::string(name) + ": expected a numpy array");
    holder = o.cast<py::array>();
    return &holder;
}

template <class T>
T* ptr(py::array* a) { return a ? static_cast<T*>(a->mutable_data()) : nullptr; }

void check_step(long long step) {
    if (step < 1) throw py::value_error("step: expected a step count >= 1, got " + std::to_string(step));
}

void sgd_entry(py::array param, py::object momentum_buf, py::array grad, double lr, double momentum,
               double dampening, double weight_decay, bool nesterov, bool maximize, bool first_step) {
    py::array buf_h;
    py::array* buf = opt(momentum_buf, buf_h, momentum != 0.0, "momentum_buf");
    const DType dt = check_arrays({{"param", &param, true}, {"momentum_buf", buf, true},
                                   {"grad", &grad, false}});
    const index_t n = param.size();
    auto run = [&](auto tag) {
        using T = decltype(tag);
        SgdArgs<T> a{ptr<T>(&param), ptr<T>(buf), static_cast<const T*>(grad.data()), n, lr, momentum,
                     dampening, weight_decay, nesterov, maximize, first_step};
        py::gil_scoped_release release;
        if constexpr (std::is_same<T, float>::value) optim().sgd_f32(a); else optim().sgd_f64(a);
    };
    dt == DType::f32 ? run(float()) : run(double());
}

void adam_entry(py::array param, py::array exp_avg, py::array exp_avg_sq, py::object max_exp_avg_sq,
                py::array grad, long long step, double lr, double beta1, double beta2, double eps,
                double weight_decay, bool amsgrad, bool maximize, bool decoupled) {
    check_step(step);
    py::array vmax_h;
    py::array* vmax = opt(max_exp_avg_sq, vmax_h, amsgrad, "max_exp_avg_sq");
    const DType dt = check_arrays({{"param", &param, true}, {"exp_avg", &exp_avg, true},
                                   {"exp_avg_sq", &exp_avg_sq, true}, {"max_exp_avg_sq", vmax, true},
                                   {"grad", &grad, false}});
    const index_t n = param.size();
    auto run = [&](auto tag) {
        using T = decltype(tag);
        AdamArgs<T> a{ptr<T>(&param), ptr<T>(&exp_avg), ptr<T>(&exp_avg_sq), ptr<T>(vmax),
                      static_cast<const T*>(grad.data()), n, step, lr, beta1, beta2, eps, weight_decay,
                      amsgrad, maximize, decoupled};
        py::gil_scoped_release release;
        if constexpr (std::is_same<T, float>::value) optim().adam_f32(a); else optim().adam_f64(a);
    };
    dt == DType::f32 ? run(float()) : run(double());
}

void rmsprop_entry(py::array param, py::array square_avg, py::object momentum_buf, py::object grad_avg,
                   py::array grad, double lr, double alpha, double eps, double weight_decay,
                   double momentum, bool centered, bool maximize) {
    py::array buf_h, gavg_h;
    py::array* buf = opt(momentum_buf, buf_h, momentum > 0.0, "momentum_buf");
    py::array* gavg = opt(grad_avg, gavg_h, centered, "grad_avg");
    const DType dt = check_arrays({{"param", &param, true}, {"square_avg", &square_avg, true},
                                   {"momentum_buf", buf, true}, {"grad_avg", gavg, true},
                                   {"grad", &grad, false}});
    const index_t n = param.size();
    auto run = [&](auto tag) {
        using T = decltype(tag);
        RmspropArgs<T> a{ptr<T>(&param), ptr<T>(&square_avg), ptr<T>(buf), ptr<T>(gavg),
                         static_cast<const T*>(grad.data()), n, lr, alpha, eps, weight_decay, momentum,
                         centered, maximize};
        py::gil_scoped_release release;
        if constexpr (std::is_same<T, float>::value) optim().rmsprop_f32(a); else optim().rmsprop_f64(a);
    };
    dt == DType::f32 ? run(float()) : run(double());
}

void adagrad_entry(py::array param, py::array state_sum, py::array grad, long long step, double lr,
                   double lr_decay, double weight_decay, double eps, bool maximize) {
    check_step(step);
    const DType dt = check_arrays({{"param", &param, true}, {"state_sum", &state_sum, true},
                                   {"grad", &grad, false}});
    const index_t n = param.size();
    auto run = [&](auto tag) {
        using T = decltype(tag);
        AdagradArgs<T> a{ptr<T>(&param), ptr<T>(&state_sum), static_cast<const T*>(grad.data()), n,
                         step, lr, lr_decay, weight_decay, eps, maximize};
        py::gil_scoped_release release;
        if constexpr (std::is_same<T, float>::value) optim().adagrad_f32(a); else optim().adagrad_f64(a);
    };
    dt == DType::f32 ? run(float()) : run(double());
}

}  // namespace

void register_optim(py::module_& m) {
    m.def("sgd_step", &sgd_entry, py::arg("param"), py::arg("momentum_buf"), py::arg("grad"),
          py::arg("lr"), py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"),
          py::arg("nesterov"), py::arg("maximize"), py::arg("first_step"),
          "Fused in-place SGD update (torch.optim.SGD rule).");
    m.def("adam_step", &adam_entry, py::arg("param"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
          py::arg("max_exp_avg_sq"), py::arg("grad"), py::arg("step"), py::arg("lr"), py::arg("beta1"),
          py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("amsgrad"),
          py::arg("maximize"), py::arg("decoupled"),
          "Fused in-place Adam/AdamW update (torch.optim.Adam/AdamW rule).");
    m.def("rmsprop_step", &rmsprop_entry, py::arg("param"), py::arg("square_avg"),
          py::arg("momentum_buf"), py::arg("grad_avg"), py::arg("grad"), py::arg("lr"), py::arg("alpha"),
          py::arg("eps"), py::arg("weight_decay"), py::arg("momentum"), py::arg("centered"),
          py::arg("maximize"), "Fused in-place RMSprop update (torch.optim.RMSprop rule).");
    m.def("adagrad_step", &adagrad_entry, py::arg("param"), py::arg("state_sum"), py::arg("grad"),
          py::arg("step"), py::arg("lr"), py::arg("lr_decay"), py::arg("weight_decay"), py::arg("eps"),
          py::arg("maximize"), "Fused in-place Adagrad update (torch.optim.Adagrad rule).");
}

}  // namespace bind
}  // namespace nnk
