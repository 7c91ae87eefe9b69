"""Vectorisable exp, expm1, log, log1p, tanh, sigmoid, softplus and erfc for
Numba kernels (the Numba twin of csrc/include/nnk/vmath.h).

Why: ``math.exp`` and friends compile to scalar libm calls, which stop LLVM
from vectorising a loop (there is no SVML here, and fastmath beyond
``contract`` is not allowed). These functions are plain arithmetic, compare
+ select and integer bit tricks (``2^n`` built in the exponent field through
a bitcast), so a loop that calls them is straight-line code the loop
vectoriser turns into AVX2/AVX-512 instructions. They are inlined
(``inline="always"``, at the Numba IR level) into the kernel loops.

Two families:
- ``*_f``: float32 in, float32 arithmetic out (Cephes-style reductions and
  short polynomials, the coefficients of vmath.h's ``_f`` functions); max
  relative error against float64 ~2e-7 (erfc_f ~4e-7 in its tail).
- ``*_d``: float64, Taylor / atanh series long enough for a few ulp
  (erfc_d ~1e-13 relative).
A kernel is written once with the names ``v_exp``, ``v_tanh``... and ``cast``
(a constant in the data's type) and compiled twice, binding them to
``F32_MATH`` or ``F64_MATH`` (``_jit.specialise``).

Semantics are libm's: NaN in gives NaN out, exp(+inf) = inf, exp(-inf) = 0,
log(0) = -inf, log(x < 0) = NaN, tanh(+-inf) = +-1, erfc(-inf) = 2, erfc(inf) = 0.
Kernels that use these are compiled with ``error_model="numpy"`` (see
``_jit.vjit``): a Python-style ZeroDivisionError check on each division would
add a branch to the loop body and stop the vectoriser.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from ._jit import SAFE_FASTMATH

_OPTS = dict(cache=True, fastmath=SAFE_FASTMATH, error_model="numpy", inline="always")
#: row reductions: called once per row, not inlined (inlining costs compile time, gains nothing)
_ROW_OPTS = dict(cache=True, fastmath=SAFE_FASTMATH, error_model="numpy")
F = np.float32

# ---- bit casts and fused multiply-add (LLVM instructions, vectorisable) --------------


def _float_bits(fty, ity):
    """An intrinsic: the integer ``ity`` whose bits are those of float ``fty`` x."""
    def float_bits(typingctx, x):
        if x != fty:
            return None

        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], context.get_value_type(ity))

        return ity(fty), codegen

    return intrinsic(float_bits)


def _bits_float(fty, ity):
    """An intrinsic: the float ``fty`` with the bits of integer i, truncated or
    sign-extended to the width of ``ity`` first."""
    def bits_float(typingctx, i):
        if not isinstance(i, types.Integer):
            return None

        def codegen(context, builder, sig, args):
            v = args[0]
            if i.bitwidth > ity.bitwidth:
                v = builder.trunc(v, context.get_value_type(ity))
            elif i.bitwidth < ity.bitwidth:
                v = builder.sext(v, context.get_value_type(ity))
            return builder.bitcast(v, context.get_value_type(fty))

        return fty(i), codegen

    return intrinsic(bits_float)


f32_bits = _float_bits(types.float32, types.int32)  # int32 bits of a float32
bits_f32 = _bits_float(types.float32, types.int32)  # float32 from the low 32 bits of an integer
f64_bits = _float_bits(types.float64, types.int64)  # int64 bits of a float64
bits_f64 = _bits_float(types.float64, types.int64)  # float64 from an integer (sign-extended)


@intrinsic
def fma_f32(typingctx, a, b, c):
    """a * b + c rounded once (llvm.fma), float32."""
    if not (a == b == c == types.float32):
        return None

    def codegen(context, builder, sig, args):
        return builder.fma(*args)

    return types.float32(types.float32, types.float32, types.float32), codegen


@intrinsic
def prefer_wide_vectors(typingctx):
    """Call first in a kernel (or a prange body): its LLVM function gets the
    attribute "prefer-vector-width"="512", so loops are vectorised with
    AVX-512 zmm registers where the CPU has them. LLVM's default tuning for
    this CPU prefers 256-bit vectors (half the lanes); the C++ kernels use
    512. Generates no code; a no-op if llvmlite's attribute set changes shape."""

    def codegen(context, builder, sig, args):
        attrs = builder.function.attributes
        if isinstance(attrs, set):  # llvmlite's AttributeSet: a set of strings, rendered verbatim
            set.add(attrs, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return types.none(), codegen


# ---- float32 ---------------------------------------------------------------------------

_SHIFT_F = F(12582912.0)  # 0x1.8p23: adding it rounds to an integer in the low mantissa bits
_SHIFT_F_BITS = np.int32(0x4B400000)


@njit(**_OPTS)
def _exp_reduced_f(r, t):
    """exp(n ln2 + r) from the reduced argument r and t = n + shift (exp_f and
    _exp_split_f): exp(r) = 1 + r + r^2 P(r), then 2^n applied as
    2^(n>>1) 2^(n - n>>1) so that subnormal results round once."""
    z = r * r
    p = F(1.9875691500e-4)
    p = p * r + F(1.3981999507e-3)
    p = p * r + F(8.3334519073e-3)
    p = p * r + F(4.1665795894e-2)
    p = p * r + F(1.6666665459e-1)
    p = p * r + F(5.0000001201e-1)
    y = p * z + r + F(1.0)
    ni = f32_bits(t) - _SHIFT_F_BITS
    n1 = ni >> 1
    n2 = ni - n1
    return y * bits_f32((n1 + 127) << 23) * bits_f32((n2 + 127) << 23)


@njit(**_OPTS)
def exp_f(x):
    # n = rint(x log2 e), r = x - n ln2 (two-part ln2)
    x = F(-104.0) if x < F(-104.0) else x  # NaN passes both unchanged
    x = F(89.0) if x > F(89.0) else x
    t = x * F(1.44269504088896341) + _SHIFT_F
    n = t - _SHIFT_F
    r = x - n * F(0.693359375)
    return _exp_reduced_f(r - n * F(-2.12194440e-4), t)


@njit(**_OPTS)
def _exp_split_f(x, lo):
    """exp(x + lo) for x <= 0 with a small correction lo (as exp_f, lo added to
    the reduced argument); below -104 the result is 0, NaN passes."""
    x = F(-104.0) if x < F(-104.0) else x
    t = x * F(1.44269504088896341) + _SHIFT_F
    n = t - _SHIFT_F
    r = x - n * F(0.693359375)
    return _exp_reduced_f(r - n * F(-2.12194440e-4) + lo, t)


@njit(**_OPTS)
def expm1_f(x):
    # Taylor series for |x| < 1 (no cancellation), exp(x) - 1 beyond
    p = F(1.0 / 479001600)
    p = p * x + F(1.0 / 39916800)
    p = p * x + F(1.0 / 3628800)
    p = p * x + F(1.0 / 362880)
    p = p * x + F(1.0 / 40320)
    p = p * x + F(1.0 / 5040)
    p = p * x + F(1.0 / 720)
    p = p * x + F(1.0 / 120)
    p = p * x + F(1.0 / 24)
    p = p * x + F(1.0 / 6)
    p = p * x + F(0.5)
    a = abs(x)
    small = x + (x * x) * p
    small = x if a < F(5.9604645e-08) else small  # keeps -0.0
    big = exp_f(x) - F(1.0)
    return small if a < F(1.0) else big


@njit(**_OPTS)
def log1p_unit_f(y):
    # log1p(y) for y in [0, 1]: 2 atanh(s), s = y / (2 + y) <= 1/3
    s = y / (F(2.0) + y)
    s2 = s * s
    p = F(1.0 / 15)
    p = p * s2 + F(1.0 / 13)
    p = p * s2 + F(1.0 / 11)
    p = p * s2 + F(1.0 / 9)
    p = p * s2 + F(1.0 / 7)
    p = p * s2 + F(1.0 / 5)
    p = p * s2 + F(1.0 / 3)
    return F(2.0) * s + F(2.0) * s * s2 * p


@njit(**_OPTS)
def softplus_f(x):
    # log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))
    m = x if x > F(0.0) else F(0.0)
    r = m + log1p_unit_f(exp_f(-abs(x)))
    return x if x != x else r


@njit(**_OPTS)
def sigmoid_f(x):
    # e = exp(-|x|) never overflows: 1/(1+e) for x >= 0, e/(1+e) below
    e = exp_f(-abs(x))
    r = F(1.0) / (F(1.0) + e)
    neg = x if x != x else e * r
    return r if x >= F(0.0) else neg


@njit(**_OPTS)
def _expm1_nonpos_f(z):
    """(exp(z) - 1, exp(z), 1 + exp(z)) for z <= 0 or NaN, without cancellation
    near 0 (vmath.h's expm1_nonpos_f): z = n ln2 + r, expm1(z) = 2^n expm1(r)
    + (2^n - 1), expm1(r) = r + r^2 Q(r) (degree 4, tools/fit_erf.py --float)."""
    z = F(-104.0) if z < F(-104.0) else z  # NaN passes
    t = z * F(1.44269504088896341) + _SHIFT_F
    n = t - _SHIFT_F
    r = z - n * F(0.693359375)
    r = r - n * F(-2.12194440e-4)
    q = F(1.381461043e-03)
    q = q * r + F(8.369077928e-03)
    q = q * r + F(4.166848212e-02)
    q = q * r + F(1.666651666e-01)
    q = q * r + F(4.999999106e-01)
    pm = r + (r * r) * q
    ni = f32_bits(t) - _SHIFT_F_BITS
    n1 = ni >> 1
    n2 = ni - n1
    s = bits_f32((n1 + 127) << 23) * bits_f32((n2 + 127) << 23)  # 2^n, rounded once (0 for n = -150)
    e = pm * s + s
    return pm * s + (s - F(1.0)), e, pm * s + (s + F(1.0))


@njit(**_OPTS)
def _copysign_f(a, x):
    """|a| with the sign of x."""
    return bits_f32((f32_bits(a) & 0x7FFFFFFF) | (f32_bits(x) & -2147483648))


@njit(**_OPTS)
def tanh_f(x):
    # tanh(x) = sign(x) (1 - e) / (1 + e), e = exp(-2|x|): one path for every x
    # (numerator -expm1(-2|x|), one correctly rounded division; +-inf -> +-1,
    # NaN passes, -0.0 keeps its sign)
    num, e, den = _expm1_nonpos_f(F(-2.0) * abs(x))
    return _copysign_f(num / den, x)


@njit(**_OPTS)
def tanh_sech2_f(x):
    """(tanh x, 1 - tanh(x)^2 = 4 e / (1 + e)^2), e = exp(-2|x|): no
    cancellation for large |x|, exactly 0 once e underflows."""
    num, e, den = _expm1_nonpos_f(F(-2.0) * abs(x))
    rd = F(1.0) / den
    return _copysign_f(num / den, x), (F(4.0) * e) * (rd * rd)


@njit(**_OPTS)
def _exp_minus_sq_f(a):
    # exp(-a^2) with a^2 = hi + lo split exactly (FMA): exp(-hi) (1 - lo)
    hi = a * a
    lo = fma_f32(a, a, -hi)
    return exp_f(-hi) * (F(1.0) - lo)


@njit(**_OPTS)
def erfc_f(x):
    # |x| < 1: 1 - x P(x^2); 1 <= |x| <= 4: exp(-x^2) Q((|x| - 2.5) / 1.5);
    # 4 < |x| <= 10.05: exp(-x^2) R(1/|x|); beyond, 0 (2 for x < 0). Fits as in vmath.h.
    a = abs(x)
    u = x * x
    p = F(7.882497108300863e-05)
    p = p * u + F(-0.0008018854992354304)
    p = p * u + F(0.0051893119426434375)
    p = p * u + F(-0.026854328796041486)
    p = p * u + F(0.1128359746348709)
    p = p * u + F(-0.37612626903580354)
    p = p * u + F(1.128379165881503)
    small = F(1.0) - x * p
    s = a * F(1.0 / 1.5) - F(2.5 / 1.5)
    q = F(1.3819089044517419e-05)
    q = q * s + F(-3.692872360494066e-05)
    q = q * s + F(5.4947248119873694e-05)
    q = q * s + F(-0.00014394859779838845)
    q = q * s + F(0.00041450809790949996)
    q = q * s + F(-0.001017117774402759)
    q = q * s + F(0.0024017016954597263)
    q = q * s + F(-0.005567332909485422)
    q = q * s + F(0.012489703671462174)
    q = q * s + F(-0.02700572528974718)
    q = q * s + F(0.05611047258428711)
    q = q * s + F(-0.11152100469538162)
    q = q * s + F(0.21080636427594104)
    t = F(1.0) / a
    w = F(0.04385877953633181)
    w = w * t + F(-0.2794313384804379)
    w = w * t + F(0.7380758467366277)
    w = w * t + F(-0.958735880008588)
    w = w * t + F(0.37036430756882127)
    w = w * t + F(0.7407441101796829)
    w = w * t + F(-1.3414046101060286)
    w = w * t + F(0.9387845655423168)
    w = w * t + F(-0.12440998728280717)
    w = w * t + F(-0.26264708329616593)
    w = w * t + F(-0.0019085988052345848)
    w = w * t + F(0.5642960249916958)
    w = w * t + F(-2.559892241571493e-06)
    g = _exp_minus_sq_f(a)
    far = F(0.0) if a > F(10.05) else g * w
    e = far if a > F(4.0) else g * q  # NaN: g * q = NaN
    tail = e if x >= F(0.0) else F(2.0) - e
    tail = e if x != x else tail
    return small if a < F(1.0) else tail


@njit(**_OPTS)
def normal_cdf_f(x):
    """(Phi(x), exp(-x^2 / 2)) for float32 gelu: one exp, one division, no
    branch (vmath.h's normal_cdf_f): Phi(-|x|) = exp(-x^2/2) t/2 P(t - 1/2),
    t = 1 / (1 + 0.4375 |x| / sqrt 2), P of degree 9 (tools/fit_erf.py --float);
    x^2 split exactly (FMA). |x| capped at 14.5, where exp(-x^2/2) is 0."""
    a = abs(x)
    a = F(14.5) if a > F(14.5) else a  # NaN passes
    hi = a * a
    lo = fma_f32(a, a, -hi)
    e = _exp_split_f(F(-0.5) * hi, F(-0.5) * lo)
    half_t = F(1.0) / (F(2.0) + F(2.0 * 0.4375 * 0.7071067811865476) * a)
    s = F(2.0) * half_t - F(0.5)
    p = F(-3.961429000e-02)
    p = p * s + F(1.893838122e-02)
    p = p * s + F(8.442737907e-02)
    p = p * s + F(-3.986299038e-02)
    p = p * s + F(-1.644378752e-01)
    p = p * s + F(1.209004316e-03)
    p = p * s + F(3.885714114e-01)
    p = p * s + F(6.718121171e-01)
    p = p * s + F(6.651412845e-01)
    p = p * s + F(4.559346735e-01)
    q = e * (half_t * p)  # Phi(-|x|)
    cdf = q if x < F(0.0) else F(1.0) - q
    return cdf, e


# ---- float64 ---------------------------------------------------------------------------

_SHIFT_D = 6755399441055744.0  # 0x1.8p52
_SHIFT_D_BITS = np.int64(0x4338000000000000)
_LN2_HI = 0.6931471805599453  # 0x1.62e42fefa39efp-1
_LN2_LO = 2.3190468138462996e-17  # 0x1.abc9e3b39803fp-56


@njit(**_OPTS)
def exp_d(x):
    # as exp_f, with the Taylor series of exp(r), |r| <= ln2/2, to r^13 (truncation < 1e-17)
    x = -800.0 if x < -800.0 else x
    x = 800.0 if x > 800.0 else x
    t = x * 1.4426950408889634 + _SHIFT_D
    n = t - _SHIFT_D
    r = x - n * _LN2_HI
    r = r - n * _LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600
    p = p * r + 1.0 / 39916800
    p = p * r + 1.0 / 3628800
    p = p * r + 1.0 / 362880
    p = p * r + 1.0 / 40320
    p = p * r + 1.0 / 5040
    p = p * r + 1.0 / 720
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    ni = f64_bits(t) - _SHIFT_D_BITS
    n1 = ni >> 1
    n2 = ni - n1
    return p * bits_f64((n1 + 1023) << 52) * bits_f64((n2 + 1023) << 52)


@njit(**_OPTS)
def expm1_d(x):
    # |x| <= 1: x * sum z^k/(k+1)!, k < 17 (truncation < 2e-17); exp(x) - 1 beyond
    p = 1.0 / 355687428096000.0
    p = p * x + 1.0 / 20922789888000.0
    p = p * x + 1.0 / 1307674368000.0
    p = p * x + 1.0 / 87178291200.0
    p = p * x + 1.0 / 6227020800.0
    p = p * x + 1.0 / 479001600
    p = p * x + 1.0 / 39916800
    p = p * x + 1.0 / 3628800
    p = p * x + 1.0 / 362880
    p = p * x + 1.0 / 40320
    p = p * x + 1.0 / 5040
    p = p * x + 1.0 / 720
    p = p * x + 1.0 / 120
    p = p * x + 1.0 / 24
    p = p * x + 1.0 / 6
    p = p * x + 0.5
    p = p * x + 1.0
    small = x * p
    big = exp_d(x) - 1.0
    return small if abs(x) <= 1.0 else big


@njit(**_OPTS)
def log_d(x):
    # x = 2^k m, m in [0.707, 1.414), log m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716
    tiny = x < 2.2250738585072014e-308  # subnormal (or <= 0): scale into the normal range
    xs = x * 4503599627370496.0 if tiny else x
    kadj = -52.0 if tiny else 0.0
    bits = f64_bits(xs)
    e = (bits >> 52) & 0x7FF
    m = bits_f64((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)
    big = m > 1.4142135623730951
    m = m * 0.5 if big else m
    k = np.float64(e) - 1023.0 + kadj + (1.0 if big else 0.0)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = 1.0 / 21
    p = p * s2 + 1.0 / 19
    p = p * s2 + 1.0 / 17
    p = p * s2 + 1.0 / 15
    p = p * s2 + 1.0 / 13
    p = p * s2 + 1.0 / 11
    p = p * s2 + 1.0 / 9
    p = p * s2 + 1.0 / 7
    p = p * s2 + 1.0 / 5
    p = p * s2 + 1.0 / 3
    p = p * s2 + 1.0
    r = k * _LN2_HI + (2.0 * s * p + k * _LN2_LO)
    r = -np.inf if x == 0.0 else r
    r = np.nan if x < 0.0 else r
    r = x if x == np.inf else r
    return x if x != x else r


@njit(**_OPTS)
def log1p_d(y):
    u = 1.0 + y
    lu = log_d(u)
    r = lu - ((u - 1.0) - y) / u  # first-order correction for the rounding of 1 + y
    r = lu if (u == 0.0) | (u == np.inf) | (y != y) else r
    return y if abs(y) < 5.551115123125783e-17 else r  # keeps -0.0 and subnormals exact


@njit(**_OPTS)
def softplus_d(x):
    m = x if x > 0.0 else 0.0
    r = m + log1p_d(exp_d(-abs(x)))
    return x if x != x else r


@njit(**_OPTS)
def sigmoid_d(x):
    e = exp_d(-abs(x))
    r = 1.0 / (1.0 + e)
    neg = x if x != x else e * r
    return r if x >= 0.0 else neg


@njit(**_OPTS)
def tanh_d(x):
    a = abs(x)
    e1 = expm1_d(2.0 * a)  # accurate near 0
    small = e1 / (e1 + 2.0)
    big = 1.0 - 2.0 / (exp_d(2.0 * a) + 1.0)
    r = small if a <= 0.5 else big
    r = -r if x < 0.0 else r
    return x if (x != x) | (x == 0.0) else r  # NaN; keeps -0.0


@njit(**_OPTS)
def tanh_sech2_d(x):
    t = tanh_d(x)
    return t, 1.0 - t * t


@njit(**_OPTS)
def erfc_d(x):
    # |x| < 2: 1 - x P(x^2); 2 <= |x| <= 6: exp(-x^2) Q(1/|x|); 6 < |x| <= 27.5: exp(-x^2) R(1/|x|)
    # (fits of vmath.h, ~1e-14 relative); beyond, 0 (2 for x < 0)
    a = abs(x)
    u = a * a
    p = 2.472984810413472e-16
    p = p * u + -1.2449797696415457e-14
    p = p * u + 3.2418770176054497e-13
    p = p * u + -6.006282693879027e-12
    p = p * u + 9.121428688396341e-11
    p = p * u + -1.219401994217307e-09
    p = p * u + 1.4783868008451109e-08
    p = p * u + -1.6361595733125153e-07
    p = p * u + 1.6461534873000398e-06
    p = p * u + -1.4925592031062837e-05
    p = p * u + 0.00012055328749800528
    p = p * u + -0.0008548326809935259
    p = p * u + 0.0052239776183514
    p = p * u + -0.02686617064370936
    p = p * u + 0.11283791670940192
    p = p * u + -0.3761263890318311
    p = p * u + 1.1283791670955101
    small = 1.0 - x * p
    t = 1.0 / a
    q = -0.9619142593112204
    q = q * t + 1.1733252947973882
    q = q * t + 2.554759208428142
    q = q * t + -5.489129627999933
    q = q * t + 1.0984757042436923
    q = q * t + 5.566160498808401
    q = q * t + -5.674257633467611
    q = q * t + 0.5107205550855878
    q = q * t + 2.8151818899991836
    q = q * t + -2.087129053179407
    q = q * t + 0.22395465391075936
    q = q * t + 0.3938956415976941
    q = q * t + 0.0017077945883932355
    q = q * t + -0.2819903244173349
    q = q * t + -2.77886184320425e-05
    q = q * t + 0.5641916563125553
    q = q * t + -5.807090960874284e-08
    w = 1.5075371701437226
    w = w * t + -0.7994673926865437
    w = w * t + -2.6610826910164107
    w = w * t + 1.7669602734491845
    w = w * t + 1.1158052809904717
    w = w * t + -1.3439303023612061
    w = w * t + 0.044879772702354825
    w = w * t + 0.4184756545496489
    w = w * t + 0.0003282333258041274
    w = w * t + -0.28211022515114126
    w = w * t + 4.6372592626790776e-07
    w = w * t + 0.5641895755192848
    w = w * t + 6.074458384214276e-11
    g = q if a <= 6.0 else w
    e = exp_d(-u) * g  # a = inf: 0 * 0 = 0; NaN stays NaN
    tail = e if x >= 0.0 else 2.0 - e
    tail = e if x != x else tail
    return small if a < 2.0 else tail


@njit(**_OPTS)
def normal_cdf_d(x):
    """(Phi(x), exp(-x^2 / 2)) in float64: erfc(-x / sqrt 2) / 2 (accurate for x << 0)."""
    return 0.5 * erfc_d(-x * 0.7071067811865476), exp_d(-0.5 * x * x)


# ---- row reductions (vectorisable; fixed order, so results do not depend on threads) --------

_KEY_MASK_F = np.int32(0x7FFFFFFF)
_KEY_MASK_D = np.int64(0x7FFFFFFFFFFFFFFF)


@njit(**_ROW_OPTS)
def row_max_f(x):
    """max of float32 x(n) (-inf if n == 0), NaN if any element is NaN.

    A float comparison reduction is not vectorised without fast-math flags;
    integer max is. Keys k = bits ^ ((bits >> 31) & 0x7fffffff) order floats
    as integers (negative ones flipped); NaNs are found from the largest |bits|."""
    prefer_wide_vectors()
    kmax = np.int32(-2147483648)
    amax = np.int32(0)
    for j in range(x.shape[0]):
        b = f32_bits(x[j])
        k = np.int32(b ^ ((b >> 31) & _KEY_MASK_F))
        kmax = max(kmax, k)
        amax = max(amax, np.int32(b & _KEY_MASK_F))
    if amax > 0x7F800000:
        return np.float32(np.nan)
    if x.shape[0] == 0:
        return np.float32(-np.inf)
    return bits_f32(kmax ^ ((kmax >> 31) & _KEY_MASK_F))


@njit(**_ROW_OPTS)
def row_max_d(x):
    """row_max_f for float64 x(n)."""
    prefer_wide_vectors()
    kmax = np.int64(-9223372036854775807 - 1)
    amax = np.int64(0)
    for j in range(x.shape[0]):
        b = f64_bits(x[j])
        k = b ^ ((b >> 63) & _KEY_MASK_D)
        kmax = max(kmax, k)
        amax = max(amax, b & _KEY_MASK_D)
    if amax > 0x7FF0000000000000:
        return np.nan
    if x.shape[0] == 0:
        return -np.inf
    return bits_f64(kmax ^ ((kmax >> 63) & _KEY_MASK_D))


@njit(**_ROW_OPTS)
def row_sum(x):
    """sum of x(n) in float64 with 8 interleaved partial sums (added in a fixed
    order): 8 independent chains instead of one serial dependency."""
    prefer_wide_vectors()
    n = x.shape[0]
    n8 = n - n % 8
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    for j in range(0, n8, 8):
        s0 += np.float64(x[j])
        s1 += np.float64(x[j + 1])
        s2 += np.float64(x[j + 2])
        s3 += np.float64(x[j + 3])
        s4 += np.float64(x[j + 4])
        s5 += np.float64(x[j + 5])
        s6 += np.float64(x[j + 6])
        s7 += np.float64(x[j + 7])
    r = 0.0
    for j in range(n8, n):
        r += np.float64(x[j])
    return (((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))) + r


#: lanes of row_sum_lanes' accumulator
SUM_LANES = 64


@njit(**_ROW_OPTS)
def row_sum_lanes(x, acc):
    """sum of x(n) in float64 for long rows: acc(SUM_LANES) += x[q*L:(q+1)*L]
    is an elementwise vector loop (the trip count is a run-time value, so the
    loop vectoriser, not the SLP one, takes it, with a run-time alias check);
    then the lanes in a fixed order. ``acc`` is scratch."""
    prefer_wide_vectors()
    n = x.shape[0]
    lanes = acc.shape[0]
    if n < 2 * lanes:
        return row_sum(x)
    nq = n // lanes
    acc[:] = 0.0
    for q in range(nq):
        xq = x[q * lanes:(q + 1) * lanes]
        for k in range(lanes):
            acc[k] += np.float64(xq[k])
    return row_sum(acc) + row_sum(x[nq * lanes:])


@njit(**_ROW_OPTS)
def row_dot(x, y):
    """sum of x(n) * y(n) in float64, 8 interleaved partial sums as row_sum."""
    prefer_wide_vectors()
    n = x.shape[0]
    n8 = n - n % 8
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    for j in range(0, n8, 8):
        s0 += np.float64(x[j]) * np.float64(y[j])
        s1 += np.float64(x[j + 1]) * np.float64(y[j + 1])
        s2 += np.float64(x[j + 2]) * np.float64(y[j + 2])
        s3 += np.float64(x[j + 3]) * np.float64(y[j + 3])
        s4 += np.float64(x[j + 4]) * np.float64(y[j + 4])
        s5 += np.float64(x[j + 5]) * np.float64(y[j + 5])
        s6 += np.float64(x[j + 6]) * np.float64(y[j + 6])
        s7 += np.float64(x[j + 7]) * np.float64(y[j + 7])
    r = 0.0
    for j in range(n8, n):
        r += np.float64(x[j]) * np.float64(y[j])
    return (((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))) + r


# ---- the two sets, by the names kernels use (see _jit.specialise) ---------------------

#: float32 data: float32 arithmetic
F32_MATH = dict(cast=np.float32, v_exp=exp_f, v_expm1=expm1_f, v_tanh=tanh_f, v_tanh_sech2=tanh_sech2_f,
                v_sigmoid=sigmoid_f, v_softplus=softplus_f, v_erfc=erfc_f, v_row_max=row_max_f,
                v_normal_cdf=normal_cdf_f)
#: float64 data
F64_MATH = dict(cast=np.float64, v_exp=exp_d, v_expm1=expm1_d, v_tanh=tanh_d, v_tanh_sech2=tanh_sech2_d,
                v_sigmoid=sigmoid_d, v_softplus=softplus_d, v_erfc=erfc_d, v_row_max=row_max_d,
                v_normal_cdf=normal_cdf_d)



def per_dtype(fn, compile, tag: str = "", **extra):
    """{dtype: compiled kernel} for float32 and float64: ``compile`` (``vjit``
    or ``vjit_parallel``) applied to a copy of ``fn`` with the names of
    F32_MATH / F64_MATH bound (``_jit.specialise``). ``extra`` maps more global
    names to {dtype: function} (kernels calling kernels). ``tag`` tells apart
    two compilations of one source (serial / parallel): Numba's on-disk cache
    is keyed by the function's name and signature, not by its options."""
    from ._jit import specialise

    out = {}
    for dt, math_names in ((np.dtype(np.float32), F32_MATH), (np.dtype(np.float64), F64_MATH)):
        names = dict(math_names, **{k: v[dt] for k, v in extra.items()})
        out[dt] = compile(specialise(fn, f"_{dt.name}{tag}", names))
    return out

# ---- elementwise application, for the accuracy tests ------------------------------------


def _apply(out, x):
    # out(n) := fn(x(n)); ``fn`` is bound by specialise
    prefer_wide_vectors()
    for i in range(x.shape[0]):
        out[i] = fn(x[i])  # noqa: F821


@njit(**_OPTS)
def _normal_cdf_only_f(x):
    return normal_cdf_f(x)[0]


@njit(**_OPTS)
def _normal_cdf_only_d(x):
    return normal_cdf_d(x)[0]


_F32_FNS = dict(normal_cdf=_normal_cdf_only_f, exp=exp_f, expm1=expm1_f, tanh=tanh_f, sigmoid=sigmoid_f, softplus=softplus_f, erfc=erfc_f)
_F64_FNS = dict(normal_cdf=_normal_cdf_only_d, exp=exp_d, expm1=expm1_d, log=log_d, log1p=log1p_d, tanh=tanh_d, sigmoid=sigmoid_d,
                softplus=softplus_d, erfc=erfc_d)
_APPLY = {}


def apply(out, x, name):
    """out := name(x) for 1-D float32 (``_f`` functions) or float64 (``_d``) arrays."""
    from ._jit import specialise, vjit

    fns = _F32_FNS if x.dtype == np.float32 else _F64_FNS
    key = (name, x.dtype.name)
    if key not in _APPLY:
        _APPLY[key] = vjit(specialise(_apply, f"_{name}_{x.dtype.name}", {"fn": fns[name]}))
    _APPLY[key](out, x)
