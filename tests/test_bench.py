"""Smoke test of the benchmark suite: every benchmark runs at a tiny size and
`bench.run_all` writes BENCHMARKS.md with the expected tables. No timing
assertions: speed claims live in BENCHMARKS.md, not in tests."""

import json
import re

import pytest

import zoo
from bench import common, run_all
from bench.common import cpu_model


def test_summaries_and_tables():
    stat = common.summarize([3.0, 1.0, 2.0])
    assert (stat.median, stat.min, stat.max, stat.count) == (2.0, 1.0, 3.0, 3)
    assert common.percentile([1, 2, 3, 4, 5], 50) == 3
    assert common.percentile([0, 10], 99) == pytest.approx(9.9)
    results = common.interleaved({"ok": lambda: 1.0, "bad": lambda: 1 / 0}, repeats=2)
    assert results["ok"] == [1.0, 1.0] and isinstance(results["bad"], ZeroDivisionError)
    table = common.Table("t", ["a", "b"])
    table.add(1, 2)
    with pytest.raises(ValueError, match="expected 2"):
        table.add(1)
    assert "| 1 | 2 |" in table.markdown()


@pytest.mark.slow  # ~60 s: every benchmark at tiny size; the default suite regenerates one section
def test_run_all_tiny_writes_every_table(tmp_path):
    output = tmp_path / "BENCHMARKS.md"
    tables = run_all.run("tiny", str(output))
    text = output.read_text()
    for heading in (
        "## Machine",
        "## Training throughput",
        "## Input pipeline",
        "## Serving",
        "## Scaling",
        "## Generation",
        "## oneDNN",
        "## Serving threads",
        "fp32 matmul peak",
        "Load average",
    ):
        assert heading in text

    training = tables["training"]
    assert training.headers[:4] == ["family", "batch", "mode", "images/s"]
    assert "% of fp32 peak" in training.headers
    assert [(r[0], r[2]) for r in training.rows] == [
        ("ae", "graph"),
        ("ae", "spe8"),
        ("vqvae", "graph"),
        ("vqvae", "spe8"),
    ]
    for row in training.rows:
        assert not str(row[3]).startswith("failed"), row
        assert row[-1].endswith("%")

    pipeline = tables["input_pipeline"]
    assert len(pipeline.rows) == 3  # fashion_mnist and two PNG folders, one batch size
    assert all(row[-1].endswith("x") for row in pipeline.rows)

    serving = tables["serving"]
    endpoints = {(r[0], r[1]) for r in serving.rows}
    for name in ("serving_default", "encode", "decode", "reconstruct_image_bytes"):
        assert ("ae", f"SavedModel `{name}`") in endpoints
    assert ("ae", "model.predict") in endpoints and ("ae", "model(x)") in endpoints
    assert not any(str(r[2]).startswith("failed") for r in serving.rows)

    scaling = tables["scaling"]
    assert [(r[0], r[1]) for r in scaling.rows] == [("ae", "1"), ("ae", "2")]
    assert not any(str(r[2]).startswith("failed") for r in scaling.rows)

    dalle = tables["dalle"]
    assert "## DALL-E dVAE" in text
    assert [(r[0].split(",")[0], r[1]) for r in dalle.rows] == [
        ("`encode`", "float32"),
        ("`decode`", "float32"),
        ("`encode`", "mixed_bfloat16"),
        ("`decode`", "mixed_bfloat16"),
    ]
    assert all(row[2].endswith(" ms") for row in dalle.rows), dalle.rows
    generation = tables["generation"]
    assert [r[0] for r in generation.rows] == [
        "KV cache (served)",
        "KV cache, guidance_scale=2",
        "no cache",
    ]
    assert not any(str(r[1]).startswith("failed") for r in generation.rows)
    assert all(str(r[5])[0].isdigit() for r in generation.rows)  # images per CPU-s


def test_run_sections_replaces_only_the_sections_asked_for(tmp_path):
    output = tmp_path / "BENCHMARKS.md"
    kept = "## Training throughput\n\nold training table, kept\n"
    output.write_text(f"# Benchmarks\n\n{kept}\n## Generation\n\nold generation table\n")
    run_all.run_sections("tiny", str(output), ["generation"])
    text = output.read_text()
    assert kept in text
    assert "old generation table" not in text
    assert text.count("\n## Generation\n") == 1
    assert "--sections generation" in text and "KV cache (served)" in text

    with pytest.raises(ValueError, match="generation"):
        run_all.run_sections("tiny", str(output), ["no_such_section"])


