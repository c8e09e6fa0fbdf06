"""`.keras` save/load: a fresh Python process gets the same model, state and outputs.

One subprocess loads all four families, to pay the TensorFlow import once.
"""

import json

import numpy as np
import pytest

from tests.helpers import (
    DISCRETE_FAMILIES,
    FAMILY_NAMES,
    random_images,
    run_in_fresh_process,
    tiny_model,
)

SAVED_OVERRIDES = {
    "ae": {},
    "vae": {"kl_weight": 0.5, "seed": 3},
    "vqvae": {"decay": 0.9},
    "dvae": {"likelihood": "logit_laplace", "temperature": 1.0},
}

# Non-trainable state each family must carry through a save (checked to be weights).
STATE_WEIGHTS = {
    "ae": [],
    "vae": ["kl_warmup"],
    "vqvae": ["ema_cluster_size", "ema_embedding_sum"],
    "dvae": ["temperature", "kl_warmup"],
}

LOADER = """
import json, sys
from pathlib import Path

import keras
import numpy as np

import zoo  # registers the zoo's classes

directory = Path(sys.argv[1]) if len(sys.argv) > 1 else Path({directory!r})
for family in {families!r}:
    model = keras.saving.load_model(directory / f"{{family}}.keras")
    images = np.load(directory / "images.npy")
    outputs = {{
        "reconstructions": model(images).numpy(),
        "latents": model.encode(images).numpy(),
        "decoded": model.decode(model.encode(images)).numpy(),
    }}
    if hasattr(model, "sample"):
        outputs["samples"] = model.sample(2, seed=5).numpy()
    np.savez(directory / f"{{family}}_outputs.npz", **outputs)
    np.savez(
        directory / f"{{family}}_variables.npz",
        **{{f"{{i}}:{{v.path}}": v.numpy() for i, v in enumerate(model.weights)}},
    )
    info = {{"class": type(model).__name__, "config": model.get_config()}}
    if family == "dvae":
        info["temperature"] = float(model.temperature.numpy())
    (directory / f"{{family}}_info.json").write_text(json.dumps(info))
"""


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Saves one tiny model per family with non-default state, loads them all
    in one fresh process, and returns (directory, models)."""
    directory = tmp_path_factory.mktemp("saved")
    images = random_images(3)
    np.save(directory / "images.npy", images)
    models = {}
    for family in FAMILY_NAMES:
        model = tiny_model(family, **SAVED_OVERRIDES[family])
        model.compile(optimizer="adam")
        # Move the state away from its initial values: seeds, EMA codebook,
        # dead-code restarts, and the schedule variables the callbacks set.
        model(images, training=True)
        if family == "dvae":
            model.temperature.assign(0.3)
        if family in ("vae", "dvae"):
            model.kl_warmup.assign(0.4)
        model.save(directory / f"{family}.keras")
        models[family] = model
    run_in_fresh_process(LOADER.format(directory=str(directory), families=FAMILY_NAMES))
    return directory, models, images


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_fresh_process_load_gives_identical_outputs(saved, family):
    directory, models, images = saved
    model = models[family]
    outputs = np.load(directory / f"{family}_outputs.npz")
    np.testing.assert_array_equal(outputs["reconstructions"], model(images).numpy())
    np.testing.assert_array_equal(outputs["latents"], model.encode(images).numpy())
    np.testing.assert_array_equal(outputs["decoded"], model.decode(model.encode(images)).numpy())
    if family in DISCRETE_FAMILIES:
        assert outputs["latents"].dtype == np.int32
    if hasattr(model, "sample"):
        np.testing.assert_array_equal(outputs["samples"], model.sample(2, seed=5).numpy())


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_fresh_process_load_restores_config_and_every_weight(saved, family):
    """Every weight, trainable or not (EMA state, temperature, kl_warmup).

    Seed-generator states are not weights: Keras 3 does not save them in
    `.keras` files (`Layer.save_own_variables`), so a loaded model's training
    noise restarts from its configured seed. Inference uses no noise.
    """
    directory, models, _ = saved
    model = models[family]
    info = json.loads((directory / f"{family}_info.json").read_text())
    assert info["class"] == type(model).__name__
    assert info["config"] == json.loads(json.dumps(model.get_config()))
    loaded = np.load(directory / f"{family}_variables.npz")
    original = {f"{i}:{v.path}": v.numpy() for i, v in enumerate(model.weights)}
    for name in STATE_WEIGHTS[family]:
        assert any(key.endswith(f"/{name}") for key in original), name
    assert sorted(loaded.files) == sorted(original)
    for key, value in original.items():
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)


def test_dvae_temperature_variable_is_restored(saved):
    directory, _, _ = saved
    info = json.loads((directory / "dvae_info.json").read_text())
    assert info["temperature"] == pytest.approx(0.3)
    # The config still holds the initial temperature; the variable holds the
    # annealed one, so a resumed run continues from where it stopped.
    assert info["config"]["temperature"] == 1.0
