"""Issue 15: building a long capture's Profile peaks at under twice what the capture holds.

A walker Decoder is filled with a synthetic capture of the shape a long walker capture has (two threads
whose samples interleave out of time order, a few thousand distinct paths of 10-40 frames, native
placeholders, executing lines on most leaves) without a live process; then ``Decoder.profile`` is
measured with tracemalloc (deterministic: Python's and numpy's allocations, not RSS, not time).
``synthetic_decoder`` is also what ``bench/bench_long_capture.py --synthetic N`` measures.
"""
from __future__ import annotations

import gc
import tracemalloc
import types
from array import array

import numpy as np
import pytest

from nodeflame.capture.walker.decoder import Decoder


def synthetic_decoder(n: int, *, seed: int = 0, n_paths: int = 6000, n_frames: int = 1500,
                      n_native: int = 120, line_share: float = 0.7) -> Decoder:
    """A Decoder holding ``n`` synthetic samples, as after a capture (its arrays filled, no process)."""
    rng = np.random.default_rng(seed)
    lay = types.SimpleNamespace(facts={}, v8_version="synthetic")
    dec = Decoder(pid=0, space=None, mem=None, heap=types.SimpleNamespace(lay=lay), unwinder=None, t0=0,
                  kernel_names=(array("Q"), []))
    tiers = ("interpreted", "baseline", "optimized", "inlined", "maglev")
    for i in range(n_frames):        # JS frames: functions at several lines each
        f = i // 3
        dec.ft.add(f"fn{f}", f"/app/src/mod{f % 40}.js", 10 + (i % 3) * 7, 1 + i % 5, hint="js",
                   tier=tiers[i % len(tiers)], func_line=10 + f % 300, func_column=1)
    for i in range(n_native):        # native placeholders (negative ids): builtins, libc, node
        dec.native_keys.append((f"Builtins_Stub{i}" if i % 3 == 0 else f"uv_fn{i}", f"/usr/lib/lib{i % 4}.so",
                                False))
    # a random tree of frames; each distinct path is a root-to-node walk in it
    nodes_parent, nodes_frame = [-1], [0]
    for k in range(1, n_paths):
        nodes_parent.append(int(rng.integers(0, k)) if k > 8 else 0)
        nodes_frame.append(int(rng.integers(0, n_frames)) if rng.random() > 0.15
                           else -1 - int(rng.integers(0, n_native)))
    for k in range(n_paths):
        path, j = [], k
        while j >= 0 and len(path) < 40:
            path.append(nodes_frame[j])
            j = nodes_parent[j]
        dec._intern(path[::-1])
    # samples: a skewed choice of paths; two threads, decoded in runs of 16, each thread's times rising
    # but the two threads' runs out of order with each other (as the perf engine's rings are drained)
    weights = 1.0 / np.arange(1, len(dec._paths) + 1) ** 1.1
    sp = rng.choice(len(dec._paths), size=n, p=weights / weights.sum()).astype(np.int32)
    thread = ((np.arange(n) // 16) % 2).astype(np.uint16)
    times = np.empty(n, np.int64)
    for c in (0, 1):
        m = thread == c
        times[m] = np.cumsum(rng.integers(900_000, 1_100_000, int(m.sum()))) + c * 3_000_000
    # a leaf executes at one of a few lines of its function
    lines = np.where(rng.random(n) < line_share, (sp.astype(np.int64) * 7919) % 1999 + 1 + rng.integers(0, 4, n),
                     0).astype(np.int32)
    dec._label_names[:] = ["main", "worker 1"]
    dec._label_ids.update({"main": 0, "worker 1": 1})
    dec._sample_path.frombytes(sp.tobytes())
    dec._times.frombytes(times.tobytes())
    dec._sample_label.frombytes(thread.tobytes())
    dec._sample_line.frombytes(lines.tobytes())
    dec.stats.samples = n
    return dec


def table_bytes(p) -> int:
    """Bytes of a Profile's tables (samples, stacks, frames, funcs, lines; categories counted once)."""
    return sum(int(t.memory_usage(deep=True).sum()) for t in (p.funcs, p.frames, p.stacks, p.samples, p.lines))


def measure_build(dec: Decoder, meta=None):
    """(Profile, tracemalloc peak over the start while ``dec.profile`` ran, bytes left allocated after)."""
    gc.collect()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        p = dec.profile(dict(meta or {"backend": "walker"}))
        cur, peak = tracemalloc.get_traced_memory()
    finally:
        if started:
            tracemalloc.stop()
    return p, peak - base, cur - base


def test_the_build_peaks_at_about_its_own_tables_per_sample():
    """The Profile of a long walker capture is built a chunk at a time, in the final dtypes, and the
    samples table is handed over without a copy: per further sample, the build's peak grows by no more
    than the Profile's tables do (21 bytes: stack int32, time and weight int64, thread int8), where it
    grew by 115 bytes before (a per-sample node, a per-sample stack, a pandas copy of the table, the
    time sort of every column, the Profile's copy and validate()'s lexsort); and at 800 k samples the
    whole peak is within 1.25x the tables plus 2 MiB (the frame tables and chunk-sized temporaries)."""
    small, big = 200_000, 800_000
    p1, peak1, _ = measure_build(synthetic_decoder(small))
    tables1 = table_bytes(p1)
    del p1
    dec = synthetic_decoder(big)
    p2, peak2, kept2 = measure_build(dec)
    tables2 = table_bytes(p2)
    per_sample_peak = (peak2 - peak1) / (big - small)
    per_sample_tables = (tables2 - tables1) / (big - small)
    print(f"\npeak {peak2 / 2**20:.1f} MiB for {tables2 / 2**20:.1f} MiB of tables at {big} samples; "
          f"per further sample: peak {per_sample_peak:.1f} B, tables {per_sample_tables:.1f} B", end="")
    assert 20 <= per_sample_tables <= 23, per_sample_tables
    assert per_sample_peak <= 1.1 * per_sample_tables, (per_sample_peak, per_sample_tables)
    assert peak2 <= 1.25 * tables2 + (2 << 20), (peak2, tables2)
    assert kept2 <= 1.1 * tables2 + (2 << 20), (kept2, tables2)     # nothing else is left behind
    # and it is the capture's Profile: every sample once, in time order (stable), with its thread and path
    n = big
    times = np.frombuffer(dec._times, np.int64)
    order = np.argsort(times, kind="stable")
    sa = p2.samples
    assert len(sa) == n and int(sa["weight"].sum()) == n and (sa["weight"].to_numpy() == 1).all()
    assert np.array_equal(sa["time_ns"].to_numpy(), times[order])
    labels = np.asarray(dec._label_names, object)[np.frombuffer(dec._sample_label, np.uint16)[order]]
    assert np.array_equal(sa["thread"].astype(str).to_numpy(), labels.astype(str))
    assert list(sa["thread"].cat.categories) == sorted(dec._label_names)
    path_len = np.array([len(q) for q in dec._paths])
    depth = p2.stacks["depth"].to_numpy()[sa["stack"].to_numpy()]
    assert np.array_equal(depth + 1, path_len[np.frombuffer(dec._sample_path, np.int32)[order]])
    assert int(p2.lines["ticks"].sum()) == int((np.frombuffer(dec._sample_line, np.int32) != 0).sum())
    assert [str(t) for t in sa.dtypes] == ["int32", "int64", "int64", "category"]


def test_validate_checks_a_long_capture_without_full_size_temporaries():
    """validate() of a timed 800 k-sample Profile whose threads interleave allocates a bounded amount
    (chunk-sized temporaries), not arrays the size of the samples table (it allocated 16 MB here before)."""
    p = synthetic_decoder(800_000).profile({"backend": "walker"})
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        p.validate()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak <= (1 << 20), peak


def test_validate_finds_a_time_decrease_within_a_thread_across_chunks(monkeypatch):
    """The chunked check of time order within each thread sees a decrease that straddles a chunk
    boundary, and accepts threads that interleave out of order with each other."""
    import pandas as pd
    import nodeflame.frames.profile as model
    from nodeflame.frames.errors import InvariantError
    monkeypatch.setattr(model, "_CHUNK", 4)
    p = synthetic_decoder(50, n_paths=20, n_frames=30, n_native=4).profile({"backend": "walker"})
    t = p.samples["time_ns"].to_numpy()
    thr = pd.Categorical.from_codes(np.array([0, 1] * 25, np.int8), ["a", "b"])
    ok = np.empty(50, np.int64)
    ok[0::2] = np.arange(25) * 10          # thread a rises, thread b rises, b's times before a's
    ok[1::2] = np.arange(25) * 10 - 1000
    good = model.Profile(p.funcs, p.frames, p.stacks, pd.DataFrame(
        {"stack": p.samples["stack"], "time_ns": ok, "weight": 1, "thread": thr}), dict(p.meta))
    assert len(good.samples) == 50 and len(t) == 50
    for at in (8, 9, 3, 48):              # sample 8 (thread a) before 6, in another chunk; and others
        bad = ok.copy()
        bad[at] = bad[at - 2] - 1
        with pytest.raises(InvariantError, match="time_ns decreases within a thread"):
            model.Profile(p.funcs, p.frames, p.stacks, pd.DataFrame(
                {"stack": p.samples["stack"], "time_ns": bad, "weight": 1, "thread": thr}), dict(p.meta))
