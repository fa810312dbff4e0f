"""The Profile model: invariants, views, transforms."""
import doctest
import pickle
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

import nodeflame as nf
from nodeflame.frames import ops, transforms as tr_mod
from nodeflame.frames.errors import InvariantError, TransformError
from nodeflame.frames.profile import Profile
from nodeflame.frames.views import flame_layout

FOLDED = b"main;work;parse 3\nmain;work;gc 1\nmain;idle 2\n"


def folded(text: str):
    return nf.read(text.encode(), format="folded")


def folded_text(p, **kw):
    return nf.frames.formats.render(p, "folded", **kw)


# ------------------------------------------------------------------ invariants

def test_tables_have_documented_columns_and_dtypes():
    p = folded(FOLDED.decode())
    assert list(p.funcs.columns) == ["name", "file", "line", "column", "kind", "package"]
    assert list(p.frames.columns) == ["func", "line", "column", "tier", "label"]
    assert list(p.stacks.columns) == ["prefix", "frame", "depth"]
    assert list(p.samples.columns) == ["stack", "time_ns", "weight", "thread"]
    for df, col in ((p.funcs, "name"), (p.funcs, "file"), (p.funcs, "kind"), (p.samples, "thread")):
        assert isinstance(df[col].dtype, pd.CategoricalDtype)
    assert (p.stacks["prefix"].to_numpy() < np.arange(len(p.stacks))).all()


def _unchecked(p):
    """A copy of ``p`` built with ``validate=False``: the documented way to make a Profile to break
    (its tables may be replaced or edited until validate() is called)."""
    return Profile(p.funcs, p.frames, p.stacks, p.samples, p.meta, p.lines, validate=False)


def _broken(mutate):
    p = _unchecked(folded(FOLDED.decode()))
    mutate(p)
    return p


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.stacks.__setitem__("prefix", np.r_[-1, 2, 0, 1, 0][: len(p.stacks)]), "parents before children"),
    (lambda p: p.stacks.__setitem__("depth", p.stacks["depth"] + 1), "depth"),
    (lambda p: p.samples.__setitem__("stack", p.samples["stack"] + 100), "samples.stack"),
    (lambda p: p.samples.__setitem__("weight", -p.samples["weight"]), "weight negative"),
    (lambda p: p.frames.__setitem__("func", p.frames["func"] + 100), "frames.func"),
    (lambda p: p.funcs.__setitem__("line", p.funcs["line"] - 5), "funcs.line"),
    (lambda p: setattr(p, "stacks", pd.concat([p.stacks, p.stacks.iloc[[0]]], ignore_index=True)), "duplicate (prefix, frame)"),
    (lambda p: setattr(p, "samples", p.samples.set_axis(p.samples.index + 1)), "index"),
])
def test_validate_names_the_broken_invariant(mutate, message):
    p = _broken(mutate)
    with pytest.raises(InvariantError, match=message.replace("(", r"\(").replace(")", r"\)")):
        p.validate()


def _wide_profile(n_lines=40_000, seed=0):
    """A folded profile of ~100 k stacks (more than one of validate()'s chunks of 65536 rows)."""
    rng = np.random.default_rng(seed)
    lines = sorted({";".join(f"f{x}" for x in rng.integers(0, 400, rng.integers(1, 6))) for _ in range(n_lines)})
    return folded("".join(f"{ln} {i % 7 + 1}\n" for i, ln in enumerate(lines)))


@pytest.mark.parametrize("what", ["prefix", "depth", "duplicate"])
def test_validate_finds_a_broken_stack_past_its_first_chunk(what):
    """validate() looks at the stack table a chunk at a time: a row broken far past the first chunk is
    found, and each check names its own invariant as before."""
    p = _unchecked(_wide_profile())
    n = len(p.stacks)
    assert n > 70_000
    st = p.stacks.copy()
    row = n - 3
    if what == "prefix":
        st.loc[row, "prefix"] = row
        msg = "parents before children"
    elif what == "depth":
        st.loc[row, "depth"] = st.loc[row, "depth"] + 1
        msg = "depth"
    else:
        st = pd.concat([st, st.iloc[[row]]], ignore_index=True)
        msg = "duplicate (prefix, frame)"
    p.stacks = st
    with pytest.raises(InvariantError, match=re.escape(msg)):
        p.validate()


