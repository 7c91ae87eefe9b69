"""The built extension keeps its ISA variants apart.

A per-ISA translation unit that emits an out-of-line inline/template function
(a std:: template, a header helper) can have its copy merged by the linker
with another variant's: the generic path would then execute AVX-512 code and
die with SIGILL on an older CPU. That cannot be seen by running on this CPU,
so we read the machine code: outside nnk::avx2:: and nnk::avx512:: no
function may contain a VEX/EVEX (AVX) instruction, and nothing outside
nnk::avx512:: may touch a zmm register or an opmask.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from nnkernels import _C

pytestmark = pytest.mark.skipif(shutil.which("objdump") is None, reason="needs binutils objdump")

_FUNC = re.compile(r"^[0-9a-f]+ <(.*)>:$")


def _functions():
    out = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", _C.__file__],
                         capture_output=True, text=True, check=True).stdout
    name, body = None, []
    for line in out.splitlines():
        m = _FUNC.match(line)
        if m:
            if name is not None:
                yield name, body
            name, body = m.group(1), []
        elif name is not None and "\t" in line:
            body.append(line.split("\t", 1)[1].strip())
    if name is not None:
        yield name, body


def _mnemonic(insn: str) -> str:
    return insn.split()[0] if insn else ""


def test_variants_do_not_leak_into_other_code():
    avx_outside, zmm_outside = [], []
    n_funcs = 0
    for name, body in _functions():
        n_funcs += 1
        # demangled, or mangled where the demangler gives up (vector-typed lambdas)
        in_avx512 = "nnk::avx512::" in name or "_ZN3nnk6avx512" in name
        in_avx2 = "nnk::avx2::" in name or "_ZN3nnk4avx2" in name
        if in_avx512:
            continue
        for insn in body:
            if "zmm" in insn or re.search(r"\{%k[1-7]\}", insn):
                zmm_outside.append((name, insn))
                break
            if not in_avx2 and _mnemonic(insn).startswith("v"):
                avx_outside.append((name, insn))
                break
    assert n_funcs > 100
    assert not zmm_outside, f"AVX-512 code outside nnk::avx512: {zmm_outside[:5]}"
    assert not avx_outside, f"AVX code outside nnk::avx2/avx512: {avx_outside[:5]}"


def test_each_variant_has_its_own_kernels():
    names = [n for n, _ in _functions()]
    info = _C.cpu_info()
    for isa in info["compiled"]:
        assert any(f"nnk::{isa}::gemm_kernels" in n for n in names), isa
