"""Applying source maps to a Profile: JS frames shown in the source the user wrote.

Maps are found the way Node's ``--enable-source-maps`` and DevTools find
them: the generated file's last ``//# sourceMappingURL=`` comment (a path
relative to the file, an absolute path, a ``file://`` URL or an inline
``data:`` URL), else ``FILE.map`` beside the file, else the same names in
the ``search`` directories (and their subdirectories), which is how a
profile read on another machine finds its maps.  ``root`` prefixes every
path that is read (``/proc/PID/root`` for a live process in a container);
the paths shown in the profile stay those of the target.

What changes: each mapped function's name (when the map's ``names`` give
one at the function's position), file, line, column, kind and package;
each of its frames' line and column; the per-line ticks of the ``lines``
table.  What is kept: ``funcs.gen_name/gen_file/gen_line/gen_column`` and
``frames.gen_line/gen_column`` hold the generated position ('' / 0 where a
row was not mapped); ``meta['source_maps']`` lists the maps applied and
``meta['source_text']`` the original text of mapped sources that maps
embed (``sourcesContent``), for hot-line views.  Functions that map to the
same original function merge.

A function whose reader gave no column (perf maps, folded files) is mapped
at the first mapping of its line, with a warning in ``meta['warnings']``.
A map that is missing, unreadable or broken leaves its file's frames as
they were, with a warning naming the file.
"""
from __future__ import annotations

import os
import urllib.parse

import numpy as np
import pandas as pd

from .kinds import classify, package_of
from .sourcemap import SourceMap, SourceMapError, decode_data_url, file_path, mapping_url, parse_source_map

_I64 = np.int64
MAX_FILE = 256 << 20           # bytes read of one generated file or map
MAX_WALK = 50_000              # entries looked at when searching a directory tree
MAX_SOURCE_TEXT = 8 << 20      # characters of sourcesContent kept in meta


class MapFinder:
    """Finds and decodes the map of generated files, caching both; collects warnings."""

    def __init__(self, search=None, root: str | None = None):
        if isinstance(search, (str, os.PathLike)):
            search = [search]
        self.search = [os.fspath(d) for d in (search or [])]
        self.root = os.fspath(root) if root else None
        self.warnings: list[str] = []
        self._maps: dict = {}
        self._index: dict | None = None

    # paths in the target's namespace -> paths here
    def local(self, path: str) -> str:
        if self.root and os.path.isabs(path):
            return os.path.join(self.root, path.lstrip("/"))
        return path

    def _read(self, local: str) -> bytes | None:
        try:
            with open(local, "rb") as fh:
                return fh.read(MAX_FILE)
        except OSError:
            return None

    def _in_search(self, name: str) -> str | None:
        """A file called ``name`` in a search directory, or below one."""
        for d in self.search:
            cand = os.path.join(d, name)
            if os.path.isfile(cand):
                return cand
        if self._index is None:
            self._index = {}
            seen = 0
            for d in self.search:
                for dirpath, _dirs, files in os.walk(d):
                    for f in files:
                        self._index.setdefault(f, os.path.join(dirpath, f))
                    seen += len(files)
                    if seen > MAX_WALK:
                        break
        return self._index.get(name)

    def find(self, gen: str):
        """(SourceMap or None, generated file's text or None) for a generated file's path."""
        if gen in self._maps:
            return self._maps[gen]
        res = (None, None)
        try:
            res = self._find(gen)
        except SourceMapError as e:
            self.warnings.append(f"source map of {gen}: {e}; its frames are shown as generated")
        except (OSError, ValueError, RecursionError, MemoryError) as e:
            self.warnings.append(f"source map of {gen}: cannot be used ({type(e).__name__}: {e}); "
                                 f"its frames are shown as generated")
        self._maps[gen] = res
        return res

    def _find(self, gen: str):
        text = self._read(self.local(gen))
        gen_dir = os.path.dirname(gen)           # the target's view, for resolving relative URLs
        local_dir = None                         # set when the generated file was found in a search dir
        if text is None and self.search:
            found = self._in_search(os.path.basename(gen))
            if found:
                text = self._read(found)
                local_dir = os.path.dirname(found)
        url = mapping_url(text) if text is not None else None
        if url and url.startswith("data:"):
            data = decode_data_url(url, f"{gen} (inline map)")
            return parse_source_map(data, f"{gen} (inline map)", gen_dir), text
        cands = []   # (local path to read, path to name it by / resolve sources against)
        if url and not url.startswith(("http://", "https://")):
            if url.startswith("file://"):
                mp = urllib.parse.unquote(urllib.parse.urlparse(url).path)
            else:
                mp = urllib.parse.unquote(url.split("?", 1)[0].split("#", 1)[0])
            if local_dir is not None and not os.path.isabs(mp):
                loc = os.path.normpath(os.path.join(local_dir, mp))
                cands.append((loc, loc))
            target_path = mp if os.path.isabs(mp) else os.path.normpath(os.path.join(gen_dir, mp))
            cands.append((self.local(target_path), target_path))
        elif url:
            self.warnings.append(f"source map of {gen} is at {url}, which is not fetched; looking beside the file")
        cands.append((self.local(gen + ".map"), gen + ".map"))
        for local, shown in cands:
            data = self._read(local)
            if data is not None:
                return parse_source_map(data, shown, os.path.dirname(shown)), text
        names = [os.path.basename(c[1]) for c in cands]
        for name in dict.fromkeys(names):
            found = self._in_search(name) if self.search else None
            if found:
                data = self._read(found)
                if data is not None:
                    # sources resolve beside the map where it was found
                    return parse_source_map(data, found, os.path.dirname(found)), text
        if url:
            self.warnings.append(f"source map of {gen} not found: {gen} names {url}, which is missing"
                                 + (f" (searched also {', '.join(self.search)})" if self.search else ""))
        return None, text


