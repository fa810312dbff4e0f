"""nf.diff: exact matching, normalisation, noise intervals, diff outputs."""
import numpy as np
import pytest

import nodeflame as nf
from nodeflame.frames.diff import change_interval
from nodeflame.frames.errors import NodeflameError


def prof(counts: dict) -> nf.Profile:
    return nf.read("".join(f"{k} {v}\n" for k, v in counts.items() if v).encode(), format="folded")


BASE = {"main;server;handle;parse": 300, "main;server;handle;render": 200, "main;server;gc": 100,
        "main;idle": 400}


def test_diff_with_itself_is_all_zero():
    p = prof(BASE)
    t = nf.diff(p, p).table()
    assert (t["self_delta_pp"] == 0).all() and (t["total_delta_pp"] == 0).all()
    assert not t["significant"].any()
    assert set(t["status"]) == {"same"}


def test_functions_made_slower_lead_the_table():
    after = dict(BASE)
    after["main;server;handle;render"] = 600   # render got 3x slower
    d = nf.diff(prof(BASE), prof(after))
    t = d.table()
    assert t["name"].iloc[0] in ("render", "handle", "server")
    top_self = t.sort_values("self_delta_pp", ascending=False).iloc[0]
    assert top_self["name"] == "render" and top_self["significant"]
    row = t.set_index("name").loc["render"]
    assert row["self_before_pct"] == pytest.approx(20.0)
    assert row["self_after_pct"] == pytest.approx(600 / 1400 * 100)
    assert row["self_low_pp"] < row["self_delta_pp"] < row["self_high_pp"]
    # normalised by totals: idle did not change in samples but its share fell
    assert t.set_index("name").loc["idle", "self_delta_pp"] < 0


def test_new_and_gone_functions_are_rows():
    before = dict(BASE, **{"main;server;legacy": 50})
    after = dict(BASE, **{"main;server;fast": 50})
    t = nf.diff(prof(before), prof(after)).table().set_index("name")
    assert t.loc["legacy", "status"] == "gone" and t.loc["legacy", "self_after"] == 0
    assert t.loc["fast", "status"] == "new" and np.isinf(t.loc["fast", "self_ratio"])


def test_matching_is_exact_by_name_file_line():
    from nodeflame.frames.build import FrameTable, build_profile
    def one(line):
        ft = FrameTable()
        f = ft.add("handler", "/app/x.js", line)
        return build_profile(ft, np.array([0, 1]), np.array([f]), weights=[100])
    t = nf.diff(one(10), one(11)).table()
    assert len(t) == 2 and set(t["status"]) == {"new", "gone"}


def test_interval_width_matches_sampling_theory():
    # a function at 5 % of 1000 samples: a single share moves ~±1.35 points; a difference of two ~±1.9
    lo, hi = change_interval(50, 1000, 50, 1000)
    assert 1.7 < 100 * hi < 2.1 and -2.1 < 100 * lo < -1.7


def test_noise_is_flagged_as_noise_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    n, p = 1000, 0.05
    x1, x2 = rng.binomial(n, p, 4000), rng.binomial(n, p, 4000)
    lo, hi = change_interval(x1, n, x2, n)
    covered = np.mean((lo <= 0) & (hi >= 0))
    assert 0.93 < covered < 0.99
    # and a real change of 3 points is found almost always
    x3 = rng.binomial(n, 0.08, 4000)
    lo, hi = change_interval(x1, n, x3, n)
    assert np.mean(lo > 0) > 0.75


def test_diff_writes_two_count_folded(tmp_path):
    after = dict(BASE, **{"main;server;fast": 50})
    d = nf.diff(prof(BASE), prof(after))
    out = tmp_path / "d.folded"
    d.write(out)
    lines = out.read_text().splitlines()
    assert "main;server;fast 0 50" in lines
    assert "main;idle 400 400" in lines
    # our folded reader reads difffolded output as the after profile
    again = nf.read(out)
    assert again.total == prof(after).total


def test_empty_side_is_a_clear_error():
    p = prof(BASE)
    empty = p.focus("^nothing-matches$")
    with pytest.raises(NodeflameError, match="empty profile"):
        nf.diff(p, empty)
