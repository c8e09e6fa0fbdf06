"""What every command shares: a quiet TensorFlow start, `--help`, one-line user errors.

Each command module ends with `cli.run(main, define_flags)` instead of
`app.run(main)`. This module imports no TensorFlow: the start-up noise can
only be handled before TensorFlow is imported.

TensorFlow's start-up lines and why they are dropped here (TF 2.21, Linux):

- `WARNING: All log messages before absl::InitializeLog() is called are
  written to STDERR`, `I0000 ... port.cc] oneDNN custom operations are on`
  and `I0000 ... cudart_stub.cc] Could not find cuda drivers`: C++ absl logs
  emitted while TensorFlow's shared libraries load (twice: two libraries
  each carry absl). They are written before TensorFlow applies
  `TF_CPP_MIN_LOG_LEVEL`, so no level hides them.
- `E0000 ... failed call to cuInit: ... UNKNOWN ERROR (303)`: the wheel is
  built with CUDA; with no NVIDIA driver, its `libcuda` stub answers `cuInit`
  with `CUDA_ERROR_SHARED_OBJECT_INIT_FAILED` (303), which is logged at ERROR
  level, and `TF_CPP_MIN_LOG_LEVEL=2` hides only INFO and WARNING (3 would
  hide every C++ error). `CUDA_VISIBLE_DEVICES=""` does not help (`cuInit`
  still runs) and would hide real GPUs.

So `quiet_tensorflow_start` imports TensorFlow and lists its devices (which
runs `cuInit`) with the process's stderr sent to a temporary file, then
writes back every line except those above. The GPU lines are dropped only on
machines without an NVIDIA kernel driver (no `/proc/driver/nvidia`, no
`/dev/nvidia*`): where a GPU is installed, a failure to use it stays visible.
Nothing is dropped when `TF_CPP_MIN_LOG_LEVEL` is set below 2.
"""

import contextlib
import errno
import glob
import os
import re
import sys
import tempfile

from absl import app, flags

_ALWAYS_NOISE = (
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"I0000 [\d:. ]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\.",
)
_NO_GPU_NOISE = (
    r"I0000 [\d:. ]+ +\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine",
    r"E0000 [\d:. ]+ +\d+ cuda_platform\.cc:\d+\] failed call to cuInit: .*\(303\)",
)
MODEL_HELP = (
    "The model: a zoo name (e.g. dvae_fashion_mnist), a preset folder, a trainers.train run "
    "folder or a .keras file."
)
"""Help text of the `--model` flag of every command that reads a model (`trainers.runs`)."""
_HELP_FLAGS = {"-h": True, "-?": True, "--help": True, "--helpshort": True, "--helpfull": False}


def has_nvidia_driver() -> bool:
    """True when an NVIDIA kernel driver is loaded (a GPU TensorFlow could use)."""
    return os.path.exists("/proc/driver/nvidia/version") or bool(glob.glob("/dev/nvidia[0-9]*"))


def noise_patterns() -> list[re.Pattern]:
    """The start-up lines `quiet_tensorflow_start` drops on this machine."""
    patterns = list(_ALWAYS_NOISE)
    if not has_nvidia_driver():
        patterns += _NO_GPU_NOISE
    return [re.compile(p) for p in patterns]


