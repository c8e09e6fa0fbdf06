"""Layout arguments of the encoder/decoder stacks and their backward compatibility.

Configs written before the layout arguments existed have no `strided_stem`
(...) keys; they must rebuild the original layout, so old `.keras` files and
users' runs load with their weights.
"""

import json
import zipfile

import keras
import numpy as np
import pytest

import zoo
from tests.helpers import FAMILY_NAMES, random_images, tiny_kwargs
from zoo.blocks import LEGACY_LAYOUT, Decoder, Encoder, ResidualBlock

NEW_KEYS = tuple(LEGACY_LAYOUT)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_config_round_trip_covers_layout_arguments(family):
    kwargs = tiny_kwargs(family, strided_stem=True, resample_kernel_size=3,
                         residual_hidden_ratio=1.0, separable_residual=True)
    model = zoo.FAMILIES[family](**kwargs)
    config = model.get_config()
    for key in NEW_KEYS:
        assert config[key] == kwargs[key]
    clone = zoo.FAMILIES[family].from_config(config)
    assert clone.get_config() == config
    assert clone.count_params() == model.count_params()


@pytest.mark.parametrize("family", ("ae", "vqvae"))
def test_config_without_layout_keys_loads_the_legacy_architecture(family, tmp_path):
    legacy = zoo.FAMILIES[family](**tiny_kwargs(family, **LEGACY_LAYOUT))
    path = tmp_path / "legacy.keras"
    legacy.save(path)
    # A config as written before the layout arguments existed.
    old_config = {k: v for k, v in legacy.get_config().items() if k not in NEW_KEYS}
    rebuilt = zoo.FAMILIES[family].from_config(old_config)
    assert not rebuilt.encoder.strided_stem and rebuilt.encoder.resample_kernel_size == 4
    assert rebuilt.count_params() == legacy.count_params()
    rebuilt.set_weights(legacy.get_weights())
    images = random_images(2)
    np.testing.assert_allclose(rebuilt(images), legacy(images), atol=1e-6)
    # The constructor defaults are the new layout.
    fresh = zoo.FAMILIES[family](**{k: v for k, v in old_config.items() if k != "name"})
    assert fresh.encoder.strided_stem


def test_keras_file_written_before_the_layout_keys_loads_with_its_weights(tmp_path):
    """A `.keras` file whose config lacks the layout keys, as the first shipped models had."""
    legacy = zoo.VQVAE(**tiny_kwargs("vqvae", **LEGACY_LAYOUT))
    legacy.save(tmp_path / "new.keras")
    with zipfile.ZipFile(tmp_path / "new.keras") as source, zipfile.ZipFile(
        tmp_path / "old.keras", "w"
    ) as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                for key in NEW_KEYS:
                    del config["config"][key]
                data = json.dumps(config).encode()
            target.writestr(item, data)
    model = keras.saving.load_model(tmp_path / "old.keras")
    assert model.encoder.stem.strides == (1, 1) and not model.encoder.strided_stem
    images = random_images(2)
    np.testing.assert_allclose(model(images), legacy(images), atol=1e-6)


@pytest.mark.parametrize("strided_stem", (True, False))
@pytest.mark.parametrize("kernel", (2, 3, 4))
def test_stacks_keep_any_size_divisible_by_the_downsampling(strided_stem, kernel):
    kwargs = {"filters": 8, "num_downsamples": 3, "num_res_blocks": 1,
              "strided_stem": strided_stem, "resample_kernel_size": kernel}
    encoder, decoder = Encoder(6, **kwargs), Decoder(3, **kwargs)
    images = keras.ops.zeros((2, 40, 24, 3))
    latents = encoder(images)
    assert tuple(latents.shape) == (2, 5, 3, 6)
    assert tuple(decoder(latents).shape) == (2, 40, 24, 3)


