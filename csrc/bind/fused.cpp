// Bindings for the fused MLP step: _C.MlpStep, a plan object built once per
// model (flat parameter/gradient/state buffers, layer table) that owns its
// workspace (grown to the largest batch seen, then reused: a step allocates
// nothing). step() and forward() check their arrays with the GIL held, then
// run the whole step with the GIL released.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "nnk/bind_util.h"
#include "nnk/fused.h"

namespace nnk {
namespace bind {

namespace {

FusedAct parse_act(const std::string& s) {
    if (s == "none" || s == "identity") return FusedAct::none;
    if (s == "relu") return FusedAct::relu;
    if (s == "leaky_relu") return FusedAct::leaky_relu;
    if (s == "gelu") return FusedAct::gelu;
    if (s == "gelu_tanh") return FusedAct::gelu_tanh;
    if (s == "silu") return FusedAct::silu;
    if (s == "tanh") return FusedAct::tanh;
    if (s == "sigmoid") return FusedAct::sigmoid;
    throw py::value_error("activations: unknown activation '" + s +
                          "' (expected none, relu, leaky_relu, gelu, gelu_tanh, silu, tanh, sigmoid)");
}

FusedLoss parse_loss(const std::string& s) {
    if (s == "cross_entropy") return FusedLoss::cross_entropy;
    if (s == "mse") return FusedLoss::mse;
    throw py::value_error("loss: unknown loss '" + s + "' (expected cross_entropy or mse)");
}

FusedOpt parse_opt(const std::string& s) {
    if (s == "none") return FusedOpt::none;
    if (s == "sgd") return FusedOpt::sgd;
    if (s == "adam") return FusedOpt::adam;
    if (s == "adamw") return FusedOpt::adamw;
    if (s == "rmsprop") return FusedOpt::rmsprop;
    throw py::value_error("optimizer: unknown optimizer '" + s +
                          "' (expected none, sgd, adam, adamw, rmsprop)");
}

void require_flat(const py::array& a, const char* name, const py::array& like) {
    same_dtype(like, "params", a, name);
    require_ndim(a, name, 1);
    require_c_contiguous(a, name);
    require_writeable(a, name);
    if (a.shape(0) != like.shape(0))
        throw py::value_error(std::string(name) + ": expected shape (" + std::to_string(like.shape(0)) +
                              ",) like params, got " + shape_str(a));
}

class MlpStep {
  public:
    MlpStep(py::array params, py::array grads, std::vector<py::array> state,
            std::vector<index_t> dims, std::vector<std::string> acts, std::vector<double> act_params,
            std::vector<index_t> w_off, std::vector<index_t> b_off, const std::string& loss,
            const std::string& optimizer)
        : params_(params), grads_(grads), state_(state) {
        dt_ = float_dtype(params, "params");
        require_ndim(params, "params", 1);
        require_c_contiguous(params, "params");
        require_writeable(params, "params");
        require_flat(grads, "grads", params);
        require_no_overlap(grads, "grads", params, "params");
        const std::size_t L = w_off.size();
        if (L == 0 || L > static_cast<std::size_t>(kFusedMaxLayers))
            throw py::value_error("w_off: expected 1 to " + std::to_string(kFusedMaxLayers) + " layers, got " +
                                  std::to_string(L));
        if (dims.size() != L + 1)
            throw py::value_error("dims: expected " + std::to_string(L + 1) + " sizes for " +
                                  std::to_string(L) + " layers, got " + std::to_string(dims.size()));
        if (acts.size() != L || act_params.size() != L || b_off.size() != L)
            throw py::value_error("activations, act_params, b_off: expected one entry per layer (" +
                                  std::to_string(L) + ")");
        const index_t np = params.shape(0);
        for (std::size_t l = 0; l <= L; ++l)
            if (dims[l] < 1) throw py::value_error("dims: every size must be positive");
        for (std::size_t l = 0; l < L; ++l) {
            const index_t wsz = dims[l + 1] * dims[l];
            if (w_off[l] < 0 || w_off[l] + wsz > np)
                throw py::value_error("w_off: weight " + std::to_string(l) + " does not fit in params");
            if (b_off[l] >= 0 && b_off[l] + dims[l + 1] > np)
                throw py::value_error("b_off: bias " + std::to_string(l) + " does not fit in params");
        }
        opt_.kind = parse_opt(optimizer);
        loss_ = parse_loss(loss);
        const std::size_t need_state = opt_.kind == FusedOpt::adam || opt_.kind == FusedOpt::adamw ? 2
                                       : opt_.kind == FusedOpt::rmsprop                           ? 3
                                       : opt_.kind == FusedOpt::sgd                               ? 1
                                                                                                  : 0;
        if (state.size() != need_state)
            throw py::value_error("state: optimizer '" + optimizer + "' takes " + std::to_string(need_state) +
                                  " state buffers, got " + std::to_string(state.size()));
        for (auto& s : state) {
            require_flat(s, "state", params);
            require_no_overlap(s, "state", params, "params");
            require_no_overlap(s, "state", grads, "grads");
        }
        fill(mf_, params, grads, dims, acts, act_params, w_off, b_off);
        fill(md_, params, grads, dims, acts, act_params, w_off, b_off);
    }
    ~MlpStep() { std::free(ws_); }

