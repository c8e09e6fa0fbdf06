"""Every documented example runs, as written, on its own.

Two kinds of examples are collected, one test each:

- the docstring examples (`>>>`) of every module in `zoo/` and `trainers/`,
  run by `doctest` with empty globals (so an example that forgets an import
  fails here, as it would for a user who copies it) and its expected output
  compared with ELLIPSIS and NORMALIZE_WHITESPACE;
- every ```python block of README.md, docs/*.md and the model cards
  (saved_models/*/README.md), each run on its own in a fresh namespace.

Each example runs with a fresh temporary folder as its working directory, so
files it writes (`exports/...`, `m.keras`) land there; the repository stays
importable (`pythonpath` in pyproject.toml). A Markdown block preceded by
`<!-- docs-test: skip (reason) -->` is not run; a docstring line marked
`# doctest: +SKIP` is not run (doctest's own marker). Both are meant to be
rare and are counted by `test_skipped_examples_are_few`.
"""

import doctest
import importlib
import io
import pkgutil
import re

import keras
import pytest

from tests.helpers import REPO_ROOT

PACKAGES = ("zoo", "trainers")
MARKDOWN = sorted(
    [REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")]
) + sorted((REPO_ROOT / "saved_models").glob("*/README.md"))
SKIP_MARKER = re.compile(r"<!--\s*docs-test:\s*skip\b")
OPTIONFLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
MAX_SKIPPED = 0  # raise only with a reason in the doc; name each skipped block in the PR
# Examples in files this branch may not edit, each failing as written (strict:
# once fixed, the test XPASSes, fails, and its entry must go).
KNOWN_BROKEN: dict[str, str] = {}


def module_names() -> list[str]:
    """Every module of the packages, imported (command modules define no flags on import)."""
    names = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        names.append(package)
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            names.append(info.name)
    return sorted(names)


def docstring_examples() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = []
    for name in module_names():
        module = importlib.import_module(name)
        # globs={}: an example sees only the names it imports itself.
        tests += [t for t in finder.find(module, globs={}) if t.examples]
    return sorted(tests, key=lambda t: t.name)


def markdown_blocks(path) -> list[dict]:
    """The ```python blocks of a Markdown file, dedented, with their line and skip flag."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = re.match(r"^(\s*)```python\s*$", lines[i])
        if not opening:
            i += 1
            continue
        indent, start = opening.group(1), i + 1
        end = start
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{path}:{i + 1}: unclosed ```python block")
        body = [line[len(indent):] if line.startswith(indent) else line.lstrip()
                for line in lines[start:end]]
        previous = next((line for line in reversed(lines[:i]) if line.strip()), "")
        blocks.append({
            "id": f"{path.relative_to(REPO_ROOT)}:{i + 1}",
            "source": "\n".join(body) + "\n",
            "skip": bool(SKIP_MARKER.search(previous)),
        })
        i = end + 1
    return blocks


DOCTESTS = docstring_examples()
BLOCKS = [block for path in MARKDOWN for block in markdown_blocks(path)]


@pytest.fixture
def in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    keras.mixed_precision.set_global_policy("float32")  # examples must not leak a policy


@pytest.mark.parametrize(
    "test",
    [
        pytest.param(t, marks=pytest.mark.xfail(reason=KNOWN_BROKEN[t.name], strict=True))
        if t.name in KNOWN_BROKEN else t
        for t in DOCTESTS
    ],
    ids=[t.name for t in DOCTESTS],
)
def test_docstring_example(test, in_tmp_dir):
    output = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS)
    runner.run(test, out=output.write, clear_globs=True)
    if runner.failures:
        pytest.fail(f"{test.filename}:{test.lineno + 1}\n{output.getvalue()}", pytrace=False)


@pytest.mark.parametrize("block", BLOCKS, ids=[b["id"] for b in BLOCKS])
def test_markdown_block(block, in_tmp_dir):
    if block["skip"]:
        pytest.skip("marked <!-- docs-test: skip --> in the doc")
    code = compile(block["source"], block["id"], "exec")
    exec(code, {"__name__": "__docs_example__"})  # noqa: S102 - our own docs


def test_every_doc_with_examples_is_collected():
    """Guards the collectors: a parser change must not silently drop examples."""
    files = {b["id"].rsplit(":", 1)[0] for b in BLOCKS}
    assert "README.md" in files and "docs/SERVING.md" in files
    assert {f for f in files if f.startswith("saved_models/")} == {
        f"saved_models/{p.parent.name}/README.md"
        for p in (REPO_ROOT / "saved_models").glob("*/README.md")
    }
    modules = {t.name.split(".")[0] for t in DOCTESTS}
    assert modules == set(PACKAGES)
    assert len(DOCTESTS) >= 15


def test_skipped_examples_are_few():
    skipped = [b["id"] for b in BLOCKS if b["skip"]]
    skipped += [
        t.name for t in DOCTESTS for e in t.examples if e.options.get(doctest.SKIP)
    ]
    assert len(skipped) <= MAX_SKIPPED, skipped


@pytest.mark.parametrize("family", ["ae", "vae", "vqvae", "dvae"])
def test_family_docstrings_give_the_shared_arguments_and_their_defaults(family):
    # Each family's docstring repeats the shared architecture arguments for help();
    # the copies must stay those of `Autoencoder.__init__`.
    import inspect

    import zoo
    from zoo.models.base import Autoencoder

    shared = {
        name: parameter.default
        for name, parameter in inspect.signature(Autoencoder.__init__).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    text = " ".join(zoo.FAMILIES[family].__doc__.split("**kwargs:", 1)[1].split())
    documented = dict(re.findall(r"`(\w+)`\s+\(`([^`]+)`\)", text))
    assert set(shared) <= set(documented), sorted(set(shared) - set(documented))
    for name, default in shared.items():
        assert documented[name] == repr(default), (name, documented[name], default)
