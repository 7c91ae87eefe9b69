"""The ``"numba"`` backend: one module per kernel family, each listing its kernels in __all__."""