def quiet_tensorflow_start() -> None:
    """Imports the zoo and TensorFlow and initialises its devices without the start-up noise.

    The zoo comes first, so its TensorFlow defaults (`zoo.runtime`: oneDNN)
    apply. Sets `TF_CPP_MIN_LOG_LEVEL=2` unless the user set it. Only imports
    the zoo if TensorFlow is already imported or the user asked for verbose
    C++ logs (`TF_CPP_MIN_LOG_LEVEL` 0 or 1). Every stderr line that is not
    known noise (see the module docstring) is written back.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"] in ("0", "1"):
        import zoo  # noqa: F401  (its runtime defaults, if TensorFlow is not loaded yet)

        return
    patterns = noise_patterns()
    with tempfile.TemporaryFile(mode="w+b") as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            import zoo  # noqa: F401  (sets zoo.runtime's defaults, then loads TensorFlow)
            import tensorflow as tf  # isort: skip  (after the zoo)

            tf.config.list_physical_devices()  # runs cuInit (no context: strategies still work)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            kept = [
                line for line in text.splitlines(keepends=True)
                if not any(p.match(line) for p in patterns)
            ]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


@contextlib.contextmanager
def user_errors(prefix: str, *types: type[BaseException]):
    """Turns the given exception types into a one-line error and exit status 1.

    Wrap only the steps whose failures are the user's to fix (flags, config,
    paths, data); a bug elsewhere keeps its traceback.

    Args:
        prefix: str. Starts the line, e.g. `"Training refused"`.
        *types: exception types. Defaults to `ValueError`, `TypeError`,
            `FileNotFoundError`, `FileExistsError`, `NotADirectoryError`.
    """
    types = types or (ValueError, TypeError, FileNotFoundError, FileExistsError,
                      NotADirectoryError)
    try:
        yield
    except types as error:
        raise SystemExit(f"{prefix}: {error}") from None


def _help_requested(argv: list[str]) -> bool | None:
    """True (short help), False (full help) or None, from the arguments before `--`."""
    for arg in argv[1:]:
        if arg == "--":
            return None
        if arg in _HELP_FLAGS:
            return _HELP_FLAGS[arg]
    return None


# A full or read-only disk: the user's to fix, and the atomic writes kept the last good files.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)

_KEPT = ("The checkpoints, history.csv and pictures of the last completed epoch (if any) are "
         "intact; {fix}re-run the same command to resume.")


def _unavailable_errors() -> list[type[BaseException]]:
    """TensorFlow's `UnavailableError`, if TensorFlow is loaded (this module does not load it)."""
    tf = sys.modules.get("tensorflow")
    errors = getattr(tf, "errors", None)
    return [errors.UnavailableError] if errors is not None else []


@contextlib.contextmanager
def training_stops():
    """Turns the ways a training run stops early into one line saying what is kept.

    A non-finite loss (`StopOnNaN`'s `FloatingPointError`), Ctrl-C (exit
    status 130), a full or read-only disk and, under multi-worker training, a
    worker that died or stopped answering (TensorFlow's `UnavailableError`,
    which the other workers raise: the job resumes only when every worker is
    started again); any other error keeps its traceback.
    """
    try:
        yield
    except FloatingPointError as error:
        raise SystemExit(f"Training stopped: {error}") from None
    except tuple(_unavailable_errors()) as error:
        cause = str(error).partition("aborted by: ")[2] or str(error)
        raise SystemExit(
            "Training stopped: another worker of the multi-worker job stopped or cannot be "
            f"reached ({cause.strip().splitlines()[0][:300]}). "
            + _KEPT.format(fix="").replace("re-run the same command",
                                           "start every worker again with the same command")
        ) from None
    except KeyboardInterrupt:
        print(f"\nTraining interrupted. {_KEPT.format(fix='')}", file=sys.stderr)
        raise SystemExit(130) from None
    except OSError as error:
        if error.errno not in DISK_ERRORS:
            raise
        raise SystemExit(
            f"Training stopped: {error}. {_KEPT.format(fix='free space and ')}"
        ) from None


def run(main, define_flags=None) -> None:
    """Runs an absl command: help exits 0, TensorFlow starts quietly, then `main(argv)`.

    Args:
        main: the command's `main(argv)`.
        define_flags: the command's flag definitions, called first (commands
            define flags only when run, so their modules can be imported
            together).
    """
    if define_flags is not None:
        define_flags()
    short = _help_requested(sys.argv)
    if short is not None:  # absl's own --help exits with status 1
        app.usage(shorthelp=short, writeto_stdout=True)
        if short:
            print("\nTry --helpfull to get a list of all flags.")
        sys.exit(0)

    def quiet_main(argv):
        quiet_tensorflow_start()
        try:
            return main(argv)
        except app.UsageError as error:  # absl would print every flag's help above it
            raise SystemExit(f"{error} Run with --help for the flags.") from None

    app.run(quiet_main)


def model_flag(flag_values: flags.FlagValues) -> str:
    """The model spec from `--model`, or from `--model_dir` (kept for run folders).

    Raises:
        app.UsageError: neither or both given.
    """
    given = [name for name in ("model", "model_dir") if flag_values[name].value]
    if len(given) != 1:
        raise app.UsageError(
            "Give the model with --model (a zoo name, a preset folder, a run folder or a "
            f".keras file) or --model_dir (a run folder), not {'both' if given else 'neither'}."
        )
    return flag_values[given[0]].value


def require(flag_values: flags.FlagValues, *names: str) -> None:
    """Raises `app.UsageError` naming the required flags that were not given."""
    missing = [f"--{name}" for name in names if not flag_values[name].value]
    if missing:
        raise app.UsageError(f"{' and '.join(missing)} required.")
