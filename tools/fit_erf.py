"""Fit the erf/erfc/exp polynomials of csrc/include/nnk/vmath.h (needs mpmath).

    python tools/fit_erf.py            # float64-lane fits
    python tools/fit_erf.py --float    # float32-lane fits (kErfSmallF, kErfcScaledF, kExpF)

float64 fits: least squares in the Chebyshev basis on 2000 Chebyshev nodes,
converted to power-basis coefficients (evaluated by Horner in the header); the
printed max relative error is measured on 20001 points with that Horner evaluation.
  kErfSmall: erf(x)/x as a polynomial in u = x^2, u in [0, 4]        (degree 16)
  kErfcTail: erfc(x) exp(x^2) as a polynomial in t = 1/x, t in [1/6, 1/2]    (16)
  kErfcFar:  the same for t in [1/27.5, 1/6]                          (12)
float32 fits:
  kErfSmallF:   erf(x)/x in u = x^2, u in [0, 1] (degree 6), as above
  kErfcScaledF: erfc(a) exp(a^2) / t as a polynomial in t - 1/2, t = 1/(1 + 0.4375 a),
                a in [0, 10.3] (degree 9): relative minimax by Lawson's iteration, then the
                coefficients rounded to float32 one at a time from the highest, the lower
                ones refitted after each rounding; the printed errors are the fit's and
                a float32 Horner evaluation's
  kExpF:        exp(r) = 1 + r + r^2 Q(r), |r| <= ln2/2, Q of degree 4, same method
"""

from __future__ import annotations

import mpmath as mp
import numpy as np
from numpy.polynomial import chebyshev as C
from numpy.polynomial import polynomial as P

mp.mp.dps = 40


def fit(f, a, b, deg, n=2000):
    k = np.arange(n)
    xs = (a + b) / 2 + (b - a) / 2 * np.cos(np.pi * (k + 0.5) / n)
    ys = np.array([float(f(mp.mpf(x))) for x in xs])
    p = C.cheb2poly(C.chebfit(xs, ys, deg))
    xt = np.linspace(a, b, 20001)
    yt = np.array([float(f(mp.mpf(x))) for x in xt])
    yp = np.zeros_like(xt)
    for c in p[::-1]:
        yp = yp * xt + c
    return p, float(np.max(np.abs(yp / yt - 1)))


def erf_over_x(u):
    return mp.erf(mp.sqrt(u)) / mp.sqrt(u) if u > 0 else 2 / mp.sqrt(mp.pi)


def erfc_scaled(t):
    return mp.erfc(1 / t) * mp.exp(1 / t**2)


def fit_relative_f32(us, ys, deg, iters=40, w=None):
    """Polynomial in us with float32 coefficients, minimax of the error weighted by w (default
    1/|ys|: relative) by Lawson's iteration, then sequential rounding."""
    w = 1 / np.abs(ys) if w is None else w
    wt = np.ones(len(us))
    for _ in range(iters):
        c = C.chebfit(us, ys, deg, w=np.sqrt(wt) * w)
        err = (C.chebval(us, c) - ys) * w
        wt = wt * np.abs(err)
        wt /= wt.sum()
    coef = C.cheb2poly(c)
    for j in range(deg, -1, -1):
        coef[j] = np.float32(coef[j])
        if j > 0:
            resid = ys - P.polyval(us, np.concatenate([np.zeros(j), coef[j:]]))
            sub = C.cheb2poly(C.chebfit(us, resid, j - 1, w=w))
            coef[:j] = np.pad(sub, (0, j - len(sub)))[:j]
    return coef.astype(np.float32)


def horner_f32(c32, u32):
    y = np.full_like(u32, c32[-1])
    for cc in c32[-2::-1]:
        y = (y.astype(np.float64) * u32 + cc).astype(np.float32)  # one rounding per step (FMA)
    return y


def fit_erfc_scaled_f32(p=0.4375, amax=10.3, deg=9, n=3000):
    def target(t):  # erfc(a) e^(a^2) / t
        a = (1 / t - 1) / p
        return float(mp.erfc(a) * mp.exp(a * a)) / t
    tmin = 1 / (1 + p * amax)
    k = np.arange(n)
    ts = (tmin + 1) / 2 + (1 - tmin) / 2 * np.cos(np.pi * (k + 0.5) / n)
    c32 = fit_relative_f32(ts - 0.5, np.array([target(t) for t in ts]), deg)
    tt = np.linspace(tmin, 1, 8001).astype(np.float32)
    ref = np.array([target(float(t)) for t in tt])
    err = np.max(np.abs(horner_f32(c32, (tt - np.float32(0.5)).astype(np.float32)) / ref - 1))
    return c32, err


def fit_exp_f32(deg=6, n=4000):
    half = float(mp.log(2)) / 2
    rs = half * np.cos(np.pi * (np.arange(n) + 0.5) / n)
    # Q = (exp(r) - 1 - r) / r^2, its error weighted by r^2 / exp(r): relative to exp(r)
    q = fit_relative_f32(rs, (np.exp(rs) - 1 - rs) / rs**2, deg - 2, iters=50, w=rs**2 / np.exp(rs))
    c32 = np.concatenate([[1.0, 1.0], q]).astype(np.float32)
    rr = np.linspace(-half, half, 200001).astype(np.float32)
    err = np.max(np.abs(horner_f32(c32, rr) / np.exp(rr.astype(np.float64)) - 1))
    return c32, err


def print_f32(name, c32, note):
    print(f"// {name}: {note}")
    print(f"constexpr float {name}[{len(c32)}] = {{" + ", ".join("%.9ef" % v for v in c32) + "};")


if __name__ == "__main__":
    import sys

    if "--float" in sys.argv:
        p, err = fit(erf_over_x, 0.0, 1.0, 6)
        print(f"// kErfSmallF: max relative error {err:.2g}")
        print(f"constexpr float kErfSmallF[{len(p)}] = {{" + ", ".join(repr(float(c)) + "f" for c in p) + "};")
        c32, err = fit_erfc_scaled_f32()
        print_f32("kErfcScaledF", c32, f"float32 Horner max relative error {err:.2g}")
        c32, err = fit_exp_f32()
        print_f32("kExpF", c32, f"float32 Horner max relative error {err:.2g}")
    else:
        fits = [("kErfSmall", erf_over_x, 0.0, 4.0, 16),
                ("kErfcTail", erfc_scaled, 1 / 6, 0.5, 16),
                ("kErfcFar", erfc_scaled, 1 / 27.5, 1 / 6, 12)]
        for name, f, a, b, deg in fits:
            p, err = fit(f, a, b, deg)
            print(f"// {name}: max relative error {err:.2g}")
            print(f"constexpr double {name}[{len(p)}] = {{" + ", ".join(repr(float(c)) for c in p) + "};")
