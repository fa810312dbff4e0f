"""The diff explorer: both profiles' merged shape, coloured by change.

The state is :class:`nodeflame.widgets.state.DiffState`: the drawn shape is
:func:`model.diff_shape` (every stack of either profile, as wide as the larger
of its after weight and its normalised before weight, so work that vanished is
drawn too); red slower, blue faster (by each function's normalised change of
self work, in points), grey when the change is within sampling noise
(``Diff.significant``: Benjamini–Hochberg over the rows).  The explorer's
transforms apply to both sides and the diff is taken again, so ``focus=...``
compares like with like; a time slice applies to the after profile only (the
two captures have different clocks).
"""
from __future__ import annotations

from .explorer import Explorer, _state_attr
from .state import DiffState


class DiffExplorer(Explorer):
    """Explorer of a :class:`nodeflame.Diff`; ``diff`` is the diff of the transformed sides."""

    _state_class = DiffState

    source_diff = _state_attr("source_diff", "the diff the explorer was opened on")
    diff = _state_attr("diff", "the diff of the two profiles as transformed now")

    def diff_for(self, key):
        return self.state.diff_for(tuple(key))

    def diff_table(self, n: int = 12):
        return self.state.diff_table(n)

    def __repr__(self):
        return f"<nodeflame DiffExplorer: {self.code}>"
