"""Live capture of node processes: ``capture(pid, duration)``, ``run(cmd)``, ``backends()``.

The backend interface and registry are in :mod:`nodeflame.capture.base`.
"""
from .base import (AUTO_ORDER, Backend, BackendUnavailable, CaptureError, CaptureOptions, Session, Target,
                   TargetError, TargetExited, get_backend, register_backend)

__all__ = ["AUTO_ORDER", "Backend", "BackendUnavailable", "CaptureError", "CaptureOptions", "Session",
           "Target", "TargetError", "TargetExited", "get_backend", "register_backend"]
