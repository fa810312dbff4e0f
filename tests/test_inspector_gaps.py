"""The inspector's collections during a capture (Profiler.stop -> Profiler.start every collect_every s)
leave stretches in which V8 sampled nothing; the Profile says where they are (meta
``collection_gaps_ns``, per thread, on the samples' clock) and warns when they add up to more than 1 %
of the main thread's time.  Captured live on a warmed workload whose helpers TurboFan inlines."""
from __future__ import annotations

import numpy as np
import pytest

import nodeflame as nf
from nodeflame.capture.inspector import _merge_chunks

from test_inspector_warm import start  # noqa: F401  (fixture)
from walker_helpers import node_for


def _part(start, deltas, end, root=1):
    return {"nodes": [{"id": root, "callFrame": {"functionName": "(root)"}, "children": [root + 1]},
                      {"id": root + 1, "callFrame": {"functionName": "f"}}],
            "startTime": start, "endTime": end, "samples": [root + 1] * len(deltas), "timeDeltas": deltas}


def test_gaps_run_from_a_parts_last_sample_to_the_next_parts_first():
    a = _part(1000, [10, 10, 10], 1100)              # samples at 1010, 1020, 1030; stopped at 1100
    b = _part(1150, [5, 10], 1300, root=7)           # 1155, 1165
    empty = {"nodes": _part(0, [], 0)["nodes"], "startTime": 1400, "endTime": 1500, "samples": [], "timeDeltas": []}
    c = _part(1600, [1], 1700)                       # 1601
    prof, gaps = _merge_chunks([a, b, empty, c])
    assert gaps == [(1030, 1155), (1165, 1400), (1500, 1601)]
    t = np.cumsum([prof["startTime"]] + prof["timeDeltas"])[1:]
    assert list(t) == [1010, 1020, 1030, 1155, 1165, 1601]
    assert _merge_chunks([a])[1] == [] and _merge_chunks([])[0] is None
    # a negative timeDelta (V8 writes one now and then): the part's latest sample is not its last one,
    # and the gap starts after it (seen in CI: a sample inside a reported gap, on node 24)
    d = _part(1000, [10, 30, -15], 1100)             # samples at 1010, 1040, 1025
    assert _merge_chunks([d, b])[1] == [(1040, 1155)]


@pytest.mark.parametrize("major", ("18", "24"))
def test_a_capture_with_collections_says_where_it_sampled_nothing(start, major):  # noqa: F811
    w = start(node_for(major), "inline.js", "--warm-ms=2000")
    w.wait_for(lambda m: m.get("warm") is True, 90)
    prof = nf.capture(w.pid, 3.0, backend="inspector", hz=1000, backend_options={"collect_every": 0.5})
    gaps = prof.meta["collection_gaps_ns"]["main"]
    t = np.sort(prof.samples["time_ns"].to_numpy())
    # a collection every 0.5 s of a 3 s capture: five, or four when the last falls at the end (and fewer
    # only when a collection waited on a slow target past the next one's time)
    assert 3 <= len(gaps) <= 6, gaps
    ts = set(t.tolist())
    for (a, b), nxt in zip(gaps, gaps[1:] + [None]):
        # each gap runs from one sample to the next one: nothing was sampled inside it
        assert a < b and a in ts and b in ts, (a, b)
        assert not ((t > a) & (t < b)).any()
        assert nxt is None or b <= nxt[0]
    period = prof.meta["period_ns"]
    lost = sum(max(0, b - a - period) for a, b in gaps)
    warned = [x for x in prof.meta["warnings"] if "unsampled" in x]
    assert bool(warned) == (lost > 0.01 * prof.meta["profile_duration_ns"]), (warned, lost, gaps)
    # without collections there is nothing to report
    w.send("stats")
    quiet = nf.capture(w.pid, 1.0, backend="inspector", hz=1000, backend_options={"collect_every": 0})
    assert "collection_gaps_ns" not in quiet.meta
    assert not any("unsampled" in x for x in quiet.meta["warnings"])
