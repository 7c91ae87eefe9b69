"""fused family, Numba backend: the whole MLP step is ONE @njit function
(``_mlp_step``) over the flat parameter/gradient/state buffers and one flat
workspace, compiled serial and parallel (prange over rows / output features:
threads never write the same memory and every sum runs in a fixed order, so
results do not depend on the thread count). See interface/fused.py.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ..interface.fused import ACT_CODE, MlpSpec, OptimConfig, epoch_by_steps
from ._jit import jit, jit_pair, pick

__all__ = ["mlp_step_plan"]

OPT_CODE = {"none": 0, "sgd": 1, "adam": 2, "adamw": 3, "rmsprop": 4}
# hyper-parameter vector layout (float64)
HP = ("lr", "weight_decay", "momentum", "dampening", "nesterov", "beta1", "beta2", "eps", "alpha",
      "centered", "maximize", "step", "decay_bias")


@jit
def _act_fwd(x, code, param):
    if code == 1:  # relu (NaN propagates)
        return 0.0 if x <= 0 else x
    if code == 2:  # leaky_relu
        return x if x > 0 else x * param
    if code == 3:  # gelu (erf)
        return 0.5 * x * (1.0 + math.erf(x * 0.7071067811865476))
    if code == 4:  # gelu (tanh approximation)
        return 0.5 * x * (1.0 + math.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
    if code == 5:  # silu
        return x / (1.0 + math.exp(-x))
    if code == 6:
        return math.tanh(x)
    if code == 7:
        return 1.0 / (1.0 + math.exp(-x))
    return x


@jit
def _act_bwd(g, z, h, code, param):
    """dloss/dz from g = dloss/dh (PyTorch's formulas)."""
    if code == 1:
        return 0.0 if h <= 0 else g
    if code == 2:
        return g if z > 0 else g * param
    if code == 3:
        cdf = 0.5 * (1.0 + math.erf(z * 0.7071067811865476))
        pdf = math.exp(-0.5 * z * z) * 0.3989422804014327
        return g * (cdf + z * pdf)
    if code == 4:
        kb = 0.7978845608028654
        kk = 0.044715
        t = math.tanh(kb * (z + kk * z * z * z))
        return g * (0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * kb * (1.0 + 3.0 * kk * z * z))
    if code == 5:
        s = 1.0 / (1.0 + math.exp(-z))
        return g * (s * (1.0 + z * (1.0 - s)))
    if code == 6:
        return g * (1.0 - h * h)
    if code == 7:
        return g * (1.0 - h) * h
    return g


def _mlp_step(params, grads, s0, s1, s2, dims, acts, act_params, w_off, b_off, x, labels, target,
              loss_code, opt_code, hp, ws, h_off, z_off, wt_off, g0_off, g1_off, train, out):
    # Forward (+ backward, loss and update when train): see nnk/fused.h for the math.
    L = dims.shape[0] - 1
    n = x.shape[0]
    zero = params.dtype.type(0)
    # ---- forward: z = h_in @ W.T + b via W.T (in, out) copied into ws, then act
    for l in range(L):
        di = dims[l]
        do = dims[l + 1]
        W = params[w_off[l]:w_off[l] + do * di].reshape((do, di))
        WT = ws[wt_off[l]:wt_off[l] + di * do].reshape((di, do))
        for j in prange(do):
            for p in range(di):
                WT[p, j] = W[j, p]
        H = ws[h_off[l]:h_off[l] + n * do].reshape((n, do))
        Z = ws[z_off[l]:z_off[l] + n * do].reshape((n, do))
        code = acts[l]
        prm = act_params[l]
        for i in prange(n):
            for j in range(do):
                Z[i, j] = params[b_off[l] + j] if b_off[l] >= 0 else zero
            for p in range(di):
                if l == 0:
                    a = x[i, p]
                else:
                    a = ws[h_off[l - 1] + i * di + p]
                for j in range(do):
                    Z[i, j] += a * WT[p, j]
            for j in range(do):
                H[i, j] = _act_fwd(Z[i, j], code, prm)
    c = dims[L]
    Hl = ws[h_off[L - 1]:h_off[L - 1] + n * c].reshape((n, c))
    if not train:
        out[:, :] = Hl
        return 0.0
    # ---- loss and dloss/dout into g
    G = ws[g0_off:g0_off + n * c].reshape((n, c))
    rowloss = np.empty(n, dtype=np.float64)
    bad = 0
    for i in prange(n):
        if loss_code == 0:
            y = labels[i]
            if y < 0 or y >= c:
                bad += 1
                rowloss[i] = 0.0
                continue
            mx = Hl[i, 0]
            for j in range(1, c):
                v = Hl[i, j]
                if v > mx or v != v:
                    mx = v
            s = zero
            for j in range(c):
                G[i, j] = math.exp(Hl[i, j] - mx)
                s += G[i, j]
            for j in range(c):
                G[i, j] = G[i, j] / s / n
            G[i, y] -= 1.0 / n
            rowloss[i] = (math.log(s) + mx) - Hl[i, y]
        else:
            s = zero
            for j in range(c):
                d = Hl[i, j] - target[i, j]
                s += d * d
                G[i, j] = (2.0 / (n * c)) * d
            rowloss[i] = s
    if bad > 0:
        return np.nan  # caller raises (labels checked before the call)
    total = 0.0
    for i in range(n):
        total += rowloss[i]
    loss = total / n if loss_code == 0 else total / (n * c)
    # ---- backward
    g_off = g0_off
    gn_off = g1_off
    for l in range(L - 1, -1, -1):
        di = dims[l]
        do = dims[l + 1]
        code = acts[l]
        prm = act_params[l]
        D = ws[g_off:g_off + n * do].reshape((n, do))
        H = ws[h_off[l]:h_off[l] + n * do].reshape((n, do))
        Z = ws[z_off[l]:z_off[l] + n * do].reshape((n, do))
        for i in prange(n):
            for j in range(do):
                D[i, j] = _act_bwd(D[i, j], Z[i, j], H[i, j], code, prm)
        dW = grads[w_off[l]:w_off[l] + do * di].reshape((do, di))
        for j in prange(do):  # dW[j, :] = sum_i D[i, j] * h_in[i, :]
            for p in range(di):
                dW[j, p] = zero
            for i in range(n):
                d = D[i, j]
                for p in range(di):
                    if l == 0:
                        dW[j, p] += d * x[i, p]
                    else:
                        dW[j, p] += d * ws[h_off[l - 1] + i * di + p]
            if b_off[l] >= 0:
                s = zero
                for i in range(n):
                    s += D[i, j]
                grads[b_off[l] + j] = s
        if l > 0:  # dh_in[i, :] = sum_j D[i, j] * W[j, :]
            W = params[w_off[l]:w_off[l] + do * di].reshape((do, di))
            GN = ws[gn_off:gn_off + n * di].reshape((n, di))
            for i in prange(n):
                for p in range(di):
                    GN[i, p] = zero
                for j in range(do):
                    d = D[i, j]
                    for p in range(di):
                        GN[i, p] += d * W[j, p]
            t = g_off
            g_off = gn_off
            gn_off = t
    # ---- optimizer: one pass over the flat buffer (PyTorch single-tensor formulas);
    # decay_bias == 0: the bias vectors are updated without weight decay
    if hp[12] != 0.0 or hp[1] == 0.0:
        _update(params, grads, s0, s1, s2, opt_code, hp)
    else:
        hp_bias = hp.copy()
        hp_bias[1] = 0.0
        for l in range(L):
            a, e = w_off[l], w_off[l] + dims[l] * dims[l + 1]
            _update(params[a:e], grads[a:e], _seg(s0, a, e), _seg(s1, a, e), _seg(s2, a, e), opt_code, hp)
            if b_off[l] >= 0:
                a, e = b_off[l], b_off[l] + dims[l + 1]
                _update(params[a:e], grads[a:e], _seg(s0, a, e), _seg(s1, a, e), _seg(s2, a, e),
                        opt_code, hp_bias)
    return loss


@jit
def _seg(s, a, e):
    """s[a:e] of a state buffer, or the unused 1-element placeholder itself."""
    return s if s.shape[0] == 1 else s[a:e]


def _update_body(params, grads, s0, s1, s2, opt_code, hp):
    lr = hp[0]
    wd = hp[1]
    mom = hp[2]
    damp = hp[3]
    nesterov = hp[4] != 0.0
    b1 = hp[5]
    b2 = hp[6]
    eps = hp[7]
    alpha = hp[8]
    centered = hp[9] != 0.0
    maximize = hp[10] != 0.0
    t = hp[11]
    dt = params.dtype.type
    count = params.shape[0]
    if opt_code == 0:
        return
    w1 = dt(1.0 - b1)
    w2 = dt(1.0 - b2)
    bc1 = 1.0 - b1 ** t
    bc2 = 1.0 - b2 ** t
    step_size = dt(lr / bc1)
    inv_bc2_sqrt = dt(1.0 / math.sqrt(bc2))
    decay = dt(1.0 - lr * wd)
    wa = dt(1.0 - alpha)
    for i in prange(count):
        g = -grads[i] if maximize else grads[i]
        p = params[i]
        if opt_code == 1:
            if wd != 0.0:
                g = g + dt(wd) * p
            if mom != 0.0:
                b = g if t <= 1.0 else dt(mom) * s0[i] + dt(1.0 - damp) * g
                s0[i] = b
                g = g + dt(mom) * b if nesterov else b
            params[i] = p + dt(-lr) * g
        elif opt_code == 2 or opt_code == 3:
            if wd != 0.0:
                if opt_code == 3:
                    p = p * decay
                else:
                    g = g + dt(wd) * p
            m = s0[i] + w1 * (g - s0[i])
            v = s1[i] * dt(b2) + w2 * (g * g)
            s0[i] = m
            s1[i] = v
            denom = math.sqrt(v) * inv_bc2_sqrt + dt(eps)
            params[i] = p + (-step_size) * (m / denom)
        else:
            if wd != 0.0:
                g = g + dt(wd) * p
            sq = s0[i] * dt(alpha) + wa * (g * g)
            s0[i] = sq
            if centered:
                ga = s2[i] + wa * (g - s2[i])
                s2[i] = ga
                avg = math.sqrt(sq + (-(ga * ga))) + dt(eps)
            else:
                avg = math.sqrt(sq) + dt(eps)
            if mom > 0.0:
                b = s1[i] * dt(mom) + g / avg
                s1[i] = b
                params[i] = p + dt(-lr) * b
            else:
                params[i] = p + dt(-lr) * (g / avg)


_update = jit(_update_body)
_step_pair = jit_pair(_mlp_step)


def _layout(spec: MlpSpec, n: int):
    """Offsets into the flat workspace: h, z (z aliases h for bare Linear), W.T, g0, g1."""
    total = 0

    def take(count):
        nonlocal total
        off = total
        total += (count + 15) // 16 * 16
        return off

    L = spec.n_layers
    h = [take(n * spec.dims[l + 1]) for l in range(L)]
    z = [take(n * spec.dims[l + 1]) if spec.activations[l] != "none" else h[l] for l in range(L)]
    wt = [take(spec.dims[l] * spec.dims[l + 1]) for l in range(L)]
    dmax = max(spec.dims[1:])
    g0 = take(n * dmax)
    g1 = take(n * dmax)
    return np.array(h, np.int64), np.array(z, np.int64), np.array(wt, np.int64), g0, g1, total


class NumbaMlpStep:
    def __init__(self, spec: MlpSpec) -> None:
        self.spec = spec
        dt = spec.params.dtype
        self._dims = np.array(spec.dims, np.int64)
        self._acts = np.array([ACT_CODE[a] for a in spec.activations], np.int64)
        self._act_params = np.array(spec.act_params, np.float64)
        self._w_off = np.array(spec.w_off, np.int64)
        self._b_off = np.array(spec.b_off, np.int64)
        st = list(spec.state) + [np.zeros(1, dt)] * (3 - len(spec.state))
        self._state = st
        self._opt = OPT_CODE[spec.optimizer]
        self._loss = 0 if spec.loss == "cross_entropy" else 1
        self._hp = np.zeros(len(HP), np.float64)
        self._ws = {}
        self._dummy_labels = np.zeros(1, np.int64)
        self._dummy_target = np.zeros((1, 1), dt)
        self._dummy_out = np.zeros((1, 1), dt)
        self.workspace_allocations = 0
        self.set_optimizer(spec.config)

    def set_optimizer(self, config: OptimConfig) -> None:
        self.config = c = config
        self._hp[1:11] = (c.weight_decay, c.momentum, c.dampening, float(c.nesterov), c.beta1, c.beta2,
                          c.eps, c.alpha, float(c.centered), float(c.maximize))
        self._hp[12] = float(c.decay_bias)

    def _workspace(self, n):
        w = self._ws.get(n)
        if w is None:
            h, z, wt, g0, g1, total = _layout(self.spec, n)
            w = (np.empty(total, self.spec.params.dtype), h, z, wt, g0, g1)
            self._ws[n] = w
            self.workspace_allocations += 1
        return w

    def _call(self, x, labels, target, train, out):
        s = self.spec
        n = x.shape[0]
        ws, h, z, wt, g0, g1 = self._workspace(n)
        work = n * int(np.dot(self._dims[:-1], self._dims[1:]))
        fn = pick(_step_pair, 3 * work)
        return fn(s.params, s.grads, self._state[0], self._state[1], self._state[2], self._dims, self._acts,
                  self._act_params, self._w_off, self._b_off, x, labels, target, self._loss, self._opt,
                  self._hp, ws, h, z, wt, g0, g1, train, out)

    def step(self, x, y, lr, t):
        if self._loss == 0:
            if np.any((y < 0) | (y >= self.spec.dims[-1])):
                raise ValueError("y: a class index is out of range [0, C)")
            labels, target = y, self._dummy_target
        else:
            labels, target = self._dummy_labels, y
        self._hp[0] = lr
        self._hp[11] = t
        return float(self._call(x, labels, target, True, self._dummy_out))

    def forward(self, out, x):
        self._call(x, self._dummy_labels, self._dummy_target, False, out)

    def epoch(self, x, y, order, batch_size, lr, weight_decay, eps, t0, losses, sq_norms=None):
        epoch_by_steps(self, x, y, order, batch_size, lr, weight_decay, eps, t0, losses, sq_norms)


def mlp_step_plan(spec):
    return NumbaMlpStep(spec)
