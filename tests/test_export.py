"""Versioned, atomic exports and the `trainers.export` command.

The serving contract of what is exported is in test_export_contract.py.
"""

import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

import zoo.export
from tests.helpers import FAMILY_NAMES, random_images, tiny_model
from trainers import export as export_cli
from zoo.export import existing_versions, export_model


@pytest.fixture(scope="module")
def model():
    return tiny_model("ae")


def listing(base):
    return sorted(os.listdir(base))


def test_versions_count_up_and_keras_file_sits_beside(model, tmp_path):
    base = tmp_path / "ae"
    assert export_model(model, str(base), keras_file=False) == str(base / "1")
    assert export_model(model, str(base)) == str(base / "2")
    assert export_model(model, str(base), version=10, keras_file=False) == str(base / "10")
    (base / ".tmp-12-leftover").mkdir()  # what a killed export leaves: not a version
    assert export_model(model, str(base)) == str(base / "11")
    assert listing(base) == [".tmp-12-leftover", "1", "10", "11", "11.keras", "2", "2.keras"]
    assert existing_versions(str(base)) == [1, 2, 10, 11]
    images = random_images(2, seed=5)
    reloaded = keras.saving.load_model(base / "11.keras")
    np.testing.assert_allclose(reloaded(images), model(images), atol=1e-6)
    assert os.path.isfile(base / "11" / "assets.extra" / "tf_serving_warmup_requests")


def test_an_export_removes_what_killed_exports_of_this_machine_left(model, tmp_path):
    # A killed export leaves its .tmp folder (a SavedModel's worth of files); the next
    # export removes it when its writer is dead, and only then: a running export's
    # folder, another machine's (a shared export base) and unowned names are kept.
    import socket
    import subprocess
    import sys

    base = tmp_path / "ae"
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    kept = [f".tmp-4-{host}-{os.getpid()}-running", f".tmp-5-other-host-{dead}-abc",
            ".tmp-6-leftover"]
    for name in [f".tmp-3-{host}-{dead}-x1y2", *kept]:
        (base / name / "saved_model").mkdir(parents=True)
    assert export_model(model, str(base), keras_file=False) == str(base / "1")
    assert listing(base) == sorted([*kept, "1"])


