"""The train command under `--strategy=multi_worker`: two worker processes on 127.0.0.1.

Both workers run the train command (`trainers.train.main`, flags and all)
with the same `--model_dir` and their own `TF_CONFIG`. The only addition is a
few lines of wrapper that dump the final in-memory weights of each worker
(the non-chief's own files are deleted at the end by design), so the test can
show both workers trained identically. Ports, launching, timeouts and the
always-kill cleanup come from tests/test_distribution_multiworker.py.
"""

import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import zoo  # also registers the classes last.keras names
from tests.test_distribution_multiworker import free_ports, kill, load_weights, wait

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS, STEPS = 2, 2
TINY = ["--set=filters=8", "--set=num_res_blocks=1", "--set=num_embeddings=16",
        "--set=embedding_dim=8", "--set=max_filters=16"]

# The train command, plus a dump of the weights `train()` returns.
WRAPPER = """
import os, sys
import numpy as np
from trainers import cli, train


def main(argv):
    # Imported here, after cli.run's quiet TensorFlow start, as the real command does.
    from trainers import training

    real_train = training.train

    def train_and_dump(config, model_dir, verbose="auto"):
        model, history = real_train(config, model_dir, verbose=verbose)
        np.savez(os.environ["ZOO_TEST_DUMP"], *[np.asarray(v) for v in model.weights])
        return model, history

    training.train = train_and_dump  # train.main imports it when it runs
    return train.main(argv)


sys.argv = ["trainers.train", *sys.argv[1:]]
cli.run(main)
"""


def start_train_workers(out: str, model_dir: str | list[str], args: list[str]):
    """Starts the two workers; each logs to `<out>/worker<i>.log`.

    `model_dir` is the job's folder, or each worker's (a list of two).
    """
    model_dirs = [model_dir] * 2 if isinstance(model_dir, str) else model_dir
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    procs = []
    try:
        for index in range(2):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
                       PYTHONPATH=ROOT, ZOO_TEST_DUMP=os.path.join(out, f"weights_{index}.npz"))
            env["TF_CONFIG"] = json.dumps({"cluster": cluster,
                                           "task": {"type": "worker", "index": index}})
            with open(os.path.join(out, f"worker{index}.log"), "ab") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, "-c", WRAPPER, f"--model_dir={model_dirs[index]}", *args],
                    env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                ))
    except BaseException:
        kill(procs)
        raise
    return procs


def run_job(tmp_path, family: str, extra: tuple[str, ...] = ()) -> tuple[str, str]:
    out = str(tmp_path)
    dataset = os.path.join(out, "images.npy")
    np.save(dataset, np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8))
    model_dir = os.path.join(out, "runs", family)
    args = [f"--model={family}", f"--dataset={dataset}", f"--epochs={EPOCHS}",
            f"--steps_per_epoch={STEPS}", "--batch_size=8", "--strategy=multi_worker", *TINY,
            *extra]
    wait(start_train_workers(out, model_dir, args), out, timeout=240)  # kills both in any case
    return out, model_dir


def check_job(out: str, model_dir: str) -> None:
    assert {"config.json", "best.keras", "last.keras", "history.csv", "images", "logs"} <= set(
        os.listdir(model_dir)
    ), os.listdir(model_dir)
    with open(os.path.join(model_dir, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == list(range(EPOCHS))
    assert all(np.isfinite(float(row["loss"])) for row in rows)
    assert sorted(os.listdir(os.path.join(model_dir, "images"))) == [
        f"epoch_{e:03d}.png" for e in range(1, EPOCHS + 1)
    ]
    for split in ("train", "validation"):  # TensorBoard event files
        assert os.listdir(os.path.join(model_dir, "logs", split))
    # The non-chief wrote into private folders and removed them all.
    leftovers = [os.path.join(d, name) for d, names, files in os.walk(out)
                 for name in names + files if name.startswith("workertemp")]
    assert not leftovers, leftovers

    chief = load_weights(os.path.join(out, "weights_0.npz"))
    other = load_weights(os.path.join(out, "weights_1.npz"))
    assert len(chief) == len(other)
    for a, b in zip(chief, other, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    # last.keras is the chief's final state (the weights the workers agree on).
    last = keras.saving.load_model(os.path.join(model_dir, "last.keras"))
    saved = [np.asarray(v) for v in last.weights]
    assert len(saved) == len(chief)
    for a, b in zip(saved, chief, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert int(last.optimizer.iterations.numpy()) == EPOCHS * STEPS  # synchronous global steps


def test_dvae_trains_with_the_train_command_on_two_workers(tmp_path):
    out, model_dir = run_job(tmp_path, "dvae")
    check_job(out, model_dir)
    # The temperature callback drove both workers (their temperatures are among
    # the identical weights) to the schedule's end: 1/16 after 75% of 4 steps.
    last = keras.saving.load_model(os.path.join(model_dir, "last.keras"))
    assert float(last.temperature.numpy()) == pytest.approx(1 / 16)


@pytest.mark.slow
def test_vqvae_trains_with_the_train_command_on_two_workers(tmp_path):
    check_job(*run_job(tmp_path, "vqvae"))


@pytest.mark.slow
def test_feature_matching_trains_on_two_workers(tmp_path):
    # The frozen feature network runs inside each replica's step (not tracked,
    # not synchronised): the workers must still end with the same weights.
    out, model_dir = run_job(tmp_path, "vqvae", ("--set=training.feature_matching_weight=0.1",))
    check_job(out, model_dir)
    with open(os.path.join(model_dir, "config.json")) as f:
        assert json.load(f)["training"]["feature_matching_weight"] == 0.1


@pytest.mark.slow
@pytest.mark.parametrize("family, option, expected", [
    ("vqvae", "commitment_cost=0.5", {"commitment_cost": 0.5}),
    ("dvae", "temperature=0.0625", {"temperature": 0.0625}),  # the VQ-VAE becomes a dVAE
])
def test_a_fine_tuning_run_from_a_vqvae_trains_on_two_workers(tmp_path, family, option,
                                                               expected):
    # Each worker rebuilds the initial model with the option (a dVAE run converts it
    # first, `zoo.DVAE.from_vqvae`) inside the strategy's scope.
    from tests.helpers import tiny_model

    initial = os.path.join(str(tmp_path), "initial.keras")
    tiny_model("vqvae").save(initial)
    out, model_dir = run_job(tmp_path, family, (f"--init_from={initial}", f"--set={option}"))
    check_job(out, model_dir)
    last = keras.saving.load_model(os.path.join(model_dir, "last.keras"))
    assert type(last) is zoo.FAMILIES[family]
    assert {key: last.get_config()[key] for key in expected} == expected
