"""export, load_result, compare and trajectories on a hand-built database whose answers are known."""

from __future__ import annotations

import csv
import json
import sys

import pytest
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

from tests.helpers import file_hash, run_cli
from tests.known_results import A_RUNS, B_RUNS, build_known

COLUMNS = [
    "embedding_id",
    "invocation_id",
    "run_id",
    "network",
    "initial_prompt",
    "sequence_number",
    "text_index",
    "cluster",
    "medoid_embedding_id",
    "output_text",
    "probability",
    "outlier_score",
    "core_distance",
    "state",
    "core",
]


def with_states(rows: list[tuple]) -> list[tuple]:
    """The export's rows with core_distance (none: no tree), state and core, milestoned here on their own (every member core)."""
    out, last = [], {}
    for row in sorted(rows, key=lambda r: (str(r[2]), r[6])):
        run, cluster = str(row[2]), row[7]
        if cluster != -1:
            last[run] = cluster
        out.append((*row, None, last.get(run, -1), int(cluster != -1)))  # no tree: no core distance
    return out


@pytest.fixture()
def known(tmp_path):
    return build_known(tmp_path / "known.db")


def _db(known) -> str:
    return known.url.removeprefix("sqlite:///")


# --- export / load_result ---------------------------------------------------------------


def test_export_csv_rows_match_the_database_exactly(known, tmp_path):
    out = run_cli("export", known.result_ids["A"].hex[:8], "-d", _db(known), "-o", str(tmp_path / "a.csv"))
    assert out.returncode == 0, out.stderr
    assert f"wrote {len(known.rows['A']):,} rows" in out.stdout
    with open(tmp_path / "a.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == COLUMNS
    expected = {tuple("" if v is None else str(v) for v in row) for row in with_states(known.rows["A"])}
    assert len(rows) - 1 == len(expected)
    assert {tuple(r) for r in rows[1:]} == expected
    # run order, then steps in order, as documented
    keys = [(r[2], int(r[5])) for r in rows[1:]]
    assert keys == sorted(keys)


def test_parquet_and_load_result_hold_the_same_rows(known, tmp_path):
    import pandas as pd

    import cluster_workers

    out = run_cli("export", str(known.result_ids["B"]), "-d", _db(known), "-o", str(tmp_path / "b.parquet"))
    assert out.returncode == 0, out.stderr
    frame = pd.read_parquet(tmp_path / "b.parquet")
    loaded = cluster_workers.load_result(known.url, known.result_ids["B"].hex[:10])
    assert list(frame.columns) == COLUMNS == list(loaded.columns)
    assert frame.dtypes["cluster"] == "int64" and loaded.dtypes["text_index"] == "int64"
    expected = set(with_states(known.rows["B"]))
    for df in (frame, loaded):
        got = {tuple(None if pd.isna(v) else v for v in row) for row in df.itertuples(index=False, name=None)}
        assert got == expected


def test_export_bad_input_is_one_line_and_writes_nothing(known, tmp_path, monkeypatch):
    db = _db(known)
    before = file_hash(db)
    out = run_cli("export", "ffffffff", "-d", db, "-o", str(tmp_path / "x.csv"))
    assert out.returncode == 1 and out.stderr.strip() == "error: no clustering result with id 'ffffffff'"
    a = known.result_ids["A"].hex
    out = run_cli("export", a[:8], "-d", db, "-o", str(tmp_path / "missing-dir" / "x.csv"))
    assert out.returncode == 1 and "does not exist" in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["known.db"]
    assert file_hash(db) == before

    # a missing extra: one clear line, no file
    from cluster_workers.errors import ClusterWorkersError
    from cluster_workers.views.export import export_result, load_result

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ClusterWorkersError, match=r"pip install 'cluster-workers\[frames\]'"):
        export_result(known.url, a[:8], tmp_path / "x.parquet")
    with pytest.raises(ClusterWorkersError, match=r"load_result needs pandas"):
        load_result(known.url, a[:8])
    assert not (tmp_path / "x.parquet").exists()


def test_an_ambiguous_prefix_is_refused(tmp_path):
    # many results make a shared one-character prefix certain
    models = {f"M{i}": {0: [1, 1, 1]} for i in range(40)}
    known = build_known(tmp_path / "many.db", models)
    first = {}
    for model, rid in known.result_ids.items():
        first.setdefault(rid.hex[0], []).append(model)
    prefix = next(p for p, ms in first.items() if len(ms) > 1)
    out = run_cli("export", prefix, "-d", _db(known), "-o", str(tmp_path / "x.csv"))
    assert out.returncode == 1 and f"matches {len(first[prefix])} results" in out.stderr
    assert not (tmp_path / "x.csv").exists()


# --- compare ----------------------------------------------------------------------------