def test_validate_reports_the_first_broken_invariant_across_chunks():
    """A prefix past the first chunk that points forward is reported before a depth broken in the first
    chunk (the checks run in the same order as on the whole table at once)."""
    p = _unchecked(_wide_profile())
    st = p.stacks.copy()
    st.loc[5, "depth"] = st.loc[5, "depth"] + 1
    st.loc[len(st) - 1, "prefix"] = len(st) - 1
    p.stacks = st
    with pytest.raises(InvariantError, match="parents before children"):
        p.validate()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), max_size=6), min_size=1, max_size=30),
       st.sampled_from([1, 2, 3, 5, 1 << 16]), st.booleans())
def test_shared_prefix_lengths_match_a_plain_loop(paths, span, sort):
    """build_from_sorted_paths' shared-prefix lengths (compared a run of lines at a time, runs of any
    size) are what comparing each path with the one before it frame by frame gives."""
    from nodeflame.frames.build import _shared_with_previous
    if sort:
        paths = sorted(paths)
    nframes = np.array([len(x) for x in paths], np.int64)
    flat = np.array([f for x in paths for f in x], np.int64)
    want = [0]
    for a, b in zip(paths, paths[1:]):
        k = 0
        while k < min(len(a), len(b)) and a[k] == b[k]:
            k += 1
        want.append(k)
    got = _shared_with_previous(flat, nframes, np.cumsum(nframes) - nframes, span)
    assert got.tolist() == want


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from("abcd"), min_size=1, max_size=6), st.integers(1, 9)),
                min_size=1, max_size=30), st.booleans())
def test_sorted_paths_builder_gives_the_level_by_level_stacks(rows, sort):
    """The folded reader's builder (a tree of the paths' new frames, int32 tables made in place) gives
    the stacks and weights build_profile (interned a level at a time) gives, and a valid Profile."""
    from nodeflame.frames.build import FrameTable, build_from_sorted_paths, build_profile, frame_tables
    if sort:
        rows = sorted(rows)
    ft = FrameTable()
    ids = [[ft.add(x) for x in path] for path, _ in rows]
    nframes = np.array([len(x) for x in ids], np.int64)
    flat = np.array([f for x in ids for f in x], np.int64)
    counts = np.array([c for _, c in rows], np.int64)
    funcs, frames, fmap = frame_tables(ft)
    a = build_from_sorted_paths(funcs, frames, fmap[flat], nframes, counts)
    b = build_profile(ft, np.r_[0, np.cumsum(nframes)], flat, weights=counts)
    for q in (a, b):
        q.validate()
        assert q.arrays("stacks")["prefix"].dtype == np.int32

    def paths(q):
        st = q.arrays("stacks")
        out = {}
        for s, w in zip(q.arrays("samples")["stack"].tolist(), q.arrays("samples")["weight"].tolist()):
            path = []
            while s >= 0:
                path.append(int(st["frame"][s]))
                s = int(st["prefix"][s])
            out[tuple(path)] = out.get(tuple(path), 0) + w
        return out
    assert paths(a) == paths(b)
    assert len(a.stacks) == len(b.stacks)


def test_validate_checks_time_order_only_for_timed_profiles():
    p = _unchecked(folded(FOLDED.decode()))
    p.samples["time_ns"] = [30, 20, 10]
    p.validate()  # untimed: times carry no meaning
    p.meta["timed"] = True
    with pytest.raises(InvariantError, match="time_ns decreases"):
        p.validate()


@pytest.mark.parametrize("make", [
    lambda p: p,
    lambda p: p.copy(),
    lambda p: ops.with_meta(p, backend="x"),
    lambda p: ops.reweight(p, np.full(len(p.samples), 2)),
    lambda p: p.focus("work"),
    lambda p: _unchecked(p).validate(),
    lambda p: pickle.loads(pickle.dumps(p)),
], ids=["read", "copy", "with_meta", "reweight", "focus", "validate", "pickle"])
def test_a_validated_profile_is_immutable(make):
    q = make(folded(FOLDED.decode()))
    for name in ("funcs", "frames", "stacks", "samples", "lines", "meta", "_cache"):
        with pytest.raises(AttributeError, match=rf"cannot assign Profile\.{name}: .*nodeflame\.frames\.ops"):
            setattr(q, name, getattr(q, name))
        with pytest.raises(AttributeError, match="immutable"):
            delattr(q, name)
    q.flag = 1           # other attributes are the caller's business
    q.validate()


