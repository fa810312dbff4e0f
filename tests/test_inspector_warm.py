"""The inspector backend on warmed processes (issue 9): leaf-inlined time re-attributed, unknown OSR
code detected.

tests/workloads/inline.js (two phases whose helpers TurboFan/Maglev inline, each phase timing itself)
is captured by pid after its warm-up on node 18, 20, 22 and 24.  The truth is taken over exactly the
profile's window: a thread asks the workload for its stats back to back during the capture, the
replies are put on the profile's clock (both CLOCK_MONOTONIC), and the shares are compared over the
samples between the first and the last reply inside the profile.  tests/workloads/osr.js runs one long
call whose loop was OSR-compiled before the capture.  tests/workloads/cross.js has a helper in another
file (cross_lib.js) that V8 inlines into every call of it.
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pandas as pd
import pytest

import nodeflame as nf
from nodeflame.capture import procutil
from nodeflame.frames.inline_split import Script, loaded_urls, reattribute_call_lines, reattribute_inlined
from nodeflame.frames.readers.cpuprofile import read_cpuprofile

from json_workload import JsonWorkload as Proc
from walker_helpers import node_for, stack_has

MAJORS = ("18", "20", "22", "24")


@pytest.fixture
def start():
    procs = []

    def go(*a):
        p = Proc(*a)
        procs.append(p)
        return p
    yield go
    for p in procs:
        p.kill()


def oncpu_ns(pid):
    with open(f"/proc/{pid}/task/{pid}/schedstat") as fh:
        return int(fh.read().split()[0])


def _poll_stats(w, stop, replies):
    """Ask for stats back to back until ``stop``: (monotonic ns at receipt, stats) each."""
    n = len(w.msgs)
    while not stop.is_set():
        w.send("stats")
        i = w.wait_for(lambda m: "geometry" in m, 10, after=n)
        replies.append(w.msgs[i])
        n = i + 1


# ----------------------------------------------------------------------------------- inline.js
@pytest.mark.parametrize("major", MAJORS)
def test_warm_inlined_phases_match_the_workload(start, major):
    node = node_for(major)
    w = start(node, "inline.js", "--warm-ms=4000")
    w.wait_for(lambda m: m.get("warm") is True, 90)
    stop, replies = threading.Event(), []
    poller = threading.Thread(target=_poll_stats, args=(w, stop, replies), daemon=True)
    c0 = oncpu_ns(w.pid)
    m0 = time.monotonic_ns()
    poller.start()
    try:
        # 4 s at 2 kHz (~6,000 samples): the samples fall at effectively random points of the ~250 us
        # rounds, so a phase's share has the binomial error sqrt(p(1-p)/n): ~1 pp at the 2,700 samples of
        # 3 s at 1 kHz, which put the 3 pp bound at 3 sigma (node 18 under load: lexer +0.8 pp on average,
        # sd 1.15 over 12 captures, +3.6 once in CI); ~0.65 pp here
        prof = nf.capture(w.pid, 4.0, backend="inspector", hz=2000)
    finally:
        stop.set()
        poller.join(15)
    oncpu = (oncpu_ns(w.pid) - c0) / (time.monotonic_ns() - m0)

    # the replies on the profile's clock: t is hrtime since the workload's start, received a little later
    offset = min(recv - m["t"] for recv, m in replies)
    t = prof.samples["time_ns"].to_numpy()
    inside = [m for _recv, m in replies if t.min() <= m["t"] + offset <= t.max()]
    assert len(inside) >= 10, f"only {len(inside)} stats replies inside the profile"
    # Compared over the stretches between two replies (~5 ms each) in which the sampler missed no more than
    # a few samples in a row (no two consecutive samples more than five periods apart).  The workload's
    # truth is wall-clock time: a hole in the samples (the thread descheduled on a busy machine, whose
    # pending SIGPROFs then make one sample; the mid-capture collection's Profiler.stop -> start, tens to
    # hundreds of ms when the client is slow to send the start) is time the truth charges to whatever
    # phase ran and the profile cannot see.  Which stretches have holes does not depend on the phase, so
    # leaving them out removes noise, not a bias.  Measured on node 18 (V8 10.2) under load, with each
    # sample's phase taken from the workload's own per-round hrtime: the lines of round's self time match
    # the samples' phases (geometry lines 275 / lexer lines 1024 for 277 / 1029 samples taken in geometry
    # / lexer; 16 captures alike), while over the whole window lexer was 3.7 pp over (holes of 62 and 52
    # ms in geometry) and 1.6 pp over the stretches kept here.
    srt = np.sort(t)
    gap = 5 * prof.meta["period_ns"]
    sel = np.zeros(len(t), bool)
    truth_ns, seen_ns = {"geometry": 0, "lexer": 0}, 0
    for a, b in zip(inside[:-1], inside[1:]):
        lo, hi = a["t"] + offset, b["t"] + offset
        i0 = max(int(np.searchsorted(srt, lo, "right")) - 1, 0)
        i1 = min(int(np.searchsorted(srt, hi, "left")) + 1, len(srt))
        if i1 - i0 < 2 or np.diff(srt[i0:i1]).max() > gap:
            continue
        sel |= (t >= lo) & (t < hi)
        seen_ns += b["t"] - a["t"]
        for ph in truth_ns:
            truth_ns[ph] += b[ph] - a[ph]
    window_ns = inside[-1]["t"] - inside[0]["t"]
    seen = f"{seen_ns / 1e9:.2f} s of the {window_ns / 1e9:.2f} s window without a hole in the samples"
    st, wt = prof.samples["stack"].to_numpy()[sel], prof.samples["weight"].to_numpy()[sel]
    total = wt.sum()
    if total < 200 and oncpu < 0.7:
        pytest.skip(f"machine overloaded (the workload ran {100 * oncpu:.0f} % of the time): only {total} "
                    f"samples in the stretches without a hole ({seen})")
    assert total >= 200, (total, seen)
    truth = {ph: 100.0 * v / seen_ns for ph, v in truth_ns.items()}

    def share(name):
        return 100.0 * wt[stack_has(prof, name, "inline.js")[st]].sum() / total

    got = {ph: share(ph) for ph in truth}
    helpers = {"lexer": share("parseToken"), "geometry": share("norm")}
    # samples charged to chunk's own lines: node 18 (V8 10.2) charges part of the time in round(), inlined
    # into chunk(), to chunk's line that calls it; positionTicks name that line of chunk and nothing of
    # what ran there, so no split can give it back.  On 20-24 that share is a fraction of a percent.
    leaf_func = prof.frames["func"].to_numpy()[prof.stacks["frame"].to_numpy()]
    names = prof.funcs["name"].astype(str).to_numpy()
    unsplit = 100.0 * wt[names[leaf_func[st]] == "chunk"].sum() / total
    msg = (f"node {major}: captured {got}, the workload's own timing {truth}; helpers {helpers}; charged "
           f"to chunk's own lines {unsplit:.2f} %; thread on CPU {100 * oncpu:.0f} %; "
           f"{seen}; inline_split {prof.meta.get('inline_split')}")
    # each phase within 3 pp of the workload's own timing, except that a phase may lack what was charged to
    # chunk's calling line (V8 10.2's known limit, bounded itself: 8 pp on node 18, 1.5 pp on 20-24)
    tol = 3.0
    wrong = [ph for ph in truth if not truth[ph] - tol - unsplit <= got[ph] <= truth[ph] + tol]
    if wrong or unsplit > (8.0 if major == "18" else 1.5):
        if oncpu < 0.7:
            pytest.skip(f"machine overloaded (the workload ran {100 * oncpu:.0f} % of the time): {msg}")
        raise AssertionError(msg)
    # the helper that does most of each phase's work holds most of that phase's samples
    assert helpers["lexer"] > 0.5 * got["lexer"] and helpers["geometry"] > 0.5 * got["geometry"], msg

    # what was re-attributed is marked and counted
    m = prof.meta
    tier = prof.frames["tier"].astype(str).to_numpy()[prof.stacks["frame"].to_numpy()]
    inl = tier == "inlined"
    pre = prof.stacks["prefix"].to_numpy()
    below = inl.copy()
    for i in range(len(pre)):
        if pre[i] >= 0 and below[pre[i]]:
            below[i] = True
    moved = prof.samples["weight"].to_numpy()[below[prof.samples["stack"].to_numpy()]].sum()
    assert m["inline_split"]["enabled"] and m["inlined_reattributed"] == moved > 0, msg
    assert set(prof.frames["tier"].astype(str)) <= {"", "inlined"}
    # no OSR warning on this workload, and the pause after the capture was short
    assert not any("on-stack replacement" in x for x in m["warnings"]), (m["warnings"], m["osr_unknown"])
    assert m["inline_split"]["pause_ms"]["coverage"] < 2000, m["inline_split"]
    # the target is left running and answering, its inspector closed
    n = len(w.msgs)
    w.send("stats")
    w.wait_for(lambda x: "geometry" in x, 10, after=n)
    assert w.proc.poll() is None and procutil.listening_ports(w.pid) == []


# ----------------------------------------------------------------------------------- osr.js
@pytest.mark.parametrize("major", MAJORS)
def test_osr_code_compiled_before_the_capture_is_put_back_under_its_function(start, major):
    node = node_for(major)
    # a report every 250 ms (its default, 20 ms, wrote 100 lines in the capture: under load in CI those
    # writes took 2.8 % of the samples, which V8 shows under main, who also writes: they cannot be told
    # from main's own and the truth below allows 3 %)
    w = start(node, "osr.js", "--warm-ms=3000", "--run-ms=60000", "--report-ms=250")
    first = w.wait_for(lambda m: m.get("warm") is True, 60)
    prof = nf.capture(w.pid, 2.0, backend="inspector", hz=1000)
    # spin() was running the whole time (its reports straddle the profile)
    t = prof.samples["time_ns"].to_numpy()
    last = w.wait_for(lambda m: "spin" in m, 10, after=len(w.msgs))
    offset = min(recv - m["t"] for recv, m in w.msgs[first:last + 1] if m and "t" in m)
    times = [m["t"] + offset for _recv, m in w.msgs[first:last + 1] if m and "t" in m]
    assert min(times) < t.min() and max(times) > t.max()
    assert w.proc.poll() is None

    # the truth: every sample of the window is inside spin() (V8 charged the samples of its OSR code,
    # which it did not know, to main's line that calls it: 0 % spin, 100 % main, before they are
    # put back); digest, which spin calls, is inside it too
    st, wt = prof.samples["stack"].to_numpy(), prof.samples["weight"].to_numpy()
    in_spin = stack_has(prof, "spin", "osr.js")[st]
    in_main = stack_has(prof, "main", "osr.js")[st]
    in_digest = stack_has(prof, "digest", "osr.js")[st]
    osr = prof.meta["osr_unknown"]
    msg = (f"node {major}: meta {osr}; warnings {prof.meta['warnings']}\n{prof.text()}")
    assert wt[in_main].sum() >= 0.97 * wt.sum(), msg
    assert wt[in_main & in_spin].sum() >= 0.97 * wt[in_main].sum(), msg
    # (when TurboFan did not inline it into the loop; a sample taken in digest's prologue, before its frame
    # is set up, skips spin's frame: a few)
    assert wt[in_digest & ~in_spin].sum() <= max(3, 0.02 * wt[in_digest].sum()), msg
    warn = [x for x in prof.meta["warnings"] if "on-stack replacement" in x]
    if not osr:
        # V8 compiled the loop again after the capture started (a late tier-up on a loaded machine):
        # the profiler knows that code, spin has its samples, and nothing may be claimed
        assert not warn, msg
    else:
        f = osr[0]
        assert len(osr) == 1 and (f["caller"], f["callee"]) == ("main", "spin"), msg
        # what was put back: main's self samples on the line of the call, and digest's subtree
        assert f["moved"] >= 0.9 * f["samples"] and f["share"] == pytest.approx(f["samples"] / wt.sum()), msg
        assert len(warn) == 1 and f"({100 * f['share']:.1f} %)" in warn[0] and "put back" in warn[0], msg
        if f["share"] > 0.5:
            # the OSR code V8 did not know ran the whole window: spin is the frame added for it
            tiers = prof.frames["tier"].astype(str).to_numpy()[prof.stacks["frame"].to_numpy()[st]]
            assert (tiers[in_spin & ~in_digest] == "optimized").mean() > 0.9, msg
        # else V8 compiled the loop again early in the capture (CI, node 22 under load: 8 samples of 1,318
        # on main's line before it knew the new code): those few were put back, and the truth above holds
    assert procutil.listening_ports(w.pid) == [] and w.proc.poll() is None


# ----------------------------------------------------------------------------------- cross.js
@pytest.mark.parametrize("major", MAJORS)
def test_helper_inlined_from_another_file_gets_its_samples(start, major):
    """mix (cross_lib.js) is inlined into every call of it, so V8's profile has no node of mix and no
    function of cross_lib.js: its ticks are lines of hashAll's (or, inlined further, chunk's) node that
    are no function of cross.js.  The split finds them in the file cross.js requires.  (Before: chunk
    51 % self, hashAll 10 % where the workload measured 61 %, node 20.)"""
    node = node_for(major)
    w = start(node, "cross.js", "--warm-ms=2500")
    w.wait_for(lambda m: "ready" in m, 60)
    got = {}
    # 3 s at 2 kHz (~5,000 samples, a phase share's error ~0.7 pp; at 1 kHz for 2.5 s, 3-6 pp low now and then)
    prof = nf.capture(w.pid, 3.0, backend="inspector", hz=2000,
                      on_phase=lambda ph: got.__setitem__(ph, w.ask("stats", "hash")))
    s0, s1 = got["sampling"], got["stopping"]
    st, wt = prof.samples["stack"].to_numpy(), prof.samples["weight"].to_numpy()
    in_hash = stack_has(prof, "hashAll", "/cross.js")[st]
    in_scan = stack_has(prof, "scan", "/cross.js")[st]
    in_mix = stack_has(prof, "mix", "/cross_lib.js")[st]
    msg = f"node {major}: {prof.meta.get('inline_split')}\n{prof.text()}"
    n = wt[in_hash | in_scan].sum()
    assert n >= 500, msg
    # the two phases as the workload timed them (wall-clock, over the sampling window: no system call in
    # a round, so the thread's waits for a CPU fall on both phases alike).  Where the capture says V8's
    # sampler thread waited for a CPU (its samples then follow the program's cycle: 5-8 points low here
    # with a second test worker beside it, see test_inspector_busy), within 10 points: what is checked
    # here is that the helper's time is found at all (before the split found it, hashAll had 10 %
    # where the workload measured 61 %)
    truth = (s1["hash"] - s0["hash"]) / ((s1["hash"] - s0["hash"]) + (s1["scan"] - s0["scan"]))
    skewed = any("sampler thread" in x for x in prof.meta["warnings"])
    assert abs(wt[in_hash].sum() / n - truth) <= (0.10 if skewed else 0.03), (
        wt[in_hash].sum() / n, truth, prof.meta.get("sampler"), msg)
    assert not (in_mix & ~in_hash).any(), msg
    if major != "18":
        # chunk and round (which V8 inlines everything into) keep no more than their own little work, and
        # mix's line does most of hashAll's work.  Node 18 (V8 10.2) gives much of an inlinee's time the
        # line of the call in its caller (see the phases test above), which no split can give back: chunk
        # and round keep 3-4 % idle, 7.4 % once under load, and mix has few ticks of its own; hashAll's
        # share above holds there all the same
        leaf = prof.funcs["name"].astype(str).to_numpy()[prof.frames["func"].to_numpy()[prof.stacks["frame"].to_numpy()]]
        assert wt[np.isin(leaf[st], ["chunk", "round"])].sum() <= 0.03 * wt.sum(), msg
        assert wt[in_mix].sum() >= 0.5 * wt[in_hash].sum(), msg
        # most of them as frames the split added: a node V8 made for a call it had not inlined has none
        # (early on; on a loaded machine V8 runs such code longer: node 24 gave 12 % of mix's own samples to
        # such a node once beside stress-ng and a second test worker, against a bound of 10 % then; without
        # the split none of them is a frame it added)
        tiers = prof.frames["tier"].astype(str).to_numpy()[prof.stacks["frame"].to_numpy()[st]]
        own = in_mix & (leaf[st] == "mix")
        assert wt[own & (tiers == "inlined")].sum() >= 0.75 * wt[own].sum(), msg


# ----------------------------------------------------------------------------------- the split alone
def _cpuprofile(nodes, samples):
    """A protocol cpuprofile: nodes (id, name, url, line0, col0, parent, positionTicks)."""
    out = []
    for nid, name, url, line, col, parent, ticks in nodes:
        out.append({"id": nid, "callFrame": {"functionName": name, "scriptId": "1" if url else "0", "url": url,
                                             "lineNumber": line, "columnNumber": col},
                    "hitCount": samples.count(nid), "children": [n[0] for n in nodes if n[5] == nid],
                    "positionTicks": [{"line": ln, "ticks": k} for ln, k in ticks]})
    return {"nodes": out, "startTime": 0, "endTime": 1000 * len(samples), "samples": samples,
            "timeDeltas": [1000] * len(samples)}


def _ranges(src, *names):
    out = []
    for nm in names:
        i = src.index(f"function {nm}(")
        depth, j = 0, src.index("{", i)
        while True:
            depth += {"{": 1, "}": -1}.get(src[j], 0)
            j += 1
            if depth == 0:
                break
        out.append((nm, i, j))
    return out


def _paths(prof):
    """folded stack -> weight; frames the splits added are marked: tier 'inlined' '*', 'optimized' '+'."""
    fr = prof.frames
    names = prof.funcs["name"].astype(str).to_numpy()[fr["func"].to_numpy()]
    tiers = fr["tier"].astype(str).to_numpy()
    pre, sfr = prof.stacks["prefix"].to_numpy(), prof.stacks["frame"].to_numpy()
    out = {}
    for s, wgt in zip(prof.samples["stack"], prof.samples["weight"]):
        path = []
        while s >= 0:
            path.append(names[sfr[s]] + {"inlined": "*", "optimized": "+"}.get(tiers[sfr[s]], ""))
            s = pre[s]
        key = ";".join(reversed(path))
        out[key] = out.get(key, 0) + wgt
    return out


def test_split_rebuilds_the_inlined_chain_and_keeps_what_it_cannot_split():
    src = ("function outer(xs) {\n  let n = 0;\n  for (const x of xs) n += mid(x);\n  return n;\n}\n"
           "function mid(x) {\n  return leaf(x) + 1;\n}\n"
           "function leaf(x) {\n  let h = 0; for (let i = 0; i < x; i++) h = (h * 31 + i) | 0;\n  return h;\n}\n")
    mini = "function a(x){return b(x)*2}function b(x){let s=0;for(let i=0;i<x;i++)s+=i;return s}\n"
    url, murl = "file:///app/src.js", "file:///app/min.js"
    # outer's node: 10 ticks on its own line 3, 30 on leaf's line 10 (leaf inlined through mid);
    # a()'s node in the one-line file: 20 ticks on line 1, which b() shares
    doc = _cpuprofile([(1, "(root)", "", -1, -1, None, []),
                       (2, "outer", url, 0, 14, 1, [(3, 10), (10, 30)]),
                       (3, "a", murl, 0, 10, 1, [(1, 20)])],
                      [2] * 40 + [3] * 20)
    prof = read_cpuprofile(json.dumps(doc).encode())
    scripts = {url: Script(url, src, _ranges(src, "outer", "mid", "leaf")),
               murl: Script(murl, mini, _ranges(mini, "a", "b"))}
    new, rep = reattribute_inlined(prof, scripts)
    new.validate()
    assert rep["reattributed"] == 30 and rep["unsplit"]["shared_line"] == 20, rep
    paths = _paths(new)
    assert paths == {"outer": 10, "outer;mid*;leaf*": 30, "a": 20}, paths
    names = new.funcs["name"].astype(str).to_numpy()[new.frames["func"].to_numpy()]
    pre, sfr = new.stacks["prefix"].to_numpy(), new.stacks["frame"].to_numpy()
    # the split is interleaved in time, and the per-line ticks moved with it
    leaf_rows = np.flatnonzero(new.samples["stack"].to_numpy() != new.samples["stack"].to_numpy()[0])
    assert leaf_rows.min() < 5
    lines = new.lines
    leaf_stack = [s for s in range(len(pre)) if names[sfr[s]] == "leaf"][0]
    assert lines[lines["stack"] == leaf_stack][["line", "ticks"]].values.tolist() == [[10, 30]]
    assert any("could not be split" in x for x in rep["warnings"]), rep["warnings"]


def test_split_finds_an_inlinee_with_no_node_in_a_script_its_caller_loads_or_calls_into():
    # outer (app.js) calls clamp from a package it loads by name (require('fastutil')), which V8 inlined
    # into every call: no node of clamp, no function of the package in the profile
    app = ("// app.js\n//\n//\n//\n//\nconst { clamp } = require('fastutil');\n"
           "function outer(xs) {\n  let n = 0;\n  for (const x of xs) n += clamp(x, 0, 9);\n  return n;\n}\n")
    lib = ("'use strict';\nfunction clamp(x, lo, hi) {\n  return x < lo ? lo : x > hi ? hi : x;\n}\n"
           "module.exports = { clamp };\n")
    other = "function unrelated(x) {\n  x = x + 1;\n  return x * 2;\n}\n"   # its line 3 too, never called
    url, lurl, ourl = "file:///app/app.js", "file:///app/node_modules/fastutil/index.js", "file:///app/other.js"
    doc = _cpuprofile([(1, "(root)", "", -1, -1, None, []),
                       (2, "outer", url, 6, 15, 1, [(9, 10), (3, 30)])],   # line 3: clamp's, and a comment here
                      [2] * 40)
    prof = read_cpuprofile(json.dumps(doc).encode())
    scripts = {url: Script(url, app, _ranges(app, "outer")), lurl: Script(lurl, lib, _ranges(lib, "clamp")),
               ourl: Script(ourl, other, _ranges(other, "unrelated"))}
    new, rep = reattribute_inlined(prof, scripts)
    new.validate()
    assert _paths(new) == {"outer": 10, "outer;clamp*": 30}, (_paths(new), rep)
    files = dict(zip(new.funcs["name"].astype(str), new.funcs["file"].astype(str)))
    assert files["clamp"] == lurl
    # a script that defines something outer calls, whose function on that line outer never reaches: a
    # coincidence of line numbers, not taken
    near = "file:///app/node_modules/near/index.js"
    near_src = "function clampish(x) {\n  return x;\n  // three\n}\nfunction clamp2(x) { return x; }\n"
    alone = {url: scripts[url], near: Script(near, near_src, _ranges(near_src, "clampish", "clamp2"))}
    app2 = app.replace("clamp(x, 0, 9)", "clamp2(x)")
    alone[url] = Script(url, app2, _ranges(app2, "outer"))
    new2, rep2 = reattribute_inlined(prof, alone)
    assert _paths(new2) == {"outer": 40} and rep2["unsplit"]["no_function"] == 30, (_paths(new2), rep2)
    # the package loaded by a name made at run time: found as the script that defines what outer calls
    dyn = app.replace("require('fastutil')", "require(process.env.UTIL)")
    scripts[url] = Script(url, dyn, _ranges(dyn, "outer"))
    new, rep = reattribute_inlined(prof, scripts)
    assert _paths(new) == {"outer": 10, "outer;clamp*": 30}, (_paths(new), rep)
    # and where two scripts define a clamp holding that line, which one ran cannot be told: nothing moves
    dup = "file:///app/node_modules/other-clamp/index.js"
    scripts[dup] = Script(dup, lib, _ranges(lib, "clamp"))
    new, rep = reattribute_inlined(prof, scripts)
    assert _paths(new) == {"outer": 40} and rep["unsplit"]["ambiguous"] == 30, (_paths(new), rep)


def test_call_line_samples_go_back_to_the_one_function_the_line_calls():
    """V8 charges to the caller's line that calls a function the samples of that function's frame it
    missed (OSR code it did not know, a builtin the function ran): moved where the line names one
    function, left (and named) where it names several or a method of no known script."""
    src = ("function handle(n) {\n"                       # 1
           "  const payload = make(n);\n"                 # 2  one call: make
           "  const rows = parse(payload);\n"             # 3  one call: parse (count hangs under handle)
           "  const both = parse(make(n));\n"             # 4  two calls: cannot be told
           "  const parts = payload.split(',');\n"        # 5  a builtin method: the caller's own
           "  for (const r of rows) spin(r);\n"           # 6  a loop line: may be the caller's own work
           "  return rows.length + both.length + parts.length;\n"
           "}\n"
           "function make(n) {\n  let s = '';\n  for (let i = 0; i < n; i++) s += i;\n  return s;\n}\n"
           "function parse(t) {\n  const out = [];\n  for (const x of t) out.push(count(x));\n  return out;\n}\n"
           "function count(x) {\n  return x.length;\n}\n"
           "function spin(r) {\n  let h = 0; for (let i = 0; i < r; i++) h += i;\n  return h;\n}\n")
    url = "file:///app/srv.js"
    doc = _cpuprofile([(1, "(root)", "", -1, -1, None, []),
                       (2, "handle", url, 0, 15, 1, [(2, 40), (3, 30), (4, 20), (5, 10), (6, 10), (7, 1)]),
                       (3, "make", url, 8, 14, 2, [(11, 50)]),
                       (4, "parse", url, 13, 15, 2, [(15, 60)]),
                       (5, "count", url, 18, 15, 2, [(19, 25)])],
                      [2] * 111 + [3] * 50 + [4] * 60 + [5] * 25)
    prof = read_cpuprofile(json.dumps(doc).encode())
    scripts = {url: Script(url, src, _ranges(src, "handle", "make", "parse", "count", "spin"))}
    new, findings, warnings = reattribute_call_lines(prof, scripts)
    new.validate()
    assert _paths(new) == {"handle;make": 50 + 40, "handle;parse": 60 + 30, "handle;parse;count": 25,
                           "handle": 20 + 10 + 10 + 1}, _paths(new)
    by_line = {f["line"]: f for f in findings}
    assert set(by_line) == {2, 3, 4}, findings
    got = {ln: (f["callee"], f["samples"], f["moved"]) for ln, f in by_line.items()}
    assert got == {2: ("make", 40, 40), 3: ("parse", 30 + 25, 30 + 25),      # count's subtree with it
                   4: ("make or parse", 20 + 25, 0)}, got
    assert len(warnings) == 2 and "put back" in warnings[0] and "make or parse" in warnings[1], warnings
    # the moved ticks left their line (it is handle's, not make's); count's node moved with its ticks
    lines = new.lines.merge(pd.DataFrame({"stack": range(len(new.stacks))}), on="stack")
    per_func = new.funcs["name"].astype(str).to_numpy()[new.frames["func"].to_numpy()[
        new.stacks["frame"].to_numpy()[lines["stack"].to_numpy()]]]
    assert sorted(lines.loc[per_func == "handle", "line"].tolist()) == [4, 5, 6, 7]
    assert lines.loc[per_func == "count", "ticks"].sum() == 25

    # a function the profile does not show under the caller (its only code unknown): a new frame
    doc = _cpuprofile([(1, "(root)", "", -1, -1, None, []),
                       (2, "handle", url, 0, 15, 1, [(2, 40)])], [2] * 40)
    new, findings, _w = reattribute_call_lines(read_cpuprofile(json.dumps(doc).encode()), scripts)
    assert _paths(new) == {"handle;make+": 40} and findings[0]["moved"] == 40, (_paths(new), findings)

    # a line that awaits: the caller's own resume code runs there too
    src2 = "async function serve(n) {\n  const body = await make(n);\n  return body;\n}\n" + src[src.index("function make"):]
    doc = _cpuprofile([(1, "(root)", "", -1, -1, None, []),
                       (2, "serve", url, 0, 20, 1, [(2, 40)])], [2] * 40)
    new, findings, _w = reattribute_call_lines(read_cpuprofile(json.dumps(doc).encode()),
                                               {url: Script(url, src2, _ranges(src2, "serve", "make"))})
    assert _paths(new) == {"serve": 40} and findings[0]["moved"] == 0, (_paths(new), findings)


def test_loaded_urls_resolve_relative_requires_and_imports_as_node_does():
    urls = ["/app/src/lib.js", "file:///app/src/util/index.js", "/app/shared.mjs", "/app/src/main.js",
            "node:fs", "/app/src/types.ts", "file:///app/src/l%C3%A4rm.js"]
    src = """const { mix } = require('./lib');          // an extension node adds
