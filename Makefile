# Common tasks. `make setup` is implied by every target that needs Python.
PY := .venv/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup demo test test-slow test-pythons lint bench zoo-train zoo-publish zoo-cards clean torch-env test-dalle-torch

setup:
	bash scripts/setup.sh

demo:
	./run.sh

# The default suite runs in TEST_WORKERS processes (pytest-xdist; 2 halves its time on
# the 2-core CI machine, see BUILD_NOTES.md). TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

test-slow: setup
	$(PY) -m pytest -q -m slow

# The supported Pythons, each in its own environment (.venv for 3.11, .venv-3.12,
# .venv-3.13; created by scripts/setup.sh from pyenv or PATH), run PYTHONS_TESTS:
# models, saving, presets, the resolver, config, export and the installed package.
PYTHONS := 3.11 3.12 3.13
PYTHONS_TESTS ?= tests/test_models.py tests/test_saving.py tests/test_presets.py \
	tests/test_runs.py tests/test_config.py tests/test_export.py tests/test_install.py
test-pythons:
	@for v in $(PYTHONS); do \
	  venv=.venv-$$v; [ $$v = 3.11 ] && venv=.venv; \
	  echo "== Python $$v ($$venv)"; \
	  PYTHON_VERSION=$$v VENV=$$venv bash scripts/setup.sh && \
	  $$venv/bin/python -m pytest -q $(PYTHONS_TESTS) || exit 1; \
	done

lint: setup
	$(PY) -m ruff check zoo trainers tests bench

bench: setup
	$(PY) -m bench.run_all

# Retrain one pretrained model from its recipe into runs/zoo/NAME (saved_models/ is
# not touched) and compare its test metrics with the card's:
#   make zoo-train NAME=dvae_fashion_mnist
# Generators (prior_*) train with trainers.train_prior and are measured by
# trainers.evaluate_prior (10,000 samples) instead of trainers.reproduce.
zoo-train: setup
	$(if $(filter prior_%,$(NAME)),\
	$(PY) -m trainers.train_prior --config=configs/$(NAME).json --model_dir=runs/zoo/$(NAME) && \
	$(PY) -m trainers.evaluate_prior --model=runs/zoo/$(NAME),\
	$(PY) -m trainers.train --config=configs/$(NAME).json --model_dir=runs/zoo/$(NAME) && \
	$(PY) -m trainers.reproduce --name=$(NAME) --model_dir=runs/zoo/$(NAME))

# Replace the shipped model by that run (refused if worse, unless FORCE=1).
zoo-publish: setup
	$(PY) -m trainers.publish --name=$(NAME) --model_dir=runs/zoo/$(NAME) $(if $(FORCE),--force)

# Re-render every card and manifest of saved_models/ from its files (no training).
zoo-cards: setup
	$(PY) -m trainers.publish --rerender_cards

# PyTorch + OpenAI's dall-e 0.1 in their own environment (the zoo never imports torch).
# torch is pinned: an unpinned one pulls gigabytes of CUDA libraries; dall-e's own
# requirements (torchvision) are skipped with --no-deps.
TORCH_PY := .venv-torch/bin/python
torch-env:
	test -x $(TORCH_PY) || python3.11 -m venv .venv-torch
	$(TORCH_PY) -c "import torch, dall_e" 2>/dev/null || ( \
		$(TORCH_PY) -m pip install torch==2.13.0 numpy attrs requests && \
		$(TORCH_PY) -m pip install --no-deps dall-e==0.1 )

# Full-size equality with the PyTorch reference (random weights, the released
# configuration): reference outputs and .pkl files from dall_e, the documented
# converter command on them, then the comparison (errors in runs/dalle_full/errors.json).
test-dalle-torch: setup torch-env
	rm -rf runs/dalle_full
	$(TORCH_PY) scripts/make_dalle_fixture.py --size=full --output=runs/dalle_full
	$(PY) -m trainers.convert_dalle --encoder=runs/dalle_full/encoder.pkl \
		--decoder=runs/dalle_full/decoder.pkl --output=runs/dalle_full/preset
	DALLE_FULL_REFERENCE=runs/dalle_full $(PY) -m pytest -q -s -m slow \
		tests/test_dalle_reference.py tests/test_dalle_dvae.py

clean:
	rm -rf runs exports .pytest_cache
