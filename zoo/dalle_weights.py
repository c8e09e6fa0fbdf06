"""PyTorch state dicts of `dall_e.Encoder`/`Decoder` <-> a `zoo.DalleDVAE`, in numpy.

No torch here: the torch side (`scripts/dump_dalle_state.py`, run where
`torch` and `dall-e` are installed) writes both modules' state dicts into one
`.npz` (keys `encoder/<key>` and `decoder/<key>`), and this module maps those
arrays onto the Keras model. The mapping, key by key:

| PyTorch key | Keras variable |
| --- | --- |
| encoder `blocks.input.w/b` | `encoder.input_conv` kernel/bias |
| `blocks.group_<g>.block_<i>.id_path.w/b` | `group_<g>_block_<i>.id_path` |
| `blocks.group_<g>.block_<i>.res_path.conv_<j>.w/b` | `group_<g>_block_<i>.res_path[j-1]` |
| `blocks.output.conv.w/b` | `output_conv` kernel/bias |
| decoder `blocks.input.w` (n_init, K, 1, 1) | `quantizer.embeddings` (K, n_init) |
| decoder `blocks.input.b` | `decoder.input_bias` |

Convolution weights go from PyTorch's OIHW to Keras's HWIO (both
cross-correlate, so no kernel flip).
"""

import os
import re

import numpy as np

ENCODER_PREFIX = "encoder/"
DECODER_PREFIX = "decoder/"


def _pairs(model) -> list[tuple[str, str, object, str]]:
    """`(module, torch key, keras variable, kind)` for every weight of `model`.

    `kind` is `"conv"` (OIHW <-> HWIO), `"bias"` (as is) or `"codebook"`
    ((n_init, K, 1, 1) <-> (K, n_init)).
    """
    pairs = []

    def conv(module: str, key: str, layer) -> None:
        pairs.append((module, f"{key}.w", layer.kernel, "conv"))
        pairs.append((module, f"{key}.b", layer.bias, "bias"))

    for module, stack in (("encoder", model.encoder), ("decoder", model.decoder)):
        if module == "encoder":
            conv(module, "blocks.input", stack.input_conv)
        else:
            pairs.append((module, "blocks.input.w", model.quantizer.embeddings, "codebook"))
            pairs.append((module, "blocks.input.b", stack.input_bias, "bias"))
        for index, block in enumerate(stack.blocks):
            group, number = divmod(index, stack.n_blk_per_group)
            prefix = f"blocks.group_{group + 1}.block_{number + 1}"
            if block.id_path is not None:
                conv(module, f"{prefix}.id_path", block.id_path)
            for j, layer in enumerate(block.res_path):
                conv(module, f"{prefix}.res_path.conv_{j + 1}", layer)
        conv(module, "blocks.output.conv", stack.output_conv)
    return pairs


def _to_keras(array: np.ndarray, kind: str) -> np.ndarray:
    if kind == "conv":
        return np.transpose(array, (2, 3, 1, 0))
    if kind == "codebook":
        return np.transpose(array[:, :, 0, 0])
    return array


def _to_torch(array: np.ndarray, kind: str) -> np.ndarray:
    if kind == "conv":
        return np.transpose(array, (3, 2, 0, 1))
    if kind == "codebook":
        return np.transpose(array)[:, :, None, None]
    return array


def _shape(state: dict, key: str, module: str) -> tuple:
    if key not in state:
        raise ValueError(
            f"The {module} state dict has no {key!r}; expected the state dict of "
            f"`dall_e.{module.capitalize()}`. Received keys: {sorted(state)[:6]}..."
        )
    return tuple(np.shape(state[key]))


