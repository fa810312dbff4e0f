"""nodeflame.dataset: many captures as Parquet; DuckDB and Dask give the same answers; atomic writes."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("duckdb")

import nodeflame as nf  # noqa: E402
from nodeflame.frames.ops import with_meta  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent

# real files other tools wrote, of every family nodeflame reads
CORPUS_FILES = [
    "speedscope/node/10.11.0/example.cpuprofile",
    "speedscope/Chrome/65/simple.cpuprofile",
    "speedscope/pprof/simple.prof",
    "speedscope/speedscope/0.6.0/two-sampled.speedscope.json",
    "speedscope/speedscope/0.1.2/simple-sampled.speedscope.json",
    "speedscope/stackcollapse/recursion.txt",
    "speedscope/linux-perf/simple-with-pid.linux-perf.txt",
    "flamegraph/perf-js-stacks-01.txt",
    "flamegraph/example-dtrace-stacks.txt",
]


def assert_same_profile(p, q):
    """Profile equality: every table (dtypes, categories, extra columns) and meta."""
    for t in ("funcs", "frames", "stacks", "samples", "lines"):
        pd.testing.assert_frame_equal(getattr(p, t), getattr(q, t), check_exact=True, obj=t)
    assert q.meta == json.loads(json.dumps(p.meta, default=str)) or q.meta == p.meta


def synthetic(seed: int, n: int = 4000, slow: float = 1.0, recursion: bool = True):
    """A node-like profile: main -> handler -> (parse | render | recurse(recurse(...))) ; ``slow``
    scales the weight of parse."""
    rng = np.random.default_rng(seed)
    stacks = {
        ("main", "handler", "parse"): 30 * slow,
        ("main", "handler", "parse", "JSON.parse"): 20 * slow,
        ("main", "handler", "render"): 25,
        ("main", "handler", "render", "escape"): 10,
        ("main", "gc"): 5,
    }
    if recursion:
        stacks[("main", "handler", "walk", "walk", "walk")] = 8
        stacks[("main", "handler", "walk", "walk", "render")] = 4
    keys = list(stacks)
    prob = np.array([stacks[k] for k in keys], float)
    prob = prob / prob.sum()
    counts = rng.multinomial(n, prob)
    rows = [(";".join(k), int(c)) for k, c in zip(keys, counts) if c]
    folded = "\n".join(f"{s} {c}" for s, c in rows) + "\n"
    return nf.read(folded.encode(), format="folded")


@pytest.fixture
def corpus_profiles(corpus):
    out = []
    for rel in CORPUS_FILES:
        path = corpus / rel
        if path.exists():
            out.append((rel, nf.read(path)))
    assert len(out) >= 6
    return out


# ------------------------------------------------------------------ round trip
def test_every_capture_comes_back_equal(tmp_path, corpus_profiles):
    ds = nf.dataset(tmp_path / "ds")
    ids = {}
    for i, (rel, p) in enumerate(corpus_profiles):
        ids[rel] = ds.add(p, labels={"source": rel.split("/")[0], "n": str(i)})
    ds2 = nf.dataset(tmp_path / "ds")  # a fresh reader, nothing cached
    assert len(ds2.captures()) == len(corpus_profiles)
    for rel, p in corpus_profiles:
        q = ds2.profile(ids[rel])
        q.validate()
        assert_same_profile(p, q)
        assert q.meta == p.meta, rel
    caps = ds2.captures().set_index("capture_id")
    for rel, p in corpus_profiles:
        row = caps.loc[ids[rel]]
        assert row["samples"] == p.total and row["rows"] == len(p.samples)
        assert row["source_format"] == p.meta["source_format"]


def test_extra_columns_and_lines_survive(tmp_path):
    p = synthetic(1)
    funcs = p.funcs.assign(gen_line=np.arange(len(p.funcs), dtype=np.int32))
    frames = p.frames.assign(gen_column=np.arange(len(p.frames), dtype=np.int32))
    from nodeflame.frames.profile import Profile
    lines = pd.DataFrame({"stack": np.array([1, 2], np.int32), "line": np.array([3, 4], np.int32),
                          "ticks": np.array([5, 6], np.int64)})
    meta = dict(p.meta, pid=4242, backend="walker", start_time=1_700_000_000.5, duration_ns=10_000_000_000,
                node_version="20.1.0", threads=["main", "worker 1"], nested={"a": [1, 2, {"b": None}]})
    p = Profile(funcs, frames, p.stacks, p.samples, meta, lines)
    ds = nf.dataset(tmp_path)
    cid = ds.add(p, labels={"service": "api"})
    q = ds.profile(cid)
    assert_same_profile(p, q)
    assert q.meta == p.meta
    row = ds.captures().iloc[0]
    assert (row["service"], row["backend"], row["pid"], row["duration_s"]) == ("api", "walker", 4242, 10.0)
    assert row["start"] == pd.Timestamp(1_700_000_000.5, unit="s")
    assert row["date"] == "2023-11-14"
    # partitioned by labels and date, Hive style, and documented in dataset.json
    assert (tmp_path / "samples" / "service=api" / "date=2023-11-14" / f"{cid}.parquet").exists()
    m = json.loads((tmp_path / "dataset.json").read_text())
    assert m["schema_version"] == 1 and m["partition_by"] == ["service"]


def test_labels_are_checked(tmp_path):
    ds = nf.dataset(tmp_path)
    p = synthetic(2)
    with pytest.raises(nf.NodeflameError, match="reserved"):
        ds.add(p, labels={"pid": "1"})
    with pytest.raises(nf.NodeflameError, match="label name"):
        ds.add(p, labels={"my-label": "1"})
    # a value with / and = is escaped in the path and comes back as it was
    cid = ds.add(p, labels={"route": "/api/v=1 x"})
    assert ds.captures()["route"].tolist() == ["/api/v=1 x"]
    assert ds.profile(cid).total == p.total


# ------------------------------------------------------------------ questions
@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Two versions x two hosts x 3 captures, version 1.3's parse 40 % heavier, an hour apart.  Made once
    for the module: the tests that take it only read it."""
    ds = nf.dataset(tmp_path_factory.mktemp("fleet") / "fleet")
    t0 = 1_700_000_000.0
    k = 0
    for version, slow in (("1.2", 1.0), ("1.3", 1.4)):
        for host in ("a", "b"):
            for i in range(3):
                p = with_meta(synthetic(100 + k, n=2000 + 300 * k, slow=slow), pid=1000 + k)
                ds.add(p, labels={"service": "api", "version": version, "host": host}, time=t0 + 3600 * i + k)
                k += 1
    other = synthetic(999)
    ds.add(other, labels={"service": "worker", "version": "1.3", "host": "a"}, time=t0)
    return ds


