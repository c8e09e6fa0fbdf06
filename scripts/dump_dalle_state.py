"""The PyTorch step of the DALL-E converter: `.pkl` modules -> one `.npz` of numpy arrays.

Run with a Python that has `torch` and `dall-e` (the project's `.venv-torch`,
made by `make torch-env`); `python -m trainers.convert_dalle` runs it for you:

    .venv-torch/bin/python scripts/dump_dalle_state.py \
        --encoder=encoder.pkl --decoder=decoder.pkl --output=state.npz

`encoder.pkl`/`decoder.pkl` are the files OpenAI distributes (whole pickled
`dall_e.Encoder`/`dall_e.Decoder` modules, loaded as `dall_e.load_model`
does); a pickled state dict works too. The `.npz` holds every tensor as a
float32 array named `encoder/<key>` or `decoder/<key>`, the format
`zoo.dalle_weights.read_npz` reads. Nothing here imports TensorFlow or the zoo, and nothing
in `zoo/` or `trainers/` imports torch (so torch is no dependency of the package).
"""

import argparse
import sys

import numpy as np
import torch

ENCODER_PREFIX = "encoder/"  # zoo.dalle_weights.ENCODER_PREFIX
DECODER_PREFIX = "decoder/"  # zoo.dalle_weights.DECODER_PREFIX


def state_dict(path: str) -> dict:
    """The state dict of a pickled `dall_e` module (or of a pickled state dict)."""
    with open(path, "rb") as f:
        # OpenAI's files pickle whole modules, which torch >= 2.6 refuses to
        # load by default (weights_only=True); they need `dall_e` importable.
        obj = torch.load(f, map_location="cpu", weights_only=False)
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise TypeError(f"{path}: expected a torch module or state dict, got {type(obj).__name__}.")
    return obj


def peak_rss_mb() -> float:
    """This process's peak resident set since it started, in MB (Linux; else 0).

    Read from `VmHWM` of /proc/self/status: `getrusage().ru_maxrss` would also
    count the RSS of the process this one was forked from.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def to_arrays(prefix: str, state: dict) -> dict:
    return {prefix + key: value.detach().cpu().float().numpy() for key, value in state.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", required=True, help="encoder.pkl")
    parser.add_argument("--decoder", required=True, help="decoder.pkl")
    parser.add_argument("--output", required=True, help="the .npz to write")
    args = parser.parse_args(argv)
    arrays = to_arrays(ENCODER_PREFIX, state_dict(args.encoder))
    arrays.update(to_arrays(DECODER_PREFIX, state_dict(args.decoder)))
    with open(args.output, "wb") as f:
        np.savez(f, **arrays)
    count = sum(a.size for a in arrays.values())
    print(
        f"Wrote {len(arrays)} arrays ({count:,} values) to {args.output}; "
        f"peak RSS {peak_rss_mb():,.0f} MB",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
