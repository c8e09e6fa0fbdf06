"""The installed package: shipped models and recipes travel with it; dependencies are declared.

The default test installs the package non-editably into a temporary folder
(`pip install --no-deps --target`, from a copy of the sources so the checkout
gains no `build/`) and uses it from another folder. The slow test installs it
into a fresh virtual environment with pip resolving the declared
dependencies (offline: the project's environment is put on the new one's
path) and runs the commands a user runs after `pip install .`.
"""

import ast
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.helpers import REPO_ROOT, random_images

SHIPPED = ["ae_fashion_mnist", "dvae_fashion_mnist", "dvae_from_vqvae_14x14_fashion_mnist",
           "dvae_from_vqvae_fashion_mnist", "dvae_perceptual_fashion_mnist",
           "prior_dvae_fashion_mnist", "prior_dvae_from_vqvae_fashion_mnist",
           "prior_vqvae_fashion_mnist", "vae_fashion_mnist", "vae_perceptual_fashion_mnist",
           "vqvae_14x14_fashion_mnist", "vqvae_fashion_mnist", "vqvae_perceptual_fashion_mnist"]
SOURCES = ("pyproject.toml", "README.md", "zoo", "trainers", "saved_models", "configs")
TIMEOUT = 600


def _copy_sources(target):
    target.mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target / name)
    return target


def _run(args, cwd, env=None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
    )
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package installed with pip into a folder: (site folder, an unrelated working folder)."""
    source = _copy_sources(tmp_path_factory.mktemp("source"))
    site = tmp_path_factory.mktemp("site")
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
          "--no-build-isolation", "--target", str(site), str(source)], cwd=source)
    return site, tmp_path_factory.mktemp("elsewhere")


def test_installed_package_lists_and_loads_shipped_models_and_finds_recipes(installed):
    site, elsewhere = installed
    code = """
        import json, zoo
        from trainers import config
        from zoo import presets
        for name in zoo.list_models():
            presets.verify(name)  # every shipped file is there, unchanged
        model = zoo.load("ae_fashion_mnist")
        print(json.dumps({
            "zoo": zoo.__file__, "models": zoo.list_models(), "loaded": type(model).__name__,
            "shipped": str(presets.saved_models_dir()), "recipes": config.list_recipes(),
            "recipe_model": config.load("dvae_fashion_mnist")["model"],
        }))
    """
    result = _run([sys.executable, "-c", textwrap.dedent(code)], cwd=elsewhere,
                  env={"PYTHONPATH": str(site)})
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["zoo"].startswith(str(site))
    assert report["shipped"] == str(site / "zoo" / "saved_models")
    assert report["models"] == SHIPPED and report["loaded"] == "AE"
    assert report["recipes"] == SHIPPED and report["recipe_model"] == "dvae"


def test_installed_train_command_takes_a_recipe_name(installed):
    site, elsewhere = installed
    result = subprocess.run(
        [sys.executable, "-m", "trainers.train", "--config=no_such_recipe", "--model_dir=r"],
        cwd=elsewhere, capture_output=True, text=True, timeout=TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    assert result.returncode == 1
    assert "No such config file or recipe: no_such_recipe" in result.stderr
    assert ", ".join(SHIPPED) in result.stderr and "Traceback" not in result.stderr


def _third_party_imports() -> set[str]:
    names = set()
    for path in [*REPO_ROOT.glob("zoo/**/*.py"), *REPO_ROOT.glob("trainers/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):  # prose saying "from a ..." is not
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("zoo", "trainers")}


def test_declared_dependencies_cover_every_import_and_allow_the_pinned_versions():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = {Requirement(r).name.lower(): Requirement(r) for r in project["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    needed = {providers[name][0].lower() for name in _third_party_imports()}
    # Imported by Keras on our behalf: the TensorBoard callback of every run;
    # TFP's import under Keras 3.
    needed |= {"tensorboard", "tf-keras"}
    needed = {name.replace("_", "-") for name in needed}
    assert needed <= set(declared), sorted(needed - set(declared))
    pins = {}
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    for name, requirement in declared.items():
        assert pins[name] in requirement.specifier, (name, pins[name], str(requirement))
    running = "{}.{}".format(*sys.version_info[:2])
    assert running in SpecifierSet(project["requires-python"])


@pytest.mark.slow  # ~2 min: a fresh venv, pip resolving every dependency, four commands
def test_pip_install_into_a_fresh_venv_then_use_it_from_elsewhere(tmp_path):
    source = _copy_sources(tmp_path / "source")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    # Offline: the project's environment stands in for PyPI, so pip checks the
    # declared dependencies against the tested versions instead of downloading.
    site = _run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                cwd=tmp_path).stdout.strip()
    shared = [p for p in sys.path if p.endswith("site-packages")][0]
    with open(os.path.join(site, "project_env.pth"), "w") as f:
        f.write(shared + "\n")
    _run([str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-build-isolation",
          str(source)], cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    np.save(elsewhere / "mine.npy", random_images(40))
    _run([str(python), "-m", "trainers.train", "--init_from=dvae_fashion_mnist",
          "--dataset=mine.npy", "--model_dir=tuned", "--epochs=1", "--steps_per_epoch=1",
          "--batch_size=8"], cwd=elsewhere)
    _run([str(python), "-m", "trainers.train", "--config=ae_fashion_mnist", "--dataset=mine.npy",
          "--model_dir=recipe", "--epochs=1", "--steps_per_epoch=1", "--batch_size=8",
          "--set=filters=8"], cwd=elsewhere)
    _run([str(python), "-m", "trainers.export", "--model=vqvae_fashion_mnist",
          "--export_base=exports/vq"], cwd=elsewhere)
    assert (elsewhere / "exports" / "vq" / "1" / "saved_model.pb").is_file()
    _run([str(python), "-m", "trainers.generate", "--model=prior_dvae_fashion_mnist",
          "--prompt=ankle boot", "--count=2", "--output_dir=generated"], cwd=elsewhere)
    assert len(list((elsewhere / "generated").glob("*.png"))) >= 2
    # The evaluation classifier of trainers.evaluate_prior travels as package data too.
    _run([str(python), "-c", "from trainers import sample_quality; "
          "sample_quality.load_classifier()"], cwd=elsewhere)
    listed = _run([str(python), "-c", "import zoo; print(zoo.list_models())"], cwd=elsewhere)
    assert str(SHIPPED) in listed.stdout
    assert (elsewhere / "tuned" / "last.keras").is_file()
    assert json.loads((elsewhere / "recipe" / "config.json").read_text())["model"] == "ae"
