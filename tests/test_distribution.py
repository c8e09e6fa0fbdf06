"""In-process checks of trainers.distribute (no device split, no subprocess)."""

import keras
import pytest
import tensorflow as tf

import zoo
from trainers import distribute


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="one_device"):
        distribute.make_strategy("tpu")


@pytest.mark.parametrize("tf_config", [None, "", "not json", '{"task": {}}'])
def test_multi_worker_needs_a_valid_tf_config(monkeypatch, tf_config):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.make_strategy("multi_worker")


def test_one_device_and_auto_on_a_single_device():
    for name in ("one_device", "auto"):
        strategy = distribute.make_strategy(name)
        assert strategy.num_replicas_in_sync == 1
        assert distribute.is_chief(strategy)
        assert distribute.write_path("/tmp/x/model.keras", strategy) == "/tmp/x/model.keras"


def test_set_precision_validates_and_sets_the_global_policy():
    with pytest.raises(ValueError, match="mixed_float16"):
        distribute.set_precision("float16")
    try:
        distribute.set_precision("mixed_bfloat16")
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    finally:
        distribute.set_precision("float32")
    assert keras.mixed_precision.global_policy().name == "float32"


def test_split_cpu_after_startup_explains_itself():
    tf.constant(1.0)  # devices are initialised in this process
    with pytest.raises(RuntimeError, match="fresh process"):
        distribute.split_cpu(2)
    with pytest.raises(ValueError, match="num_devices"):
        distribute.split_cpu(0)


def test_auto_precision_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(distribute, "cpu_has_bf16", lambda: True)
    assert distribute.resolve_precision("auto") == "mixed_bfloat16"
    monkeypatch.setattr(distribute, "cpu_has_bf16", lambda: False)
    assert distribute.resolve_precision("auto") == "float32"
    assert distribute.resolve_precision("mixed_float16") == "mixed_float16"
    with pytest.raises(ValueError, match="auto"):
        distribute.resolve_precision("bf16")
    try:
        assert distribute.set_precision("auto") == "float32"
        assert keras.mixed_precision.global_policy().name == "float32"
    finally:
        distribute.set_precision("float32")


def test_precision_block_builds_in_the_policy_and_restores_the_previous_one():
    keras.mixed_precision.set_global_policy("float32")
    with distribute.precision("mixed_bfloat16") as resolved:
        model = zoo.AE(filters=8, num_res_blocks=1, max_filters=16)
    assert resolved == "mixed_bfloat16"
    assert model.encoder.stem.dtype_policy.name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"


def test_replica_seeds_never_repeat_across_replicas_and_steps(monkeypatch):
    # Replica r at step n must not reuse any replica's seed of another step
    # (adding r to the generator's step counter made it replica 0's seed of step n + r).
    from zoo import distribution

    generators = {r: keras.random.SeedGenerator(7) for r in range(4)}
    seeds = []
    for _ in range(5):
        for r, generator in generators.items():  # every replica's generator moves in step
            monkeypatch.setattr(distribution, "replica_id", lambda r=r: tf.constant(r, tf.int32))
            seeds.append(tuple(distribution.replica_seed(generator).numpy()))
    assert len(set(seeds)) == len(seeds)
    # Replica 0, and so a single device, draws from the generator's own seeds.
    assert [s for i, s in enumerate(seeds) if i % 4 == 0] == [(7, n) for n in range(5)]


@pytest.mark.parametrize(
    "task_type, task_id, cluster, chief",
    [
        ("chief", 0, {"chief": ["a:1"], "worker": ["b:1"]}, True),
        ("worker", 0, {"chief": ["a:1"], "worker": ["b:1"]}, False),  # a chief task exists
        ("worker", 0, {"worker": ["a:1", "b:1"]}, True),  # no chief task: worker 0
        ("worker", 1, {"worker": ["a:1", "b:1"]}, False),
    ],
)
def test_only_the_chief_writes_to_the_real_paths(monkeypatch, task_type, task_id, cluster, chief):
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id)
    strategy_class = tf.distribute.MultiWorkerMirroredStrategy
    monkeypatch.setattr(strategy_class, "cluster_resolver", property(lambda self: resolver))
    # No cluster is started: is_chief reads only the strategy's type and cluster_resolver.
    strategy = strategy_class.__new__(strategy_class)
    assert distribute.is_chief(strategy) is chief
    expected = "/runs/a/best.keras" if chief else f"/runs/a/workertemp_{task_id}/best.keras"
    assert distribute.write_path("/runs/a/best.keras", strategy) == expected
