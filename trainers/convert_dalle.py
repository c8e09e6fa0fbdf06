r"""OpenAI's DALL-E dVAE weights -> a zoo preset folder: `python -m trainers.convert_dalle`.

    python -m trainers.convert_dalle --encoder=encoder.pkl --decoder=decoder.pkl \
        --output=presets/dalle_dvae

Two steps. The PyTorch step (`scripts/dump_dalle_state.py`) loads the
`.pkl` files and writes their state dicts as numpy arrays into one `.npz`;
it runs in a subprocess with `--torch_python`, a Python that has `torch` and
`dall-e` (default: the project's `.venv-torch/bin/python`, made by
`make torch-env`, else this Python). The zoo step, in this process and
without torch, builds a `zoo.DalleDVAE` from the arrays' shapes, converts
every weight (`zoo.dalle_weights`) and writes the preset folder:
`model.keras`, `config.json` (the model config and where it came from),
a model card stub `README.md` and `manifest.json` (sha256 of each file),
with `model.save_to_preset`. Load it with `zoo.load("presets/dalle_dvae")`.

If the PyTorch step ran elsewhere, pass its `.npz` with `--state` instead of
`--encoder`/`--decoder`.

The converted model's temperature is set to `--temperature` (default 1/16,
the end of DALL-E's annealing schedule), so fine-tuning continues from there.
"""

import os
import pathlib
import subprocess
import sys
import tempfile

from absl import app, flags, logging

from trainers import cli

FLAGS = flags.FLAGS
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DUMP_SCRIPT = REPO_ROOT / "scripts" / "dump_dalle_state.py"
TORCH_VENV_PYTHON = REPO_ROOT / ".venv-torch" / "bin" / "python"
RELEASED_TEMPERATURE = 1.0 / 16.0


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines this command's flags (only when it runs, not on import)."""
    flags.DEFINE_string("encoder", None, "OpenAI's encoder.pkl.", flag_values=flag_values)
    flags.DEFINE_string("decoder", None, "OpenAI's decoder.pkl.", flag_values=flag_values)
    flags.DEFINE_string(
        "state",
        None,
        "An .npz of scripts/dump_dalle_state.py (instead of the .pkl files).",
        flag_values=flag_values,
    )
    flags.DEFINE_string("output", None, "The preset folder to write.", flag_values=flag_values)
    flags.DEFINE_string(
        "torch_python",
        None,
        "A Python with torch and dall-e for the PyTorch step. "
        "Defaults to .venv-torch/bin/python if present, else this Python.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "image_size", 256, "Nominal image height and width of the model.", flag_values=flag_values
    )
    flags.DEFINE_float(
        "temperature",
        RELEASED_TEMPERATURE,
        "Stored Gumbel-softmax temperature.",
        flag_values=flag_values,
    )


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


def default_torch_python() -> str:
    """`.venv-torch/bin/python` of the project if it exists, else this Python."""
    return str(TORCH_VENV_PYTHON) if TORCH_VENV_PYTHON.exists() else sys.executable