def test_unvalidated_profile_can_be_edited_until_validated():
    p = _unchecked(folded(FOLDED.decode()))
    p.samples = p.samples.iloc[:2].reset_index(drop=True)
    p.meta = dict(p.meta, backend="test")
    assert p.validate().total == 4 and p.meta["backend"] == "test"
    with pytest.raises(AttributeError, match="immutable"):
        p.samples = p.samples


def test_profiles_made_from_others_hold_tables_of_their_own():
    p = folded(FOLDED.decode())
    before = p.samples["weight"].tolist()
    q = ops.with_meta(p, backend="x")
    assert np.shares_memory(q.samples["stack"].to_numpy(), p.samples["stack"].to_numpy())  # data shared
    q.samples["weight"] = 7                          # an edit in place of q's table (not prevented) ...
    q.samples.loc[0, "stack"] = 0
    assert p.samples["weight"].tolist() == before    # ... never reaches p's
    assert p.validate().total == sum(before)
    a = p.arrays()
    assert not any(v.flags.writeable for v in a.values())
    assert not p.samples["weight"].to_numpy().flags.writeable   # pandas' copy-on-write views


# ------------------------------------------------------------------ views

def test_top_counts_recursion_once_per_sample():
    p = folded("main;fib;fib;fib 2\nmain;fib 1\nmain;other;fib 1\n")
    t = p.top(None).set_index("name")
    assert t.loc["fib", "total"] == 4          # not 2*3 + 1 + 1
    assert t.loc["fib", "self"] == 4
    assert t.loc["main", "total"] == 4
    assert t.loc["other", "total"] == 1
    assert t["self"].sum() == p.total
    assert t.loc["fib", "total_pct"] == pytest.approx(100.0)


def test_top_orders_and_limits():
    p = folded(FOLDED.decode())
    t = p.top(2)
    assert list(t["name"]) == ["parse", "idle"]
    assert list(p.top(1, by="total")["name"]) == ["main"]


def test_top_down_tree_merges_frames_of_one_function():
    # two frames of `work` (different lines) are one node of the function tree
    p = nf.read(b"main;work:1;leaf 2\nmain;work:2;leaf 3\n", format="folded")
    t = p.tree()
    assert t["total"].max() == 5
    assert len(t) == 5  # main, work:1, work:2 are distinct names in folded; each is its own function
    # function tree must equal totals of the stack tree at depth 0
    assert t.loc[t.depth == 0, "total"].sum() == p.total


def test_bottom_up_tree():
    p = folded(FOLDED.decode())
    t = p.tree(inverted=True)
    roots = t[t.depth == 0].set_index("name")["total"].to_dict()
    assert roots == {"parse": 3, "gc": 1, "idle": 2}
    work_under_parse = t[(t.depth == 1) & (t.name == "work")]
    assert sorted(work_under_parse["total"]) == [1, 3]
    assert t[t.depth == 0]["total"].sum() == p.total


def test_long_view_has_one_row_per_sample_and_depth():
    p = folded(FOLDED.decode())
    lv = p.long()
    assert len(lv) == 3 + 3 + 2
    first = lv[lv["sample"] == lv["sample"].iloc[0]]
    assert list(first["depth"]) == list(range(len(first)))
    assert (lv.groupby("sample")["name"].first() == "main").all()
    # pandas questions work directly: weight per function at any depth
    assert lv.groupby("name", observed=True)["weight"].sum()["work"] == 4


def test_flame_layout_nests_children_in_parents():
    p = folded(FOLDED.decode())
    lay = flame_layout(p)
    par = lay["parent"].to_numpy()
    ok = par >= 0
    assert (lay["x0"].to_numpy()[ok] >= lay["x0"].to_numpy()[par[ok]]).all()
    assert (lay["x1"].to_numpy()[ok] <= lay["x1"].to_numpy()[par[ok]]).all()
    kids = lay[lay.parent == 0]
    assert list(kids["label"]) == ["idle", "work"]  # alphabetical, like flamegraph.pl
    assert kids["x0"].iloc[1] == kids["x1"].iloc[0]


