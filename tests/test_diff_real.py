"""nf.diff on real captures: notebooks/demo/app.js captured live with the inspector backend,
ten times with --slow-render ("slow*") and ten times without ("fast*"), 1.5 s each, on a
loaded two-core machine (tests/data/diff_demo/*.cpuprofile).

Same workload twice (A/A): 90 pairs.  The slow -> fast pairs (A/B): only renderPage (and
its helpers renderRow, escapeHtml) changed; scoreRows, parse and makePayload did the same
work per request."""
import itertools
import warnings
from pathlib import Path

import pytest

import nodeflame as nf

DATA = Path(__file__).parent / "data" / "diff_demo"
STABLE = "^(makePayload|tokenize|parse) "    # per-request work that --slow-render does not touch


@pytest.fixture(scope="module")
def caps():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {p.stem: nf.read(p) for p in sorted(DATA.glob("*.cpuprofile"))}


def test_aa_real_captures_flag_nothing_in_at_least_90_percent_of_pairs(caps):
    pairs = [(a, b) for kind in ("fast", "slow")
             for a, b in itertools.combinations([k for k in caps if k.startswith(kind)], 2)]
    assert len(pairs) == 90
    with_flags, rows, flagged = 0, 0, 0
    for a, b in pairs:
        t = nf.diff(caps[a], caps[b]).numbers()
        with_flags += bool(t["significant"].any())
        rows += len(t)
        flagged += int(t["significant"].sum())
    # measured: 6 of 90 pairs, 8 of 2903 rows (the share-based test flagged 47 of 376 rows
    # in the first 12 pairs, 10 of those 12 pairs)
    assert with_flags <= 9, (with_flags, flagged, rows)
    assert flagged / rows < 0.01


def test_the_old_share_test_cried_wolf_on_the_same_pairs(caps):
    """What the diff did before (a 95 % Agresti-Caffo interval per row on shares, no correction for
    many rows or for autocorrelated samples): most A/A pairs flag something."""
    from nodeflame.frames.diff import change_interval
    names = [k for k in caps if k.startswith("fast")][:4] + [k for k in caps if k.startswith("slow")][:4]
    pairs = [(a, b) for a, b in itertools.combinations(names, 2) if a[:4] == b[:4]]
    with_flags = 0
    for a, b in pairs:
        t = nf.diff(caps[a], caps[b]).numbers()
        nb, na = caps[a].total, caps[b].total
        hit = False
        for what in ("self", "total"):
            lo, hi = change_interval(t[f"{what}_before"], nb, t[f"{what}_after"], na)
            hit |= bool(((lo > 0) | (hi < 0)).any())
        with_flags += hit
    assert with_flags >= 6, with_flags      # measured: 10 of 12


@pytest.mark.parametrize("i", range(10))
def test_ab_real_captures_flag_render_not_score_rows(caps, i):
    d = nf.diff(caps[f"slow{i}"], caps[f"fast{i}"], reference=STABLE)
    t = d.table().set_index("name")
    assert t.loc["renderPage", "significant"] and t.loc["renderPage", "status"] == "faster"
    assert not t.loc["scoreRows", "significant"] and t.loc["scoreRows", "status"] == "unchanged"
    # the share diff flags the untouched scoreRows as grown (its share rose when render shrank)
    s = nf.diff(caps[f"slow{i}"], caps[f"fast{i}"], normalize="total").table().set_index("name")
    assert s.loc["scoreRows", "total_delta_pp"] > 0


def test_ab_default_reference_does_not_guess(caps):
    """Without a named reference the largest consistent group of functions is taken as unchanged.
    On this workload two groups of about the same size changed against each other (the renderer
    and its helpers; payload, parsing and scoring), so the profiles cannot tell which one stayed
    the same: the diff says so and flags neither group (measured: scoreRows flagged in 0 of 10
    pairs, was 4 of 10 before the ambiguity check; renderPage in 1 of 10, warnings in 9)."""
    for i in range(10):
        d = nf.diff(caps[f"slow{i}"], caps[f"fast{i}"])
        t = d.table().set_index("name")
        assert not t.loc["scoreRows", "significant"]
        assert t.loc["renderPage", "status"] != "slower"
        if not t.loc["renderPage", "significant"]:
            assert d.warnings and "reference=" in d.warnings[0] and "warning:" in d.describe()