import { a } from "./util";                       // a directory's index
const s = await import('../shared.mjs');
import './types.ts';
const fs = require('fs'), again = require('./lib.js'), no = require('./missing');
// require('./lärm.js') in a comment is still a name the source loads
"""
    assert loaded_urls(src, "/app/src/main.js", urls) == [
        "/app/src/lib.js", "file:///app/src/util/index.js", "/app/shared.mjs", "/app/src/types.ts",
        "file:///app/src/l%C3%A4rm.js"]
    assert loaded_urls(src, "file:///app/src/main.js", urls)[0] == "/app/src/lib.js"
    assert loaded_urls(src, "node:internal/main", urls) == []   # no file: nothing is relative to it
    # packages by name, from the nearest node_modules up: a path in the package, its index, else its
    # loaded files; a built-in module or a package not loaded is nothing
    pk = ["/app/node_modules/fastutil/index.js", "/app/src/node_modules/near/lib/a.js",
          "/app/src/node_modules/near/lib/b.js", "/app/node_modules/@org/kit/dist/clamp.js",
          "/app/node_modules/near/index.js", "/app/src/main.js"]
    src = ("const u = require('fastutil'), n = require(\"near\"), fs = require('fs'), gone = require('gone');\n"
           "import { clamp } from '@org/kit/dist/clamp';\n")
    assert loaded_urls(src, "/app/src/main.js", pk) == [
        "/app/node_modules/fastutil/index.js", "/app/src/node_modules/near/lib/a.js",
        "/app/src/node_modules/near/lib/b.js", "/app/node_modules/@org/kit/dist/clamp.js"]
