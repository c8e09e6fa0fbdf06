"""`python -m trainers.convert_dalle`: state dicts -> a verified zoo preset folder (no torch).

The `.pkl` -> `.npz` PyTorch step runs in `make test-dalle-torch`; here the
command starts from the `.npz` that step writes (`--state`).
"""

import json
import sys

import numpy as np
import pytest
from absl import app, flags

import zoo
from tests.helpers import random_images
from trainers import convert_dalle
from zoo import dalle_weights
from zoo.presets import sha256

TINY = {"image_shape": (32, 32, 3), "n_hid": 8, "n_blk_per_group": 1, "vocab_size": 32, "n_init": 8}


def _run(*args):
    flag_values = flags.FlagValues()
    convert_dalle.define_flags(flag_values)
    flag_values(["convert_dalle", *args])
    convert_dalle.main([], flag_values)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A tiny model and its weights in the `.npz` format of the PyTorch step."""
    model = zoo.DalleDVAE(**TINY)
    path = tmp_path_factory.mktemp("state") / "state.npz"
    dalle_weights.write_npz(path, *dalle_weights.state_dicts(model))
    return model, path


def test_command_writes_a_verified_preset_equal_to_the_source(source, tmp_path, capsys):
    model, state = source
    folder = tmp_path / "dalle_tiny"
    _run(f"--state={state}", f"--output={folder}", "--image_size=32")
    assert "Wrote" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "manifest.json",
        "model.keras",
    ]
    manifest = json.loads((folder / "manifest.json").read_text())["files"]
    assert manifest == {name: sha256(folder / name) for name in manifest}
    assert len(manifest) == 3
    config = json.loads((folder / "config.json").read_text())
    assert config["model_config"]["vocab_size"] == 32
    assert config["source"]["state"] == str(state)

    converted = zoo.load(folder)  # verifies the manifest, loads in safe mode, compiles
    assert type(converted) is zoo.DalleDVAE
    assert float(converted.temperature.numpy()) == 1 / 16  # the end of DALL-E's annealing
    images = random_images(3, shape=(32, 32, 3))
    np.testing.assert_array_equal(converted.encode_logits(images), model.encode_logits(images))
    np.testing.assert_array_equal(converted(images), model(images))

    with pytest.raises(SystemExit, match="already exists"):
        _run(f"--state={state}", f"--output={folder}", "--image_size=32")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--state=s.npz", "--encoder=e.pkl", "--decoder=d.pkl", "--output=out"], "not both"),
        (["--encoder=e.pkl", "--output=out"], "not both"),
        (["--state=s.npz"], "--output .* is required"),
    ],
)
def test_usage_errors(args, message):
    with pytest.raises(app.UsageError, match=message):
        _run(*args)


def test_torch_step_errors_name_the_fix(tmp_path, monkeypatch):
    pkl = tmp_path / "encoder.pkl"
    pkl.write_bytes(b"not a pickle")
    npz = str(tmp_path / "state.npz")
    with pytest.raises(FileNotFoundError, match="make torch-env"):
        convert_dalle.dump_state(str(pkl), str(pkl), npz, str(tmp_path / "no-python"))
    with pytest.raises(FileNotFoundError, match="No such file"):
        convert_dalle.dump_state(str(tmp_path / "missing.pkl"), str(pkl), npz, sys.executable)
    # This suite's Python has no torch: the step fails and says what it needs.
    with pytest.raises(RuntimeError, match="needs torch and dall-e"):
        convert_dalle.dump_state(str(pkl), str(pkl), npz, sys.executable)
    # An installed package has no scripts/: the message says to use --state.
    monkeypatch.setattr(convert_dalle, "DUMP_SCRIPT", tmp_path / "scripts" / "missing.py")
    with pytest.raises(FileNotFoundError, match="pass its .npz with --state"):
        convert_dalle.dump_state(str(pkl), str(pkl), npz, sys.executable)


@pytest.mark.parametrize("content", ["empty", "text", "pickle", "flat_input"])
def test_a_state_file_that_is_not_the_dump_scripts_is_one_line(tmp_path, content):
    path = tmp_path / "state.npz"
    if content == "empty":
        np.savez(path)
    elif content == "text":
        path.write_text("not an archive")
    elif content == "pickle":
        np.save(tmp_path / "state.npy", np.array([{"a": 1}], dtype=object))
        (tmp_path / "state.npy").rename(path)
    else:  # the encoder's input convolution flattened to 1-D
        np.savez(path, **{"encoder/blocks.input.w": np.zeros(8)})
    with pytest.raises(SystemExit, match="Conversion failed: .*scripts/dump_dalle_state.py"):
        _run(f"--state={path}", f"--output={tmp_path / 'out'}")
    assert not (tmp_path / "out").exists()
