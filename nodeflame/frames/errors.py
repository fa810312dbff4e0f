"""The project's own errors.  Readers raise these, never bare KeyError/IndexError."""
from __future__ import annotations


class NodeflameError(Exception):
    """Base class of every error nodeflame raises on purpose."""


class FormatError(NodeflameError, ValueError):
    """Input that is not what its format requires.

    Carries the file, the position (line number, byte offset or JSON path) and
    what was expected, and prints them as one line:
    ``app.folded:12: expected 'stack count', got 'a;b;c'``.
    """

    def __init__(self, what: str, *, source: str | None = None,
                 line: int | None = None, position: str | None = None,
                 expected: str | None = None):
        self.what = what
        self.source = source
        self.line = line
        self.position = position
        self.expected = expected
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.source or "<input>"
        if self.line is not None:
            where += f":{self.line}"
        if self.position:
            where += f" ({self.position})"
        msg = f"{where}: {self.what}"
        if self.expected:
            msg += f"; expected {self.expected}"
        return msg

    def with_source(self, source: str) -> "FormatError":
        """The same error naming ``source`` when it named no file (raised deep in a reader)."""
        if self.source is None and source is not None:
            self.source = source
            self.args = (self._render(),)
        return self


class LimitError(FormatError):
    """Input refused because reading it would exceed a resource limit (decompressed
    size, compression ratio, array size); the message names the limit and how to raise it."""


class InvariantError(NodeflameError, AssertionError):
    """A Profile that breaks one of the model's invariants (see Profile.validate)."""


class TransformError(NodeflameError, ValueError):
    """A transform that cannot be parsed or applied."""


class FormatWarning(UserWarning):
    """Input that loaded, but with parts set aside (bad lines, repaired events)."""