def test_flame_layout_merges_narrow_nodes_into_explicit_other():
    lines = ["main;big 1000"] + [f"main;small{i};leaf 1" for i in range(20)]
    p = folded("\n".join(lines))
    lay = flame_layout(p, minwidth=0.01)
    other = lay[lay["other"] > 0]
    assert len(other) == 1
    assert other["total"].iloc[0] == 20 and other["other"].iloc[0] == 20
    assert "other (20 frames)" == other["label"].iloc[0]
    assert not lay["label"].str.startswith("small").any()
    # nothing is lost: the root's children sum to the root
    assert lay[lay.parent == 0]["total"].sum() == 1020


# ------------------------------------------------------------------ transforms

def test_transform_docstrings_show_what_they_do():
    p = nf.read(FOLDED, format="folded")
    res = doctest.testmod(tr_mod, extraglobs={"nf": nf, "p": p}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted >= 6 and res.failed == 0


def test_transforms_have_a_stable_string_form_that_replays():
    p = folded(FOLDED.decode())
    q = p.apply(["focus=work", "hide=^gc$", "merge-recursion"])
    assert q.meta["transforms"] == ["focus=work", "hide=^gc$", "merge-recursion"]
    r = p.apply(q.meta["transforms"])
    assert folded_text(r) == folded_text(q)
    assert q.total == 4


@pytest.mark.parametrize("spec, msg", [("nope=1", "unknown transform"), ("focus=(", "invalid regular"),
                                       ("slice=abc", "START:END"), (42, "cannot read")])
def test_bad_transforms_are_user_errors(spec, msg):
    with pytest.raises(TransformError, match=msg):
        folded(FOLDED.decode()).apply(spec)


def test_slice_needs_times():
    with pytest.raises(TransformError, match="no sample times"):
        folded(FOLDED.decode()).slice(0, 10)


def test_slice_and_thread_on_a_timed_profile():
    from nodeflame.frames.build import FrameTable, build_profile
    ft = FrameTable()
    a, b = ft.add("a", "/x.js", 1), ft.add("b", "/x.js", 5)
    p = build_profile(ft, np.array([0, 1, 3, 4]), np.array([a, a, b, a]), times=[10, 20, 30],
                      threads=["main", "worker", "main"])
    assert p.meta["timed"]
    assert p.slice(15, 31).total == 2
    assert p.slice(None, 20).total == 1
    assert p.thread("^work").total == 1
    assert p.thread("^work").threads == ["worker"]


# ------------------------------------------------------------------ properties

name = st.text(alphabet=st.characters(blacklist_characters=";\r\n\x00", blacklist_categories=("Cs",)),
               min_size=1, max_size=6).filter(lambda s: s.strip() == s and s and not s.startswith(("#", "//"))
                                              and not re.search(r"\s\d+(\.\d*)?$", s) and "%{" not in s)
# Names the folded format holds as they are: a last frame ending in " <number>" makes its line a
# differential one ("f 0 1" is stack f counted 0 then 1, as flamegraph.pl reads it), and "%{" starts
# an escape (the writer writes a literal one as "%{25}{"); test_folded covers both.
stacks = st.lists(st.tuples(st.lists(st.sampled_from(["a", "b", "c", "fib", "node:x", "π"]) | name,
                                     min_size=1, max_size=8),
                            st.integers(1, 50)), min_size=1, max_size=25)


def _expected_folded(rows):
    agg = {}
    for frames, n in rows:
        key = ";".join(frames)
        agg[key] = agg.get(key, 0) + n
    return "".join(f"{k} {v}\n" for k, v in sorted(agg.items()))


@settings(max_examples=60, deadline=None)
@given(stacks)
def test_folded_round_trip(rows):
    text = "".join(f"{';'.join(f)} {n}\n" for f, n in rows)
    p = folded(text).validate()
    assert folded_text(p) == _expected_folded(rows)
    again = folded(folded_text(p))
    assert folded_text(again) == folded_text(p)


@settings(max_examples=60, deadline=None)
@given(stacks, st.sampled_from(["a", "b", "fib", "^c$", "π|node"]))
def test_transform_invariants(rows, pattern):
    p = folded("".join(f"{';'.join(f)} {n}\n" for f, n in rows))
    foc, ign = p.focus(pattern).validate(), p.ignore(pattern).validate()
    assert foc.total + ign.total == p.total
    hid = p.hide(pattern).validate()
    # hide keeps every sample that has at least one frame left
    import re
    rx = re.compile(pattern)
    survivors = sum(n for f, n in rows if any(not rx.search(x) for x in f))
    assert hid.total == survivors
    assert not any(rx.search(lbl) for lbl in hid.func_labels())
    mr = p.merge_recursion().validate()
    assert mr.total == p.total
    a = mr.arrays()
    par = a["prefix"]
    ok = par >= 0
    assert not (a["stack_func"][ok] == a["stack_func"][par[ok]]).any()
    # self sums to the total; no function's total exceeds the whole
    t = p.top(None)
    assert t["self"].sum() == p.total
    assert (t["total"] <= p.total).all() and (t["total"] >= t["self"]).all()


def _naive_text(rows):
    """Reference text tree built with plain dicts: children by count desc, then name."""
    tree = {}
    for frames, n in rows:
        node = tree
        for f in frames:
            child = node.setdefault(f, [0, {}])
            child[0] += n
            node = child[1]
    out = [f"Total samples: {sum(n for _, n in rows)}"]

    def walk(node, depth):
        for name, (cnt, kids) in sorted(node.items(), key=lambda kv: (-kv[1][0], kv[0])):
            out.append("  " * depth + f"{cnt} {name}")
            walk(kids, depth + 1)
    walk(tree, 0)
    return "\n".join(out) + "\n"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from(["a", "b", "c", "d", "fib"]), min_size=1, max_size=7),
                          st.integers(1, 9)), min_size=1, max_size=30))