def _name_at(sm: SourceMap, seg: int, col: int, gen_name: str, line_text: bytes | None) -> str | None:
    """The original name of the function whose generated position is (line of ``seg``, ``col``).

    V8 places a function at its parameter list, so the function's name is on
    a segment at or just before that position: with the generated text at
    hand, the nearest of the 3 segments before it whose generated text is the
    function's generated name; without it, the nearest segment strictly
    before the position, if it has a name."""
    if seg < 0 or not len(sm):
        return None
    line = sm.gen_line[seg]
    short = gen_name.rsplit(".", 1)[-1] if gen_name else ""
    for k in range(seg, max(seg - 4, -1), -1):
        if sm.gen_line[k] != line:
            break
        c = int(sm.gen_col[k])
        if line_text is not None and short:
            frag = line_text[c:c + len(short) + 1]
            if frag[:len(short)] == short.encode() and not (frag[len(short):].isalnum() or frag[len(short):] in (b"_", b"$")):
                n = int(sm.name[k])
                return sm.names[n] if n >= 0 and sm.names[n] else None
        elif line_text is None and c < col:
            n = int(sm.name[k])
            return sm.names[n] if n >= 0 and sm.names[n] else None
    return None


def _line_texts(text: bytes | None):
    return text.split(b"\n") if text is not None else None


