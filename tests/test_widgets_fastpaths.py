"""The explorer's fast paths give exactly what the reference implementations give.

* ``widgets.fastviews`` (recursion-once function totals from an Euler tour, the flame layout from
  the drawn nodes only) against ``frames.views``;
* the transforms' own compaction (``transforms._filter_samples``, ``_replace_stacks``: no second
  validation of a table valid by construction) against ``frames.ops.select_samples`` /
  ``replace_stacks``, table by table, dtypes and categories included.

On generated profiles with much recursion and merging (few functions, random paths) and on the
real inspector captures of the diff demo (line ticks included).
"""
import glob
import pathlib

import numpy as np
import pandas as pd
import pytest

import nodeflame as nf
from nodeflame.frames import ops as O
from nodeflame.frames import transforms as T
from nodeflame.frames import views as V
from nodeflame.frames.build import FrameTable, build_profile

pytest.importorskip("plotly", reason="plotly (nodeflame[notebook]) is not installed")
from nodeflame.widgets import fastviews as F  # noqa: E402

DEMO = pathlib.Path(__file__).parent / "data" / "diff_demo"


def random_profile(seed, nfun=5, nstack=300, maxd=12, threads=("main",)):
    """Random paths over a few functions (so: deep recursion, equal paths after hide/merge)."""
    rng = np.random.default_rng(seed)
    ft = FrameTable()
    ids = [ft.add(f"f{i}", f"/app/node_modules/p{i % 3}/x.js" if i % 2 else f"/app/{i % 3}.js", i + 1)
           for i in range(nfun)]
    offs, flat = [0], []
    for _ in range(nstack):
        flat.extend(rng.choice(ids, int(rng.integers(1, maxd))).tolist())
        offs.append(len(flat))
    return build_profile(ft, np.asarray(offs), np.asarray(flat), weights=rng.integers(0, 5, nstack),
                         threads=np.asarray([threads[i % len(threads)] for i in range(nstack)], object)).validate()


def profiles():
    out = [random_profile(s, nfun=2 + s % 7, nstack=20 + 40 * s, maxd=3 + s % 15,
                          threads=("main", "worker") if s % 3 == 0 else ("main",)) for s in range(24)]
    out += [nf.read(str(f)) for f in sorted(glob.glob(str(DEMO / "*.cpuprofile")))[:3]]
    return [p for p in out if p.total > 0]


PROFILES = profiles()


@pytest.mark.parametrize("i", range(len(PROFILES)))
def test_fastviews_equal_views(i):
    p = PROFILES[i]
    t = V.call_tree(p)
    par, fu, de = t["parent"].to_numpy(), t["func"].to_numpy(), t["depth"].to_numpy()
    assert (F.recursive_nodes(par, fu, de, len(p.funcs)) == V.recursive_nodes(par, fu)).all()
    for a, b in zip(F.func_self_total(p), V.func_self_total(p)):
        assert (a == b).all()
    for by in ("self", "total"):
        assert F.top(p, None, by=by).equals(V.top(p, None, by=by))
    for inverted in (False, True):
        tree = V.call_tree(p, inverted=inverted)
        for mw in (0.0, 1e-4, 0.003, 0.05, 0.3, 1.0):
            a = V.flame_layout(p, minwidth=mw, tree=tree)
            b = F.flame_layout(p, minwidth=mw, tree=tree)
            assert a.equals(b) and list(a.dtypes) == list(b.dtypes), (inverted, mw)


def reference_apply(p, specs, monkeypatch):
    """``p.apply(specs)`` with frames.ops doing the compaction, as before the transforms had their own."""
    with monkeypatch.context() as m:
        m.setattr(T, "_filter_samples", lambda p, mask, _label: O.select_samples(p, mask))
        m.setattr(T, "_replace_stacks", lambda p, *a: O.replace_stacks(p, *a))
        m.setattr(T, "_stacks_containing", O.stacks_containing)
        return p.apply(specs)


def same_profile(a, b):
    for name in ("funcs", "frames", "stacks", "samples", "lines"):
        x, y = getattr(a, name), getattr(b, name)
        assert list(x.columns) == list(y.columns) and list(x.dtypes) == list(y.dtypes), name
        assert x.equals(y), name
        for c in x.columns:
            if isinstance(x[c].dtype, pd.CategoricalDtype):
                assert list(x[c].cat.categories) == list(y[c].cat.categories), (name, c)
    assert a.meta == b.meta
    assert a.__dict__.get("_frozen") and b.__dict__.get("_frozen")


SPECS = [["ignore=f1"], ["focus=f2"], ["hide=f0"], ["hide=^f[13]"], ["merge-recursion"],
         ["hide=f2", "merge-recursion", "ignore=f4"], ["thread=main"], ["focus=f3", "merge-recursion"],
         ["collapse-package"], ["merge-recursion", "focus=.", "hide=f1"], ["hide=."],
         ["hide=(anonymous)", "merge-recursion"], ["focus=^(?!x)x"]]


@pytest.mark.parametrize("i", range(len(PROFILES)))
def test_transforms_equal_ops_reference(i, monkeypatch):
    p = PROFILES[i]
    for specs in SPECS:
        try:
            ref = reference_apply(p, specs, monkeypatch)
        except Exception as e:  # noqa: BLE001 - the same error either way
            with pytest.raises(type(e)):
                p.apply(specs)
            continue
        got = p.apply(specs)
        same_profile(ref, got)
        got.copy().validate()   # valid, though not validated again


def test_transforms_on_timed_profile_with_lines(monkeypatch):
    p = nf.read(str(DEMO / "slow0.cpuprofile"))
    assert len(p.lines) and p.meta.get("timed")
    t0 = int(p.samples["time_ns"].min())
    t1 = int(p.samples["time_ns"].max())
    mid = (t0 + t1) // 2
    for specs in ([f"slice={t0}:{mid}"], [f"slice={mid}:", "merge-recursion"], ["hide=^node:", "ignore=gc"]):
        same_profile(reference_apply(p, specs, monkeypatch), p.apply(specs))


def test_unvalidated_input_is_validated(monkeypatch):
    p = PROFILES[3]
    raw = nf.Profile(p.funcs, p.frames, p.stacks, p.samples, p.meta, p.lines, validate=False)
    assert not raw.__dict__.get("_frozen")
    q = raw.apply(["ignore=f1"])
    assert q.__dict__.get("_frozen")   # validated, not assumed
    same_profile(reference_apply(p, ["ignore=f1"], monkeypatch), q)
