"""Fuzzing every reader with mutated real inputs (issue 15).

Seeds: the shared corpus (other tools' files, up to 64 KB each) and what our
own writers make of a small profile (folded, raw, cpuprofile, speedscope,
pprof, nfprof, gzipped folded).  Each case is a seed put through one or two
mutations chosen by ``random.Random(SEED)``: bit flips, truncation, a
duplicated or deleted chunk, a long line (of ';', blanks, digits, ':' or
' ('), huge numbers (2**63, 10**30, 1e309), NaN/Infinity, JSON values
replaced by values of the wrong type, cycles in cpuprofile parents, gzip
bombs.  Every case is read twice: format sniffed, and forced to the seed's.

Asserted for every case:
- only nodeflame's own errors escape (NodeflameError and subclasses);
- a FormatError names the file it was reading;
- a read that succeeds gives a Profile that passes validate();
- each read takes at most TIME_FACTOR times a baseline (CPU time of the process): the time the same
  reader needs for the unmutated seed, scaled by the size ratio, plus a small
  per-call allowance measured at start-up on this machine; a case over its
  bound is re-timed once with a fresh baseline before it fails, so a busy
  machine does not fail it.

CASES (200) cases per run (fixed seed 15, so the same ones every run), well under a
minute on two shared cores.  FUZZ_CASES / FUZZ_SEED in the environment run
more or others.
"""
from __future__ import annotations

import glob
import gzip
import io
import json
import math
import os
import random
import time
import warnings

import pytest

import nodeflame as nf
from nodeflame.frames.errors import FormatError, LimitError, NodeflameError

CORPUS = os.environ.get("NODEFLAME_CORPUS", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "corpus"))
SEED = int(os.environ.get("FUZZ_SEED", "15"))
CASES = int(os.environ.get("FUZZ_CASES", "200"))
TIME_FACTOR = 40
MAX_SEED_BYTES = 64 << 10
REGRESSIONS = os.path.join(os.path.dirname(__file__), "fuzz_regressions")


# ------------------------------------------------------------------ seeds

def _own_outputs():
    p = nf.read(b"main;server;handle;parse 30\nmain;server;handle;render 20\nmain;(idle) 5\n"
                b"main;gc;sweep 3\n", format="folded")
    out = {}
    for fmt, name in (("folded", "own.folded"), ("raw", "own.raw"), ("cpuprofile", "own.cpuprofile"),
                      ("speedscope", "own.speedscope.json"), ("pprof", "own.pb.gz"), ("nfprof", "own.nfprof")):
        buf = io.BytesIO()
        try:
            p.write(buf, format=fmt)
        except NodeflameError:  # a writer whose dependency is not installed
            continue
        out[name] = (buf.getvalue(), fmt)
    out["own.folded.gz"] = (gzip.compress(out["own.folded"][0]), "folded")
    return out


def _seeds():
    seeds = {}
    for path in sorted(glob.glob(os.path.join(CORPUS, "**", "*"), recursive=True)):
        if not os.path.isfile(path) or path.endswith("README.md") or os.path.getsize(path) > MAX_SEED_BYTES:
            continue
        with open(path, "rb") as fh:
            data = fh.read()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fmt = nf.read(data).meta.get("source_format")
            except NodeflameError:
                fmt = None  # the corpus's deliberately invalid files: mutated all the same
        seeds[os.path.relpath(path, CORPUS)] = (data, fmt)
    seeds.update(_own_outputs())
    return seeds


# ------------------------------------------------------------------ mutations

_LONG = [b";", b" ", b"1", b":", b" (", b"::", b"a", b"\t", b"/", b"(", b"9 "]
_HUGE_NUMBERS = ["9223372036854775808", "18446744073709551616", "99999999999999999999", "1e309", "-1e309",
                 "NaN", "Infinity", "-Infinity", "-1", "0", "1e-320", "123456789012345678901234567890"]


def _bitflip(rng, data):
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def _truncate(rng, data):
    return data[:rng.randrange(len(data) + 1)]


def _chunk(rng, data):
    if len(data) < 2:
        return data * 2
    a = rng.randrange(len(data))
    b = min(len(data), a + rng.randint(1, 200))
    if rng.random() < 0.5:
        return data[:a] + data[b:]
    return data[:b] + data[a:b] * rng.randint(1, 20) + data[b:]


