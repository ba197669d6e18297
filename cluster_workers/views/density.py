"""``density``: a result's core distances, their modality, and outliers against density and caption length."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa

from cluster_workers.analysis.density import Density, density
from cluster_workers.db.attached import read_tree
from cluster_workers.db.catalog import ResultSummary, find_result, source_exists
from cluster_workers.db.connect import Database, as_database
from cluster_workers.db.memberships import captions
from cluster_workers.errors import ConfigError
from cluster_workers.views.tables import text_table


def result_density(conn: sa.Connection, result_id: str) -> tuple[ResultSummary, Density]:
    """The analysis of one result of ours with a tree: core distances computed once more for a tree made before
    they were kept (exact, from the sample's vectors)."""
    summary = find_result(conn, result_id)
    tree = read_tree(conn, summary.id)
    if tree is None and (summary.parameters or {}).get("engine") == "evoc":
        from cluster_workers.db.attached import no_tree_message

        raise ConfigError(no_tree_message(summary))
    if tree is None:
        source = (summary.parameters or {}).get("assigned_from")
        if source and not source_exists(conn, source):
            why = f"it was made by assign from {source[:8]}, which was deleted since: cluster the model again for a tree"
        elif source:
            why = f"it was made by assign: run density on its source {source[:8]}"
        else:
            why = "a result this tool did not make, or made before trees were kept"
        raise ConfigError(f"result {summary.id.hex[:8]} ({summary.model}) has no stored tree, so no core distances ({why})")
    min_samples = int((summary.parameters or {})["engine_parameters"]["min_samples"])
    core = tree.core_distances
    if core is None:
        from cluster_workers.db.attached import load_source, member_vectors
        from cluster_workers.engines import l2_normalise
        from cluster_workers.engines.cores import core_distances

        source = load_source(conn, str(summary.id))
        core = core_distances(l2_normalise(member_vectors(conn, source, np.arange(source.n))[0]), min_samples).core
    c = captions(conn, summary.id)
    by_sorted = np.empty(tree.points)
    by_sorted[tree.positions] = core  # tree row -> sorted-id order, the captions' order
    labels = np.where(c.outlier, -1, 0)
    keep = c.present  # members whose embedding the application has deleted since: left out
    return summary, density(by_sorted[keep], labels[keep], min_samples, c.texts[keep], c.text_models[keep])


def load_density(db: str | Database, result_id: str) -> tuple[ResultSummary, Density]:
    return as_database(db).read(lambda conn: result_density(conn, result_id))


def density_table(summary: ResultSummary, d: Density) -> str:
    q = d.quantiles
    asked = (summary.parameters or {}).get("min_samples")
    why = (
        f"the result's min_samples {asked} counts the point itself, as scikit-learn does; the hdbscan package's "
        f"{d.min_samples} does not"
        if asked is not None and int(asked) != d.min_samples
        else "the result's min_samples"
    )
    lines = [f"result {summary.id.hex[:8]} ({summary.model}): {d.points:,} points; core distance = distance to the k-th "
             f"nearest other point, k = {d.min_samples} ({why})"]  # fmt: skip
    lines.append("core distance quantiles: " + "  ".join(f"{k[1:]}%={v:.4g}" for k, v in q.items()))
    if d.dip is not None:
        lines.append(
            f"dip test ({d.dip.library}, on the {d.dip.on}): D={d.dip.statistic:.4f}, p={d.dip.p_value:.3g}: {d.dip.verdict}"
        )
    lines.append("")
    lines.append(text_table(["decile", "core distance", "points", "outliers"],
                            [[str(r["decile"]), f"{r['core_from']:.4g} - {r['core_to']:.4g}", f"{r['points']:,}",
                              f"{r['outlier_share']:.1%}"] for r in d.deciles], {0, 2, 3}))  # fmt: skip
    if d.lengths:
        lines.append("")
        lines.append("caption length, outliers against clustered (Mann-Whitney U; r = rank-biserial, + = outliers longer):")
        lines.append(text_table(["text model", "unit", "outliers", "clustered", "median out", "median in", "U", "p", "r"],
                                [[t.text_model, t.unit, f"{t.outliers:,}", f"{t.clustered:,}", f"{t.outlier_median:g}",
                                  f"{t.clustered_median:g}", f"{t.u_statistic:.4g}", f"{t.p_value:.3g}", f"{t.rank_biserial:+.3f}"]
                                 for t in d.lengths], {2, 3, 4, 5, 6, 7, 8}))  # fmt: skip
    return "\n".join(lines)