def test_the_keras_file_beside_an_export_holds_no_optimizer_state(tmp_path):
    # A zoo.load-ed model is compiled but its optimizer has not run: saved as it is,
    # loading the file warned that it skipped the optimizer's variables.
    compiled = tiny_model("vqvae")
    compiled.compile(optimizer="adam")
    export_model(compiled, str(tmp_path / "vq"), version=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reloaded = keras.saving.load_model(tmp_path / "vq" / "1.keras")
    assert getattr(reloaded, "optimizer", None) is None  # compile it to fine-tune
    images = random_images(2, seed=5)
    np.testing.assert_allclose(reloaded(images), compiled(images), atol=1e-6)


def test_existing_version_is_never_overwritten(model, tmp_path):
    base = tmp_path / "ae"
    export_model(model, str(base), version=3)
    before = {name: os.path.getmtime(base / "3" / name) for name in os.listdir(base / "3")}
    with pytest.raises(FileExistsError, match=r"Version 3 already exists.*existing: \[3\]"):
        export_model(model, str(base), version=3)
    # A leftover 4.keras also blocks version 4 (its SavedModel would not match it).
    (base / "4.keras").write_bytes(b"")
    with pytest.raises(FileExistsError, match="Version 4 already exists"):
        export_model(model, str(base), version=4)
    assert listing(base) == ["3", "3.keras", "4.keras"]
    assert {n: os.path.getmtime(base / "3" / n) for n in os.listdir(base / "3")} == before


@pytest.mark.parametrize("version", [-1, "2", 1.0, True])
def test_bad_version_is_refused(model, tmp_path, version):
    with pytest.raises(ValueError, match="`version` must be an integer >= 0"):
        export_model(model, str(tmp_path), version=version)


def test_non_zoo_model_is_refused(tmp_path):
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(TypeError, match="Expected a zoo model"):
        export_model(plain, str(tmp_path))


def _fail(*args, **kwargs):
    raise RuntimeError("disk full (simulated)")


@pytest.mark.parametrize("where", ["warmup", "keras_save", "final_rename"])
def test_interrupted_export_leaves_no_version(model, tmp_path, monkeypatch, where):
    base = tmp_path / "ae"
    if where == "warmup":  # after the SavedModel is written
        monkeypatch.setattr(zoo.export, "write_warmup_file", _fail)
    elif where == "keras_save":
        monkeypatch.setattr(type(model), "save", _fail)
    else:  # the .keras file is already in place when the folder rename fails
        rename = os.rename

        def fail_on_folder(src, dst):
            if os.path.isdir(src):
                _fail()
            rename(src, dst)

        monkeypatch.setattr(zoo.export.os, "rename", fail_on_folder)
    with pytest.raises(RuntimeError, match="simulated"):
        export_model(model, str(base))
    assert listing(base) == []  # no version, no .keras, no temporary folder


def test_export_command(tmp_path, capsys):
    trained = tiny_model("vqvae")
    run_dir, base = tmp_path / "runs" / "vq", tmp_path / "exports" / "vq"
    run_dir.mkdir(parents=True)
    trained.save(run_dir / "last.keras")
    flag_values = flags.FlagValues()
    export_cli.define_flags(flag_values)
    flag_values(["export", f"--model_dir={run_dir}", f"--export_base={base}", "--version=5"])
    export_cli.main([], flag_values)
    with pytest.raises(SystemExit, match="Export failed: Version 5 already exists"):
        export_cli.main([], flag_values)
    assert f"Exported {base / '5'}" in capsys.readouterr().out
    assert listing(base) == ["5", "5.keras"]
    images = random_images(3, seed=2)
    served = tf.saved_model.load(str(base / "5"))
    assert not served.variables  # weights folded in (--freeze_weights=auto)
    codes = served.signatures["encode"](images=images)["codes"]
    np.testing.assert_array_equal(codes, trained.encode(images))
    flag_values(["export", f"--model_dir={run_dir}", f"--export_base={base}", "--version=6",
                 "--freeze_weights=false", "--nokeras_file"])
    export_cli.main([], flag_values)
    assert tf.saved_model.load(str(base / "6")).variables


def test_export_command_in_bfloat16_keeps_float32_io_and_close_outputs(tmp_path):
    trained = tiny_model("ae")
    trained.save(tmp_path / "model.keras")
    base = tmp_path / "exports" / "ae"
    flag_values = flags.FlagValues()
    export_cli.define_flags(flag_values)
    flag_values(["export", f"--model={tmp_path / 'model.keras'}", f"--export_base={base}",
                 "--precision=mixed_bfloat16"])
    export_cli.main([], flag_values)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    loaded = tf.saved_model.load(str(base / "1"))
    library = loaded.signatures["serving_default"].graph.as_graph_def().library
    ops = {node.op for f in library.function for node in f.node_def
           if "DT_BFLOAT16" in str(node.attr)}
    assert ops, "no bfloat16 op in the exported graph"
    images = random_images(4, seed=3)
    served = loaded.signatures["serving_default"](images=tf.constant(images))["reconstructions"]
    assert served.dtype == tf.float32
    np.testing.assert_allclose(served, trained(images), atol=0.05)  # bfloat16 has 8 bits


def test_export_command_refuses_an_unknown_precision(tmp_path):
    flag_values = flags.FlagValues()
    export_cli.define_flags(flag_values)
    with pytest.raises(flags.IllegalFlagValueError, match="float8"):
        flag_values(["export", "--model=ae_fashion_mnist", f"--export_base={tmp_path}",
                     "--precision=float8"])


@pytest.mark.parametrize("family", ["vqvae", "dvae"])
def test_frozen_and_variable_exports_answer_the_same(family, tmp_path):
    model = tiny_model(family)
    frozen = tf.saved_model.load(export_model(model, str(tmp_path / "f"), keras_file=False))
    kept = tf.saved_model.load(
        export_model(model, str(tmp_path / "v"), keras_file=False, freeze_weights=False)
    )
    assert not frozen.variables  # every weight is a constant of the graphs
    assert len(kept.variables) >= len(model.weights)  # the weights (and seed states)
    images = tf.constant(random_images(3, seed=2))
    for name in ("serving_default", "encode"):
        a = frozen.signatures[name](images=images)
        b = kept.signatures[name](images=images)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
    codes = tf.zeros([2, *model.latent_grid], tf.int32)
    np.testing.assert_array_equal(
        frozen.signatures["decode"](codes=codes)["images"].numpy(),
        kept.signatures["decode"](codes=codes)["images"].numpy(),
    )


def test_weights_over_the_limit_stay_variables(model, tmp_path, monkeypatch):
    monkeypatch.setattr(zoo.export, "FREEZE_LIMIT_BYTES", 0)
    served = tf.saved_model.load(export_model(model, str(tmp_path / "ae"), keras_file=False))
    assert len(served.variables) >= len(model.weights)
    images = tf.constant(random_images(2, seed=3))
    np.testing.assert_allclose(
        served.signatures["serving_default"](images=images)["reconstructions"],
        model(images), atol=1e-6,
    )


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_keras_model_export_needs_no_input_signature(family, tmp_path):
    # Keras's own `model.export` cannot infer the input of a model built from its config.
    model = tiny_model(family)
    model.export(str(tmp_path / family), verbose=False)
    images = random_images(2)
    loaded = tf.saved_model.load(str(tmp_path / family))  # kept: its variables back `serve`
    served = loaded.serve(tf.constant(images))
    np.testing.assert_allclose(served, model(images), atol=1e-5)


def test_keras_export_of_a_prior_takes_codes_and_labels(tmp_path):
    prior = zoo.TransformerPrior(num_embeddings=16, grid_shape=(2, 2), num_classes=3,
                                 embed_dim=8, num_layers=1, num_heads=2, mlp_dim=8)
    prior.export(str(tmp_path / "prior"), verbose=False)
    inputs = (tf.constant(np.arange(8).reshape(2, 2, 2), tf.int32), tf.constant([0, 3]))
    loaded = tf.saved_model.load(str(tmp_path / "prior"))
    served = loaded.serve(inputs)
    np.testing.assert_allclose(served, prior(inputs), atol=1e-5)