    void set_optimizer(double lr, double weight_decay, double momentum, double dampening, bool nesterov,
                       double beta1, double beta2, double eps, double alpha, bool centered, bool maximize,
                       bool decay_bias) {
        opt_.lr = lr;
        opt_.weight_decay = weight_decay;
        opt_.momentum = momentum;
        opt_.dampening = dampening;
        opt_.nesterov = nesterov;
        opt_.beta1 = beta1;
        opt_.beta2 = beta2;
        opt_.eps = eps;
        opt_.alpha = alpha;
        opt_.centered = centered;
        opt_.maximize = maximize;
        opt_.decay_bias = decay_bias;
    }

    // One training step on (x, y) with learning rate lr at 1-based step t.
    double step(const py::array& x, const py::array& y, double lr, long long t) {
        const index_t n = check_x(x);
        check_y(y, n);
        FusedOptim o = opt_;
        o.lr = lr;
        o.step = t;
        py::gil_scoped_release release;
        std::lock_guard<std::mutex> lock(mu_);
        if (dt_ == DType::f32) {
            MlpBatch<float> b = batch<float>(x, n);
            if (loss_ == FusedLoss::cross_entropy) b.labels = static_cast<const std::int64_t*>(y.data());
            else b.target = static_cast<const float*>(y.data());
            return fused().mlp_train_step_f32(mf_, b, o);
        }
        MlpBatch<double> b = batch<double>(x, n);
        if (loss_ == FusedLoss::cross_entropy) b.labels = static_cast<const std::int64_t*>(y.data());
        else b.target = static_cast<const double*>(y.data());
        return fused().mlp_train_step_f64(md_, b, o);
    }

