"""Reference outputs of OpenAI's `dall_e` dVAE with random weights, for the equality tests.

Run with a Python that has `torch` and `dall-e` (`.venv-torch`, `make torch-env`):

    # The committed, torch-free fixture of the default suite (reduced size):
    .venv-torch/bin/python scripts/make_dalle_fixture.py --size=small \
        --output=tests/fixtures/dalle_small
    # The released configuration (what `make test-dalle-torch` runs):
    .venv-torch/bin/python scripts/make_dalle_fixture.py --size=full --output=runs/dalle_full

It builds `dall_e.Encoder` and `dall_e.Decoder`, gives every weight and bias a
random value (normal, standard deviation `1 / sqrt(fan_in)` as `dall_e`
initialises weights; biases too, which `dall_e` starts at zero, so the test
sees them), centres the encoder's output bias on calibration images (see
`center_logits`), runs them in float32 on random images in [0, 1], and
writes:

- `config.json`: the architecture, image size and seed;
- the weights: for `small`, `state_int8.npz` (every tensor as int8 in the
  `.npz` format of `scripts/dump_dalle_state.py`) and `scales.json` (one
  power-of-two scale per tensor; int8 x scale is the exact float32 weight
  the reference used), to keep the committed fixture a few MB; for `full`,
  `encoder.pkl` and `decoder.pkl`, pickled modules like OpenAI's files, for
  `python -m trainers.convert_dalle`;
- `reference.npz` (NHWC): `images`, encoder `logits`, argmax `codes`,
  `top2_gap` (best minus second-best logit, to tell near-ties), decoder
  output `stats` for the one-hot codes and `reconstructions`
  (`unmap_pixels(sigmoid(stats[..., :3]))`), and `probs` (softmax of the
  logits) with `soft_stats`, the decoder's output for them (the relaxed
  input of training).
"""

import argparse
import json
import math
import os

import dall_e
import numpy as np
import torch
import torch.nn.functional as F

SIZES = {
    "small": {
        "n_hid": 64,
        "n_blk_per_group": 1,
        "vocab_size": 512,
        "n_init": 128,
        "image_size": 64,
        "num_images": 2,
    },
    "full": {
        "n_hid": 256,
        "n_blk_per_group": 2,
        "vocab_size": 8192,
        "n_init": 128,
        "image_size": 256,
        "num_images": 2,
    },
}
BIAS_STD = 0.05


def randomize(module: torch.nn.Module, rng: np.random.Generator) -> None:
    """Gives every weight and bias a random normal value."""
    for param in module.state_dict().values():
        shape = tuple(param.shape)
        std = 1.0 / math.sqrt(np.prod(shape[1:])) if len(shape) == 4 else BIAS_STD
        param.copy_(torch.from_numpy(rng.standard_normal(shape).astype(np.float32) * std))


def center_logits(encoder, rng: np.random.Generator, channels: int, size: int) -> None:
    """Sets the encoder's output bias so each code's mean logit is 0 on calibration images.

    With random weights, a code's logit is mostly a constant (its weights
    times the mean feature), so nearly every position would pick the same
    code; a trained encoder uses its codes evenly. Centering (on other
    random images than the test's) makes the argmax depend on the input.
    """
    bias = encoder.blocks.output.conv.b
    bias.zero_()
    images = torch.from_numpy(rng.random((4, channels, size, size), dtype=np.float32))
    bias.copy_(-encoder(dall_e.map_pixels(images)).mean(dim=(0, 2, 3)))


def quantize(module: torch.nn.Module) -> dict:
    """Rounds every tensor to int8 x a power-of-two scale (in place); returns the scales."""
    scales = {}
    for key, param in module.state_dict().items():
        largest = float(param.abs().max())
        scale = 2.0 ** math.ceil(math.log2(largest / 127.0)) if largest > 0 else 1.0
        param.copy_(torch.round(param / scale) * scale)
        scales[key] = scale
    return scales


def reference(encoder, decoder, images: np.ndarray) -> dict:
    """Runs the reference on NHWC images; returns NHWC numpy arrays."""

    def nhwc(t):
        return t.permute(0, 2, 3, 1).contiguous().numpy()

    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    logits = encoder(dall_e.map_pixels(x))
    codes = torch.argmax(logits, dim=1)
    one_hot = F.one_hot(codes, num_classes=encoder.vocab_size).permute(0, 3, 1, 2).float()
    stats = decoder(one_hot).float()
    channels = images.shape[-1]
    reconstructions = dall_e.unmap_pixels(torch.sigmoid(stats[:, :channels]))
    probs = torch.softmax(logits, dim=1)
    top2 = torch.topk(logits, 2, dim=1).values
    return {
        "images": images,
        "logits": nhwc(logits),
        "codes": codes.numpy().astype(np.int32),
        "top2_gap": (top2[:, 0] - top2[:, 1]).numpy(),
        "stats": nhwc(stats),
        "reconstructions": nhwc(reconstructions),
        "probs": nhwc(probs),
        "soft_stats": nhwc(decoder(probs).float()),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), required=True)
    parser.add_argument("--output", required=True, help="folder to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = {
        **SIZES[args.size],
        "seed": args.seed,
        "channels": 3,
        "torch": torch.__version__,
        "dall_e": "0.1",
    }
    os.makedirs(args.output, exist_ok=True)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    arch = {k: config[k] for k in ("n_hid", "n_blk_per_group", "vocab_size")}
    encoder = dall_e.Encoder(input_channels=3, requires_grad=False, **arch)
    decoder = dall_e.Decoder(
        output_channels=3, n_init=config["n_init"], requires_grad=False, **arch
    )
    small = args.size == "small"
    size = config["image_size"]
    with torch.no_grad():
        randomize(encoder, rng)
        randomize(decoder, rng)
        center_logits(encoder, rng, 3, size)
        if small:
            scales = {f"encoder/{k}": v for k, v in quantize(encoder).items()}
            scales.update({f"decoder/{k}": v for k, v in quantize(decoder).items()})
        images = rng.random((config["num_images"], size, size, 3), dtype=np.float32)
        outputs = reference(encoder.eval(), decoder.eval(), images)
    np.savez_compressed(os.path.join(args.output, "reference.npz"), **outputs)
    if small:
        arrays = {
            f"{prefix}/{key}": np.round(value.numpy() / scales[f"{prefix}/{key}"]).astype(np.int8)
            for prefix, module in (("encoder", encoder), ("decoder", decoder))
            for key, value in module.state_dict().items()
        }
        np.savez_compressed(os.path.join(args.output, "state_int8.npz"), **arrays)
        with open(os.path.join(args.output, "scales.json"), "w") as f:
            json.dump(scales, f, indent=1, sort_keys=True)
    else:
        torch.save(encoder, os.path.join(args.output, "encoder.pkl"))
        torch.save(decoder, os.path.join(args.output, "decoder.pkl"))
    with open(os.path.join(args.output, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    gap = outputs["top2_gap"]
    print(
        f"Wrote {args.output}: logits {outputs['logits'].shape}, "
        f"smallest top-2 logit gap {gap.min():.3g} (logit range "
        f"{outputs['logits'].min():.3g}..{outputs['logits'].max():.3g})"
    )


if __name__ == "__main__":
    main()
