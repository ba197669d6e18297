"""The numba kernels of the MST search (:mod:`.mst`): union-find, and per point its lightest edges into
``slots`` distinct components ("slots"), offered from screened blocks under the float32 error bound.

Pure functions of arrays; the search strategies and the Borůvka loop that call them are in :mod:`.mst`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from cluster_workers.engines.bounds import distance_ceiling, distance_floor, similarity_floor
from cluster_workers.engines.kernels import CHUNK, LANES, distance, span_max

CLOSED = -2  # slot_c of a slot closed because fewer than `slots` other components exist


@njit(cache=True)
def find_root(parent: np.ndarray, a: int) -> int:
    root = a
    while parent[root] != root:
        root = parent[root]
    while parent[a] != root:
        parent[a], a = root, parent[a]
    return root


@njit(cache=True)
def component_roots(parent: np.ndarray) -> np.ndarray:
    out = np.empty(parent.size, dtype=np.int64)
    for a in range(parent.size):
        out[a] = find_root(parent, a)
    return out


@njit(cache=True, inline="always")
def _consider(best_w: np.ndarray, best_b: np.ndarray, a: int, w: float, b: int) -> None:
    if w < best_w[a] or (w == best_w[a] and b < best_b[a]):
        best_w[a] = w
        best_b[a] = b


@njit(cache=True)
def best_known(
    ids: np.ndarray, dist: np.ndarray, core: np.ndarray, slot_w: np.ndarray, slot_b: np.ndarray, comp: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per point: the lightest known edge (neighbour lists and slots, either direction) to another component.

    A listed edge weighs ``max(core[a], core[b], dist)``, computed here rather than kept (``n × L`` less memory).
    """
    n, k = ids.shape
    best_w = np.full(n, np.inf)
    best_b = np.full(n, -1, dtype=np.int64)
    for a in range(n):
        own = comp[a]
        for j in range(k):
            b = ids[a, j]
            if comp[b] != own:
                w = max(core[a], core[b], dist[a, j])
                _consider(best_w, best_b, a, w, b)
                _consider(best_w, best_b, b, w, a)
        for t in range(slot_b.shape[1]):
            b = slot_b[a, t]
            if b >= 0 and comp[b] != own:
                _consider(best_w, best_b, a, slot_w[a, t], b)
                _consider(best_w, best_b, b, slot_w[a, t], a)
    return best_w, best_b


@njit(cache=True, nogil=True, inline="always")
def _slot_of(slot_c: np.ndarray, a: int, c: int) -> int:
    """Index of a's slot for component ``c``, -1 if it has none."""
    for t in range(slot_c.shape[1]):
        if slot_c[a, t] == c:
            return t
    return -1


@njit(cache=True, nogil=True, inline="always")
def _limit(slot_w: np.ndarray, slot_c: np.ndarray, a: int, c: int, ceiling: float) -> float:
    """What an edge from ``a`` into component ``c`` must weigh less than to change a's slots.

    ``ceiling``: the heaviest slot (or a bound on it); lower when ``c`` already
    holds a slot: only a lighter edge than that one changes it.
    """
    t = _slot_of(slot_c, a, c) if c >= 0 else -1
    return min(ceiling, slot_w[a, t]) if t >= 0 else ceiling


@njit(cache=True, nogil=True, inline="always")
def _offer(slot_w: np.ndarray, slot_b: np.ndarray, slot_c: np.ndarray, a: int, w: float, b: int, c: int) -> float:
    """Offer edge ``(a, b)`` (exact weight ``w``, into component ``c``) to a's slots; returns a's heaviest slot."""
    slots = slot_w.shape[1]
    j = _slot_of(slot_c, a, c)
    if j < 0:  # a new component: it takes the heaviest slot (an empty one weighs inf)
        j = 0
        for t in range(1, slots):
            if slot_w[a, t] > slot_w[a, j]:
                j = t
        if w < slot_w[a, j]:
            slot_c[a, j] = c
            slot_w[a, j] = w
            slot_b[a, j] = b
    elif w < slot_w[a, j]:
        slot_w[a, j] = w
        slot_b[a, j] = b
    top = slot_w[a, 0]
    for t in range(1, slots):
        top = max(top, slot_w[a, t])
    return top