    // An epoch of steps (nnk/fused.h, MlpEpoch): batch b is rows
    // order[b*batch_size, ...) of (x, y), trained with lr[b], weight_decay[b],
    // eps[b] at step t0 + b + 1; losses[b] := its mean loss, sq_norms[b] :=
    // the sum of squares of the weights before its update.
    void epoch(const py::array& x, const py::array& y, const py::array& order, index_t batch_size,
               const py::array& lr, const py::array& weight_decay, const py::array& eps, long long t0,
               py::array losses, std::optional<py::array> sq_norms) {
        const index_t rows = check_x(x), c = mf_.dims[mf_.n_layers];
        check_y(y, rows);
        if (!order.dtype().is(py::dtype::of<std::int64_t>()))
            throw py::type_error("order: expected an int64 array, got dtype " + dtype_str(order));
        require_ndim(order, "order", 1);
        require_c_contiguous(order, "order");
        if (batch_size < 1) throw py::value_error("batch_size: expected at least 1, got " + std::to_string(batch_size));
        const index_t count = order.shape(0);
        const index_t nb = (count + batch_size - 1) / batch_size;
        auto per_batch = [&](const py::array& a, const char* name, bool out) {
            if (!a.dtype().is(py::dtype::of<double>()))
                throw py::type_error(std::string(name) + ": expected a float64 array, got dtype " + dtype_str(a));
            require_ndim(a, name, 1);
            require_c_contiguous(a, name);
            if (a.shape(0) != nb)
                throw py::value_error(std::string(name) + ": expected shape (" + std::to_string(nb) +
                                      ",), one entry per batch, got " + shape_str(a));
            if (out) {
                require_writeable(a, name);
                require_no_overlap(a, name, params_, "params");
                require_no_overlap(a, name, grads_, "grads");
                for (auto& st : state_) require_no_overlap(a, name, st, "state");
                require_no_overlap(a, name, x, "x");
                require_no_overlap(a, name, y, "y");
                require_no_overlap(a, name, order, "order");
                require_no_overlap(a, name, lr, "lr");
                require_no_overlap(a, name, weight_decay, "weight_decay");
                require_no_overlap(a, name, eps, "eps");
            }
        };
        per_batch(lr, "lr", false);
        per_batch(weight_decay, "weight_decay", false);
        per_batch(eps, "eps", false);
        per_batch(losses, "losses", true);
        if (sq_norms) {
            per_batch(*sq_norms, "sq_norms", true);
            require_no_overlap(*sq_norms, "sq_norms", losses, "losses");
        }
        const std::int64_t* ord = static_cast<const std::int64_t*>(order.data());
        const std::int64_t* labels =
            loss_ == FusedLoss::cross_entropy ? static_cast<const std::int64_t*>(y.data()) : nullptr;
        for (index_t i = 0; i < count; ++i) {
            const std::int64_t r = ord[i];
            if (r < 0 || r >= rows)
                throw py::value_error("order: row " + std::to_string(r) + " at position " + std::to_string(i) +
                                      " is out of range [0, " + std::to_string(rows) + ")");
            if (labels && (labels[r] < 0 || labels[r] >= c))
                throw py::value_error("y: class index " + std::to_string(labels[r]) + " of row " +
                                      std::to_string(r) + " is out of range [0, " + std::to_string(c) + ")");
        }
        FusedOptim o = opt_;
        py::gil_scoped_release release;
        std::lock_guard<std::mutex> lock(mu_);
        if (dt_ == DType::f32)
            run_epoch<float>(mf_, x, y, ord, count, batch_size, lr, weight_decay, eps, t0, losses, sq_norms, o);
        else
            run_epoch<double>(md_, x, y, ord, count, batch_size, lr, weight_decay, eps, t0, losses, sq_norms, o);
    }

    // Inference: out(n, dims[L]) := network(x).
    void forward(py::array out, const py::array& x) {
        const index_t n = check_x(x);
        const int L = mf_.n_layers;
        same_dtype(params_, "params", out, "out");
        require_ndim(out, "out", 2);
        require_c_contiguous(out, "out");
        require_writeable(out, "out");
        if (out.shape(0) != n || out.shape(1) != mf_.dims[L])
            throw py::value_error("out: expected shape (" + std::to_string(n) + ", " +
                                  std::to_string(mf_.dims[L]) + "), got " + shape_str(out));
        require_no_overlap(out, "out", x, "x");
        require_no_overlap(out, "out", params_, "params");
        void* o = out.mutable_data();
        py::gil_scoped_release release;
        std::lock_guard<std::mutex> lock(mu_);
        if (dt_ == DType::f32)
            fused().mlp_forward_f32(static_cast<float*>(o), mf_, batch<float>(x, n));
        else
            fused().mlp_forward_f64(static_cast<double*>(o), md_, batch<double>(x, n));
    }

    index_t workspace_elements(index_t n) const { return layout(n).total; }
    std::size_t workspace_bytes() const { return ws_bytes_; }
    std::size_t workspace_allocations() const { return ws_allocs_; }

  private:
    template <class T>
    void fill(MlpModel<T>& m, const py::array& params, const py::array& grads, const std::vector<index_t>& dims,
              const std::vector<std::string>& acts, const std::vector<double>& act_params,
              const std::vector<index_t>& w_off, const std::vector<index_t>& b_off) {
        m.n_layers = static_cast<int>(w_off.size());
        for (int l = 0; l <= m.n_layers; ++l) m.dims[l] = dims[l];
        for (int l = 0; l < m.n_layers; ++l) {
            m.act[l] = parse_act(acts[l]);
            m.act_param[l] = static_cast<T>(act_params[l]);
            m.w_off[l] = w_off[l];
            m.b_off[l] = b_off[l] < 0 ? -1 : b_off[l];
        }
        m.n_params = params.shape(0);
        m.params = static_cast<T*>(const_cast<void*>(params.data()));
        m.grads = static_cast<T*>(const_cast<void*>(grads.data()));
        for (std::size_t i = 0; i < state_.size(); ++i)
            m.state[i] = static_cast<T*>(const_cast<void*>(state_[i].data()));
        m.blocks_tile = mlp_blocks_tile_params(m);
    }

