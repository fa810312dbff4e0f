"""frames/ops: every Profile -> Profile operation returns a new, valid Profile and leaves its input as it was."""
import numpy as np
import pandas as pd
import pytest

from nodeflame.frames import ops
from test_golden import dump, small_profile


@pytest.fixture
def p():
    return small_profile()


def _unchanged(p, before):
    assert dump(p) == before and p.meta == p.meta


def test_select_samples(p):
    before = dump(p)
    main = (p.samples["thread"].astype(str) == "main").to_numpy()
    q = ops.select_samples(p, main)
    q.validate()
    _unchanged(p, before)
    assert q.total == int(p.samples["weight"][main].sum())
    assert set(q.samples["thread"].astype(str)) == {"main"}
    # what only the worker ran is gone from every table
    assert "(anonymous)" not in set(q.funcs["name"].astype(str))
    assert len(q.stacks) < len(p.stacks)
    with pytest.raises(ValueError, match="mask has"):
        ops.select_samples(p, main[:-1])


def test_with_meta_appends_warnings_and_shares_tables(p):
    q = ops.with_meta(p, warnings=["w1"], backend="x")
    r = ops.with_meta(q, warnings=["w2"])
    assert r.meta["warnings"][-2:] == ["w1", "w2"] and r.meta["backend"] == "x"
    assert p.meta["backend"] is None and "w1" not in p.meta["warnings"]
    # the tables' data is shared (in DataFrame objects of each Profile's own)
    assert np.shares_memory(q.samples["stack"].to_numpy(), p.samples["stack"].to_numpy())
    assert np.shares_memory(q.stacks["prefix"].to_numpy(), p.stacks["prefix"].to_numpy())
    r.validate()


def test_with_samples_and_reweight(p):
    s = p.samples.copy()
    s["thread"] = pd.Categorical(np.where(s["thread"].astype(str) == "main", "MainThread", "W"))
    q = ops.with_samples(p, s, unit="samples", thread_tids={"MainThread": [1]})
    assert set(q.samples["thread"].astype(str)) == {"MainThread", "W"} and q.meta["thread_tids"]
    assert set(p.samples["thread"].astype(str)) == {"main", "worker 1"}
    r = ops.reweight(q, np.full(len(q.samples), 3), unit="ms")
    assert r.total == 3 * q.total and r.meta["unit"] == "ms" and q.meta["unit"] == "samples"
    with pytest.raises(ValueError):
        ops.reweight(q, -np.ones(len(q.samples)))


def test_aggregate_sums_weights_per_stack_and_thread(p):
    q = ops.aggregate(p)
    q.validate()
    assert q.total == p.total and not q.meta["timed"] and p.meta["timed"]
    assert len(q.samples) == len(p.samples.groupby(["stack", "thread"], observed=True))
    assert q.top(None)["self"].sum() == p.top(None)["self"].sum()


def test_stacks_containing(p):
    names = p.funcs["name"].astype(str).to_numpy()
    hit = ops.stacks_containing(p, names == "parse")
    paths = p.stacks
    # a stack holds parse when it or an ancestor is a parse frame
    f = p.frames["func"].to_numpy()[paths["frame"].to_numpy()]
    for s in range(len(paths)):
        k, seen = s, False
        while k >= 0:
            seen |= names[f[k]] == "parse"
            k = paths["prefix"].iat[k]
        assert hit[s] == seen


def test_stacks_containing_a_frame(p):
    # per frame, not per function: only one frame of a function marked
    fm = np.zeros(len(p.frames), bool)
    fm[len(p.frames) // 2] = True
    hit = ops.stacks_containing(p, frame_mask=fm)
    fr, pre = p.stacks["frame"].to_numpy(), p.stacks["prefix"].to_numpy()
    for s in range(len(p.stacks)):
        k, seen = s, False
        while k >= 0:
            seen |= bool(fm[fr[k]])
            k = pre[k]
        assert hit[s] == seen
    assert hit.any()
    with pytest.raises(TypeError):
        ops.stacks_containing(p, np.zeros(len(p.funcs), bool), frame_mask=fm)
