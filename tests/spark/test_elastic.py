"""MultiWorkerMirroredStrategy on executors lost for good: Spark worker daemons SIGKILLed with
their executors mid-epoch (the slot is gone, not just a process), on a standalone cluster of
2 workers x 1 core that this test owns and gives replacement workers on request."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from tfspark.testing.spark import StandaloneCluster

JOB = os.path.join(os.path.dirname(__file__), "elastic_job.py")
ROWS, EPOCHS = 1200, 5


@pytest.fixture(scope="module")
def elastic(tmp_path_factory):
    """The job's result, run once for the tests below (it takes a few minutes)."""
    base = tmp_path_factory.mktemp("elastic")
    work = base / "work"
    work.mkdir()
    with StandaloneCluster(str(base / "spark"), num_workers=2, cores_per_worker=1,
                           memory_per_worker="2g") as cluster:
        done = threading.Event()

        def serve_replacements():
            served = set()
            while not done.wait(0.2):
                for name in os.listdir(work):
                    if name.startswith("need-worker-") and name not in served:
                        served.add(name)
                        cluster.add_worker()
                        (work / name.replace("need-worker-", "added-")).touch()

        threading.Thread(target=serve_replacements, daemon=True).start()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        try:
            job = subprocess.run([sys.executable, JOB, cluster.master_url, str(work)],
                                 capture_output=True, text=True, timeout=900, env=env,
                                 cwd=os.path.dirname(JOB))
        finally:
            done.set()
    lines = [line for line in job.stdout.splitlines() if line.startswith("RESULT ")]
    assert job.returncode == 0 and lines, job.stdout[-3000:] + job.stderr[-6000:]
    return json.loads(lines[0][len("RESULT "):]), job.stderr


def every_epoch_trained_each_row_once(epochs: list) -> dict:
    """{epoch: workers} of the attempt that finished each epoch, checking its counts: every
    row once (counted inside train_step, summed over the workers)."""
    finished = {}
    for record in epochs:  # later attempts overwrite epochs they ran again
        finished[record["epoch"]] = record
    assert sorted(finished) == list(range(1, EPOCHS + 1))
    for record in finished.values():
        assert (record["rows"], record["ids"]) == (ROWS, sum(range(ROWS))), record
    return {epoch: record["workers"] for epoch, record in finished.items()}


def test_below_min_workers_the_restart_fails_naming_the_lost_node(elastic):
    result = elastic[0]["too_few"]
    assert result["results"] is None
    error = result["error"]
    assert "min_workers=2" in error and "worker:1" in error and "slot_wait" in error, error
    assert result["secs"] < 240


