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
    assert set(t["status"]) == {"unchanged"}
    assert list(t.columns[:2]) == ["significant", "status"]


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
    # parse and gc did not change: they are the reference, so render's after is 600 of the before's 1000
    assert d.normalize == "reference" and d.scale == pytest.approx(1.0)
    assert row["self_after_pct"] == pytest.approx(60.0)
    assert row["self_after_share_pct"] == pytest.approx(600 / 1400 * 100, abs=0.01)
    assert row["self_low_pp"] < row["self_delta_pp"] < row["self_high_pp"]
    assert row["status"] == "slower" and row["self_change_pct"] == pytest.approx(200.0)
    # idle's share fell from 40 % to 29 %, but its samples did not change: not flagged (no crying wolf)
    idle = t.set_index("name").loc["idle"]
    assert idle["self_delta_pp"] == 0 and not idle["significant"] and idle["status"] == "unchanged"
    # the classic share diff is one option away, and there idle's share fell
    shares = nf.diff(prof(BASE), prof(after), normalize="total")
    assert shares.normalize == "total" and shares.table().set_index("name").loc["idle", "self_delta_pp"] < 0


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


# ------------------------------------------------------- sampled (noisy) profiles

APP = "/srv/app.js"
# stacks of a small server and their true shares of CPU time
STACKS = {
    ("main", "handle", "parse"): 0.20, ("main", "handle", "render"): 0.15, ("main", "handle", "auth"): 0.10,
    ("main", "handle", "db", "query"): 0.15, ("main", "gc"): 0.05, ("main", "idle"): 0.25,
    ("main", "log"): 0.05, ("main", "handle", "escape"): 0.05,
}
LINES = {"main": 1, "handle": 10, "parse": 20, "render": 30, "auth": 40, "db": 50, "query": 60, "gc": 0,
         "idle": 0, "log": 70, "escape": 80}


def sampled(n, slower=None, factor=1.0, seed=0):
    """n samples drawn from STACKS, with the stacks whose leaf is in ``slower`` made ``factor`` x slower."""
    from nodeflame.frames.build import FrameTable, build_profile
    rng = np.random.default_rng(seed)
    keys = list(STACKS)
    w = np.array([STACKS[k] * (factor if k[-1] in (slower or ()) else 1.0) for k in keys])
    counts = rng.multinomial(n, w / w.sum())
    ft = FrameTable()
    offsets, flat, weights = [0], [], []
    for k, c in zip(keys, counts):
        if c:
            flat += [ft.add(f, APP if LINES[f] else "", LINES[f]) for f in k]
            offsets.append(len(flat))
            weights.append(int(c))
    return build_profile(ft, np.asarray(offsets), np.asarray(flat), weights=np.asarray(weights)).validate()


def test_known_slower_functions_lead_the_table_of_sampled_profiles():
    before = sampled(5000, seed=1)
    after = sampled(5000, slower={"render", "query"}, factor=2.5, seed=2)
    t = nf.diff(before, after).table()
    # the two slowed leaves and the callers that contain them lead; they are beyond noise
    assert set(t["name"].head(5)) >= {"render", "query"}
    by = t.set_index("name")
    for f in ("render", "query"):
        assert by.loc[f, "self_delta_pp"] > 5 and by.loc[f, "significant"] and by.loc[f, "status"] == "slower"
        assert by.loc[f, "self_ratio"] > 1.5
        assert by.loc[f, "self_low_pp"] > 0
    # the others did not change: their shares fell, but per unit of the unchanged remainder they are
    # within noise, and none is flagged
    others = by.drop(index=["render", "query", "db", "handle", "main"])
    assert (others["self_delta_pp"].abs() < 1.5).all()
    assert not others["significant"].any() and set(others["status"]) == {"unchanged"}
    # sorted by impact
    impact = np.maximum(t["self_delta_pp"].abs(), t["total_delta_pp"].abs()).to_numpy()
    assert (np.diff(impact) <= 1e-12).all()


def test_aa_diffs_flag_nothing_in_at_least_90_percent_of_trials():
    """Two samples of the same program (A/A), 50 trials: Benjamini-Hochberg over the rows keeps
    the chance of any false alarm per diff near 5 %."""
    trials_with_flags = 0
    for seed in range(50):
        t = nf.diff(sampled(2000, seed=100 + seed), sampled(2000, seed=200 + seed)).table()
        trials_with_flags += bool(t["significant"].any())
        # every interval holds its own estimate
        assert ((t["self_low_pp"] <= t["self_delta_pp"]) & (t["self_delta_pp"] <= t["self_high_pp"])).all()
    assert trials_with_flags <= 5, trials_with_flags


def test_a_function_made_20_percent_slower_is_flagged_in_at_least_90_percent_of_trials():
    found = 0
    for seed in range(50):
        d = nf.diff(sampled(20000, seed=300 + seed), sampled(20000, slower={"render"}, factor=1.2, seed=400 + seed))
        by = d.table().set_index("name")
        found += bool(by.loc["render", "significant"]) and by.loc["render", "status"] == "slower"
        flagged = set(by.index[by["significant"]]) - {"render", "handle", "main"}
        assert not flagged, (seed, flagged)      # its callers contain it; nothing else is flagged
    assert found >= 45, found


