"""Dataset.diff: groups of captures compared with each capture (or process) one observation.

The statistics are checked on simulated fleets: groups of 8 processes whose per-function shares
vary between processes (each function's weight multiplied by a lognormal factor per process, its
own spread drawn between 2 % and 12 %) and, within a capture, by sampling (20,000-100,000 samples
drawn multinomially: 20-100 s at 1 kHz).  The group diff must flag a function made 20 % slower, flag nothing in at
least 90 % of trials when both groups come from the same distribution, and each row's 95 % test
must reject about 5 % of the time when nothing changed.  The dataset path (DuckDB and Dask)
must give the table the statistics give for the same captures.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("duckdb")

import nodeflame as nf  # noqa: E402
from nodeflame.frames.diff import Diff, GroupDiff, t_quantile_975, t_two_sided_p  # noqa: E402

HANDLERS = 5
LEAVES = 40
PROCESSES = 8


class World:
    """One program: main -> handler k -> leaf j stacks (and some self time in each handler)."""

    def __init__(self, seed=20240501):
        rng = np.random.default_rng(seed)
        self.paths = [("main", f"h{k}") for k in range(HANDLERS)]
        self.paths += [("main", f"h{j % HANDLERS}", f"leaf{j}") for j in range(LEAVES)]
        n = len(self.paths)
        base = rng.pareto(1.3, n) + 0.05
        self.share = base / base.sum()
        self.sigma = rng.uniform(0.02, 0.12, n)      # process-to-process spread of each stack's weight
        # the function made slower: a leaf of about 4 % of the time, spread 5 %
        leaves = np.arange(HANDLERS, n)
        self.target = int(leaves[np.argmin(np.abs(self.share[leaves] - 0.04))])
        self.sigma[self.target] = 0.05
        self.target_name = self.paths[self.target][-1]
        self.names = ["main"] + [f"h{k}" for k in range(HANDLERS)] + [f"leaf{j}" for j in range(LEAVES)]

    def process(self, rng, slow=1.0):
        """One capture of one process: sample counts per stack."""
        w = self.share * np.exp(rng.normal(0, self.sigma) - self.sigma ** 2 / 2)
        w[self.target] *= slow
        return rng.multinomial(int(rng.integers(20_000, 100_001)), w / w.sum())

    def matrices(self):
        """(self, total) 0/1 matrices, function x stack: self = S @ counts, total = T @ counts."""
        S = np.zeros((len(self.names), len(self.paths)))
        T = np.zeros_like(S)
        idx = {f: i for i, f in enumerate(self.names)}
        for j, path in enumerate(self.paths):
            S[idx[path[-1]], j] = 1
            for f in set(path):
                T[idx[f], j] = 1
        return S, T

    def folded(self, counts) -> bytes:
        return ("\n".join(f"{';'.join(p)} {int(c)}" for p, c in zip(self.paths, counts) if c) + "\n").encode()


def stats_of(world, sides):
    """The sums GroupDiff takes, computed directly from the simulated counts; each element of a side
    is one observation unit: a capture's counts, or a list of captures (a process: the mean of their shares)."""
    S, T = world.matrices()
    rows = []
    for side, units in enumerate(sides):
        acc = np.zeros((len(world.names), 6))
        for unit in units:
            caps = unit if isinstance(unit, list) else [unit]
            sh_s = np.mean([S @ c / c.sum() for c in caps], axis=0)
            sh_t = np.mean([T @ c / c.sum() for c in caps], axis=0)
            acc[:, 0] += sum(S @ c for c in caps)
            acc[:, 1] += sum(T @ c for c in caps)
            acc[:, 2:] += np.column_stack([sh_s, sh_s ** 2, sh_t, sh_t ** 2])
        for f, a in zip(world.names, acc):
            if a[1] > 0:
                rows.append((side, f, "", 0, "js", *a))
    df = pd.DataFrame(rows, columns=["side", "name", "file", "line", "kind", "self", "total", "self_share_sum",
                                     "self_share_sq", "total_share_sum", "total_share_sq"])
    return df.astype({"self": np.int64, "total": np.int64, "line": np.int64})


def trial(world, rng, slow=1.0):
    a = [world.process(rng) for _ in range(PROCESSES)]
    b = [world.process(rng, slow) for _ in range(PROCESSES)]
    return a, b, GroupDiff(stats_of(world, (a, b)), (PROCESSES, PROCESSES))