def _expected_top(merged):
    t = merged.top(None)
    t = t.assign(column=merged.funcs.loc[t.index, "column"].to_numpy())
    t = t.astype({"name": str, "file": str, "kind": str})
    return t.set_index(["name", "file", "line", "column", "kind"])[["self", "total", "self_pct", "total_pct"]]


def test_top_matches_profile_top_of_the_merged_profile(fleet):
    got = fleet.top(by=["version"], where="service = 'api'", n=None)
    assert set(got["version"]) == {"1.2", "1.3"}
    for v in ("1.2", "1.3"):
        merged = fleet.profile(where=f"service = 'api' AND version = '{v}'")
        assert len(merged.meta["captures"]) == 6
        exp = _expected_top(merged)
        g = got[got["version"] == v].set_index(["name", "file", "line", "column", "kind"])
        assert set(g.index) == set(exp.index)
        g = g.loc[exp.index]
        np.testing.assert_array_equal(g["self"].to_numpy(), exp["self"].to_numpy())
        np.testing.assert_array_equal(g["total"].to_numpy(), exp["total"].to_numpy())
        np.testing.assert_allclose(g["self_pct"].to_numpy(), exp["self_pct"].to_numpy())
        np.testing.assert_allclose(g["total_pct"].to_numpy(), exp["total_pct"].to_numpy())
        # recursion counted once: walk is on every walk sample once, not three times
        assert g.loc["walk", "total"].iloc[0] == exp.loc["walk", "total"].iloc[0] <= merged.total
    # heaviest first within each group, n per group
    t5 = fleet.top(by="version", where="service = 'api'", n=3)
    assert t5.groupby("version").size().tolist() == [3, 3]
    assert (t5.groupby("version")["self"].apply(lambda s: s.is_monotonic_decreasing)).all()
    # no by: one group, equal to the whole dataset's merged profile
    whole = fleet.top(n=None)
    exp = _expected_top(fleet.profile(where="true"))
    np.testing.assert_array_equal(whole.set_index(["name", "file", "line", "column", "kind"]).loc[exp.index, "total"],
                                  exp["total"])


