"""No idle cores: when a worker finishes, the running ones get its cores."""

from __future__ import annotations

import os

from threadpoolctl import threadpool_info

from cluster_workers.run.monitor import WorkerMonitor
from cluster_workers.run.worker import CoreShare, threads_file


def test_monitor_hands_finished_workers_cores_to_the_running_ones(tmp_path):
    monitor = WorkerMonitor(str(tmp_path), ["A", "B", "C"], timeout=60)
    assert monitor.share_cores(cores=2, n_jobs=2) == 1  # two running, one waiting
    monitor.finished("A")
    assert monitor.share_cores(cores=2, n_jobs=2) == 1  # C took A's place
    monitor.finished("B")
    assert monitor.share_cores(cores=2, n_jobs=2) == 2  # C alone: both cores
    assert threads_file(str(tmp_path)).read_text() == "2"


def test_a_worker_follows_the_coordinators_thread_count(tmp_path):
    share = CoreShare(str(tmp_path), 1)
    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    assert share() == 1 and all(i["num_threads"] == 1 for i in threadpool_info() if i["user_api"] == "blas")
    threads_file(str(tmp_path)).write_text(str(min(2, os.cpu_count() or 1)))
    assert share() == min(2, os.cpu_count() or 1)
    assert blas and all(i["num_threads"] == share.threads for i in threadpool_info() if i["user_api"] == "blas")