def _long_line(rng, data):
    piece = rng.choice(_LONG)
    line = piece * (rng.randint(10_000, 40_000) // len(piece))
    lines = data.split(b"\n")
    i = rng.randrange(len(lines) + 1)
    if rng.random() < 0.5 and i < len(lines):  # glue it onto an existing line
        lines[i] = lines[i] + line if rng.random() < 0.5 else line + lines[i]
    else:
        lines.insert(i, line + (b" 1" if rng.random() < 0.3 else b""))
    return b"\n".join(lines)


def _numbers(rng, data):
    """Replace a few digit runs by huge numbers or NaN/Infinity."""
    b = bytearray(data)
    runs = []
    i = 0
    while i < len(b) and len(runs) < 10_000:
        if 48 <= b[i] <= 57:
            j = i
            while j < len(b) and 48 <= b[j] <= 57:
                j += 1
            runs.append((i, j))
            i = j
        else:
            i += 1
    if not runs:
        return data + b" " + rng.choice(_HUGE_NUMBERS).encode()
    for a, z in sorted(rng.sample(runs, min(len(runs), rng.randint(1, 3))), reverse=True):
        b[a:z] = rng.choice(_HUGE_NUMBERS).encode()
    return bytes(b)


def _json_values(rng):
    return rng.choice([None, True, "x", "<b>", [], {}, [1, "a"], {"a": 1}, -1, 0, 2**63, 2**64, 10**30,
                       float("nan"), float("inf"), -float("inf"), 1e308, 0.5, "\ud800", [[[[]]]], "9" * 40])


def _json_types(rng, data):
    """Parse the JSON and replace a few values (anywhere in the tree) by values of other types."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return _bitflip(rng, data)
    slots = []

    def walk(x, depth=0):
        if depth > 30 or len(slots) > 5000:
            return
        if isinstance(x, dict):
            for k in x:
                slots.append((x, k))
                walk(x[k], depth + 1)
        elif isinstance(x, list):
            for k in range(len(x)):
                slots.append((x, k))
                walk(x[k], depth + 1)
    walk(doc)
    if not slots:
        return json.dumps(_json_values(rng)).encode()
    for holder, key in rng.sample(slots, min(len(slots), rng.randint(1, 4))):
        holder[key] = _json_values(rng)
    return json.dumps(doc).encode("utf-8", "surrogatepass")


def _cpuprofile_cycle(rng, data):
    """Make a node its own ancestor (children lists and parent fields)."""
    try:
        doc = json.loads(data)
        nodes = doc["nodes"]
        a, b = rng.sample(range(len(nodes)), 2) if len(nodes) > 1 else (0, 0)
        nodes[b].setdefault("children", []).append(nodes[a]["id"])
        nodes[a]["parent"] = nodes[b]["id"]
        nodes[a].setdefault("children", []).append(nodes[b]["id"])
        return json.dumps(doc).encode()
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return _bitflip(rng, data)


_BOMBS: dict = {}


def _gzip_bomb(rng, data):
    # 32 MB from ~32 KB: read with max_decompressed at 16 MB (see LIMITS), so refused quickly
    fill = rng.choice([b"\0", b"a;b 1\n", b";"])
    if fill not in _BOMBS:
        _BOMBS[fill] = gzip.compress(fill * (32 << 20), 9)
    return _BOMBS[fill]


def _gzip_wrap(rng, data):
    g = gzip.compress(data)
    return _bitflip(rng, g) if rng.random() < 0.5 else _truncate(rng, g)


MUTATORS = [_bitflip, _truncate, _chunk, _long_line, _numbers, _json_types, _cpuprofile_cycle, _gzip_wrap,
            _gzip_bomb]
WEIGHTS = [5, 3, 3, 2, 3, 4, 1, 1, 0.5]

# small enough that the bombs above trip it, large enough for every seed
LIMITS = {"max_decompressed": 16 << 20}


# ------------------------------------------------------------------ harness

def _read(data, name, fmt):
    f = io.BytesIO(data)
    f.name = name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = nf.read(f, format=fmt, **LIMITS)
        p.validate()
    return p


def _timed(data, name, fmt):
    """(CPU seconds of this process the read took, its error): CPU, not wall, so that a read descheduled
    on a busy machine is not called slow (CI on two workers: a gzip bomb's read at 1.58 s wall, bound 1.49 s);
    every bound is made of such CPU times too (baselines, the per-call allowance)."""
    t = time.process_time()
    err = None
    try:
        _read(data, name, fmt)
    except NodeflameError as e:
        err = e
    return time.process_time() - t, err


def _overhead():
    """Seconds one tiny read takes on this machine now (a floor for every bound)."""
    return min(_timed(b"a;b 1\n", "tiny.folded", None)[0] for _ in range(5))


def _baseline(data, fmt):
    return min(_timed(data, "seed", fmt)[0] for _ in range(2))


def _cases():
    rng = random.Random(SEED)
    seeds = _seeds()
    names = sorted(seeds)
    for k in range(CASES):
        name = names[k % len(names)] if k < len(names) else rng.choice(names)
        data, fmt = seeds[name]
        muts = rng.choices(MUTATORS, WEIGHTS, k=1 if rng.random() < 0.7 else 2)
        case_rng = random.Random(rng.getrandbits(64))
        mutated = data
        for m in muts:
            mutated = m(case_rng, mutated)
        yield k, name, data, fmt, "+".join(m.__name__.lstrip("_") for m in muts), mutated


def _save_regression(k, name, how, data):
    os.makedirs(REGRESSIONS, exist_ok=True)
    path = os.path.join(REGRESSIONS, f"seed{SEED}-case{k}-{how}-{os.path.basename(name)}")
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def test_fuzz_readers():
    overhead = _overhead()
    baselines = {}
    failures = []
    stats = {"cases": 0, "reads": 0, "ok": 0, "errors": 0, "limit": 0, "slowest": (0.0, "")}
    start = time.perf_counter()
    for k, name, seed_data, fmt, how, data in _cases():
        stats["cases"] += 1
        for force in (None, fmt):
            if force is None and fmt is None and stats["reads"] and k % 2:
                continue
            key = (name, force)
            if key not in baselines:
                baselines[key] = _baseline(seed_data, force)
            source = f"case{k}-{os.path.basename(name)}"
            stats["reads"] += 1
            try:
                dt, err = _timed(data, source, force)
            except Exception as e:  # noqa: BLE001 — the very thing this test looks for
                path = _save_regression(k, name, how, data)
                failures.append(f"case {k} ({name}, {how}, format={force}): {type(e).__name__}: {str(e)[:200]} "
                                f"-> {path}")
                continue
            if err is None:
                stats["ok"] += 1
            else:
                stats["errors"] += 1
                stats["limit"] += isinstance(err, LimitError)
                if isinstance(err, FormatError) and source not in str(err):
                    failures.append(f"case {k} ({name}, {how}, format={force}): error without the file: {err}")
            bound = TIME_FACTOR * (baselines[key] * max(1.0, len(data) / max(len(seed_data), 1)) + 5 * overhead)
            if dt > bound:  # re-time once against fresh measurements before blaming the reader
                baselines[key] = _baseline(seed_data, force)
                overhead = _overhead()
                bound = TIME_FACTOR * (baselines[key] * max(1.0, len(data) / max(len(seed_data), 1))
                                       + 5 * overhead)
                dt = _timed(data, source, force)[0]
                if dt > bound:
                    path = _save_regression(k, name, how, data)
                    failures.append(f"case {k} ({name}, {how}, format={force}): {dt:.2f} s, bound {bound:.2f} s "
                                    f"-> {path}")
            if how.endswith("gzip_bomb") and fmt != "pprof":
                if not isinstance(err, LimitError) and "not recognised" not in str(err):
                    failures.append(f"case {k} ({name}, {how}, format={force}): a gzip bomb gave {err!r}")
            if dt > stats["slowest"][0]:
                stats["slowest"] = (dt, f"case {k} ({name}, {how}, format={force})")
    stats["seconds"] = round(time.perf_counter() - start, 1)
    print("fuzz:", stats)
    assert not failures, f"{len(failures)} failing case(s):\n" + "\n".join(failures[:30])


def _regression_files():
    return sorted(glob.glob(os.path.join(REGRESSIONS, "*")))


@pytest.mark.parametrize("path", _regression_files(), ids=os.path.basename)
def test_fuzz_regressions(path):
    """Every input the fuzzer ever caught stays a test: read sniffed and as each text format."""
    with open(path, "rb") as fh:
        data = fh.read()
    for fmt in (None, "folded", "raw", "perf", "cpuprofile", "speedscope", "pprof", "nfprof"):
        t = time.perf_counter()
        try:
            _read(data, os.path.basename(path), fmt)
        except FormatError as e:
            assert os.path.basename(path) in str(e)
        except NodeflameError:
            pass
        assert time.perf_counter() - t < 10