@njit(cache=True, nogil=True, inline="always")
def _edge_weight(x: np.ndarray, s: float, a: int, b: int, ka: float, kb: float, err: float) -> float:
    """The exact mutual-reachability weight of ``(a, b)`` (screened similarity ``s``): its cores when the
    screen proves the distance below them, else with the distance measured in float64."""
    cores = max(ka, kb)
    if distance_ceiling(s, err) <= cores:
        return cores
    return max(cores, distance(x, a, b))


@njit(cache=True, nogil=True, inline="always")
def _offer_row(x, sims, i, rows, cols, core, comp, slot_w, slot_b, slot_c, group_comp, group, err, lanes) -> None:  # type: ignore[no-untyped-def]
    """Offer ``sims[i, j]`` (point ``rows[i]`` to ``cols[j]``) to the slots of ``rows[i]``.

    A pair is weighed only if the smallest weight its screened value allows
    beats the slot it would change. With ``group`` (``group_comp``: see
    :func:`_group_components`), a chunk of columns inside one group wholly in
    one component is skipped at once when that is a's own component, or when
    it holds a's slot and cannot beat it.
    """
    n_cols = sims.shape[1]
    a = rows[i]
    own, ka = comp[a], core[a]
    top = slot_w[a].max()
    if ka >= top:
        return
    floor = similarity_floor(top, err)
    for start in range(0, n_cols, CHUNK):
        stop = min(n_cols, start + CHUNK)
        chunk_floor = floor
        if group and cols[start] // group == cols[stop - 1] // group:
            c = group_comp[cols[start] // group]
            if c == own:
                continue
            limit = _limit(slot_w, slot_c, a, c, top)
            if ka >= limit:
                continue
            chunk_floor = similarity_floor(limit, err)
        if span_max(sims[i, start:stop], lanes) <= chunk_floor:
            continue
        for j in range(start, stop):
            b = cols[j]
            if sims[i, j] <= floor or comp[b] == own or core[b] >= top:
                continue
            limit = _limit(slot_w, slot_c, a, comp[b], top)
            if max(ka, core[b], distance_floor(sims[i, j], err)) >= limit:
                continue
            w = _edge_weight(x, sims[i, j], a, b, ka, core[b], err)
            if w < limit:
                top = _offer(slot_w, slot_b, slot_c, a, w, b, comp[b])
                if ka >= top:
                    return
                floor = similarity_floor(top, err)


@njit(parallel=True, cache=True, nogil=True)
def offer_rows(x, sims, rows, cols, core, comp, slot_w, slot_b, slot_c, group_comp, group, err) -> None:  # type: ignore[no-untyped-def]
    """:func:`_offer_row` for every row of ``sims``, rows in parallel."""
    for i in prange(sims.shape[0]):
        lanes = np.empty(LANES, dtype=sims.dtype)
        _offer_row(x, sims, i, rows, cols, core, comp, slot_w, slot_b, slot_c, group_comp, group, err, lanes)


@njit(cache=True, nogil=True)
def offer_rows_serial(x, sims, rows, cols, core, comp, slot_w, slot_b, slot_c, group_comp, group, err) -> None:  # type: ignore[no-untyped-def]
    """:func:`_offer_row` for every row of ``sims`` in one thread (many small blocks side by side)."""
    lanes = np.empty(LANES, dtype=sims.dtype)
    for i in range(sims.shape[0]):
        _offer_row(x, sims, i, rows, cols, core, comp, slot_w, slot_b, slot_c, group_comp, group, err, lanes)


@njit(parallel=True, cache=True, nogil=True)
def offer_columns(x, sims, rows, cols, core, comp, slot_w, slot_b, slot_c, err) -> None:  # type: ignore[no-untyped-def]
    """Offer ``sims[i, j]`` to the slots of ``cols[j]`` (the transposed direction, no copy; tiles of columns in parallel)."""
    n_rows, n_cols = sims.shape
    n_tiles = (n_cols + CHUNK - 1) // CHUNK
    for t in prange(n_tiles):
        start = t * CHUNK
        stop = min(n_cols, start + CHUNK)
        tops = np.empty(stop - start)
        floors = np.empty(stop - start)
        for j in range(start, stop):
            tops[j - start] = slot_w[cols[j]].max()
            floors[j - start] = similarity_floor(tops[j - start], err)
        lowest = floors.min()
        lanes = np.empty(LANES, dtype=sims.dtype)
        for i in range(n_rows):
            if span_max(sims[i, start:stop], lanes) <= lowest:
                continue
            a = rows[i]
            own, ka = comp[a], core[a]
            for j in range(start, stop):
                b = cols[j]
                top = tops[j - start]
                if sims[i, j] <= floors[j - start] or comp[b] == own or ka >= top:
                    continue
                limit = _limit(slot_w, slot_c, b, own, top)
                if max(ka, core[b], distance_floor(sims[i, j], err)) >= limit:
                    continue
                w = _edge_weight(x, sims[i, j], b, a, core[b], ka, err)
                if w < limit:
                    tops[j - start] = _offer(slot_w, slot_b, slot_c, b, w, a, own)
                    floors[j - start] = similarity_floor(tops[j - start], err)
            lowest = floors.min()


@njit(cache=True)
def offer_leading_groups(points, maxima, group_comp, comp, count):  # type: ignore[no-untyped-def]
    """Groups that are among some point's ``count`` largest maxima (groups wholly inside its component left out)."""
    n_groups = maxima.shape[1]
    chosen = np.zeros(n_groups, dtype=np.bool_)
    best = np.empty(count, dtype=np.int64)
    for a in points:
        own = comp[a]
        row = maxima[a]
        m = 0
        for g in range(n_groups):
            if group_comp[g] == own:
                continue
            if m < count:
                best[m] = g
                m += 1
            else:
                low = 0
                for t in range(1, count):
                    if row[best[t]] < row[best[low]]:
                        low = t
                if row[g] > row[best[low]]:
                    best[low] = g
        for t in range(m):
            chosen[best[t]] = True
    return chosen


@njit(cache=True)
def reachable_groups(points, maxima, group_comp, group_core, core, comp, slot_w, slot_b, slot_c, done, err):  # type: ignore[no-untyped-def]
    """Groups not in ``done`` that could still hold an edge into one of some point's slots.

    A point's heaviest slot is bounded from above by its slots and by the
    groups wholly inside other components (the group's best member is at most
    ``distance_ceiling(maximum)`` away, its core at most the group's largest):
    the ``slots`` lightest such bounds over distinct components. A group whose
    maximum cannot beat that bound holds no edge for the slots, nor does a
    group wholly inside a component that already has a slot, unless it could
    beat that slot (an edge weighs at least the distance and the point's core).
    """
    n_groups = maxima.shape[1]
    slots = slot_w.shape[1]
    chosen = np.zeros(n_groups, dtype=np.bool_)
    ub_w = np.empty((1, slots))
    ub_b = np.empty((1, slots), dtype=np.int64)
    ub_c = np.empty((1, slots), dtype=np.int64)
    for a in points:
        own, ka = comp[a], core[a]
        row = maxima[a]
        ub_w[0], ub_b[0], ub_c[0] = slot_w[a], slot_b[a], slot_c[a]
        ceiling = ub_w[0].max()
        for g in range(n_groups):
            c = group_comp[g]
            if c >= 0 and c != own:
                w = max(ka, group_core[g], distance_ceiling(row[g], err))
                if w < ceiling:
                    ceiling = _offer(ub_w, ub_b, ub_c, 0, w, -1, c)
        if ka >= ceiling:
            continue
        floor = similarity_floor(ceiling, err)
        for g in range(n_groups):
            if done[g] or chosen[g] or row[g] <= floor:
                continue
            c = group_comp[g]
            if c == own:
                continue
            limit = _limit(slot_w, slot_c, a, c, ceiling)  # c < 0: the group spans components, only the ceiling bounds it
            if ka >= limit or row[g] <= similarity_floor(limit, err):
                continue
            chosen[g] = True
    return chosen
