// Bindings for the fused optimizer updates (nnk/optim.h). Every array is
// written or read in place and is never converted: each must have exactly
// param's dtype and size, be C-contiguous, and (if written) writeable; no two
// arrays may overlap. Checked with the GIL held; the update runs without it.
#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/stl.h>

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

// Adam/AdamW over a list of parameters in one call (a multi-tensor step, as
// torch.optim's foreach path): every entry is checked like adam_entry, all with
// the GIL held, then the updates run one after the other without it.
void adam_multi_entry(std::vector<py::array> params, std::vector<py::array> exp_avgs,
                      std::vector<py::array> exp_avg_sqs, py::object max_exp_avg_sqs,
                      std::vector<py::array> grads, std::vector<long long> steps, double lr, double beta1,
                      double beta2, double eps, double weight_decay, bool amsgrad, bool maximize,
                      bool decoupled) {
    const size_t n = params.size();
    auto same_len = [&](size_t len, const char* name) {
        if (len != n)
            throw py::value_error(std::string(name) + ": expected " + std::to_string(n) +
                                  " entries (one per param), got " + std::to_string(len));
    };
    same_len(exp_avgs.size(), "exp_avgs");
    same_len(exp_avg_sqs.size(), "exp_avg_sqs");
    same_len(grads.size(), "grads");
    same_len(steps.size(), "steps");
    std::vector<py::array> vmax;
    if (amsgrad) {
        if (max_exp_avg_sqs.is_none())
            throw py::value_error("max_exp_avg_sqs: required by amsgrad=True, got None");
        vmax = max_exp_avg_sqs.cast<std::vector<py::array>>();
        same_len(vmax.size(), "max_exp_avg_sqs");
    }
    if (n == 0) return;
    const DType dt = float_dtype(params[0], "params[0]");
    std::vector<AdamArgs<float>> af;
    std::vector<AdamArgs<double>> ad;
    for (size_t i = 0; i < n; ++i) {
        check_step(steps[i]);
        if (float_dtype(params[i], "params") != dt)
            throw py::type_error("params: every entry must have the dtype of params[0] (" +
                                 dtype_str(params[0]) + "), entry " + std::to_string(i) + " is " +
                                 dtype_str(params[i]));
        check_arrays({{"params", &params[i], true}, {"exp_avgs", &exp_avgs[i], true},
                      {"exp_avg_sqs", &exp_avg_sqs[i], true},
                      {"max_exp_avg_sqs", amsgrad ? &vmax[i] : nullptr, true}, {"grads", &grads[i], false}});
        auto fill = [&](auto& out, auto tag) {
            using T = decltype(tag);
            out.push_back(AdamArgs<T>{ptr<T>(&params[i]), ptr<T>(&exp_avgs[i]), ptr<T>(&exp_avg_sqs[i]),
                                      amsgrad ? ptr<T>(&vmax[i]) : nullptr,
                                      static_cast<const T*>(grads[i].data()), index_t(params[i].size()),
                                      steps[i], lr, beta1, beta2, eps, weight_decay, amsgrad, maximize,
                                      decoupled});
        };
        if (dt == DType::f32) fill(af, float()); else fill(ad, double());
    }
    // distinct parameters must not share memory either (one update would feed the next):
    // sorted by address, each must end before the next starts
    std::vector<std::pair<std::uintptr_t, size_t>> spans;
    for (size_t i = 0; i < n; ++i)
        if (params[i].size() > 0) spans.push_back({reinterpret_cast<std::uintptr_t>(params[i].data()), i});
    std::sort(spans.begin(), spans.end());
    for (size_t k = 0; k + 1 < spans.size(); ++k) {
        const py::array& a = params[spans[k].second];
        if (spans[k].first + static_cast<std::uintptr_t>(a.nbytes()) > spans[k + 1].first)
            throw py::value_error("params: entries " + std::to_string(spans[k].second) + " and " +
                                  std::to_string(spans[k + 1].second) + " share memory");
    }
    py::gil_scoped_release release;
    for (const auto& a : af) optim().adam_f32(a);
    for (const auto& a : ad) optim().adam_f64(a);
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
    m.def("adam_step_multi", &adam_multi_entry, py::arg("params"), py::arg("exp_avgs"),
          py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"), py::arg("grads"), py::arg("steps"),
          py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
          py::arg("amsgrad"), py::arg("maximize"), py::arg("decoupled"),
          "adam_step over lists of parameters (one step count each) in one call; GIL released once.");
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
