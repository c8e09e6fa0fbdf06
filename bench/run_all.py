"""Runs every benchmark and writes BENCHMARKS.md: `python -m bench.run_all`.

Profiles:
- default (`make bench`): all four families at their default config,
  training at batch 64/128/256 in every mode, 3 interleaved repetitions.
  About half an hour on 2 CPU cores (29 minutes on 2026-12-07, before the
  serving threads section's few).
- `--quick`: default models, batch 64 and 256, fewer modes and repetitions
  (a few minutes).
- `--tiny`: tiny models and sizes, for the smoke test (no meaningful numbers).

Every profile also runs the efficiency sections: time to quality
(`bench/time_to_quality.py`), the layouts table at 147 bits
(`bench/layouts.py --quick`; the full sweep is `python -m bench.layouts`)
and the residual block's remapper pattern (`bench/remapper.py`), oneDNN
against TensorFlow's Eigen kernels (`bench/onednn.py`), and serving under
thread-pool settings (`bench/serving_threads.py`).
"""

import argparse
import datetime
import os
import sys
import time

PROFILES = {
    "full": {
        "families": ("ae", "vae", "vqvae", "dvae"),
        "train": {
            "batch_sizes": (64, 128, 256),
            "modes": ("graph", "xla", "spe8", "bf16"),
            "images_per_repeat": 384,
            "repeats": 3,
        },
        "pipeline": {"batch_sizes": (64, 256), "folder_images": 2000, "repeats": 3},
        "serving": {"latency_calls": 100, "throughput_calls": 4, "repeats": 3, "shipped": True,
                    "precisions": ("float32", "mixed_bfloat16")},
        "scaling": {"families": ("ae", "vqvae"), "steps": 6, "repeats": 3},
        "generation": {"latency_calls": 20, "throughput_calls": 1, "repeats": 3},
        "peak": {"size": 2048, "repeats": 5},
        "dalle": {"calls": 5, "repeats": 3},
        "onednn": {"repeats": 3},
        # The 14x14 presets are the only shipped autoencoders whose network differs from
        # their family's default (the other presets share its layers and sizes).
        "serving_threads": {"families": ("ae", "vae", "vqvae", "dvae",
                                         "vqvae_14x14_fashion_mnist",
                                         "dvae_from_vqvae_14x14_fashion_mnist"),
                            "repeats": 3},
        "model_kwargs": {},
        "efficiency": {"layout_steps": 150, "layout_training": True, "remapper_repeats": 5,
                       "ttq_families": ("vqvae", "vqvae_batch16", "dvae"),
                       "ttq_interval": 50,
                       "ttq_seeds": (0, 1, 2)},
    },
    "quick": {
        "families": ("ae", "vqvae"),
        "train": {
            "batch_sizes": (64, 256),
            "modes": ("graph", "xla", "bf16"),
            "images_per_repeat": 256,
            "repeats": 2,
        },
        "pipeline": {"batch_sizes": (64, 256), "folder_images": 500, "repeats": 2},
        "serving": {"latency_calls": 50, "throughput_calls": 2, "repeats": 2, "shipped": True,
                    "precisions": ("float32", "mixed_bfloat16")},
        "scaling": {"families": ("ae",), "steps": 4, "repeats": 2},
        "generation": {"latency_calls": 10, "throughput_calls": 1, "repeats": 2},
        "peak": {"size": 1024, "repeats": 3},
        "dalle": {"calls": 3, "repeats": 2},
        "onednn": {"families": ("ae", "vqvae"), "repeats": 2},
        "serving_threads": {"families": ("ae", "vqvae"), "latency_calls": 50,
                            "throughput_calls": 2, "repeats": 2},
        "model_kwargs": {},
        "efficiency": {"layout_steps": 150, "layout_training": True, "remapper_repeats": 3,
                       "ttq_families": ("vqvae",), "ttq_interval": 50,
                       "ttq_seeds": (0,)},
    },
}