def test_each_capture_is_one_observation(fleet):
    t = fleet.top(by=["version", "host"], where="service = 'api'", n=None)
    row = t[(t["version"] == "1.3") & (t["host"] == "b") & (t["name"] == "parse")].iloc[0]
    ids = fleet.captures(where="service = 'api' AND version = '1.3' AND host = 'b'")["capture_id"]
    shares = []
    for cid in ids:
        p = fleet.profile(cid)
        top = p.top(None)
        shares.append(top.loc[top["name"] == "parse", "self_pct"].iloc[0])
    assert row["captures"] == 3
    assert row["self_mean_pct"] == pytest.approx(np.mean(shares))
    assert row["self_sd_pct"] == pytest.approx(np.std(shares, ddof=1))
    # a function missing from a capture counts as a share of 0 there, not as a missing observation
    assert t.loc[t["name"] == "gc", "captures"].eq(3).all()


def test_trend_buckets_captures_by_start(fleet):
    tr = fleet.trend(func="parse", by="version", every="1h", where="service = 'api'")
    assert list(tr.columns[:3]) == ["version", "bucket", "captures"]
    assert len(tr) == 6 and tr["captures"].eq(2).all()
    for r in tr.itertuples():
        merged = fleet.profile(where=f"service = 'api' AND version = '{r.version}' AND "
                                     f"start >= TIMESTAMP '{r.bucket}' AND start < TIMESTAMP '{r.bucket}' + INTERVAL 1 HOUR")
        top = merged.top(None)
        assert r.self == top.loc[top["name"] == "parse", "self"].sum()
        assert r.self_pct == pytest.approx(100 * r.self / merged.total)
    # version 1.3 spends more in parse in every hour
    piv = tr.pivot(index="bucket", columns="version", values="self_pct")
    assert (piv["1.3"] > piv["1.2"]).all()
    # a function absent from some captures: they count, with 0
    tr2 = fleet.trend(func="no-such-function", every="1d")
    assert tr2["self"].sum() == 0 and tr2["captures"].sum() == 13


def test_sql_over_the_views(fleet):
    df = fleet.sql("SELECT version, count(*) AS n, sum(samples) AS s FROM captures "
                   "WHERE service = 'api' GROUP BY version ORDER BY version")
    caps = fleet.captures(where="service = 'api'")
    assert df["n"].tolist() == [6, 6]
    assert df["s"].tolist() == caps.groupby("version")["samples"].sum().tolist()
    n = fleet.sql("SELECT sum(weight) AS w FROM samples JOIN captures USING (capture_id) WHERE version = '1.2'")
    assert int(n["w"].iloc[0]) == int(caps.loc[caps["version"] == "1.2", "samples"].sum())
    names = fleet.sql("SELECT DISTINCT name FROM funcs ORDER BY 1")["name"].tolist()
    assert "parse" in names and "JSON.parse" in names
    fs = fleet.sql("SELECT capture_id, sum(self) AS s FROM func_stats GROUP BY 1")
    assert sorted(fs["s"]) == sorted(fleet.captures()["samples"])
    with pytest.raises(nf.NodeflameError, match="sql"):
        fleet.sql("SELECT nope FROM captures")
    with pytest.raises(nf.NodeflameError, match="where"):
        fleet.captures(where="nope = 1")


def test_merged_profile_is_written_and_diffed(fleet, tmp_path):
    a = fleet.profile(where="version = '1.2'")
    b = fleet.profile(where="version = '1.3' AND service = 'api'")
    a.validate()
    b.validate()
    assert a.total == fleet.captures(where="version = '1.2'")["samples"].sum()
    d = nf.diff(a, b)
    t = d.table()
    assert t.loc[t["name"] == "parse", "self_delta_pp"].iloc[0] > 0
    b.write(tmp_path / "b.svg")
    assert (tmp_path / "b.svg").stat().st_size > 0
    with pytest.raises(nf.NodeflameError, match="matches"):
        fleet.profile(where="version = '9'")