    MlpWorkspaceLayout layout(index_t n) const {
        double ap[kFusedMaxLayers];
        for (int l = 0; l < md_.n_layers; ++l) ap[l] = md_.act_param[l];
        return mlp_workspace_layout(md_.n_layers, md_.dims, md_.act, ap, n);
    }

    index_t check_x(const py::array& x) const {
        same_dtype(params_, "params", x, "x");
        require_ndim(x, "x", 2);
        if (x.shape(1) != mf_.dims[0])
            throw py::value_error("x: expected shape (N, " + std::to_string(mf_.dims[0]) + "), got " +
                                  shape_str(x));
        if (x.shape(0) < 1) throw py::value_error("x: the batch is empty");
        if (x.shape(1) > 1 && x.strides(1) != x.itemsize())
            throw py::value_error("x: expected unit stride along the last axis");
        if (x.shape(0) > 1 && x.strides(0) % x.itemsize() != 0)
            throw py::value_error("x: expected a row stride that is a multiple of the item size");
        return x.shape(0);
    }

    // y for n rows of x: int64 class indices (n,) for cross_entropy, else (n, dims[L]) targets.
    void check_y(const py::array& y, index_t n) const {
        if (loss_ == FusedLoss::cross_entropy) {
            if (!y.dtype().is(py::dtype::of<std::int64_t>()))
                throw py::type_error("y: expected int64 class indices, got dtype " + dtype_str(y));
            require_ndim(y, "y", 1);
            require_c_contiguous(y, "y");
            if (y.shape(0) != n)
                throw py::value_error("y: expected shape (" + std::to_string(n) + ",) like x, got " + shape_str(y));
            return;
        }
        const index_t c = mf_.dims[mf_.n_layers];
        same_dtype(params_, "params", y, "y");
        require_ndim(y, "y", 2);
        require_c_contiguous(y, "y");
        if (y.shape(0) != n || y.shape(1) != c)
            throw py::value_error("y: expected shape (" + std::to_string(n) + ", " + std::to_string(c) +
                                  ") like x, got " + shape_str(y));
    }

    template <class T>
    void run_epoch(const MlpModel<T>& M, const py::array& x, const py::array& y, const std::int64_t* order,
                   index_t count, index_t batch_size, const py::array& lr, const py::array& weight_decay,
                   const py::array& eps, long long t0, py::array& losses, std::optional<py::array>& sq_norms,
                   const FusedOptim& o) {
        grow_workspace(static_cast<std::size_t>(mlp_epoch_layout(M, batch_size).total) * sizeof(T));
        MlpEpoch<T> e;
        e.x = static_cast<const T*>(x.data());
        e.ldx = x.shape(0) > 1 ? x.strides(0) / static_cast<index_t>(sizeof(T)) : x.shape(1);
        e.loss = loss_;
        if (loss_ == FusedLoss::cross_entropy) e.labels = static_cast<const std::int64_t*>(y.data());
        else e.target = static_cast<const T*>(y.data());
        e.order = order;
        e.count = count;
        e.batch = batch_size;
        e.lr = static_cast<const double*>(lr.data());
        e.weight_decay = static_cast<const double*>(weight_decay.data());
        e.eps = static_cast<const double*>(eps.data());
        e.t0 = t0;
        e.losses = static_cast<double*>(losses.mutable_data());
        e.sq_norms = sq_norms ? static_cast<double*>(sq_norms->mutable_data()) : nullptr;
        e.workspace = static_cast<T*>(ws_);
        if constexpr (std::is_same_v<T, float>) fused().mlp_train_epoch_f32(M, e, o);
        else fused().mlp_train_epoch_f64(M, e, o);
    }