def _tiny_profile() -> dict:
    from bench import dalle, generation
    from bench.common import TINY_MODEL_KWARGS

    return {
        "families": ("ae", "vqvae"),
        "train": {
            "batch_sizes": (8,),
            "modes": ("graph", "spe8"),
            "images_per_repeat": 16,
            "repeats": 2,
        },
        "pipeline": {
            "batch_sizes": (8,),
            "folder_images": 24,
            "repeats": 2,
            "images_per_repeat": 64,
        },
        "serving": {
            "families": ("ae",),
            "latency_calls": 3,
            "throughput_calls": 1,
            "batch": 8,
            "repeats": 2,
        },
        "scaling": {"families": ("ae",), "batch_size": 8, "steps": 2, "repeats": 2},
        "generation": {
            "latency_calls": 2,
            "throughput_calls": 1,
            "batch": 8,
            "repeats": 1,
            "model_kwargs": generation.TINY,
        },
        "peak": {"size": 128, "iterations": 2, "repeats": 2},
        "dalle": {"model_kwargs": dalle.TINY, "calls": 1, "repeats": 1, "conversion": False},
        "onednn": {
            "families": ("ae",),
            "shipped": False,
            "model_kwargs": TINY_MODEL_KWARGS,
            "train_batch": 8,
            "train_steps": 2,
            "latency_calls": 2,
            "throughput_calls": 1,
            "batch": 8,
            "generation": False,
            "repeats": 1,
        },
        "serving_threads": {
            "families": ("ae",),
            "precisions": ("float32",),
            "shipped": False,
            "model_kwargs": TINY_MODEL_KWARGS,
            "latency_calls": 2,
            "throughput_calls": 1,
            "batch": 8,
            "repeats": 1,
        },
        "model_kwargs": TINY_MODEL_KWARGS,
        "efficiency": {"layout_steps": 0, "layout_training": False, "remapper_repeats": 0,
                       "ttq_families": ("vqvae",), "ttq_interval": 2, "ttq_seeds": (0,),
                       "tiny": True},
    }


SECTIONS = {
    "training": "## Training throughput",
    "input_pipeline": "## Input pipeline",
    "serving": "## Serving",
    "serving_variants": "## Serving changes",
    "serving_threads": "## Serving threads",
    "scaling": "## Scaling",
    "time_to_quality": "## Time to quality",
    "layouts": "## Layouts: FLOPs against test MSE",
    "remapper": "## Residual block and the Grappler remapper",
    "dalle": "## DALL-E dVAE",
    "generation": "## Generation",
    "onednn": "## oneDNN",
}


def _replace_sections(output: str, tables: dict, header: str) -> None:
    """Rewrites only the given sections of an existing BENCHMARKS.md (appending new ones)."""
    with open(output) as f:
        text = f.read()
    for key, table in tables.items():
        heading = SECTIONS[key]
        block = f"{heading}\n\n{header}\n\n{table.markdown()}\n"
        start = text.find(heading + "\n")
        if start < 0:
            text = text.rstrip("\n") + "\n\n" + block
            continue
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + block + (text[end + 1:] if end >= 0 else "")
    with open(output, "w") as f:
        f.write(text)


def _load_remark(load_before: str, brief: bool = False) -> str:
    """What the 1-minute load average before the run says about its figures.

    Only the load before the run is judged: the load after it is mostly the benchmark's
    own work (two busy cores read as about 2), so it cannot tell other jobs apart.
    """
    busy = float(load_before.split()[0]) > 1.0
    if brief:
        return " (the cores were busy when it started)" if busy else " (idle when it started)"
    if busy:
        return (" The cores were busy when the run started (other jobs, or a run just before),"
                " so the first figures may be low; the side-by-side ratios are what to read.")
    return " The machine was idle when the run started."


def _announce(key: str, done: int, total: int, started: float) -> None:
    """Prints which section starts, so a 20-minute run shows where it is."""
    print(f"[bench] {done + 1}/{total} {key} (at {(time.perf_counter() - started) / 60:.1f} min)",
          file=sys.stderr, flush=True)


