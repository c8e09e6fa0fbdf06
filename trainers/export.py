r"""Export a model for TF Serving: `python -m trainers.export`.

Loads the model `--model` names (a zoo name, a preset folder, a
`trainers.train` run folder, whose `best.keras` else `last.keras` is used, or
a `.keras` file; `--model_dir=<run folder>` works too) and writes SavedModel
version `<export_base>/<version>/` plus `<export_base>/<version>.keras` (see
`zoo.export.export_model` and docs/SERVING.md).

`--precision=mixed_bfloat16` exports the same weights computing in bfloat16
inside (float32 inputs and outputs): on CPUs with bfloat16 instructions it
serves batches 1.6-3x faster and single images slightly faster (BENCHMARKS.md,
"Serving"); the default `float32` is the portable, exact choice. The weights
are folded into the graphs as constants unless `--freeze_weights=false`
(`auto`, the default, keeps variables for models too large to copy into
every signature).

Examples:
    python -m trainers.export --model=dvae_fashion_mnist --export_base=exports/dvae
    python -m trainers.export --model_dir=runs/dvae --export_base=exports/dvae --version=7
    python -m trainers.export --model=vqvae_fashion_mnist --export_base=exports/vq \
        --precision=mixed_bfloat16
"""

from absl import flags, logging

from trainers import cli

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines this command's flags.

    Called only when the command runs (not on import), so `trainers.train`,
    which defines `--model_dir` too, can be imported in the same process.
    """
    flags.DEFINE_string("model", None, cli.MODEL_HELP, flag_values=flag_values)
    flags.DEFINE_string(
        "model_dir",
        None,
        "A trainers.train run folder (holds best.keras or last.keras); same as --model.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "export_base",
        None,
        "TF Serving's --model_base_path, e.g. exports/dvae.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "version",
        None,
        "Version to write; defaults to the next integer.",
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        "keras_file", True, "Also write <export_base>/<version>.keras.", flag_values=flag_values
    )
    flags.DEFINE_enum(
        "precision", "float32", list(EXPORT_PRECISIONS),
        "Compute dtype inside the SavedModel (inputs and outputs stay float32). "
        "mixed_bfloat16: faster batches on CPUs with bfloat16 instructions; auto: that "
        "when this machine has them (the server may not).",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "freeze_weights", "auto", list(FREEZE_CHOICES),
        "Fold the weights into the signatures' graphs as constants (faster serving, "
        "a copy per signature): true, false, or auto (true unless the copies would "
        "pass 512 MiB).",
        flag_values=flag_values,
    )


EXPORT_PRECISIONS = ("float32", "mixed_bfloat16", "auto")
FREEZE_CHOICES = {"auto": None, "true": True, "false": False}


def export_run(
    model: str,
    export_base: str,
    version: int | None = None,
    keras_file: bool = True,
    precision: str = "float32",
    freeze_weights: bool | None = None,
) -> str:
    """Loads a model and exports it (see `zoo.export.export_model`).

    Args:
        model: str. A zoo name, a preset folder, a `trainers.train` run folder
            or a `.keras` file (see `trainers.runs.load_model_from`).
        export_base: str. TF Serving's model base path.
        version: int. The version; defaults to the next integer.
        keras_file: bool. Also write `<export_base>/<version>.keras`.
        precision: str. The compute dtype policy the model is loaded under:
            `"float32"` (default), `"mixed_bfloat16"` (bfloat16 compute, float32
            weights, inputs and outputs) or `"auto"` (`mixed_bfloat16` when
            this machine's CPU has bfloat16 instructions and there is no GPU).
            The `.keras` file is the same either way: a policy is not saved.
        freeze_weights: bool or `None`. See `zoo.export.export_model`.

    Returns:
        The path of the new version folder.
    """
    from trainers.distribute import precision as precision_scope
    from trainers.runs import load_model_from
    from zoo.export import export_model

    if precision not in EXPORT_PRECISIONS:
        raise ValueError(
            f"`precision` must be one of {list(EXPORT_PRECISIONS)}. Received: {precision!r}"
        )
    with precision_scope(precision):
        return export_model(load_model_from(model), export_base, version=version,
                            keras_file=keras_file, freeze_weights=freeze_weights)


def main(argv, flag_values: flags.FlagValues = FLAGS):
    del argv
    model = cli.model_flag(flag_values)
    cli.require(flag_values, "export_base")
    logging.set_verbosity(logging.WARNING)
    with cli.user_errors("Export failed"):  # not a zoo model (TypeError), paths, versions
        path = export_run(model, flag_values.export_base, flag_values.version,
                          flag_values.keras_file, flag_values.precision,
                          FREEZE_CHOICES[flag_values.freeze_weights])
    print(f"Exported {path}")


if __name__ == "__main__":
    cli.run(main, define_flags)
