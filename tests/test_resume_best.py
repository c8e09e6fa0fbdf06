"""A resumed run keeps the better `best.keras` of its earlier session."""

import hashlib
import math

import numpy as np

from trainers import config as config_lib
from trainers import training
from trainers.run_layout import best_so_far


def _history(folder, rows):
    (folder / "history.csv").write_text(
        "epoch,loss,val_mse\n" + "".join(f"{i},1.0,{v}\n" for i, v in enumerate(rows))
    )


def test_best_so_far_reads_the_lowest_finite_value(tmp_path):
    _history(tmp_path, ["0.5", "nan", "0.25", "0.75"])
    assert best_so_far(tmp_path, "val_mse") is None  # no best.keras: a new run
    (tmp_path / "best.keras").write_bytes(b"")
    assert best_so_far(tmp_path, "val_mse") == 0.25
    assert best_so_far(tmp_path, "val_bits_per_dim") is None  # not in the history
    _history(tmp_path, ["nan", "inf"])
    assert best_so_far(tmp_path, "val_mse") is None


def test_resumed_run_does_not_replace_a_better_best(tmp_path):
    np.save(tmp_path / "images.npy", np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1),
                                                                       np.uint8))
    overrides = {"dataset": str(tmp_path / "images.npy"), "batch_size": 16}
    model_dir = tmp_path / "run"

    def run(epochs):
        cfg = config_lib.resolve(
            "ae", training_overrides={**overrides, "epochs": epochs},
            assignments=["filters=8", "num_res_blocks=1"],
        )
        return training.train(cfg, model_dir, verbose=0)[1]

    first = run(1)
    assert math.isfinite(first.history["val_mse"][0])
    best = (model_dir / "best.keras").read_bytes()
    # As if the first session had reached a better model than any the next epoch reaches.
    rows = (model_dir / "history.csv").read_text().splitlines()
    column = rows[0].split(",").index("val_mse")
    cells = rows[1].split(",")
    cells[column] = "1e-9"
    (model_dir / "history.csv").write_text("\n".join([rows[0], ",".join(cells)]) + "\n")

    second = run(2)
    assert second.epoch == [1]  # resumed at the second epoch
    assert hashlib.sha256((model_dir / "best.keras").read_bytes()).digest() == (
        hashlib.sha256(best).digest()
    )
    assert (model_dir / "last.keras").read_bytes() != best