def test_spark_fed_training_shrinks_to_one_worker_then_grows_back(elastic):
    result, stderr = elastic[0]["fed"], elastic[1]
    assert result["error"] is None and result["results"] == [2, 2]
    assert [a[1] for a in result["attempts"]] == [2, 1, 2]
    notices = [line for line in stderr.splitlines() if "tfspark: continuing" in line]
    assert ("tfspark: continuing on 1 of 2 workers: worker:1's executor on host 127.0.0.1 was "
            "lost") in notices, notices  # (the job's other runs print theirs too)
    workers = every_epoch_trained_each_row_once(result["epochs"])
    assert workers == {1: 2, 2: 1, 3: 1, 4: 2, 5: 2}
    # batch_policy="global": the global batch (10 rows x 2 workers) is kept on 1 worker, so
    # every epoch, on 1 worker or 2, takes the same 60 steps
    assert {r["steps"] for r in result["epochs"]} == {ROWS // 20}
    assert result["history_workers"] == [2, 1, 1, 2, 2]
    resumed = [r for r in result["epochs"] if r["attempt"] == 1]
    assert resumed[0]["epoch"] == 2  # after the last backed-up epoch
    recovery = result["times"]["resumed"] - result["times"]["killed-at"]
    print(f"[elastic] from the kill to the first step on 1 worker: {recovery:.1f}s")
    assert recovery < 60


def test_tf_read_training_finishes_on_the_worker_left(elastic):
    result = elastic[0]["read"]
    assert result["error"] is None and result["results"] == [1]
    assert [a[1] for a in result["attempts"]] == [2, 1]
    workers = every_epoch_trained_each_row_once(result["epochs"])
    assert workers == {1: 2, 2: 1, 3: 1, 4: 1, 5: 1}


# ------------------------------------------------------------- ParameterServerStrategy
PSS_JOB = os.path.join(os.path.dirname(__file__), "pss_elastic_job.py")


@pytest.fixture(scope="module")
def pss_elastic(tmp_path_factory):
    """pss_elastic_job.py's result: two runs that lose worker:1's Spark worker
    daemon and executor mid-training (the test kills it when the chief asks), the first with a
    replacement worker on the same host, the second without."""
    from tfspark.testing.spark import NodeKiller, kill_spark_worker_above
    base = tmp_path_factory.mktemp("pss-elastic")
    work = base / "work"
    work.mkdir()
    with StandaloneCluster(str(base / "spark"), num_workers=4, cores_per_worker=1,
                           memory_per_worker="1g") as cluster, \
            NodeKiller(str(work), kill_spark_worker_above, cluster.add_worker) as killer:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        result, output = {}, ""
        for part in ("read", "fed"):
            if part == "fed":  # after "gone": 3 slots; the fed run needs 4 + 1 to feed
                cluster.add_worker()
                cluster.add_worker()
            job = subprocess.run([sys.executable, PSS_JOB, cluster.master_url, str(work), part],
                                 capture_output=True, text=True, timeout=900, env=env,
                                 cwd=os.path.dirname(PSS_JOB))
            lines = [line for line in job.stdout.splitlines() if line.startswith("RESULT ")]
            assert not killer.errors and job.returncode == 0 and lines, (
                f"{killer.errors}\n" + job.stdout[-3000:] + job.stderr[-6000:])
            result.update(json.loads(lines[0][len("RESULT "):]))
            output += job.stderr
    return result, output


def test_pss_trains_on_without_a_lost_worker_and_takes_it_back_on_its_host(pss_elastic):
    result, stderr = pss_elastic[0]["killed"], pss_elastic[1]
    chief = result["chief"]
    assert result["attempts"] == [[0, 2, ["worker:1"]]]  # no restart: ps and chief went on
    assert chief["epochs"] >= 8  # it goes on until worker:1 trained again after rejoining
    assert "worker:1's executor on host 127.0.0.1 was lost; training goes on with 1 of 2" in (
        stderr)
    assert "worker:1 rejoined the training at 127.0.0.1:" in stderr
    marks = chief["marks"]
    print(f"[pss-elastic] rows by worker: at the kill {marks['kill']}, before the rejoin "
          f"{marks['gone']}, at the rejoin {marks['rejoined']}, at the end {marks['end']}")
    assert marks["gone"][0] > marks["kill"][0] + 20 * 32  # worker:0 trained on alone
    assert marks["end"][1] > marks["rejoined"][1]  # worker:1 trained again after rejoining
    assert 1 in result["history_workers"] and result["history_workers"][-1] == 2


def test_pss_loss_after_losing_a_worker_is_near_the_best_fit(pss_elastic):
    """Losing a worker costs the model nothing: its loss on held-out rows is within 10 % of the
    best any linear model does on them (least squares; the rows' noise sets it)."""
    chief = pss_elastic[0]["killed"]["chief"]
    print(f"[pss-elastic] loss on held-out data: killed run {chief['mse']:.4f}, best linear "
          f"fit {chief['best_mse']:.4f}")
    assert chief["mse"] <= 1.1 * chief["best_mse"]


def test_pss_finishes_without_a_worker_that_never_comes_back(pss_elastic):
    result = pss_elastic[0]["gone"]
    # worker:1's task waits in Spark for a slot that never comes: cancelled at the end
    assert result["attempts"] == [[0, 2, ["worker:1"]]] and result["chief"]["epochs"] == 8
    marks = result["chief"]["marks"]
    assert marks["end"][0] > marks["kill"][0] + 5 * 20 * 32  # worker:0 trained on alone
    assert result["history_workers"][-1] == 1
    print(f"[pss-elastic] a worker gone for good: wall time {result['secs']:.0f}s; loss "
          f"{result['chief']['mse']:.4f}, best linear fit {result['chief']['best_mse']:.4f}")
    assert result["chief"]["mse"] <= 1.1 * result["chief"]["best_mse"]


def test_a_spark_fed_pss_worker_rejoins_with_its_share_of_the_rows_sent_again(pss_elastic):
    result, stderr = pss_elastic[0]["fed"], pss_elastic[1]
    assert result["attempts"] == [[0, 2, ["worker:1"]]] and result["chief"]["epochs"] >= 8
    assert "worker:1 rejoined the training at 127.0.0.1:" in stderr
    assert "worker:1 does not rejoin" not in stderr
    marks = result["chief"]["marks"]
    print(f"[pss-elastic] Spark-fed rows by worker: at the kill {marks['kill']}, at the rejoin "
          f"{marks['rejoined']}, at the end {marks['end']}")
    assert marks["end"][1] > marks["rejoined"][1]  # worker:1 trained on its fed rows again