def test_load_remark_judges_the_load_before_the_run_only():
    # The load after a run is the benchmark's own work; only the load before tells.
    assert "idle" in run_all._load_remark("0.20 0.90 1.50", brief=True)
    assert "busy" in run_all._load_remark("1.31 1.89 2.05", brief=True)
    assert "idle" in run_all._load_remark("0.05 0.02 0.00")


@pytest.mark.slow  # ~37 s: four processes; tests/test_runtime.py checks the zoo turns oneDNN on
def test_onednn_section_compares_processes_with_onednn_off_and_on(tmp_path):
    from bench import onednn

    profile = run_all._tiny_profile()["onednn"]
    table = onednn.run(**profile)
    measures = [row[0] for row in table.rows]
    assert measures == [
        "training ae, images/s (batch 8)",
        "serving ae, images/s (batch 8)",
        "serving ae, p50 ms (batch 1)",
    ]
    for row in table.rows:
        assert row[1][0].isdigit() and row[2][0].isdigit() and row[3].endswith("x"), row
    # The child processes report what TensorFlow did with the variable.
    assert "oneDNN off in the `=0` processes and on in the `=1` ones" in table.notes[0]


@pytest.mark.slow  # ~40 s: six TensorFlow-only processes
def test_serving_threads_times_every_setting_in_its_own_process():
    from bench import serving_threads

    table = serving_threads.run(**run_all._tiny_profile()["serving_threads"])
    assert [row[1] for row in table.rows] == list(serving_threads.SETTINGS)
    for row in table.rows:
        assert float(row[2].split()[0]) > 0, row  # p50 ms
        assert float(row[3].split()[0].replace(",", "")) > 0, row  # images/s, one client
        assert float(row[4].split()[0].replace(",", "")) > 0, row  # images/s, several
        assert "p50 <= 1.5 ms" in row[5]


def test_serving_benchmarks_take_a_family_or_a_preset_name():
    from bench import serving_latency

    models = serving_latency.load_models(["ae", "vqvae_perceptual_fashion_mnist"], True,
                                         ["float32", "mixed_bfloat16"], {})
    assert list(models) == ["ae_fashion_mnist", "ae_fashion_mnist (bf16)",
                            "vqvae_perceptual_fashion_mnist",
                            "vqvae_perceptual_fashion_mnist (bf16)"]
    assert isinstance(models["vqvae_perceptual_fashion_mnist"][0], zoo.VQVAE)
    assert models["ae_fashion_mnist (bf16)"][0].compute_dtype == "bfloat16"


def test_serving_worker_rate_counts_every_client_call():
    from bench import serving_worker

    calls = []

    class Signature:
        def __call__(self, **inputs):
            calls.append(inputs)
            return {}

    rate = serving_worker._rate(Signature(), {"x": 1}, batch=8, calls=3, clients=2)
    assert len(calls) == 6 and rate > 0


@pytest.mark.slow  # ~15 s: a default-size generator, traced
def test_generation_step_breakdown_names_every_part():
    from bench import generation_step

    table = generation_step.run(batch=2, calls=1)
    names = [row[0] for row in table.rows]
    assert names[:2] == ["sampling loop (cached)", "decoder pass"]
    assert sum(name.startswith("part: ") for name in names) == 6
    assert [name for name in names if name.startswith("loop without ")] == [
        f"loop without {what}" for what in generation_step.ABLATIONS.values()]
    assert all(float(row[1]) > 0 for row in table.rows)


@pytest.mark.slow  # ~30 s: six exports of the shipped VQ-VAE, timed in a TensorFlow-only process
def test_serving_variants_times_every_variant_with_the_same_outputs():
    from bench import serving_variants

    table = serving_variants.run(("vqvae_fashion_mnist",), latency_calls=2,
                                 throughput_calls=1, repeats=1)
    assert [(r[1], r[2]) for r in table.rows] == [
        (precision, variant)
        for precision in ("float32", "mixed_bfloat16")
        for variant in serving_variants.VARIANTS
    ]
    assert not any(str(r[4]).startswith("failed") for r in table.rows), table.rows
    float32 = [r for r in table.rows if r[1] == "float32" and r[3]]
    assert all(float(r[3]) < 1e-5 for r in float32), float32  # same function, float32


