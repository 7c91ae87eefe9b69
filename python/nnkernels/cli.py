"""The ``nnkernels`` command. Each subcommand lives in its own module, which
provides ``add_arguments(parser)`` and ``run(args) -> int``; this file only
dispatches. Errors a user can fix end with one line on stderr and exit code 2,
never a traceback."""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "train": ("nnkernels.commands.train", "train an MLP on a dataset"),
    "evaluate": ("nnkernels.commands.evaluate", "evaluate a saved model on a dataset"),
    "predict": ("nnkernels.commands.predict", "predict with a saved model on a .npy file"),
    "bench": ("nnkernels.bench.cli", "benchmark report: kernels and training vs peers"),
    "info": ("nnkernels.commands.info", "print the CPU, ISA variant, threads and backends"),
}


class UsageError(Exception):
    """A bad argument or input the user can fix: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnkernels", description="Fast CPU training of neural networks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise
            continue  # subcommand not available in this build
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UsageError as exc:
        print(f"nnkernels {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nnkernels {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