def _flat(spec: dict[int, list[int]], runs) -> list[int]:
    return [label for r in runs for label in spec[r]]


def test_compare_gives_scikit_learns_scores_on_the_shared_invocations(known):
    out = run_cli("compare", "-d", _db(known), "--json")
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    (pair,) = found["comparisons"]
    assert found["left_out"] == [] and pair["note"] is None
    shared = sorted(B_RUNS)  # run 5 has no B embedding
    a, b = _flat(A_RUNS, shared), _flat(B_RUNS, shared)
    assert (pair["model_a"], pair["model_b"], pair["downsample"], pair["n"]) == ("A", "B", 1, len(a))
    assert pair["ari"] == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
    assert pair["ami"] == pytest.approx(adjusted_mutual_info_score(a, b), abs=1e-12)
    assert 0.0 < pair["ari"] < 1.0
    # A's cluster 1 (15 shared members) lies inside B's 1 (19): Jaccard 15/19; A's 3 (4) also inside B's 1: 4/19
    matches = {m["cluster_a"]: m for m in pair["matches"]}
    sets_a = {k: {i for i, x in enumerate(a) if x == k} for k in (1, 2, 3)}
    sets_b = {k: {i for i, x in enumerate(b) if x == k} for k in (1, 2, 3)}
    for ka in (1, 2, 3):
        best = max(sets_b, key=lambda kb: (len(sets_a[ka] & sets_b[kb]) / len(sets_a[ka] | sets_b[kb]), -kb))
        jacc = len(sets_a[ka] & sets_b[best]) / len(sets_a[ka] | sets_b[best])
        assert (matches[ka]["cluster_b"], matches[ka]["jaccard"]) == (best, pytest.approx(jacc))
        assert matches[ka]["size_a"] == len(sets_a[ka])
    assert matches[1]["medoid_text_a"] == "text of run 0 step 2"
    table = run_cli("compare", "-d", _db(known))
    assert table.returncode == 0 and f"{adjusted_rand_score(a, b):.3f}" in table.stdout


def test_compare_reports_a_pair_without_shared_invocations_in_its_row(tmp_path):
    apart = build_known(tmp_path / "apart.db", {"A": {0: [1, 1, 1]}, "B": {1: [1, 1, 1]}})
    db = apart.url.removeprefix("sqlite:///")
    before = file_hash(db)
    out = run_cli("compare", "-d", db, "--json")
    assert out.returncode == 0, out.stderr
    (pair,) = json.loads(out.stdout)["comparisons"]
    assert (pair["model_a"], pair["model_b"], pair["n"], pair["ari"], pair["note"]) == (
        "A",
        "B",
        0,
        None,
        "no clustered invocation in common",
    )
    table = run_cli("compare", "-d", db)
    assert table.returncode == 0 and "no clustered invocation in common" in table.stdout
    out = run_cli("compare", "-d", db, "--downsample", "7")
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "nothing to compare" in out.stderr
    assert file_hash(db) == before


def _set_parameters(url: str, result_id, parameters: dict) -> None:
    import sqlalchemy as sa

    from cluster_workers.db.connect import make_engine
    from tests.legacy_tables import clustering_result

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.update(clustering_result).where(clustering_result.c.id == result_id).values(parameters=parameters))
    engine.dispose()


def test_compare_pairs_only_like_with_like(tmp_path):
    """A result with epsilon 0 is never paired with one at 0.5; --result compares two named results anyway."""
    known = build_known(tmp_path / "mixed.db", {"A": A_RUNS, "B": B_RUNS, "C": B_RUNS})
    users = {"min_cluster_size": 5, "min_samples": 5, "allow_single_cluster": True, "engine": "fast"}
    _set_parameters(known.url, known.result_ids["A"], {"downsample": 1, "requested": {**users, "cluster_selection_epsilon": 0.0}})
    _set_parameters(known.url, known.result_ids["B"], {"downsample": 1, "requested": {**users, "cluster_selection_epsilon": 0.5}})
    _set_parameters(known.url, known.result_ids["C"], {"downsample": 1, "requested": {**users, "cluster_selection_epsilon": 0.5}})
    found = json.loads(run_cli("compare", "-d", known.url, "--json").stdout)
    assert [(p["model_a"], p["model_b"]) for p in found["comparisons"]] == [("B", "C")]
    assert found["comparisons"][0]["ari"] == pytest.approx(1.0)
    assert [(r["model"], "same downsample, parameters and engine" in r["reason"]) for r in found["left_out"]] == [("A", True)]
    named = run_cli("compare", "-d", known.url, "--json", "--result", str(known.result_ids["A"]), "--result", "latest:B")
    (pair,) = json.loads(named.stdout)["comparisons"]
    shared = sorted(B_RUNS)
    assert pair["ari"] == pytest.approx(adjusted_rand_score(_flat(A_RUNS, shared), _flat(B_RUNS, shared)), abs=1e-12)


