"""``python -m nnkernels ...`` is the ``nnkernels`` command."""

import sys

from .cli import main

sys.exit(main())
