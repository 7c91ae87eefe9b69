"""Subcommands of the ``nnkernels`` command (see nnkernels.cli)."""
