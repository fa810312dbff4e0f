"""The profile model: tables, readers, call trees, transforms, flame layout.

Imports only the standard library, numpy and pandas; ``Profile`` and ``Transform`` (and with them
numpy and pandas) load on first access, so that the errors and the format registry stay cheap.
"""
from .errors import FormatError, FormatWarning, InvariantError, NodeflameError, TransformError
from .formats import read, sniff

__all__ = ["Profile", "read", "sniff", "Transform", "NodeflameError", "FormatError", "FormatWarning",
           "InvariantError", "TransformError"]


def __getattr__(name):
    if name == "Profile":
        from .profile import Profile
        return Profile
    if name == "Transform":
        from .transforms import Transform
        return Transform
    raise AttributeError(f"module 'nodeflame.frames' has no attribute {name!r}")