@pytest.fixture(scope="module")
def dask_client():
    pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_gives_the_same_answers(fleet, dask_client):
    for kw in (dict(by=["version"], where="service = 'api'", n=None), dict(by=["version", "host"], n=4),
               dict(n=10, sort="total")):
        duck = fleet.top(**kw)
        dask = fleet.top(**kw, client=dask_client)
        pd.testing.assert_frame_equal(duck, dask, check_exact=False, rtol=1e-12)
        local = fleet.top(**kw, engine="dask")  # Dask's own scheduler, no cluster
        pd.testing.assert_frame_equal(duck, local, check_exact=False, rtol=1e-12)
    duck = fleet.trend(func="parse", by="version", every="2h")
    dask = fleet.trend(func="parse", by="version", every="2h", client=dask_client)
    pd.testing.assert_frame_equal(duck, dask, check_exact=False, rtol=1e-12)
    on_cluster = nf.dataset(fleet.path, client=dask_client)
    assert on_cluster.engine == "dask"
    pd.testing.assert_frame_equal(on_cluster.top(by="host"), fleet.top(by="host"), check_exact=False, rtol=1e-12)
    dd = fleet.to_dask()
    assert int(dd["samples"]["weight"].sum().compute()) == int(fleet.captures()["samples"].sum())
    assert len(dd["captures"].compute()) == 13


def test_empty_and_fsspec_url(tmp_path):
    ds = nf.dataset(tmp_path / "empty")
    assert len(ds.captures()) == 0
    assert len(ds.top()) == 0
    with pytest.raises(nf.NodeflameError, match="no column .version."):
        ds.top(by="version")
    with pytest.raises(nf.NodeflameError, match="empty"):
        ds.profile(where="true")
    url = "file://" + str(tmp_path / "viaurl")
    p = synthetic(5)
    cid = nf.dataset(url).add(p, labels={"service": "x"})
    assert_same_profile(p, nf.dataset(tmp_path / "viaurl").profile(cid))
    pytest.importorskip("fsspec")
    mem = nf.dataset("memory://nodeflame-test-ds")
    cid = mem.add(p, labels={"service": "x"})
    assert_same_profile(p, nf.dataset("memory://nodeflame-test-ds").profile(cid))
    assert mem.top(by="service")["self"].sum() == p.total


def test_retention_deletes_oldest_first(tmp_path):
    ds = nf.dataset(tmp_path)
    t0 = 1_700_000_000.0
    ids = [ds.add(synthetic(i, n=500), labels={"service": "api"}, time=t0 + 86400 * i) for i in range(6)]
    assert ds.prune(keep="3d", now=t0 + 86400 * 5 - 10) == ids[:2]
    sizes = ds.captures()["bytes"].tolist()
    dropped = ds.prune(max_bytes=sum(sizes[-2:]))
    assert dropped == ids[2:4]
    assert ds.captures()["capture_id"].tolist() == ids[4:]
    left = sorted(str(x.relative_to(tmp_path)) for x in tmp_path.rglob("*.parquet"))
    assert len(left) == 2 * 7 and all(ids[4] in x or ids[5] in x for x in left)


# ------------------------------------------------------------------ command line
class _Ran:
    def __init__(self, returncode, stderr):
        self.returncode, self.stderr = returncode, stderr


@pytest.fixture
def _cli(capsys):
    """nodeflame's command line, in this process (a subprocess costs seconds on a busy machine)."""
    from nodeflame.cli import main

    def run(*args):
        capsys.readouterr()
        code = main([str(a) for a in args])
        return _Ran(code, capsys.readouterr().err)
    return run


def test_ingest_any_format(tmp_path, corpus, _cli):
    files = [corpus / rel for rel in CORPUS_FILES[:4]]
    r = _cli("ingest", *files, "--to", tmp_path / "ds", "--label", "service=archive", "--label", "version=0.9")
    assert r.returncode == 0, r.stderr
    assert f"ingested {len(files)} files" in r.stderr
    ds = nf.dataset(tmp_path / "ds")
    caps = ds.captures()
    assert set(caps["service"]) == {"archive"} and set(caps["version"]) == {"0.9"}
    assert sorted(caps["source_format"]) == sorted(nf.read(f).meta["source_format"] for f in files)
    for f in files:  # each file's capture is that file's Profile; start = the file's mtime
        p = nf.read(f)
        cid = caps.loc[caps["samples"] == p.total, "capture_id"]
        assert any(ds.profile(c).meta.get("source") == p.meta["source"] for c in cid)
    bad = tmp_path / "bad.cpuprofile"
    bad.write_text("{not json")
    r = _cli("ingest", bad, files[0], "--to", tmp_path / "ds", "-q")
    assert r.returncode == 1 and "bad.cpuprofile: skipped" in r.stderr and "1 skipped" in r.stderr
    assert len(ds.captures()) == len(files) + 1
    r = _cli("ingest", files[0], "--to", tmp_path / "ds", "--label", "oops")
    assert r.returncode == 2 and "KEY=VALUE" in r.stderr