def config_from_state_dicts(encoder_state: dict, decoder_state: dict) -> dict:
    """Reads a `zoo.DalleDVAE` architecture from the shapes of the state dicts.

    Args:
        encoder_state: dict. PyTorch key -> array of `dall_e.Encoder`.
        decoder_state: dict. The same for `dall_e.Decoder`.

    Returns:
        `{"n_hid", "n_blk_per_group", "vocab_size", "n_init", "channels"}`.

    Raises:
        ValueError: a key is missing or the two modules disagree (the
            message names the values).
    """
    n_hid, channels = _shape(encoder_state, "blocks.input.w", "encoder")[:2]
    vocab_size = _shape(encoder_state, "blocks.output.conv.w", "encoder")[0]
    n_init, decoder_vocab = _shape(decoder_state, "blocks.input.w", "decoder")[:2]
    output_channels, decoder_hid = _shape(decoder_state, "blocks.output.conv.w", "decoder")[:2]
    block = re.compile(r"blocks\.group_1\.block_(\d+)\.res_path\.conv_1\.w")
    counts = [
        len({m.group(1) for m in map(block.fullmatch, state) if m})
        for state in (encoder_state, decoder_state)
    ]
    checks = {
        "vocab_size (encoder, decoder)": (vocab_size, decoder_vocab),
        "n_hid (encoder, decoder)": (n_hid, decoder_hid),
        "n_blk_per_group (encoder, decoder)": tuple(counts),
        "output channels (2 x input channels, decoder)": (2 * channels, output_channels),
    }
    for what, (a, b) in checks.items():
        if a != b:
            raise ValueError(f"The state dicts disagree on {what}: {a} != {b}.")
    if counts[0] == 0:
        raise ValueError("The encoder state dict has no `blocks.group_1.block_<i>` weights.")
    return {
        "n_hid": int(n_hid),
        "n_blk_per_group": counts[0],
        "vocab_size": int(vocab_size),
        "n_init": int(n_init),
        "channels": int(channels),
    }


def assign(model, encoder_state: dict, decoder_state: dict) -> None:
    """Assigns `dall_e` state dicts (numpy arrays) to a built `zoo.DalleDVAE`.

    Every key of both state dicts must be used, and every weight of the
    model's encoder, decoder and codebook must be given, with its shape.

    Args:
        model: a `zoo.DalleDVAE`.
        encoder_state: dict. PyTorch key -> array of `dall_e.Encoder`.
        decoder_state: dict. The same for `dall_e.Decoder`.

    Raises:
        ValueError: a missing or unexpected key, or a shape mismatch.
    """
    states = {"encoder": encoder_state, "decoder": decoder_state}
    pairs = _pairs(model)
    for module, state in states.items():
        wanted = {key for m, key, _, _ in pairs if m == module}
        missing, unexpected = sorted(wanted - set(state)), sorted(set(state) - wanted)
        if missing or unexpected:
            raise ValueError(
                f"The {module} state dict does not match the model "
                f"(n_hid={model.n_hid}, n_blk_per_group={model.n_blk_per_group}). "
                f"Missing keys: {missing[:5]}; unexpected keys: {unexpected[:5]}."
            )
    for module, key, variable, kind in pairs:
        value = _to_keras(np.asarray(states[module][key], dtype=np.float32), kind)
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"{module} {key!r} has shape {np.shape(states[module][key])}, which converts "
                f"to {value.shape}; the model's {variable.path} has shape {tuple(variable.shape)}."
            )
        variable.assign(value)


def state_dicts(model) -> tuple[dict, dict]:
    """The inverse of `assign`: the model's weights as `dall_e` state dicts.

    Returns:
        `(encoder_state, decoder_state)`: PyTorch key -> float32 numpy array
        in PyTorch's layout, loadable with `module.load_state_dict` after
        `torch.from_numpy`.
    """
    states = {"encoder": {}, "decoder": {}}
    for module, key, variable, kind in _pairs(model):
        states[module][key] = _to_torch(np.asarray(variable.numpy(), np.float32), kind)
    return states["encoder"], states["decoder"]


def read_npz(path: str | os.PathLike) -> tuple[dict, dict]:
    """Reads `(encoder_state, decoder_state)` from an `.npz` of the dump script."""
    encoder_state, decoder_state = {}, {}
    try:
        data = np.load(path)
    except (ValueError, OSError) as error:  # a pickle, a text file, a torch .pkl zip
        raise ValueError(
            f"{path} is not an .npz written by scripts/dump_dalle_state.py ({error})."
        ) from error
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is a single array, not an .npz of scripts/dump_dalle_state.py.")
    with data:
        for name in data.files:
            if name.startswith(ENCODER_PREFIX):
                encoder_state[name[len(ENCODER_PREFIX) :]] = data[name]
            elif name.startswith(DECODER_PREFIX):
                decoder_state[name[len(DECODER_PREFIX) :]] = data[name]
            else:
                raise ValueError(
                    f"{path}: array {name!r} starts with neither {ENCODER_PREFIX!r} "
                    f"nor {DECODER_PREFIX!r}."
                )
    return encoder_state, decoder_state


def write_npz(path: str | os.PathLike, encoder_state: dict, decoder_state: dict) -> None:
    """Writes both state dicts into one `.npz` (the format `read_npz` reads)."""
    arrays = {ENCODER_PREFIX + k: np.asarray(v) for k, v in encoder_state.items()}
    arrays.update({DECODER_PREFIX + k: np.asarray(v) for k, v in decoder_state.items()})
    np.savez(path, **arrays)
