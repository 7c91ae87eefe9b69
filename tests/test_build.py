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


def _doc_params(fn) -> list:
    """Parameter names from a pybind11 signature line 'name(a: T, b: U = 1) -> R'."""
    line = fn.__doc__.splitlines()[0]
    inner = line[line.index("(") + 1:line.rindex(")")]
    names, depth, cur = [], 0, ""
    for ch in inner + ",":
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            if cur.strip():
                names.append(cur.split(":")[0].strip())
            cur = ""
        else:
            cur += ch
    return [n for n in names if n != "self"]


def test_type_stub_matches_the_module():
    # python/nnkernels/_C.pyi (tools/gen-stub.sh) names every function, class and
    # method of the compiled module with the same parameters, and nothing else
    import ast
    import pathlib

    import nnkernels
    stub = pathlib.Path(nnkernels.__file__).with_name("_C.pyi")
    tree = ast.parse(stub.read_text())
    stub_funcs = {n.name: [a.arg for a in n.args.args] for n in tree.body if isinstance(n, ast.FunctionDef)}
    stub_classes = {n.name: {m.name: [a.arg for a in m.args.args if a.arg != "self"]
                             for m in n.body if isinstance(m, ast.FunctionDef)}
                    for n in tree.body if isinstance(n, ast.ClassDef)}
    public = {k: v for k, v in vars(_C).items() if not k.startswith("_")}
    funcs = {k: v for k, v in public.items() if callable(v) and not isinstance(v, type)}
    classes = {k: v for k, v in public.items() if isinstance(v, type)}
    assert set(stub_funcs) == set(funcs)
    assert set(stub_classes) == set(classes)
    for name, fn in funcs.items():
        assert stub_funcs[name] == _doc_params(fn), name
    for cname, cls in classes.items():
        for mname, params in stub_classes[cname].items():
            if mname.startswith("__") and mname != "__init__":
                continue
            member = getattr(cls, mname)
            if isinstance(member, property):
                continue
            assert params == _doc_params(member), f"{cname}.{mname}"
