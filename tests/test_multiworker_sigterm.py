"""A worker of a multi-worker job stops on `SIGTERM`, as a single-device run does.

TensorFlow's coordination agent, started with `MultiWorkerMirroredStrategy`,
takes `SIGTERM` for a preemption notice nothing in Keras's `fit` reads: `kill`
or a cluster manager's stop left the worker training to its last epoch. Now
the signalled worker ends at once and the other one stops on the lost peer
with the one-line message of any lost worker, keeping the last backup.
"""

import os
import signal
import time

import numpy as np

from tests.test_distribution_multiworker import kill, logs
from tests.test_train_multiworker import start_train_workers


def _exit_codes(procs, limit: float) -> list[int | None]:
    deadline = time.monotonic() + limit
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p.poll() for p in procs]


def test_a_worker_sent_sigterm_stops_and_the_job_ends(tmp_path):
    out = str(tmp_path)
    dataset = os.path.join(out, "images.npy")
    np.save(dataset, np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8))
    model_dir = os.path.join(out, "run")
    args = ["--model=ae", f"--dataset={dataset}", "--epochs=200", "--steps_per_epoch=10",
            "--batch_size=8", "--strategy=multi_worker", "--set=filters=8",
            "--set=num_res_blocks=1"]
    procs = start_train_workers(out, model_dir, args)
    try:
        history = os.path.join(model_dir, "history.csv")
        deadline = time.monotonic() + 180
        while not os.path.exists(history):  # an epoch is done: training is under way
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), logs(out)
            time.sleep(0.2)
        os.kill(procs[1].pid, signal.SIGTERM)
        codes = _exit_codes(procs, limit=60)
    finally:
        kill(procs)
    assert codes[1] == -signal.SIGTERM, logs(out)
    assert codes[0] == 1, logs(out)
    with open(os.path.join(out, "worker0.log"), errors="replace") as f:
        assert "Training stopped: another worker of the multi-worker job stopped" in f.read()
    with open(history) as f:
        assert len(f.readlines()) < 1 + 200  # header and the epochs done: not run to the end