@pytest.mark.slow  # ~40 s each: the experiment end to end, 2 steps an arm
@pytest.mark.parametrize("recipe", ["vqvae_fashion_mnist", "dvae_fashion_mnist"])
def test_feature_loss_experiment_reports_every_arm(recipe, tmp_path):
    from bench import feature_loss

    args = ["--recipe", recipe, "--epochs", "1", "--steps_per_epoch", "2", "--weights", "0",
            "0.1", "--max_test", "128", "--runs_dir", str(tmp_path)]
    report = feature_loss.main(args)
    rows = [line for line in report.splitlines() if line.startswith("| 0")]
    assert [row.split("|")[1].strip() for row in rows] == ["0", "0.1"]
    assert f"CPU: {cpu_model()}" in report and f"Recipe {recipe}" in report
    for weight in ("0", "0.1"):  # each arm is a train-command run, measured on the test set
        config = json.loads((tmp_path / f"weight_{weight}" / "config.json").read_text())
        assert config["training"]["feature_matching_weight"] == float(weight)
        metrics = json.loads((tmp_path / f"weight_{weight}" / "test" / "metrics.json").read_text())
        assert metrics["classifier_accuracy"]["drop_points"] == pytest.approx(
            float(rows[int(weight != "0")].split("|")[6]), abs=0.006)
    with pytest.raises(SystemExit):  # the train command would resume the runs it finds
        feature_loss.main(args)


@pytest.mark.slow
def test_feature_loss_experiment_trains_its_own_feature_network():
    from bench import feature_loss

    report = feature_loss.main(["--epochs", "1", "--steps_per_epoch", "1", "--weights", "0.1",
                                "--max_images", "256", "--max_test", "64",
                                "--train_architecture", "features", "--feature_epochs", "1"])
    assert "feature network: features, 1 epochs" in report


def test_time_to_quality_evaluates_finer_once_near_the_threshold():
    import keras
    import numpy as np

    from bench.time_to_quality import NEAR, TimeToQuality

    clock = TimeToQuality(np.zeros((4, 28, 28, 1), "float32"), threshold=1.0, interval=50,
                          fine_interval=10)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.stop_training = False  # as `fit` sets it
    clock.set_model(model)
    assert NEAR == 1.1
    curve = iter([1.3, 1.2, 1.05, 1.02, 0.99])  # the test MSE at each evaluation
    clock.test_mse = lambda: next(curve)
    step = 0
    while not clock.model.stop_training:
        clock.on_train_batch_begin(step)
        clock.on_train_batch_end(step, {"loss": 0.0})
        step += 1
    assert [s for s, _, _ in clock.curve] == [50, 100, 150, 160, 170]
    assert clock.reached and clock.steps == 170 and clock.seconds > 0


def test_classifier_judges_measures_each_model_under_each_classifier(tmp_path):
    import numpy as np

    from bench import classifier_judges
    from tests.helpers import tiny_model
    from trainers import data, labels, sample_quality
    from trainers.evaluation import classifier_check

    model = tiny_model("ae")
    model.save(tmp_path / "tiny.keras")
    judge = str(sample_quality.FEATURE_NETWORK_WEIGHTS)
    result = classifier_judges.drops([str(tmp_path / "tiny.keras")], [None, judge],
                                     max_images=64)
    images = data.load_split("fashion_mnist", "test").images[:64].astype(np.float32) / 255.0
    ids = labels.load_labels("fashion_mnist", "test")[:64]
    row = result["models"][str(tmp_path / "tiny.keras")]
    # The evaluation classifier's column is the check the cards report.
    assert row[None] == pytest.approx(classifier_check(model, images, ids)["drop_points"])
    features = sample_quality.load_classifier(judge)
    assert result["originals"][judge] == sample_quality.classifier_accuracy(features, images, ids)
    report = classifier_judges.main(["--models", str(tmp_path / "tiny.keras"), "--judges", judge,
                                     "--max_images", "64"])
    name = classifier_judges.judge_name(judge)
    assert re.fullmatch(r"fashion_mnist_features \(features\w*, \d+\.\d %\)", name)
    header = next(line for line in report.splitlines() if line.startswith("| model |"))
    assert header.endswith(f"| {name} |")
    assert f"| `{tmp_path / 'tiny.keras'}` | {row[None]:.2f} | {row[judge]:.2f} |" in report


