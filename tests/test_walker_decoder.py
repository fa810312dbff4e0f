"""The walker's Decoder when it lags: samples are decoded inline on the sampler thread while the decoder
thread decodes queued ones, both under the decoder's one lock.

A real node process (tests/workloads/walker_main.js, main thread and a worker) is sampled by the
Sampler directly with ``max_lag_ns=0`` and a decoder thread slowed down before it takes each sample,
so that the sampler thread keeps decoding inline while the decoder thread is also decoding.  The
profile must then be exactly as consistent as an undisturbed one: sample counts agree with the
statistics, every sample's path, time and thread label belong together, leaf lines point at the right
samples, validate() passes and the workload's hot functions are named.
"""
from __future__ import annotations

import collections
import os
import threading
import time

import numpy as np
import pytest

from nodeflame.capture.walker import perfevent
from nodeflame.capture.walker.decoder import Decoder

from walker_helpers import Workload, assert_untouched, js_named_right, need_ptrace, node_for

HOT = ("plainHot", "libWork", "função", "計算する", "handlers.onTick", "arrowHot", "workerSpin")


@pytest.fixture(scope="module")
def node():
    need_ptrace()
    return node_for("20")


def _lagging_capture(pid, engine, seconds, monkeypatch):
    """Sample ``pid`` with a decoder forced to lag; (sampler, {thread name: decodes}, max decodes at once)."""
    from nodeflame.capture.v8layout import layout_for_pid
    from nodeflame.capture.walker.sampler import Sampler

    inside = []                       # threads inside Decoder._decode right now
    by_thread = collections.Counter()
    overlap = [0]
    decode, _decode = Decoder.decode, Decoder._decode

    def slow_decode(self, t, sampled):
        # the decoder thread waits before each sample (outside the lock): it lags, and with
        # max_lag_ns=0 the sampler thread decodes inline meanwhile
        if threading.current_thread().name.startswith("nodeflame-decode-"):
            time.sleep(0.002)
        return decode(self, t, sampled)

    def watched_decode(self, t, sampled):
        inside.append(1)
        overlap[0] = max(overlap[0], len(inside))
        by_thread[threading.current_thread().name.split("-")[1]] += 1
        try:
            time.sleep(0)             # a thread switch here, were the lock missing, would interleave
            return _decode(self, t, sampled)
        finally:
            inside.pop()
    monkeypatch.setattr(Decoder, "decode", slow_decode)
    monkeypatch.setattr(Decoder, "_decode", watched_decode)

    lay = layout_for_pid(pid).check_supported()
    s = Sampler(pid, lay, hz=1000, duration=seconds, engine=engine, max_lag_ns=0)
    th = threading.Thread(target=s.run, name=f"nodeflame-walker-{pid}", daemon=True)
    th.start()
    th.join(seconds + 60)
    assert not th.is_alive(), "the sampler did not end"
    assert s.error is None, "".join(__import__("traceback").format_exception(s.error))
    return s, by_thread, overlap[0]


@pytest.mark.parametrize("engine", ["ptrace", "perf"])
def test_inline_decoding_from_two_threads_keeps_the_profile_consistent(node, engine, monkeypatch):
    if engine == "perf" and perfevent.unavailable():
        pytest.skip(f"the perf engine cannot run here: {perfevent.unavailable()}")
    w = Workload(node, "60")
    try:
        from nodeflame.capture.walker import BACKEND
        why = BACKEND.available(w.pid)
        if why:
            pytest.skip(f"the walker cannot capture here: {why}")
        time.sleep(1.0)                       # the worker thread running JS, as in test_walker_engines
        s, by_thread, most_at_once = _lagging_capture(w.pid, engine, 2.0, monkeypatch)
        assert_untouched(w.pid)
    finally:
        w.close()
    monkeypatch.undo()
    dec = s.decoder

    # both threads decoded, never two at once
    assert by_thread["decode"] > 0 and by_thread["walker"] > 0, dict(by_thread)
    assert most_at_once == 1, f"{most_at_once} threads decoded at once: the lock was not taken"
    assert dec.stats.inline_decodes > 0

    p = s.profile({"pid": w.pid})
    p.validate()
    m = p.meta["walker"]
    n = len(p.samples)
    # counts: profile, statistics and the decoder's aligned lists agree
    assert n >= 300, f"only {n} samples in 2 s at 1 kHz"
    assert m["samples"] == s.samples == n == len(dec.paths) == len(dec.times) == len(dec.labels)
    # (a sample that cannot be decoded is counted and dropped, whichever thread decoded it)
    assert m["decode_errors"] <= n // 100, dec.stats.decode_error
    assert m["inline_decodes"] == dec.stats.inline_decodes
    assert n <= m["perf_samples"] + m["ptrace_samples"] + m["idle_reused"] <= n + m["decode_errors"], m
    assert sum(by_thread.values()) == n + m["decode_errors"]
    assert collections.Counter(p.samples["thread"].astype(str)) == collections.Counter(dec.labels)
    assert set(m["threads"]) == {"main", "worker 1"}, m["threads"]
    # per sample, the profile's row is the decoder's path, time and label of that index (the profile's
    # samples are in time order; inline decoding appended some before older queued ones)
    order = np.argsort(np.asarray(dec.times), kind="stable")
    assert p.samples["time_ns"].to_numpy().tolist() == [dec.times[k] for k in order]
    assert p.samples["thread"].astype(str).tolist() == [dec.labels[k] for k in order]
    assert 0 <= min(dec.times) and max(dec.times) < 3e9
    stack = p.samples["stack"].to_numpy()
    depth = p.stacks["depth"].to_numpy()[stack]
    assert (depth + 1).tolist() == [len(dec.paths[k]) for k in order]
    leaf_func = p.frames["func"].to_numpy()[p.stacks["frame"].to_numpy()[stack]]
    leaf_name = p.funcs["name"].astype(str).to_numpy(object)[leaf_func]
    keys = dec.ft.keys
    for i, k in enumerate(order):
        if dec.paths[k][-1] >= 0:
            assert leaf_name[i] == keys[dec.paths[k][-1]][0], (i, k)
    files = {}
    for k, ids in enumerate(dec.paths):
        here = {os.path.basename(keys[i][1]) for i in ids if i >= 0}
        if "walker_worker.js" in here:
            files.setdefault(dec.labels[k], set()).add("walker_worker.js")
        if "walker_main.js" in here:
            files.setdefault(dec.labels[k], set()).add("walker_main.js")
    assert files.get("main") == {"walker_main.js"}, files
    assert files.get("worker 1") == {"walker_worker.js"}, files
    # a leaf line belongs to a sample whose leaf is a JS frame executing that line
    for k, line in dec.leaf_lines:
        leaf = keys[dec.paths[k][-1]]
        assert leaf[4] in ("js", "builtin") and line > 0 and leaf[2] == line, (k, leaf, line)
    # the workload's hot functions, named right
    names = set(p.funcs["name"].astype(str))
    assert not [h for h in HOT if h not in names], sorted(names & set(HOT))
    share, js_n, wrong = js_named_right(p)
    assert share >= 0.95, f"{share:.1%} of {js_n} JS samples right; wrong: {wrong}"


