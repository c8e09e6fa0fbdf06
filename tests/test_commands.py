"""Every command's answer to bad input (one line, non-zero exit), `--help`, and file safety.

The table runs each command's `main` in this process with its own
`FlagValues` (as `python -m trainers.<command>` would, minus the start-up);
two cases and `--help` run as real subprocesses to check what a user sees:
a single line, no traceback, no TensorFlow start-up noise. The file-safety
tests simulate a full disk (`OSError(ENOSPC)`) in the middle of a write and
check that every file a crash leaves is a complete one.
"""

import csv
import errno
import json
import os
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from absl import app, flags
from PIL import Image

from tests.helpers import REPO_ROOT, random_images, tiny_model
from trainers import evaluate, export, images, publish, reconstruct, reproduce, runs, train
from zoo import keras_file
from zoo.atomic import TMP_PREFIX

COMMANDS = {"train": train, "evaluate": evaluate, "export": export, "reconstruct": reconstruct,
            "publish": publish, "reproduce": reproduce}
TRAIN = ["--model=ae", "--model_dir={tmp}/run", "--dataset={data}", "--set=filters=8",
         "--set=num_res_blocks=1", "--steps_per_epoch=1", "--batch_size=4"]

# (id, command, arguments, text the one-line answer must contain)
CASES = [
    ("epochs_0", "train", [*TRAIN, "--epochs=0"], r"`training.epochs` must be an integer >= 1"),
    ("epochs_negative", "train", [*TRAIN, "--epochs=-3"], r"training.epochs.*Received: -3"),
    ("epochs_text", "train", [*TRAIN, "--epochs=two"], r"--epochs=two.*invalid literal"),
    ("set_epochs_text", "train", [*TRAIN, "--set=training.epochs=two"],
     r"`training.epochs` must be an integer >= 1.*Received: 'two' \(str\)"),
    ("set_batch_float", "train", [*TRAIN, "--set=training.batch_size=2.5"],
     r"`training.batch_size` must be an integer >= 1"),
    ("batch_0", "train", [*TRAIN, "--batch_size=0"], r"`training.batch_size` must be an integer"),
    ("lr_negative", "train", [*TRAIN, "--learning_rate=-0.001"],
     r"`training.learning_rate` must be a number > 0.*-0.001"),
    ("lr_zero", "train", [*TRAIN, "--learning_rate=0"], r"`training.learning_rate` must be"),
    ("lr_nan", "train", [*TRAIN, "--learning_rate=nan"], r"`training.learning_rate` must be"),
    ("steps_0", "train", [*TRAIN, "--steps_per_epoch=0"], r"`training.steps_per_epoch` must be"),
    ("steps_negative", "train", [*TRAIN, "--steps_per_epoch=-1"], r"training.steps_per_epoch"),
    ("image_shape_text", "train", [*TRAIN, "--set=image_shape=28,28,1"],
     r"`model_config.image_shape` must be \[height, width, channels\]"),
    ("image_shape_null", "train", [*TRAIN, "--set=image_shape=null"],
     r"`model_config.image_shape` must be"),
    ("image_shape_2d", "train", [*TRAIN, "--set=image_shape=[28,28]"],
     r"`model_config.image_shape` must be"),
    ("fraction", "train", [*TRAIN, "--set=training.validation_fraction=1.5"],
     r"`training.validation_fraction` must be a number in \(0, 1\)"),
    ("lr_schedule", "train", [*TRAIN, "--set=training.lr_schedule=linear"],
     r"`training.lr_schedule` must be one of \['cosine', 'constant'\]"),
    ("temperature", "train", [*TRAIN, "--set=training.temperature_schedule.end=0"],
     r"`training.temperature_schedule.end` must be a number > 0"),
    ("feature_weight", "train", [*TRAIN, "--set=training.feature_matching_weight=-1"],
     r"`training.feature_matching_weight` must be a number >= 0 \(0: off\)"),
    ("feature_network_kind", "train",
     [*TRAIN, "--set=training.feature_matching_weight=0.1",
      f"--set=training.feature_network={REPO_ROOT}/trainers/assets/"
      "fashion_mnist_classifier.weights.h5"],
     r"training.feature_network=.*classifier.weights.h5: fashion_mnist_classifier has no "
     r"layers named stage_1, \.\.\.: it is not a feature network"),
    ("feature_network_missing", "train",
     [*TRAIN, "--set=training.feature_matching_weight=0.1",
      "--set=training.feature_network={tmp}/none.weights.h5"],
     r"Classifier file missing: .*none\.weights\.h5"),
    ("freeze_text", "train", [*TRAIN, "--set=training.freeze=encoder"],
     r"`training.freeze` must be a list of distinct parts among \['encoder', 'quantizer', "
     r"'decoder'\] \(as in --set 'training.freeze=\[\"encoder\"\]'\)"),
    ("freeze_absent_part", "train", [*TRAIN, '--set=training.freeze=["quantizer"]'],
     r"training.freeze: AE has no 'quantizer'; its parts are \['encoder', 'decoder'\]"),
    ("freeze_everything", "train", [*TRAIN, '--set=training.freeze=["encoder","decoder"]'],
     r"training.freeze=\['encoder', 'decoder'\] leaves nothing of the model to train"),
    ("unknown_key", "train", [*TRAIN, "--set=filtrs=8"], r"Unknown config key 'filtrs'"),
    ("set_no_equals", "train", [*TRAIN, "--set=filters"], r"--set expects key=value"),
    ("model_option_type", "train", [*TRAIN, "--set=filters=abc"],
     r"Invalid model_config for ae: .*filters"),
    ("model_option_value", "train", [*TRAIN, "--set=filters=-1"], r"Invalid model_config for ae"),
    ("model_vs_init_from", "train", [*TRAIN, "--model=vae", "--init_from=dvae_fashion_mnist"],
     r"--model=vae contradicts --init_from=dvae_fashion_mnist, which is a dvae"),
    ("init_from_architecture", "train",
     ["--model_dir={tmp}/run", "--dataset={data}", "--init_from=dvae_fashion_mnist",
      "--set=num_embeddings=16"],
     r"--init_from=dvae_fashion_mnist with num_embeddings=16: its weights do not fit"),
    ("init_from_unknown", "train", [*TRAIN, "--init_from=no_such_model"],
     r"--init_from=no_such_model: Unknown zoo model 'no_such_model'"),
    ("init_from_missing", "train", [*TRAIN, "--init_from={tmp}/missing.keras"],
     r"No such \.keras file: .*missing\.keras"),
    ("init_from_broken", "train", [*TRAIN, "--init_from={tmp}/broken.keras"],
     r"broken\.keras .*is not a valid \.keras file"),
    ("config_not_json", "train", ["--model_dir={tmp}/run", "--config={tmp}/notes.json"],
     r"Config file .*notes\.json is not valid JSON"),
    ("config_not_object", "train", ["--model_dir={tmp}/run", "--config={tmp}/list.json"],
     r"Config file .*list\.json must hold a JSON object"),
    ("config_unknown", "train", ["--model_dir={tmp}/run", "--config=no_such_recipe"],
     r"No such config file or recipe: no_such_recipe\. Recipes: ae_fashion_mnist"),
    ("prior_recipe", "train", ["--model_dir={tmp}/run", "--config=prior_dvae_fashion_mnist"],
     r"trains a Transformer prior .*use `python -m trainers.train_prior --config=\.\.\.`"),
    ("model_vs_config", "train", ["--model_dir={tmp}/run", "--model=ae",
                                  "--config=dvae_fashion_mnist"],
     r"--model=ae contradicts the config file's model 'dvae'"),
    ("dataset_missing", "train", [*TRAIN, "--dataset={tmp}/missing.npy"], r"No such file"),
    ("dataset_unknown", "train", [*TRAIN, "--dataset=no_such_dataset_xyz"],
     r"--dataset=no_such_dataset_xyz: Unknown dataset"),
    ("dataset_wrong_shape", "train", [*TRAIN, "--dataset={tmp}/small.npy"], r"--dataset=.*small"),
    ("model_dir_missing", "train", ["--model=ae"], r"--model_dir required"),
    ("model_dir_is_file", "train", [*TRAIN, "--model_dir={tmp}/notes.json"],
     r"notes\.json is a file, not a folder"),
    ("no_model", "train", ["--model_dir={tmp}/run"], r"Give --model \(ae, vae, vqvae, dvae\)"),
    ("family_unknown", "train", [*TRAIN, "--model=gan"], r"--model.*gan"),
    ("eval_no_model", "evaluate", [], r"Give the model with --model .*not neither"),
    ("eval_both", "evaluate", ["--model={run}", "--model_dir={run}"], r"not both"),
    ("eval_unknown", "evaluate", ["--model=no_such_model"], r"Unknown zoo model 'no_such_model'"),
    ("eval_empty_dir", "evaluate", ["--model={tmp}/empty"], r"No model in .*empty"),
    ("eval_broken", "evaluate", ["--model={tmp}/broken.keras"], r"not a valid \.keras file"),
    ("eval_missing_path", "evaluate", ["--model={tmp}/nowhere/run"], r"No such model folder"),
    ("eval_batch_0", "evaluate", ["--model={run}", "--batch_size=0"], r"must be >= 1"),
    ("eval_max_images_0", "evaluate", ["--model={run}", "--max_images=0"], r"must be >= 1"),
    ("eval_dataset_missing", "evaluate", ["--model={run}", "--dataset={tmp}/missing.npy"],
     r"No such file"),
    ("eval_split", "evaluate", ["--model={run}", "--split=dev"], r"--split.*dev"),
    ("export_no_base", "export", ["--model={run}"], r"--export_base required"),
    ("export_unknown", "export", ["--model=no_such_model", "--export_base={tmp}/exports"],
     r"Export failed: Unknown zoo model"),
    ("export_not_zoo", "export", ["--model={tmp}/plain.keras", "--export_base={tmp}/exports"],
     r"Export failed: .*Sequential"),
    ("train_init_not_zoo", "train", ["--init_from={tmp}/plain.keras", "--model_dir={tmp}/run",
                                   "--dataset={data}", "--steps_per_epoch=1"],
     r"Training refused: The initial model is a Sequential, not one of the zoo's autoencoders"),
    ("export_base_file", "export", ["--model={run}", "--export_base={tmp}/notes.json"],
     r"Export failed: `export_base` .*notes.json' is a file"),
    ("export_version", "export", ["--model={run}", "--export_base={tmp}/exports",
                                  "--version=-1"], r"`version` must be an integer >= 0"),
    ("recon_no_input", "reconstruct", ["--model={run}", "--output_dir={tmp}/out"],
     r"--input_dir required"),
    ("recon_missing_input", "reconstruct", ["--model={run}", "--input_dir={tmp}/nowhere",
                                            "--output_dir={tmp}/out"], r"No such folder"),
    ("recon_input_file", "reconstruct", ["--model={run}", "--input_dir={tmp}/notes.json",
                                         "--output_dir={tmp}/out"],
     r"Reconstruction failed: .*notes.json is a file; give the folder"),
    ("recon_empty_input", "reconstruct", ["--model={run}", "--input_dir={tmp}/empty",
                                          "--output_dir={tmp}/out"], r"No images"),
    ("recon_bad_image", "reconstruct", ["--model={run}", "--input_dir={tmp}/bad_images",
                                        "--output_dir={tmp}/out"], r"Cannot read image"),
    ("recon_batch_0", "reconstruct", ["--model={run}", "--input_dir={tmp}/bad_images",
                                      "--output_dir={tmp}/out", "--batch_size=0"], r">= 1"),
    ("publish_no_name", "publish", ["--model_dir={run}"], r"--name required"),
    ("reproduce_unknown", "reproduce", ["--name=no_such_model", "--model_dir={run}"],
     r"Unknown zoo model 'no_such_model'"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """A scratch folder with the inputs the cases name."""
    tmp = tmp_path_factory.mktemp("commands")
    np.save(tmp / "data.npy", random_images(40))
    np.save(tmp / "small.npy", random_images(8, shape=(8, 8, 1)))
    (tmp / "notes.json").write_text("epochs: 3\n")
    (tmp / "list.json").write_text("[1, 2]")
    (tmp / "broken.keras").write_bytes(b"PK\x03\x04 truncated")
    (tmp / "empty").mkdir()
    (tmp / "bad_images").mkdir()
    (tmp / "bad_images" / "x.png").write_bytes(b"not a png")
    run = tmp / "trained"
    run.mkdir()
    tiny_model("ae").save(run / "best.keras")
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    plain.save(tmp / "plain.keras")
    return {"tmp": tmp, "data": tmp / "data.npy", "run": run}


def run_main(command: str, args: list[str]) -> tuple[int, str]:
    """Runs a command's `main` as absl would; returns (exit status, message)."""
    module = COMMANDS[command]
    flag_values = flags.FlagValues()
    module.define_flags(flag_values)
    try:
        flag_values([command, *args])
    except flags.Error as error:  # absl: "FATAL Flags parsing error: ...", exit 1
        return 1, str(error)
    try:
        module.main([], flag_values)
    except app.UsageError as error:  # absl prints the message, exit 1
        return error.exitcode, str(error)
    except SystemExit as error:  # a string code is printed to stderr, exit 1
        return (1, error.code) if isinstance(error.code, str) else (error.code, "")
    return 0, ""


@pytest.mark.parametrize("command, args, expected", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_user_errors_get_one_line_and_a_non_zero_exit(places, command, args, expected):
    args = [a.format(**places) for a in args]
    status, message = run_main(command, args)  # any other exception fails the test
    assert status != 0
    assert message.strip() and "\n" not in message.strip(), message
    assert re.search(expected, message), message
    assert not (places["tmp"] / "run").exists()  # no run folder, not even an empty one


@pytest.mark.parametrize("tf_config", [None, "{bad"])
def test_multi_worker_without_a_valid_tf_config_is_one_line(places, monkeypatch, tf_config):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    args = [a.format(**places) for a in [*TRAIN, "--strategy=multi_worker"]]
    status, message = run_main("train", args)
    assert status == 1 and "\n" not in message.strip()
    assert message.startswith("Training refused:") and "TF_CONFIG" in message, message


def test_a_lost_worker_is_one_line_saying_how_to_resume(places, monkeypatch):
    # What the surviving workers raise when one dies (loopback: within seconds) or stops
    # answering (its heartbeats: about 10 s); it was a page of traceback.
    import tensorflow as tf

    from trainers import training

    def worker_lost(*args, **kwargs):
        raise tf.errors.UnavailableError(None, None, (
            "{{function_node __wrapped__CollectiveReduceV2}} Collective ops is aborted by: "
            "Error reported from /job:worker/task:1: The following tasks are unhealthy "
            "(stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have "
            "crashed."))

    monkeypatch.setattr(training, "train", worker_lost)
    status, message = run_main("train", [a.format(**places) for a in TRAIN])
    assert status == 1 and "\n" not in message.strip(), message
    assert message.startswith("Training stopped: another worker of the multi-worker job")
    assert "stopped sending heartbeats" in message
    assert "start every worker again with the same command to resume" in message


def test_ctrl_c_during_training_says_how_to_resume(places, monkeypatch, capsys):
    # train_prior stops through the same cli.training_stops.
    from trainers import training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", interrupted)
    status, _ = run_main("train", [a.format(**places) for a in TRAIN])
    assert status == 130
    err = capsys.readouterr().err
    assert "Training interrupted" in err and "re-run the same command to resume" in err


def _python(args, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=240, env={**env, "PYTHONPATH": str(REPO_ROOT)})


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_exits_zero(command):
    result = _python(["-m", f"trainers.{command}", "--help"])
    assert result.returncode == 0, result.stderr
    assert "flags:" in result.stdout and result.stderr == ""


@pytest.mark.parametrize(
    "args, line",
    [(["-m", "trainers.train", "--model=ae", "--model_dir=x", "--epochs=0"],
      "Training refused: `training.epochs` must be an integer >= 1"),
     (["-m", "trainers.evaluate", "--model=no_such_model"],
      "Evaluation failed: Unknown zoo model 'no_such_model'"),
     (["-m", "trainers.export", "--model=ae_fashion_mnist"],  # absl printed every flag's help
      "--export_base required. Run with --help for the flags.")],
)
def test_a_user_error_is_the_only_line_a_user_sees(tmp_path, args, line):
    """Also the console check: TensorFlow starts (the commands import it before main), and
    none of its start-up lines (absl pre-init INFO lines, cuInit errors) reach the user."""
    result = _python(args, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[0].startswith(line), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stdout == ""


# File safety -------------------------------------------------------------------

def _full_disk(real, calls_allowed: int, path_of, matches):
    """`real`, except that after `calls_allowed` matching calls it writes half a file and
    raises `OSError(ENOSPC)`, as a write on a full disk does."""
    calls = []

    def writer(*args, **kwargs):
        target = os.fspath(path_of(*args, **kwargs))
        if matches(target):
            calls.append(target)
            if len(calls) > calls_allowed:
                with open(target, "wb") as f:
                    f.write(b"PK\x03\x04 half written")
                raise OSError(errno.ENOSPC, "No space left on device", target)
        return real(*args, **kwargs)

    return writer


FAILURES = {
    # what fails at the second epoch: object, attribute, calls that work, its path, which paths
    "checkpoint": (keras.Model, "save", 2, lambda model, path, *a, **k: path,
                   lambda path: path.endswith(".keras")),
    "history": (pathlib.Path, "write_text", 1, lambda path, *a, **k: path,
                lambda path: path.endswith("history.csv")),
    "picture": (images, "save_png", 1, lambda array, path, *a, **k: path,
                lambda path: "epoch_" in path),
}


@pytest.mark.parametrize("what", sorted(FAILURES))
def test_a_full_disk_mid_run_leaves_only_complete_files(places, tmp_path, monkeypatch, what):
    owner, name, allowed, path_of, matches = FAILURES[what]
    monkeypatch.setattr(owner, name, _full_disk(getattr(owner, name), allowed, path_of, matches))
    args = [a.format(tmp=tmp_path, data=places["data"]) for a in [*TRAIN, "--epochs=3"]]
    status, message = run_main("train", args)
    monkeypatch.undo()
    assert status == 1 and "No space left on device" in message and "intact" in message
    run = tmp_path / "run"
    assert not [p for p in run.rglob("*") if p.name.startswith(TMP_PREFIX)]
    for checkpoint in ("best.keras", "last.keras"):
        keras_file.check_keras_file(run / checkpoint)
    with open(run / "history.csv") as f:
        rows = list(csv.reader(f))
    assert len(rows) >= 2 and all(len(row) == len(rows[0]) for row in rows)
    for picture in (run / "images").glob("*.png"):
        with Image.open(picture) as opened:
            opened.load()
    # What evaluate and export read is a complete model.
    assert runs.find_model_file(run) == run / "best.keras"
    report = evaluate.run_evaluation(run, max_images=4, output_dir=tmp_path / "eval")
    assert np.isfinite(report["mse"])
    assert json.loads((run / "config.json").read_text())["model"] == "ae"