def test_record_options_need_to(tmp_path, _cli):
    r = _cli("record", "--pid", "1", "--every", "5")
    assert r.returncode == 2 and "--every: only with --to" in r.stderr
    r = _cli("record", "--pid", "1")
    assert r.returncode == 2 and "-o OUT" in r.stderr
    r = _cli("record", "--pid", "1", "--to", tmp_path, "--every", "1", "-d", "5")
    assert r.returncode == 2 and "shorter than a capture" in r.stderr
    r = _cli("record", "--pid", "1", "--to", tmp_path, "--max-size", "lots")
    assert r.returncode == 2 and "not a size" in r.stderr
    from nodeflame.cli_dataset import parse_size
    assert parse_size("2GB") == 2_000_000_000 and parse_size("1GiB") == 2 ** 30 and parse_size("100") == 100


NODE = __import__("shutil").which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")


def _wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _line_starting(stream, prefix, timeout):
    """The first line starting with prefix on a child's text pipe, waited for with select (no fixed sleep)."""
    import select
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no line starting {prefix!r} in {timeout} s: {seen}"
        line = stream.readline()
        assert line, f"the pipe closed before a line starting {prefix!r}: {seen}"
        if line.startswith(prefix):
            return line
        seen.append(line)


def _hidden_files(root):
    return [p for p in pathlib.Path(root).rglob(".*") if p.is_file()]


