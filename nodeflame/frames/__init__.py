"""The profile model: tables, readers, call trees, transforms, flame layout.

Imports only the standard library, numpy and pandas.
"""
from .errors import FormatError, FormatWarning, InvariantError, NodeflameError, TransformError
from .formats import read, sniff
from .profile import Profile
from .transforms import Transform

__all__ = ["Profile", "read", "sniff", "Transform", "NodeflameError", "FormatError", "FormatWarning",
           "InvariantError", "TransformError"]