def test_normalisations_work_duration_and_total():
    before, after = prof(BASE), prof(dict(BASE, **{"main;server;handle;render": 600}))
    # the user says the after capture served twice the requests: render per request went from 200 to 300
    d = nf.diff(before, after, work=(100, 200))
    assert d.normalize == "work" and d.table().attrs["normalize"] == "work"
    r = d.table().set_index("name").loc["render"]
    assert r["self_change_pct"] == pytest.approx(50.0) and r["status"] == "slower"
    assert d.table().set_index("name").loc["parse", "status"] == "faster"   # 300 per 100 -> 300 per 200
    with pytest.raises(NodeflameError, match="timed"):
        nf.diff(before, after, normalize="duration")
    with pytest.raises(ValueError):
        nf.diff(before, after, normalize="bogus")
    assert "normalised by" in d.describe() and "Benjamini" in d.describe()


def test_colour_follows_the_status():
    """deltas() (what colours the flame graphs) has the sign of the status: a caller whose own
    self time rose a little while its total fell well beyond noise is blue, like its status."""
    d = nf.diff(sampled(20000, seed=1), sampled(20000, slower={"render", "parse"}, factor=0.3, seed=2))
    t = d.numbers().set_index("name")
    s = t["status"].astype(str)
    sign = np.sign(t["delta_pp"])
    assert (sign[s == "slower"] > 0).all() and (sign[s == "faster"] < 0).all()
    assert s["handle"] == "faster" and t.loc["handle", "delta_pp"] == t.loc["handle", "total_delta_pp"]


def test_table_is_rounded_and_numbers_are_not():
    d = nf.diff(sampled(3000, seed=1), sampled(3000, slower={"render"}, factor=2, seed=2))
    t, full = d.table(), d.numbers()
    assert list(t.columns[:6]) == ["significant", "status", "name", "file", "line", "kind"]
    assert (t["self_delta_pp"] == t["self_delta_pp"].round(2)).all()
    assert not (full["self_delta_pp"] == full["self_delta_pp"].round(2)).all()
    assert "q" in t.columns and t["q"].between(0, 1).all()


def test_sampled_profile_diffed_with_itself_is_zero_and_not_significant():
    p = sampled(3000, seed=5)
    t = nf.diff(p, p).table()
    assert len(t) == len(p.funcs)
    assert (t["self_delta_pp"] == 0).all() and (t["total_delta_pp"] == 0).all()
    assert (t["self_ratio"] == 1).all() and not t["significant"].any()
    assert (t["self_low_pp"] < 0).all() and (t["self_high_pp"] > 0).all()   # an honest, non-zero width


def test_table_columns_and_head():
    d = nf.diff(prof(BASE), prof(dict(BASE, **{"main;server;handle;render": 600})))
    cols = set(d.table().columns)
    assert {"name", "file", "line", "kind", "self_before_pct", "self_after_pct", "total_before_pct",
            "total_after_pct", "self_delta_pp", "total_delta_pp", "self_ratio", "total_ratio",
            "self_low_pp", "self_high_pp", "total_low_pp", "total_high_pp", "significant", "status"} <= cols
    assert len(d.table(3)) == 3
    assert "changed beyond noise" in repr(d) and "normalised by" in repr(d)


def test_diff_svg_is_red_blue_grey(tmp_path):
    import re
    before = sampled(5000, seed=1)
    after = sampled(5000, slower={"render"}, factor=3, seed=2)
    out = tmp_path / "d.svg"
    nf.diff(before, after).write(out)
    svg = out.read_text()
    fills = {}
    for name, fill in re.findall(r"<title>(\S+)[^<]*</title><rect [^>]*fill=\"(#[0-9a-f]{6})\"", svg):
        fills.setdefault(name, fill)
    r, g, b = (int(fills["render"][i:i + 2], 16) for i in (1, 3, 5))
    assert r > 200 and g < 200 and b < 200                    # grew: red
    # idle's share shrank, but its own samples did not change: grey, not blue
    assert fills["idle"][1:3] == fills["idle"][3:5] == fills["idle"][5:7]
    # a function that got faster: blue
    d2 = nf.diff(sampled(5000, seed=1), sampled(5000, slower={"parse"}, factor=0.3, seed=2))
    d2.write(tmp_path / "faster.svg")
    fills2 = dict(re.findall(r"<title>(\S+)[^<]*</title><rect [^>]*fill=\"(#[0-9a-f]{6})\"", (tmp_path / "faster.svg").read_text()))
    r, g, b = (int(fills2["parse"][i:i + 2], 16) for i in (1, 3, 5))
    assert b > 200 and r < 200
    # within noise: grey (escape's share moved by chance only)
    d = nf.diff(sampled(2000, seed=7), sampled(2000, seed=8))
    d.write(tmp_path / "noise.svg")
    t = d.table().set_index("name")
    same = [n for n in t.index if not t.loc[n, "significant"] and n in ("parse", "auth", "escape", "log")]
    assert same, "no function stayed within noise"
    noisy = open(tmp_path / "noise.svg").read()
    for n in same:
        fill = re.search(rf"<title>{n} [^<]*</title><rect [^>]*fill=\"(#[0-9a-f]{{6}})\"", noisy).group(1)
        assert fill[1:3] == fill[3:5] == fill[5:7], (n, fill)   # grey
