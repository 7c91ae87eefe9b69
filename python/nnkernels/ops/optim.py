"""optim ops (added by the issue that implements them)."""

from __future__ import annotations

__all__: list[str] = []
