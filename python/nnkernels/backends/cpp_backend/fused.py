"""fused family, C++ backend: nnkernels._C.MlpStep does the whole step in one
call with the GIL released (csrc/kernels/fused/mlp_step.cpp)."""

from __future__ import annotations

from dataclasses import fields

from ..._native import _C
from ..interface.fused import OptimConfig

__all__ = ["mlp_step_plan"]

_FIELDS = tuple(f.name for f in fields(OptimConfig))


class CppMlpStep:
    def __init__(self, spec) -> None:
        self.spec = spec
        self._c = _C.MlpStep(spec.params, spec.grads, list(spec.state), list(spec.dims),
                             list(spec.activations), [float(a) for a in spec.act_params],
                             list(spec.w_off), list(spec.b_off), spec.loss, spec.optimizer)
        self.set_optimizer(spec.config)
        # bound methods: no Python frame between the caller and the extension
        self.step = self._c.step
        self.epoch = self._c.epoch
        self.forward = self._c.forward

    def set_optimizer(self, config) -> None:
        self.config = config
        # the fields by name, not dataclasses.asdict (a deep copy: ~50 us per call)
        self._c.set_optimizer(0.0, **{f: getattr(config, f) for f in _FIELDS})

    @property
    def workspace_bytes(self) -> int:
        return self._c.workspace_bytes

    @property
    def workspace_allocations(self) -> int:
        return self._c.workspace_allocations


def mlp_step_plan(spec):
    return CppMlpStep(spec)
