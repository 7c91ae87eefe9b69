"""``nnkernels info``: what the native kernels see on this machine."""

from __future__ import annotations

import json
import platform


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    import nnkernels

    info = {"nnkernels": nnkernels.__version__, "python": platform.python_version(),
            "machine": platform.machine(), **nnkernels.cpu_info(),
            "backends": nnkernels.available_backends(), "backend": nnkernels.get_backend()}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k:>16}: {v}")
    return 0
