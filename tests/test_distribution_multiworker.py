"""MultiWorkerMirroredStrategy for real: two worker processes on 127.0.0.1.

Each test starts `tests/multiworker_train.py` twice with a `TF_CONFIG` that
names two workers on free loopback ports, waits with a timeout and always
kills what it started.
"""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multiworker_train.py")
ROOT = os.path.dirname(os.path.dirname(WORKER))
FAMILIES = ("ae", "vae", "vqvae", "dvae")


def free_ports(n: int) -> list[int]:
    sockets = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(out: str, args: list[str], ports: list[int] | None = None):
    ports = ports or free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        task = {"type": "worker", "index": index}
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": task})
        log = open(os.path.join(out, f"worker{index}.log"), "ab")
        procs.append(subprocess.Popen(
            [sys.executable, WORKER, "--out", out, *args],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        ))
        log.close()
    return procs, ports


def kill(procs) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait(procs, out: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in procs):
            if time.monotonic() > deadline:
                raise AssertionError(f"workers still running after {timeout}s:\n{logs(out)}")
            if any(p.poll() not in (None, 0) for p in procs):
                time.sleep(2)  # let the log of the other worker flush
                raise AssertionError(f"a worker failed:\n{logs(out)}")
            time.sleep(0.2)
    finally:
        kill(procs)


def logs(out: str) -> str:
    text = []
    for path in sorted(glob.glob(os.path.join(out, "worker*.log"))):
        with open(path, errors="replace") as f:
            text.append(f"--- {os.path.basename(path)}\n" + f.read()[-4000:])
    return "\n".join(text)


def load_weights(path: str) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("multiworker"))
    procs, _ = start_workers(out, ["--families", ",".join(FAMILIES), "--steps", "2"])
    wait(procs, out, timeout=240)
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_workers_end_with_identical_weights(trained, family):
    chief = load_weights(os.path.join(trained, f"weights_0_{family}.npz"))
    other = load_weights(os.path.join(trained, f"weights_1_{family}.npz"))
    assert len(chief) == len(other)
    for a, b in zip(chief, other, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    with open(os.path.join(trained, f"logs_0_{family}.json")) as f:
        record = json.load(f)
    # 2 global batches of 8 images, split over 2 workers: 2 synchronous steps.
    assert record["steps"] == 2
    assert all(np.isfinite(v) for v in record["logs"].values())


def test_only_the_chief_writes_checkpoints_and_exports(trained):
    written = sorted(os.listdir(trained))
    for family in FAMILIES:
        assert f"{family}.weights.h5" in written
        assert f"{family}.keras" in written
    assert not [name for name in written if name.startswith("workertemp")], written


@pytest.mark.slow
def test_killed_worker_job_resumes_from_backup(tmp_path):
    out = str(tmp_path)
    epochs, steps = 6, 2
    args = ["--backup", "--epochs", str(epochs), "--steps", str(steps), "--sleep", "1.0"]
    procs, ports = start_workers(out, args)
    metadata = os.path.join(out, "backup", "training_metadata.json")
    deadline = time.monotonic() + 180
    saved_epoch = 0
    try:
        while saved_epoch < 2:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise AssertionError(f"no backup of epoch 2 written:\n{logs(out)}")
            if os.path.exists(metadata):
                try:
                    with open(metadata) as f:
                        saved_epoch = json.load(f)["epoch"]
                except ValueError:
                    pass  # being written
            time.sleep(0.1)
        os.killpg(procs[1].pid, signal.SIGKILL)  # a worker dies mid-training
    finally:
        kill(procs)  # the job is torn down, as a cluster manager would
    with open(metadata) as f:
        saved_epoch = json.load(f)["epoch"]
    assert 2 <= saved_epoch < epochs
    for task in range(2):
        os.rename(os.path.join(out, f"progress_{task}.jsonl"),
                  os.path.join(out, f"first_run_{task}.jsonl"))

    procs, _ = start_workers(out, args)  # the job is restarted
    wait(procs, out, timeout=240)
    for task in range(2):
        with open(os.path.join(out, f"progress_{task}.jsonl")) as f:
            records = [json.loads(line) for line in f]
        assert records[0] == {"train_begin_step": saved_epoch * steps}
        assert [r["epoch"] for r in records[1:]] == list(range(saved_epoch, epochs))
    chief = load_weights(os.path.join(out, "weights_0_backup.npz"))
    other = load_weights(os.path.join(out, "weights_1_backup.npz"))
    for a, b in zip(chief, other, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    # The backup is deleted at the end of a completed job, on every worker.
    assert not os.path.exists(os.path.join(out, "backup"))
    assert not glob.glob(os.path.join(out, "workertemp_*", "backup"))