def test_text_tree_matches_a_naive_recursive_tree(rows):
    p = folded("".join(f"{';'.join(f)} {n}\n" for f, n in rows))
    assert p.text() == _naive_text(rows)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(-1, 3)), min_size=1, max_size=40))
def test_tree_to_stacks_interns_each_level_in_key_order(nodes):
    """tree_to_stacks (and node_depths) against a plain loop: each level's distinct (parent stack, frame)
    keys numbered in sorted order after the levels above, a transparent node (frame -1) its parent's
    stack; node i's parent drawn among the nodes before it, then the nodes shuffled."""
    from nodeflame.frames.stacktable import node_depths, tree_to_stacks
    n = len(nodes)
    parent0 = [-1 if i == 0 or r % 4 == 0 else r % i for i, (r, _) in enumerate(nodes)]
    perm = np.random.default_rng(n).permutation(n)
    pos = np.empty(n, np.int64)
    pos[perm] = np.arange(n)      # node i goes to place pos[i]
    parent = np.full(n, -1, np.int64)
    frame = np.full(n, -1, np.int64)
    for i in range(n):
        parent[pos[i]] = pos[parent0[i]] if parent0[i] >= 0 else -1
        frame[pos[i]] = nodes[i][1]
    depth = []
    for i in range(n):
        d, j = 0, parent[i]
        while j >= 0:
            d, j = d + 1, parent[j]
        depth.append(d)
    assert node_depths(parent).tolist() == depth
    stack = {}
    pre, fr, de = [], [], []
    for d in range(max(depth) + 1):
        level = [i for i in range(n) if depth[i] == d]
        ps = {i: stack[parent[i]] if parent[i] >= 0 else -1 for i in level}
        keys = sorted({(ps[i], int(frame[i])) for i in level if frame[i] >= 0})
        ids = {}
        for k in keys:
            ids[k] = len(pre)
            pre.append(k[0])
            fr.append(k[1])
            de.append(de[k[0]] + 1 if k[0] >= 0 else 0)
        for i in level:
            stack[i] = ids[(ps[i], int(frame[i]))] if frame[i] >= 0 else ps[i]
    for given_depth in (None, np.array(depth)):
        p, f, dd, ns = tree_to_stacks(parent, frame, 4, depth=given_depth)
        assert (p.tolist(), f.tolist(), dd.tolist()) == (pre, fr, de)
        assert ns.tolist() == [stack[i] for i in range(n)]
