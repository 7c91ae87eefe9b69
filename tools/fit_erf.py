"""Fit the erf/erfc polynomials of csrc/include/nnk/vmath.h (needs mpmath).

    python tools/fit_erf.py            # float64-lane fits
    python tools/fit_erf.py --float    # float32-lane fits (kErfSmallF, kErfcTailF)

Least squares in the Chebyshev basis on 2000 Chebyshev nodes, converted to
power-basis coefficients (evaluated by Horner in the header); the printed max
relative error is measured on 20001 points with that Horner evaluation.
  kErfSmall: erf(x)/x as a polynomial in u = x^2, u in [0, 4]        (degree 16)
  kErfcTail: erfc(x) exp(x^2) as a polynomial in t = 1/x, t in [1/6, 1/2]    (16)
  kErfcFar:  the same for t in [1/27.5, 1/6]                          (12)
"""

from __future__ import annotations

import mpmath as mp
import numpy as np
from numpy.polynomial import chebyshev as C

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


if __name__ == "__main__":
    import sys

    if "--float" in sys.argv:
        fits, ctype, suffix = [("kErfSmallF", erf_over_x, 0.0, 1.0, 6),
                               ("kErfcTailF", erfc_scaled, 0.1, 1.0, 12)], "float", "f"
    else:
        fits, ctype, suffix = [("kErfSmall", erf_over_x, 0.0, 4.0, 16),
                               ("kErfcTail", erfc_scaled, 1 / 6, 0.5, 16),
                               ("kErfcFar", erfc_scaled, 1 / 27.5, 1 / 6, 12)], "double", ""
    for name, f, a, b, deg in fits:
        p, err = fit(f, a, b, deg)
        print(f"// {name}: max relative error {err:.2g}")
        print(f"constexpr {ctype} {name}[{len(p)}] = {{" + ", ".join(repr(float(c)) + suffix for c in p) + "};")
