"""`zoo.DalleDVAE` with converted weights equals OpenAI's `dall_e` reference.

The reference outputs come from `scripts/make_dalle_fixture.py`, run once
with torch and `dall-e` 0.1. The default suite checks the committed reduced
fixture (`tests/fixtures/dalle_small`: n_hid=64, n_blk_per_group=1,
vocab_size=512, n_init=128, two random 64x64 images) with no torch. `make
test-dalle-torch` makes a full-size reference (the released configuration,
256x256x3, K=8192) with random weights, converts its `.pkl` files with
`python -m trainers.convert_dalle`, and runs `test_full_size_preset_matches_reference`
on the result (`DALLE_FULL_REFERENCE=<folder>`).

Tolerances (float32 on CPU, different convolution kernels): logits and
decoder outputs within `TOLERANCE` x the largest magnitude of the reference
tensor, elementwise; reconstructions (in [0, 1]) within `TOLERANCE`; argmax
codes identical except where the reference's two best logits are closer
than twice the logit tolerance (a near-tie), and such positions are counted.
"""

import json
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import dalle_weights

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "dalle_small"
TOLERANCE = 1e-4


def _small_model() -> zoo.DalleDVAE:
    encoder_state, decoder_state = dalle_weights.read_npz(FIXTURE / "state_int8.npz")
    scales = json.loads((FIXTURE / "scales.json").read_text())
    for prefix, state in (("encoder", encoder_state), ("decoder", decoder_state)):
        for key, value in state.items():
            assert value.dtype == np.int8
            state[key] = value.astype(np.float32) * np.float32(scales[f"{prefix}/{key}"])
    config = json.loads((FIXTURE / "config.json").read_text())
    size = config["image_size"]
    return zoo.DalleDVAE.from_state_dicts(
        encoder_state, decoder_state, image_shape=(size, size, config["channels"])
    )


def compare(model, reference) -> dict:
    """Runs `model` on the reference images; returns the worst errors, relative to scale."""
    images = reference["images"]
    logits = model.encode_logits(images).numpy()
    codes = model.encode(images).numpy()
    stats = model.decoder(model.quantizer.lookup(reference["codes"])).numpy()
    soft = tf.einsum("bhwk,kd->bhwd", reference["probs"], model.quantizer.embeddings)
    soft_stats = model.decoder(soft).numpy()
    reconstructions = model.decode(reference["codes"]).numpy()

    def scaled(ours, theirs):
        return float(np.abs(ours - theirs).max() / np.abs(theirs).max())

    near_tie = reference["top2_gap"] < 2 * TOLERANCE * np.abs(reference["logits"]).max()
    differ = codes != reference["codes"]
    return {
        "logits": scaled(logits, reference["logits"]),
        "stats": scaled(stats, reference["stats"]),
        "soft_stats": scaled(soft_stats, reference["soft_stats"]),
        "reconstructions": float(np.abs(reconstructions - reference["reconstructions"]).max()),
        "codes_differing": int(differ.sum()),
        "codes_differing_not_near_ties": int((differ & ~near_tie).sum()),
        "near_ties": int(near_tie.sum()),
        "positions": int(codes.size),
    }


def check(errors: dict) -> None:
    for name in ("logits", "stats", "soft_stats", "reconstructions"):
        assert errors[name] < TOLERANCE, (name, errors)
    assert errors["codes_differing_not_near_ties"] == 0, errors


def test_reduced_size_matches_reference():
    reference = dict(np.load(FIXTURE / "reference.npz"))
    model = _small_model()
    errors = compare(model, reference)
    check(errors)
    assert errors["positions"] == 2 * 8 * 8
    # The fixture has distinct codes, so the equality of codes means something.
    assert len(np.unique(reference["codes"])) > 20


def test_a_wrong_mapping_is_caught():
    """Guards the test itself: a transposed kernel must break the equality."""
    reference = dict(np.load(FIXTURE / "reference.npz"))
    model = _small_model()
    kernel = model.encoder.blocks[0].res_path[1].kernel  # 3x3, 16 -> 16 channels
    kernel.assign(np.transpose(kernel.numpy(), (1, 0, 2, 3)))  # spatially transposed
    assert compare(model, reference)["logits"] > 100 * TOLERANCE
    model = _small_model()
    model.decoder.input_bias.assign(-model.decoder.input_bias)  # the decoder's side
    assert compare(model, reference)["stats"] > 100 * TOLERANCE


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("DALLE_FULL_REFERENCE"),
    reason="needs DALLE_FULL_REFERENCE=<folder> (run `make test-dalle-torch`)",
)
def test_full_size_preset_matches_reference():
    folder = pathlib.Path(os.environ["DALLE_FULL_REFERENCE"])
    reference = dict(np.load(folder / "reference.npz"))
    model = zoo.load(str(folder / "preset"))
    assert isinstance(model, zoo.DalleDVAE)
    assert (model.n_hid, model.n_blk_per_group, model.vocab_size) == (256, 2, 8192)
    errors = compare(model, reference)
    (folder / "errors.json").write_text(json.dumps(errors, indent=2) + "\n")
    print("DALL-E full-size equality:", json.dumps(errors))
    check(errors)
