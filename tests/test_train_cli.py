"""The train, evaluate and reconstruct commands end to end, in subprocesses, on tiny data.

Each subprocess pays TensorFlow's import (~5-8 s on 2 cores), so one trained
run (a module fixture) serves the file-layout, re-run, refusal, evaluate,
reconstruct and `--init_from` checks. Kill-and-resume and divergence run
`trainers.train.main` through a small wrapper that hangs (or poisons the
weights) at the start of the second epoch, so the timing is deterministic.
"""

import csv
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from tests.helpers import REPO_ROOT, random_images
from trainers import distribute, machine
from zoo import runtime

TINY = [
    "--set=filters=8",
    "--set=num_res_blocks=1",
    "--set=num_embeddings=16",
    "--set=embedding_dim=8",
]
TIMEOUT = 240

# Runs the train command, but at the start of the second epoch (all of the first
# epoch's files written) either hangs until killed, or sets every weight to NaN.
WRAPPER = """
import hashlib, os, pathlib, sys, time
from absl import app
from trainers import train, train_callbacks

def on_epoch_begin(self, epoch, logs=None):
    if epoch < 1:
        return
    mark = pathlib.Path(os.environ["ZOO_TEST_MARK"])
    if os.environ["ZOO_TEST_MODE"] == "hang":
        mark.write_text(str(epoch))
        time.sleep(600)
    last = pathlib.Path(os.environ["ZOO_TEST_RUN"]) / "last.keras"
    mark.write_text(hashlib.sha256(last.read_bytes()).hexdigest())
    for variable in self.model.trainable_variables:
        variable.assign(variable * float("nan"))

train_callbacks.ReconstructionGrid.on_epoch_begin = on_epoch_begin
sys.argv = ["trainers.train", *sys.argv[1:]]
app.run(train.main)
"""


def _env(**extra) -> dict:
    return {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": str(REPO_ROOT),
        "CUDA_VISIBLE_DEVICES": "",
        **extra,
    }


