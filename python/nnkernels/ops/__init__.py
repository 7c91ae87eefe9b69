"""Public kernels. Each op validates its inputs, allocates its outputs and
calls the chosen backend (``backend=`` overrides the global choice).
One module per family: gemm, activations, losses, optim."""

from .gemm import *  # noqa: F401,F403
from .gemm import __all__ as _gemm_all
from .activations import *  # noqa: F401,F403
from .activations import __all__ as _act_all
from .losses import *  # noqa: F401,F403
from .losses import __all__ as _loss_all
from .optim import *  # noqa: F401,F403
from .optim import __all__ as _optim_all

__all__ = [*_gemm_all, *_act_all, *_loss_all, *_optim_all]
