"""Transforms: functions from Profile to a new Profile, with a stable string form.

Each transform is written ``name=argument`` (``merge-recursion`` takes none),
so a list of them can be saved, printed and replayed::

    p2 = p.apply(["focus=^handle", "hide=^node:internal", "merge-recursion"])
    p2.meta["transforms"]   # ['focus=^handle', 'hide=^node:internal', 'merge-recursion']

Patterns are Python regular expressions searched in a function's display
name, ``name file:line`` (so ``node_modules/express`` or ``:42$`` work too).

The examples below are doctests (the test suite runs them); each transform's
example starts from this profile ``p``:

>>> import nodeflame as nf
>>> p = nf.read(b"main;work;parse 3\\nmain;work;gc 1\\nmain;idle 2\\n", format="folded")
>>> print(p.text())
Total samples: 6
6 main
  4 work
    3 parse
    1 gc
  2 idle
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .ops import replace_stacks, with_meta
from .errors import TransformError
from .stacktable import restack

NAMES = ("focus", "ignore", "hide", "merge-recursion", "slice", "thread")


@dataclass(frozen=True)
class Transform:
    name: str
    arg: str = ""

    def __str__(self) -> str:
        return self.name if self.name == "merge-recursion" else f"{self.name}={self.arg}"

    @classmethod
    def parse(cls, spec) -> "Transform":
        if isinstance(spec, Transform):
            return spec
        if isinstance(spec, tuple) and len(spec) == 2:
            name, arg = spec
        elif isinstance(spec, str):
            name, _, arg = spec.partition("=")
        else:
            raise TransformError(f"cannot read {spec!r} as a transform; expected 'name=argument'")
        name = name.strip()
        if name not in NAMES:
            raise TransformError(f"unknown transform {name!r}; expected one of {', '.join(NAMES)}")
        t = cls(name, str(arg))
        if name in ("focus", "ignore", "hide", "thread"):
            try:
                re.compile(t.arg)
            except re.error as e:
                raise TransformError(f"{t}: invalid regular expression: {e}") from None
        if name == "slice":
            _parse_slice(t.arg)
        return t

    def __call__(self, p):
        return _APPLY[self.name](p, self.arg)


def parse_list(specs) -> list[Transform]:
    if isinstance(specs, (str, tuple, Transform)):
        specs = [specs]
    try:
        items = list(specs)
    except TypeError:
        raise TransformError(f"cannot read {specs!r} as a transform; expected 'name=argument' or a list of them") from None
    return [Transform.parse(s) for s in items]


def apply(p, specs):
    """Apply transforms in order; the result's ``meta['transforms']`` records them."""
    out = p
    for t in parse_list(specs):
        done = list(out.meta.get("transforms", []))
        out = with_meta(t(out), transforms=done + [str(t)])
    return out


# ---------------------------------------------------------------- helpers

def _matching_funcs(p, pattern: str) -> np.ndarray:
    rx = re.compile(pattern)
    labels = p.func_labels()
    return np.fromiter((rx.search(s) is not None for s in labels), bool, len(labels))


def _stacks_containing(p, func_mask: np.ndarray) -> np.ndarray:
    """Per stack: does the path from the root to it contain a matching function?"""
    from .ops import stacks_containing
    return stacks_containing(p, func_mask)


def _filter_samples(p, mask, label):
    from .ops import select_samples
    return select_samples(p, mask)


# ---------------------------------------------------------------- transforms

def focus(p, pattern: str):
    """Keep only samples whose stack contains a function matching ``pattern``.

    >>> print(p.focus("parse").text())
    Total samples: 3
    3 main
      3 work
        3 parse
    """
    keep = _stacks_containing(p, _matching_funcs(p, pattern))
    return _filter_samples(p, keep[p.samples["stack"].to_numpy()], "focus")


def ignore(p, pattern: str):
    """Drop samples whose stack contains a function matching ``pattern``.

    >>> print(p.ignore("work").text())
    Total samples: 2
    2 main
      2 idle
    """
    drop = _stacks_containing(p, _matching_funcs(p, pattern))
    return _filter_samples(p, ~drop[p.samples["stack"].to_numpy()], "ignore")


def hide(p, pattern: str):
    """Remove frames of functions matching ``pattern`` from every stack; their
    callees move up to the caller and stacks that become equal merge.  A sample
    left with no frame at all is dropped.

    >>> print(p.hide("^work$").text())
    Total samples: 6
    6 main
      3 parse
      2 idle
      1 gc
    """
    fm = _matching_funcs(p, pattern)
    a = p._arrays()
    frame_map = np.where(fm[a["frame_func"]], -1, np.arange(len(a["frame_func"])))
    pr, fr, de, o2n = restack(a["prefix"], a["frame"], a["depth"], frame_map)
    return replace_stacks(p, pr, fr, de, o2n)


def merge_recursion(p, _arg: str = ""):
    """Collapse direct recursion: a frame whose function is its caller's merges into the caller.

    >>> r = nf.read(b"main;fib;fib;fib 2\\nmain;fib 1\\n", format="folded")
    >>> print(r.merge_recursion().text())
    Total samples: 3
    3 main
      3 fib
    """
    a = p._arrays()
    pr, fr, de, o2n = restack(a["prefix"], a["frame"], a["depth"], np.arange(len(a["frame_func"])),
                              collapse_same=a["frame_func"])
    return replace_stacks(p, pr, fr, de, o2n)


def _parse_slice(arg: str):
    start, sep, end = arg.partition(":")
    if not sep:
        raise TransformError(f"slice={arg}: expected 'START:END' in nanoseconds (either may be empty)")
    try:
        s = int(start) if start.strip() else None
        e = int(end) if end.strip() else None
    except ValueError:
        raise TransformError(f"slice={arg}: START and END must be integers (nanoseconds)") from None
    return s, e


def time_slice(p, arg: str):
    """Keep samples with ``START <= time_ns < END`` (``slice=START:END``, either end open).

    Needs a timed profile (``meta['timed']``); folded and raw files carry no times.
    """
    if not p.meta.get("timed"):
        raise TransformError("slice: this profile has no sample times (folded/raw input); nothing to slice by")
    s, e = _parse_slice(arg)
    t = p.samples["time_ns"].to_numpy()
    keep = np.ones(len(t), bool)
    if s is not None:
        keep &= t >= s
    if e is not None:
        keep &= t < e
    return _filter_samples(p, keep, "slice")


def thread(p, pattern: str):
    """Keep samples of threads whose name matches ``pattern``."""
    rx = re.compile(pattern)
    cats = p.samples["thread"].cat.categories
    ok = np.fromiter((rx.search(str(c)) is not None for c in cats), bool, len(cats))
    codes = p.samples["thread"].cat.codes.to_numpy()
    return _filter_samples(p, ok[codes] & (codes >= 0), "thread")


_APPLY = {"focus": focus, "ignore": ignore, "hide": hide, "merge-recursion": merge_recursion,
          "slice": time_slice, "thread": thread}
