"""A generator card's measuring command samples as its figures were measured.

`publish` measures a generator at its run's `sampling` options (`--set
sampling.temperature=0.9`, `sampling.top_k=50`), but the card's
`trainers.evaluate_prior` command gave neither, so it measured at
temperature 1 and every code while the card said to compare with its figures.
"""

import json

import pytest

from tests.helpers import REPO_ROOT
from trainers.publish_prior import prior_card

SHIPPED = REPO_ROOT / "saved_models" / "prior_dvae_fashion_mnist"


def _card(name: str, **sampling) -> str:
    report = json.loads((SHIPPED / "metrics.json").read_text())
    report["sampling"].update(sampling)
    config = json.loads((SHIPPED / "config.json").read_text())
    return prior_card(name, report, config, "1 minute", 1)


def _commands(card: str) -> list[str]:
    """The commands of the card's Reproduce part, a continued line joined to its start."""
    part = card.split("## Reproduce")[1].split("## Likelihood")[0]
    return [line for line in part.replace("\\\n", "").splitlines()
            if line.startswith(("python -m", "`python -m"))]


@pytest.mark.parametrize("name", ["prior_dvae_fashion_mnist", "my_prior"])  # recipe or not
def test_the_measuring_command_gives_the_cards_sampling_options(name):
    commands = _commands(_card(name, temperature=0.9, top_k=50))
    (measure,) = [c for c in commands if "trainers.evaluate_prior" in c]
    assert "--temperature=0.9" in measure and "--top_k=50" in measure
    others = [c for c in commands if "trainers.evaluate_prior" not in c]
    assert others and not any("--temperature" in c or "--top_k" in c for c in others)


def test_default_sampling_adds_no_flags():
    shipped = (SHIPPED / "README.md").read_text()
    assert _commands(_card("prior_dvae_fashion_mnist")) == _commands(shipped)
    assert not any("--temperature" in c or "--top_k" in c for c in _commands(shipped))