def test_rgb_model_with_new_layout_trains():
    model = zoo.VQVAE(image_shape=(32, 32, 3), filters=8, num_res_blocks=1,
                      num_embeddings=16, embedding_dim=8)
    model.compile(optimizer="adam")
    history = model.fit(random_images(8, (32, 32, 3)), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert tuple(model.encode(random_images(2, (32, 32, 3))).shape) == (2, 8, 8)


def test_stack_config_round_trip_and_legacy_fill():
    encoder = Encoder(4, filters=8, residual_hidden_ratio=0.25, separable_residual=True)
    assert Encoder.from_config(encoder.get_config()).get_config() == encoder.get_config()
    old = {k: v for k, v in encoder.get_config().items() if k not in NEW_KEYS}
    assert Encoder.from_config(old).get_config()["strided_stem"] is False
    block = ResidualBlock(8, separable=True)
    assert ResidualBlock.from_config(block.get_config()).separable


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"strided_stem": True, "num_downsamples": 0}, ValueError, "num_downsamples >= 1"),
        ({"resample_kernel_size": 1}, ValueError, "resample_kernel_size"),
        ({"residual_hidden_ratio": 0}, ValueError, "residual_hidden_ratio"),
        ({"strided_stem": "yes"}, TypeError, "strided_stem"),
        ({"separable_residual": 1}, TypeError, "separable_residual"),
    ],
)
def test_layout_arguments_are_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        Encoder(4, **kwargs)


@pytest.mark.parametrize("strided_stem", (True, False))
def test_encoder_output_shape_matches_its_output_for_any_size(strided_stem):
    # "same" strided convolutions round sizes up; the declared shape rounded
    # down, so a functional model's symbolic shapes disagreed with its outputs.
    encoder = Encoder(6, filters=8, num_downsamples=2, num_res_blocks=1,
                      strided_stem=strided_stem)
    images = keras.ops.zeros((1, 30, 27, 3))
    expected = tuple(encoder(images).shape)
    assert expected == (1, 8, 7, 6)
    assert encoder.compute_output_shape((1, 30, 27, 3)) == expected
    inputs = keras.Input((30, 27, 3))
    assert tuple(encoder(inputs).shape) == (None, *expected[1:])


def test_residual_block_refuses_zero_hidden_filters():
    # `hidden_filters or default` read 0 as "not given" and built a filters // 2 block.
    with pytest.raises(ValueError, match="hidden_filters=0"):
        ResidualBlock(8, hidden_filters=0)
    assert ResidualBlock(8).hidden_filters == 4


def test_residual_block_names_the_channels_it_keeps():
    # Inputs of another width failed in the residual add with "Incompatible shapes".
    block = ResidualBlock(8)
    with pytest.raises(ValueError, match=r"8 channels.*Received input shape \(1, 4, 4, 4\)"):
        block(keras.ops.zeros((1, 4, 4, 4)))
    with pytest.raises(ValueError, match="8 channels"):
        ResidualBlock(8)(keras.Input((4, 4, 4)))


@pytest.mark.parametrize("stack", ["Encoder", "Decoder", "DalleEncoder", "DalleDecoder"])
def test_a_layer_dtype_policy_reaches_every_sublayer(stack):
    # The sublayers took the global policy: Encoder(..., dtype="mixed_bfloat16")
    # under float32 rounded its inputs to bfloat16 and then computed in float32.
    from zoo import dalle_blocks

    def make(**kwargs):
        if stack == "DalleDecoder":
            kwargs["n_init"] = 4
        if stack.startswith("Dalle"):
            return getattr(dalle_blocks, stack)(4, n_hid=8, n_blk_per_group=1, **kwargs)
        return {"Encoder": Encoder, "Decoder": Decoder}[stack](
            4, filters=8, num_res_blocks=1, **kwargs
        )

    layer = make(dtype="mixed_bfloat16")
    outputs = layer(keras.ops.ones((1, 8, 8, 4)))
    policies = {sub.name: sub.dtype_policy.name for sub in layer._flatten_layers()}
    if stack == "DalleEncoder":  # its logits layer is float32 by design
        assert policies.pop("output") == "float32" and outputs.dtype == "float32"
    else:
        assert outputs.dtype == "bfloat16"
    assert set(policies.values()) == {"mixed_bfloat16"}
    assert {v.dtype for v in layer.weights} == {"float32"}
    default = make()  # the global policy, as before
    assert {sub.dtype_policy.name for sub in default._flatten_layers()} == {"float32"}
