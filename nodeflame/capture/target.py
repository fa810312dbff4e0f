"""What a capture is about and how it fails: the target process (:class:`Target`) and the capture
errors.  Its own module so that process helpers (:mod:`.procutil`) can make and report targets
without importing the backend interface (:mod:`.base`, which re-exports all of this)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..frames.errors import NodeflameError


# ----------------------------------------------------------------------- errors
class CaptureError(NodeflameError):
    """A capture that cannot start or cannot finish; the message says how to fix it."""


class BackendUnavailable(CaptureError):
    """The requested backend cannot run here (its ``available()`` reason is the message)."""


class TargetError(CaptureError):
    """The target is not something we can profile: no such pid, not node, no permission."""


class TargetExited(CaptureError):
    """The target process exited during the capture and nothing could be kept."""


# ----------------------------------------------------------------------- data
@dataclass
class Target:
    """What is known about the process being profiled (filled by ``procutil.describe``)."""
    pid: int
    exe: str = ""                # /proc/<pid>/exe target ('' when unreadable)
    argv: list = field(default_factory=list)   # /proc/<pid>/cmdline
    node_version: str | None = None  # 'v20.20.2' when known
    uid: int | None = None       # real uid of the process
    is_node: bool | None = None  # None = could not tell
    node_options: list = field(default_factory=list)  # node/V8 flags (argv before the script + NODE_OPTIONS)
    proc: Any = None             # the subprocess.Popen when nodeflame started it (run())

    @property
    def command(self) -> str:
        import shlex
        return " ".join(shlex.quote(a) for a in self.argv)
