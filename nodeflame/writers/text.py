"""torch's text tree: ``Total samples: N`` then ``count name`` lines, two spaces per level.

Lines deeper than ``MAX_INDENT`` (100) levels are indented 100 levels and start
with ``[depth N]``, so the output grows linearly with the tree, not with the
square of its depth."""
from __future__ import annotations

import numpy as np

from ..frames.views import call_tree


def tree_order(t, key: str = "total", labels=None):
    """Depth-first order of a call tree with children sorted heaviest first (ties by name).

    Vectorised: a node's sort key is the path of its ancestors' sibling ranks,
    so one lexsort over per-level rank columns gives the pre-order."""
    n = len(t)
    if n == 0:
        return np.empty(0, np.int64)
    parent = t["parent"].to_numpy()
    depth = t["depth"].to_numpy()
    w = t[key].to_numpy()
    # rank among siblings: heavier first, then by name (ranked once per function, not per node)
    if labels is None:
        labels = t["name"].cat.categories.astype(str).to_numpy()
        codes = t["name"].cat.codes.to_numpy()
    else:
        codes = t["func"].to_numpy()
    lab_rank = np.empty(len(labels), np.int64)
    lab_rank[np.argsort(np.asarray(labels, dtype=str), kind="stable")] = np.arange(len(labels))
    name_rank = lab_rank[codes]
    sib = np.lexsort((name_rank, -w, parent))
    rank = np.empty(n, np.int64)
    grp_start = np.ones(n, bool)
    grp_start[1:] = parent[sib][1:] != parent[sib][:-1]
    pos = np.arange(n)
    start_pos = np.maximum.accumulate(np.where(grp_start, pos, 0))
    rank[sib] = pos - start_pos
    # global sibling-rank code of each node's path: encode path as ordinal in a pre-order
    # computed level by level: order[node] = order among nodes of its level, by (order[parent], rank)
    from ..frames.stacktable import level_segments
    ordinal = np.zeros(n, np.int64)
    for d, idx in level_segments(depth.astype(np.int64)):
        if d == 0:
            o = np.lexsort((rank[idx],))
        else:
            o = np.lexsort((rank[idx], ordinal[parent[idx]]))
        ordinal[idx[o]] = np.arange(len(idx))
    # pre-order: sort by (ordinal path). Build via subtree sizes: position = parent's position + 1 + sizes of earlier siblings
    size = np.ones(n, np.int64)
    levels = list(level_segments(depth.astype(np.int64)))
    for d, idx in reversed(levels):
        par = parent[idx]
        ok = par >= 0
        np.add.at(size, par[ok], size[idx[ok]])
    position = np.zeros(n, np.int64)
    for d, idx in levels:
        o = idx[np.lexsort((rank[idx], ordinal[parent[idx]] if d else np.zeros(len(idx), np.int64)))]
        par = parent[o]
        sz = size[o]
        cs = np.cumsum(sz) - sz
        newg = np.ones(len(o), bool)
        newg[1:] = par[1:] != par[:-1]
        gstart = np.maximum.accumulate(np.where(newg, np.arange(len(o)), 0))
        before = cs - cs[gstart]
        base = np.where(par >= 0, position[np.maximum(par, 0)] + 1, 0)
        position[o] = base + before
    order = np.empty(n, np.int64)
    order[position] = np.arange(n)
    return order


MAX_INDENT = 100  # levels indented with blanks; deeper lines name their depth instead


def render_text(p, *, inverted: bool = False, max_depth: int | None = None, min_count: int = 0) -> str:
    t = call_tree(p, inverted=inverted)
    labels = p.func_labels()
    order = tree_order(t, labels=labels)
    depth = t["depth"].to_numpy()
    total = t["total"].to_numpy()
    func = t["func"].to_numpy()
    keep = total[order] >= max(min_count, 1)
    if max_depth is not None:
        keep &= depth[order] <= max_depth
    order = order[keep]
    unit = p.meta.get("unit") or "samples"
    head = f"Total samples: {p.total}" if unit == "samples" else f"Total {unit}: {p.total}"
    # indentation is capped so that the output stays linear in the tree's size (a
    # 10,000-deep stack would otherwise print 100 MB of blanks): past MAX_INDENT
    # levels a line is indented MAX_INDENT levels and says its depth, "[depth 1234] "
    top = min(int(depth.max()) + 1 if len(depth) else 1, MAX_INDENT + 1)
    indent = np.array(["  " * d for d in range(top)], dtype=object)
    d = depth[order]
    deep = d > MAX_INDENT
    prefix = indent[np.minimum(d, MAX_INDENT)]
    if deep.any():
        prefix = prefix.copy()
        prefix[deep] = [f"{indent[MAX_INDENT]}[depth {int(x)}] " for x in d[deep]]
    body = prefix + total[order].astype(str).astype(object) + " " + labels[func[order]]
    return head + "\n" + "".join(body + "\n") if len(body) else head + "\n"


def write_text(p, out, **options):
    out.write(render_text(p, **options).encode("utf-8"))
