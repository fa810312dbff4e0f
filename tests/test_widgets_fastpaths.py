"""The explorer's fast paths give exactly what the reference implementations give.

* ``widgets.fastviews`` (recursion-once function totals from an Euler tour) against ``frames.views``,
  and the flame layout (``frames.views.flame_layout``, from the drawn nodes only, over the stack
  table where it is the call tree) against the level-by-level layout over every node it replaced
  (``reference_flame_layout`` below);
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
from nodeflame.frames.stacktable import restack

pytest.importorskip("plotly", reason="plotly (nodeflame[notebook]) is not installed")
from nodeflame.widgets import fastviews as F  # noqa: E402
from nodeflame.widgets import model as M  # noqa: E402

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


# ---------------------------------------------------------------- the reference layout
from nodeflame.frames.stacktable import level_segments  # noqa: E402

_I64 = np.int64


def reference_flame_layout(p, *, minwidth: float = 0.0, inverted: bool = False, tree=None):
    """``frames.views.flame_layout`` as it was before the widgets' fast layout replaced it there: the
    same rows, from every depth level walked over every node of the call tree."""
    return V.layout_frame(p, reference_flame_layout_arrays(p, minwidth=minwidth, inverted=inverted, tree=tree))


def reference_flame_layout_arrays(p, *, minwidth: float = 0.0, inverted: bool = False, tree=None):
    """:func:`flame_layout`'s columns but ``label`` and ``kind``, as numpy arrays (None when nothing is
    drawn); ``tree``: a call_tree DataFrame or a dict of its columns (default: ``p``'s)."""
    t = tree if tree is not None else V._tree_arrays(p, inverted=inverted)
    parent = np.asarray(t["parent"])
    depth = np.asarray(t["depth"]).astype(_I64)
    total = np.asarray(t["total"])
    selfw = np.asarray(t["self"])
    func = np.asarray(t["func"])
    whole = float(total[depth == 0].sum()) if len(parent) else 0.0
    thr = minwidth * whole
    labels = p.func_labels()
    # alphabetical rank of each function's label, computed once
    order = np.argsort(labels.astype(str), kind="stable") if len(labels) else np.empty(0, _I64)
    rank = np.empty(len(labels), _I64)
    rank[order] = np.arange(len(labels))

    lay_of_node = np.full(len(parent), -1, _I64)
    cols = {k: [] for k in ("parent", "depth", "x0", "total", "self", "func", "other")}
    count = 0
    x0_arr = np.zeros(2 * len(parent) + 1, np.float64)  # by layout id; at most one 'other' per node
    for d, idx in level_segments(depth):
        par = parent[idx]
        if d == 0:
            play = np.full(len(idx), -1, _I64)
        else:
            play = lay_of_node[par]
            vis = play >= 0
            idx, play = idx[vis], play[vis]
        if len(idx) == 0:
            break
        big = total[idx] >= thr if thr > 0 else np.ones(len(idx), bool)
        b_idx, b_play = idx[big], play[big]
        # "other" per parent for the small ones
        s_play = play[~big]
        if len(s_play):
            o_par, o_inv = np.unique(s_play, return_inverse=True)
            o_tot = np.bincount(o_inv, weights=total[idx[~big]]).astype(_I64)
            o_self = np.bincount(o_inv, weights=selfw[idx[~big]]).astype(_I64)
            o_cnt = np.bincount(o_inv).astype(_I64)
        else:
            o_par = np.empty(0, _I64)
            o_tot = o_self = o_cnt = np.empty(0, _I64)
        e_par = np.concatenate([b_play, o_par])
        e_tot = np.concatenate([total[b_idx], o_tot]).astype(_I64)
        e_self = np.concatenate([selfw[b_idx], o_self]).astype(_I64)
        e_func = np.concatenate([func[b_idx], np.full(len(o_par), -1, _I64)])
        e_other = np.concatenate([np.zeros(len(b_idx), _I64), o_cnt])
        e_node = np.concatenate([b_idx, np.full(len(o_par), -1, _I64)])
        e_rank = np.where(e_func >= 0, rank[np.maximum(e_func, 0)], len(labels))
        srt = np.lexsort((e_rank, e_par))
        e_par, e_tot, e_self, e_func, e_other, e_node = (x[srt] for x in (e_par, e_tot, e_self, e_func, e_other, e_node))
        cs = np.cumsum(e_tot)
        excl = cs - e_tot
        new_group = np.ones(len(e_par), bool)
        new_group[1:] = e_par[1:] != e_par[:-1]
        gstart = np.maximum.accumulate(np.where(new_group, np.arange(len(e_par)), 0))
        within = excl - excl[gstart]
        base = np.where(e_par >= 0, x0_arr[np.maximum(e_par, 0)], 0.0)
        x0 = base + within
        ids = np.arange(count, count + len(e_par))
        has = e_node >= 0
        lay_of_node[e_node[has]] = ids[has]
        count += len(e_par)
        x0_arr[ids] = x0
        for k, v in (("parent", e_par), ("depth", np.full(len(e_par), d, _I64)), ("total", e_tot),
                     ("self", e_self), ("func", e_func), ("other", e_other)):
            cols[k].append(v)
        cols["x0"].append(x0)
    if count == 0:
        return None
    out = {k: np.concatenate(v) for k, v in cols.items()}
    out["x0"] = out["x0"].astype(np.float64)
    out["x1"] = (out["x0"] + out["total"]).astype(np.float64)
    out["depth"] = out["depth"].astype(np.int32)
    return out



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
        for minwidth in (None, 0.0, 0.01, 0.2):
            for max_nodes in (6, 40, 10_000):
                got, mw = M.auto_layout(p, inverted=inverted, minwidth=minwidth, max_nodes=max_nodes)
                want, want_mw = reference_auto_layout(p, inverted, minwidth, max_nodes)
                assert mw == want_mw and got.equals(want), (inverted, minwidth, max_nodes)
        tree = V.call_tree(p, inverted=inverted)
        for mw in (0.0, 1e-4, 0.003, 0.05, 0.3, 1.0):
            a = reference_flame_layout(p, minwidth=mw, tree=tree)
            for b in (V.flame_layout(p, minwidth=mw, tree=tree), F.flame_layout(p, minwidth=mw, tree=tree),
                      V.flame_layout(p, minwidth=mw, inverted=inverted)):   # the default tree: the stack table
                assert a.equals(b) and list(a.dtypes) == list(b.dtypes), (inverted, mw)


def reference_auto_layout(p, inverted, minwidth, max_nodes):
    """``model.auto_layout`` as it was: the whole call tree of frames.views."""
    tree = V.call_tree(p, inverted=inverted)
    mw = M.AUTO_MINWIDTH if minwidth is None else float(minwidth)
    tot = tree["total"].to_numpy()
    whole = float(tot[tree["depth"].to_numpy() == 0].sum()) if len(tot) else 0.0
    k = max(int(max_nodes) // 2, 1)
    if len(tot) > k and whole > 0:
        kth = np.partition(tot, len(tot) - k)[len(tot) - k]
        mw = max(mw, (float(kth) + 1) / whole)
    return reference_flame_layout(p, minwidth=mw, tree=tree), mw


def reference_apply(p, specs, monkeypatch):
    """``p.apply(specs)`` with frames.ops doing the compaction, as before the transforms had their own."""
    def old_restack(p, frame, frame_map, collapse_same=None):
        a = p.arrays()
        return (*restack(a["prefix"], frame, a["depth"], frame_map, collapse_same=collapse_same), None, None)

    with monkeypatch.context() as m:
        m.setattr(T, "_filter_samples", lambda p, mask, _label: O.select_samples(p, mask))
        m.setattr(T, "_replace_stacks", lambda p, pr, fr, de, o2n, tour=None, rep=None: O.replace_stacks(p, pr, fr, de, o2n))
        m.setattr(T, "_stacks_containing", O.stacks_containing)
        m.setattr(T, "_restack", old_restack)
        return p.apply(specs)


def check_tour(p):
    """The tour the transforms keep for ``p``'s table (if any) is a pre-order of it: every subtree
    one run starting at its root, sizes those of the subtrees."""
    facts = T._facts(p)
    if "tour" not in facts:
        return
    tin, size = facts["tour"]
    prefix = p.arrays()["prefix"]
    n = len(prefix)
    assert sorted(tin.tolist()) == list(range(n))
    kids = np.bincount(prefix[prefix >= 0], weights=size[prefix >= 0], minlength=n)
    assert (size == 1 + kids).all()
    c = prefix >= 0
    par = prefix[c]
    assert ((tin[par] < tin[c]) & (tin[c] + size[c] <= tin[par] + size[par])).all()


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
        check_tour(got)


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


def old_aggregate(src):
    """The explorer's aggregate as it was made before (np.unique over the sample rows)."""
    from nodeflame.frames.ops import with_samples
    s = src.samples
    codes = s["thread"].cat.codes.to_numpy().astype(np.int64)
    key = s["stack"].to_numpy().astype(np.int64) * (len(s["thread"].cat.categories) + 1) + codes
    uniq, inv = np.unique(key, return_inverse=True)
    w = np.bincount(inv, weights=s["weight"].to_numpy(), minlength=len(uniq)).astype(np.int64)
    first = np.full(len(uniq), len(s), np.int64)
    np.minimum.at(first, inv, np.arange(len(s)))
    agg = pd.DataFrame({"stack": s["stack"].to_numpy()[first], "time_ns": np.zeros(len(uniq), np.int64),
                        "weight": w, "thread": s["thread"].iloc[first].to_numpy(), "_row": np.arange(len(uniq))})
    agg["thread"] = pd.Categorical(agg["thread"], categories=s["thread"].cat.categories)
    return with_samples(src, agg, timed=False, aggregated_from_rows=len(s)), inv


@pytest.mark.parametrize("validated", [True, False])
def test_explorer_aggregates_equal_the_sliced_profiles_aggregates(validated):
    """The explorer's aggregate of a long timed profile, and of each time slice (made from the whole
    aggregate now), are the Profiles aggregating ``base`` and ``base.apply([slice])`` gave."""
    from nodeflame.widgets.state import ExplorerState
    p = PROFILES[0]
    rng = np.random.default_rng(7)
    n = 4000
    stacks = rng.choice(np.flatnonzero(p.stack_weights() >= 0), n)
    threads = pd.Categorical(rng.choice(["main", "worker-1", "worker-2"], n))
    samples = pd.DataFrame({"stack": stacks, "time_ns": np.sort(rng.integers(0, 10**9, n)) + 10**9,
                            "weight": rng.integers(0, 3, n), "thread": threads})
    base = nf.Profile(p.funcs, p.frames, p.stacks, samples, dict(p.meta, timed=True), validate=validated)
    st = ExplorerState(base, aggregate=True)
    ref, inv = old_aggregate(base if validated else base.copy().validate())
    got = st._agg_for("")
    same_profile(ref, got)
    assert (st._agg_entry("")[1] == inv).all()
    t0, t1 = int(samples["time_ns"].min()), int(samples["time_ns"].max())
    for a, b in ((t0, t1), (t0 + 10**8, t0 + 4 * 10**8), (None, t0 + 10**8), (t1 - 10**8, None), (t1 + 1, None)):
        sl = f"slice={'' if a is None else a}:{'' if b is None else b}"
        try:
            want = old_aggregate(base.apply([sl]))[0]
        except Exception as e:  # noqa: BLE001 - an empty slice fails alike
            with pytest.raises(type(e)):
                st._agg_for(sl)
            continue
        same_profile(want, st._agg_for(sl))
        check_tour(st._agg_for(sl))


@pytest.mark.parametrize("i", range(0, len(PROFILES), 3))
def test_recursion_flags_follow_the_transforms(i):
    """The recursion flags a transform's result takes from its input (``transforms.path_fact``) are
    those computed afresh on it; and the function totals from them are ``views``'s."""
    p = PROFILES[i]
    F.func_self_total(p)    # the flags of p's table, computed
    for specs in SPECS:
        try:
            q = p.apply(specs)
        except Exception:  # noqa: BLE001 - an empty result
            continue
        if not len(q.stacks):
            continue
        got = F.func_self_total(q)
        fresh = q.copy().validate()
        want = F.recursive_in_tour(T.stack_tour(fresh), fresh.arrays()["stack_func"], len(fresh.funcs))
        assert (T.path_fact(q, "recursive", lambda: None) == want).all(), specs
        for a, b in zip(got, V.func_self_total(q)):
            assert (a == b).all(), specs