# --- trajectories -----------------------------------------------------------------------


def test_trajectories_report_the_built_in_answers(known):
    out = run_cli("trajectories", known.result_ids["A"].hex[:8], "-d", _db(known), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    by_cluster = {row["cluster"]: row for row in data["clusters"]}
    # runs 0, 1 end in 1 (for good from steps 2 and 4); run 3 never settles; run 5 (short) ends with the outliers
    assert {k: (v["runs"], v["settled"], v["unsettled"], v["short"], v["median_entry_step"]) for k, v in by_cluster.items()} == {
        1: (2, 2, 0, 0, 3.0),
        2: (2, 1, 1, 0, 0.0),
        -1: (2, 1, 0, 1, 3.0),
    }
    runs = [row["runs"] for row in data["clusters"]]
    assert runs == sorted(runs, reverse=True)  # most runs first
    assert by_cluster[2]["unsettled_share"] == 0.5
    assert by_cluster[1]["medoid_text"] == "text of run 0 step 2"
    overall = data["overall"]
    assert (overall["runs"], overall["unsettled"], overall["short"], overall["median_entry_step"]) == (
        6,
        1,
        1,
        2.5,
    )  # settled entries 2, 4, 0, 3
    prompts = {row["initial_prompt"]: row for row in data["prompts"]}
    assert (prompts["p0"]["runs"], prompts["p0"]["unsettled_share"], prompts["p0"]["top_end"]) == (3, 0.0, 1)
    assert prompts["p0"]["top_end_share"] == pytest.approx(2 / 3) and prompts["p0"]["median_entry_step"] == 2.0
    assert (prompts["p1"]["runs"], prompts["p1"]["unsettled_share"], prompts["p1"]["top_end"]) == (3, 0.5, -1)


def test_trajectories_by_network_report_the_built_in_answers(known):
    out = run_cli("trajectories", known.result_ids["A"].hex[:8], "-d", _db(known), "--json", "--by", "network")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["by"] == "network" and "prompts" not in data
    nets = {row["network"]: row for row in data["networks"]}
    # SDXL→Moondream: runs 0, 1 (end in 1 from steps 2, 4) and 3 (never settles); FLUX: runs 2 (cluster 2 from 0),
    # 4 (outliers from 3) and 5 (short, outliers)
    sdxl, flux = nets["SDXL→Moondream"], nets["FLUX"]
    assert (sdxl["runs"], sdxl["unsettled"], sdxl["top_end"], sdxl["median_entry_step"]) == (3, 1, 1, 3.0)
    assert sdxl["top_end_share"] == pytest.approx(2 / 3)
    assert (flux["runs"], flux["unsettled"], flux["short"], flux["top_end"], flux["median_entry_step"]) == (3, 0, 1, -1, 1.5)
    table = run_cli("trajectories", known.result_ids["A"].hex[:8], "-d", _db(known), "--by", "network")
    assert "per network" in table.stdout and "SDXL→Moondream" in table.stdout
    bad = run_cli("trajectories", "latest", "-d", _db(known), "--by", "colour")
    assert bad.returncode != 0 and "--by must be prompt or network" in bad.stderr


def test_trajectories_last_k_changes_who_settles(known):
    """K = 1: every run is judged and settled (entry steps 2, 4, 0, 7, 3, 1); K = 5: runs 1 and 3 are unsettled
    (their last five texts leave their end cluster), run 5 (two texts) is short."""
    out = run_cli("trajectories", known.result_ids["A"].hex[:8], "-d", _db(known), "--json", "--last-k", "1")
    data = json.loads(out.stdout)
    o = data["overall"]
    assert (o["settled"], o["unsettled"], o["short"], o["median_entry_step"]) == (6, 0, 0, 2.5)
    by_cluster = {row["cluster"]: row for row in data["clusters"]}
    assert (by_cluster[2]["settled"], by_cluster[2]["median_entry_step"]) == (2, 3.5)
    assert (by_cluster[-1]["settled"], by_cluster[-1]["median_entry_step"]) == (2, 2.0)
    out = run_cli("trajectories", known.result_ids["A"].hex[:8], "-d", _db(known), "--json", "--last-k", "5")
    data = json.loads(out.stdout)
    o = data["overall"]
    assert (o["settled"], o["unsettled"], o["short"], o["median_entry_step"]) == (3, 2, 1, 2.0)
    by_cluster = {row["cluster"]: row for row in data["clusters"]}
    assert by_cluster[1]["unsettled_share"] == 0.5 and by_cluster[2]["unsettled_share"] == 0.5
    table = run_cli("trajectories", known.result_ids["A"].hex[:8], "-d", _db(known), "--last-k", "5").stdout
    assert "last 5 sampled texts" in table and "40% never settle" in table
