"""A run killed at any point resumes as if it had not been stopped.

The backup (`BackupAndRestore`) is the commit point of an epoch: a session that
died after it but before `last.keras`, `history.csv` or `run_info.json` lost
them for good (a one-epoch run resumed as "already complete" with no model).
A resumed run with `steps_per_epoch` also restarted its repeated, shuffled
data stream, so it trained again on the first epochs' images.
"""

import csv
import json

import keras
import numpy as np
import pytest

from trainers import config as config_lib
from trainers import train_callbacks, training


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing cleans up after it."""


class _DieAtEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise Killed


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "images.npy", rng.integers(0, 256, (200, 28, 28, 1), np.uint8))


def _train(tmp_path, folder="run", callbacks=(), family="ae", **training_overrides):
    discrete = ["num_embeddings=16", "embedding_dim=8"] if family in ("vqvae", "dvae") else []
    cfg = config_lib.resolve(
        family,
        training_overrides={"dataset": str(tmp_path / "images.npy"), "batch_size": 16,
                            **training_overrides},
        assignments=["filters=8", "num_res_blocks=1", *discrete],
    )
    return training.train(cfg, tmp_path / folder, verbose=0, callbacks=list(callbacks))


def _epochs_in_history(run):
    with open(run / "history.csv", newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_killed_while_writing_last_keras_resumes_that_epoch(tmp_path, images, monkeypatch):
    original = train_callbacks.AtomicModelCheckpoint._save_model

    def dies(self, epoch, batch, logs):
        raise Killed

    monkeypatch.setattr(train_callbacks.AtomicModelCheckpoint, "_save_model", dies)
    with pytest.raises(Killed):
        _train(tmp_path, epochs=1)
    monkeypatch.setattr(train_callbacks.AtomicModelCheckpoint, "_save_model", original)

    history = _train(tmp_path, epochs=1)[1]  # the same command again
    run = tmp_path / "run"
    assert history.epoch == [0]  # the epoch runs again, not "already complete"
    assert (run / "last.keras").is_file() and (run / "best.keras").is_file()
    assert _epochs_in_history(run) == [0]
    assert json.loads((run / "run_info.json").read_text())["sessions"][-1]["epochs_run"] == 1


def test_killed_after_the_history_row_does_not_duplicate_it(tmp_path, images, monkeypatch):
    def dies(self, epoch, logs=None):
        raise Killed

    # RunTimeRecorder runs after the CSV logger: the row of epoch 0 is written, then it dies.
    monkeypatch.setattr(train_callbacks.RunTimeRecorder, "on_epoch_end", dies)
    with pytest.raises(Killed):
        _train(tmp_path, epochs=2)
    monkeypatch.undo()

    history = _train(tmp_path, epochs=2)[1]
    assert history.epoch == [0, 1]
    assert _epochs_in_history(tmp_path / "run") == [0, 1]


# The stochastic families draw noise from `SeedGenerator`s (the VAE's posterior, the
# dVAE's Gumbel noise, the VQ-VAE's code restarts), whose state the weights files leave
# out: the backup keeps it, else a resumed run replays the noise of its first steps.
@pytest.mark.parametrize("family", ["ae", "vae", "vqvae", "dvae"])
def test_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, images, family):
    settings = {"batch_size": 8, "epochs": 2, "steps_per_epoch": 3, "seed": 1,
                "precision": "float32", "family": family}
    uninterrupted = _train(tmp_path, "whole", **settings)[0]
    with pytest.raises(Killed):
        _train(tmp_path, "resumed", [_DieAtEpoch()], **settings)
    resumed = _train(tmp_path, "resumed", **settings)[0]
    for a, b in zip(uninterrupted.weights, resumed.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_resumed_run_of_whole_epochs_ends_where_an_uninterrupted_one_does(tmp_path, images):
    # Without steps_per_epoch each epoch reshuffles: a resumed run restarted the shuffle
    # and trained its next epoch in the first epoch's order.
    settings = {"batch_size": 16, "epochs": 2, "steps_per_epoch": None, "seed": 1,
                "precision": "float32"}
    uninterrupted = _train(tmp_path, "whole", **settings)[0]
    with pytest.raises(Killed):
        _train(tmp_path, "resumed", [_DieAtEpoch()], **settings)
    resumed, history = _train(tmp_path, "resumed", **settings)
    assert history.epoch == [1]
    assert int(resumed.optimizer.iterations.numpy()) == int(
        uninterrupted.optimizer.iterations.numpy())  # 12 steps an epoch, the last one short
    for a, b in zip(uninterrupted.weights, resumed.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