def run_command(args: list[str], **env) -> subprocess.CompletedProcess:
    """Runs `python <args>` at the repository root; returns the finished process."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (
        f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def train_args(model_dir, dataset, epochs=2, *extra) -> list[str]:
    return [
        "-m",
        "trainers.train",
        "--model=dvae",
        f"--model_dir={model_dir}",
        f"--dataset={dataset}",
        f"--epochs={epochs}",
        "--steps_per_epoch=2",
        "--batch_size=8",
        *TINY,
        *extra,
    ]


def history(model_dir) -> list[dict]:
    with open(model_dir / "history.csv") as f:
        return list(csv.DictReader(f))


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.npy"
    np.save(path, random_images(40))
    return path


@pytest.fixture(scope="module")
def dvae_run(tmp_path_factory, dataset):
    """A finished two-epoch tiny dVAE run: (model_dir, command args, process)."""
    model_dir = tmp_path_factory.mktemp("runs") / "dvae"
    args = train_args(model_dir, dataset)
    return model_dir, args, ok(run_command(args))


def test_train_writes_config_checkpoints_logs_history_and_pictures(dvae_run, dataset):
    model_dir, _, result = dvae_run
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model"] == "dvae"
    assert config["model_config"]["filters"] == 8 and config["model_config"]["num_embeddings"] == 16
    assert config["training"]["dataset"] == str(dataset) and config["training"]["epochs"] == 2
    assert "temperature_schedule" in config["training"]
    for name in ("best.keras", "last.keras", "run_info.json", "backup/training_metadata.json"):
        assert (model_dir / name).is_file(), name
    assert {p.parent.name for p in (model_dir / "logs").rglob("events.out.tfevents.*")} == {
        "train",
        "validation",
    }
    rows = history(model_dir)
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert {"loss", "mse", "psnr", "perplexity", "val_mse", "temperature"} <= set(rows[0])
    # The dVAE's temperature annealing runs without being asked for.
    assert float(rows[1]["temperature"]) < float(rows[0]["temperature"]) < 1.0
    for epoch in (1, 2):
        with Image.open(model_dir / "images" / f"epoch_{epoch:03d}.png") as picture:
            assert picture.width > picture.height > 2 * 28  # originals over reconstructions
    info = json.loads((model_dir / "run_info.json").read_text())
    assert info["train_seconds"] > 0 and info["sessions"][0]["epochs_run"] == 2
    # What the card's training time needs to mean something: the CPU and the precision.
    config = json.loads((model_dir / "config.json").read_text())
    assert info["sessions"][0]["precision"] == distribute.resolve_precision(
        config["training"]["precision"])
    assert machine.cpu_model() in info["sessions"][0]["machine"]
    assert info["sessions"][0]["onednn"] in (True, False, None)
    if sys.platform == "linux" and platform.machine() == "x86_64":
        # On by the zoo's default there; a developer's TF_ENABLE_ONEDNN_OPTS=0 wins.
        chosen = os.environ.get(runtime.ONEDNN_VAR, "1").lower() not in ("0", "false")
        assert info["sessions"][0]["onednn"] is chosen
    assert "Epoch 2/2" in result.stdout


def test_rerun_trains_no_more_and_other_configs_are_refused(dvae_run):
    model_dir, args, _ = dvae_run
    before = {
        name: sha256(model_dir / name) for name in ("last.keras", "best.keras", "config.json")
    }
    again = ok(run_command(args))
    assert "was already complete (2 epochs" in again.stdout and "--init_from=" in again.stdout
    assert [row["epoch"] for row in history(model_dir)] == ["0", "1"]
    assert {name: sha256(model_dir / name) for name in before} == before
    assert len(json.loads((model_dir / "run_info.json").read_text())["sessions"]) == 1

    refused = run_command([*args, "--learning_rate=0.01", "--set=num_embeddings=32"])
    assert refused.returncode != 0
    assert "different config" in refused.stderr
    assert "model_config.num_embeddings, training.learning_rate" in refused.stderr
    assert f"--config={model_dir / 'config.json'}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert {name: sha256(model_dir / name) for name in before} == before


def test_evaluate_and_reconstruct_commands(dvae_run, tmp_path):
    model_dir, _, _ = dvae_run
    output_dir = tmp_path / "eval"
    result = ok(
        run_command(
            [
                "-m",
                "trainers.evaluate",
                f"--model_dir={model_dir}",
                "--max_images=3",
                f"--output_dir={output_dir}",
            ]
        )
    )
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert metrics["num_images"] == 3
    assert metrics["model_file"].endswith("best.keras")
    assert 0.0 < metrics["mse"] < 1.0 and metrics["psnr"] > 0.0 and -1.0 < metrics["ssim"] <= 1.0
    assert 1.0 <= metrics["perplexity"] <= 16.0 and 0.0 < metrics["codebook_usage"] <= 1.0
    for name in ("reconstructions.png", "samples.png"):
        assert (output_dir / name).stat().st_size > 0
    assert "psnr" in result.stdout and "perplexity" in result.stdout

    inputs, outputs = tmp_path / "inputs", tmp_path / "outputs"
    (inputs / "a" / "b").mkdir(parents=True)
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(inputs / "a" / "one.png")
    Image.fromarray(np.full((30, 28), 200, np.uint8)).save(inputs / "a" / "b" / "two.jpg")
    (inputs / "notes.txt").write_text("skipped")
    ok(
        run_command(
            [
                "-m",
                "trainers.reconstruct",
                f"--model_dir={model_dir}",
                f"--input_dir={inputs}",
                f"--output_dir={outputs}",
            ]
        )
    )
    written = sorted(str(p.relative_to(outputs)) for p in outputs.rglob("*") if p.is_file())
    assert written == ["a/b/two.png", "a/one.png"]
    with Image.open(outputs / "a" / "one.png") as picture:
        assert picture.size == (28, 28)


@pytest.mark.slow  # ~30 s: two more training processes
def test_init_from_run_can_be_rerun(dvae_run, dataset, tmp_path):
    model_dir, _, _ = dvae_run
    args = [
        "-m",
        "trainers.train",
        "--model=dvae",
        f"--model_dir={tmp_path / 'tuned'}",
        f"--dataset={dataset}",
        "--epochs=1",
        "--steps_per_epoch=1",
        "--batch_size=8",
        f"--init_from={model_dir / 'last.keras'}",
    ]
    ok(run_command(args))
    config = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert config["model_config"]["filters"] == 8  # the initial model's architecture
    ok(run_command(args))  # the same command again: not "a different config"
    assert [row["epoch"] for row in history(tmp_path / "tuned")] == ["0"]


def test_killed_run_resumes_at_the_next_epoch(dataset, tmp_path):
    model_dir, mark = tmp_path / "run", tmp_path / "mark"
    args = train_args(model_dir, dataset, 3)
    with open(tmp_path / "log.txt", "w") as log:
        child = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, *args[2:]],
            cwd=REPO_ROOT,
            env=_env(ZOO_TEST_MODE="hang", ZOO_TEST_MARK=str(mark)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + TIMEOUT
            while not mark.exists() and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
            assert mark.exists(), (tmp_path / "log.txt").read_text()[-3000:]
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)
    assert [row["epoch"] for row in history(model_dir)] == ["0"]
    assert json.loads((model_dir / "backup" / "training_metadata.json").read_text())["epoch"] == 1
    killed = json.loads((model_dir / "run_info.json").read_text())
    assert [s["epochs_run"] for s in killed["sessions"]] == [1]  # its finished epoch's time
    assert killed["train_seconds"] > 0

    ok(run_command(args))
    rows = history(model_dir)
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]
    # The step counter was restored too: the temperature keeps falling instead of
    # starting over at epoch 1.
    temperatures = [float(row["temperature"]) for row in rows]
    assert temperatures[0] > temperatures[1] > temperatures[2]
    info = json.loads((model_dir / "run_info.json").read_text())
    assert [s["epochs_run"] for s in info["sessions"]] == [1, 2]  # the sessions add up
    assert info["train_seconds"] == pytest.approx(
        sum(s["seconds"] for s in info["sessions"]), abs=0.1)
    assert (model_dir / "last.keras").is_file() and (model_dir / "images/epoch_003.png").is_file()


def test_diverging_run_stops_clearly_and_keeps_the_last_good_model(dataset, tmp_path):
    model_dir, mark = tmp_path / "run", tmp_path / "mark"
    args = train_args(model_dir, dataset, 2)
    result = run_command(
        ["-c", WRAPPER, *args[2:]],
        ZOO_TEST_MODE="nan",
        ZOO_TEST_MARK=str(mark),
        ZOO_TEST_RUN=str(model_dir),
    )
    assert result.returncode != 0
    assert "Training stopped: Training diverged: loss is nan" in result.stderr
    assert "Traceback" not in result.stderr
    assert sha256(model_dir / "last.keras") == mark.read_text()  # epoch 1's model, untouched
    assert [row["epoch"] for row in history(model_dir)] == ["0"]
    assert json.loads((model_dir / "backup" / "training_metadata.json").read_text())["epoch"] == 1
    killed = json.loads((model_dir / "run_info.json").read_text())
    assert [s["epochs_run"] for s in killed["sessions"]] == [1]  # its finished epoch's time
    assert killed["train_seconds"] > 0
    assert not (model_dir / "images" / "epoch_002.png").exists()