# ------------------------------------------------------------------ the method
def test_student_t():
    # textbook values: t(9) 2.262 and t(1) 12.706 are the 97.5 % points; normal in the limit
    np.testing.assert_allclose(t_two_sided_p([2.2621571628, 12.7062047362, 1.959963985], [9, 1, 1e9]),
                               [0.05, 0.05, 0.05], rtol=1e-6)
    np.testing.assert_allclose(t_quantile_975([1, 2, 9, 30, 1e9]), [12.7062047, 4.3026527, 2.2621572,
                                                                    2.0422725, 1.959964], rtol=1e-6)
    assert t_two_sided_p([0.0], [5])[0] == 1.0


def test_a_function_made_20_percent_slower_is_flagged():
    world = World()
    rng = np.random.default_rng(1)
    path = {"main", world.paths[world.target][1], world.target_name}   # its callers' totals grow too
    hits, others, changes = 0, 0, []
    trials = 100   # its power here is about 94 % (188 of 200 trials of two other seeds)
    for _ in range(trials):
        _a, _b, d = trial(world, rng, slow=1.2)
        t = d.table().set_index("name")
        assert isinstance(d, Diff) and t.attrs["normalize"] == "reference"
        row = t.loc[world.target_name]
        if row["significant"] and row["status"] == "slower":
            hits += 1
            assert row["self_low_pp"] > 0
            changes.append(row["self_change_pct"])
        others += int(t.loc[[n for n in t.index if n not in path], "significant"].sum())
    assert hits >= 0.9 * trials, f"flagged in {hits} of {trials} trials"
    assert 15 < np.median(changes) < 25                        # and by about the 20 % it changed
    # what did not change is not flagged with it (BH keeps false discoveries among the flagged rare)
    assert others <= 0.1 * trials, f"{others} rows off the slower function's path flagged in {trials} trials"


def test_same_distribution_flags_nothing_and_rows_reject_about_5_percent():
    world = World()
    rng = np.random.default_rng(2)
    trials = 60
    flagged_trials = 0
    p_self, p_total, covered = [], [], []
    for _ in range(trials):
        _a, _b, d = trial(world, rng)
        t = d.numbers()
        flagged_trials += bool(t["significant"].any())
        big = t["self_before_pct"] > 0.5            # rows with a share to speak of
        p_self.append(t.loc[big, "self_p"].to_numpy())
        p_total.append(t.loc[big & (t["name"] != "main"), "total_p"].to_numpy())
        covered.append(((t["self_low_pp"] <= 0) & (t["self_high_pp"] >= 0))[big].to_numpy())
    assert flagged_trials <= 0.1 * trials, f"something flagged in {flagged_trials} of {trials} A/A trials"
    rate_self = float((np.concatenate(p_self) < 0.05).mean())
    rate_total = float((np.concatenate(p_total) < 0.05).mean())
    coverage = float(np.concatenate(covered).mean())
    assert 0.03 <= rate_self <= 0.07, rate_self
    assert 0.03 <= rate_total <= 0.07, rate_total
    assert 0.93 <= coverage <= 0.97, coverage


# ------------------------------------------------------------------ the dataset path
@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """8 + 8 processes, two captures each, version 1.3's target function 20 % slower."""
    from nodeflame.frames.ops import with_meta
    world = World()
    rng = np.random.default_rng(7)
    ds = nf.dataset(tmp_path_factory.mktemp("fleet"))
    procs = {"1.2": [], "1.3": []}
    t0 = 1_700_000_000.0
    for version, slow in (("1.2", 1.0), ("1.3", 1.2)):
        for k in range(PROCESSES):
            pid = 100 * (1 + (version == "1.3")) + k
            caps = [world.process(rng, slow) for _ in range(2)]
            procs[version].append(caps)
            for i, c in enumerate(caps):
                p = with_meta(nf.read(world.folded(c), format="folded"), pid=pid)
                ds.add(p, labels={"service": "api", "version": version, "host": f"h{k % 3}"},
                       time=t0 + 600 * i + k)
    ds.add(nf.read(world.folded(world.process(rng)), format="folded"), labels={"service": "batch", "version": "1.3"},
           time=t0)
    return ds, world, procs