def apply_source_maps(p, search=None, root: str | None = None, finder: MapFinder | None = None):
    """A new Profile with the source maps of its JS files applied (see the module docstring)."""
    from .profile import Profile
    from .stacktable import tree_to_stacks

    finder = finder or MapFinder(search, root)
    f = p.funcs
    n = len(f)
    kinds = f["kind"].astype(str).to_numpy(object)
    files = f["file"].astype(str).to_numpy(object)
    names = f["name"].astype(str).to_numpy(object)
    fline = f["line"].to_numpy().astype(_I64)
    fcol = f["column"].to_numpy().astype(_I64)
    new_name, new_file = names.copy(), files.copy()
    new_line, new_col = fline.copy(), fcol.copy()
    new_kind = kinds.copy()
    mapped = np.zeros(n, bool)
    func_map_of = np.full(n, -1, _I64)      # index into `maps` of each mapped func
    maps, applied, text_keep = [], [], {}
    line_only, no_line = 0, 0
    jsrows = np.flatnonzero(np.isin(kinds, ("js", "deps")))
    by_file: dict = {}
    for i in jsrows:
        by_file.setdefault(files[i], []).append(i)
    for gfile, rows in by_file.items():
        gpath = file_path(gfile)
        if gpath is None:
            continue
        sm, text = finder.find(gpath)
        if sm is None:
            continue
        rows = np.asarray(rows, _I64)
        has_line = fline[rows] > 0
        no_line += int((~has_line).sum())
        rows = rows[has_line]
        if not len(rows):
            continue
        line_only += int((fcol[rows] == 0).sum())
        seg = sm.segment(fline[rows] - 1, fcol[rows] - 1)
        src, ol, oc, _nm = sm.lookup(fline[rows] - 1, fcol[rows] - 1)
        ok = src >= 0
        if not ok.any():
            continue
        lt = _line_texts(text)
        mi = len(maps)
        maps.append(sm)
        used = set()
        for j, r in enumerate(rows):
            if not ok[j]:
                continue
            s = int(src[j])
            used.add(s)
            new_file[r] = sm.sources[s]
            new_line[r] = ol[j] + 1
            new_col[r] = oc[j] + 1
            gl = int(fline[r]) - 1
            line_text = lt[gl] if lt is not None and gl < len(lt) else None
            nm = _name_at(sm, int(seg[j]), int(fcol[r]) - 1, names[r], line_text) if fcol[r] > 0 else None
            if nm:
                new_name[r] = nm
            new_kind[r] = classify(new_name[r], new_file[r], "js")
            mapped[r] = True
            func_map_of[r] = mi
        applied.append({"file": gfile, "map": sm.path, "functions": int(ok.sum()),
                        "sources": [sm.sources[s] for s in sorted(used)]})
        budget = MAX_SOURCE_TEXT - sum(len(v) for v in text_keep.values())
        for s in sorted(used):
            c = sm.sources_content[s] if s < len(sm.sources_content) else None
            if c is not None and sm.sources[s] not in text_keep and len(c) <= budget:
                text_keep[sm.sources[s]] = c
                budget -= len(c)
    meta = dict(p.meta)
    warnings = list(meta.get("warnings") or []) + finder.warnings
    if not mapped.any():
        from .ops import with_meta
        return with_meta(p, warnings=finder.warnings, source_maps=list(meta.get("source_maps") or []))
    if line_only:
        warnings.append(f"source maps: {line_only} function(s) had a line but no column (the input format "
                        "gives none): mapped at the first mapping of their generated line, which can be "
                        "the wrong function where one line holds several (minified code)")
    if no_line:
        warnings.append(f"source maps: {no_line} function(s) in mapped files have no line and stay as generated")
    # ---- funcs, merged where they now name the same original function
    nf = pd.DataFrame({
        "name": pd.Categorical(new_name), "file": pd.Categorical(new_file), "line": new_line.astype(np.int32),
        "column": new_col.astype(np.int32), "kind": pd.Categorical(new_kind),
        "package": pd.Categorical([package_of(x) if mapped[i] else pk
                                   for i, (x, pk) in enumerate(zip(new_file, f["package"].astype(str)))]),
    })
    for extra in f.columns:
        if extra not in nf.columns and not extra.startswith("gen_"):
            nf[extra] = f[extra].to_numpy()
    old_gen = {c: (f[c].to_numpy() if c in f.columns else None) for c in ("gen_name", "gen_file", "gen_line", "gen_column")}
    nf["gen_name"] = pd.Categorical(np.where(mapped, names, old_gen["gen_name"] if old_gen["gen_name"] is not None else ""))
    nf["gen_file"] = pd.Categorical(np.where(mapped, files, old_gen["gen_file"] if old_gen["gen_file"] is not None else ""))
    nf["gen_line"] = np.where(mapped, fline, old_gen["gen_line"] if old_gen["gen_line"] is not None else 0).astype(np.int32)
    nf["gen_column"] = np.where(mapped, fcol, old_gen["gen_column"] if old_gen["gen_column"] is not None else 0).astype(np.int32)
    fcodes, _ = pd.factorize(pd.MultiIndex.from_arrays([new_name, new_file, new_line, new_col, new_kind]))
    first = np.unique(fcodes, return_index=True)[1]
    funcs = nf.iloc[np.sort(first)].reset_index(drop=True)
    renum = np.empty(len(first), _I64)
    renum[np.argsort(first)] = np.arange(len(first))  # keep the first row of each group, in order
    func_new = renum[fcodes]
    # ---- frames: executing positions mapped through their function's map
    fr = p.frames
    ffunc = fr["func"].to_numpy().astype(_I64)
    frl = fr["line"].to_numpy().astype(_I64)
    frc = fr["column"].to_numpy().astype(_I64)
    nl, nc = frl.copy(), frc.copy()
    fmapped = mapped[ffunc] & (frl > 0) if len(ffunc) else np.zeros(0, bool)
    for mi, sm in enumerate(maps):
        sel = np.flatnonzero(fmapped & (func_map_of[ffunc] == mi))
        if not len(sel):
            continue
        # no column: the function's own column if on its line, else the line's first mapping
        fc = fcol[ffunc[sel]]
        col = np.where(frc[sel] > 0, frc[sel], np.where(frl[sel] == fline[ffunc[sel]], fc, 0)) - 1
        src, ol, oc, _ = sm.lookup(frl[sel] - 1, col)
        ok = src >= 0
        nl[sel[ok]] = ol[ok] + 1
        nc[sel[ok]] = oc[ok] + 1
        fmapped[sel[~ok]] = False
    frames = pd.DataFrame({"func": func_new[ffunc] if len(ffunc) else ffunc, "line": nl, "column": nc,
                           "tier": fr["tier"], "label": fr["label"]})
    for extra in fr.columns:
        if extra not in frames.columns and not extra.startswith("gen_"):
            frames[extra] = fr[extra].to_numpy()
    og_l = fr["gen_line"].to_numpy() if "gen_line" in fr.columns else 0
    og_c = fr["gen_column"].to_numpy() if "gen_column" in fr.columns else 0
    frames["gen_line"] = np.where(fmapped, frl, og_l).astype(np.int32)
    frames["gen_column"] = np.where(fmapped, frc, og_c).astype(np.int32)
    key = pd.MultiIndex.from_frame(frames[["func", "line", "column", "tier", "label"]].astype({"tier": str, "label": str}))
    frcodes, _ = pd.factorize(key)
    ffirst = np.unique(frcodes, return_index=True)[1]
    frames_u = frames.iloc[np.sort(ffirst)].reset_index(drop=True)
    frenum = np.empty(len(ffirst), _I64)
    frenum[np.argsort(ffirst)] = np.arange(len(ffirst))
    frame_new = frenum[frcodes] if len(frcodes) else np.empty(0, _I64)
    # ---- stacks: re-interned only when frames merged
    st = p.stacks
    prefix = st["prefix"].to_numpy().astype(_I64)
    sframe = frame_new[st["frame"].to_numpy()] if len(st) else np.empty(0, _I64)
    depth = st["depth"].to_numpy().astype(_I64)
    samples = p.samples.copy()
    if len(frames_u) < len(frames):
        prefix, sframe, depth, node_stack = tree_to_stacks(prefix, sframe, len(frames_u), depth=depth)
        samples["stack"] = node_stack[samples["stack"].to_numpy()]
    else:
        node_stack = None
    stacks = pd.DataFrame({"prefix": prefix, "frame": sframe, "depth": depth})
    # ---- per-line ticks: lines of each leaf's function mapped through its map
    lines = p.lines
    if len(lines):
        ls = lines["stack"].to_numpy().astype(_I64)
        ll = lines["line"].to_numpy().astype(_I64).copy()
        ll_gen = ll.copy()
        lines_blurred = 0
        lfunc = ffunc[st["frame"].to_numpy()[ls]]
        for mi, sm in enumerate(maps):
            sel = np.flatnonzero(mapped[lfunc] & (func_map_of[lfunc] == mi))
            if not len(sel):
                continue
            col = np.where(ll[sel] == fline[lfunc[sel]], fcol[lfunc[sel]], 0) - 1
            src, ol, _oc, _ = sm.lookup(ll[sel] - 1, col)
            ok = src >= 0
            ll[sel[ok]] = ol[ok] + 1
            lines_blurred += int(lines["ticks"].to_numpy()[sel[ok & sm.spans_lines(ll_gen[sel] - 1)]].sum())
        if node_stack is not None:
            ls = node_stack[ls]
        lines = pd.DataFrame({"stack": ls, "line": ll, "ticks": lines["ticks"].to_numpy()})
        lines = lines.groupby(["stack", "line"], as_index=False, sort=True)["ticks"].sum()
        if lines_blurred:
            warnings.append(f"source maps: {lines_blurred} per-line tick(s) fell on generated lines that hold "
                            "several original lines (minified code) and have no column: they are shown at the "
                            "function's first line")
    meta["warnings"] = warnings
    meta["source_maps"] = list(meta.get("source_maps") or []) + applied
    st_text = dict(meta.get("source_text") or {})
    st_text.update(text_keep)
    meta["source_text"] = st_text
    meta["transforms"] = list(meta.get("transforms") or []) + ["source-maps"]
    return Profile(funcs, frames_u, stacks, samples, meta, lines)