    // Called with mu_ held (GIL released): grow the workspace if needed.
    void grow_workspace(std::size_t need) {
        if (need > ws_bytes_) {
            std::free(ws_);
            ws_ = std::aligned_alloc(64, (need + 63) / 64 * 64);
            if (!ws_) {
                ws_bytes_ = 0;
                throw std::bad_alloc();
            }
            ws_bytes_ = need;
            ++ws_allocs_;
        }
    }

    // Called with mu_ held (GIL released): a batch on x, in the workspace.
    template <class T>
    MlpBatch<T> batch(const py::array& x, index_t n) {
        grow_workspace(static_cast<std::size_t>(layout(n).total) * sizeof(T));
        MlpBatch<T> b;
        b.n = n;
        b.x = static_cast<const T*>(x.data());
        b.ldx = n > 1 ? x.strides(0) / static_cast<index_t>(sizeof(T)) : x.shape(1);
        b.loss = loss_;
        b.workspace = static_cast<T*>(ws_);
        return b;
    }

    py::array params_, grads_;
    std::vector<py::array> state_;
    DType dt_;
    FusedLoss loss_;
    FusedOptim opt_;
    MlpModel<float> mf_;
    MlpModel<double> md_;
    void* ws_ = nullptr;
    std::size_t ws_bytes_ = 0, ws_allocs_ = 0;
    std::mutex mu_;
};

}  // namespace

// Minibatch gather for training loops: out[i, :] = x[idx[i], :] (all rows when
// idx is None), converting float64 -> float32 (or back) on the way. x and out
// are C-contiguous 2-D float arrays; rows are independent, so threads split
// them once the copy is large enough. Every index is checked with the GIL held.
// With `check`, also whether every value read is finite: sum of x - x per
// row (0 for a finite x, NaN for NaN or +-inf), in the same pass, which is
// bound by memory anyway. Returns false if a value was not finite.
template <class To, class From>
bool copy_rows(To* out, const From* x, const std::int64_t* idx, index_t n, index_t d, bool check) {
    const int nt = threads_for(n * d, index_t(1) << 16);
    std::atomic<bool> finite{true};
    OmpErrors errors;  // nothing here throws; the guard is the rule for every region
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (index_t i = 0; i < n; ++i) {
        errors.run([&] {
            const From* src = x + (idx ? idx[i] : i) * d;
            To* dst = out + i * d;
            if (idx && i + kGatherAhead < n)  // rows in random order: DRAM-bound (nnk/common.h)
                prefetch_lines(x + idx[i + kGatherAhead] * d, static_cast<std::size_t>(d) * sizeof(From));
            if (check) {
                From z = 0;
#pragma omp simd reduction(+ : z)
                for (index_t j = 0; j < d; ++j) {
                    dst[j] = static_cast<To>(src[j]);
                    z += src[j] - src[j];
                }
                if (!(z == From(0))) finite.store(false, std::memory_order_relaxed);
            } else if constexpr (std::is_same_v<To, From>) {
                std::memcpy(dst, src, static_cast<std::size_t>(d) * sizeof(To));
            } else {
                for (index_t j = 0; j < d; ++j) dst[j] = static_cast<To>(src[j]);
            }
        });
    }
    errors.rethrow();
    return finite.load();
}

std::optional<bool> take_rows(py::array out, py::array x, py::object idx_obj, bool check_finite) {
    require_ndim(x, "x", 2);
    require_c_contiguous(x, "x");
    require_ndim(out, "out", 2);
    require_c_contiguous(out, "out");
    require_writeable(out, "out");
    const DType dx = float_dtype(x, "x"), dout = float_dtype(out, "out");
    const index_t n_x = x.shape(0), d = x.shape(1);
    const std::int64_t* idx = nullptr;
    py::array idx_arr;
    index_t n = n_x;
    if (!idx_obj.is_none()) {
        idx_arr = py::reinterpret_borrow<py::array>(idx_obj);
        if (!py::isinstance<py::array>(idx_obj) || !same_native_type(idx_arr.dtype(), py::dtype::of<std::int64_t>()))
            throw py::type_error("idx: expected an int64 array or None");
        require_ndim(idx_arr, "idx", 1);
        require_c_contiguous(idx_arr, "idx");
        idx = static_cast<const std::int64_t*>(idx_arr.data());
        n = idx_arr.shape(0);
        for (index_t i = 0; i < n; ++i)
            if (idx[i] < 0 || idx[i] >= n_x)
                throw py::value_error("idx: index " + std::to_string(idx[i]) + " at position " +
                                      std::to_string(i) + " is out of range [0, " + std::to_string(n_x) + ")");
    }
    if (out.shape(0) != n || out.shape(1) != d)
        throw py::value_error("out: expected shape (" + std::to_string(n) + ", " + std::to_string(d) +
                              "), got " + shape_str(out));
    require_no_overlap(out, "out", x, "x");
    bool finite;
    {
        py::gil_scoped_release release;
        void* o = out.mutable_data();
        const void* xs = x.data();
        const bool c = check_finite;
        if (dx == DType::f32 && dout == DType::f32)
            finite = copy_rows(static_cast<float*>(o), static_cast<const float*>(xs), idx, n, d, c);
        else if (dx == DType::f64 && dout == DType::f64)
            finite = copy_rows(static_cast<double*>(o), static_cast<const double*>(xs), idx, n, d, c);
        else if (dx == DType::f64)
            finite = copy_rows(static_cast<float*>(o), static_cast<const double*>(xs), idx, n, d, c);
        else
            finite = copy_rows(static_cast<double*>(o), static_cast<const float*>(xs), idx, n, d, c);
    }
    if (!check_finite) return std::nullopt;
    return finite;
}

void register_fused(py::module_& m) {
    m.def("take_rows", &take_rows, py::arg("out"), py::arg("x"), py::arg("idx"), py::arg("check_finite") = false,
          "out[i] = x[idx[i]] (idx None: every row), float32/float64 either way; threads over rows. "
          "GIL released. check_finite: also return whether every value read was finite (else None).");
    py::class_<MlpStep>(m, "MlpStep",
                        "Fused MLP training step over flat parameter/gradient/state buffers "
                        "(see nnk/fused.h).")
        .def(py::init<py::array, py::array, std::vector<py::array>, std::vector<index_t>,
                      std::vector<std::string>, std::vector<double>, std::vector<index_t>,
                      std::vector<index_t>, const std::string&, const std::string&>(),
             py::arg("params"), py::arg("grads"), py::arg("state"), py::arg("dims"), py::arg("activations"),
             py::arg("act_params"), py::arg("w_off"), py::arg("b_off"), py::arg("loss"),
             py::arg("optimizer"))
        .def("set_optimizer", &MlpStep::set_optimizer, py::arg("lr"), py::arg("weight_decay") = 0.0,
             py::arg("momentum") = 0.0, py::arg("dampening") = 0.0, py::arg("nesterov") = false,
             py::arg("beta1") = 0.9, py::arg("beta2") = 0.999, py::arg("eps") = 1e-8,
             py::arg("alpha") = 0.99, py::arg("centered") = false, py::arg("maximize") = false,
             py::arg("decay_bias") = true)
        .def("step", &MlpStep::step, py::arg("x"), py::arg("y"), py::arg("lr"), py::arg("t"),
             "Forward, loss, backward, optimizer update; returns the mean loss. GIL released.")
        .def("epoch", &MlpStep::epoch, py::arg("x"), py::arg("y"), py::arg("order"), py::arg("batch_size"),
             py::arg("lr"), py::arg("weight_decay"), py::arg("eps"), py::arg("t0"), py::arg("losses"),
             py::arg("sq_norms") = py::none(),
             "An epoch of steps in one call: batch b is rows order[b*batch_size:(b+1)*batch_size] of (x, y), "
             "trained with lr[b], weight_decay[b], eps[b] at step t0 + b + 1 (other hyper-parameters from "
             "set_optimizer); losses[b] := its mean loss, sq_norms[b] := the sum of squares of the weights "
             "(not biases) before its update. GIL released.")
        .def("forward", &MlpStep::forward, py::arg("out"), py::arg("x"),
             "out := network(x) (inference). GIL released.")
        .def("workspace_elements", &MlpStep::workspace_elements, py::arg("n"))
        .def_property_readonly("workspace_bytes", &MlpStep::workspace_bytes)
        .def_property_readonly("workspace_allocations", &MlpStep::workspace_allocations);
}

}  // namespace bind
}  // namespace nnk