def _alone_runners(profile: dict) -> dict:
    """The sections that can be regenerated alone, as zero-argument callables."""
    from bench import (
        common,
        dalle,
        generation,
        layouts,
        onednn,
        remapper,
        serving_latency,
        serving_threads,
        serving_variants,
        time_to_quality,
    )

    efficiency = profile["efficiency"]

    def dalle_table():
        try:
            return dalle.run(**profile["dalle"])
        except RuntimeError as error:  # keep the other tables when a conversion step fails
            table = common.Table("DALL-E dVAE, full size", ["error"])
            table.add(common.error_cell(error))
            return table

    runners = {
        "serving": lambda: serving_latency.run(
            model_kwargs=profile["model_kwargs"],
            **{"families": profile["families"], **profile["serving"]},
        ),
        "time_to_quality": lambda: time_to_quality.run(
            efficiency["ttq_families"], efficiency["ttq_interval"],
            tiny=efficiency.get("tiny", False), seeds=efficiency["ttq_seeds"],
        ),
        "layouts": lambda: layouts.run(
            efficiency["layout_steps"], quick=True, train=efficiency["layout_training"]
        ),
        "dalle": dalle_table,
        "generation": lambda: generation.run(**profile["generation"]),
        "onednn": lambda: onednn.run(**profile["onednn"]),
        "serving_threads": lambda: serving_threads.run(**profile["serving_threads"]),
    }
    if efficiency["remapper_repeats"]:
        runners["remapper"] = lambda: remapper.run(efficiency["remapper_repeats"])
    if profile["serving"].get("shipped"):
        runners["serving_variants"] = lambda: serving_variants.run(
            latency_calls=profile["serving"]["latency_calls"],
            throughput_calls=profile["serving"]["throughput_calls"],
            repeats=profile["serving"]["repeats"],
        )
    return runners


def run_sections(profile_name: str, output: str, sections) -> dict:
    """Runs some sections only and replaces them in an existing `output`.

    For when a full run does not fit: each replaced section starts with the
    date, command, CPU, flags and load average of its own run.
    """
    from bench import common

    profile = _tiny_profile() if profile_name == "tiny" else PROFILES[profile_name]
    runners = _alone_runners(profile)
    unknown = set(sections) - set(runners)
    if unknown:
        raise ValueError(f"--sections supports {', '.join(runners)}. "
                         f"Received: {sorted(unknown)}")
    load_before, started = common.loadavg(), time.perf_counter()
    machine = common.machine_info()
    chosen = [key for key in runners if key in sections]
    tables = {}
    for done, key in enumerate(chosen):
        _announce(key, done, len(chosen), started)
        tables[key] = runners[key]()
    load_after = common.loadavg()
    flags = {"full": "", "quick": " --quick", "tiny": " --tiny"}[profile_name]
    header = (
        f"_Section regenerated on {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} by "
        f"`python -m bench.run_all{flags} --sections {' '.join(sections)}` "
        f"({(time.perf_counter() - started) / 60:.1f} minutes) on {machine['cpu']}, "
        f"{machine['cores']} cores, SIMD {machine['flags']}, TensorFlow "
        f"{machine['tensorflow']}, oneDNN {machine['onednn']}; load average before "
        f"{load_before}, after "
        f"{load_after}{_load_remark(load_before, brief=True)}._"
    )
    _replace_sections(output, tables, header)
    return tables