# ------------------------------------------------------------------------------ memory per sample
ENOUGH = 3000       # samples: the paths repeat long before (~200 distinct ones by then)


def _running_js(w, timeout=30):
    """Wait until the workload has run every task at least once (its own count of rounds)."""
    end = time.monotonic() + timeout
    while w.timing()[0] < 1:
        assert time.monotonic() < end, "the workload ran no round"
        time.sleep(0.05)


def test_a_capture_holds_few_bytes_per_sample(node):
    """Issue 15's long-capture bound, on a capture at 1 kHz of 3000 samples or 15 s (the 10-minute figure is
    bench/bench_long_capture.py's): what the decoder holds per sample and per distinct path, counted
    from its own structures (not RSS, which a test process shares with everything else), relative to
    the samples taken -- and the Profile built from it holds the same samples."""
    import sys
    from nodeflame.capture import procutil
    from nodeflame.capture.base import CaptureOptions, get_backend
    if perfevent.unavailable():
        pytest.skip(f"the perf engine cannot run here: {perfevent.unavailable()}")
    w = Workload(node, "60")
    try:
        b = get_backend("walker")
        why = b.available(w.pid)
        if why:
            pytest.skip(f"the walker cannot capture here: {why}")
        _running_js(w)
        s = b.start(procutil.describe(w.pid), CaptureOptions(hz=1000, duration=15))
        try:
            # until the decoder holds ENOUGH samples, 15 s at most (as long as the capture was): a
            # sampler too slow for 500 samples in 15 s still fails below
            end = time.monotonic() + 15
            while s.sampler.decoder.stats.samples < ENOUGH and time.monotonic() < end:
                time.sleep(0.05)
            p = s.stop()
        finally:
            s.close()
        assert_untouched(w.pid)
    finally:
        w.close()
    dec = s.sampler.decoder
    n = dec.stats.samples
    assert n >= 500, f"only {n} samples in 15 s"
    assert int(p.samples["weight"].sum()) == n == len(dec.times)
    # per sample: a path index, a time, a label code and a line, in arrays (18 bytes; no Python objects)
    per_sample = dec.nbytes() / n
    assert per_sample <= 20, per_sample
    for a in (dec._sample_path, dec._times, dec._sample_label, dec._sample_line):
        assert type(a).__name__ == "array" and len(a) == n
    # distinct paths: each kept once (a tuple of shared ints), far fewer than samples once the workload
    # repeats itself; what they hold, spread over the samples, stays well under the 100-byte bound
    held = sum(sys.getsizeof(t) for t in dec._paths) + sys.getsizeof(dec._path_ids) + sys.getsizeof(dec._paths)
    print(f"\n{n} samples: arrays {per_sample:.1f} B/sample, {len(dec._paths)} distinct paths holding "
          f"{held / n:.1f} B/sample", end="")
    assert len(dec._paths) <= 0.25 * n, (len(dec._paths), n)
    assert (held + dec.nbytes()) / n <= 100, ((held + dec.nbytes()) / n, len(dec._paths), n)
    # native pcs of one function share one placeholder
    assert len(dec.native_keys) <= len(dec.native_ids)
    p.validate()
