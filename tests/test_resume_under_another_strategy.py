"""A run resumes under another `--strategy`; anything that changes what it computes is refused.

The batch size is global, so a step is the same step on one device, N replicas
or N workers: a multi-worker job that lost a machine can finish on one, and a
run started on one GPU can go on with two. `training.strategy` in the saved
config made the train commands refuse such a resume ("differing:
training.strategy"), and `--config=<run>/config.json` brought the old strategy
back.
"""

import pytest

from trainers import config as config_lib
from trainers import train as train_command
from trainers import train_prior


@pytest.mark.parametrize("resolve, check", [
    (lambda **t: config_lib.resolve("vqvae", training_overrides=t),
     train_command._check_model_dir),
    (lambda **t: train_prior.resolve("vqvae_fashion_mnist", training_overrides=t),
     train_prior.check_model_dir),
])
def test_a_run_resumes_under_another_strategy_not_another_batch(tmp_path, resolve, check):
    run = tmp_path / "run"
    run.mkdir()
    config_lib.save(resolve(strategy="multi_worker", batch_size=64), run / "config.json")
    for strategy in ("one_device", "mirrored", "auto"):
        check(run, resolve(strategy=strategy, batch_size=64))
    with pytest.raises(ValueError, match=r"differing: training\.batch_size\)"):
        check(run, resolve(strategy="mirrored", batch_size=32))
