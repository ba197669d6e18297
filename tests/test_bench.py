"""The benchmark command: table + JSON, baseline comparison, and the hard timeout."""

from __future__ import annotations

import json

from tests.helpers import file_hash, run_cli


def test_bench_with_baseline_prints_table_and_writes_json(demo_db, tmp_path):
    """The default engine against the independent baseline (hdbscan, one process) on the same samples."""
    out = run_cli("bench", "-d", str(demo_db), "--downsample", "2", "--baseline", "--output-dir", str(tmp_path / "res"))
    assert out.returncode == 0, out.stderr
    assert "speedup" in out.stdout and "ARI" in out.stdout and "baseline" in out.stdout
    (path,) = (tmp_path / "res").glob("bench_ds2_*.json")
    data = json.loads(path.read_text())
    assert data["status"] == "ok" and data["machine"]["cores"] >= 1 and data["machine"]["blas"]
    import subprocess

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert data["commit"] is None or data["commit"].startswith(head)  # figures name their commit (None outside git)
    assert data["database"] == f"sqlite: sqlite:///{demo_db}" and f"database: sqlite: sqlite:///{demo_db}" in out.stdout
    models = {m["model"]: m for m in data["models"]}
    assert set(models) == {"STSBMpnet", "STSBRoberta", "Nomic", "Dummy"}
    for m in models.values():
        assert m["sampled"] == data["counts"]["after"][m["model"]]
        assert m["engine"] == "fast" and m["fidelity"]["exactly_equal"] == 1.0
        # tie-heavy demo data: hdbscan against itself on permuted rows scores about 0.98 here
        assert m["ari_vs_baseline"] >= 0.95
    assert data["totals"]["rows_committed"] == sum(data["counts"]["after"].values())


def test_bench_timeout_stops_workers_and_leaves_the_database_untouched(demo_db, tmp_path):
    digest = file_hash(demo_db)
    out = run_cli("bench", "-d", str(demo_db), "--downsample", "1", "--timeout", "0.3", "--output-dir", str(tmp_path))
    assert out.returncode == 1
    assert "time limit" in out.stderr and "nothing was written" in out.stderr
    assert file_hash(demo_db) == digest
    (path,) = tmp_path.glob("bench_*.json")
    assert json.loads(path.read_text())["status"] == "failed"


def _all_results(url: str) -> dict[str, list[tuple]]:
    """Every row of the three result tables, sorted: what a bench must leave exactly as it was."""
    import sqlalchemy as sa

    from cluster_workers.db.connect import make_engine
    from tests.legacy_tables import RESULT_TABLES

    engine = make_engine(url)
    with engine.connect() as conn:
        rows = {t.name: sorted((tuple(map(repr, r)) for r in conn.execute(sa.select(t))), key=str) for t in RESULT_TABLES}
    engine.dispose()
    return rows


def test_bench_leaves_the_users_results_exactly_as_they_were(demo_db, pg_demo, tmp_path):
    """The users' own results (same parameters as the bench, so a forced run would replace them) survive a bench."""
    for url, where in ((f"sqlite:///{demo_db}", str(demo_db)), (pg_demo, pg_demo)):
        assert run_cli("cluster", "-d", where, "--downsample", "2").returncode == 0
        before = _all_results(url)
        assert len(before["embeddingcluster"]) > 0 and len(before["clusteringtree"]) == len(before["clusteringresult"]) == 4
        out = run_cli("bench", "-d", where, "--downsample", "2", "--output-dir", str(tmp_path / "res"))
        assert out.returncode == 0, out.stderr
        written = json.loads(sorted((tmp_path / "res").glob("bench_ds2_*.json"))[-1].read_text())["totals"]["rows_committed"]
        assert written == len(before["embeddingcluster"])  # the bench did write every row ...
        assert _all_results(url) == before  # ... and rolled them back


def test_bench_writes_to_the_users_cache_by_default(demo_db, tmp_path):
    out = run_cli("bench", "-d", str(demo_db), "--downsample", "4", env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr[-2000:]
    written = list((tmp_path / "cache" / "cluster_workers" / "bench").glob("bench_ds4_*.json"))
    assert len(written) == 1 and str(written[0]) in out.stdout + out.stderr