def test_time_to_quality_arms_replace_flags_without_touching_the_shipped_runs():
    from bench import time_to_quality

    before = json.dumps(time_to_quality.RUNS, sort_keys=True)
    arm = time_to_quality.variant("vqvae", {"batch_size": 32}, ["commitment_cost=0.5"])
    assert arm["flags"] == {**time_to_quality.RUNS["vqvae"]["flags"], "batch_size": 32}
    assert arm["set"] == [*time_to_quality.RUNS["vqvae"]["set"], "commitment_cost=0.5"]
    assert json.dumps(time_to_quality.RUNS, sort_keys=True) == before
    # The batch-16 row is the VQ-VAE's command with that one flag changed.
    assert time_to_quality.RUNS["vqvae_batch16"] == time_to_quality.variant(
        "vqvae", {"batch_size": 16})
    for bad in ("batch_size", "filters=8"):  # no value; not a train flag of the runs
        with pytest.raises(SystemExit):
            time_to_quality.main(["--flags", bad])


def test_decoder_levers_grow_the_decoder_from_where_the_model_is():
    import numpy as np

    from bench import decoder_levers
    from tests.helpers import random_images, tiny_model

    model = tiny_model("vqvae")
    images = random_images(4)
    before = model.predict(images, verbose=0)
    decoder_levers.grow_decoder(model, 2)
    assert len(model.decoder.head.blocks) == 2
    # The blocks' output convolutions start at zero: the grown model is the same function.
    np.testing.assert_allclose(model.predict(images, verbose=0), before, atol=1e-6)
    assert len(decoder_levers.decoder_variables(model)) == (
        len(model.decoder.trainable_variables) + 2 * 4)  # two convolutions' kernel and bias
    block = model.decoder.head.blocks[0]
    block.conv_out.kernel.assign(np.ones(block.conv_out.kernel.shape, np.float32))
    assert np.abs(model.predict(images, verbose=0) - before).max() > 1e-3  # the blocks run
    assert decoder_levers.parse_arm("blocks=1,adversarial=0.5") == {"blocks": 1,
                                                                   "adversarial": 0.5}
    with pytest.raises(ValueError, match="blocks=N and/or adversarial=F"):
        decoder_levers.parse_arm("dropout=0.1")


@pytest.mark.slow  # ~40 s: two arms of a few steps, and the test set's classifier check
def test_decoder_levers_train_the_decoder_only_and_report_each_arm(tmp_path):
    import numpy as np

    from bench import decoder_levers
    from tests.helpers import random_images, tiny_model

    model = tiny_model("vqvae")
    images = random_images(256)
    codes = model.encode(images).numpy()
    frozen = [w.numpy() for w in [*model.encoder.weights, *model.quantizer.weights]]
    decoder = [w.numpy() for w in model.decoder.weights]
    decoder_levers.fine_tune(model, images, {"blocks": 1, "adversarial": 0.5}, epochs=1,
                             feature_weight=0.3, warmup=1, max_steps=3)
    assert all(np.array_equal(a, w.numpy()) for a, w in
               zip(frozen, [*model.encoder.weights, *model.quantizer.weights], strict=True))
    assert not all(np.array_equal(a, w.numpy()) for a, w in
                   zip(decoder, model.decoder.weights[:len(decoder)], strict=True))
    np.testing.assert_array_equal(model.encode(images).numpy(), codes)

    tiny_model("vqvae").save(tmp_path / "tiny.keras")
    report = decoder_levers.main(["--model", str(tmp_path / "tiny.keras"), "--arms",
                                  "adversarial=0.5", "blocks=1", "--max_steps", "2",
                                  "--max_images", "128", "--warmup", "1"])
    assert re.search(r"\| the model as given \|  \| \d\.\d{5} \| -?\d+\.\d\d \|", report)
    for arm in ("adversarial=0.5", "blocks=1"):
        assert re.search(rf"\| {arm} \| \d+\.\d \| \d\.\d{{5}} \| -?\d+\.\d\d \|", report)
    with pytest.raises(ValueError, match="must be a VQ-VAE or dVAE"):
        tiny_model("ae").save(tmp_path / "ae.keras")
        decoder_levers.main(["--model", str(tmp_path / "ae.keras"), "--max_images", "8"])
