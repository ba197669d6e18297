"""The same workflow on a real dask.distributed cluster (worker processes on loopback)."""
# ruff: noqa: E402 -- the imports after importorskip need dask.distributed

from __future__ import annotations

import pytest

distributed = pytest.importorskip("distributed", reason="dask.distributed not installed (pip install 'cluster-workers[dask]')")

import dask

from cluster_workers.errors import ConfigError, WorkerFailed
from cluster_workers.run.config import Settings
from cluster_workers.run.coordinator import run_clustering
from tests.helpers import file_hash, stored


@pytest.fixture(scope="module")
def cluster():
    # a task whose worker dies must fail the run, not be retried elsewhere
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as lc:
            yield lc


def _labels(url: str) -> dict:
    results, members = stored(url)
    out = {}
    for model, rows in results.items():
        (row,) = rows
        out[model] = sorted((str(e), str(m)) for e, m in members[row["id"]])
    return out


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_dask_backend_commits_the_same_labels_as_loky(cluster, db, request, demo_template, tmp_path):
    import shutil

    if db == "sqlite":
        urls = []
        for name in ("loky", "dask"):
            shutil.copy(demo_template, tmp_path / f"{name}.db")
            urls.append(f"sqlite:///{tmp_path / name}.db")
    else:
        from cluster_workers.tools.demo import build_demo_database
        from tests.helpers import SMALL

        first = request.getfixturevalue("pg_demo")
        urls = [first]
        second = request.getfixturevalue("pg_url_second")
        build_demo_database(second, embeddings=SMALL, seed=7)
        urls.append(second)
    base = dict(downsample=2, engine="reference", workers=2)
    loky = run_clustering(Settings(database_url=urls[0], **base))
    dask_report = run_clustering(Settings(database_url=urls[1], backend="dask", scheduler=cluster.scheduler_address, **base))
    assert {r.model for r in dask_report.results} == {r.model for r in loky.results}
    # same ids, same clusters (medoid ids identify clusters), written in one commit
    assert _labels(urls[0]) == _labels(urls[1])


def test_dask_without_a_scheduler_is_a_usage_error(demo_db):
    with pytest.raises(ConfigError, match="--scheduler"):
        run_clustering(Settings(database_url=f"sqlite:///{demo_db}", downsample=2, backend="dask"))


def test_a_dask_worker_killed_mid_run_writes_nothing(mid_db):
    """The death is reported (KilledWorker), or -- seen with both cores saturated, where joblib's dask backend did
    not surface it and the worker died before it reported -- the run's bound (timeout x rounds of models) stops
    it: either way within a bound, and nothing is written."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with (
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
            ) as lc,
            distributed.Client(lc) as client,
        ):
            digest = file_hash(mid_db)
            import threading
            import time

            pids = client.run(__import__("os").getpid)  # while the workers are idle

            def kill_a_busy_worker() -> None:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    busy = [w for w, tasks in client.processing().items() if tasks]
                    if busy:
                        time.sleep(1.0)
                        pid = pids[busy[0]]  # asked before the run: no round trip to a saturated worker now
                        __import__("os").kill(pid, 9)
                        return
                    time.sleep(0.1)

            killer = threading.Thread(target=kill_a_busy_worker)
            killer.start()
            with pytest.raises(WorkerFailed) as err:
                run_clustering(
                    Settings(
                        database_url=f"sqlite:///{mid_db}",
                        downsample=1,
                        engine="reference",
                        workers=2,
                        backend="dask",
                        scheduler=lc.scheduler_address,
                        timeout=30,
                    )
                )
            killer.join(timeout=90)
            assert not killer.is_alive()
    assert "nothing was written" in str(err.value) or "died" in str(err.value)
    assert file_hash(mid_db) == digest