def run(profile_name: str, output: str) -> dict:
    """Runs the profile's benchmarks, writes `output` and returns the tables by section."""
    from bench import common, input_pipeline, scaling, train_throughput

    profile = _tiny_profile() if profile_name == "tiny" else PROFILES[profile_name]
    started = time.perf_counter()
    load_before = common.loadavg()
    machine = common.machine_info()
    kwargs = profile["model_kwargs"]
    tables = {}
    alone = _alone_runners(profile)
    order = ["training", "input_pipeline", "serving", "scaling"] + [
        key for key in ("serving_variants", "serving_threads", "time_to_quality", "layouts",
                        "remapper", "dalle", "generation", "onednn") if key in alone]
    peak_start = common.matmul_peak(**profile["peak"])
    _announce("training", 0, len(order), started)
    tables["training"] = train_throughput.run(
        profile["families"], peak_gflops=peak_start.max, model_kwargs=kwargs, **profile["train"]
    )
    fastest = {}
    for row in tables["training"].rows:
        if str(row[3]).startswith("failed"):
            continue
        rate = float(str(row[3]).split(" ")[0].replace(",", ""))
        fastest[row[1]] = max(fastest.get(row[1], 0.0), rate)
    _announce("input_pipeline", 1, len(order), started)
    tables["input_pipeline"] = input_pipeline.run(training_rates=fastest, **profile["pipeline"])
    _announce("serving", 2, len(order), started)
    tables["serving"] = alone["serving"]()
    _announce("scaling", 3, len(order), started)
    try:
        tables["scaling"] = scaling.run(model_kwargs=kwargs, **profile["scaling"])
    except RuntimeError as error:  # keep the other tables when the subprocess fails
        tables["scaling"] = common.Table("MirroredStrategy scaling", ["error"])
        tables["scaling"].add(common.error_cell(error))
    for done, key in enumerate(order[4:], start=4):
        _announce(key, done, len(order), started)
        tables[key] = alone[key]()
    peak_end = common.matmul_peak(**profile["peak"])
    # The peak is measured twice because a burst of other load can depress
    # one measurement; the best of both is the denominator of "% of peak".
    peak = max(peak_start.max, peak_end.max)
    gflops_column = tables["training"].headers.index("GFLOP/s")
    for row in tables["training"].rows:
        if row[gflops_column]:
            row[-1] = f"{100 * float(row[gflops_column]) / peak:.0f} %"
    load_after = common.loadavg()
    minutes = (time.perf_counter() - started) / 60

    flags = {"full": "", "quick": " --quick", "tiny": " --tiny"}[profile_name]
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` (`.venv/bin/python -m bench.run_all{flags}`) on "
        f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} in {minutes:.1f} minutes; "
        "do not edit by hand. Each figure is the median of interleaved repetitions, "
        "with (min-max).",
        "",
        "## Machine",
        "",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores "
        f"({machine['usable_cores']} usable), GPUs: {machine['gpus']}",
        f"- SIMD: {machine['flags']}",
        f"- TensorFlow {machine['tensorflow']}, Keras {machine['keras']}, "
        f"Python {machine['python']}, oneDNN: {machine['onednn']}",
        f"- Load average (1, 5, 15 min) before: {load_before}; after: {load_after}."
        + _load_remark(load_before),
        f"- fp32 matmul peak (chained {profile['peak']['size']}x{profile['peak']['size']} "
        f"`tf.matmul` in a `tf.function`), GFLOP/s: at start {peak_start.format(1)}, "
        f"at end {peak_end.format(1)}. The training table divides by the larger maximum, "
        f"{peak:.1f} GFLOP/s.",
        "",
    ]
    for key, heading in SECTIONS.items():
        if key in tables:
            lines += [heading, "", tables[key].markdown()]
    with open(output, "w") as f:
        f.write("\n".join(lines))
    return tables


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Runs every benchmark, writes BENCHMARKS.md.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="fewer sizes and repetitions")
    group.add_argument("--tiny", action="store_true", help="smoke-test sizes, no real numbers")
    parser.add_argument("--output", default="BENCHMARKS.md")
    parser.add_argument("--sections", nargs="+", default=None,
                        help="run only these sections and replace them in --output")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    profile = "tiny" if args.tiny else "quick" if args.quick else "full"
    if args.sections:
        run_sections(profile, args.output, args.sections)
    else:
        run(profile, args.output)
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
