r"""Check a retrained zoo model against its card: `python -m trainers.reproduce \
    --name=dvae_fashion_mnist --model_dir=runs/zoo/dvae_fashion_mnist`.

Evaluates the run on the whole test set (into `<model_dir>/eval/`), prints each
metric beside the published card's value with the tolerance that counts as
reproduced, and exits 1 when a metric is outside it. Nothing in
`saved_models/` is written; publishing is `trainers.publish`.
"""

import json
import math
import pathlib

from absl import flags

from trainers import cli

FLAGS = flags.FLAGS

# A metric is reproduced within these bounds ("rel": fraction of the card's value,
# "abs": absolute difference). Training is seeded, but multithreaded float
# reductions (oneDNN) differ between runs and machines, and the differences grow
# over thousands of steps, so a retrained model is close to, not equal to, the card.
TOLERANCES = {
    "mse": ("rel", 0.10),
    "psnr": ("abs", 0.5),
    "ssim": ("abs", 0.01),
    "bits_per_dim": ("abs", 0.05),
    "perplexity": ("rel", 0.10),
    "codebook_usage": ("abs", 0.05),
}


def tolerance_text() -> str:
    """The tolerances in words, for the cards."""
    return ", ".join(
        f"{name} ±{value * 100:.0f} %" if kind == "rel" else f"{name} ±{value:g}"
        for name, (kind, value) in TOLERANCES.items()
    )


def within(name: str, new: float, old: float) -> bool:
    """Whether `new` reproduces the card's `old` value of metric `name`."""
    kind, value = TOLERANCES[name]
    bound = value * abs(old) if kind == "rel" else value
    return math.isfinite(new) and abs(new - old) <= bound


def compare(new: dict, card: dict) -> tuple[list[tuple], bool]:
    """Rows `(metric, card value, new value, difference, tolerance, ok)` and whether all pass."""
    rows = []
    for name, (kind, value) in TOLERANCES.items():
        if name in card:  # a metric the run lacks (another family) is not reproduced
            measured = new.get(name, math.nan)
            ok = within(name, measured, card[name])
            tolerance = f"±{value * 100:.0f} %" if kind == "rel" else f"±{value:g}"
            rows.append((name, card[name], measured, measured - card[name], tolerance, ok))
    return rows, all(row[-1] for row in rows)


def format_rows(rows: list[tuple]) -> str:
    """A plain-text table of `compare` rows."""
    lines = [f"{'metric':<15} {'card':>10} {'this run':>10} {'diff':>10} {'tolerance':>10}  ",
             "-" * 68]
    for name, old, new, diff, tolerance, ok in rows:
        lines.append(f"{name:<15} {old:>10.5g} {new:>10.5g} {diff:>+10.3g} {tolerance:>10}  "
                     f"{'ok' if ok else 'NOT REPRODUCED'}")
    return "\n".join(lines)


def reproduce(name: str, model_dir) -> bool:
    """Evaluates a retrained run and compares it with the published card; prints the table.

    Returns:
        bool. Whether every metric is within its tolerance.
    """
    from trainers.evaluate import run_evaluation
    from zoo import presets

    folder = presets.verify(name)
    card = json.loads((folder / "metrics.json").read_text())
    new = run_evaluation(model_dir, verbose=True)
    rows, ok = compare(new, card)
    print(f"\n{name}: this run ({model_dir}) against the card ({folder / presets.CARD_FILE})")
    print(format_rows(rows))
    return ok


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines this command's flags (only when it runs)."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("name", None, "Zoo name of the card to compare with.", **fv)
    flags.DEFINE_string("model_dir", None, "The retrained run (runs/zoo/<name>).", **fv)


def main(argv, flag_values: flags.FlagValues = FLAGS):
    del argv
    fv = flag_values
    cli.require(fv, "name", "model_dir")
    from trainers.config import ConfigError
    from zoo import presets

    with cli.user_errors("Reproduction check failed", ConfigError, FileNotFoundError, ValueError):
        ok = reproduce(fv.name, fv.model_dir)
    folder = presets.find(fv.name)
    if not ok:
        raise SystemExit(f"\nNot reproduced: a metric is outside its tolerance. The run stays in "
                         f"{fv.model_dir}; {folder} is unchanged.")
    print(f"\nReproduced. To replace {folder} with this run: "
          f"{publish_command(fv.name, fv.model_dir, folder)}")


def publish_command(name: str, model_dir, folder: pathlib.Path) -> str:
    """The command that publishes `model_dir` over the preset `folder`: the Makefile's for
    the checkout's own `saved_models/`, else `trainers.publish` into the folder's parent."""
    from zoo import presets

    shipped = presets.saved_models_dir().resolve()
    if not presets.is_installed() and folder.parent.resolve() == shipped:
        return f"make zoo-publish NAME={name}"
    return (f"python -m trainers.publish --name={name} --model_dir={model_dir} "
            f"--output_root={folder.parent}")


if __name__ == "__main__":
    cli.run(main, define_flags)