COMPARE = ["significant", "status", "name", "self_before_pct", "self_after_pct", "self_delta_pp", "self_low_pp",
           "self_high_pp", "total_before_pct", "total_after_pct", "total_delta_pp", "total_low_pp", "total_high_pp",
           "q", "self_before", "self_after", "total_before", "total_after", "self_df", "total_df", "captures_before",
           "captures_after"]


def _same(got, exp):
    g = got.numbers().sort_values("name").reset_index(drop=True)[COMPARE]
    e = exp.numbers().sort_values("name").reset_index(drop=True)[COMPARE]
    pd.testing.assert_frame_equal(g, e, check_exact=False, rtol=1e-9, atol=1e-12, check_dtype=False)


def test_dataset_diff_is_the_group_statistics_of_its_captures(fleet):
    ds, world, procs = fleet
    a, b = "service = 'api' AND version = '1.2'", "service = 'api' AND version = '1.3'"
    d = ds.diff(a=a, b=b)
    assert isinstance(d, Diff) and isinstance(d, GroupDiff)
    caps = {v: [c for p in procs[v] for c in p] for v in procs}
    _same(d, GroupDiff(stats_of(world, (caps["1.2"], caps["1.3"])), (16, 16)))
    t = d.table().set_index("name")
    assert t.loc[world.target_name, "significant"] and t.loc[world.target_name, "status"] == "slower"
    assert "Welch" in d.describe() and "16 captures" in d.describe()
    # one observation per process: the mean share of its two captures
    dp = ds.diff(a=a, b=b, unit="pid")
    _same(dp, GroupDiff(stats_of(world, (procs["1.2"], procs["1.3"])), (8, 8)))
    assert dp.numbers()["captures_before"].iloc[0] == 8 and "8 pids" in dp.describe()
    # the merged profiles, for write() and flame(), are loaded when asked for
    assert d.after.total == ds.captures(where=b)["samples"].sum()
    assert len(d.deltas()) == len(d.after.funcs)
    # plain shares on request
    assert ds.diff(a=a, b=b, normalize="total").table().attrs["normalize"] == "total"


def test_dataset_diff_refuses_what_it_cannot_answer(fleet):
    ds, _world, _procs = fleet
    with pytest.raises(nf.NodeflameError, match="at least 2"):
        ds.diff(a="service = 'batch'", b="version = '1.2'")
    with pytest.raises(nf.NodeflameError, match="matches"):
        ds.diff(a="version = '9'", b="version = '1.2'")
    with pytest.raises(nf.NodeflameError, match="unit: no column"):
        ds.diff(a="version = '1.3'", b="version = '1.2'", unit="nope")
    with pytest.raises(nf.NodeflameError, match="where"):
        ds.diff(a="nope = 1", b="version = '1.2'")


@pytest.fixture(scope="module")
def dask_client():
    pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    # threads, not processes: two worker processes cost seconds of start-up on this 2-core machine
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_gives_the_same_diff(fleet, dask_client):
    ds, _world, _procs = fleet
    for kw in (dict(a="version = '1.2'", b="version = '1.3' AND service = 'api'"),
               dict(a="version = '1.2'", b="version = '1.3' AND service = 'api'", unit=["host", "pid"]),
               dict(a="host = 'h0'", b="host <> 'h0'", normalize="total")):
        duck = ds.diff(**kw).numbers()
        dask = ds.diff(**kw, client=dask_client).numbers()
        pd.testing.assert_frame_equal(duck, dask, check_exact=False, rtol=1e-9, atol=1e-12)
        assert duck.attrs["scale"] == pytest.approx(dask.attrs["scale"], rel=1e-12)


def test_to_dask_has_one_partition_per_capture(fleet, dask_client):
    ds, _world, _procs = fleet
    dd = ds.to_dask()
    n = len(ds.captures())
    for name in ("func_stats", "funcs", "frames", "stacks", "samples"):
        df = dd[name]
        assert df.npartitions == n, name
        assert df.optimize().npartitions == n, name          # nor fused when the graph is optimised
        ids = df["capture_id"].map_partitions(lambda s: s.astype(str).nunique()).compute(scheduler="sync")
        assert list(ids) == [1] * n, name                     # each partition is one whole capture
    per = dd["samples"].groupby("capture_id", observed=True)["weight"].sum().compute()
    caps = ds.captures().set_index("capture_id")["samples"]
    assert per.astype(np.int64).sort_index().to_dict() == caps.sort_index().to_dict()
