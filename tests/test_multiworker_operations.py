"""What an operator does to a multi-worker job: stop a worker, restart the job.

- `SIGTERM` (`kill`, a cluster manager's stop): TensorFlow's coordination
  agent, started with `MultiWorkerMirroredStrategy`, took it for a preemption
  notice nothing in Keras's `fit` reads, and the worker trained on to its last
  epoch. Now it ends at once and the other worker stops on the lost peer with
  the one-line message of any lost worker, keeping the last backup.
- A restart whose workers do not see the same `--model_dir` (a local path on
  each machine, a different folder per worker): one worker resumed from the
  backup and the other started afresh, training replicas with different
  weights, silently. Now every worker refuses, naming what each restored.

Each job is two train commands on 127.0.0.1, killed in any case.
"""

import os
import signal
import time

import numpy as np

from tests.test_distribution_multiworker import kill, logs
from tests.test_train_multiworker import start_train_workers

EPOCHS = 200  # far more than the tests wait for


def _args(out: str) -> list[str]:
    dataset = os.path.join(out, "images.npy")
    if not os.path.exists(dataset):
        np.save(dataset, np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8))
    return ["--model=ae", f"--dataset={dataset}", f"--epochs={EPOCHS}", "--steps_per_epoch=10",
            "--batch_size=8", "--strategy=multi_worker", "--set=filters=8",
            "--set=num_res_blocks=1"]


def _wait_for_a_backup(procs, out: str, model_dir: str) -> None:
    """Waits until the chief's backup has committed an epoch."""
    metadata = os.path.join(model_dir, "backup", "training_metadata.json")
    deadline = time.monotonic() + 180
    while not os.path.exists(metadata):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), logs(out)
        time.sleep(0.2)


def _exit_codes(procs, limit: float) -> list[int | None]:
    deadline = time.monotonic() + limit
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p.poll() for p in procs]


def _log(out: str, index: int) -> str:
    with open(os.path.join(out, f"worker{index}.log"), errors="replace") as f:
        return f.read()


def test_a_worker_sent_sigterm_stops_and_the_job_ends(tmp_path):
    out = str(tmp_path)
    model_dir = os.path.join(out, "run")
    procs = start_train_workers(out, model_dir, _args(out))
    try:
        _wait_for_a_backup(procs, out, model_dir)
        os.kill(procs[1].pid, signal.SIGTERM)
        codes = _exit_codes(procs, limit=60)
    finally:
        kill(procs)
    assert codes[1] == -signal.SIGTERM, logs(out)
    assert codes[0] == 1, logs(out)
    assert "Training stopped: another worker of the multi-worker job stopped" in _log(out, 0)
    with open(os.path.join(model_dir, "history.csv")) as f:
        assert len(f.readlines()) < 1 + EPOCHS  # the header and the epochs done


def test_workers_restarted_on_unshared_folders_refuse_to_train(tmp_path):
    out = str(tmp_path)
    model_dir = os.path.join(out, "run")
    procs = start_train_workers(out, model_dir, _args(out))
    try:
        _wait_for_a_backup(procs, out, model_dir)
    finally:
        kill(procs)
    # The restart as on two machines with local disks: worker 1 sees another folder.
    other_dir = os.path.join(out, "elsewhere", "run")
    procs = start_train_workers(out, [model_dir, other_dir], _args(out))
    try:
        codes = _exit_codes(procs, limit=120)
    finally:
        kill(procs)
    assert codes == [1, 1], logs(out)
    for index in range(2):
        refusal = _log(out, index).rsplit("Training refused: ", 1)[-1]
        assert refusal.startswith("The workers read different backups from"), logs(out)
        assert "replica 1: no backup" in refusal and "epochs done" in refusal