def dump_state(encoder_pkl: str, decoder_pkl: str, npz_path: str, torch_python: str) -> str:
    """Runs the PyTorch step (`scripts/dump_dalle_state.py`) in a subprocess.

    Returns:
        The step's summary line (arrays written, its own peak RSS).

    Raises:
        FileNotFoundError: a `.pkl` file or `torch_python` does not exist.
        RuntimeError: the step failed (its error output is in the message).
    """
    for path in (encoder_pkl, decoder_pkl):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No such file: {path}")
    if not DUMP_SCRIPT.is_file():
        raise FileNotFoundError(
            f"The PyTorch step {DUMP_SCRIPT} is not here (an installed package has no "
            "scripts/). Run scripts/dump_dalle_state.py of the source checkout with a Python "
            "that has torch and dall-e, then pass its .npz with --state."
        )
    if not os.path.exists(torch_python):
        raise FileNotFoundError(
            f"--torch_python {torch_python!r} does not exist. Run `make torch-env` "
            "(creates .venv-torch with torch and dall-e) or point it at a Python that has both."
        )
    command = [
        torch_python,
        str(DUMP_SCRIPT),
        f"--encoder={encoder_pkl}",
        f"--decoder={decoder_pkl}",
        f"--output={npz_path}",
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"The PyTorch step failed ({' '.join(command)}):\n{done.stderr[-3000:]}\n"
            "It needs torch and dall-e in --torch_python (`make torch-env` makes .venv-torch)."
        )
    lines = done.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def write_preset(model, folder: str | os.PathLike, source: dict) -> pathlib.Path:
    """Writes the converted model as a preset folder (`model.save_to_preset`).

    The folder holds model.keras, config.json (the model config and
    `source`), a card stub README.md and manifest.json; an existing folder
    is never overwritten.
    """
    from zoo.presets import model_type_name

    model_config = {k: v for k, v in model.get_config().items() if k not in ("name", "trainable")}
    config = {"model": model_type_name(model), "model_config": model_config, "source": source}
    h, w = model.latent_grid
    height, width, channels = model.image_shape
    card = f"""# {pathlib.Path(folder).name}

OpenAI's DALL-E dVAE (the `dall-e` 0.1 architecture) converted to a `zoo.DalleDVAE`
by `python -m trainers.convert_dalle`. The source files and their sha256 are in
`config.json` (`source`).

- Parameters: {model.count_params():,}
- Images {height}x{width}x{channels} in [0, 1] -> a {h}x{w} grid of codes from a
  codebook of {model.vocab_size}
- Stored temperature: {float(model.temperature.numpy()):g}

Equality with the PyTorch reference is tested by `make test-dalle-torch` (measured
errors in the project's BUILD_NOTES.md). OpenAI's terms apply to the weights.
"""
    return model.save_to_preset(folder, config=config, card=card)


def convert(
    state_npz: str,
    output: str,
    image_size: int = 256,
    temperature: float = RELEASED_TEMPERATURE,
    source: dict | None = None,
):
    """The zoo step: a state `.npz` -> a `zoo.DalleDVAE` written as a preset folder.

    Returns:
        The converted model.
    """
    import numpy as np

    import zoo
    from zoo import dalle_weights

    encoder_state, decoder_state = dalle_weights.read_npz(state_npz)
    first = encoder_state.get("blocks.input.w")  # (n_hid, channels, 7, 7): gives the channels
    if first is None or np.ndim(first) != 4:
        raise ValueError(
            f"{state_npz}: no 4-D `encoder/blocks.input.w` (the encoder's input convolution); "
            "is it an .npz written by scripts/dump_dalle_state.py?"
        )
    model = zoo.DalleDVAE.from_state_dicts(
        encoder_state,
        decoder_state,
        image_shape=(image_size, image_size, first.shape[1]),
        temperature=temperature,
    )
    del encoder_state, decoder_state
    write_preset(model, output, source or {"state": os.path.abspath(state_npz)})
    return model


def main(argv, flag_values: flags.FlagValues = FLAGS):
    del argv
    pkls = flag_values.encoder, flag_values.decoder
    if not flag_values.output:
        raise app.UsageError("--output (the preset folder to write) is required.")
    if bool(flag_values.state) == any(pkls) or not (flag_values.state or all(pkls)):
        raise app.UsageError("Give --encoder and --decoder, or --state (not both).")
    logging.set_verbosity(logging.WARNING)
    from zoo.presets import sha256

    try:
        with tempfile.TemporaryDirectory() as tmp:
            if flag_values.state:
                state, source = flag_values.state, {"state": os.path.abspath(flag_values.state)}
            else:
                state = os.path.join(tmp, "state.npz")
                torch_python = flag_values.torch_python or default_torch_python()
                print("PyTorch step:", dump_state(*pkls, state, torch_python))
                source = {
                    name: {"path": os.path.abspath(path), "sha256": sha256(path)}
                    for name, path in zip(("encoder", "decoder"), pkls, strict=True)
                }
            model = convert(
                state,
                flag_values.output,
                flag_values.image_size,
                flag_values.temperature,
                {**source, "dall_e": "0.1"},
            )
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as error:
        raise SystemExit(f"Conversion failed: {error}") from error
    print(
        f"Wrote {flag_values.output}: {type(model).__name__} with {model.count_params():,} "
        f"parameters; peak RSS of the zoo step {peak_rss_mb():,.0f} MB."
    )


if __name__ == "__main__":
    cli.run(main, define_flags)