@needs_node
@pytest.mark.slow
def test_record_every_until_sigterm(tmp_path):
    from hot_driver import HotJS
    hot = HotJS("--no-worker")
    ds_path = tmp_path / "ds"
    try:
        rec = subprocess.Popen([sys.executable, "-m", "nodeflame.cli", "record", "--pid", str(hot.pid),
                                "--every", "1.5", "-d", "0.5", "--backend", "inspector", "--to", str(ds_path),
                                "--label", "service=hot", "--label", "version=1.3"],
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
        ds = nf.dataset(ds_path)
        _wait_for(lambda: ds_path.exists() and len(ds.captures()) >= 3, 90, "three captures")
        rec.send_signal(signal.SIGTERM)
        err = rec.communicate(timeout=60)[1]
        assert rec.returncode == 0, err
        assert "SIGTERM: stopping after the capture under way" in err
        wrote = [ln for ln in err.splitlines() if "inspector backend" in ln and "; wrote " in ln]
        caps = ds.captures()
        assert len(caps) == len(wrote) >= 3            # every capture begun was finished and written
        assert f"{len(caps)} captures in" in err.splitlines()[-1]
        assert set(caps["service"]) == {"hot"} and set(caps["version"]) == {"1.3"}
        assert set(caps["pid"]) == {hot.pid} and set(caps["backend"]) == {"inspector"}
        starts = caps["start"].sort_values().diff().dropna().dt.total_seconds()
        assert (starts >= 1.0).all()                     # one capture per --every, not back to back
        for cid in caps["capture_id"]:
            p = ds.profile(cid)
            p.validate()
            assert p.meta["pid"] == hot.pid and p.total > 0
            assert "functionA" in set(p.funcs["name"].astype(str))
        t = ds.top(by="version", n=5)
        assert set(t["name"]) >= {"functionA", "functionB"}
        assert _hidden_files(ds_path) == []
        assert hot.proc.poll() is None                   # the target runs on
    finally:
        hot.kill()


@needs_node
@pytest.mark.slow
def test_record_match_follows_processes_that_start_later(tmp_path):
    from hot_driver import HotJS
    ds_path = tmp_path / "ds"
    tag = f"--ratio={3 + os.getpid() % 1000}"  # a command line nobody else has
    rec = subprocess.Popen([sys.executable, "-m", "nodeflame.cli", "record", "--match", rf"hot\.js .*{tag}",
                            "--every", "1", "-d", "0.5", "--backend", "inspector", "--to", str(ds_path),
                            "--label", "service=m", "--max-size", "50MB"], stderr=subprocess.PIPE, text=True,
                           cwd=ROOT)
    procs = []
    try:
        # the recorder runs (its first note, written just before it first looks), and finds nothing yet
        _line_starting(rec.stderr, "nodeflame: recording node processes matching", 60)
        ds = nf.dataset(ds_path)
        procs.append(HotJS("--no-worker", tag))
        _wait_for(lambda: ds_path.exists() and hot_pids(ds) >= {procs[0].pid}, 60, "a capture of the first process")
        procs.append(HotJS("--no-worker", tag))
        _wait_for(lambda: hot_pids(ds) >= {procs[0].pid, procs[1].pid}, 60, "a capture of the second process")
        procs[0].kill()  # one goes away: the recorder carries on with the other
        n = len(ds.captures())
        _wait_for(lambda: len(ds.captures()) > n + 1, 60, "captures after one process ended")
        rec.send_signal(signal.SIGTERM)
        err = rec.communicate(timeout=60)[1]
        assert rec.returncode == 0, err
        assert hot_pids(ds) == {procs[0].pid, procs[1].pid}
        for cid in ds.captures()["capture_id"]:
            ds.profile(cid).validate()
    finally:
        if rec.poll() is None:
            rec.kill()
        for h in procs:
            h.kill()


def hot_pids(ds):
    return set(ds.captures()["pid"].dropna().astype(int))


# ------------------------------------------------------------------ atomicity
_WRITER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import nodeflame as nf
    from nodeflame.dataset import store

    path, marker, stop_at = sys.argv[1], sys.argv[2], sys.argv[3]
    ds = nf.dataset(path)

    def profile(i):
        rng = np.random.default_rng(i)
        rows = [f"main;handler;f{k};g{k % 3} {int(c)}" for k, c in enumerate(rng.integers(1, 500, 40))]
        return nf.read(("\\n".join(rows) + "\\n").encode(), format="folded")

    if stop_at == "loop":       # add captures until killed, as fast as it can
        i = 0
        while True:
            ds.add(profile(i), labels={"service": "w", "i": str(i)})
            i += 1
    for i in range(2):
        ds.add(profile(i), labels={"service": "w", "i": str(i)})
    real = store._rename
    def blocking(tmp, final):
        table = os.path.relpath(final, path).split(os.sep)[0]
        if table == stop_at:
            open(marker, "w").write(tmp)
            time.sleep(600)     # killed here, with the temp file written and not yet renamed
        real(tmp, final)
    store._rename = blocking
    ds.add(profile(2), labels={"service": "w", "i": "2"})
""")


@pytest.mark.parametrize("stop_at", ["samples", "captures"])
def test_kill_9_in_the_middle_of_a_write_leaves_nothing_visible(tmp_path, stop_at):
    ds_path, marker = tmp_path / "ds", tmp_path / "marker"
    w = subprocess.Popen([sys.executable, "-c", _WRITER, str(ds_path), str(marker), stop_at], cwd=ROOT)
    try:
        _wait_for(lambda: marker.exists() and marker.read_text(), 120, "the writer to reach the rename")
        w.send_signal(signal.SIGKILL)
        w.wait(30)
    finally:
        if w.poll() is None:
            w.kill()
    tmp = pathlib.Path(marker.read_text())
    assert tmp.exists() and tmp.name.startswith(".tmp-")            # the half-done write is there...
    ds = nf.dataset(ds_path)
    caps = ds.captures()
    assert sorted(caps["i"]) == ["0", "1"]                           # ...and no reader sees it
    for cid in caps["capture_id"]:
        ds.profile(cid).validate()
    chk = ds.sql("SELECT (SELECT sum(samples) FROM captures) AS c, (SELECT sum(weight) FROM samples) AS s, "
                 "(SELECT sum(self) FROM func_stats) AS f")
    assert chk["c"].iloc[0] == chk["s"].iloc[0] == chk["f"].iloc[0]
    assert ds.top(n=None)["self"].sum() == caps["samples"].sum()
    # the next writer carries on, and removes the dead writer's temp files
    ds.add(synthetic(3), labels={"service": "w", "i": "3"})
    assert not tmp.exists() and _hidden_files(ds_path) == []
    assert sorted(ds.captures()["i"]) == ["0", "1", "3"]
    # table files of the capture never committed stay invisible, and go once stale
    from nodeflame.dataset.store import clean_leftovers
    known = set(ds.captures()["capture_id"])
    removed = clean_leftovers(ds.store, known, now=time.time() + 7200)
    assert removed == (4 if stop_at == "samples" else 6)  # func_stats, funcs, frames, stacks (+ samples, lines)
    assert len(list(ds_path.rglob("*.parquet"))) == 7 * 3


def test_writing_and_querying_at_the_same_time(tmp_path):
    ds_path = tmp_path / "ds"
    ds = nf.dataset(ds_path)
    ds.add(synthetic(0), labels={"service": "w", "i": "x"})
    w = subprocess.Popen([sys.executable, "-c", _WRITER, str(ds_path), str(tmp_path / "m"), "loop"], cwd=ROOT)
    seen = []
    try:
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline and (len(seen) < 8 or seen[-1] < 10):
            # every answer is of one consistent set of captures, whatever the writer is doing
            chk = ds.sql("SELECT (SELECT count(*) FROM captures) AS n, (SELECT sum(samples) FROM captures) AS c, "
                         "(SELECT sum(weight) FROM samples) AS s, (SELECT sum(self) FROM func_stats) AS f")
            assert chk["c"].iloc[0] == chk["s"].iloc[0] == chk["f"].iloc[0]
            t = ds.top(by="service", n=None)
            caps = ds.captures()
            assert len(caps) >= int(chk["n"].iloc[0])
            assert t["self"].sum() <= caps["samples"].sum()
            seen.append(len(caps))
        assert w.poll() is None
    finally:
        w.send_signal(signal.SIGKILL)
        w.wait(30)
    assert seen == sorted(seen) and seen[-1] > seen[0]
    ds = nf.dataset(ds_path)                        # the next writer, after a kill -9 in a loop of writes
    ds.add(synthetic(1), labels={"service": "w"})
    for cid in ds.captures()["capture_id"]:
        ds.profile(cid).validate()
    assert _hidden_files(ds_path) == []


# ------------------------------------------------------------------ an older dataset
def test_a_schema_1_dataset_stays_readable(tmp_path):
    """tests/data/dataset_v1 was written by schema version 1 (2026-12-03: the corpus' node 10.11
    .cpuprofile, the corpus' perf script with pid, and test_golden's small fixed profile, labelled) and is
    never regenerated: whatever the layout becomes, this dataset must still read as it did. The
    expected Profiles are stored beside it as test_golden dumps, frozen with it (a reader fixed later
    changes the corpus golden files, not what this dataset holds)."""
    from test_golden import dump
    import shutil
    src = ROOT / "tests" / "data" / "dataset_v1"
    want = ROOT / "tests" / "data" / "dataset_v1.expected"
    shutil.copytree(src, tmp_path / "ds")          # a reader must not need to write, but keep the stored copy pristine
    ds = nf.dataset(tmp_path / "ds")
    caps = ds.captures().sort_values("capture_id").reset_index(drop=True)
    exp = pd.read_csv(want / "captures.csv", dtype=str, keep_default_na=False)
    assert caps["capture_id"].tolist() == exp["capture_id"].tolist()
    for col in ("service", "version", "samples", "rows", "source_format"):
        got = ["" if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v) for v in caps[col]]
        assert got == exp[col].tolist(), col
    profiles = {}
    for cid in exp["capture_id"]:
        q = ds.profile(cid)
        q.validate()
        assert dump(q) == (want / f"{cid}.dump").read_text(), cid
        profiles[cid] = q
    # the queries run over it: top per version equals Profile.top of that version's merged captures
    top = ds.top(by=["version"], n=None)
    for version, ids in exp.groupby("version")["capture_id"]:
        merged = ds.profile(where=f"version = '{version}'")
        assert merged.total == sum(profiles[c].total for c in ids)
        want_top = _expected_top(merged)
        g = top[top["version"] == version].set_index(["name", "file", "line", "column", "kind"])
        assert set(g.index) == set(want_top.index), version
        g = g.loc[want_top.index]
        np.testing.assert_array_equal(g["self"].to_numpy(), want_top["self"].to_numpy())
        np.testing.assert_array_equal(g["total"].to_numpy(), want_top["total"].to_numpy())
    # and a new capture can be added to it
    cid = ds.add(synthetic(3), labels={"service": "api", "version": "1.4"})
    assert len(nf.dataset(tmp_path / "ds").captures()) == 4 and cid
